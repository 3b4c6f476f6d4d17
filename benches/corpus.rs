//! The issue-14 corpus (`scripts/corpus.sh`: 212 objects of seven projects' published install
//! manifests, 93 CRDs) against the local control plane:
//!
//! 1. **render**: `render_tier` of the corpus repo (in process, built-in kind scopes), median
//!    of 5;
//! 2. **first sync**, three ways on an empty cluster, each followed by deleting everything the
//!    corpus made (and waiting until it is gone): an in-process [`TierReconciler`]
//!    (`offer_revision` then `reconcile`, the latter timed; requests by verb);
//!    `kubectl apply --server-side` of the same rendered objects (one JSON List); and the
//!    floor: the same server-side applies from a plain kube client, in the same phases
//!    (Namespaces and CRDs, cluster-scoped, namespaced) at the same concurrency, nothing else;
//! 3. **peak RSS of `gitopsd run`** syncing the corpus (the release binary Cargo built for the
//!    bench): `VmHWM` once the tier has synced the commit, and 10 s later.
//!
//! A plain `harness = false` bench: `cargo bench --bench corpus`. Environment:
//! `GITOPSD_BENCH_RUNS` (first syncs of each kind, default 1: each takes minutes, most of it
//! the API server storing and deleting 93 large CRDs), `GITOPSD_BENCH_PARTS` (e.g. `1,2`;
//! default all), `GITOPSD_CORPUS` (else `scripts/corpus.sh` builds it). The cluster comes from
//! `GITOPSD_TEST_KUBECONFIG`, else `scripts/cluster.sh up`. The corpus's namespaces and
//! cluster-scoped names are fixed, so the bench holds `/tmp/gitopsd-test-corpus.lock` (as
//! `tests/it/corpus.rs` does) and deletes what it made by the corpus tier's label.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gitopsd::apply::Tally;
use gitopsd::cluster::counted_client;
use gitopsd::config::TierConfig;
use gitopsd::reconcile::{ReconcileReason, TierReconciler};
use gitopsd::render::{DesiredSet, KindScopes, Limits, render_tier};
use gitopsd::state::StateStore;
use gitopsd::status::StatusHandle;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod common;
use common::{
    Created, Daemon, GitCheckouts, cpu_ns, delta, env_list, env_usize, git, kubeconfig, kubectl,
    show_verbs, unique,
};

const TIER: &str = "corpus";
const CORPUS_LABEL: &str = "gitopsd-corpus=true";
const NAMESPACES: [&str; 5] = [
    "default",
    "gatekeeper-system",
    "kyverno",
    "ingress-nginx",
    "istio-system",
];
const OWN_NAMESPACES: [&str; 4] = [
    "gatekeeper-system",
    "kyverno",
    "ingress-nginx",
    "istio-system",
];
const CLUSTER_KINDS: &str = "validatingwebhookconfigurations,mutatingwebhookconfigurations,clusterrolebindings,clusterroles,ingressclasses,customresourcedefinitions";
const DEFAULT_NS_KINDS: &str =
    "deployments,services,serviceaccounts,configmaps,secrets,roles,rolebindings";
const CONCURRENCY: usize = 16;
const SETTLE: Duration = Duration::from_secs(10);

fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GITOPSD_CORPUS") {
        return PathBuf::from(dir);
    }
    let out = Command::new("bash")
        .arg(common::repo_root().join("scripts/corpus.sh"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run scripts/corpus.sh");
    assert!(out.status.success(), "scripts/corpus.sh failed");
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("a directory")
            .trim(),
    )
}

/// The corpus as a git repo (a copy, committed): the repo and its commit.
fn corpus_repo() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = corpus_dir();
    let out = Command::new("cp")
        .arg("-r")
        .arg(src.join("base"))
        .arg(src.join("tiers"))
        .arg(dir.path())
        .output()
        .expect("cp");
    assert!(out.status.success(), "cp the corpus");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "corpus"]);
    let head = git(dir.path(), &["rev-parse", "HEAD"]).trim().to_owned();
    (dir, head)
}

