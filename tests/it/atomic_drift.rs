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

use crate::reconcile_support;
use crate::support;

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
    let (f, _) = Fixture::new("atomic", atomic_files(), TierExtra::default())
        .started(FIRST_SYNC)
        .await;
    other_team_annotates(&client, &f.tier).await;
    // Settled after the annotations (each a reconcile, no correction): then count requests.
    f.wait_status("Synced after the annotations", CHANGE, |s| {
        (s["sync"] == "Synced").then_some(())
    })
    .await;
    let before = kube_requests(&f);

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

    let after = kube_requests(&f);
    let delta: Vec<String> = after
        .iter()
        .filter_map(|(k, n)| {
            let d = n - before.get(k).copied().unwrap_or(0.0);
            (d > 0.0).then(|| format!("{k}: {d}"))
        })
        .collect();
    eprintln!("kube requests from the three patches to their correction: {delta:?}");

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
    let (f, _) = Fixture::new("atomic-fight", atomic_files(), TierExtra::default())
        .started(FIRST_SYNC)
        .await;

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

/// `gitopsd_kube_requests_total` by `{verb, code}`, from the daemon's /metrics.
fn kube_requests(f: &Fixture) -> std::collections::BTreeMap<String, f64> {
    let (_, body) = http_get(f.port, "/metrics").unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    body.lines()
        .filter_map(|l| l.strip_prefix("gitopsd_kube_requests_total"))
        .filter_map(|l| {
            let (labels, n) = l.rsplit_once(' ')?;
            Some((labels.to_owned(), n.parse().ok()?))
        })
        .collect()
}

