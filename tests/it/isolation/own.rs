//! Never take what is not yours (issue 13, item 3): a tier creates or changes only the
//! Namespaces it lists, and takes over no existing object that is not in its inventory (no
//! tier label, another tier's label, or a label alone) unless its `adopt:` names it.
//!
//! Each test runs the real daemon (`reconcile_support::Fixture`: its own repo, tier, tier
//! namespace and state namespace) and checks with a separate client that a refused object is
//! unchanged after the daemon provably reconciled again (its `lastReconcileAt` moved past the
//! moment the refusal was seen), and that it never entered the tier's inventory.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gitopsd::live::ObjectKey;
use gitopsd::render::TIER_LABEL;
use gitopsd::state::StateStore;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::reconcile_support::{Fixture, IMAGE_1, TierExtra, base_files, http_get, random_suffix};
use crate::support;

const PSA_ENFORCE: &str = "pod-security.kubernetes.io/enforce";
const FIRST_SYNC: Duration = Duration::from_secs(60);
const CHANGE: Duration = Duration::from_secs(45);
/// The field manager of the objects the tests make by hand: the refusal must name it.
const HANDMADE: &str = "own-test-handmade";

fn last_reconcile(s: &Value) -> Option<DateTime<Utc>> {
    s["lastReconcileAt"].as_str()?.parse().ok()
}

/// Waits until the tier's status shows a refusal (sync `Failed`, the error holding every
/// `needle`), then until the daemon reconciled once more after that, and returns the status
/// of that later reconcile: what the cluster looks like then is what the daemon left.
async fn refused_then_reconciled(f: &Fixture, needles: &[&str]) -> Value {
    let seen = f
        .wait_status("the refusal in the status", CHANGE, |s| {
            let error = s["lastError"].as_str().unwrap_or_default();
            (s["sync"] == "Failed" && needles.iter().all(|n| error.contains(n))).then(|| s.clone())
        })
        .await;
    let at = last_reconcile(&seen).expect("lastReconcileAt once refused");
    f.wait_status("a reconcile after the refusal", CHANGE, |s| {
        (last_reconcile(s).is_some_and(|t| t > at) && s["sync"] == "Failed").then(|| s.clone())
    })
    .await
}

async fn inventory(client: &Client, f: &Fixture) -> gitopsd::state::Inventory {
    StateStore::new(client.clone(), &f.state_ns)
        .load(&f.tier)
        .await
        .expect("read the tier state")
        .inventory
}

fn key(kind: &str, namespace: Option<&str>, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: "v1".into(),
        kind: kind.into(),
        namespace: namespace.map(str::to_owned),
        name: name.into(),
    }
}

fn handmade() -> PostParams {
    PostParams {
        field_manager: Some(HANDMADE.into()),
        ..PostParams::default()
    }
}

/// Adds `line` under the fixture's tier in gitopsd.yaml and restarts the daemon with it.
fn restart_with(f: &mut Fixture, line: &str) {
    f.kill();
    let config = std::fs::read_to_string(&f.config).expect("read gitopsd.yaml");
    let config = config.replacen(
        "    prune: true\n",
        &format!("    prune: true\n    {line}\n"),
        1,
    );
    std::fs::write(&f.config, config).expect("write gitopsd.yaml");
    f.start();
}

fn labels(ns: &Namespace) -> BTreeMap<String, String> {
    ns.metadata.labels.clone().unwrap_or_default()
}

