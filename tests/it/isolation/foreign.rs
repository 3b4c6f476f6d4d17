//! Foreign security additions are drift (issue 13, item 9): a security-weakening field another
//! field manager adds to a managed object is drift whether or not the manifest sets it, found
//! by the daemon and `gitopsd diff`, left alone under `alert` and removed under `apply`, with
//! the fight guard giving up on a writer that keeps adding it back.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::reconcile_support::{Files, Fixture, IMAGE_1, TierExtra, base_files, http_get, records};
use crate::support::{self, gitopsd, stderr, stdout};

const FIRST_SYNC: Duration = Duration::from_secs(60);
const CHANGE: Duration = Duration::from_secs(60);
const MANAGER: &str = "kubectl-patch";
const PRIVILEGED: &str = "spec.template.spec.containers[name=api].securityContext.privileged";

/// A strategic merge patch by `kubectl-patch`, as `kubectl patch` sends it.
async fn patch_as_kubectl<K>(api: &Api<K>, name: &str, patch: &Value)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        },
        &Patch::Strategic(patch),
    )
    .await
    .unwrap_or_else(|e| panic!("kubectl-patch {name}: {e}"));
}

fn privileged_patch() -> Value {
    json!({"spec": {"template": {"spec": {"containers": [
        {"name": "api", "securityContext": {"privileged": true}}
    ]}}}})
}

async fn live_deployment(client: &Client, ns: &str) -> Value {
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    serde_json::to_value(deps.get("api").await.expect("get deployment api")).expect("as JSON")
}

fn privileged(d: &Value) -> Option<Value> {
    d.pointer("/spec/template/spec/containers/0/securityContext/privileged")
        .cloned()
}

/// `gitopsd_kube_requests_total` by `verb code`, from the daemon's /metrics.
fn kube_requests(f: &Fixture) -> std::collections::BTreeMap<String, f64> {
    let (_, body) = http_get(f.port, "/metrics").unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    body.lines()
        .filter(|l| l.starts_with("gitopsd_kube_requests_total{"))
        .filter_map(|l| {
            let (labels, n) = l.rsplit_once(' ')?;
            let labels = labels.trim_start_matches("gitopsd_kube_requests_total");
            Some((labels.to_owned(), n.parse().ok()?))
        })
        .collect()
}

/// The foreign security items of a drift report (the status's `drift`, or `diff -o json`).
fn foreign_items(report: &Value) -> Vec<Value> {
    report["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i["rule"] == "foreign-security-field" || !i["foreign"].is_null())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn item_at<'a>(items: &'a [Value], path: &str) -> Option<&'a Value> {
    items.iter().find(|i| {
        i["paths"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == path))
    })
}

