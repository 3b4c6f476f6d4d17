//! Shared by the cluster tests: the local control plane (started once per test run, or reused
//! when it is already up) and a namespace of its own for each test.
//!
//! Set `GITOPSD_TEST_KUBECONFIG` to test against a cluster that is already running; otherwise
//! `scripts/cluster.sh up` builds and starts the local one. A cluster that cannot be started
//! fails the test with the reason: cluster tests are never skipped.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use gitopsd::live::{ApiLive, LiveObjects, ObjectKey};
use gitopsd::render::{Limits, render_tier};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Kubernetes version pinned in scripts/versions.env, e.g. `v1.37.2`.
pub fn pinned_kubernetes_version() -> String {
    let env = std::fs::read_to_string(repo_root().join("scripts/versions.env"))
        .expect("read scripts/versions.env");
    env.lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION="))
        .map(|v| v.trim().to_owned())
        .expect("KUBERNETES_VERSION in scripts/versions.env")
}

static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();

/// Makes `path` this test binary's cluster, before anything asked for [`kubeconfig`] (a test
/// binary that stops and starts the API server uses a control plane of its own:
/// tests/faults_apiserver.rs). Panics when another cluster was chosen already.
pub fn use_kubeconfig(path: PathBuf) {
    let chosen = KUBECONFIG.get_or_init(|| path.clone());
    assert_eq!(
        chosen, &path,
        "this test binary already uses another cluster"
    );
}

/// The kubeconfig of the test cluster; starts the local control plane on first use.
pub fn kubeconfig() -> &'static Path {
    KUBECONFIG.get_or_init(|| {
        if let Some(path) = std::env::var_os("GITOPSD_TEST_KUBECONFIG") {
            return PathBuf::from(path);
        }
        let script = repo_root().join("scripts/cluster.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("up")
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "`scripts/cluster.sh up` failed ({}); its output above says which component and which log to read",
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("`scripts/cluster.sh up` printed no kubeconfig path"));
        PathBuf::from(path.trim())
    })
}

/// A client for the test cluster. Made per test: a kube client belongs to the runtime that
/// made it, and every `#[tokio::test]` has its own.
pub async fn client() -> Client {
    let path = kubeconfig();
    let kc = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("read kubeconfig {}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("load kubeconfig {}: {e}", path.display()));
    let client = Client::try_from(config).expect("build kube client");
    announce_server(&client).await;
    client
}

/// Names the server once per test binary, on the real stderr (past the test harness's capture),
/// so the test log shows which API server the tests ran against.
async fn announce_server(client: &Client) {
    static ANNOUNCED: OnceLock<()> = OnceLock::new();
    if ANNOUNCED.get().is_some() {
        return;
    }
    let v = client
        .apiserver_version()
        .await
        .unwrap_or_else(|e| panic!("the test cluster's API server does not answer: {e}"));
    if ANNOUNCED.set(()).is_ok() {
        let line = format!(
            "cluster tests: kube-apiserver {} ({}), kubeconfig {}\n",
            v.git_version,
            v.platform,
            kubeconfig().display()
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// Runs `test` with a client and a fresh namespace. On failure, prints the namespace's pods and
/// events before the panic goes on; the namespace is deleted either way.
pub async fn with_namespace<F, Fut>(test_name: &str, test: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let client = client().await;
    let ns = unique_namespace_name(test_name);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut object = Namespace::default();
    object.metadata.name = Some(ns.clone());
    object.metadata.labels = Some([("gitopsd.io/test".to_owned(), "true".to_owned())].into());
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create test namespace {ns}: {e}"));

    let result = tokio::spawn(test(client.clone(), ns.clone())).await;
    if result.is_err() {
        dump_namespace(&client, &ns).await;
    }
    // Deletion finishes in the background; tests never reuse a namespace name.
    let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
    if let Err(e) = result {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task in {ns} did not finish: {e}"),
        }
    }
}

fn unique_namespace_name(test_name: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let slug: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "t-{}-{:x}{:x}{n}",
        slug.trim_matches('-'),
        std::process::id() % 0xfff,
        nanos % 0xffff
    )
}

async fn dump_namespace(client: &Client, ns: &str) {
    let mut report = format!("--- diagnostics for namespace {ns} ---\n");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    match pods.list(&ListParams::default()).await {
        Ok(list) => {
            for p in list {
                let status = p.status.clone().unwrap_or_default();
                let conditions: Vec<String> = status
                    .conditions
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| format!("{}={}", c.type_, c.status))
                    .collect();
                report += &format!(
                    "pod {} node={} phase={} conditions=[{}]\n",
                    p.name_any(),
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.clone())
                        .unwrap_or_default(),
                    status.phase.unwrap_or_default(),
                    conditions.join(", ")
                );
            }
        }
        Err(e) => report += &format!("cannot list pods: {e}\n"),
    }
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    if let Ok(list) = events.list(&ListParams::default()).await {
        for e in list {
            report += &format!(
                "event {} {}/{}: {} {}\n",
                e.type_.unwrap_or_default(),
                e.involved_object.kind.unwrap_or_default(),
                e.involved_object.name.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default()
            );
        }
    }
    eprintln!("{report}");
}