struct Ctx {
    config: kube::Config,
    admin: Client,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
}

impl Ctx {
    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("run kubectl")
    }

    /// Deletes what the corpus made (by its label) and waits until its CRDs and namespaces
    /// are gone: the time this takes is not measured.
    fn delete_corpus(&self) {
        let sel = ["-l", CORPUS_LABEL, "--ignore-not-found", "--wait=false"];
        let mut a = vec!["delete", CLUSTER_KINDS];
        a.extend(sel);
        self.kubectl(&a);
        let mut a = vec!["delete", DEFAULT_NS_KINDS, "-n", "default"];
        a.extend(sel);
        self.kubectl(&a);
        let mut a = vec!["delete", "namespace", "--ignore-not-found", "--wait=false"];
        a.extend(OWN_NAMESPACES);
        self.kubectl(&a);
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let crds = self.kubectl(&["get", "crd", "-l", CORPUS_LABEL, "-o", "name"]);
            let mut a = vec!["get", "namespace", "--ignore-not-found", "-o", "name"];
            a.extend(OWN_NAMESPACES);
            let ns = self.kubectl(&a);
            if crds.stdout.is_empty() && ns.stdout.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the corpus was not deleted in 10 min"
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// istio-system is named by the tier (tiers/corpus/istio-system.yaml); for kubectl and the
    /// floor it is one of the objects too.
    fn tier_config(&self) -> TierConfig {
        serde_json::from_value(json!({
            "name": TIER, "ref": "main", "namespaces": NAMESPACES, "clusterScoped": true,
            "prune": true, "validation": {"security": "warn"},
            "apply": {"concurrency": CONCURRENCY},
        }))
        .expect("tier config")
    }
}

struct Sync {
    wall: Duration,
    cpu: Duration,
    requests: BTreeMap<&'static str, u64>,
    outcomes: Tally,
}

async fn gitopsd_sync(ctx: &Ctx, repo: &Path, revision: &str, state_ns: &str) -> Sync {
    let (client, counter) = counted_client(ctx.config.clone()).expect("counted client");
    let status = StatusHandle::new(TIER);
    let mut reconciler = TierReconciler::new(
        ctx.tier_config(),
        false,
        client.clone(),
        StateStore::new(client, state_ns),
        Arc::new(GitCheckouts {
            dir: repo.to_owned(),
        }),
        status.clone(),
        gitopsd::activity::Observers::default(),
    );
    reconciler.offer_revision(&revision.into()).await;
    let s = status.snapshot();
    assert!(s.last_error.is_none(), "not accepted: {:?}", s.last_error);
    let before = counter.by_verb();
    let cpu0 = cpu_ns();
    let t0 = Instant::now();
    reconciler
        .reconcile(ReconcileReason::Revision, &CancellationToken::new())
        .await;
    let wall = t0.elapsed();
    let cpu = Duration::from_nanos(cpu_ns().saturating_sub(cpu0));
    let after = status.snapshot();
    let outcomes = after.last_sync.map(|r| r.outcomes).unwrap_or_default();
    // A reconcile that applied nothing measured nothing: say why instead of a figure.
    assert!(
        !outcomes.is_empty(),
        "the reconcile applied nothing: sync {:?}, last error {:?}",
        after.sync,
        after.last_error
    );
    Sync {
        wall,
        cpu,
        requests: delta(&before, &counter),
        outcomes,
    }
}

/// `kubectl apply --server-side` of the rendered set (a JSON List: kubectl reads YAML 1.1,
/// where a rendered `yes` label would turn into a bool): wall time, objects applied, failed.
fn kubectl_apply(ctx: &Ctx, file: &Path) -> (Duration, usize, usize) {
    let t0 = Instant::now();
    let out = ctx.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        file.to_str().expect("utf-8"),
    ]);
    let wall = t0.elapsed();
    let applied = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.ends_with("serverside-applied"))
        .count();
    let failed = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("Error from server"))
        .count();
    (wall, applied, failed)
}

