//! API server faults (issue 21 items 1, 7, 8): `gitopsd run` against a control plane of its
//! own, whose API server these tests stop and start again.
//!
//! The shared test cluster must never lose its API server under other tests, so this binary
//! brings up a second one (`scripts/cluster.sh up` with `GITOPSD_CLUSTER_DIR` =
//! `$GITOPSD_CACHE/cluster-faults`, port 16470, one kwok node; reused when it is up already),
//! and runs its tests one at a time (they share that API server). A restart holds the
//! cluster's lock (`$DIR/.lock`, flock) from stop to start, so that a `cluster.sh up` of
//! another process waits instead of taking the stopped API server for a crash.

mod git_support;
mod reconcile_support;
mod support;

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use reconcile_support::{DaemonExtra, Files, Fixture, TierExtra, http_get};
use serde_json::{Value, json};

const FIRST_SYNC: Duration = Duration::from_secs(120);
/// Generous bounds for things that take seconds: a shared 2-core machine.
const CHANGE: Duration = Duration::from_secs(90);

/// The control plane of this binary: started (or reused) once, then every kube client and
/// daemon of these tests uses it.
fn faults_cluster() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = cluster_dir();
        let out = cluster_sh(&["up"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let kubeconfig = stdout
            .lines()
            .last()
            .map(|l| PathBuf::from(l.trim()))
            .expect("`cluster.sh up` printed the kubeconfig path");
        support::use_kubeconfig(kubeconfig);
        dir
    })
}

fn cluster_dir() -> PathBuf {
    let cache = std::env::var_os("GITOPSD_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/gitopsd")))
        .expect("GITOPSD_CACHE or HOME");
    cache.join("cluster-faults")
}

fn cluster_sh(args: &[&str]) -> std::process::Output {
    let script = support::repo_root().join("scripts/cluster.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .env("GITOPSD_CLUSTER_DIR", cluster_dir())
        .env("GITOPSD_CLUSTER_PORT", "16470")
        .env("GITOPSD_KWOK_NODES", "1")
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "`cluster.sh {}` failed ({}); its output above says why",
        args.join(" "),
        out.status
    );
    out
}

/// One test at a time in this binary: they share the API server that some of them restart.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A test's turn: this binary's control plane is up, and no other test of it runs until the
/// guard is dropped (declare it before the fixture, so the fixture is dropped first).
async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    faults_cluster();
    SERIAL.lock().await
}

/// A daemon started on a repo of `n` ConfigMaps `cm-0000` .. whose value is "one".
fn start(test: &str, n: usize, extra: TierExtra, daemon: DaemonExtra) -> Fixture {
    let mut f = Fixture::with_daemon(test, configmaps(n, "one"), extra, daemon);
    f.start();
    f
}

/// Waits until the first commit (the head) is Synced.
async fn wait_first_sync(f: &Fixture) {
    let head = f.head();
    f.wait_status("Synced at the first commit", FIRST_SYNC, |s| {
        (s["revision"] == head && s["sync"] == "Synced").then_some(())
    })
    .await;
}

/// The cluster's lock, held from stop to start (see the module doc).
struct ClusterLock(#[allow(dead_code)] std::fs::File);

impl ClusterLock {
    fn take() -> ClusterLock {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(faults_cluster().join(".lock"))
            .expect("open the cluster's lock file");
        // SAFETY: flock on a descriptor this struct owns; released when it is closed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
        ClusterLock(file)
    }
}

/// Kills the API server (SIGKILL: a crash), keeps it down for `down`, starts it again and
/// waits until it is ready. Returns when it was killed.
async fn restart_apiserver(down: Duration) -> DateTime<Utc> {
    let lock = ClusterLock::take();
    let killed = Utc::now();
    cluster_sh(&["stop", "kube-apiserver", "--kill"]);
    tokio::time::sleep(down).await;
    cluster_sh(&["start", "kube-apiserver"]);
    drop(lock);
    killed
}

/// `n` ConfigMaps `cm-0000` .. in one file per 100.
fn configmaps(n: usize, value: &str) -> Files {
    let mut files = Vec::new();
    for chunk in 0..n.div_ceil(100) {
        let mut text = String::new();
        for i in chunk * 100..(chunk * 100 + 100).min(n) {
            text += &format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:04}\ndata:\n  value: \"{value}\"\n"
            );
        }
        files.push((format!("base/cms-{chunk:02}.yaml"), text));
    }
    files
}

