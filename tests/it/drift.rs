//! Drift detection on the real local cluster: the example tier applied by gitopsd into a
//! namespace of each test's own, then edited by another field manager.
//!
//! Each test renames the tier to its namespace's name (the `gitopsd.io/tier` label and every
//! `shop-exp` in the manifests), so tests running side by side never see each other's objects
//! as extra. Cluster-scoped objects that would collide are left out: the Namespace and the
//! PriorityClass; the FeatureFlag CRD is applied once, shared, and never deleted.
//!
//! One test applies the example as it is, every tier in its real namespace (`shop-exp`,
//! `shop-val`, `shop-ops`) with its Namespace and PriorityClass; it is the only test that uses
//! those names, and it holds a lock file while it does, so two test runs never share them.

use crate::support;

use std::path::Path;
use std::time::Duration;

use gitopsd::classify::{DriftItem, Severity};
use gitopsd::cluster::counted_client;
use gitopsd::config::TierConfig;
use gitopsd::diff::FIELD_MANAGER;
use gitopsd::drift::{ApiDryRun, DriftReport, detect};
use gitopsd::live::{ApiLive, LiveCache, Namespaces, ObjectKey, Verb};
use gitopsd::render::{DesiredSet, Limits, render_tier};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::DeleteParams;
use kube::{Api, Client};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{
    apply_as, ensure_crd, eventually, gitopsd, kubeconfig, stderr, stdout, with_namespace,
};