/// Runs `cleanup` to completion from a `Drop`: on a thread with a runtime and a client of its
/// own, since the test's runtime (and so the test's client) may be the one blocked in the drop.
pub fn cleanup_blocking<F, Fut>(cleanup: F)
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move { cleanup(client().await).await });
    })
    .join();
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_or(what, timeout, || {
        let next = check();
        async move { next.await.ok_or_else(String::new) }
    })
    .await
}

/// As [`eventually`], for a check that says why it is not there yet: the last `Err` is in the
/// panic message (e.g. the last status seen).
pub async fn eventually_or<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    eventually_every(what, timeout, POLL, check).await
}

/// As [`eventually_or`], asking every `every` (a short one to catch a moment that passes
/// quickly, e.g. a sync under way).
pub async fn eventually_every<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(why) => why,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}{}{last}",
            if last.is_empty() { "" } else { "; last seen: " }
        );
        tokio::time::sleep(every).await;
    }
}

/// As [`eventually_or`], on a thread without a runtime (a `Drop`, a `std::process` child
/// started from synchronous code).
pub fn eventually_blocking<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(v) => return v,
            Err(why) => why,
        };
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}{}{last}",
            if last.is_empty() { "" } else { "; last seen: " }
        );
        std::thread::sleep(POLL_BLOCKING);
    }
}

/// How often [`eventually`] asks again: often enough that a test waits little past the event,
/// rarely enough that the polls are no load on the shared cluster.
const POLL: Duration = Duration::from_millis(250);
/// [`eventually_blocking`] polls local things (a port, a child process): more often.
const POLL_BLOCKING: Duration = Duration::from_millis(50);

/// Reads a YAML fixture from tests/fixtures into a typed object.
pub fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = repo_root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read fixture {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse fixture {}: {e}", path.display()))
}

/// Runs the gitopsd binary from the repo root, with text logs and no config from the
/// environment, as a user at a terminal would.
/// The audit log a `gitopsd run` with no `audit.path` writes under its `workdir`:
/// `source/<key>/audit.log`, in the one source directory a daemon made there (a path that does
/// not exist before the daemon made it).
pub fn audit_log_in(workdir: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(workdir.join("source"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match dirs.as_slice() {
        [one] => one.join("audit.log"),
        [] => workdir.join("source/(none yet)/audit.log"),
        many => panic!(
            "{} holds the sources of {} daemons; which audit log is meant?",
            workdir.display(),
            many.len()
        ),
    }
}

pub fn gitopsd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gitopsd"))
        .args(args)
        .current_dir(repo_root())
        .env_remove("GITOPSD_CONFIG")
        .env("GITOPSD_LOG_FORMAT", "text")
        .output()
        .expect("run gitopsd")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Server-side apply of `manifest` by `manager`, forcing conflicts as `kubectl apply
/// --server-side --force-conflicts` does.
pub async fn apply_as(live: &ApiLive, manager: &str, key: &ObjectKey, manifest: &Value) {
    let api = live.api_for(key).await.expect("discovery");
    api.patch(
        &key.name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(manifest),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {key:?} as {manager}: {e}"));
}

/// Which kinds are namespaced for a render of the example config repo without a cluster:
/// Kubernetes' own kinds and the example's FeatureFlag (whose CRD only experimental holds).
pub fn example_scopes() -> gitopsd::render::KindScopes {
    gitopsd::render::KindScopes::builtin().with(
        "shop.example.com/v1",
        "FeatureFlag",
        gitopsd::render::KindScope::Namespaced,
    )
}

/// The example's FeatureFlag CRD (owned by its experimental tier), applied as gitopsd would
/// and left in place: the other tiers' FeatureFlags need it served.
pub async fn ensure_crd(live: &ApiLive) {
    let repo = repo_root().join("examples/config-repo");
    let set =
        render_tier(&repo, "experimental", &Limits::default(), &example_scopes()).expect("render");
    let crd = set
        .objects
        .iter()
        .find(|o| o.key.kind == "CustomResourceDefinition")
        .expect("the example has a CRD");
    // Cluster-scoped: its key names no namespace.
    let k = crd.key.clone();
    apply_as(live, "gitopsd", &k, &crd.manifest).await;
    eventually("the CRD to be Established", Duration::from_secs(30), || {
        let live = live.clone();
        let k = k.clone();
        async move {
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

/// Cluster-scoped objects a test made, deleted however it ends.
pub struct ClusterScoped(pub Vec<ObjectKey>);

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let keys = std::mem::take(&mut self.0);
        cleanup_blocking(move |client| async move {
            let live = ApiLive::new(client);
            for key in keys {
                if let Ok(api) = live.api_for(&key).await {
                    let _ = api.delete(&key.name, &DeleteParams::default()).await;
                }
            }
        });
    }
}