/// The attack of issue 13: a `clusterScoped: true` tier's repo declares a Namespace that
/// exists already (made outside gitopsd, no tier label) with Pod Security `privileged`.
/// Refused, naming the holder and the fix; nothing of the revision reaches the cluster. Then
/// the operator adopts it in gitopsd.yaml, and the tier takes it.
#[tokio::test]
async fn a_pre_existing_namespace_is_not_relabelled_privileged_until_the_tier_adopts_it() {
    let client = support::client().await;
    let mut f = Fixture::new("own-ns", base_files(IMAGE_1), TierExtra::default());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let victim: Namespace = serde_json::from_value(json!({"metadata": {
        "name": f.tier,
        "labels": {PSA_ENFORCE: "restricted", "owner": "platform-team"},
    }}))
    .expect("namespace");
    namespaces
        .create(&handmade(), &victim)
        .await
        .expect("create the pre-existing namespace");
    let before = labels(&namespaces.get(&f.tier).await.expect("get namespace"));
    f.write_files(&vec![(
        format!("tiers/{}/namespace.yaml", f.tier),
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n  labels:\n    {PSA_ENFORCE}: privileged\n",
            f.tier
        ),
    )]);
    let revision = f.commit("relabel the namespace privileged");
    f.start();

    let namespace = format!("Namespace {}", f.tier);
    let adopt = format!("`adopt: [{{kind: Namespace, name: {}}}]`", f.tier);
    let status = refused_then_reconciled(
        &f,
        &[
            &namespace,
            "no gitopsd.io/tier label",
            &format!("field managers: {HANDMADE}"),
            &adopt,
            "[ownership/not-owned]",
        ],
    )
    .await;
    assert_ne!(
        status["revision"], revision,
        "a refused revision is not the deployed one"
    );
    assert_eq!(
        status["health"], "Unknown",
        "a refused revision is never assessed healthy"
    );

    // A separate client: the labels are as they were, nothing else of the revision exists,
    // and the inventory is empty.
    let after = namespaces.get(&f.tier).await.expect("get namespace");
    assert_eq!(labels(&after), before, "the namespace's labels changed");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.tier);
    for name in ["api-config", "extra-1"] {
        assert!(
            cms.get_opt(name).await.expect("get configmap").is_none(),
            "ConfigMap {name} of the refused revision was applied"
        );
    }
    assert!(
        inventory(&client, &f).await.is_empty(),
        "the inventory gained objects"
    );

    // The operator's consent, by name: the tier takes the namespace over. The label the repo
    // changes was set by hand (another field manager), so taking it needs forceConflicts too.
    let adopt_line = format!(
        "adopt: [{{kind: Namespace, name: {}}}]\n    apply: {{forceConflicts: true}}",
        f.tier
    );
    restart_with(&mut f, &adopt_line);
    f.wait_synced_healthy(&revision, FIRST_SYNC).await;
    let adopted = labels(&namespaces.get(&f.tier).await.expect("get namespace"));
    assert_eq!(
        adopted.get(PSA_ENFORCE).map(String::as_str),
        Some("privileged")
    );
    assert_eq!(adopted.get(TIER_LABEL), Some(&f.tier));
    assert!(
        inventory(&client, &f)
            .await
            .contains_key(&key("Namespace", None, &f.tier)),
        "the adopted namespace is in the inventory"
    );
}

/// A Namespace the tier does not list in `namespaces:` is a blocking validation finding: the
/// daemon keeps the last good set, and the Namespace (existing, made by hand) is untouched.
#[tokio::test]
async fn a_namespace_outside_the_tiers_namespaces_is_blocked_by_validation() {
    let client = support::client().await;
    let (f, first) = Fixture::new("own-list", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;

    let other = format!("own-other-{}", random_suffix());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let o: Namespace = serde_json::from_value(
        json!({"metadata": {"name": other, "labels": {PSA_ENFORCE: "baseline"}}}),
    )
    .expect("namespace");
    namespaces
        .create(&handmade(), &o)
        .await
        .expect("create namespace");
    let cleanup = Cleanup(other.clone());
    let before = labels(&namespaces.get(&other).await.expect("get"));
    f.write_files(&vec![(
        "base/other-namespace.yaml".to_owned(),
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {other}\n  labels:\n    {PSA_ENFORCE}: privileged\n"
        ),
    )]);
    f.commit("take another namespace");

    let status = refused_then_reconciled(
        &f,
        &[
            &format!("Namespace {other}"),
            "may create or change only the Namespaces it lists",
            "[scope/namespace-object]",
        ],
    )
    .await;
    assert_eq!(
        status["revision"], first,
        "the last good revision stays deployed"
    );
    assert_eq!(labels(&namespaces.get(&other).await.expect("get")), before);

    // `gitopsd validate` says the same, offline.
    let out = support::gitopsd(&[
        "validate",
        "--config",
        f.config.to_str().expect("utf-8 path"),
        "--offline",
    ]);
    let stdout = support::stdout(&out);
    assert!(!out.status.success(), "validate passed: {stdout}");
    assert!(
        stdout.contains(&format!(
            "Namespace {other}: tier \"{}\" may create or change only the Namespaces it lists ({})",
            f.tier, f.tier
        )),
        "{stdout}"
    );
    drop(cleanup);
}

