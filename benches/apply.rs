//! Apply and the daemon against the local control plane, side by side with kubectl, in one run:
//!
//! 1. **first sync**: N objects (ConfigMaps, Secrets, Deployments with 0 replicas, Services) in
//!    two fresh namespaces, from a git repo made with the git CLI: an in-process
//!    [`TierReconciler`] (`offer_revision`, then `reconcile`, timed from the call of
//!    `reconcile` to its return; requests counted by verb) against
//!    `kubectl apply --server-side -f <file>` of the same rendered manifests into two other
//!    fresh namespaces. 3 runs each, median; at `apply.concurrency` 16 (the default) and 32;
//! 2. **a commit that changes 10 of M ConfigMaps**: first sync of M ConfigMaps in process, a
//!    second commit that changes 10 of them (requests by verb and wall time of its reconcile),
//!    then a reconcile with no change (expected: no request);
//! 3. **peak RSS of `gitopsd run`** managing M ConfigMaps: the release binary Cargo built for
//!    this bench (`CARGO_BIN_EXE_gitopsd`), a repo on a file path, the status endpoint on a free
//!    loopback port; once the tier is `Synced` at the commit, ~10 s more, then `VmHWM` and
//!    `VmRSS` from /proc/<pid>/status; stopped with SIGTERM.
//!
//! A plain `harness = false` bench: `cargo bench --bench apply`. Environment:
//! `GITOPSD_BENCH_OBJECTS` (first sync, default 1000), `GITOPSD_BENCH_LARGE_OBJECTS` (2 and 3,
//! default 10000), `GITOPSD_BENCH_CONCURRENCY` (comma-separated, default `16,32`),
//! `GITOPSD_BENCH_RUNS` (default 3), `GITOPSD_BENCH_PARTS` (e.g. `1,3`; default all). The
//! cluster comes from `GITOPSD_TEST_KUBECONFIG`, else `scripts/cluster.sh up` (started or
//! reused). Every namespace the bench creates (objects and state) is deleted at the end, on
//! error too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt, TryStreamExt};
use gitopsd::apply::{Outcome, Tally};
use gitopsd::cluster::counted_client;
use gitopsd::config::TierConfig;
use gitopsd::live::RequestCounter;
use gitopsd::reconcile::{Checkouts, ReconcileReason, TierReconciler};
use gitopsd::render::{DesiredSet, KindScopes, Limits, render_tier};
use gitopsd::state::StateStore;
use gitopsd::status::{StatusHandle, SyncState};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const CHANGED: usize = 10;
const SETTLE: Duration = Duration::from_secs(10);
const SYNC_DEADLINE: Duration = Duration::from_secs(600);

mod common;
use common::{
    Created, Daemon, GitCheckouts, Repo, config_map, cpu_ns, delta, env_list, env_usize, git,
    kubeconfig, kubectl, show_verbs, synced_at, unique,
};

// ---------------------------------------------------------------------------------------------
// The generated config repo.

/// Object `i` of the first-sync mix: per 100, 80 ConfigMaps, 10 Secrets, 5 Deployments (0
/// replicas) and 5 Services; alternating between the two namespaces.
fn mixed_object(i: usize, namespaces: &[String]) -> String {
    let ns = &namespaces[i % namespaces.len()];
    match i % 100 {
        0..80 => config_map(i, ns, "info"),
        80..90 => format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-{i}-creds\n  namespace: {ns}\n\
             \x20 labels: {{app: app-{i}}}\ntype: Opaque\ndata:\n  username: YXBw\n  password: c2VjcmV0LXtpfQ==\n"
        ),
        90..95 => format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n  namespace: {ns}\n\
             \x20 labels: {{app: app-{i}}}\nspec:\n  replicas: 0\n  selector: {{matchLabels: {{app: app-{i}}}}}\n\
             \x20 template:\n    metadata: {{labels: {{app: app-{i}}}}}\n    spec:\n      containers:\n\
             \x20       - name: app\n          image: registry.example.com/app:1.4.2\n\
             \x20         ports: [{{containerPort: 8080}}]\n\
             \x20         envFrom: [{{configMapRef: {{name: app-{i}-config}}}}]\n\
             \x20         resources: {{requests: {{cpu: 100m, memory: 128Mi}}, limits: {{memory: 256Mi}}}}\n"
        ),
        _ => format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i}\n  namespace: {ns}\n\
             \x20 labels: {{app: app-{i}}}\nspec:\n  selector: {{app: app-{i}}}\n\
             \x20 ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster side.