/// `name{labels} value` lines of one metric family, parsed.
fn metric(text: &str, name: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            if !(rest.is_empty() || rest.starts_with('{')) {
                return None;
            }
            Some((rest.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn metrics(f: &Fixture) -> String {
    let (code, text) = http_get(f.port, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{text}");
    text
}

/// Patches the API server accepted from the daemon (server-side applies and dry-runs are PATCH);
/// attempts the outage refused are not counted, they wrote nothing.
fn patches(f: &Fixture) -> f64 {
    metric(&metrics(f), "gitopsd_kube_requests_total")
        .iter()
        .filter(|(labels, _)| {
            labels.contains("verb=\"patch\"")
                && (labels.contains("code=\"200\"") || labels.contains("code=\"201\""))
        })
        .map(|(_, v)| v)
        .sum()
}

/// Critical drift items ever counted, the audit log's drift records naming `object-deleted`, and
/// the status's current ones: all must stay empty across an API server restart.
fn assert_no_deletion_reported(f: &Fixture) {
    let text = metrics(f);
    let critical: f64 = metric(&text, "gitopsd_drift_detected_total")
        .iter()
        .filter(|(l, _)| l.contains("severity=\"critical\""))
        .map(|(_, v)| v)
        .sum();
    let audit = std::fs::read_to_string(support::audit_log_in(&f.dir.path().join("workdir")))
        .unwrap_or_default();
    let deleted_in_audit = audit
        .lines()
        .filter(|l| l.contains("object-deleted"))
        .count();
    let status = f.status();
    let in_status = status["drift"]["items"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|i| i["rule"] == "object-deleted")
            .count()
    });
    assert_eq!(
        (critical, deleted_in_audit, in_status),
        (0.0, 0, 0),
        "no object was deleted: critical drift counted, object-deleted audit lines, in status; first such audit line (cut): {}",
        audit
            .lines()
            .find(|l| l.contains("object-deleted"))
            .map(|l| l.chars().take(400).collect::<String>())
            .unwrap_or_default()
    );
}

fn last_reconcile(s: &Value) -> Option<DateTime<Utc>> {
    s["lastReconcileAt"].as_str()?.parse().ok()
}

/// Edits `cm-0001`'s data in the cluster as another manager and waits until gitopsd has put
/// it back.
async fn edit_and_wait_corrected(f: &Fixture, what: &str) {
    let t0 = std::time::Instant::now();
    let client = support::client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, &f.tier);
    let edit = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"value": "edited"}});
    support::eventually("the live edit to be accepted", CHANGE, || {
        let cms = cms.clone();
        let edit = edit.clone();
        async move {
            cms.patch(
                "cm-0001",
                &PatchParams::apply("someone-else").force(),
                &Patch::Apply(&edit),
            )
            .await
            .ok()
        }
    })
    .await;
    support::eventually(what, CHANGE, || {
        let cms = cms.clone();
        async move {
            let cm = cms.get("cm-0001").await.ok()?;
            let value = cm.data?.get("value").cloned()?;
            (value != "edited").then_some(())
        }
    })
    .await;
    eprintln!("{what}: {:?}", t0.elapsed());
}

/// Item 1, steady state: the API server down and back must not make gitopsd think the tier's
/// objects were deleted, re-apply them, or stay blind to live edits.
#[tokio::test]
async fn an_api_server_restart_in_steady_state_reports_no_deletion_and_reapplies_nothing() {
    let _turn = turn().await;
    // No poll during the test: what gitopsd sees after the return comes from its watches.
    let daemon = DaemonExtra {
        interval: "1h".into(),
        ..DaemonExtra::default()
    };
    let f = start("fa-steady", 300, TierExtra::default(), daemon);
    wait_first_sync(&f).await;
    let before = patches(&f);

    let killed = restart_apiserver(Duration::from_secs(15)).await;
    // A reconcile that started after the kill and ended Synced: one after the return (while
    // the API server is away, a reconcile waits for the cache and fails). It may have run
    // before `/readyz` said ok, which is why the kill is the mark, not the return.
    f.wait_status("a Synced reconcile after the restart", CHANGE, |s| {
        (last_reconcile(s).is_some_and(|t| t > killed)
            && s["sync"] == "Synced"
            && s["lastError"].is_null())
        .then_some(())
    })
    .await;
    let after = patches(&f);
    assert_no_deletion_reported(&f);
    assert!(
        after - before <= 0.0,
        "nothing changed, yet {} PATCH requests were sent after the API server returned",
        after - before
    );

    // A live edit right after the return is corrected as in steady state.
    edit_and_wait_corrected(&f, "the live edit made after the restart to be corrected").await;
    assert_no_deletion_reported(&f);
    let sent = patches(&f) - after;
    assert!(
        sent <= 3.0,
        "one object changed; {sent} PATCH requests to correct it"
    );
}

/// Item 1, mid-apply of a first sync: the objects created after the API server returned are
/// not "deleted" while the watches list again, and none is applied twice.
#[tokio::test]
async fn an_api_server_killed_mid_first_sync_reports_no_deletion() {
    let _turn = turn().await;
    let n = 1000;
    let f = start(
        "fa-midfirst",
        n,
        TierExtra::default(),
        DaemonExtra::default(),
    );
    support::eventually("the first sync to start applying", FIRST_SYNC, || {
        let started = patches(&f) > 20.0;
        async move { started.then_some(()) }
    })
    .await;
    restart_apiserver(Duration::from_secs(15)).await;
    wait_first_sync(&f).await;
    assert_no_deletion_reported(&f);
    let sent = patches(&f);
    assert!(
        sent <= (n + n / 20) as f64,
        "{n} objects to create; {sent} PATCH requests were sent"
    );
    edit_and_wait_corrected(&f, "a live edit after the recovery to be corrected").await;
}

