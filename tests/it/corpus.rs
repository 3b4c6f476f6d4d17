//! Issue 14: real install manifests, unchanged. The corpus (`scripts/corpus.sh`: prometheus-
//! operator, gatekeeper, kyverno, ingress-nginx, cert-manager, external-secrets and istio's
//! CRDs and monitoring addons with their Grafana dashboards, 212 objects) renders, validates,
//! syncs on the local cluster, stays in sync with no request, and live edits on it are found.
//! Also item 7's applier changes, on CRDs of a group of the test's own.
//!
//! The corpus's namespaces and cluster-scoped names are fixed by the projects' files, so the
//! corpus test holds a file lock (`/tmp/gitopsd-test-corpus.lock`, shared with
//! `benches/corpus.rs`) and deletes what it created (by the tier's label) at the end. The
//! projects' admission webhooks are narrowed by the tier's patches to a probe label only this
//! test sets (tests/fixtures/corpus/tier/tier.yaml), so no other test's objects meet them.

use crate::reconcile_support;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gitopsd::apply::{Applier, ApplyItem, Outcome};
use gitopsd::cluster::counted_client;
use gitopsd::config::ApplyConfig;
use gitopsd::live::ApiLive;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use reconcile_support::{git, http_get, random_suffix};
use support::{kubeconfig, stderr, stdout};

/// The corpus tier's name (its directory in the corpus repo).
const TIER: &str = "corpus";
/// The label the corpus tier's overlay puts on every object: what the clean-up deletes by.
const CORPUS_LABEL: &str = "gitopsd-corpus=true";
/// The namespaces the corpus's objects live in.
const NAMESPACES: [&str; 5] = [
    "default",
    "gatekeeper-system",
    "kyverno",
    "ingress-nginx",
    "istio-system",
];
/// The ones it creates (and the clean-up deletes).
const OWN_NAMESPACES: [&str; 4] = [
    "gatekeeper-system",
    "kyverno",
    "ingress-nginx",
    "istio-system",
];
/// Cluster-scoped kinds the corpus has.
const CLUSTER_KINDS: &str = "validatingwebhookconfigurations,mutatingwebhookconfigurations,clusterrolebindings,clusterroles,ingressclasses,customresourcedefinitions";
/// Namespaced kinds it has in `default` (prometheus-operator's objects).
const DEFAULT_NS_KINDS: &str =
    "deployments,services,serviceaccounts,configmaps,secrets,roles,rolebindings";
/// A first sync of 212 objects with 93 CRDs on a 2-core machine shared with other tests.
const SYNC_TIMEOUT: Duration = Duration::from_secs(600);

/// The corpus directory: `GITOPSD_CORPUS`, else what `scripts/corpus.sh` prints (it builds
/// the corpus once, from the Go module proxy).
pub fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GITOPSD_CORPUS") {
        return PathBuf::from(dir);
    }
    let out = Command::new("bash")
        .arg(support::repo_root().join("scripts/corpus.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/corpus.sh");
    assert!(out.status.success(), "scripts/corpus.sh failed");
    let text = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(text.lines().last().expect("a directory").trim())
}

fn kubectl_path() -> PathBuf {
    let out = Command::new("bash")
        .arg("-c")
        .arg("eval \"$(bash scripts/cluster.sh env)\" && command -v kubectl")
        .current_dir(support::repo_root())
        .output()
        .expect("run scripts/cluster.sh env");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!path.is_empty(), "no kubectl from scripts/cluster.sh env");
    PathBuf::from(path)
}

fn kubectl(args: &[&str]) -> std::process::Output {
    Command::new(kubectl_path())
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .output()
        .expect("run kubectl")
}