fn tier_config(name: &str, namespaces: &[String], concurrency: usize) -> TierConfig {
    serde_json::from_value(json!({
        "name": name,
        "ref": "main",
        "namespaces": namespaces,
        "validation": {"security": "warn"},
        "apply": {"concurrency": concurrency},
    }))
    .expect("tier config")
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------------------------
// 1. First sync, gitopsd against kubectl.

struct GitopsdSync {
    offer: Duration,
    /// CPU time of this process (all threads) during the reconcile.
    cpu: Duration,
    reconcile: Duration,
    requests: BTreeMap<&'static str, u64>,
    outcomes: Tally,
}

/// One in-process first sync of `repo` at `revision`: offer, then a timed reconcile.
async fn gitopsd_sync(
    config: &kube::Config,
    state_ns: &str,
    tier: &TierConfig,
    repo: &Path,
    revision: &str,
) -> (TierReconciler, GitopsdSync, RequestCounter, StatusHandle) {
    let (client, counter) = counted_client(config.clone()).expect("counted client");
    let store = StateStore::new(client.clone(), state_ns);
    let status = StatusHandle::new(&tier.name);
    let checkouts: Arc<dyn Checkouts> = Arc::new(GitCheckouts {
        dir: repo.to_owned(),
    });
    let mut reconciler = TierReconciler::new(
        tier.clone(),
        false,
        client,
        store,
        checkouts,
        status.clone(),
        gitopsd::activity::Observers::default(),
    );
    let t0 = Instant::now();
    reconciler.offer_revision(&revision.into()).await;
    let offer = t0.elapsed();
    let s = status.snapshot();
    assert!(
        s.last_error.is_none(),
        "the revision was not accepted: {:?}",
        s.last_error
    );
    let before = counter.by_verb();
    let cancel = CancellationToken::new();
    let cpu0 = cpu_ns();
    let t0 = Instant::now();
    reconciler
        .reconcile(ReconcileReason::Revision, &cancel)
        .await;
    let reconcile = t0.elapsed();
    let cpu = Duration::from_nanos(cpu_ns().saturating_sub(cpu0));
    let requests = delta(&before, &counter);
    let s = status.snapshot();
    let outcomes = s.last_sync.as_ref().map(|r| r.outcomes).unwrap_or_default();
    assert!(
        s.sync == SyncState::Synced,
        "first sync not Synced: {:?} {:?} {:?}",
        s.sync,
        s.last_error,
        s.last_sync.as_ref().map(|r| &r.failures)
    );
    (
        reconciler,
        GitopsdSync {
            offer,
            cpu,
            reconcile,
            requests,
            outcomes,
        },
        counter,
        status,
    )
}

/// The set's manifests as one multi-document YAML file, every namespace renamed by `rename`.
fn kubectl_file(set: &DesiredSet, rename: &BTreeMap<String, String>, path: &Path) {
    let mut text = String::new();
    for o in &set.objects {
        let mut m = o.manifest.clone();
        if let Some(ns) = m.pointer_mut("/metadata/namespace")
            && let Some(to) = ns.as_str().and_then(|s| rename.get(s))
        {
            *ns = Value::String(to.clone());
        }
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(&m).expect("yaml"));
    }
    std::fs::write(path, text).expect("write the kubectl manifests");
}

async fn kubectl_apply(kubectl: &Path, kubeconfig: &Path, file: &Path, n: usize) -> Duration {
    let t0 = Instant::now();
    let out = tokio::process::Command::new(kubectl)
        .args(["apply", "--server-side", "-f"])
        .arg(file)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await
        .expect("run kubectl apply");
    let wall = t0.elapsed();
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
            .chars()
            .take(2000)
            .collect::<String>()
    );
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.ends_with("serverside-applied"))
        .count();
    assert_eq!(lines, n, "kubectl applied {lines} of {n} objects");
    wall
}

