//! Drift detection on the real local cluster: the example tier applied by gitopsd into a
//! namespace of each test's own, then edited by another field manager.
//!
//! Each test renames the tier to its namespace's name (the `gitopsd.io/tier` label and every
//! `shop-exp` in the manifests), so tests running side by side never see each other's objects
//! as extra. Cluster-scoped objects that would collide are left out: the Namespace and the
//! PriorityClass; the FeatureFlag CRD is applied once, shared, and never deleted.

mod support;

use std::path::Path;
use std::time::Duration;

use gitopsd::classify::{DriftItem, Severity};
use gitopsd::config::TierConfig;
use gitopsd::drift::{ApiDryRun, DriftReport, detect};
use gitopsd::live::{ApiLive, ObjectKey};
use gitopsd::render::{DesiredSet, Limits, render_tier};
use kube::Client;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{eventually, gitopsd, kubeconfig, stderr, stdout, with_namespace};

const EXAMPLE_NAMESPACE: &str = "shop-exp";
const OTHER_MANAGER: &str = "kubectl-edit";

fn tier_config(name: &str) -> TierConfig {
    serde_json::from_value(json!({"name": name, "ref": "main"})).expect("a minimal tier config")
}

/// Every string `from` in `value` becomes `to`: namespaces, the tier label, RoleBinding subjects.
fn replace_strings(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(s) if s == from => *s = to.to_owned(),
        Value::Array(items) => items.iter_mut().for_each(|v| replace_strings(v, from, to)),
        Value::Object(map) => map.values_mut().for_each(|v| replace_strings(v, from, to)),
        _ => {}
    }
}

/// The example's experimental tier, moved into `ns` and renamed to `ns`.
fn example_tier_in(ns: &str) -> DesiredSet {
    let repo = support::repo_root().join("examples/config-repo");
    let mut set = render_tier(&repo, "experimental", &Limits::default()).expect("render");
    set.objects.retain(|o| {
        !matches!(
            o.kind.as_str(),
            "Namespace" | "PriorityClass" | "CustomResourceDefinition"
        )
    });
    for o in &mut set.objects {
        replace_strings(&mut o.manifest, EXAMPLE_NAMESPACE, ns);
        replace_strings(&mut o.manifest, "experimental", ns);
        o.namespace = Some(ns.to_owned());
        o.digest = hex::encode(Sha256::digest(o.manifest.to_string().as_bytes()));
    }
    set.tier = ns.to_owned();
    set
}

fn key(api_version: &str, kind: &str, ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        namespace: Some(ns.to_owned()),
        name: name.to_owned(),
    }
}

/// Server-side apply of `manifest` by `manager`, forcing conflicts as `kubectl apply
/// --server-side --force-conflicts` does.
async fn apply_as(live: &ApiLive, manager: &str, key: &ObjectKey, manifest: &Value) {
    let api = live.api_for(key).await.expect("discovery");
    api.patch(
        &key.name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(manifest),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {key:?} as {manager}: {e}"));
}

/// The FeatureFlag CRD, applied once for all tests and left in place.
async fn ensure_crd(live: &ApiLive) {
    let repo = support::repo_root().join("examples/config-repo");
    let set = render_tier(&repo, "experimental", &Limits::default()).expect("render");
    let crd = set
        .objects
        .iter()
        .find(|o| o.kind == "CustomResourceDefinition")
        .expect("the example has a CRD");
    let k = ObjectKey {
        api_version: crd.api_version.clone(),
        kind: crd.kind.clone(),
        namespace: None,
        name: crd.name.clone(),
    };
    apply_as(live, "gitopsd", &k, &crd.manifest).await;
    eventually("the CRD to be Established", Duration::from_secs(30), || {
        let live = live.clone();
        let k = k.clone();
        async move {
            use gitopsd::live::LiveObjects;
            let crd = live.get(&k).await.ok()??;
            let established = crd
                .pointer("/status/conditions")?
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True");
            established.then_some(())
        }
    })
    .await;
}

/// Applies `set` as gitopsd does (field manager `gitopsd`), the CRD first.
async fn apply_set(client: &Client, set: &DesiredSet) -> ApiLive {
    let live = ApiLive::new(client.clone());
    ensure_crd(&live).await;
    for o in &set.objects {
        let k = key(
            &o.api_version,
            &o.kind,
            o.namespace.as_deref().unwrap_or_default(),
            &o.name,
        );
        apply_as(&live, "gitopsd", &k, &o.manifest).await;
    }
    live
}

async fn drift_of(live: &ApiLive, set: &DesiredSet) -> DriftReport {
    drift_with(live, set, &ApiDryRun::new(live.clone())).await
}

async fn drift_with(live: &ApiLive, set: &DesiredSet, confirm: &ApiDryRun) -> DriftReport {
    detect(set, &tier_config(&set.tier), live, confirm)
        .await
        .expect("drift detection")
}

fn show(items: &[DriftItem]) -> String {
    items.iter().map(|i| format!("\n  {i}")).collect()
}

fn find<'r>(
    report: &'r DriftReport,
    kind: &str,
    name: &str,
    path_part: &str,
) -> Option<&'r DriftItem> {
    report
        .items
        .iter()
        .find(|i| i.kind == kind && i.name == name && i.paths.join(",").contains(path_part))
}