/// An existing ConfigMap without a tier label in the tier's namespace: refused with the rest
/// of the revision (a new ConfigMap beside it is not created), unchanged, not in the
/// inventory; once `adopt:` names it, adopted: labelled and in the inventory.
#[tokio::test]
async fn an_unlabelled_configmap_is_refused_until_adopted() {
    let client = support::client().await;
    let (mut f, first) = Fixture::new("own-cm", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.tier);
    let legacy: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "legacy"},
        "data": {"note": "made by hand"},
    }))
    .expect("configmap");
    cms.create(&handmade(), &legacy)
        .await
        .expect("create legacy");
    let before = cms.get("legacy").await.expect("get legacy");
    f.write_files(&vec![
        (
            "base/legacy.yaml".to_owned(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: legacy\ndata:\n  greeting: hello\n"
                .to_owned(),
        ),
        (
            "base/fresh.yaml".to_owned(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fresh\ndata:\n  greeting: hello\n"
                .to_owned(),
        ),
    ]);
    let second = f.commit("take the legacy ConfigMap");

    let legacy_name = format!("ConfigMap {}/legacy", f.tier);
    let adopt = format!(
        "`adopt: [{{kind: ConfigMap, namespace: {}, name: legacy}}]`",
        f.tier
    );
    let status = refused_then_reconciled(
        &f,
        &[&legacy_name, "no gitopsd.io/tier label", HANDMADE, &adopt],
    )
    .await;
    assert_eq!(status["revision"], first);
    let after = cms.get("legacy").await.expect("get legacy");
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "legacy was written"
    );
    assert!(
        cms.get_opt("fresh").await.expect("get fresh").is_none(),
        "the refused revision's new ConfigMap was created"
    );
    let inv = inventory(&client, &f).await;
    assert!(!inv.contains_key(&key("ConfigMap", Some(&f.tier), "legacy")));
    assert!(!inv.contains_key(&key("ConfigMap", Some(&f.tier), "fresh")));

    let adopt_line = format!(
        "adopt: [{{kind: ConfigMap, namespace: {}, name: legacy}}]",
        f.tier
    );
    restart_with(&mut f, &adopt_line);
    f.wait_synced_healthy(&second, CHANGE).await;
    let adopted = cms.get("legacy").await.expect("get legacy");
    let labels = adopted.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get(TIER_LABEL), Some(&f.tier));
    assert_eq!(
        adopted
            .data
            .unwrap_or_default()
            .get("greeting")
            .map(String::as_str),
        Some("hello")
    );
    let inv = inventory(&client, &f).await;
    assert!(inv.contains_key(&key("ConfigMap", Some(&f.tier), "legacy")));
    assert!(inv.contains_key(&key("ConfigMap", Some(&f.tier), "fresh")));
}