/// The floor: the same manifests server-side applied by a plain kube client, `in_flight` at once,
/// with nothing else (no state, no cache, no drift check).
async fn plain_apply(
    client: &Client,
    set: &DesiredSet,
    rename: &BTreeMap<String, String>,
    in_flight: usize,
) -> Duration {
    let manifests: Vec<Value> = set
        .objects
        .iter()
        .map(|o| {
            let mut m = o.manifest.clone();
            if let Some(ns) = m.pointer_mut("/metadata/namespace")
                && let Some(to) = ns.as_str().and_then(|s| rename.get(s))
            {
                *ns = Value::String(to.clone());
            }
            m
        })
        .collect();
    let t0 = Instant::now();
    futures::stream::iter(manifests.iter().map(|m| {
        let client = client.clone();
        async move {
            let (group, version) = match m["apiVersion"]
                .as_str()
                .expect("apiVersion")
                .split_once('/')
            {
                Some((g, v)) => (g.to_owned(), v.to_owned()),
                None => (
                    String::new(),
                    m["apiVersion"].as_str().expect("v").to_owned(),
                ),
            };
            let gvk = GroupVersionKind::gvk(&group, &version, m["kind"].as_str().expect("kind"));
            let api: Api<DynamicObject> = Api::namespaced_with(
                client,
                m["metadata"]["namespace"].as_str().expect("namespace"),
                &ApiResource::from_gvk(&gvk),
            );
            api.patch(
                m["metadata"]["name"].as_str().expect("name"),
                &PatchParams::apply("bench-plain").force(),
                &Patch::Apply(m),
            )
            .await
            .map(|_| ())
        }
    }))
    .buffer_unordered(in_flight)
    .try_collect::<Vec<()>>()
    .await
    .expect("plain apply");
    t0.elapsed()
}

struct FirstSync {
    n: usize,
    concurrency: usize,
    plain: Vec<Duration>,
    cpu: Vec<Duration>,
    gitopsd: Vec<Duration>,
    offer: Vec<Duration>,
    kubectl: Vec<Duration>,
    requests: Vec<BTreeMap<&'static str, u64>>,
    outcomes: Tally,
}

async fn first_sync(n: usize, concurrency: usize, runs: usize, ctx: &Ctx) -> FirstSync {
    let mut fig = FirstSync {
        n,
        concurrency,
        plain: Vec::new(),
        cpu: Vec::new(),
        gitopsd: Vec::new(),
        offer: Vec::new(),
        kubectl: Vec::new(),
        requests: Vec::new(),
        outcomes: Tally::default(),
    };
    for run in 0..runs {
        let id = unique();
        let tier_name = format!("bench-first-{id}");
        let gd_ns: Vec<String> = (0..2).map(|k| format!("bench-first-{id}-gd{k}")).collect();
        let kc_ns: Vec<String> = (0..2).map(|k| format!("bench-first-{id}-kc{k}")).collect();
        let fl_ns: Vec<String> = (0..2).map(|k| format!("bench-first-{id}-fl{k}")).collect();
        for ns in gd_ns.iter().chain(&kc_ns).chain(&fl_ns) {
            ctx.created.namespace(&ctx.admin, ns).await;
        }
        let repo = Repo::new(&tier_name, (0..n).map(|i| mixed_object(i, &gd_ns)));
        let revision = repo.head();
        let tier = tier_config(&tier_name, &gd_ns, concurrency);

        // The same rendered manifests for kubectl, in its own fresh namespaces.
        let set = render_tier(
            repo.path(),
            &tier_name,
            &Limits::default(),
            &KindScopes::builtin(),
        )
        .expect("render");
        assert_eq!(set.objects.len(), n);
        let rename: BTreeMap<String, String> =
            gd_ns.iter().cloned().zip(kc_ns.iter().cloned()).collect();
        let file = repo.path().join("kubectl-manifests.yaml");
        kubectl_file(&set, &rename, &file);

        // Alternate which goes first, so neither always runs on a cluster busy with the other's
        // aftermath (watch fan-out, garbage).
        let mut kc = None;
        if run % 2 == 1 {
            kc = Some(kubectl_apply(&ctx.kubectl, &ctx.kubeconfig, &file, n).await);
        }
        let (reconciler, g, _, _) =
            gitopsd_sync(&ctx.config, &ctx.state_ns, &tier, repo.path(), &revision).await;
        drop(reconciler);
        if kc.is_none() {
            kc = Some(kubectl_apply(&ctx.kubectl, &ctx.kubeconfig, &file, n).await);
        }
        let kc = kc.expect("kubectl ran");
        let rename_fl: BTreeMap<String, String> =
            gd_ns.iter().cloned().zip(fl_ns.iter().cloned()).collect();
        let plain = plain_apply(&ctx.admin, &set, &rename_fl, concurrency).await;
        let created = g.outcomes.get(Outcome::Created);
        assert_eq!(
            created, n,
            "gitopsd created {created} of {n}: {:?}",
            g.outcomes
        );
        eprintln!(
            "  first sync N={n} c={concurrency} run {}: gitopsd reconcile {:.2} s (CPU {:.2} s, offer {:.2} s), requests {}; kubectl {:.2} s; plain SSA {:.2} s",
            run + 1,
            g.reconcile.as_secs_f64(),
            g.cpu.as_secs_f64(),
            g.offer.as_secs_f64(),
            show_verbs(&g.requests),
            kc.as_secs_f64(),
            plain.as_secs_f64()
        );
        fig.plain.push(plain);
        fig.cpu.push(g.cpu);
        fig.gitopsd.push(g.reconcile);
        fig.offer.push(g.offer);
        fig.kubectl.push(kc);
        fig.requests.push(g.requests);
        fig.outcomes = g.outcomes;
    }
    fig
}

