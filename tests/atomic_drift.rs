//! Issue 14, items 5 and 6, against the real binary on the local cluster.
//!
//! Item 5: drift inside an atomic map or struct (a NetworkPolicy's `spec.podSelector`, a
//! Service's `spec.selector`, an env var's `valueFrom.secretKeyRef`) changed by another field
//! manager is corrected: the server names the atomic parent in its conflict, and gitopsd takes
//! back exactly that, leaving the other manager's other fields alone; a writer that keeps
//! changing it back is given up by the fight guard.
//!
//! Item 6: an extra object's action says what really happens (it is reported, never applied),
//! and one rule decides when drift leaves a tier OutOfSync, seen the same in the status API,
//! /metrics and `gitopsd diff`.

mod git_support;
mod reconcile_support;
mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use reconcile_support::{Files, Fixture, SERVICE, TierExtra, configmap, http_get, records};
use serde_json::{Value, json};

const FIRST_SYNC: Duration = Duration::from_secs(60);
const CHANGE: Duration = Duration::from_secs(60);
/// The manager `kubectl patch` writes as.
const PATCHER: &str = "kubectl-patch";
/// Another manager, owning a field gitopsd's manifests do not set.
const OTHER: &str = "other-team";

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
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
      containers:
        - name: api
          image: registry.example.com/shop/api:1.4.2
          env:
            - name: PASSWORD
              valueFrom:
                secretKeyRef: {name: db, key: password}
"#;

const NETWORK_POLICY: &str = r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: api
spec:
  podSelector:
    matchLabels: {app: api}
  policyTypes: [Ingress]
  ingress:
    - from:
        - podSelector:
            matchLabels: {app: web}
"#;

fn atomic_files() -> Files {
    vec![
        ("base/deployment.yaml".to_owned(), DEPLOYMENT.to_owned()),
        ("base/service.yaml".to_owned(), SERVICE.to_owned()),
        (
            "base/networkpolicy.yaml".to_owned(),
            NETWORK_POLICY.to_owned(),
        ),
    ]
}

fn params(manager: &str) -> PatchParams {
    PatchParams {
        field_manager: Some(manager.into()),
        ..Default::default()
    }
}

/// What the three objects hold at the atomic fields: (podSelector app, selector app, the
/// secret's name).
async fn atomic_values(client: &Client, ns: &str) -> (Value, Value, Value) {
    let np = live::<NetworkPolicy>(client, ns, "api").await;
    let svc = live::<Service>(client, ns, "api").await;
    let dep = live::<Deployment>(client, ns, "api").await;
    (
        np.pointer("/spec/podSelector/matchLabels/app")
            .cloned()
            .unwrap_or(Value::Null),
        svc.pointer("/spec/selector/app")
            .cloned()
            .unwrap_or(Value::Null),
        dep.pointer("/spec/template/spec/containers/0/env/0/valueFrom/secretKeyRef/name")
            .cloned()
            .unwrap_or(Value::Null),
    )
}

async fn live<K>(client: &Client, ns: &str, name: &str) -> Value
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let o = api
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"));
    serde_json::to_value(o).expect("as JSON")
}

/// The fieldsV1 of `manager`'s entry in the object's managedFields (operation Update: a
/// patch), or null.
fn owned_by(object: &Value, manager: &str) -> Value {
    object["metadata"]["managedFields"]
        .as_array()
        .and_then(|m| m.iter().find(|e| e["manager"] == manager))
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or(Value::Null)
}

/// The other manager's unrelated fields: an annotation on each object, set before the drift.
async fn other_team_annotates(client: &Client, ns: &str) {
    let patch = json!({"metadata": {"annotations": {"example.com/owner": OTHER}}});
    let p = Patch::Merge(&patch);
    Api::<NetworkPolicy>::namespaced(client.clone(), ns)
        .patch("api", &params(OTHER), &p)
        .await
        .expect("annotate the network policy");
    Api::<Service>::namespaced(client.clone(), ns)
        .patch("api", &params(OTHER), &p)
        .await
        .expect("annotate the service");
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch("api", &params(OTHER), &p)
        .await
        .expect("annotate the deployment");
}