/// Objects labelled by hand, one for another tier, one for this very tier (a label alone is
/// no proof): both refused and unchanged; `gitopsd validate --kubeconfig` names both, `gitopsd
/// diff` refuses with exit code 2.
#[tokio::test]
async fn objects_labelled_for_another_tier_or_only_labelled_for_this_one_are_refused() {
    let client = support::client().await;
    let (f, first) = Fixture::new("own-other", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.tier);
    let other_tier = format!("other-{}", random_suffix());
    for (name, tier) in [("theirs", other_tier.as_str()), ("forged", f.tier.as_str())] {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {TIER_LABEL: tier}},
            "data": {"owner": "someone else"},
        }))
        .expect("configmap");
        cms.create(&handmade(), &cm)
            .await
            .expect("create configmap");
    }
    let before: Vec<_> = [cms.get("theirs").await, cms.get("forged").await]
        .into_iter()
        .map(|c| c.expect("get").metadata.resource_version)
        .collect();
    f.write_files(&vec![
        (
            "base/theirs.yaml".to_owned(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: theirs\ndata:\n  owner: me\n"
                .to_owned(),
        ),
        (
            "base/forged.yaml".to_owned(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: forged\ndata:\n  owner: me\n"
                .to_owned(),
        ),
    ]);
    f.commit("take two labelled ConfigMaps");

    let status = refused_then_reconciled(&f, &["blocked by 2 finding(s)", "[ownership/"]).await;
    assert_eq!(status["revision"], first);
    let after: Vec<_> = [cms.get("theirs").await, cms.get("forged").await]
        .into_iter()
        .map(|c| c.expect("get").metadata.resource_version)
        .collect();
    assert_eq!(after, before, "a refused ConfigMap was written");
    let inv = inventory(&client, &f).await;
    assert!(!inv.contains_key(&key("ConfigMap", Some(&f.tier), "theirs")));
    assert!(!inv.contains_key(&key("ConfigMap", Some(&f.tier), "forged")));

    let kubeconfig = support::kubeconfig()
        .to_str()
        .expect("utf-8 path")
        .to_owned();
    let config = f.config.to_str().expect("utf-8 path").to_owned();
    let out = support::gitopsd(&["validate", "--config", &config, "--kubeconfig", &kubeconfig]);
    let stdout = support::stdout(&out);
    assert!(!out.status.success(), "validate passed: {stdout}");
    assert!(
        stdout.contains(&format!(
            "ConfigMap {}/theirs: tier \"{}\" may not take over this object: it belongs to tier \"{other_tier}\" ({TIER_LABEL}={other_tier}; field managers: {HANDMADE})",
            f.tier, f.tier
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("ConfigMap {}/forged: ", f.tier))
            && stdout.contains("a label alone is no proof")
            && stdout.contains("[ownership/label-only]"),
        "{stdout}"
    );
    let out = support::gitopsd(&[
        "diff",
        "--tier",
        &f.tier,
        "--config",
        &config,
        "--kubeconfig",
        &kubeconfig,
    ]);
    let stderr = support::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "diff: {stderr}");
    assert!(
        stderr.contains("[ownership/other-tier]")
            && stderr.contains("the daemon refuses this revision"),
        "{stderr}"
    );
}

/// Two tiers rendering the same objects: a second tier whose overlay puts the shared `base/`
/// into the first tier's namespace refuses every object the first one holds, naming it, and
/// changes none of them; the first tier stays Synced.
#[tokio::test]
async fn a_second_tier_rendering_the_first_tiers_objects_takes_none_of_them() {
    let client = support::client().await;
    let (mut f, _) = Fixture::new("own-two", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.tier);
    let before = cms.get("api-config").await.expect("get api-config");

    let b = format!("{}-b", f.tier);
    f.write_files(&vec![(
        format!("tiers/{b}/tier.yaml"),
        format!("namespace: {}\n", f.tier),
    )]);
    f.commit("a second tier over the same base");
    f.kill();
    let config = std::fs::read_to_string(&f.config).expect("read gitopsd.yaml");
    let config = config.replacen(
        "http:\n",
        &format!(
            "  - name: {b}\n    ref: main\n    namespaces: [{}]\n    prune: true\nhttp:\n",
            f.tier
        ),
        1,
    );
    std::fs::write(&f.config, config).expect("write gitopsd.yaml");
    f.start();

    let status_of_b = || -> Option<Value> {
        let (code, body) = http_get(f.port, &format!("/api/v1/tiers/{b}")).ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    };
    let needle = format!(
        "ConfigMap {}/api-config: tier \"{b}\" may not take over this object: it belongs to tier \"{}\"",
        f.tier, f.tier
    );
    // A refusal, and a later reconcile that refuses again.
    let mut refused_at = None;
    support::eventually_every(
        &format!("tier {b} to refuse and reconcile again"),
        CHANGE,
        Duration::from_millis(200),
        || {
            let mut done = Err("no status".to_owned());
            if let Some(s) = status_of_b() {
                let error = s["lastError"].as_str().unwrap_or_default();
                // The first refusal listed may be any object of base/; the full list is
                // checked with validate below.
                if s["sync"] == "Failed" && error.contains("[ownership/other-tier]") {
                    match (refused_at, last_reconcile(&s)) {
                        (None, t) => refused_at = t,
                        (Some(at), Some(t)) if t > at => done = Ok(()),
                        _ => {}
                    }
                }
                if done.is_err() {
                    done = Err(s.to_string());
                }
            }
            std::future::ready(done)
        },
    )
    .await;
    let after = cms.get("api-config").await.expect("get api-config");
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(
        after.metadata.labels.unwrap_or_default().get(TIER_LABEL),
        Some(&f.tier)
    );
    let b_inventory = StateStore::new(client.clone(), &f.state_ns)
        .load(&b)
        .await
        .expect("read tier b's state")
        .inventory;
    assert!(b_inventory.is_empty(), "tier {b} took {b_inventory:?}");
    f.wait_synced_healthy(&f.head(), CHANGE).await;

    let out = support::gitopsd(&[
        "validate",
        "--config",
        f.config.to_str().expect("utf-8 path"),
        "--tier",
        &b,
        "--kubeconfig",
        support::kubeconfig().to_str().expect("utf-8 path"),
    ]);
    let stdout = support::stdout(&out);
    assert!(stdout.contains(&needle), "{stdout}");
    assert!(
        stdout.contains(&format!("tier {b}: 7 objects, 7 blocking")),
        "{stdout}"
    );
}

/// The kube requests of the daemon other than watches, by verb and code, from /metrics.
fn requests(f: &Fixture) -> Vec<String> {
    let (code, text) = http_get(f.port, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{text}");
    text.lines()
        .filter(|l| l.starts_with("gitopsd_kube_requests_total{") && !l.contains("verb=\"watch\""))
        .map(str::to_owned)
        .collect()
}

/// The check reads the live cache: a refused revision, reconciled again and again (the
/// interval is 1s), sends no request at all, and so neither does the check of a tier whose
/// revision passes.
#[tokio::test]
async fn a_refused_revision_reconciled_again_sends_no_request() {
    let client = support::client().await;
    let (f, _) = Fixture::new("own-quiet", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.tier);
    let legacy: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "legacy"}, "data": {"note": "mine"}}))
            .expect("configmap");
    cms.create(&handmade(), &legacy)
        .await
        .expect("create legacy");
    f.write_files(&vec![(
        "base/legacy.yaml".to_owned(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: legacy\ndata:\n  greeting: hello\n"
            .to_owned(),
    )]);
    f.commit("take legacy");
    let status = refused_then_reconciled(&f, &["[ownership/not-owned]"]).await;
    let before = requests(&f);
    assert!(
        before.iter().any(|l| l.contains("verb=\"patch\"")),
        "the first sync's applies are counted: {before:?}"
    );
    let mut at = last_reconcile(&status).expect("lastReconcileAt");
    for _ in 0..3 {
        let s = f
            .wait_status("another reconcile", CHANGE, |s| {
                last_reconcile(s).is_some_and(|t| t > at).then(|| s.clone())
            })
            .await;
        at = last_reconcile(&s).expect("lastReconcileAt");
    }
    assert_eq!(
        requests(&f),
        before,
        "reconciles of a refused revision sent requests"
    );
}

