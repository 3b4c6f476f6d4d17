//! The daemon end to end: `gitopsd run` (the real binary, as a child process) reconciling a
//! config repo made with the git CLI onto the local cluster, observed through the cluster and
//! through its status endpoint.
//!
//! Each test has its own repo, tier (named `rt-<test>-<random>`, which is also the name of the
//! tier's namespace), state namespace, status port and daemon, so the tests run side by side.
//! The fixture kills the daemon and deletes both namespaces when the test ends, and prints the
//! daemon's log tail when it failed.

use crate::reconcile_support;
use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use gitopsd::apply::PRUNE_ANNOTATION;
use gitopsd::render::TIER_LABEL;
use gitopsd::state::StateStore;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use reconcile_support::{
    BASE_OBJECTS, Fixture, IMAGE_1, IMAGE_2, IMAGE_3, TierExtra, base_files, configmap, deployment,
    records,
};
use serde_json::{Value, json};

/// A first sync on the local cluster (kwok pods become Ready in about a second).
const FIRST_SYNC: Duration = Duration::from_secs(45);
const CHANGE: Duration = Duration::from_secs(30);

fn selector(tier: &str) -> ListParams {
    ListParams::default().labels(&format!("{TIER_LABEL}={tier}"))
}

/// `kind/name` -> resourceVersion of every object of the tier (by its label).
async fn tier_objects(client: &Client, tier: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let lp = selector(tier);
    let nss: Api<Namespace> = Api::all(client.clone());
    for o in nss.list(&lp).await.expect("list namespaces") {
        out.insert(format!("Namespace/{}", o.name_any()), rv(&o));
    }
    let deps: Api<Deployment> = Api::namespaced(client.clone(), tier);
    for o in deps.list(&lp).await.expect("list deployments") {
        out.insert(format!("Deployment/{}", o.name_any()), rv(&o));
    }
    let svcs: Api<Service> = Api::namespaced(client.clone(), tier);
    for o in svcs.list(&lp).await.expect("list services") {
        out.insert(format!("Service/{}", o.name_any()), rv(&o));
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), tier);
    for o in cms.list(&lp).await.expect("list configmaps") {
        out.insert(format!("ConfigMap/{}", o.name_any()), rv(&o));
    }
    out
}

fn rv<K: ResourceExt>(o: &K) -> String {
    o.resource_version().unwrap_or_default()
}

fn expected_names(tier: &str) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = [
        "Deployment/api",
        "Service/api",
        "ConfigMap/api-config",
        "ConfigMap/extra-1",
        "ConfigMap/extra-2",
        "ConfigMap/extra-3",
        "ConfigMap/extra-4",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    s.insert(format!("Namespace/{tier}"));
    s
}

async fn image_of(client: &Client, ns: &str) -> String {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = deps.get("api").await.expect("get deployment api");
    let v = serde_json::to_value(&d).expect("deployment as JSON");
    v.pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

async fn state_configmap(client: &Client, f: &Fixture) -> Option<BTreeMap<String, String>> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.state_ns);
    cms.get_opt(&StateStore::config_map_name(&f.tier))
        .await
        .expect("get state configmap")
        .map(|cm| cm.data.unwrap_or_default())
}

/// A live edit of the api container's image by another field manager, as `kubectl edit` makes.
async fn edit_image(client: &Client, ns: &str, image: &str) {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "api", "image": image}]}}}});
    deps.patch(
        "api",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Strategic(&patch),
    )
    .await
    .expect("edit the deployment as kubectl-edit");
}