/// The value of the series `name{labels}` in the daemon's /metrics (labels as written there).
fn metric(f: &Fixture, name: &str, labels: &str) -> Option<f64> {
    let (_, body) = http_get(f.port, "/metrics").unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    let want = format!("{name}{{{labels}}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(want.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// The drift items of a status (or of `gitopsd diff -o json`) about `kind/name`.
fn items_of(report: &Value, kind: &str, name: &str) -> Vec<Value> {
    report["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i["kind"] == kind && i["name"] == name)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn gitopsd_diff(f: &Fixture, format: &str) -> (Option<i32>, String) {
    let config = f.config.to_string_lossy().into_owned();
    let kubeconfig = support::kubeconfig().to_string_lossy().into_owned();
    let out = support::gitopsd(&[
        "diff",
        "--config",
        &config,
        "--tier",
        &f.tier,
        "--kubeconfig",
        &kubeconfig,
        "-o",
        format,
    ]);
    (out.status.code(), support::stdout(&out))
}

/// Waits until the daemon has reconciled after `since` (its `lastReconcileAt` moved on).
async fn reconciled_after(f: &Fixture, since: &Value) -> Value {
    let since = since.clone();
    f.wait_status("a later reconcile", CHANGE, |s| {
        (s["lastReconcileAt"] != since && !s["lastReconcileAt"].is_null()).then(|| s.clone())
    })
    .await
}

/// The dashboard's DOM once its script has drawn the status: `--dump-dom` of headless Chromium
/// (`chromium`, `chromium-browser` or `GITOPSD_CHROMIUM`, as tests/it/dashboard.rs finds it),
/// stopped after 90 s by `timeout`.
fn dashboard_dom(f: &Fixture) -> String {
    let chromium = std::env::var("GITOPSD_CHROMIUM").unwrap_or_else(|_| {
        ["chromium", "chromium-browser"]
            .into_iter()
            .find(|c| {
                std::process::Command::new("sh")
                    .args(["-c", &format!("command -v {c}")])
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .unwrap_or("chromium")
            .to_owned()
    });
    let profile = f.dir.path().join("chromium-profile");
    let out = std::process::Command::new("timeout")
        .arg("90")
        .arg(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("http://127.0.0.1:{}/", f.port))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {chromium}: {e} (scripts/install-deps.sh installs it)")
        });
    assert!(
        out.status.success(),
        "{chromium} --dump-dom failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const NOT_IN_INVENTORY: &str = "not in this tier's inventory: gitopsd never deletes what it did not create; delete it or add it to git";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_object_is_reported_as_what_happens_and_drift_follows_one_sync_rule() {
    let client = support::client().await;
    let (f, _) = Fixture::new(
        "extra",
        reconcile_support::base_files(reconcile_support::IMAGE_1),
        TierExtra(vec![
            "policy: {critical: apply, high: apply, medium: apply, low: alert}".into(),
        ]),
    )
    .started(FIRST_SYNC)
    .await;
    let tier = f.tier.clone();
    let synced = format!(r#"tier="{tier}""#);

    // An object that left git, with prune on: its action is `prune`, it is pruned in the same
    // sync, and that sync is Synced (the audit log holds the item as it was reported).
    let out_of_sync_before = metric(
        &f,
        "gitopsd_sync_total",
        &format!(r#"result="out_of_sync",tier="{tier}""#),
    );
    f.remove_files(&["base/extra-4.yaml"]);
    let second = f.commit("remove extra-4");
    f.wait_status("extra-4 pruned", CHANGE, |s| {
        (s["revision"] == second.as_str()
            && s["sync"] == "Synced"
            && records(s)
                .iter()
                .any(|r| r["outcomes"]["pruned"].as_u64().unwrap_or(0) >= 1))
        .then_some(())
    })
    .await;
    // The audit log's writer thread appends after the status is published: wait for the line.
    let audit_log = support::audit_log_in(&f.dir.path().join("workdir"));
    let pruned_item =
        support::eventually_or("the audit log's drift item for extra-4", CHANGE, || async {
            let audit = std::fs::read_to_string(&audit_log).map_err(|e| e.to_string())?;
            audit
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|e| e["event"] == "drift")
                .flat_map(|e| e["items"].as_array().cloned().unwrap_or_default())
                .find(|i| i["object"].to_string().contains("extra-4"))
                .ok_or_else(|| format!("no drift item for extra-4 in the audit log: {audit}"))
        })
        .await;
    assert_eq!(pruned_item["action"], "prune", "{pruned_item}");
    assert_eq!(pruned_item["rule"], "extra-object", "{pruned_item}");
    assert_eq!(
        metric(
            &f,
            "gitopsd_sync_total",
            &format!(r#"result="out_of_sync",tier="{tier}""#)
        ),
        out_of_sync_before,
        "a sync whose only drift was pruned is not OutOfSync"
    );

    // A stray object labelled for the tier, which gitopsd did not create: reported, with the
    // reason, never applied or deleted; the tier is OutOfSync by the one rule.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &tier);
    let stray: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "stray", "labels": {"gitopsd.io/tier": tier.as_str()}},
        "data": {"made": "by hand"},
    }))
    .expect("a ConfigMap");
    let created = cms
        .create(&PostParams::default(), &stray)
        .await
        .expect("create the stray ConfigMap");
    let status = f
        .wait_status("the stray object reported", CHANGE, |s| {
            let items = items_of(&s["drift"], "ConfigMap", "stray");
            (s["sync"] == "OutOfSync" && !items.is_empty()).then(|| s.clone())
        })
        .await;
    let item = &items_of(&status["drift"], "ConfigMap", "stray")[0];
    assert_eq!(item["rule"], "extra-object", "{item}");
    assert_eq!(item["severity"], "medium", "{item}");
    assert_eq!(item["action"], "alert", "{item}");
    assert_eq!(item["reason"], NOT_IN_INVENTORY, "{item}");
    assert!(
        !items_of(&json!({"items": status["alerts"]}), "ConfigMap", "stray").is_empty(),
        "the stray object is among the alerts: {}",
        status["alerts"]
    );
    assert_eq!(metric(&f, "gitopsd_tier_synced", &synced), Some(0.0));
    assert_eq!(
        metric(
            &f,
            "gitopsd_drift_unresolved_objects",
            &format!(r#"severity="medium",tier="{tier}""#)
        ),
        Some(1.0)
    );
    // The diff endpoint, `gitopsd diff` (text and JSON) say the same.
    let (_, text) = http_get(f.port, &format!("/api/v1/tiers/{tier}/diff"))
        .unwrap_or_else(|e| panic!("GET diff: {e}"));
    let said = format!("(rule extra-object, action alert): {NOT_IN_INVENTORY}");
    assert!(text.contains(&said), "{text}");
    let (code, text) = gitopsd_diff(&f, "text");
    assert_eq!(code, Some(1), "drift found: {text}");
    assert!(text.contains(&said), "{text}");
    let (_, json_text) = gitopsd_diff(&f, "json");
    let report: Value = serde_json::from_str(&json_text).expect("diff -o json");
    let cli_item = &items_of(&report, "ConfigMap", "stray")[0];
    assert_eq!(
        (&cli_item["action"], &cli_item["reason"]),
        (&item["action"], &item["reason"])
    );
    // The dashboard, as headless Chromium draws it from the status API: the row's action and
    // reason, and the tier's sync badge.
    let dom = dashboard_dom(&f);
    let row = dom
        .split("<tr ")
        .find(|r| r.contains(&format!("data-object=\"ConfigMap {tier}/stray\"")))
        .unwrap_or_else(|| panic!("no drift row for the stray object in the DOM: {dom}"));
    assert!(row.contains("data-action=\"alert\""), "{row}");
    assert!(
        row.contains("gitopsd never deletes what it did not create"),
        "{row}"
    );
    assert!(dom.contains(">OutOfSync<"), "no OutOfSync badge: {dom}");
    // Left alone, after a reconcile proven to have happened since.
    let later = reconciled_after(&f, &status["lastReconcileAt"]).await;
    assert_eq!(later["sync"], "OutOfSync");
    let still = cms
        .get("stray")
        .await
        .expect("the stray object is still there");
    assert_eq!(still.metadata.uid, created.metadata.uid);
    assert_eq!(
        still.metadata.resource_version,
        created.metadata.resource_version
    );

    // Deleted by hand: Synced again.
    cms.delete("stray", &DeleteParams::default())
        .await
        .expect("delete the stray ConfigMap");
    f.wait_status("Synced without the stray object", CHANGE, |s| {
        (s["sync"] == "Synced" && items_of(&s["drift"], "ConfigMap", "stray").is_empty())
            .then_some(())
    })
    .await;
    assert_eq!(metric(&f, "gitopsd_tier_synced", &synced), Some(1.0));

    // A low label drift under `low: alert`: the same rule, OutOfSync.
    let patch = json!({"metadata": {"labels": {"env": "prod"}}});
    cms.patch("api-config", &params("kubectl-edit"), &Patch::Merge(&patch))
        .await
        .expect("relabel api-config");
    let status = f
        .wait_status("the label drift reported", CHANGE, |s| {
            let items = items_of(&s["drift"], "ConfigMap", "api-config");
            (s["sync"] == "OutOfSync" && !items.is_empty()).then(|| s.clone())
        })
        .await;
    let item = &items_of(&status["drift"], "ConfigMap", "api-config")[0];
    assert_eq!(item["severity"], "low", "{item}");
    assert_eq!(item["action"], "alert", "{item}");
    assert_eq!(metric(&f, "gitopsd_tier_synced", &synced), Some(0.0));
    let api_config = cms.get("api-config").await.expect("get api-config");
    assert_eq!(
        api_config.metadata.labels.unwrap_or_default().get("env"),
        Some(&"prod".to_owned()),
        "an alert leaves the cluster alone"
    );
}
