//! Faults from admission webhooks: a validating webhook with `failurePolicy: Fail` whose
//! server accepts the connection and never answers (a crashed or hung controller). The API
//! server gives up after the webhook's `timeoutSeconds` and refuses the write; gitopsd must
//! name the object and the webhook, apply the rest of the revision, prune nothing, and get the
//! object in once the webhook is gone, without a new commit.

use crate::faults_support;
use crate::reconcile_support;
use crate::support;

use std::time::Duration;

use faults_support::{HANG_LABEL, hung_webhook};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use reconcile_support::{Fixture, IMAGE_1, TierExtra, base_files, configmap, records};
use serde_json::Value;

const FIRST_SYNC: Duration = Duration::from_secs(60);
const CHANGE: Duration = Duration::from_secs(90);

fn failure_messages(s: &Value) -> Vec<String> {
    records(s)
        .iter()
        .flat_map(|r| r["failures"].as_array().cloned().unwrap_or_default())
        .map(|f| f.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_fail_webhook_refuses_one_object_by_name_and_the_rest_is_applied_and_nothing_pruned()
{
    let client = support::client().await;
    let (f, _) = Fixture::new("hook", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;

    // Only ConfigMaps labelled with this test's value go through the webhook, so other tests'
    // objects never meet it.
    let mark = f.tier.clone();
    let guard = hung_webhook(&client, &mark, 1).await;

    // One commit: a new ConfigMap the webhook holds up, a change to another one, and
    // extra-4 removed (a prune that must wait for a sync that succeeds).
    let blocked = configmap("blocked", &[]).replacen(
        "metadata:\n",
        &format!("metadata:\n  labels:\n    {HANG_LABEL}: \"{mark}\"\n"),
        1,
    );
    let changed = configmap("extra-1", &[]).replace("greeting: hello", "greeting: changed");
    f.write_files(&vec![
        ("base/blocked.yaml".into(), blocked),
        ("base/extra-1.yaml".into(), changed),
    ]);
    f.remove_files(&["base/extra-4.yaml"]);
    let second = f.commit("a ConfigMap behind a hung webhook, one change, one removal");

    let status = f
        .wait_status("a failed sync naming the blocked ConfigMap", CHANGE, |s| {
            let named = failure_messages(s).iter().any(|m| {
                m.contains("blocked")
                    && m.contains("hang.gitopsd.test")
                    && m.contains("did not answer")
            });
            (s["revision"] == second.as_str() && s["sync"] != "Synced" && named).then(|| s.clone())
        })
        .await;
    let messages = failure_messages(&status);
    assert!(
        messages.iter().all(|m| !m.contains("extra-1")),
        "only the blocked ConfigMap failed: {messages:?}"
    );

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.tier);
    let extra1 = cms.get("extra-1").await.expect("get extra-1");
    assert_eq!(
        extra1
            .data
            .as_ref()
            .and_then(|d| d.get("greeting"))
            .map(String::as_str),
        Some("changed"),
        "the rest of the revision was applied"
    );
    assert!(
        cms.get_opt("blocked").await.expect("get blocked").is_none(),
        "the webhook refused the blocked ConfigMap"
    );
    assert!(
        cms.get_opt("extra-4").await.expect("get extra-4").is_some(),
        "nothing is pruned while a sync fails"
    );

    // The controller comes back (here: its webhook is removed); the same revision then goes
    // in whole, without a new commit, and only now is extra-4 pruned.
    drop(guard);
    f.wait_status(
        "the same revision Synced after the webhook is gone",
        CHANGE,
        |s| (s["revision"] == second.as_str() && s["sync"] == "Synced").then_some(()),
    )
    .await;
    support::eventually("blocked to be created", CHANGE, || {
        let cms = cms.clone();
        async move { cms.get_opt("blocked").await.ok()?.map(|_| ()) }
    })
    .await;
    support::eventually("extra-4 to be pruned", CHANGE, || {
        let cms = cms.clone();
        async move { cms.get_opt("extra-4").await.ok()?.is_none().then_some(()) }
    })
    .await;
}