/// Holds `/tmp/gitopsd-test-corpus.lock` while alive: the corpus's names are fixed.
struct CorpusLock(#[allow(dead_code)] std::fs::File);

impl CorpusLock {
    fn take() -> CorpusLock {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/tmp/gitopsd-test-corpus.lock")
            .expect("open the corpus lock");
        f.lock().expect("lock the corpus");
        CorpusLock(f)
    }
}

/// Deletes everything the corpus tier created, by its label, and the state namespace.
fn delete_corpus(state_ns: &str) {
    let selector = ["-l", CORPUS_LABEL, "--ignore-not-found", "--wait=false"];
    let mut args = vec!["delete", CLUSTER_KINDS];
    args.extend(selector);
    let out = kubectl(&args);
    if !out.status.success() {
        eprintln!("clean-up: {}", stderr(&out));
    }
    let mut args = vec!["delete", DEFAULT_NS_KINDS, "-n", "default"];
    args.extend(selector);
    let _ = kubectl(&args);
    let mut args = vec!["delete", "namespace", "--ignore-not-found", "--wait=false"];
    args.extend(OWN_NAMESPACES);
    args.push(state_ns);
    let _ = kubectl(&args);
}

/// Waits until no object of the corpus is left (its namespaces and CRDs gone), so that a
/// run after this one starts clean.
fn wait_corpus_gone(timeout: Duration) {
    support::eventually_blocking(
        "the corpus of an earlier run to be deleted",
        timeout,
        || {
            let crds = kubectl(&["get", "crd", "-l", CORPUS_LABEL, "-o", "name"]);
            let namespaces = kubectl(&[
                "get",
                "namespace",
                "--ignore-not-found",
                "-o",
                "name",
                OWN_NAMESPACES[0],
                OWN_NAMESPACES[1],
                OWN_NAMESPACES[2],
                OWN_NAMESPACES[3],
            ]);
            if stdout(&crds).trim().is_empty() && stdout(&namespaces).trim().is_empty() {
                return Ok(());
            }
            Err(format!("{} {}", stdout(&crds), stdout(&namespaces)))
        },
    );
}

/// The corpus as a git repo in `dir`, committed; the commit.
fn corpus_repo(dir: &Path) -> String {
    let src = corpus_dir();
    let out = Command::new("cp")
        .arg("-r")
        .arg(src.join("base"))
        .arg(src.join("tiers"))
        .arg(dir)
        .output()
        .expect("cp");
    assert!(out.status.success(), "cp: {}", stderr(&out));
    git(dir, &["init", "-q", "-b", "main"]);
    commit(dir, "the corpus, as the projects ship it")
}

fn commit(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

fn config_text(repo: &Path, state_ns: &str, port: u16) -> String {
    format!(
        "source:\n  url: {}\n  interval: 2s\ntiers:\n  - name: {TIER}\n    ref: main\n    namespaces: [{}]\n    clusterScoped: true\n    prune: true\n    validation: {{security: warn}}\n    policy: {{critical: alert, high: alert, medium: alert, low: alert}}\nhttp:\n  listen: \"127.0.0.1:{port}\"\nstate:\n  namespace: {state_ns}\n",
        repo.display(),
        NAMESPACES.join(", ")
    )
}

/// `gitopsd run` on the corpus, killed (with its log tail printed on failure) and the corpus
/// deleted when dropped.
struct Run {
    child: Option<Child>,
    log: PathBuf,
    port: u16,
    state_ns: String,
}

impl Run {
    fn status(&self) -> Value {
        let (code, body) = http_get(self.port, &format!("/api/v1/tiers/{TIER}"))
            .unwrap_or_else(|e| panic!("GET status: {e}"));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("status JSON")
    }

    async fn wait(&self, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        support::eventually_or(what, timeout, || {
            if let Ok((200, body)) = http_get(self.port, &format!("/api/v1/tiers/{TIER}"))
                && let Ok(s) = serde_json::from_str::<Value>(&body)
            {
                last = s;
            }
            let found = if done(&last) {
                Ok(last.clone())
            } else {
                Err(brief(&last))
            };
            std::future::ready(found)
        })
        .await
    }

    /// Requests sent, by verb, watches left out (a watch is held open, and restarted by the
    /// client on its own schedule).
    fn requests(&self) -> u64 {
        let (_, body) = http_get(self.port, "/metrics").expect("GET /metrics");
        body.lines()
            .filter(|l| {
                l.starts_with("gitopsd_kube_requests_total{") && !l.contains("verb=\"watch\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- gitopsd log (tail) ---\n{}",
                reconcile_support::tail(&self.log, 80)
            );
        }
        delete_corpus(&self.state_ns);
    }
}

fn brief(s: &Value) -> String {
    let failures: Vec<String> = s["lastSync"]["failures"]
        .as_array()
        .map(|f| {
            f.iter()
                .take(5)
                .map(|r| {
                    r["message"]
                        .as_str()
                        .unwrap_or("?")
                        .chars()
                        .take(300)
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "sync={} health={} revision={} objects={} drift={} lastError={} outcomes={} failures={failures:?}",
        s["sync"],
        s["health"],
        s["revision"],
        s["objects"],
        s["drift"]["items"].as_array().map_or(0, Vec::len),
        s["lastError"],
        s["lastSync"]["outcomes"],
    )
}

fn drift_items(s: &Value) -> Vec<Value> {
    s["drift"]["items"].as_array().cloned().unwrap_or_default()
}

/// The drift item of `kind` `name` (any path), if any.
fn item_of<'a>(items: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    items
        .iter()
        .find(|i| i["kind"] == kind && i["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_renders_validates_syncs_stays_quiet_and_finds_live_edits() {
    let _lock = CorpusLock::take();
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let revision = corpus_repo(&repo);
    let state_ns = format!("corpus-state-{}", random_suffix());
    let port = reconcile_support::free_port();
    let config = dir.path().join("gitopsd.yaml");
    std::fs::write(&config, config_text(&repo, &state_ns, port)).expect("write the config");
    // An earlier run's objects, if it was killed before its clean-up.
    delete_corpus(&state_ns);
    wait_corpus_gone(Duration::from_secs(300));

    // 1. Renders unchanged: every object of every project, Lists expanded, `${...}` of the
    // dashboards left as they are.
    let repo_arg = repo.to_str().expect("a UTF-8 path");
    let out = support::gitopsd(&["render", "--tier", TIER, "--repo", repo_arg, "-o", "json"]);
    assert!(out.status.success(), "render failed: {}", stderr(&out));
    let list: Value = serde_json::from_slice(&out.stdout).expect("render -o json is JSON");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 212, "objects rendered");
    let crds = items
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .count();
    assert_eq!(crds, 93, "CRDs rendered");
    let dashboards = items
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "istio-grafana-dashboards")
        .expect("istio's Grafana dashboards");
    assert!(
        dashboards["data"].to_string().contains("${datasource}"),
        "the dashboards' ${{datasource}} is kept as text"
    );
    let rendered = dir.path().join("rendered.json");
    std::fs::write(&rendered, &out.stdout).expect("write the rendered set");

    // 2. Validates against the cluster: security findings are warnings in this tier (the
    // projects run as root and kyverno's testing install uses :latest), nothing else.
    let kc = kubeconfig().to_str().expect("a UTF-8 path");
    let config_arg = config.to_str().expect("a UTF-8 path");
    let out = support::gitopsd(&[
        "validate",
        "--config",
        config_arg,
        "--tier",
        TIER,
        "--repo",
        repo_arg,
        "--kubeconfig",
        kc,
    ]);
    assert!(
        out.status.success(),
        "validate failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );

    // 3. `gitopsd run` syncs it.
    let log = dir.path().join("gitopsd.log");
    let log_file = std::fs::File::create(&log).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_gitopsd"))
        .args([
            "run",
            "--config",
            config_arg,
            "--kubeconfig",
            kc,
            "--workdir",
        ])
        .arg(dir.path().join("work"))
        .env_remove("GITOPSD_CONFIG")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("start gitopsd run");
    let run = Run {
        child: Some(child),
        log: log.clone(),
        port,
        state_ns: state_ns.clone(),
    };
    let started = Instant::now();
    let s = run
        .wait("the corpus Synced", SYNC_TIMEOUT, |s| {
            s["revision"] == revision.as_str() && s["sync"] == "Synced"
        })
        .await;
    eprintln!(
        "first sync: Synced after {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        brief(&s)
    );
    assert_eq!(s["objects"], 212);
    let timings = std::fs::read_to_string(&log).expect("the log");
    assert!(
        timings.contains("sync timings") && timings.contains("apply phases"),
        "the first sync logs where its time went"
    );

    // 4. Quiet: two more reconciles (the 2 s interval) with no drift and no request.
    let quiet_from = run.status()["lastReconcileAt"].clone();
    let s = run
        .wait(
            "a reconcile after the sync",
            Duration::from_secs(120),
            |s| s["lastReconcileAt"] != quiet_from,
        )
        .await;
    assert_eq!(
        drift_items(&s),
        Vec::<Value>::new(),
        "no drift after the sync"
    );
    let requests = run.requests();
    let mut last = s["lastReconcileAt"].clone();
    for _ in 0..2 {
        let s = run
            .wait("another quiet reconcile", Duration::from_secs(120), |s| {
                s["lastReconcileAt"] != last
            })
            .await;
        assert_eq!(s["sync"], "Synced", "{}", brief(&s));
        last = s["lastReconcileAt"].clone();
    }
    assert_eq!(
        run.requests(),
        requests,
        "no-change reconciles send no request"
    );

    // `gitopsd diff` agrees (exit 0: no drift), and so does `kubectl diff --server-side`.
    let out = support::gitopsd(&[
        "diff",
        "--config",
        config_arg,
        "--tier",
        TIER,
        "--kubeconfig",
        kc,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "gitopsd diff: {}\n{}",
        stdout(&out).chars().take(3000).collect::<String>(),
        stderr(&out)
    );
    let out = kubectl(&[
        "diff",
        "--server-side",
        "--field-manager",
        "gitopsd",
        "-f",
        rendered.to_str().expect("a UTF-8 path"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "kubectl diff --server-side: {}\n{}",
        stdout(&out).chars().take(3000).collect::<String>(),
        stderr(&out)
    );

    // 5. An object the API server refuses through a webhook with failurePolicy Fail and no
    // server behind it (kwok runs no containers): named with the refusal, the rest applied.
    std::fs::write(
        repo.join("tiers/corpus/webhook-probe.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: webhook-probe\n  namespace: ingress-nginx\n  labels: {gitopsd-corpus-webhook: probe}\nspec:\n  ingressClassName: nginx\n  defaultBackend:\n    service: {name: ingress-nginx-controller, port: {number: 80}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: after-the-probe\n  namespace: ingress-nginx\ndata: {note: applied beside a refused object}\n",
    )
    .expect("write the probe");
    let probe = commit(&repo, "an Ingress the admission webhook must see");
    let s = run
        .wait("the probe commit synced", SYNC_TIMEOUT, |s| {
            s["lastSync"]["revision"] == probe.as_str()
        })
        .await;
    let failures = s["lastSync"]["failures"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(failures.len(), 1, "only the Ingress fails: {}", brief(&s));
    let message = failures[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Ingress ingress-nginx/webhook-probe")
            && message.contains("validate.nginx.ingress.kubernetes.io"),
        "the refusal names the object and the webhook: {message}"
    );
    assert_eq!(s["lastSync"]["outcomes"]["created"], 1, "{}", brief(&s));
    let out = kubectl(&["get", "configmap", "-n", "ingress-nginx", "after-the-probe"]);
    assert!(out.status.success(), "the rest of the commit applied");
    // 6. Live edits, each found with a sensible severity (the tier's policy alerts, so they
    // stay to be read).
    let edits: [(&[&str], &str, &str, &[&str]); 5] = [
        (
            &[
                "patch",
                "crd",
                "servicemonitors.monitoring.coreos.com",
                "--type=json",
                "-p",
                r#"[{"op":"replace","path":"/spec/versions/0/schema/openAPIV3Schema/description","value":"edited by hand"}]"#,
            ],
            "CustomResourceDefinition",
            "servicemonitors.monitoring.coreos.com",
            &["high", "critical", "medium"],
        ),
        (
            &[
                "patch",
                "clusterrole",
                "ingress-nginx",
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["secrets"],"verbs":["*"]}}]"#,
            ],
            "ClusterRole",
            "ingress-nginx",
            &["critical"],
        ),
        (
            &[
                "patch",
                "validatingwebhookconfiguration",
                "ingress-nginx-admission",
                "--type=json",
                "-p",
                r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]"#,
            ],
            "ValidatingWebhookConfiguration",
            "ingress-nginx-admission",
            &["critical"],
        ),
        (
            &[
                "set",
                "image",
                "-n",
                "ingress-nginx",
                "deployment/ingress-nginx-controller",
                "controller=registry.example.com/not-ingress-nginx:1",
            ],
            "Deployment",
            "ingress-nginx-controller",
            &["critical", "high"],
        ),
        (
            &[
                "patch",
                "configmap",
                "-n",
                "istio-system",
                "istio-grafana-dashboards",
                "--type=merge",
                "-p",
                r#"{"data":{"pilot-dashboard.json":"{}"}}"#,
            ],
            "ConfigMap",
            "istio-grafana-dashboards",
            &["medium", "low", "high"],
        ),
    ];
    for (args, ..) in &edits {
        let out = kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
    }
    let s = run
        .wait(
            "the five live edits reported",
            Duration::from_secs(180),
            |s| {
                let items = drift_items(s);
                edits
                    .iter()
                    .all(|(_, kind, name, _)| item_of(&items, kind, name).is_some())
            },
        )
        .await;
    let items = drift_items(&s);
    for (_, kind, name, severities) in &edits {
        let item = item_of(&items, kind, name).expect("reported");
        let severity = item["severity"].as_str().unwrap_or("?");
        eprintln!(
            "live edit of {kind} {name}: {severity} ({}) at {}",
            item["rule"], item["paths"]
        );
        assert!(
            severities.contains(&severity),
            "{kind} {name}: severity {severity}, expected one of {severities:?}: {item}"
        );
    }

    drop(run);
    wait_corpus_gone(Duration::from_secs(300));
}

/// Item 7: a CRD whose kind no object of the same apply is made of is not waited for (a repo of
/// CRDs alone waited a minute on a busy server, reading each CRD five times a second), and a
/// CRD whose apply answer already says Established is not read again.
#[tokio::test]
async fn crds_are_waited_for_only_when_their_kind_is_used_and_not_yet_established() {
    let suffix = random_suffix();
    let group = format!("c{suffix}.corpus-test.gitopsd.io");
    let crd = |plural: &str, kind: &str, note: &str| {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.{group}"), "labels": {"note": note}},
            "spec": {
                "group": group, "scope": "Cluster",
                "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind, "listKind": format!("{kind}List")},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
            },
        })
    };
    let alone: Vec<Value> = (0..5)
        .map(|i| crd(&format!("alones{i}"), &format!("Alone{i}"), "a"))
        .collect();
    let used = crd("useds", "Used", "a");
    let instance = json!({"apiVersion": format!("{group}/v1"), "kind": "Used",
        "metadata": {"name": "u1"}, "spec": {"size": 1}});
    let names: Vec<String> = alone
        .iter()
        .chain([&used])
        .map(|c| c["metadata"]["name"].as_str().expect("name").to_owned())
        .collect();
    struct Cleanup(Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let mut args = vec!["delete", "crd", "--ignore-not-found", "--wait=false"];
            args.extend(self.0.iter().map(String::as_str));
            let _ = kubectl(&args);
        }
    }
    let _cleanup = Cleanup(names);

    let kc = kube::config::Kubeconfig::read_from(kubeconfig()).expect("read the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("load the kubeconfig");
    let (client, counter) = counted_client(config).expect("counted client");
    let applier = Applier::new(
        ApiLive::new(client),
        "corpus-crd-test",
        &ApplyConfig::default(),
    );
    let cancel = CancellationToken::new();
    fn items<'a>(manifests: &[&'a Value]) -> Vec<ApplyItem<'a>> {
        manifests
            .iter()
            .map(|m| ApplyItem {
                manifest: m,
                previous_resource_version: None,
                take_fields: Vec::new(),
            })
            .collect()
    }
    let reads = |counter: &gitopsd::live::RequestCounter| {
        counter
            .by_verb()
            .into_iter()
            .find(|(v, _)| *v == "read")
            .map_or(0, |(_, n)| n)
    };

    // CRDs alone: applied, none read back. (The first call also asks discovery about the CRD
    // kind, once per concurrent apply: it is left out by counting from the second call.)
    let results = applier.apply(items(&[&alone[0]]), &cancel).await;
    assert_eq!(results[0].outcome, Outcome::Created, "{results:?}");
    let before = reads(&counter);
    let manifests: Vec<&Value> = alone[1..].iter().collect();
    let results = applier.apply(items(&manifests), &cancel).await;
    assert!(
        results.iter().all(|r| r.outcome == Outcome::Created),
        "{results:?}"
    );
    assert_eq!(
        reads(&counter) - before,
        0,
        "4 CRDs no object uses are not read back"
    );

    // A CRD and an object of its kind: waited for, so the object is created in the same call.
    let results = applier.apply(items(&[&used, &instance]), &cancel).await;
    assert_eq!(
        results.iter().map(|r| r.outcome).collect::<Vec<_>>(),
        [Outcome::Created, Outcome::Created],
        "{results:?}"
    );

    // The same CRD changed, with its object: the apply answer says Established; no read.
    let mut changed = used.clone();
    changed["metadata"]["labels"]["note"] = json!("b");
    let before = reads(&counter);
    let results = applier.apply(items(&[&changed, &instance]), &cancel).await;
    assert!(
        results.iter().all(|r| r.outcome != Outcome::Failed),
        "{results:?}"
    );
    assert_eq!(
        reads(&counter) - before,
        0,
        "an Established CRD re-applied with an object of its kind is not read again"
    );
}