const EXAMPLE_NAMESPACE: &str = "shop-exp";
const OTHER_MANAGER: &str = "kubectl-edit";
/// The example's tiers, in the order they must be applied: experimental owns the shared CRD.
const EXAMPLE_TIERS: [&str; 3] = ["experimental", "validation", "operational"];
const SYNC: Duration = Duration::from_secs(20);

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
    let mut set = render_tier(
        &repo,
        "experimental",
        &Limits::default(),
        &support::example_scopes(),
    )
    .expect("render");
    set.objects.retain(|o| {
        !matches!(
            o.key.kind.as_str(),
            "Namespace" | "PriorityClass" | "CustomResourceDefinition"
        )
    });
    for o in &mut set.objects {
        replace_strings(&mut o.manifest, EXAMPLE_NAMESPACE, ns);
        replace_strings(&mut o.manifest, "experimental", ns);
        // The tier's PriorityClass is left out, and the test that applies the example as it is
        // deletes `shop-exp-serving` when done: a pod naming it would not be admitted, and the
        // Deployment would never roll out.
        if let Some(spec) = o
            .manifest
            .pointer_mut("/spec/template/spec")
            .and_then(Value::as_object_mut)
        {
            spec.remove("priorityClassName");
        }
        o.key.namespace = Some(ns.to_owned());
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

/// Applies `set` as gitopsd does (field manager `gitopsd`), the CRD first.
async fn apply_set(client: &Client, set: &DesiredSet) -> ApiLive {
    let live = ApiLive::new(client.clone());
    ensure_crd(&live).await;
    for o in &set.objects {
        let k = key(
            &o.key.api_version,
            &o.key.kind,
            o.key.namespace.as_deref().unwrap_or_default(),
            &o.key.name,
        );
        apply_as(&live, FIELD_MANAGER, &k, &o.manifest).await;
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
    report.items.iter().find(|i| {
        let path = i
            .field_path
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        i.key.kind == kind && i.key.name == name && path.contains(path_part)
    })
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
            .retain(|o| o.key.kind == "ConfigMap" && o.key.name == "shop-config");
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
            !report.items.iter().any(|i| i.key.kind == "Service"),
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
        let set = render_tier(repo.path(), &ns, &Limits::default(), &support::example_scopes()).expect("render");
        let live = ApiLive::new(client.clone());
        let mut state = gitopsd::state::TierState::default();
        for o in &set.objects {
            let k = key(&o.key.api_version, &o.key.kind, &ns, &o.key.name);
            apply_as(&live, FIELD_MANAGER, &k, &o.manifest).await;
            state.inventory.insert(k, gitopsd::state::short_digest(&o.digest).to_owned());
        }
        // The inventory the daemon keeps of what it applied, in a state namespace the config
        // names (one of the test's own, beside the tier's: no tier may write where the state
        // is): without it the Secret's tier label alone would be no proof that it is the
        // tier's, and diff would refuse it.
        let state_ns = format!("{ns}-state");
        let store = gitopsd::state::StateStore::new(client.clone(), &state_ns);
        store.ensure_namespace().await.expect("make the state namespace");
        let _state_ns = DeleteNamespace(state_ns.clone());
        store.save(&ns, &state).await.expect("save the tier state");
        let config = repo.path().join("gitopsd.yaml");
        std::fs::write(
            &config,
            format!(
                "source: {{url: {}}}\ntiers:\n  - {{name: {ns}, ref: main, namespaces: [{ns}]}}\nstate: {{namespace: {state_ns}}}\n",
                repo.path().display()
            ),
        )
        .expect("write gitopsd.yaml");
        let config = config.to_str().expect("a UTF-8 path").to_owned();
        let kubeconfig = kubeconfig().to_str().expect("a UTF-8 path").to_owned();
        let repo_path = repo.path().to_str().expect("a UTF-8 path").to_owned();
        let diff = |format: &'static str| {
            let (ns, repo_path, kubeconfig, config) =
                (ns.clone(), repo_path.clone(), kubeconfig.clone(), config.clone());
            tokio::task::spawn_blocking(move || {
                gitopsd(&[
                    "diff",
                    "--tier",
                    &ns,
                    "--config",
                    &config,
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

/// Waits until every Deployment of `set` has rolled out: the Deployment controller and kwok
/// have stopped writing to them, so their resourceVersions hold still.
async fn wait_rolled_out(client: &Client, set: &DesiredSet) {
    for o in set.objects.iter().filter(|o| o.key.kind == "Deployment") {
        let ns = o.key.namespace.clone().expect("a Deployment is namespaced");
        let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let what = format!("Deployment {ns}/{} to roll out", o.key.name);
        eventually(&what, Duration::from_secs(60), || {
            let api = api.clone();
            let name = o.key.name.clone();
            async move {
                let d = api.get(&name).await.ok()?;
                let want = d.spec.replicas?;
                let status = d.status.as_ref()?;
                let done = status.observed_generation >= d.metadata.generation
                    && status.updated_replicas == Some(want)
                    && status.ready_replicas == Some(want)
                    && status.available_replicas == Some(want)
                    && status.replicas == Some(want);
                done.then_some(())
            }
        })
        .await;
    }
}

/// The example tier `tier` as it is, in its own namespace.
fn example_tier(tier: &str) -> DesiredSet {
    let repo = support::repo_root().join("examples/config-repo");
    render_tier(&repo, tier, &Limits::default(), &support::example_scopes()).expect("render")
}

/// Takes the example's own namespaces for this process: a lock file, held until dropped, so a
/// second test run (another worktree, the same cluster) waits instead of sharing the objects.
fn lock_example_namespaces() -> std::fs::File {
    let path = std::env::temp_dir().join("gitopsd-test-example-tiers.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    file
}

/// The example's Namespaces and PriorityClasses, deleted; the CRD stays for the other tests.
async fn delete_example_tiers(client: &Client, sets: &[DesiredSet]) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let classes: Api<PriorityClass> = Api::all(client.clone());
    for o in sets.iter().flat_map(|s| &s.objects) {
        // Deletion finishes in the background; the next run waits for it before applying.
        let _ = match o.key.kind.as_str() {
            "Namespace" => namespaces
                .delete(&o.key.name, &DeleteParams::background())
                .await
                .map(|_| ()),
            "PriorityClass" => classes
                .delete(&o.key.name, &DeleteParams::default())
                .await
                .map(|_| ()),
            _ => Ok(()),
        };
    }
}

/// A namespace still terminating from an earlier run refuses new objects: wait it out.
async fn wait_no_namespace_terminating(client: &Client, sets: &[DesiredSet]) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for o in sets.iter().flat_map(|s| &s.objects) {
        if o.key.kind != "Namespace" {
            continue;
        }
        let what = format!("namespace {} from an earlier run to be deleted", o.key.name);
        eventually(&what, Duration::from_secs(120), || {
            let namespaces = namespaces.clone();
            let name = o.key.name.clone();
            async move {
                match namespaces.get_opt(&name).await.ok()? {
                    Some(ns) if ns.metadata.deletion_timestamp.is_some() => None,
                    _ => Some(()),
                }
            }
        })
        .await;
    }
}

/// Applies every tier as gitopsd would: Namespaces and the CRD first (the CRD Established
/// before any FeatureFlag), then each tier's objects in render order (cluster-scoped first).
async fn apply_every_tier_and_detect(client: Client, sets: Vec<DesiredSet>) {
    let live = ApiLive::new(client.clone());
    let first = |o: &gitopsd::render::DesiredObject| {
        matches!(
            o.key.kind.as_str(),
            "Namespace" | "CustomResourceDefinition"
        )
    };
    for o in sets.iter().flat_map(|s| &s.objects).filter(|o| first(o)) {
        let k = key(&o.key.api_version, &o.key.kind, "", &o.key.name);
        apply_as(&live, FIELD_MANAGER, &k, &o.manifest).await;
    }
    ensure_crd(&live).await;
    for o in sets.iter().flat_map(|s| &s.objects).filter(|o| !first(o)) {
        let ns = o.key.namespace.as_deref().unwrap_or_default();
        let k = key(&o.key.api_version, &o.key.kind, ns, &o.key.name);
        apply_as(&live, FIELD_MANAGER, &k, &o.manifest).await;
    }
    for set in &sets {
        wait_rolled_out(&client, set).await;
    }
    // The server did default what the manifests leave out: zero drift below is not zero
    // defaults. (PriorityClass sets all its fields; the server drops `globalDefault: false`.)
    let defaulted = [
        ("Deployment", "api", "/spec/progressDeadlineSeconds"),
        ("Service", "api", "/spec/sessionAffinity"),
        ("HorizontalPodAutoscaler", "api", "/spec/behavior/scaleUp"),
        (
            "NetworkPolicy",
            "allow-api-ingress",
            "/spec/ingress/0/ports/0/protocol",
        ),
        ("FeatureFlag", "recommendations", "/spec/rollout/strategy"),
    ];
    for (kind, name, pointer) in defaulted {
        use gitopsd::live::LiveObjects;
        let o = sets[0]
            .objects
            .iter()
            .find(|o| o.key.kind == kind && o.key.name == name)
            .unwrap_or_else(|| panic!("the example has a {kind} {name}"));
        let k = key(&o.key.api_version, kind, EXAMPLE_NAMESPACE, name);
        let current = live.get(&k).await.expect("get").expect("applied");
        assert!(
            o.manifest.pointer(pointer).is_none(),
            "{kind} {name} sets {pointer}"
        );
        assert!(
            current.pointer(pointer).is_some(),
            "the server did not default {pointer} of {kind} {name}"
        );
    }
    let confirm = ApiDryRun::new(live.clone());
    for set in &sets {
        let report = drift_with(&live, set, &confirm).await;
        assert!(
            report.items.is_empty(),
            "tier {}: drift right after apply:{}",
            set.tier,
            show(&report.items)
        );
        assert_eq!(report.in_sync, set.objects.len(), "tier {}", set.tier);
        eprintln!(
            "tier {}: {} objects in sync, {} local differences dismissed by the dry-run",
            set.tier, report.in_sync, report.dismissed_by_dry_run
        );
    }
}

#[tokio::test]
async fn every_tier_of_the_example_applied_side_by_side_has_no_drift_although_the_server_defaulted_it()
 {
    let _lock = lock_example_namespaces();
    let client = support::client().await;
    let sets: Vec<DesiredSet> = EXAMPLE_TIERS.iter().map(|t| example_tier(t)).collect();
    let crds: Vec<&str> = sets
        .iter()
        .filter(|s| {
            s.objects
                .iter()
                .any(|o| o.key.kind == "CustomResourceDefinition")
        })
        .map(|s| s.tier.as_str())
        .collect();
    assert_eq!(crds, ["experimental"], "the shared CRD belongs to one tier");
    wait_no_namespace_terminating(&client, &sets).await;
    let result = tokio::spawn(apply_every_tier_and_detect(client.clone(), sets.clone())).await;
    delete_example_tiers(&client, &sets).await;
    if let Err(e) = result {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("the test task did not finish: {e}"),
        }
    }
}

#[tokio::test]
async fn a_reconcile_with_no_change_in_git_or_the_cluster_sends_no_request_to_the_api_server() {
    with_namespace("drift-zero-requests", |client, ns| async move {
        let set = example_tier_in(&ns);
        apply_set(&client, &set).await;
        // Until the rollout settles, the Deployment controller writes to the Deployments and
        // each write is a new resourceVersion: a new object to compare, not "no change".
        wait_rolled_out(&client, &set).await;

        let config = gitopsd::cluster::client_config(Some(kubeconfig()))
            .await
            .expect("load kubeconfig");
        let (counted, counter) = counted_client(config).expect("build counted client");
        let kinds = set.kinds();
        let names: Vec<ObjectKey> = set
            .objects
            .iter()
            .map(|o| key(&o.key.api_version, &o.key.kind, &ns, &o.key.name))
            .collect();
        let cache = LiveCache::start(
            counted.clone(),
            &set.tier,
            Namespaces::only([ns.as_str()]),
            &kinds,
            &names,
        )
        .await
        .expect("start the live cache");
        cache.wait_synced(SYNC).await.expect("the live cache syncs");
        // A watch connects right after its list: wait for every one, so later counts are quiet.
        let watches = cache.watches() as u64;
        eventually("every watch connected", SYNC, || {
            let connected = counter.get(Verb::Watch) >= watches;
            async move { connected.then_some(()) }
        })
        .await;

        let confirm = ApiDryRun::new(ApiLive::new(counted));
        let tier = tier_config(&set.tier);
        let first = detect(&set, &tier, &cache, &confirm)
            .await
            .expect("drift detection");
        assert!(first.items.is_empty(), "drift:{}", show(&first.items));
        // Even the first reconcile needs no dry-run: the local comparison reads only the
        // fields the manifests set and gitopsd owns, so the server's defaults never reach it.
        // Should a later change need dry-runs here, the first reconcile may send them (they
        // are cached by digest and resourceVersion); the reconciles after it still may not.
        assert_eq!(
            confirm.requests_sent(),
            0,
            "dry-runs on the first reconcile"
        );
        let before = counter.by_verb();
        for _ in 0..5 {
            let again = detect(&set, &tier, &cache, &confirm)
                .await
                .expect("drift detection");
            assert_eq!(again, first);
        }
        assert_eq!(
            counter.by_verb(),
            before,
            "a no-change reconcile sent requests"
        );
    })
    .await;
}

#[test]
fn diff_without_a_repo_or_a_config_is_an_error_with_exit_code_2() {
    let out = gitopsd(&["diff", "--tier", "experimental"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--repo"), "{}", stderr(&out));
}

/// Deletes a namespace a test made beside its own, however the test ends.
struct DeleteNamespace(String);

impl Drop for DeleteNamespace {
    fn drop(&mut self) {
        let name = self.0.clone();
        support::cleanup_blocking(move |client| async move {
            let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
            let _ = api
                .delete(&name, &kube::api::DeleteParams::background())
                .await;
        });
    }
}
