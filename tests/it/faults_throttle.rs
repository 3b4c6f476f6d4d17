//! Faults from API priority and fairness: a tier whose writer (its ServiceAccount, which
//! gitopsd impersonates) lands in a priority level of its own with three seats and no queue,
//! and the seats are kept busy by slow requests of the same ServiceAccount (creates held up
//! by a webhook that never answers), so every apply is refused with 429 for a while. gitopsd
//! retries with jittered backoff, reports the throttled objects by name, and converges once
//! the storm passes: every object in, Synced, each object applied successfully once.

use crate::faults_support;
use crate::reconcile_support;
use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use faults_support::{HANG_LABEL, hung_webhook};
use gitopsd::live::{ApiLive, ObjectKey};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, PostParams};
use reconcile_support::{Fixture, TierExtra, configmap, http_get};
use serde_json::{Value, json};
use support::ClusterScoped;

const OBJECTS: usize = 120;
const SYNC: Duration = Duration::from_secs(300);

async fn apply(live: &ApiLive, guard: &mut ClusterScoped, manifest: Value) {
    let key = ObjectKey::of(&manifest);
    if key.namespace.is_none() && key.kind != "Namespace" {
        guard.0.push(key.clone());
    }
    support::apply_as(live, "faults-test", &key, &manifest).await;
}