fn deployment_drift(s: &Value) -> Vec<Value> {
    s["drift"]["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i["kind"] == "Deployment" && i["name"] == "api")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_creates_every_object_labelled_and_owned_and_records_state() {
    let client = support::client().await;
    let mut f = Fixture::new("first", base_files(IMAGE_1), TierExtra::default());
    let sha = f.head();
    f.start();
    let status = f.wait_synced_healthy(&sha, FIRST_SYNC).await;
    assert_eq!(status["tier"], f.tier.as_str());
    assert_eq!(status["sourceRevision"], sha.as_str());
    assert_eq!(status["objects"], BASE_OBJECTS, "{status}");
    assert!(status["lastError"].is_null(), "{status}");

    // The first sync created all of them: the record that says so is in the history.
    let created: Vec<Value> = records(&status)
        .into_iter()
        .filter(|r| r["outcomes"]["created"].as_u64().unwrap_or(0) > 0)
        .collect();
    assert_eq!(
        created.len(),
        1,
        "exactly one sync created objects: {created:?}"
    );
    assert_eq!(created[0]["outcomes"]["created"], BASE_OBJECTS);
    assert_eq!(created[0]["revision"], sha.as_str());
    assert_eq!(created[0]["reason"], "revision");
    assert!(created[0]["error"].is_null());

    // In the cluster: every object, with the tier label, applied by field manager gitopsd.
    let objects = tier_objects(&client, &f.tier).await;
    let names: BTreeSet<String> = objects.keys().cloned().collect();
    assert_eq!(names, expected_names(&f.tier));
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &f.tier);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.tier);
    let svcs: Api<Service> = Api::namespaced(client.clone(), &f.tier);
    let nss: Api<Namespace> = Api::all(client.clone());
    let mut managed: Vec<(
        String,
        Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry>,
        BTreeMap<String, String>,
    )> = Vec::new();
    let d = deps.get("api").await.expect("deployment");
    managed.push((
        "Deployment/api".into(),
        d.managed_fields().to_vec(),
        d.labels().clone(),
    ));
    let s = svcs.get("api").await.expect("service");
    managed.push((
        "Service/api".into(),
        s.managed_fields().to_vec(),
        s.labels().clone(),
    ));
    let n = nss.get(&f.tier).await.expect("namespace");
    managed.push((
        "Namespace".into(),
        n.managed_fields().to_vec(),
        n.labels().clone(),
    ));
    for name in ["api-config", "extra-1", "extra-2", "extra-3", "extra-4"] {
        let c = cms.get(name).await.expect("configmap");
        managed.push((
            format!("ConfigMap/{name}"),
            c.managed_fields().to_vec(),
            c.labels().clone(),
        ));
    }
    for (what, fields, labels) in &managed {
        assert_eq!(
            labels.get(TIER_LABEL).map(String::as_str),
            Some(f.tier.as_str()),
            "{what} labels: {labels:?}"
        );
        assert!(
            fields
                .iter()
                .any(|m| m.manager.as_deref() == Some("gitopsd")
                    && m.operation.as_deref() == Some("Apply")),
            "{what} is not applied by field manager gitopsd: {fields:?}"
        );
    }
    assert_eq!(
        image_of(&client, &f.tier).await,
        IMAGE_1,
        "the deployment's image"
    );

    // The state ConfigMap names the revision as applied and healthy.
    let state = state_configmap(&client, &f)
        .await
        .expect("the state ConfigMap gitopsd-state-<tier> exists");
    assert_eq!(state.get("lastAppliedRevision"), Some(&sha), "{state:?}");
    assert_eq!(state.get("lastHealthyRevision"), Some(&sha), "{state:?}");
    assert_eq!(
        state.get("inventoryCount").map(String::as_str),
        Some("8"),
        "{state:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_image_in_git_is_rolled_out_and_becomes_healthy() {
    let client = support::client().await;
    let (f, _) = Fixture::new("image", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;

    f.write_files(&vec![(
        "base/deployment.yaml".to_owned(),
        deployment(IMAGE_2, false),
    )]);
    let second = f.commit("api 1.4.3");
    let status = f.wait_synced_healthy(&second, CHANGE).await;
    assert_eq!(status["sourceRevision"], second.as_str());
    assert_eq!(image_of(&client, &f.tier).await, IMAGE_2);

    // The rollout finished: two Ready pods of the new image, none of the old.
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &f.tier);
    let d = deps.get("api").await.expect("deployment");
    let st = d.status.clone().unwrap_or_default();
    assert_eq!(st.updated_replicas, Some(2), "{st:?}");
    assert_eq!(st.ready_replicas, Some(2), "{st:?}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &f.tier);
    let list = pods
        .list(&ListParams::default().labels("app=api"))
        .await
        .expect("list pods");
    let ready_new = list
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let image = p.spec.as_ref().and_then(|s| s.containers[0].image.clone());
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            image.as_deref() == Some(IMAGE_2) && ready
        })
        .count();
    assert_eq!(ready_new, 2, "two Ready pods run {IMAGE_2}");
    let state = state_configmap(&client, &f).await.expect("state");
    assert_eq!(state.get("lastHealthyRevision"), Some(&second));
    assert!(
        records(&status)
            .iter()
            .any(|r| r["revision"] == second.as_str()
                && r["outcomes"]["configured"].as_u64() == Some(1)),
        "a sync of the new revision configured the deployment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_configmap_is_pruned_unless_its_prune_is_disabled() {
    let client = support::client().await;
    let mut base = base_files(IMAGE_1);
    base.retain(|(p, _)| p != "base/extra-2.yaml");
    base.push((
        "base/extra-2.yaml".to_owned(),
        configmap("extra-2", &[(PRUNE_ANNOTATION, "disabled")]),
    ));
    let (f, _) = Fixture::new("prune", base, TierExtra::default())
        .started(FIRST_SYNC)
        .await;

    f.remove_files(&["base/extra-1.yaml", "base/extra-2.yaml"]);
    let second = f.commit("remove extra-1 and extra-2");
    f.wait_status("the revision that removes two ConfigMaps", CHANGE, |s| {
        (s["revision"] == second.as_str() && s["sync"] == "Synced").then_some(())
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.tier);
    support::eventually("extra-1 to be pruned", CHANGE, || {
        let cms = cms.clone();
        async move { cms.get_opt("extra-1").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let kept = cms
        .get_opt("extra-2")
        .await
        .expect("get extra-2")
        .expect("extra-2 (gitopsd.io/prune: disabled) is kept");
    assert!(kept.metadata.deletion_timestamp.is_none());
    let status = f
        .wait_status("a sync record of the prune", CHANGE, |s| {
            let all = records(s);
            let pruned = all
                .iter()
                .any(|r| r["outcomes"]["pruned"].as_u64() == Some(1));
            pruned.then(|| s.clone())
        })
        .await;
    let notes: Vec<String> = records(&status)
        .iter()
        .flat_map(|r| r["pruneNotes"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("extra-2") && n.contains("gitopsd.io/prune: disabled")),
        "a prune note says why extra-2 was kept: {notes:?}"
    );
    // Everything else is still there; and extra-2 stays over more syncs.
    f.wait_reconciles(2, CHANGE).await;
    let names: BTreeSet<String> = tier_objects(&client, &f.tier).await.into_keys().collect();
    let mut expected = expected_names(&f.tier);
    expected.remove("ConfigMap/extra-1");
    assert_eq!(names, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_commit_fails_the_sync_and_changes_nothing() {
    let client = support::client().await;
    let (f, first) = Fixture::new("broken", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;
    let before = tier_objects(&client, &f.tier).await;
    assert_eq!(before.len(), BASE_OBJECTS);

    // Invalid YAML in one base file, and a changed image in another: nothing may be applied.
    f.write_files(&vec![
        (
            "base/extra-3.yaml".to_owned(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra-3\ndata: [unclosed\n"
                .to_owned(),
        ),
        (
            "base/deployment.yaml".to_owned(),
            deployment(IMAGE_2, false),
        ),
    ]);
    let broken = f.commit("broken yaml");
    // sourceRevision moves when the fetch brings the commit, before its render has failed:
    // wait for the failure itself, then check that it stays.
    let status = f
        .wait_status("the broken revision to be seen and to fail", CHANGE, |s| {
            (s["sourceRevision"] == broken.as_str() && s["sync"] == "Failed").then(|| s.clone())
        })
        .await;
    assert_eq!(status["revision"], first.as_str(), "the revision stays");

    // Over two more reconciles: nothing in the cluster changes, and the status says Failed,
    // naming the file (checked after the cluster, so a status bug does not hide a cluster one).
    let mut wrong: Vec<String> = Vec::new();
    let mut samples = 0;
    reconcile_support::wait_timestamps(
        "two more reconciles of the broken revision",
        "/lastReconcileAt",
        2,
        CHANGE,
        || {
            let s = f.status();
            assert_eq!(s["revision"], first.as_str(), "the revision stays");
            let err = s["lastError"].as_str().unwrap_or_default();
            if s["sync"] != "Failed" || !err.contains("base/extra-3.yaml") {
                wrong.push(format!("sync {} lastError {:?}", s["sync"], s["lastError"]));
            }
            samples += 1;
            s
        },
    )
    .await;
    assert!(samples > 1);
    let after = tier_objects(&client, &f.tier).await;
    assert_eq!(
        before, after,
        "resourceVersions changed after a broken commit"
    );
    assert_eq!(image_of(&client, &f.tier).await, IMAGE_1);
    assert!(
        wrong.is_empty(),
        "while the newest revision does not render, the status must say sync Failed with a \
         lastError naming base/extra-3.yaml; {} of {samples} samples over two reconciles did not, e.g. {:?}",
        wrong.len(),
        wrong.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prune_guard_refuses_to_delete_most_objects() {
    let client = support::client().await;
    let (f, _) = Fixture::new("guard", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;
    let before = tier_objects(&client, &f.tier).await;

    // 6 of the 8 objects leave git: 75%, over the default maxDeletePercent of 50.
    f.remove_files(&[
        "base/service.yaml",
        "base/api-config.yaml",
        "base/extra-1.yaml",
        "base/extra-2.yaml",
        "base/extra-3.yaml",
        "base/extra-4.yaml",
    ]);
    let second = f.commit("remove most files");
    let note = f
        .wait_status("a prune refusal in lastSync.pruneNotes", CHANGE, |s| {
            if s["lastSync"]["revision"] != second.as_str() {
                return None;
            }
            s["lastSync"]["pruneNotes"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .find(|n| n.contains("maxDeletePercent"))
                .map(str::to_owned)
        })
        .await;
    assert!(
        note.contains("would delete 6 of 8 objects (75%)") && note.contains("50%"),
        "the refusal names the share and the limit: {note}"
    );
    // Nothing is deleted, also over more syncs.
    f.wait_reconciles(2, CHANGE).await;
    let after = tier_objects(&client, &f.tier).await;
    let names_before: BTreeSet<&String> = before.keys().collect();
    let names_after: BTreeSet<&String> = after.keys().collect();
    assert_eq!(names_before, names_after, "nothing may be pruned");
    let s = f.status();
    assert_eq!(s["revision"], second.as_str(), "{s}");
    assert_eq!(s["lastSync"]["outcomes"]["pruned"].as_u64().unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_edit_is_reverted_under_policy_apply() {
    let client = support::client().await;
    let (f, first) = Fixture::new("revert", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;

    let edited = "registry.example.com/shop/api:6.6.6";
    edit_image(&client, &f.tier, edited).await;
    let started = std::time::Instant::now();
    support::eventually(
        "the edited image to be reverted",
        Duration::from_secs(10),
        || {
            let client = client.clone();
            let ns = f.tier.clone();
            async move { (image_of(&client, &ns).await == IMAGE_1).then_some(()) }
        },
    )
    .await;
    eprintln!("live edit reverted after {:?}", started.elapsed());
    // gitopsd made the correction: a sync found the drift and configured the Deployment. (The
    // sync's record joins the history just after the sync sets the status: wait for both.)
    let status = f
        .wait_status(
            "no drift of the deployment, and the record of its correction",
            CHANGE,
            |s| {
                let corrected = records(s).iter().any(|r| {
                    r["drift"].as_u64() >= Some(1)
                        && r["outcomes"]["configured"].as_u64() >= Some(1)
                });
                (s["sync"] == "Synced"
                    && deployment_drift(s).is_empty()
                    && s["drift"].is_object()
                    && corrected)
                    .then(|| s.clone())
            },
        )
        .await;
    assert!(status["alerts"].as_array().is_some_and(Vec::is_empty));
    assert_eq!(status["revision"], first.as_str());
    // The image stays reverted.
    f.wait_reconciles(2, CHANGE).await;
    assert_eq!(image_of(&client, &f.tier).await, IMAGE_1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_edit_is_alerted_and_left_under_policy_alert() {
    let client = support::client().await;
    let extra = TierExtra(vec![
        "policy: {critical: alert, high: apply, medium: apply, low: apply}".into(),
    ]);
    let (f, _) = Fixture::new("alert", base_files(IMAGE_1), extra)
        .started(FIRST_SYNC)
        .await;

    let edited = "registry.example.com/shop/api:6.6.6";
    edit_image(&client, &f.tier, edited).await;
    let alert = f
        .wait_status("an alert for the edited image", CHANGE, |s| {
            if s["sync"] != "OutOfSync" {
                return None;
            }
            s["alerts"]
                .as_array()?
                .iter()
                .find(|a| {
                    a["kind"] == "Deployment"
                        && a["name"] == "api"
                        && a["severity"] == "critical"
                        && a["action"] == "alert"
                })
                .cloned()
        })
        .await;
    assert_eq!(alert["rule"], "container-image", "{alert}");
    assert_eq!(alert["namespace"], f.tier.as_str());
    assert!(
        alert["paths"].as_array().is_some_and(|p| p
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.ends_with(".image")))),
        "{alert}"
    );
    assert_eq!(alert["live"], edited, "{alert}");
    assert_eq!(alert["desired"], IMAGE_1, "{alert}");
    // The edit stays, and so does the alert, over two more reconciles.
    let s = f.wait_reconciles(2, CHANGE).await;
    assert_eq!(image_of(&client, &f.tier).await, edited);
    assert_eq!(s["sync"], "OutOfSync");
    assert!(
        s["alerts"].as_array().is_some_and(|a| !a.is_empty()),
        "{}",
        reconcile_support::brief_status(&s)
    );
    assert!(
        deployment_drift(&s)
            .iter()
            .any(|i| i["action"] == "alert" && i["severity"] == "critical"),
        "the drift report lists the item too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_revision_is_rolled_back_and_not_retried() {
    let client = support::client().await;
    let extra = TierExtra(vec![
        "rollback: {onHealthFailure: true, healthTimeout: 10s}".into(),
    ]);
    let (f, first) = Fixture::new("rollback", base_files(IMAGE_1), extra)
        .started(FIRST_SYNC)
        .await;

    f.write_files(&vec![(
        "base/deployment.yaml".to_owned(),
        deployment(IMAGE_2, true),
    )]);
    let bad = f.commit("api 1.4.3, never ready");
    // It is applied first...
    support::eventually("the bad image to be applied", CHANGE, || {
        let client = client.clone();
        let ns = f.tier.clone();
        async move { (image_of(&client, &ns).await == IMAGE_2).then_some(()) }
    })
    .await;
    let applied_at = std::time::Instant::now();
    // ...then, past the 10 s health timeout, rolled back.
    let status = f
        .wait_status("the rollback", Duration::from_secs(40), |s| {
            (s["rollbacks"] == 1 && s["revision"] == first.as_str()).then(|| s.clone())
        })
        .await;
    let after = applied_at.elapsed();
    assert!(
        after >= Duration::from_secs(8),
        "rolled back after {after:?}, before the health timeout"
    );
    assert_eq!(status["failedRevision"], bad.as_str());
    assert_eq!(status["sourceRevision"], bad.as_str());
    assert_eq!(status["lastHealthyRevision"], first.as_str());
    // Checked at the end, so the rest of the scenario runs either way.
    let rollback_error = status["lastError"].as_str().unwrap_or_default().to_owned();
    assert!(
        records(&status)
            .iter()
            .any(|r| r["rolledBackFrom"] == bad.as_str()),
        "a sync record has rolledBackFrom {bad}: {:?}",
        records(&status)
            .iter()
            .map(|r| (
                r["revision"].clone(),
                r["reason"].clone(),
                r["rolledBackFrom"].clone()
            ))
            .collect::<Vec<_>>()
    );
    support::eventually("the first image to be back", CHANGE, || {
        let client = client.clone();
        let ns = f.tier.clone();
        async move { (image_of(&client, &ns).await == IMAGE_1).then_some(()) }
    })
    .await;
    let status = f.wait_synced_healthy(&first, CHANGE).await;
    assert_eq!(status["rollbacks"], 1);
    let state = state_configmap(&client, &f).await.expect("state");
    assert_eq!(state.get("failedRevision"), Some(&bad), "{state:?}");
    assert_eq!(state.get("rollbacks").map(String::as_str), Some("1"));

    // Not retried: the image stays the first one over more reconciles.
    let s = f.wait_reconciles(2, CHANGE).await;
    assert_eq!(
        image_of(&client, &f.tier).await,
        IMAGE_1,
        "the rolled-back revision was deployed again"
    );
    assert_eq!(s["revision"], first.as_str());
    assert_eq!(s["rollbacks"], 1);

    // A fix moves the ref: deployed.
    f.write_files(&vec![(
        "base/deployment.yaml".to_owned(),
        deployment(IMAGE_3, false),
    )]);
    let fixed = f.commit("api 1.4.4");
    let status = f.wait_synced_healthy(&fixed, CHANGE).await;
    assert_eq!(image_of(&client, &f.tier).await, IMAGE_3);
    assert_eq!(status["rollbacks"], 1);
    assert_eq!(status["lastHealthyRevision"], fixed.as_str());

    // The product sets lastError to "revision … did not become healthy within 10s; first: …;
    // rolled back" when it rolls back: right after the rollback, the status must say why.
    assert!(
        rollback_error.contains("did not become healthy within 10s")
            && rollback_error.contains("rolled back"),
        "after the rollback, lastError says why: {rollback_error:?}"
    );
}

/// `n` ConfigMaps `many-<from>` .. in one multi-document file.
fn many_configmaps(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| configmap(&format!("many-{i:03}"), &[]))
        .collect::<Vec<_>>()
        .join("---\n")
}

async fn labelled_configmaps(client: &Client, tier: &str) -> Vec<String> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), tier);
    match cms.list(&selector(tier)).await {
        Ok(l) => l.into_iter().map(|c| c.name_any()).collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_apply_converges_after_restart_and_prunes_exactly() {
    const TOTAL: usize = 300;
    let client = support::client().await;
    let base = vec![
        ("base/many-a.yaml".to_owned(), many_configmaps(0, 100)),
        ("base/many-b.yaml".to_owned(), many_configmaps(100, 100)),
        ("base/many-c.yaml".to_owned(), many_configmaps(200, 100)),
    ];
    let extra = TierExtra(vec!["apply: {concurrency: 2}".into()]);
    let mut f = Fixture::new("sigkill", base, extra);
    let first = f.head();
    f.start();
    // SIGKILL once some, not all, ConfigMaps exist.
    let seen = support::eventually("some ConfigMaps to be applied", FIRST_SYNC, || {
        let client = client.clone();
        let tier = f.tier.clone();
        async move {
            let n = labelled_configmaps(&client, &tier).await.len();
            (n > 0).then_some(n)
        }
    })
    .await;
    f.kill();
    let at_kill = labelled_configmaps(&client, &f.tier).await.len();
    eprintln!("killed with {seen} ConfigMaps seen, {at_kill} after the kill");
    assert!(
        at_kill < TOTAL,
        "the apply finished before the kill ({at_kill} ConfigMaps): the test proves nothing"
    );

    f.start();
    let status = f.wait_synced_healthy(&first, Duration::from_secs(90)).await;
    assert_eq!(status["objects"], TOTAL + 1);
    let names = labelled_configmaps(&client, &f.tier).await;
    let unique: BTreeSet<&String> = names.iter().collect();
    assert_eq!(names.len(), unique.len(), "duplicated names");
    let expected: BTreeSet<String> = (0..TOTAL).map(|i| format!("many-{i:03}")).collect();
    let got: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(got, expected);
    let state = state_configmap(&client, &f).await.expect("state");
    assert_eq!(
        state.get("inventoryCount").map(String::as_str),
        Some("301"),
        "the inventory holds the 300 ConfigMaps and the Namespace"
    );
    assert_eq!(state.get("lastAppliedRevision"), Some(&first));

    // 100 of 301 leave git (33%, under the limit): exactly those are pruned.
    f.remove_files(&["base/many-c.yaml"]);
    let second = f.commit("remove many-200 .. many-299");
    f.wait_synced_healthy(&second, Duration::from_secs(60))
        .await;
    let remaining: BTreeSet<String> =
        support::eventually("100 ConfigMaps to be pruned", CHANGE, || {
            let client = client.clone();
            let tier = f.tier.clone();
            async move {
                let names = labelled_configmaps(&client, &tier).await;
                (names.len() == 200).then(|| names.into_iter().collect())
            }
        })
        .await;
    let expected: BTreeSet<String> = (0..200).map(|i| format!("many-{i:03}")).collect();
    assert_eq!(remaining, expected);
    let state = support::eventually("the inventory to shrink", CHANGE, || {
        let client = client.clone();
        let f = &f;
        async move {
            let s = state_configmap(&client, f).await?;
            (s.get("inventoryCount").map(String::as_str) == Some("201")).then_some(s)
        }
    })
    .await;
    assert_eq!(state.get("lastAppliedRevision"), Some(&second));
    let s = f.status();
    let pruned: u64 = records(&s)
        .iter()
        .filter(|r| r["revision"] == second.as_str())
        .filter_map(|r| r["outcomes"]["pruned"].as_u64())
        .sum();
    assert_eq!(pruned, 100, "the syncs of the second revision pruned 100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_daemon_with_exit_code_0() {
    let (mut f, _) = Fixture::new("sigterm", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;
    let started = std::time::Instant::now();
    let status = f
        .terminate(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "gitopsd exited {status} {:?} after SIGTERM",
        started.elapsed()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    let log = reconcile_support::tail(f.old_logs.last().expect("a log"), 20);
    assert!(log.contains("stopped"), "the log says it stopped: {log}");
}

/// The field manager of the controller that fights gitopsd in the test below.
const FIGHTER: &str = "test-fight-controller";

/// The sum of the series of metric `name` whose labels contain `with` (e.g. `tier="x"`).
fn metric_sum(metrics: &BTreeMap<String, f64>, name: &str, with: &str) -> f64 {
    metrics
        .iter()
        .filter(|(series, _)| {
            series
                .strip_prefix(name)
                .is_some_and(|labels| labels.starts_with('{') && labels.contains(with))
        })
        .map(|(_, n)| n)
        .sum()
}

/// The series that grew from `before` to `after`, and by how much.
fn growth(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<String> {
    after
        .iter()
        .filter_map(|(k, n)| {
            let d = n - before.get(k).copied().unwrap_or(0.0);
            (d > 0.0).then(|| format!("{k}: {d}"))
        })
        .collect()
}

/// Reconciles of the tier (every reconcile counts one sync, whatever its result) and requests
/// to the API server, watches left out (one is held open, and restarted on the client's own
/// schedule), from the daemon's /metrics.
fn reconciles_and_requests(f: &Fixture) -> (f64, f64, BTreeMap<String, f64>) {
    let m = f.metrics();
    let reconciles = metric_sum(&m, "gitopsd_sync_total", &format!("tier=\"{}\"", f.tier));
    let requests: BTreeMap<String, f64> = m
        .into_iter()
        .filter(|(s, _)| s.starts_with("gitopsd_kube_requests_total{") && !s.contains("watch"))
        .collect();
    (reconciles, requests.values().sum(), requests)
}

/// Another controller fights gitopsd over a field: a loop that puts its own value back into the
/// ConfigMap `api-config` once a second, as its own field manager. gitopsd corrects it as many
/// times as the fight guard allows (`policy::FIGHT_LIMIT`), then leaves the field alone and
/// reports it unconvergeable naming that manager; meanwhile its requests per reconcile stay
/// those of a quiet tier, so its request rate is bounded by the reconcile interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_fighting_over_a_field_is_given_up_after_the_configured_corrections() {
    let client = support::client().await;
    let extra = TierExtra(vec![
        "policy: {critical: apply, high: apply, medium: apply, low: apply}".into(),
    ]);
    let (mut f, _) = Fixture::new("fight", base_files(IMAGE_1), extra)
        .started(FIRST_SYNC)
        .await;

    // What a quiet reconcile of this tier costs, before the fight.
    let (r0, q0, _) = reconciles_and_requests(&f);
    f.wait_reconciles(3, CHANGE).await;
    let (r1, q1, at_start) = reconciles_and_requests(&f);
    let quiet = (q1 - q0) / (r1 - r0);
    eprintln!("quiet: {} requests in {} reconciles", q1 - q0, r1 - r0);

    let stop = tokio_util::sync::CancellationToken::new();
    let patches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fighter = {
        let (stop, patches) = (stop.clone(), patches.clone());
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.tier);
        let params = PatchParams {
            field_manager: Some(FIGHTER.into()),
            ..PatchParams::default()
        };
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Ok(cm) = cms.get("api-config").await {
                    let greeting = cm.data.unwrap_or_default().remove("greeting");
                    if greeting.as_deref() != Some("fight") {
                        let patch = json!({"data": {"greeting": "fight"}});
                        if cms
                            .patch("api-config", &params, &Patch::Merge(&patch))
                            .await
                            .is_ok()
                        {
                            patches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let (u, status) = f
        .wait_status("the fight given up", Duration::from_secs(120), |s| {
            s["unconvergeable"]
                .as_array()?
                .iter()
                .find(|u| u["object"]["name"] == "api-config" && u["path"] == "data.greeting")
                .map(|u| (u.clone(), s.clone()))
        })
        .await;
    let limit = gitopsd::policy::FIGHT_LIMIT;
    assert_eq!(u["manager"], FIGHTER, "the other manager is named: {u}");
    assert_eq!(u["corrections"], limit, "{u}");
    assert_eq!(u["fought"], "field", "{u}");
    assert_eq!(
        status["sync"],
        "OutOfSync",
        "{}",
        reconcile_support::brief_status(&status)
    );
    let log = std::fs::read_to_string(&f.daemon().log).expect("read the daemon's log");
    assert!(
        log.lines()
            .any(|l| l.contains("unconvergeable drift") && l.contains(FIGHTER)),
        "the log names the other manager: {}",
        f.daemon().log_tail(20)
    );

    // Given up: over more reconciles (the fighter still running), gitopsd corrects nothing
    // more, and costs what a quiet reconcile costs.
    let (r2, q2, before) = reconciles_and_requests(&f);
    let fought = growth(&at_start, &before);
    eprintln!(
        "the fight until given up: {} requests in {} reconciles ({fought:?})",
        q2 - q1,
        r2 - r1,
    );
    // The fight costs a few requests per correction (reads, a conflicting apply, the forced
    // one; about 7 on the local cluster), so a bounded number in all, whatever its length.
    assert!(
        q2 - q1 <= (10 * limit) as f64 + quiet * (r2 - r1),
        "{} requests for {limit} corrections: {fought:?}",
        q2 - q1
    );
    let s = f.wait_reconciles(3, CHANGE).await;
    let (r3, q3, after) = reconciles_and_requests(&f);
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &f.tier)
        .get("api-config")
        .await
        .expect("get api-config");
    stop.cancel();
    let _ = fighter.await;
    let delta = growth(&before, &after);
    eprintln!(
        "during the held fight: {} requests in {} reconciles ({delta:?}); quiet: {quiet} per reconcile",
        q3 - q2,
        r3 - r2
    );
    assert_eq!(
        cm.data
            .unwrap_or_default()
            .get("greeting")
            .map(String::as_str),
        Some("fight"),
        "the fighter's value stays"
    );
    assert_eq!(
        patches.load(std::sync::atomic::Ordering::SeqCst),
        limit + 1,
        "the fighter wrote once, then once after each of gitopsd's {limit} corrections"
    );
    assert!(
        s["unconvergeable"]
            .as_array()
            .is_some_and(|u| !u.is_empty()),
        "still reported: {}",
        reconcile_support::brief_status(&s)
    );
    assert!(
        (q3 - q2) / (r3 - r2) <= quiet + 1.0,
        "a given-up fight costs what a quiet reconcile does: {} requests in {} reconciles, quiet {quiet}: {delta:?}",
        q3 - q2,
        r3 - r2
    );
}