// ---------------------------------------------------------------------------------------------
// 2. A commit that changes 10 of M objects.

struct SmallChange {
    m: usize,
    first: Duration,
    first_requests: BTreeMap<&'static str, u64>,
    change: Duration,
    change_offer: Duration,
    change_requests: BTreeMap<&'static str, u64>,
    change_outcomes: Tally,
    nochange: Duration,
    nochange_requests: BTreeMap<&'static str, u64>,
}

async fn small_change(m: usize, ctx: &Ctx) -> SmallChange {
    let id = unique();
    let tier_name = format!("bench-change-{id}");
    let ns = format!("bench-change-{id}");
    ctx.created.namespace(&ctx.admin, &ns).await;
    let cm = |i: usize, level: &str| config_map(i, &ns, level);
    let repo = Repo::new(&tier_name, (0..m).map(|i| cm(i, "info")));
    let rev1 = repo.head();
    let tier = tier_config(&tier_name, std::slice::from_ref(&ns), 16);
    let (mut reconciler, first, counter, status) =
        gitopsd_sync(&ctx.config, &ctx.state_ns, &tier, repo.path(), &rev1).await;
    eprintln!(
        "  first sync of {m} ConfigMaps: {:.2} s, requests {}",
        first.reconcile.as_secs_f64(),
        show_verbs(&first.requests)
    );

    // The second commit: 10 ConfigMaps spread over the files get another LOG_LEVEL.
    git(repo.path(), &["checkout", "-q", "main"]);
    let changed: Vec<usize> = (0..CHANGED).map(|k| k * (m / CHANGED)).collect();
    let files: std::collections::BTreeSet<usize> = changed.iter().map(|i| i / 100).collect();
    for f in files {
        let docs: Vec<String> = (f * 100..((f + 1) * 100).min(m))
            .map(|i| {
                cm(
                    i,
                    if changed.contains(&i) {
                        "debug"
                    } else {
                        "info"
                    },
                )
            })
            .collect();
        repo.write_file(f, &docs);
    }
    let rev2 = repo.commit("10 ConfigMaps: LOG_LEVEL debug");
    let cancel = CancellationToken::new();
    let t0 = Instant::now();
    reconciler.offer_revision(&rev2.as_str().into()).await;
    let change_offer = t0.elapsed();
    let before = counter.by_verb();
    let t0 = Instant::now();
    reconciler
        .reconcile(ReconcileReason::Revision, &cancel)
        .await;
    let change = t0.elapsed();
    let change_requests = delta(&before, &counter);
    let change_outcomes = status
        .snapshot()
        .last_sync
        .map(|r| r.outcomes)
        .unwrap_or_default();
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(ctx.admin.clone(), &ns);
    for i in &changed {
        let live = api
            .get(&format!("app-{i}-config"))
            .await
            .expect("get a changed ConfigMap");
        let level = live.data.as_ref().and_then(|d| d.get("LOG_LEVEL")).cloned();
        assert_eq!(
            level.as_deref(),
            Some("debug"),
            "app-{i}-config not changed"
        );
    }
    eprintln!(
        "  commit changing {CHANGED}: reconcile {:.3} s, requests {}",
        change.as_secs_f64(),
        show_verbs(&change_requests)
    );
    // Let the watch events of those applies reach the cache, as they would before the next
    // reconcile in the daemon (its debounce is 150 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = counter.by_verb();
    let t0 = Instant::now();
    reconciler
        .reconcile(ReconcileReason::Interval, &cancel)
        .await;
    let nochange = t0.elapsed();
    let nochange_requests = delta(&before, &counter);
    eprintln!(
        "  no-change reconcile: {:.3} s, requests {}",
        nochange.as_secs_f64(),
        show_verbs(&nochange_requests)
    );
    SmallChange {
        m,
        first: first.reconcile,
        first_requests: first.requests,
        change,
        change_offer,
        change_requests,
        change_outcomes,
        nochange,
        nochange_requests,
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Peak RSS of `gitopsd run`.

struct Rss {
    m: usize,
    /// (time since start, VmRSS KiB) from Synced to the end.
    series: Vec<(Duration, u64)>,
    synced_after: Duration,
    hwm_kib: u64,
    rss_kib: u64,
    reconciles: usize,
    exit: String,
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

async fn daemon_rss(m: usize, ctx: &Ctx) -> Rss {
    let id = unique();
    let tier_name = format!("bench-rss-{id}");
    let ns = format!("bench-rss-{id}");
    ctx.created.namespace(&ctx.admin, &ns).await;
    let repo = Repo::new(&tier_name, (0..m).map(|i| config_map(i, &ns, "info")));
    let revision = repo.head();
    let mut daemon = Daemon::start(&ctx.kubeconfig, |_, port| {
        format!(
            "source: {{url: {repo}, interval: 3s}}\n\
             tiers:\n  - name: {tier_name}\n    ref: main\n    namespaces: [{ns}]\n\
             state: {{namespace: {state}}}\n\
             http: {{listen: \"127.0.0.1:{port}\"}}\n",
            repo = repo.path().display(),
            state = ctx.state_ns,
        )
    });
    let (pid, started) = (daemon.pid, daemon.started);
    let synced_after = daemon
        .wait_for(
            &tier_name,
            Duration::from_millis(250),
            SYNC_DEADLINE,
            synced_at(&revision),
        )
        .await
        - started;
    eprintln!(
        "  gitopsd run: Synced at {} after {:.1} s; VmHWM so far {} KiB",
        &revision[..12],
        synced_after.as_secs_f64(),
        proc_status_kib(pid, "VmHWM:").unwrap_or(0)
    );
    let mut series = vec![(synced_after, proc_status_kib(pid, "VmRSS:").unwrap_or(0))];
    let settle_end = Instant::now() + SETTLE;
    while Instant::now() < settle_end {
        tokio::time::sleep(Duration::from_secs(2)).await;
        series.push((
            started.elapsed(),
            proc_status_kib(pid, "VmRSS:").unwrap_or(0),
        ));
    }
    let hwm_kib = proc_status_kib(pid, "VmHWM:").expect("VmHWM");
    let rss_kib = proc_status_kib(pid, "VmRSS:").expect("VmRSS");
    let last = daemon.tier_status(&tier_name).await;
    let reconciles = last
        .as_ref()
        .and_then(|s| s["history"].as_array().map(Vec::len))
        .unwrap_or(0);
    let exit = daemon.stop().await;
    Rss {
        m,
        series,
        synced_after,
        hwm_kib,
        rss_kib,
        reconciles,
        exit,
    }
}

// ---------------------------------------------------------------------------------------------

struct Ctx {
    config: kube::Config,
    admin: Client,
    kubeconfig: PathBuf,
    kubectl: PathBuf,
    state_ns: String,
    created: Created,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let n = env_usize("GITOPSD_BENCH_OBJECTS", 1_000);
    let m = env_usize("GITOPSD_BENCH_LARGE_OBJECTS", 10_000);
    let runs = env_usize("GITOPSD_BENCH_RUNS", 3).max(1);
    let concurrencies = env_list("GITOPSD_BENCH_CONCURRENCY", &[16, 32]);
    let parts = env_list("GITOPSD_BENCH_PARTS", &[1, 2, 3]);

    let kubeconfig = kubeconfig();
    let kubectl = kubectl();
    let config = gitopsd::cluster::client_config(Some(&kubeconfig))
        .await
        .expect("load kubeconfig");
    let admin = Client::try_from(config.clone()).expect("client");
    let kubectl_version = Command::new(&kubectl)
        .args(["version", "--client"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    let server_version = admin
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .unwrap_or_else(|_| "?".into());

    let created = Created::new("apply");
    let state_ns = format!("bench-apply-state-{}", unique());
    created.note(&state_ns);
    StateStore::new(admin.clone(), &state_ns)
        .ensure_namespace()
        .await
        .expect("create the state namespace");
    let ctx = Ctx {
        config,
        admin: admin.clone(),
        kubeconfig,
        kubectl,
        state_ns,
        created: created.clone(),
    };

    let result = std::panic::AssertUnwindSafe(async {
        let mut firsts = Vec::new();
        let mut change = None;
        let mut rss = None;
        if parts.contains(&1) {
            for &c in &concurrencies {
                eprintln!("1. first sync of {n} objects, apply.concurrency {c}, {runs} runs");
                firsts.push(first_sync(n, c, runs, &ctx).await);
            }
        }
        if parts.contains(&2) {
            eprintln!("2. a commit changing {CHANGED} of {m} ConfigMaps");
            change = Some(small_change(m, &ctx).await);
        }
        if parts.contains(&3) {
            eprintln!("3. peak RSS of gitopsd run with {m} ConfigMaps");
            rss = Some(daemon_rss(m, &ctx).await);
        }
        (firsts, change, rss)
    })
    .catch_unwind()
    .await;
    created.delete_all(&admin).await;
    let (mut firsts, change, rss) = match result {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    };

    println!();
    println!(
        "kube-apiserver {server_version}; {kubectl_version}, `kubectl apply --server-side -f <one file>` (default flags)"
    );
    if !firsts.is_empty() {
        println!();
        println!("1. First sync (median of {runs}; times in s)");
        println!(
            "{:>6} | {:>5} | {:>24} | {:>6} | {:>6} | {:>24} | {:>6} | {:>9} | requests of one gitopsd reconcile (last run)",
            "N",
            "conc.",
            "gitopsd reconcile",
            "CPU",
            "offer",
            "kubectl apply --ss",
            "kc/gd",
            "plain SSA"
        );
        for f in &mut firsts {
            let runs_g: Vec<String> = f
                .gitopsd
                .iter()
                .map(|d| format!("{:.2}", secs(*d)))
                .collect();
            let runs_k: Vec<String> = f
                .kubectl
                .iter()
                .map(|d| format!("{:.2}", secs(*d)))
                .collect();
            let g = median(&mut f.gitopsd);
            let k = median(&mut f.kubectl);
            let o = median(&mut f.offer);
            let cpu = median(&mut f.cpu);
            let plain = median(&mut f.plain);
            println!(
                "{:>6} | {:>5} | {:>6.2} ({:>15}) | {:>6.2} | {:>6.2} | {:>6.2} ({:>15}) | {:>5.1}x | {:>9.2} | {}",
                f.n,
                f.concurrency,
                secs(g),
                runs_g.join(" "),
                secs(cpu),
                secs(o),
                secs(k),
                runs_k.join(" "),
                secs(k) / secs(g),
                secs(plain),
                show_verbs(f.requests.last().expect("a run")),
            );
        }
        if let Some(f) = firsts.first() {
            println!("   gitopsd outcomes: {:?}", f.outcomes);
        }
        println!(
            "   CPU: of the bench process during the reconcile (gitopsd's work only); plain SSA: the same manifests applied by a bare kube client, as many in flight as conc., no state, cache or drift check (the API server's floor)"
        );
    }
    if let Some(c) = &change {
        println!();
        println!("2. A commit changing {CHANGED} of {} ConfigMaps", c.m);
        println!(
            "   first sync:            {:>8.3} s, requests {}",
            secs(c.first),
            show_verbs(&c.first_requests)
        );
        println!(
            "   commit ({CHANGED} changed):   {:>8.3} s (offer: render + validate {:.3} s), requests {}",
            secs(c.change),
            secs(c.change_offer),
            show_verbs(&c.change_requests)
        );
        println!("   commit outcomes:       {:?}", c.change_outcomes);
        println!(
            "   no-change reconcile:   {:>8.3} s, requests {}",
            secs(c.nochange),
            show_verbs(&c.nochange_requests)
        );
    }
    if let Some(r) = &rss {
        println!();
        println!(
            "3. gitopsd run ({}), {} ConfigMaps",
            env!("CARGO_BIN_EXE_gitopsd"),
            r.m
        );
        println!(
            "   Synced after {:.1} s; after {} s more: VmHWM {:.1} MiB, VmRSS {:.1} MiB; syncs in history {}; exit after SIGTERM: {}",
            secs(r.synced_after),
            SETTLE.as_secs(),
            r.hwm_kib as f64 / 1024.0,
            r.rss_kib as f64 / 1024.0,
            r.reconciles,
            r.exit
        );
        let series: Vec<String> = r
            .series
            .iter()
            .map(|(t, k)| format!("{:.0}s {:.0}", secs(*t), *k as f64 / 1024.0))
            .collect();
        println!("   VmRSS MiB from Synced on: {}", series.join(", "));
    }
}