/// The sum of metric `name`'s series whose labels contain `label`.
fn series_sum(metrics: &str, name: &str, label: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// `gitopsd_kube_requests_total` answered with `code` to `verb` requests.
fn requests(metrics: &str, code: &str, verb: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("gitopsd_kube_requests_total{"))
        .filter(|l| {
            l.contains(&format!("code=\"{code}\"")) && l.contains(&format!("verb=\"{verb}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// A client that acts as `user` (impersonated by the test's admin).
async fn client_as(user: &str) -> kube::Client {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(support::kubeconfig()).expect("read the kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kubeconfig");
    config.auth_info.impersonate = Some(user.to_owned());
    kube::Client::try_from(config).expect("client")
}

/// Requests executing in priority level `name`, from the API server's debug dump.
async fn executing(client: &kube::Client, name: &str) -> Option<u64> {
    let req = http::Request::get("/debug/api_priority_and_fairness/dump_priority_levels")
        .body(Vec::new())
        .ok()?;
    let text = client.request_text(req).await.ok()?;
    let row = text.lines().find(|l| l.starts_with(&format!("{name},")))?;
    // PriorityLevelName, ActiveQueues, IsIdle, IsQuiescing, WaitingRequests, ExecutingRequests
    row.split(',').nth(5)?.trim().parse().ok()
}

/// Keeps the priority level's seats busy until `stop`: creates, as the ServiceAccount, of
/// ConfigMaps the hung webhook holds for its whole timeout; a refused one is sent again.
fn hold_seats(sa: kube::Client, ns: &str, mark: &str, stop: Arc<AtomicBool>) {
    for holder in 0..6 {
        let api: Api<ConfigMap> = Api::namespaced(sa.clone(), ns);
        let (mark, stop) = (mark.to_owned(), stop.clone());
        tokio::spawn(async move {
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": format!("holder-{holder}"), "labels": {HANG_LABEL: mark}},
            }))
            .expect("holder ConfigMap");
            while !stop.load(Ordering::Relaxed) {
                let _ = api.create(&PostParams::default(), &cm).await;
            }
        });
    }
}

/// The tier's ConfigMaps on the cluster.
async fn cms_in(client: &kube::Client, tier: &str) -> usize {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), tier);
    cms.list(&ListParams::default().labels(&format!("gitopsd.io/tier={tier}")))
        .await
        .expect("list ConfigMaps")
        .items
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_from_priority_and_fairness_is_retried_and_converges_without_reapplying() {
    support::with_namespace("throttle", |client, sa_ns| async move {
        let live = ApiLive::new(client.clone());
        let mut guard = ClusterScoped(Vec::new());
        let files = (0..OBJECTS)
            .map(|i| (format!("base/cm-{i:03}.yaml"), configmap(&format!("cm-{i:03}"), &[])))
            .collect();
        let mut f = Fixture::new(
            "throttle",
            files,
            TierExtra(vec![format!("serviceAccount: {sa_ns}/tier-sa")]),
        );
        let tier = f.tier.clone();
        let sa_user = format!("system:serviceaccount:{sa_ns}:tier-sa");
        let subject = json!([{"kind": "ServiceAccount", "name": "tier-sa", "namespace": sa_ns}]);
        let name = format!("gitopsd-test-{tier}");

        // The writer: may write ConfigMaps in the tier's namespace (the built-in `edit`
        // role) and the tier's Namespace itself, which exists first and the tier adopts.
        apply(&live, &mut guard, json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "tier-sa", "namespace": sa_ns}})).await;
        apply(&live, &mut guard, json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": tier, "labels": {"gitopsd.io/tier": tier}}})).await;
        apply(&live, &mut guard, json!({"apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding", "metadata": {"name": "tier-edit", "namespace": tier},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": subject})).await;
        apply(&live, &mut guard, json!({"apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole", "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"],
                       "resourceNames": [tier], "verbs": ["get", "create", "patch"]}]})).await;
        apply(&live, &mut guard, json!({"apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": subject})).await;
        let config = std::fs::read_to_string(&f.config).expect("read gitopsd.yaml");
        let config = config.replacen(
            "    prune: true\n",
            &format!("    prune: true\n    adopt: [{{kind: Namespace, name: {tier}}}]\n"),
            1,
        );
        std::fs::write(&f.config, config).expect("write gitopsd.yaml");

        // The storm: one seat's worth of concurrency for this ServiceAccount, and no queue.
        apply(&live, &mut guard, json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "PriorityLevelConfiguration", "metadata": {"name": name},
            "spec": {"type": "Limited", "limited": {
                "nominalConcurrencyShares": 1, "lendablePercent": 0, "borrowingLimitPercent": 0,
                "limitResponse": {"type": "Reject"}}}})).await;
        apply(&live, &mut guard, json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1",
            "kind": "FlowSchema", "metadata": {"name": name},
            "spec": {"priorityLevelConfiguration": {"name": name}, "matchingPrecedence": 800,
                "distinguisherMethod": {"type": "ByUser"},
                "rules": [{"subjects": [{"kind": "ServiceAccount",
                        "serviceAccount": {"name": "tier-sa", "namespace": sa_ns}}],
                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                       "namespaces": ["*"], "clusterScope": true}]}]}})).await;
        let hook = hung_webhook(&client, &tier, 10).await;
        let stop = Arc::new(AtomicBool::new(false));
        hold_seats(client_as(&sa_user).await, &tier, &tier, stop.clone());
        support::eventually("the ServiceAccount's seats to be all busy", SYNC, || {
            let (client, name) = (client.clone(), name.clone());
            async move { (executing(&client, &name).await? >= 3).then_some(()) }
        })
        .await;

        let first = f.head();
        f.start();
        let status = f
            .wait_status("a sync that failed on throttled applies", SYNC, |s| {
                let throttled = s["lastSync"]["failures"].as_array().is_some_and(|fs| {
                    fs.iter().any(|f| {
                        f["message"].as_str().is_some_and(|m| m.contains("429"))
                    })
                });
                (s["sync"] != "Synced" && throttled).then(|| s.clone())
            })
            .await;
        let message = status["lastSync"]["failures"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("throttling") && message.contains("FlowSchema"),
            "the refusal says what happened and where to look: {message}"
        );
        let held = cms_in(&client, &tier).await;
        assert!(held < OBJECTS, "the storm held applies back: {held} of {OBJECTS} in");

        // The storm passes.
        stop.store(true, Ordering::Relaxed);
        drop(hook);
        f.wait_synced_healthy(&first, SYNC).await;
        let port = f.port;
        let (_, metrics) = http_get(port, "/metrics").expect("GET /metrics");
        let throttled_writes = requests(&metrics, "429", "patch");
        assert!(
            throttled_writes > 0,
            "the storm happened: some applies were refused with 429\n{metrics}"
        );
        assert_eq!(cms_in(&client, &tier).await, OBJECTS, "every ConfigMap went in");
        // Each object applied once, plus the Namespace: what a throttled sync got in is not
        // applied again by the sync that finishes the job.
        let applied: u64 = ["created", "configured", "unchanged"]
            .iter()
            .map(|a| series_sum(&metrics, "gitopsd_apply_objects_total", &format!("action=\"{a}\"")))
            .sum();
        assert_eq!(
            applied as usize,
            OBJECTS + 1,
            "objects applied: one apply each ({throttled_writes} writes refused with 429)\n{metrics}"
        );
        drop(f);
        drop(guard);
        let _ = sa_user;
    })
    .await;
}