#[tokio::test]
async fn a_tier_gitopsd_just_applied_has_no_drift_although_the_server_defaulted_it() {
    with_namespace("drift-none-after-apply", |client, ns| async move {
        let set = example_tier_in(&ns);
        let live = apply_set(&client, &set).await;
        let report = drift_of(&live, &set).await;
        assert!(
            report.items.is_empty(),
            "drift right after apply:{}",
            show(&report.items)
        );
        assert_eq!(report.in_sync, set.objects.len());
    })
    .await;
}

#[tokio::test]
async fn edits_by_another_field_manager_are_found_with_their_severity_and_rule() {
    with_namespace("drift-edits", |client, ns| async move {
        let set = example_tier_in(&ns);
        let live = apply_set(&client, &set).await;
        let deploy = |name: &str| key("apps/v1", "Deployment", &ns, name);
        let edit = |k: &ObjectKey, body: Value| {
            let mut m = json!({"apiVersion": k.api_version, "kind": k.kind,
                "metadata": {"name": k.name, "namespace": ns}});
            json_patch::merge(&mut m, &body);
            m
        };
        // The api container: a new image and a changed env var; replicas, which its HPA owns.
        let api = deploy("api");
        let body = edit(
            &api,
            json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "api", "image": "registry.example.com/evil:1",
             "env": [{"name": "HTTP_MAX_BODY_BYTES", "value": "999"}]}]}}}}),
        );
        apply_as(&live, OTHER_MANAGER, &api, &body).await;
        // The worker: a securityContext field and replicas (no HPA here).
        let worker = deploy("worker");
        let body = edit(
            &worker,
            json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [
            {"name": "worker", "securityContext": {"readOnlyRootFilesystem": false}}]}}}}),
        );
        apply_as(&live, OTHER_MANAGER, &worker, &body).await;
        // A label no selector reads.
        let config = key("v1", "ConfigMap", &ns, "shop-config");
        let body = edit(
            &config,
            json!({"metadata": {"labels": {"app.kubernetes.io/part-of": "other"}}}),
        );
        apply_as(&live, OTHER_MANAGER, &config, &body).await;
        // A field the manifest does not set, owned by another manager: not drift.
        let service = key("v1", "Service", &ns, "api");
        let body = edit(
            &service,
            json!({"metadata": {"annotations": {"example.com/owner": "team-b"}}}),
        );
        apply_as(&live, OTHER_MANAGER, &service, &body).await;
        // An extra object labelled for the tier.
        let stray = key("v1", "ConfigMap", &ns, "stray");
        let body = edit(
            &stray,
            json!({"metadata": {"labels": {"gitopsd.io/tier": ns}}, "data": {"a": "b"}}),
        );
        apply_as(&live, OTHER_MANAGER, &stray, &body).await;
        // A deleted object.
        live.api_for(&key("v1", "ConfigMap", &ns, "debug-settings"))
            .await
            .expect("discovery")
            .delete("debug-settings", &DeleteParams::default())
            .await
            .expect("delete debug-settings");

        let confirm = ApiDryRun::new(live.clone());
        let report = drift_with(&live, &set, &confirm).await;
        let all = show(&report.items);
        // Asked again about an object nothing changed (a ConfigMap: no controller writes to
        // it, so its resourceVersion holds still), the confirmer answers from its cache.
        let mut config_only = set.clone();
        config_only
            .objects
            .retain(|o| o.kind == "ConfigMap" && o.name == "shop-config");
        let before = confirm.requests_sent();
        let first = drift_with(&live, &config_only, &confirm).await;
        let second = drift_with(&live, &config_only, &confirm).await;
        assert_eq!(first, second);
        assert!(!first.items.is_empty(), "the label edit is drift");
        assert_eq!(
            confirm.requests_sent(),
            before,
            "dry-runs repeated for an unchanged object"
        );
        let expect = |kind: &str, name: &str, path: &str, severity: Severity, rule: &str| {
            let item = find(&report, kind, name, path)
                .unwrap_or_else(|| panic!("no drift for {kind} {name} {path}:{all}"));
            assert_eq!(
                (item.severity, item.rule.as_str()),
                (severity, rule),
                "{item}"
            );
        };
        expect(
            "Deployment",
            "api",
            ".image",
            Severity::Critical,
            "container-image",
        );
        expect(
            "Deployment",
            "worker",
            "securityContext.readOnlyRootFilesystem",
            Severity::Critical,
            "security-context",
        );
        expect(
            "ConfigMap",
            "debug-settings",
            "",
            Severity::Critical,
            "object-deleted",
        );
        expect(
            "Deployment",
            "api",
            "env[name=HTTP_MAX_BODY_BYTES]",
            Severity::High,
            "container-env",
        );
        expect(
            "Deployment",
            "worker",
            "spec.replicas",
            Severity::High,
            "replicas",
        );
        expect(
            "ConfigMap",
            "shop-config",
            "metadata.labels",
            Severity::Low,
            "labels",
        );
        expect("ConfigMap", "stray", "", Severity::Medium, "extra-object");
        assert!(
            find(&report, "Deployment", "api", "spec.replicas").is_none(),
            "HPA-owned replicas reported:{all}"
        );
        assert!(
            !report.items.iter().any(|i| i.kind == "Service"),
            "another manager's annotation reported:{all}"
        );
        assert_eq!(report.items.len(), 7, "unexpected drift:{all}");
        assert_eq!(report.counts.critical, 3, "{all}");
    })
    .await;
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[tokio::test]
async fn a_secrets_drift_never_shows_its_value_in_text_or_json() {
    with_namespace("drift-secret", |client, ns| async move {
        // A repo of one tier (named after the namespace) holding one Secret.
        let repo = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(repo.path().join("base")).expect("mkdir base");
        write(repo.path(), &format!("tiers/{ns}/tier.yaml"), &format!("namespace: {ns}\n"));
        // "planted-by-someone" and "the-real-one", base64.
        let desired_b64 = "dGhlLXJlYWwtb25l";
        let planted_b64 = "cGxhbnRlZC1ieS1zb21lb25l";
        write(
            repo.path(),
            &format!("tiers/{ns}/secret.yaml"),
            &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: db}}\ntype: Opaque\ndata: {{PASSWORD: {desired_b64}}}\n"),
        );
        let set = render_tier(repo.path(), &ns, &Limits::default()).expect("render");
        let live = ApiLive::new(client.clone());
        for o in &set.objects {
            let k = key(&o.api_version, &o.kind, &ns, &o.name);
            apply_as(&live, "gitopsd", &k, &o.manifest).await;
        }
        let kubeconfig = kubeconfig().to_str().expect("a UTF-8 path").to_owned();
        let repo_path = repo.path().to_str().expect("a UTF-8 path").to_owned();
        let diff = |format: &'static str| {
            let (ns, repo_path, kubeconfig) = (ns.clone(), repo_path.clone(), kubeconfig.clone());
            tokio::task::spawn_blocking(move || {
                gitopsd(&[
                    "diff",
                    "--tier",
                    &ns,
                    "--repo",
                    &repo_path,
                    "--kubeconfig",
                    &kubeconfig,
                    "-o",
                    format,
                ])
            })
        };
        // In sync: exit 0.
        let out = diff("text").await.expect("run gitopsd diff");
        assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains("critical: 0\n"), "{}", stdout(&out));

        let secret = key("v1", "Secret", &ns, "db");
        let planted = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": ns}, "data": {"PASSWORD": planted_b64}});
        apply_as(&live, OTHER_MANAGER, &secret, &planted).await;

        for format in ["text", "json"] {
            let out = diff(format).await.expect("run gitopsd diff");
            let text = stdout(&out);
            assert_eq!(out.status.code(), Some(1), "{format}: {text}{}", stderr(&out));
            for secret in [desired_b64, planted_b64, "the-real-one", "planted-by-someone"] {
                assert!(!text.contains(secret), "{format} output shows {secret}:\n{text}");
                assert!(!stderr(&out).contains(secret), "{format} log shows {secret}");
            }
            assert!(text.contains("<masked sha256:"), "{format}: {text}");
            assert!(text.contains("secret-data"), "{format}: {text}");
        }
    })
    .await;
}

#[test]
fn diff_without_a_repo_or_a_config_is_an_error_with_exit_code_2() {
    let out = gitopsd(&["diff", "--tier", "experimental"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--repo"), "{}", stderr(&out));
}