/// The floor: the same server-side applies from a plain client, in the same three phases
/// at the same concurrency, nothing else (no state, cache, CRD wait, drift or health).
async fn plain_apply(client: &Client, set: &DesiredSet) -> (Duration, usize) {
    let phase = |m: &Value| match (m["kind"].as_str(), m.pointer("/metadata/namespace")) {
        (Some("Namespace" | "CustomResourceDefinition"), _) => 0,
        (_, None) => 1,
        _ => 2,
    };
    let t0 = Instant::now();
    let mut failed = 0;
    for p in 0..3 {
        let results: Vec<bool> = futures::stream::iter(
            set.objects
                .iter()
                .map(|o| &o.manifest)
                .filter(|m| phase(m) == p),
        )
        .map(|m| {
            let client = client.clone();
            async move {
                let api_version = m["apiVersion"].as_str().unwrap_or_default();
                let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
                let gvk =
                    GroupVersionKind::gvk(group, version, m["kind"].as_str().unwrap_or_default());
                let ar = ApiResource::from_gvk(&gvk);
                let api: Api<DynamicObject> = match m.pointer("/metadata/namespace") {
                    Some(ns) => Api::namespaced_with(client, ns.as_str().unwrap_or_default(), &ar),
                    None => Api::all_with(client, &ar),
                };
                api.patch(
                    m["metadata"]["name"].as_str().unwrap_or_default(),
                    &PatchParams::apply("bench-plain").force(),
                    &Patch::Apply(m),
                )
                .await
                .is_ok()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
        failed += results.iter().filter(|ok| !**ok).count();
    }
    (t0.elapsed(), failed)
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let runs = env_usize("GITOPSD_BENCH_RUNS", 1).max(1);
    let parts = env_list("GITOPSD_BENCH_PARTS", &[1, 2, 3]);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/gitopsd-test-corpus.lock")
        .expect("open the corpus lock");
    lock.lock().expect("lock the corpus");

    let kubeconfig = kubeconfig();
    let config = gitopsd::cluster::client_config(Some(&kubeconfig))
        .await
        .expect("load kubeconfig");
    let admin = Client::try_from(config.clone()).expect("client");
    let ctx = Ctx {
        config,
        admin: admin.clone(),
        kubeconfig,
        kubectl: kubectl(),
    };
    let (repo, revision) = corpus_repo();
    let yaml_bytes: u64 = walk_yaml(&repo.path().join("base"));
    let created = Created::new("corpus");

    // 1. Render.
    let mut render_times = Vec::new();
    let mut set = None;
    for _ in 0..5 {
        let t0 = Instant::now();
        let s = render_tier(
            repo.path(),
            TIER,
            &Limits::default(),
            &KindScopes::builtin(),
        )
        .unwrap_or_else(|e| panic!("the corpus does not render: {e}"));
        render_times.push(t0.elapsed());
        set = Some(s);
    }
    let set = set.expect("rendered");
    let crds = set
        .objects
        .iter()
        .filter(|o| o.key.kind == "CustomResourceDefinition")
        .count();
    let json_bytes: usize = set
        .objects
        .iter()
        .map(|o| o.manifest.to_string().len())
        .sum();
    println!(
        "corpus: {} objects ({crds} CRDs), {:.1} MB of YAML in base/, {:.1} MB as JSON",
        set.objects.len(),
        yaml_bytes as f64 / 1e6,
        json_bytes as f64 / 1e6
    );
    if parts.contains(&1) {
        println!(
            "render: median {:.0} ms of 5 (min {:.0} ms)",
            median(&mut render_times).as_secs_f64() * 1e3,
            render_times.iter().min().expect("runs").as_secs_f64() * 1e3
        );
    }
    let list = json!({"apiVersion": "v1", "kind": "List",
        "items": set.objects.iter().map(|o| &o.manifest).collect::<Vec<_>>()});
    let list_file = repo
        .path()
        .join("..")
        .join(format!("corpus-{}.json", unique()));
    std::fs::write(&list_file, serde_json::to_vec(&list).expect("json")).expect("write");

    // 2. First sync, three ways.
    if parts.contains(&2) {
        ctx.delete_corpus();
        let (mut g, mut k, mut f) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            // `gitopsd run` makes its state namespace at start-up; an in-process reconciler
            // does not.
            let state_ns = format!("bench-corpus-state-{}", unique());
            created.namespace(&ctx.admin, &state_ns).await;
            let sync = gitopsd_sync(&ctx, repo.path(), &revision, &state_ns).await;
            ctx.delete_corpus();
            let (kc, kc_applied, kc_failed) = kubectl_apply(&ctx, &list_file);
            ctx.delete_corpus();
            let (plain, plain_failed) = plain_apply(&ctx.admin, &set).await;
            ctx.delete_corpus();
            println!(
                "first sync run {}: gitopsd {:.1} s (CPU {:.1} s, requests {}, outcomes {:?}); kubectl apply --server-side {:.1} s ({kc_applied} applied, {kc_failed} refused); plain client {:.1} s ({plain_failed} refused)",
                run + 1,
                sync.wall.as_secs_f64(),
                sync.cpu.as_secs_f64(),
                show_verbs(&sync.requests),
                sync.outcomes,
                kc.as_secs_f64(),
                plain.as_secs_f64()
            );
            g.push(sync.wall);
            k.push(kc);
            f.push(plain);
        }
        let (g, k, f) = (median(&mut g), median(&mut k), median(&mut f));
        println!(
            "first sync, median of {runs}: gitopsd {:.1} s, kubectl {:.1} s ({:.2}x kubectl's speed), plain client {:.1} s",
            g.as_secs_f64(),
            k.as_secs_f64(),
            k.as_secs_f64() / g.as_secs_f64(),
            f.as_secs_f64()
        );
    }

    // 3. Peak RSS of `gitopsd run`.
    if parts.contains(&3) {
        ctx.delete_corpus();
        let state_ns = format!("bench-corpus-state-{}", unique());
        created.note(&state_ns);
        let repo_path = repo.path().to_owned();
        let mut daemon = Daemon::start(&ctx.kubeconfig, |_, port| {
            format!(
                "source:\n  url: {}\n  interval: 5s\ntiers:\n  - name: {TIER}\n    ref: main\n    namespaces: [{}]\n    clusterScoped: true\n    prune: true\n    validation: {{security: warn}}\nhttp:\n  listen: \"127.0.0.1:{port}\"\nstate:\n  namespace: {state_ns}\n",
                repo_path.display(),
                NAMESPACES.join(", ")
            )
        });
        let at = daemon
            .wait_for(
                TIER,
                Duration::from_millis(500),
                Duration::from_secs(900),
                |s| s["lastSync"]["revision"] == revision.as_str(),
            )
            .await;
        let after = at - daemon.started;
        let hwm_synced = proc_status_kib(daemon.pid, "VmHWM:").unwrap_or(0);
        tokio::time::sleep(SETTLE).await;
        let hwm = proc_status_kib(daemon.pid, "VmHWM:").unwrap_or(0);
        let rss = proc_status_kib(daemon.pid, "VmRSS:").unwrap_or(0);
        let status = daemon.tier_status(TIER).await.unwrap_or(Value::Null);
        println!(
            "gitopsd run: first sync done {:.1} s after start ({} {}); VmHWM {:.0} MiB at the sync, {:.0} MiB 10 s later; VmRSS {:.0} MiB",
            after.as_secs_f64(),
            status["sync"],
            status["lastSync"]["outcomes"],
            hwm_synced as f64 / 1024.0,
            hwm as f64 / 1024.0,
            rss as f64 / 1024.0
        );
        println!("  stopped: {}", daemon.stop().await);
        ctx.delete_corpus();
    }
    let _ = std::fs::remove_file(&list_file);
    created.delete_all(&admin).await;
}

fn walk_yaml(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            total += walk_yaml(&p);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            total += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    total
}