/// Cluster-scoped objects the cluster ships are someone else's too: a `clusterScoped: true`
/// tier declaring ClusterRole `view` (to widen it) is refused by `gitopsd validate
/// --kubeconfig`, naming the managers that hold it. No daemon runs here: the object is shared
/// by everything on the cluster, so nothing gets a chance to write it.
#[tokio::test]
async fn a_clusterrole_the_cluster_ships_is_refused_by_validate_naming_its_managers() {
    let mut files = base_files(IMAGE_1);
    files.push((
        "base/view.yaml".to_owned(),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: view\nrules:\n  - {apiGroups: [\"\"], resources: [secrets], verbs: [get, list]}\n".to_owned(),
    ));
    let f = Fixture::new("own-view", files, TierExtra::default());
    let config = f.config.to_str().expect("utf-8 path").to_owned();
    let kubeconfig = support::kubeconfig()
        .to_str()
        .expect("utf-8 path")
        .to_owned();
    let out = support::gitopsd(&["validate", "--config", &config, "--kubeconfig", &kubeconfig]);
    let stdout = support::stdout(&out);
    assert!(!out.status.success(), "validate passed: {stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("ClusterRole view:"))
        .unwrap_or_else(|| panic!("no finding for ClusterRole view: {stdout}"));
    assert!(
        line.contains("no gitopsd.io/tier label; field managers: ")
            && line.contains("`adopt: [{kind: ClusterRole, name: view}]`")
            && line.ends_with("[ownership/not-owned]"),
        "{line}"
    );
    // The objects that do not exist yet are no finding: only the one refusal blocks.
    assert!(
        stdout.contains(&format!(
            "tier {}: 9 objects, 1 blocking, 0 warnings",
            f.tier
        )),
        "{stdout}"
    );
}

/// Deletes a namespace the test made, however the test ends: from a thread with a runtime and
/// a client of its own (the test's client needs the test's runtime, which waits here).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let name = self.0.clone();
        support::cleanup_blocking(move |client| async move {
            let api: Api<Namespace> = Api::all(client);
            let _ = api.delete(&name, &DeleteParams::background()).await;
        });
    }
}

/// The state ConfigMaps hold each tier's inventory, the proof of what it owns: a tier listing
/// the namespace they live in (here the default, `gitopsd`, as no `state.namespace` is set) is
/// refused at start-up, before anything is read or written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_listing_the_state_namespace_does_not_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("gitopsd.yaml");
    std::fs::write(
        &config,
        format!(
            "source: {{url: {}}}\ntiers:\n  - {{name: t, ref: main, namespaces: [shop, gitopsd]}}\nhttp: {{listen: \"127.0.0.1:0\"}}\n",
            dir.path().display()
        ),
    )
    .expect("write config");
    let kubeconfig = support::kubeconfig()
        .to_str()
        .expect("utf-8 path")
        .to_owned();
    let out = support::gitopsd(&[
        "run",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--kubeconfig",
        &kubeconfig,
        "--workdir",
        dir.path().join("work").to_str().expect("utf-8 path"),
    ]);
    let err = support::stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("tier t lists namespace \"gitopsd\", where the tiers' state ConfigMaps live"),
        "{err}"
    );
}
