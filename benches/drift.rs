//! Drift detection against the local control plane, for N generated objects (ConfigMaps and a
//! few Deployments) server-side applied by gitopsd into a scratch namespace:
//!
//! 1. a no-change reconcile (`detect` over a synced watch-fed live cache): wall time, process
//!    CPU time and API requests sent, best and median of 5 runs;
//! 2. the delay from a live edit by another field manager to `detect` (woken by the cache's
//!    change notification) reporting it: p50 and p95 over 50 edits;
//! 3. `kubectl diff --server-side --field-manager=gitopsd` over the same manifests, once, and
//!    its ratio to the no-change reconcile.
//!
//! A plain `harness = false` bench: `cargo bench --bench drift`. `GITOPSD_BENCH_OBJECTS=1000`
//! (comma-separated) picks the sizes; the default is 1000,10000. The cluster comes from
//! `GITOPSD_TEST_KUBECONFIG`, else `scripts/cluster.sh up` (started or reused).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt, TryStreamExt};
use gitopsd::cluster::counted_client;
use gitopsd::config::TierConfig;
use gitopsd::drift::{ApiDryRun, detect};
use gitopsd::live::{ApiLive, LiveCache, LiveObjects, Namespaces, ObjectKey, Verb};
use gitopsd::render::{
    DesiredObject, DesiredSet, ObjectScope, SourceLocation, TIER_LABEL, canonical_json,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const DEPLOYMENTS: usize = 5;
const IN_FLIGHT: usize = 16;
const RUNS: usize = 5;
const EDITS: usize = 50;
const EDITOR: &str = "bench-editor";
const SYNC: Duration = Duration::from_secs(120);

mod common;
use common::{cpu_ns, kubeconfig, kubectl, ms, percentile};

fn manifest(tier: &str, ns: &str, i: usize) -> Value {
    if i < DEPLOYMENTS {
        let name = format!("bench-app-{i}");
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": name, "namespace": ns, "labels": { TIER_LABEL: tier } },
            "spec": {
                "replicas": 0,
                "selector": { "matchLabels": { "app": name } },
                "template": {
                    "metadata": { "labels": { "app": name } },
                    "spec": { "containers": [{ "name": "app", "image": "nginx:1.27" }] },
                },
            },
        })
    } else {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": format!("bench-cm-{i}"), "namespace": ns, "labels": { TIER_LABEL: tier } },
            "data": { "LOG_LEVEL": "info", "URL": format!("http://app-{i}/"), "k": "v" },
        })
    }
}

fn desired_set(tier: &str, ns: &str, n: usize) -> DesiredSet {
    let objects: Vec<DesiredObject> = (0..n)
        .map(|i| {
            let m = manifest(tier, ns, i);
            DesiredObject {
                key: ObjectKey {
                    api_version: m["apiVersion"].as_str().expect("apiVersion").to_owned(),
                    kind: m["kind"].as_str().expect("kind").to_owned(),
                    namespace: Some(ns.to_owned()),
                    name: m["metadata"]["name"].as_str().expect("name").to_owned(),
                },
                scope: ObjectScope::Namespaced,
                digest: hex::encode(Sha256::digest(canonical_json(&m).as_bytes())),
                manifest: m,
                source: SourceLocation {
                    file: PathBuf::from(format!("bench/objects-{:03}.yaml", i / 100)),
                    document: i % 100,
                    line: 1,
                    item: None,
                },
            }
        })
        .collect();
    let mut h = Sha256::new();
    for o in &objects {
        h.update(o.digest.as_bytes());
        h.update(b"\n");
    }
    DesiredSet {
        tier: tier.to_owned(),
        objects,
        digest: hex::encode(h.finalize()),
    }
}

fn api_of(client: &Client, o: &DesiredObject) -> Api<DynamicObject> {
    let gvk = if o.key.kind == "Deployment" {
        GroupVersionKind::gvk("apps", "v1", "Deployment")
    } else {
        GroupVersionKind::gvk("", "v1", "ConfigMap")
    };
    Api::namespaced_with(
        client.clone(),
        o.key.namespace.as_deref().expect("namespaced"),
        &ApiResource::from_gvk(&gvk),
    )
}

async fn apply_all(client: &Client, set: &DesiredSet) {
    futures::stream::iter(set.objects.iter().map(|o| {
        let api = api_of(client, o);
        async move {
            api.patch(
                &o.key.name,
                &PatchParams::apply("gitopsd").force(),
                &Patch::Apply(&o.manifest),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("apply {}: {e}", o.key))
        }
    }))
    .buffer_unordered(IN_FLIGHT)
    .try_collect::<Vec<()>>()
    .await
    .expect("apply the generated objects");
}