/// Item 1, mid-apply: the API server killed while a commit changing many objects is applied.
/// After it returns, only the objects not applied yet are applied, and nothing is reported
/// deleted.
#[tokio::test]
async fn an_api_server_killed_mid_apply_costs_only_the_rest_of_the_apply() {
    let _turn = turn().await;
    let n = 1000;
    let f = start(
        "fa-midapply",
        n,
        TierExtra::default(),
        DaemonExtra::default(),
    );
    wait_first_sync(&f).await;
    let before = patches(&f);
    f.write_files(&configmaps(n, "two"));
    let second = f.commit("every ConfigMap changes");
    // Kill the API server once the apply of the second commit has started.
    support::eventually("the apply of the second commit to start", CHANGE, || {
        let started = patches(&f) > before + 20.0;
        async move { started.then_some(()) }
    })
    .await;
    restart_apiserver(Duration::from_secs(15)).await;
    f.wait_status("Synced at the second commit", FIRST_SYNC, |s| {
        (s["revision"] == second && s["sync"] == "Synced").then_some(())
    })
    .await;
    let sent = patches(&f) - before;
    assert_no_deletion_reported(&f);
    // Each object once, plus the few whose answer the outage cut (applied, then retried).
    assert!(
        sent <= (n + n / 20) as f64,
        "{n} objects changed; {sent} PATCH requests were sent"
    );
    edit_and_wait_corrected(&f, "a live edit after the recovery to be corrected").await;
}

/// Item 7: a live edit made while a reconcile runs is corrected by the reconcile after it,
/// not at the next poll (an hour away here).
#[tokio::test]
async fn a_live_edit_during_a_reconcile_is_corrected_without_waiting_for_the_interval() {
    let _turn = turn().await;
    let daemon = DaemonExtra {
        interval: "1h".into(),
        ..DaemonExtra::default()
    };
    // Enough objects that the first sync runs for seconds.
    let f = start("fa-during", 1500, TierExtra::default(), daemon);
    let client = support::client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, &f.tier);
    let edit = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"value": "edited"}});
    // As soon as the first object exists, while the first sync still applies the others.
    support::eventually(
        "cm-0000 to be created by the first sync",
        FIRST_SYNC,
        || {
            let cms = cms.clone();
            let edit = edit.clone();
            async move {
                cms.patch(
                    "cm-0000",
                    &PatchParams::apply("someone-else").force(),
                    &Patch::Apply(&edit),
                )
                .await
                .ok()
            }
        },
    )
    .await;
    let status = f.status();
    assert!(
        status["lastSync"].is_null(),
        "the first sync had finished before the edit; the test needs a slower one: {}",
        reconcile_support::brief_status(&status)
    );
    let head = f.head();
    f.wait_status("Synced at the first commit", FIRST_SYNC, |s| {
        (s["revision"] == head && s["lastSync"]["revision"] == head).then_some(())
    })
    .await;
    support::eventually(
        "the edit made during the first sync to be corrected",
        CHANGE,
        || {
            let cms = cms.clone();
            async move {
                let cm = cms.get("cm-0000").await.ok()?;
                (cm.data?.get("value")? == "one").then_some(())
            }
        },
    )
    .await;
}

/// Item 8: a live object rewritten many times under policy `alert` (never corrected, so every
/// write is a new live version to dry-run against) keeps one dry-run answer, not one per
/// version.
#[tokio::test]
async fn the_dry_run_cache_keeps_one_entry_per_object_under_alert_only_drift() {
    let _turn = turn().await;
    let extra = TierExtra(vec![
        "policy: {critical: alert, high: alert, medium: alert, low: alert}".into(),
    ]);
    let objects = 5;
    let f = start("fa-dryrun", objects, extra, DaemonExtra::default());
    wait_first_sync(&f).await;
    let client = support::client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, &f.tier);
    let writes = 40;
    for i in 0..writes {
        let edit = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"value": format!("edit-{i}")}});
        cms.patch(
            "cm-0001",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&edit),
        )
        .await
        .expect("write cm-0001");
        let written = Utc::now();
        // Each version seen (and dry-run against) by a reconcile that started after the write.
        f.wait_status("a reconcile after the write", CHANGE, |s| {
            last_reconcile(s).is_some_and(|t| t > written).then_some(())
        })
        .await;
    }
    let entries = metric(&metrics(&f), "gitopsd_dryrun_cache_entries")
        .into_iter()
        .find(|(labels, _)| labels.contains(&f.tier))
        .map(|(_, v)| v);
    // The tier's Namespace and ConfigMaps are all the desired objects there are.
    let desired = (objects + 1) as f64;
    assert!(
        entries.is_some_and(|n| (1.0..=desired).contains(&n)),
        "{writes} writes to one object: dry-run cache entries {entries:?}, expected 1..={desired}"
    );
    let status = f.status();
    assert_eq!(status["sync"], "OutOfSync", "alert-only drift is reported");
}