/// The drift: `kubectl patch` changes each atomic field, and adds a label of its own in the
/// same patch (a field it keeps).
async fn kubectl_patches(client: &Client, ns: &str, value: &str) {
    let label = json!({"patched": "yes"});
    Api::<NetworkPolicy>::namespaced(client.clone(), ns)
        .patch(
            "api",
            &params(PATCHER),
            &Patch::Merge(&json!({"metadata": {"labels": label},
                "spec": {"podSelector": {"matchLabels": {"app": value}}}})),
        )
        .await
        .expect("patch the network policy");
    Api::<Service>::namespaced(client.clone(), ns)
        .patch(
            "api",
            &params(PATCHER),
            &Patch::Merge(&json!({"metadata": {"labels": label},
                "spec": {"selector": {"app": value}}})),
        )
        .await
        .expect("patch the service");
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            "api",
            &params(PATCHER),
            &Patch::Strategic(&json!({"metadata": {"labels": label},
                "spec": {"template": {"spec": {"containers": [{"name": "api", "env": [
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": value, "key": "password"}}}
                ]}]}}}})),
        )
        .await
        .expect("patch the deployment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_inside_atomic_maps_and_structs_is_corrected_and_only_it() {
    let client = support::client().await;
    let mut f = Fixture::new("atomic", atomic_files(), TierExtra::default());
    let first = f.head();
    f.start();
    f.wait_synced_healthy(&first, FIRST_SYNC).await;
    other_team_annotates(&client, &f.tier).await;

    kubectl_patches(&client, &f.tier, "evil").await;
    let ns = f.tier.clone();
    support::eventually("the three atomic fields corrected", CHANGE, || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            (atomic_values(&client, &ns).await == (json!("api"), json!("api"), json!("db")))
                .then_some(())
        }
    })
    .await;

    // The patcher lost exactly the atomic fields; its label, and the other team's annotation,
    // stay with them.
    let np = live::<NetworkPolicy>(&client, &f.tier, "api").await;
    let svc = live::<Service>(&client, &f.tier, "api").await;
    let dep = live::<Deployment>(&client, &f.tier, "api").await;
    for (what, o, taken) in [
        ("network policy", &np, vec!["f:spec", "f:podSelector"]),
        ("service", &svc, vec!["f:spec", "f:selector"]),
        (
            "deployment",
            &dep,
            vec![
                "f:spec",
                "f:template",
                "f:spec",
                "f:containers",
                "k:{\"name\":\"api\"}",
                "f:env",
                "k:{\"name\":\"PASSWORD\"}",
                "f:valueFrom",
                "f:secretKeyRef",
            ],
        ),
    ] {
        let patcher = owned_by(o, PATCHER);
        let mut at = &patcher;
        for step in &taken {
            at = &at[*step];
        }
        assert!(
            at.is_null(),
            "{what}: {PATCHER} still owns {taken:?}: {patcher}"
        );
        assert!(
            !patcher["f:metadata"]["f:labels"]["f:patched"].is_null(),
            "{what}: {PATCHER} keeps its label: {patcher}"
        );
        assert_eq!(o["metadata"]["labels"]["patched"], "yes", "{what}");
        let other = owned_by(o, OTHER);
        assert!(
            !other["f:metadata"]["f:annotations"]["f:example.com/owner"].is_null(),
            "{what}: {OTHER} keeps its annotation: {other}"
        );
        assert_eq!(o["metadata"]["annotations"]["example.com/owner"], OTHER);
    }

    // Recorded as corrections, with no failure, and the tier Synced.
    let status = f
        .wait_status(
            "the corrections recorded and the tier Synced",
            CHANGE,
            |s| {
                (s["sync"] == "Synced"
                    && records(s)
                        .iter()
                        .any(|r| r["outcomes"]["configured"].as_u64().unwrap_or(0) >= 1))
                .then(|| s.clone())
            },
        )
        .await;
    for r in records(&status) {
        assert!(
            r["failures"].as_array().is_none_or(Vec::is_empty),
            "a correction failed: {r}"
        );
    }
    assert!(status["lastError"].is_null(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_keeps_changing_an_atomic_field_is_given_up() {
    let client = support::client().await;
    let mut f = Fixture::new("atomic-fight", atomic_files(), TierExtra::default());
    let first = f.head();
    f.start();
    f.wait_synced_healthy(&first, FIRST_SYNC).await;

    // A controller that puts its selector back whenever gitopsd took it.
    let stop = tokio_util::sync::CancellationToken::new();
    let fighter = {
        let stop = stop.clone();
        let svcs: Api<Service> = Api::namespaced(client.clone(), &f.tier);
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                if let Ok(s) = svcs.get("api").await {
                    let v = serde_json::to_value(s).unwrap_or_default();
                    if v.pointer("/spec/selector/app") != Some(&json!("fighter")) {
                        let patch = json!({"spec": {"selector": {"app": "fighter"}}});
                        let _ = svcs
                            .patch("api", &params(PATCHER), &Patch::Merge(&patch))
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let given_up = f
        .wait_status("the fight given up", Duration::from_secs(120), |s| {
            s["unconvergeable"]
                .as_array()
                .and_then(|u| u.iter().find(|u| u["path"] == "spec.selector.app").cloned())
                .map(|u| (u, s.clone()))
        })
        .await;
    stop.cancel();
    let _ = fighter.await;
    let (u, status) = given_up;
    assert_eq!(u["manager"], PATCHER, "{u}");
    assert_eq!(u["corrections"], 3, "{u}");
    assert_eq!(status["sync"], "OutOfSync", "{status}");
    // Given up means left alone: after a later commit's sync, the fighter's value stays.
    f.write_files(&vec![(
        "base/later.yaml".to_owned(),
        configmap("later", &[]),
    )]);
    let sha = f.commit("a later commit");
    f.wait_status("a sync of the later commit", CHANGE, |s| {
        records(s)
            .iter()
            .any(|r| r["revision"] == sha.as_str())
            .then_some(())
    })
    .await;
    let svc = live::<Service>(&client, &f.tier, "api").await;
    assert_eq!(svc["spec"]["selector"]["app"], "fighter");
}