fn write_manifests(dir: &Path, set: &DesiredSet) {
    for (chunk_no, chunk) in set.objects.chunks(100).enumerate() {
        let mut text = String::new();
        for o in chunk {
            text.push_str("---\n");
            text.push_str(&serde_yaml::to_string(&o.manifest).expect("yaml"));
        }
        std::fs::write(dir.join(format!("objects-{chunk_no:03}.yaml")), text).expect("write");
    }
}

struct Figures {
    n: usize,
    setup: Duration,
    wall_best: Duration,
    wall_median: Duration,
    cpu_best: Duration,
    cpu_median: Duration,
    requests: u64,
    edit_p50: Duration,
    edit_p95: Duration,
    edit_max: Duration,
    kubectl: Duration,
}

async fn run(
    n: usize,
    config: kube::Config,
    kubeconfig: &Path,
    kubectl: &Path,
    ns: &str,
) -> Figures {
    let tier = ns.to_owned();
    let plain = Client::try_from(config.clone()).expect("client");
    let set = desired_set(&tier, ns, n);
    let setup_start = Instant::now();
    apply_all(&plain, &set).await;
    eprintln!(
        "  applied {n} objects in {:.1} s",
        setup_start.elapsed().as_secs_f64()
    );

    let (client, counter) = counted_client(config).expect("counted client");
    let kinds = set.kinds();
    let names: Vec<ObjectKey> = set.objects.iter().map(|o| o.key.clone()).collect();
    let cache = LiveCache::start(
        client.clone(),
        &tier,
        Namespaces::only([ns]),
        &kinds,
        &names,
    )
    .await
    .expect("start the live cache");
    cache.wait_synced(SYNC).await.expect("the cache syncs");
    let watches = cache.watches() as u64;
    let deadline = Instant::now() + SYNC;
    while counter.get(Verb::Watch) < watches {
        assert!(Instant::now() < deadline, "watches did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let setup = setup_start.elapsed();
    eprintln!(
        "  cache synced, {watches} watches, after {:.1} s",
        setup.as_secs_f64()
    );

    let tier_config: TierConfig =
        serde_json::from_value(json!({"name": tier, "ref": "main"})).expect("tier config");
    let confirm = ApiDryRun::new(ApiLive::new(client.clone()));

    // 1. No-change reconcile.
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let before = counter.total();
    for _ in 0..RUNS {
        let cpu0 = cpu_ns();
        let t0 = Instant::now();
        let report = detect(&set, &tier_config, &cache, &confirm)
            .await
            .expect("detect");
        let wall = t0.elapsed();
        let cpu = Duration::from_nanos(cpu_ns().saturating_sub(cpu0));
        assert!(
            !report.has_drift(),
            "no drift expected just after apply: {:?}",
            report.items.iter().take(5).collect::<Vec<_>>()
        );
        assert_eq!(report.in_sync, n);
        walls.push(wall);
        cpus.push(cpu);
    }
    let requests = counter.total() - before;
    walls.sort();
    cpus.sort();

    // 2. Edit-to-report delay.
    let editor = PatchParams {
        field_manager: Some(EDITOR.to_owned()),
        ..PatchParams::default()
    };
    let mut changes = cache.changes();
    let mut delays = Vec::new();
    let cms: Vec<&DesiredObject> = set
        .objects
        .iter()
        .filter(|o| o.key.kind == "ConfigMap")
        .collect();
    for e in 0..EDITS {
        let o = cms[(e * cms.len()) / EDITS];
        let api = api_of(&plain, o);
        changes.borrow_and_update();
        let started = Instant::now();
        api.patch(
            &o.key.name,
            &editor,
            &Patch::Merge(json!({ "data": { "LOG_LEVEL": format!("debug-{e}") } })),
        )
        .await
        .expect("edit");
        let delay = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                changes.changed().await.expect("the cache is alive");
                let report = detect(&set, &tier_config, &cache, &confirm)
                    .await
                    .expect("detect");
                if report.items.iter().any(|i| i.key.name == o.key.name) {
                    return started.elapsed();
                }
            }
        })
        .await
        .expect("the edit was reported within 30 s");
        delays.push(delay);
        // Put it back as gitopsd and wait until the cache has it back, for the next edit.
        api.patch(
            &o.key.name,
            &PatchParams::apply("gitopsd").force(),
            &Patch::Apply(&o.manifest),
        )
        .await
        .expect("restore");
        let key = &names[set
            .objects
            .iter()
            .position(|x| x.key.name == o.key.name)
            .expect("index")];
        loop {
            let live = cache.get(key).await.expect("get").expect("cached");
            if live["data"]["LOG_LEVEL"] == "info" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    delays.sort();

    // 3. kubectl diff --server-side on the same objects.
    let dir = tempfile::tempdir().expect("tempdir");
    write_manifests(dir.path(), &set);
    let t0 = Instant::now();
    let out = tokio::process::Command::new(kubectl)
        .args(["diff", "--server-side", "--field-manager=gitopsd", "-f"])
        .arg(dir.path())
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await
        .expect("run kubectl diff");
    let kubectl_wall = t0.elapsed();
    assert!(
        out.status.code() == Some(0),
        "kubectl diff: expected no diff (exit 0), got {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
            .chars()
            .take(2000)
            .collect::<String>(),
        String::from_utf8_lossy(&out.stderr)
            .chars()
            .take(2000)
            .collect::<String>()
    );

    Figures {
        n,
        setup,
        wall_best: walls[0],
        wall_median: walls[RUNS / 2],
        cpu_best: cpus[0],
        cpu_median: cpus[RUNS / 2],
        requests,
        edit_p50: percentile(&delays, 0.50),
        edit_p95: percentile(&delays, 0.95),
        edit_max: *delays.last().expect("edits"),
        kubectl: kubectl_wall,
    }
}

async fn create_namespace(client: &Client, ns: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut object = Namespace::default();
    object.metadata.name = Some(ns.to_owned());
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .expect("create the scratch namespace");
}

async fn delete_namespace(client: &Client, ns: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Err(e) = namespaces.delete(ns, &DeleteParams::default()).await {
        eprintln!("warning: cannot delete namespace {ns}: {e}");
    }
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("GITOPSD_BENCH_OBJECTS")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().parse().expect("GITOPSD_BENCH_OBJECTS: numbers"))
                .collect()
        })
        .unwrap_or_else(|| vec![1_000, 10_000]);
    let kubeconfig = kubeconfig();
    let kubectl = kubectl();
    let config = gitopsd::cluster::client_config(Some(&kubeconfig))
        .await
        .expect("load kubeconfig");
    let admin = Client::try_from(config.clone()).expect("client");

    let mut all = Vec::new();
    for n in sizes {
        let ns = format!("bench-drift-{n}-{}", fastrand::u32(..) % 100_000);
        eprintln!("N = {n}: namespace {ns}");
        create_namespace(&admin, &ns).await;
        let result =
            std::panic::AssertUnwindSafe(run(n, config.clone(), &kubeconfig, &kubectl, &ns))
                .catch_unwind()
                .await;
        delete_namespace(&admin, &ns).await;
        match result {
            Ok(f) => all.push(f),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    println!();
    println!(
        "{:>6} | {:>8} | {:>21} | {:>21} | {:>8} | {:>18} | {:>10} | {:>7}",
        "N",
        "setup s",
        "no-change wall ms",
        "no-change CPU ms",
        "requests",
        "edit->report ms",
        "kubectl s",
        "ratio"
    );
    println!(
        "{:>6} | {:>8} | {:>21} | {:>21} | {:>8} | {:>18} | {:>10} | {:>7}",
        "", "", "best / median", "best / median", "", "p50 / p95 / max", "diff wall", "kc/gd"
    );
    for f in &all {
        println!(
            "{:>6} | {:>8.1} | {:>9.1} / {:>9.1} | {:>9.1} / {:>9.1} | {:>8} | {:>5.0} / {:>4.0} / {:>4.0} | {:>10.1} | {:>6.0}x",
            f.n,
            f.setup.as_secs_f64(),
            ms(f.wall_best),
            ms(f.wall_median),
            ms(f.cpu_best),
            ms(f.cpu_median),
            f.requests,
            ms(f.edit_p50),
            ms(f.edit_p95),
            ms(f.edit_max),
            f.kubectl.as_secs_f64(),
            f.kubectl.as_secs_f64() / f.wall_median.as_secs_f64()
        );
    }
    println!(
        "(no-change: {RUNS} runs of detect over the synced cache; edits: {EDITS}; ratio = kubectl diff wall / median no-change wall)"
    );
}
