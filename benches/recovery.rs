//! Recovery after an API server restart (issue 21): `gitopsd run` with N ConfigMaps (default
//! 10,000) Synced, the API server killed (SIGKILL) for a few seconds and started again; time
//! from its return to the next Synced reconcile and the requests gitopsd sent meanwhile, beside
//! the cold first sync of the same set.
//!
//! Runs against the control plane of tests/faults_apiserver.rs (`$GITOPSD_CACHE/cluster-faults`,
//! port 16470, brought up when it is not), never the shared one: it stops an API server.
//!
//!   cargo bench --bench recovery
//!   GITOPSD_BENCH_OBJECTS=2000 GITOPSD_BENCH_DOWN_SECS=15 cargo bench --bench recovery

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Created, Daemon, Repo, config_map, env_usize, unique};
use gitopsd::state::StateStore;
use kube::Client;
use serde_json::Value;

const SYNC_DEADLINE: Duration = Duration::from_secs(900);

fn faults_dir() -> PathBuf {
    let cache = std::env::var_os("GITOPSD_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/gitopsd")))
        .expect("GITOPSD_CACHE or HOME");
    cache.join("cluster-faults")
}

fn cluster_sh(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(common::repo_root().join("scripts/cluster.sh"))
        .args(args)
        .env("GITOPSD_CLUSTER_DIR", faults_dir())
        .env("GITOPSD_CLUSTER_PORT", "16470")
        .env("GITOPSD_KWOK_NODES", "1")
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run scripts/cluster.sh");
    assert!(out.status.success(), "cluster.sh {} failed", args.join(" "));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `gitopsd_kube_requests_total` by verb (every answer code, and attempts with none).
fn requests(port: u16) -> BTreeMap<String, f64> {
    let (_, text) = common::http_request(port, "GET", "/metrics", &[], b"").expect("GET /metrics");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("gitopsd_kube_requests_total{") else {
            continue;
        };
        let verb = rest
            .split("verb=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or("?")
            .to_owned();
        let n: f64 = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0.0);
        *out.entry(verb).or_default() += n;
    }
    out
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> String {
    after
        .iter()
        .map(|(verb, n)| (verb, n - before.get(verb).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n > 0.0)
        .map(|(verb, n)| format!("{verb} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main]
async fn main() {
    let n = env_usize("GITOPSD_BENCH_OBJECTS", 10_000);
    let down = Duration::from_secs(env_usize("GITOPSD_BENCH_DOWN_SECS", 5) as u64);
    let kubeconfig = PathBuf::from(cluster_sh(&["up"]).lines().last().expect("path").trim());
    let config = gitopsd::cluster::client_config(Some(&kubeconfig))
        .await
        .expect("load kubeconfig");
    let admin = Client::try_from(config).expect("client");
    let created = Created::new("recovery");
    let id = unique();
    let (tier, ns, state_ns) = (
        format!("bench-rec-{id}"),
        format!("bench-rec-{id}"),
        format!("bench-rec-state-{id}"),
    );
    created.note(&state_ns);
    StateStore::new(admin.clone(), &state_ns)
        .ensure_namespace()
        .await
        .expect("create the state namespace");
    created.namespace(&admin, &ns).await;
    let repo = Repo::new(&tier, (0..n).map(|i| config_map(i, &ns, "info")));
    let revision = repo.head();
    let mut daemon = Daemon::start(&kubeconfig, |_, port| {
        format!(
            "source: {{url: {repo}, interval: 1h}}\n\
             tiers:\n  - name: {tier}\n    ref: main\n    namespaces: [{ns}]\n\
             state: {{namespace: {state_ns}}}\n\
             http: {{listen: \"127.0.0.1:{port}\"}}\n",
            repo = repo.path().display(),
        )
    });
    let synced = |s: &Value| s["sync"] == "Synced" && s["revision"] == revision.as_str();
    let cold = daemon
        .wait_for(&tier, Duration::from_millis(250), SYNC_DEADLINE, synced)
        .await
        - daemon.started;
    let cold_requests = requests(daemon.port);
    eprintln!(
        "cold first sync of {n} ConfigMaps: {:.1} s",
        cold.as_secs_f64()
    );

    // The API server killed and started again.
    let killed_at = chrono::Utc::now();
    cluster_sh(&["stop", "kube-apiserver", "--kill"]);
    tokio::time::sleep(down).await;
    let restart = Instant::now();
    cluster_sh(&["start", "kube-apiserver"]);
    let ready = restart.elapsed();
    let back = daemon
        .wait_for(&tier, Duration::from_millis(100), SYNC_DEADLINE, |s| {
            synced(s)
                && s["lastError"].is_null()
                && s["lastReconcileAt"]
                    .as_str()
                    .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                    .is_some_and(|t| t > killed_at)
        })
        .await;
    let recovered = back.duration_since(restart);
    // Requests since the first Synced: the outage's failed attempts, the lists, what changed.
    let after = requests(daemon.port);
    let status = daemon.tier_status(&tier).await.unwrap_or_default();
    let drift = status["drift"]["items"].as_array().map_or(0, Vec::len);
    let exit = daemon.stop().await;
    created.delete_all(&admin).await;

    println!();
    println!("recovery after an API server restart, {n} ConfigMaps, API server down {down:?}");
    println!(
        "  cold first sync:       {:>7.1} s to Synced; requests: {}",
        cold.as_secs_f64(),
        delta(&cold_requests, &BTreeMap::new())
    );
    println!(
        "  after the restart:     {:>7.1} s from `start` to Synced again (API server /readyz after {:.1} s); requests: {}; drift items: {drift}",
        recovered.as_secs_f64(),
        ready.as_secs_f64(),
        delta(&after, &cold_requests)
    );
    println!("  gitopsd run: {exit}");
}