/// Proves the daemon reconciled again: commits a change to a ConfigMap of its own and waits
/// until a sync of that commit is recorded (drift of the other objects is detected in it).
async fn another_sync(f: &Fixture, n: usize) -> Value {
    f.write_files(&vec![(
        "base/later.yaml".to_owned(),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: later\ndata:\n  n: \"{n}\"\n"),
    )]);
    let sha = f.commit(&format!("a later commit ({n})"));
    f.wait_status("a sync of a later commit", CHANGE, |s| {
        records(s)
            .iter()
            .any(|r| r["revision"] == sha.as_str())
            .then(|| s.clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_privileged_container_patched_in_is_critical_drift_and_left_alone_under_alert() {
    let client = support::client().await;
    let (f, _) = Fixture::new(
        "foreign-alert",
        base_files(IMAGE_1),
        TierExtra(vec!["policy: {critical: alert}".into()]),
    )
    .started(FIRST_SYNC)
    .await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &f.tier);

    // The attack: the manifest does not set `privileged`; a separate client adds it.
    patch_as_kubectl(&deps, "api", &privileged_patch()).await;

    let status = f
        .wait_status("the foreign privileged field as drift", CHANGE, |s| {
            item_at(&foreign_items(&s["drift"]), PRIVILEGED).map(|_| s.clone())
        })
        .await;
    let items = foreign_items(&status["drift"]);
    let item = item_at(&items, PRIVILEGED).expect("the item");
    assert_eq!(item["severity"], "critical", "{item}");
    assert_eq!(item["rule"], "foreign-security-field", "{item}");
    assert_eq!(item["action"], "alert", "{item}");
    assert_eq!(item["foreign"]["manager"], MANAGER, "{item}");
    assert_eq!(item["live"], true, "{item}");
    assert!(item["desired"].is_null(), "{item}");
    assert_eq!(status["sync"], "OutOfSync", "{status}");
    let alerted = status["alerts"].as_array().cloned().unwrap_or_default();
    assert!(
        item_at(&alerted, PRIVILEGED).is_some(),
        "alerts: {alerted:?}"
    );

    // `gitopsd diff`, text and JSON, reports the same, naming the path and the manager.
    let config = f.config.to_string_lossy().into_owned();
    let kubeconfig = support::kubeconfig().to_string_lossy().into_owned();
    let base = [
        "diff",
        "--tier",
        &f.tier,
        "--config",
        &config,
        "--kubeconfig",
        &kubeconfig,
    ];
    let out = gitopsd(&base);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    let line = text
        .lines()
        .find(|l| l.contains(PRIVILEGED))
        .unwrap_or_else(|| panic!("no line names {PRIVILEGED}:\n{text}"));
    assert!(
        line.contains("critical")
            && line.contains("rule foreign-security-field")
            && line.contains("set by kubectl-patch"),
        "{line}"
    );
    let mut json_args = base.to_vec();
    json_args.extend(["-o", "json"]);
    let out = gitopsd(&json_args);
    let report: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("diff -o json ({e}): {}\n{}", stdout(&out), stderr(&out)));
    let items = foreign_items(&report);
    let item = item_at(&items, PRIVILEGED).unwrap_or_else(|| panic!("{report}"));
    assert_eq!(item["severity"], "critical");
    assert_eq!(item["foreign"]["manager"], MANAGER);

    // Left alone under `alert`: after a later sync, the field is still there.
    another_sync(&f, 1).await;
    let live = live_deployment(&client, &f.tier).await;
    assert_eq!(
        privileged(&live),
        Some(json!(true)),
        "alert must not correct"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_apply_the_foreign_field_is_removed_and_a_writer_that_keeps_adding_it_is_given_up() {
    let client = support::client().await;
    let (f, _) = Fixture::new("foreign-apply", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &f.tier);

    let before = kube_requests(&f);
    // The same manager also sets a harmless annotation, which must survive the correction.
    let mut patch = privileged_patch();
    patch["metadata"] = json!({"annotations": {"example.com/note": "kept"}});
    patch_as_kubectl(&deps, "api", &patch).await;

    let live = support::eventually("privileged removed", CHANGE, || async {
        let d = live_deployment(&client, &f.tier).await;
        privileged(&d).is_none().then_some(d)
    })
    .await;
    assert_eq!(
        live.pointer("/metadata/annotations/example.com~1note"),
        Some(&json!("kept")),
        "the other manager's other field is untouched"
    );
    // The removal is recorded as a correction, not as a failure.
    let status = f
        .wait_status("the correction recorded", CHANGE, |s| {
            records(s)
                .iter()
                .any(|r| r["outcomes"]["configured"].as_u64().unwrap_or(0) > 0)
                .then(|| s.clone())
        })
        .await;
    assert!(status["lastError"].is_null(), "{status}");
    let after = kube_requests(&f);
    let delta: Vec<String> = after
        .iter()
        .filter_map(|(k, n)| {
            let d = n - before.get(k).copied().unwrap_or(0.0);
            (d > 0.0).then(|| format!("{k}: {d}"))
        })
        .collect();
    eprintln!("kube requests from the attack to its correction: {delta:?}");

    // A controller that keeps adding it back: given up after a few corrections, named.
    let stop = tokio_util::sync::CancellationToken::new();
    let fighter = {
        let stop = stop.clone();
        let deps = deps.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Ok(d) = deps.get("api").await {
                    let v = serde_json::to_value(d).unwrap_or_default();
                    if privileged(&v).is_none() {
                        patch_as_kubectl(&deps, "api", &privileged_patch()).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let status = f
        .wait_status("the fight given up", Duration::from_secs(120), |s| {
            s["unconvergeable"]
                .as_array()
                .and_then(|u| u.iter().find(|u| u["path"] == PRIVILEGED).cloned())
                .map(|u| (u, s.clone()))
        })
        .await;
    stop.cancel();
    let _ = fighter.await;
    let (given_up, status) = status;
    assert_eq!(given_up["manager"], MANAGER, "{given_up}");
    assert_eq!(given_up["severity"], "critical", "{given_up}");
    assert_eq!(status["sync"], "OutOfSync", "{status}");
    // Given up means left in place: after a later sync the field is still there.
    another_sync(&f, 1).await;
    let live = live_deployment(&client, &f.tier).await;
    assert_eq!(privileged(&live), Some(json!(true)));
}

const INIT_DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  labels: {app: api}
spec:
  replicas: 1
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
      initContainers:
        - name: setup
          image: registry.example.com/shop/setup:1.0
      containers:
        - name: api
          image: registry.example.com/shop/api:1.4.2
"#;

const ROLE: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: api
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list]
"#;

const ROLE_BINDING: &str = r#"apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: api
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: api
subjects:
  - kind: ServiceAccount
    name: api
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_variant_of_a_foreign_security_addition_is_critical_drift() {
    let client = support::client().await;
    let files: Files = vec![
        ("base/deployment.yaml".into(), INIT_DEPLOYMENT.into()),
        ("base/role.yaml".into(), ROLE.into()),
        ("base/rolebinding.yaml".into(), ROLE_BINDING.into()),
    ];
    let (f, _) = Fixture::new(
        "foreign-variants",
        files,
        TierExtra(vec!["policy: {critical: alert}".into()]),
    )
    .started(FIRST_SYNC)
    .await;
    let ns = f.tier.clone();
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let roles: Api<Role> = Api::namespaced(client.clone(), &ns);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);

    patch_as_kubectl(
        &deps,
        "api",
        &json!({"spec": {"template": {"spec": {
            "hostNetwork": true,
            "volumes": [{"name": "node-root", "hostPath": {"path": "/"}}],
            "initContainers": [{"name": "setup",
                "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
            "containers": [
                {"name": "api", "securityContext": {"runAsUser": 0}},
                {"name": "miner", "image": "registry.example.com/evil/miner:1"}
            ]
        }}}}),
    )
    .await;
    let mut role = serde_json::to_value(roles.get("api").await.expect("role")).expect("JSON");
    role["rules"]
        .as_array_mut()
        .expect("rules")
        .push(json!({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}));
    patch_as_kubectl(&roles, "api", &json!({"rules": role["rules"]})).await;
    let mut binding =
        serde_json::to_value(bindings.get("api").await.expect("binding")).expect("JSON");
    binding["subjects"]
        .as_array_mut()
        .expect("subjects")
        .push(json!({"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}));
    patch_as_kubectl(&bindings, "api", &json!({"subjects": binding["subjects"]})).await;

    let s = "spec.template.spec";
    let wanted: Vec<(String, &str)> = vec![
        (format!("{s}.hostNetwork"), "Deployment"),
        (format!("{s}.volumes[name=node-root]"), "Deployment"),
        (
            format!("{s}.initContainers[name=setup].securityContext.capabilities.add"),
            "Deployment",
        ),
        (
            format!("{s}.containers[name=api].securityContext.runAsUser"),
            "Deployment",
        ),
        (format!("{s}.containers[name=miner]"), "Deployment"),
    ];
    let status = f
        .wait_status("every variant as drift", CHANGE, |st| {
            let items = st["drift"]["items"].as_array()?;
            let deployment_found = wanted.iter().all(|(p, _)| item_at(items, p).is_some());
            let rbac_found = ["Role", "RoleBinding"].iter().all(|k| {
                items
                    .iter()
                    .any(|i| i["kind"] == *k && i["severity"] == "critical")
            });
            (deployment_found && rbac_found).then(|| st.clone())
        })
        .await;
    let items = status["drift"]["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (path, kind) in &wanted {
        let item = item_at(&items, path).expect("found above");
        assert_eq!(item["kind"], *kind);
        assert_eq!(item["severity"], "critical", "{item}");
        assert_eq!(item["rule"], "foreign-security-field", "{item}");
        assert_eq!(item["foreign"]["manager"], MANAGER, "{item}");
        assert_eq!(item["action"], "alert", "{item}");
    }
    for kind in ["Role", "RoleBinding"] {
        let item = items
            .iter()
            .find(|i| i["kind"] == kind && i["severity"] == "critical")
            .expect("found above");
        let path = item["paths"][0].as_str().unwrap_or_default();
        assert!(
            path.starts_with("rules") || path.starts_with("subjects"),
            "{kind}: {item}"
        );
    }
    // Under `alert` nothing was taken away: the added subject is still bound after a later sync.
    another_sync(&f, 1).await;
    let live = bindings.get("api").await.expect("binding");
    assert!(
        live.subjects
            .unwrap_or_default()
            .iter()
            .any(|s| s.name == "mallory"),
        "alert must not correct"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_apply_every_variant_is_taken_away_and_the_manifests_own_fields_stay() {
    let client = support::client().await;
    let files: Files = vec![
        ("base/deployment.yaml".into(), INIT_DEPLOYMENT.into()),
        ("base/rolebinding.yaml".into(), ROLE_BINDING.into()),
    ];
    let (f, _) = Fixture::new("foreign-apply-all", files, TierExtra::default())
        .started(FIRST_SYNC)
        .await;
    let ns = f.tier.clone();
    let deps: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());

    patch_as_kubectl(
        &deps,
        "api",
        &json!({"spec": {"template": {"spec": {
            "hostNetwork": true,
            "volumes": [{"name": "node-root", "hostPath": {"path": "/"}}],
            "initContainers": [{"name": "setup",
                "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
            "containers": [
                {"name": "miner", "image": "registry.example.com/evil/miner:1"},
                {"name": "api", "volumeMounts": [{"name": "node-root", "mountPath": "/host"}]}
            ]
        }}}}),
    )
    .await;
    let mut binding =
        serde_json::to_value(bindings.get("api").await.expect("binding")).expect("JSON");
    binding["subjects"]
        .as_array_mut()
        .expect("subjects")
        .push(json!({"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}));
    patch_as_kubectl(&bindings, "api", &json!({"subjects": binding["subjects"]})).await;
    // The tier's own Namespace relabelled to lift Pod Security admission.
    patch_as_kubectl(
        &namespaces,
        &ns,
        &json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}),
    )
    .await;

    let spec = support::eventually("every foreign field removed", CHANGE, || async {
        let d = live_deployment(&client, &ns).await;
        let spec = d["spec"]["template"]["spec"].clone();
        let names: Vec<&str> = spec["containers"]
            .as_array()
            .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        let clean = names == ["api"]
            && spec.pointer("/containers/0/volumeMounts").is_none()
            && spec["hostNetwork"].as_bool() != Some(true)
            && spec["volumes"].is_null()
            && spec
                .pointer("/initContainers/0/securityContext/capabilities/add")
                .is_none();
        clean.then_some(spec)
    })
    .await;
    // What the manifest sets is still there.
    assert_eq!(spec["initContainers"][0]["name"], "setup", "{spec}");
    assert_eq!(spec["securityContext"]["runAsUser"], 10001, "{spec}");
    support::eventually("the extra subject taken back", CHANGE, || async {
        let b = bindings.get("api").await.expect("binding");
        let names: Vec<String> = b
            .subjects
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.name)
            .collect();
        (names == ["api"]).then_some(())
    })
    .await;
    support::eventually("the Pod Security label removed", CHANGE, || async {
        let n = namespaces.get(&ns).await.expect("namespace");
        let labels = n.metadata.labels.unwrap_or_default();
        (!labels.contains_key("pod-security.kubernetes.io/enforce")).then_some(())
    })
    .await;
    let status = f
        .wait_status("no drift left", CHANGE, |s| {
            (s["drift"]["items"].as_array().is_some_and(Vec::is_empty)).then(|| s.clone())
        })
        .await;
    assert!(status["lastError"].is_null(), "{status}");
}
