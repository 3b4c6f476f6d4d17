//! What the cluster benchmarks share: the local cluster, its kubectl, CPU time, knobs, config
//! repos made with the git CLI, scratch namespaces, and `gitopsd run` with its status endpoint.
#![allow(dead_code)] // each bench uses its own part of this module

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gitopsd::live::RequestCounter;
use gitopsd::reconcile::{CheckoutError, Checkouts};
use gitopsd::revision::Revision;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::Value;

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn kubeconfig() -> PathBuf {
    if let Some(path) = std::env::var_os("GITOPSD_TEST_KUBECONFIG") {
        return PathBuf::from(path);
    }
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/cluster.sh"))
        .arg("up")
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run scripts/cluster.sh up");
    assert!(out.status.success(), "scripts/cluster.sh up failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("a kubeconfig path").trim())
}

/// The repo's kubectl: `scripts/cluster.sh env` puts it on PATH.
pub fn kubectl() -> PathBuf {
    let out = Command::new("bash")
        .arg("-c")
        .arg("eval \"$(bash scripts/cluster.sh env)\" && command -v kubectl")
        .current_dir(repo_root())
        .output()
        .expect("run scripts/cluster.sh env");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!path.is_empty(), "no kubectl from scripts/cluster.sh env");
    PathBuf::from(path)
}

/// CPU time of the whole process (every thread), in nanoseconds, from /proc/self/task/*/schedstat.
pub fn cpu_ns() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("read /proc/self/task") {
        let path = task.expect("task entry").path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

// ---------------------------------------------------------------------------------------------
// Knobs, numbers.

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: a number"))
        })
        .unwrap_or(default)
}

pub fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.split(',')
                .map(|s| {
                    s.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("{name}: numbers"))
                })
                .collect()
        })
        .unwrap_or_else(|| default.to_vec())
}

/// A number for scratch names (namespaces, tiers), so runs do not collide.
pub fn unique() -> u32 {
    fastrand::u32(..) % 100_000
}

/// The value at `p` (0..=1) of sorted durations, by the nearest index.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------------------------------
// Config repos, made with the git CLI.

/// A ConfigMap of the benches' config repos.
pub fn config_map(i: usize, ns: &str, log_level: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-{i}-config\n  namespace: {ns}\n\
         \x20 labels: {{app: app-{i}}}\ndata:\n  LOG_LEVEL: {log_level}\n  URL: http://app-{i}.{ns}.svc/\n\
         \x20 TIMEOUT: 30s\n  FEATURE_X: \"true\"\n"
    )
}

/// A git repo (git CLI) in a temp dir, on branch `main`, with `tiers/<tier>/tier.yaml` for
/// each tier and manifests in multi-document files.
pub struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    /// A repo with `tiers/<tier>/tier.yaml` for each tier and nothing committed yet.
    pub fn init(tiers: &[&str]) -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        for tier in tiers {
            let tier_dir = dir.path().join("tiers").join(tier);
            std::fs::create_dir_all(&tier_dir).expect("mkdir tier");
            std::fs::write(
                tier_dir.join("tier.yaml"),
                "labels: {app.kubernetes.io/part-of: bench}\n",
            )
            .expect("write tier.yaml");
        }
        Repo { dir }
    }

    /// One tier, `objects` in `base/objects-NNN.yaml` (100 documents per file), committed.
    pub fn new(tier: &str, objects: impl Iterator<Item = String>) -> Repo {
        let repo = Repo::init(&[tier]);
        let all: Vec<String> = objects.collect();
        for (n, chunk) in all.chunks(100).enumerate() {
            repo.write_file(n, chunk);
        }
        repo.commit("objects");
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `base/objects-NNN.yaml`.
    pub fn write_file(&self, n: usize, docs: &[String]) {
        self.write_docs(&format!("base/objects-{n:03}.yaml"), docs);
    }

    /// A multi-document YAML file at `rel` (its directory created if missing).
    pub fn write_docs(&self, rel: &str, docs: &[String]) {
        let mut text = String::new();
        for d in docs {
            let _ = writeln!(text, "---\n{d}");
        }
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write objects");
    }

    /// Commits the working tree; the commit id.
    pub fn commit(&self, message: &str) -> String {
        git(self.path(), &["add", "-A"]);
        git(self.path(), &["commit", "-q", "-m", message]);
        self.head()
    }

    pub fn head(&self) -> String {
        git(self.path(), &["rev-parse", "HEAD"]).trim().to_owned()
    }
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Scratch namespaces.

/// Namespaces created (or noted) by a bench, labelled `gitopsd.io/bench=<bench>`; all deleted
/// by `delete_all`, which the benches call at the end, on error too.
#[derive(Clone)]
pub struct Created {
    bench: &'static str,
    names: Arc<Mutex<Vec<String>>>,
}

impl Created {
    pub fn new(bench: &'static str) -> Created {
        Created {
            bench,
            names: Arc::default(),
        }
    }

    pub async fn namespace(&self, client: &Client, ns: &str) {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut object = Namespace::default();
        object.metadata.name = Some(ns.to_owned());
        object.metadata.labels =
            Some([("gitopsd.io/bench".to_owned(), self.bench.to_owned())].into());
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .expect("create a scratch namespace");
        self.note(ns);
    }

    /// A namespace someone else creates (gitopsd's state namespace), to delete at the end.
    pub fn note(&self, ns: &str) {
        self.names.lock().expect("lock").push(ns.to_owned());
    }

    pub async fn delete_all(&self, client: &Client) {
        let all: Vec<String> = std::mem::take(&mut *self.names.lock().expect("lock"));
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for ns in all {
            if let Err(e) = namespaces.delete(&ns, &DeleteParams::default()).await {
                eprintln!("warning: cannot delete namespace {ns}: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `gitopsd run` and its status endpoint.

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (`Connection: close`): the status code and body,
/// or `None` while nothing answers.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    // axum answers with Content-Length; a chunked body would need decoding.
    Some((code, body.to_owned()))
}

/// GET `path` on the status endpoint: the JSON body, or `None` while it does not answer 200.
pub fn http_get_json(port: u16, path: &str) -> Option<Value> {
    match http_request(port, "GET", path, &[], b"")? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// `gitopsd run`: the release binary Cargo built for the bench (`CARGO_BIN_EXE_gitopsd`), its
/// config, log and workdir in a temp dir, its status endpoint on a free loopback port.
pub struct Daemon {
    pub port: u16,
    pub pid: u32,
    /// When it was started.
    pub started: Instant,
    child: tokio::process::Child,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// `config(dir, port)` returns the text of gitopsd.yaml; it may write files (secrets) into
    /// `dir`, and must set `http.listen` to `127.0.0.1:<port>`.
    pub fn start(kubeconfig: &Path, config: impl FnOnce(&Path, u16) -> String) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config_path = dir.path().join("gitopsd.yaml");
        std::fs::write(&config_path, config(dir.path(), port)).expect("write the config");
        let log_path = dir.path().join("gitopsd.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gitopsd"))
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--workdir")
            .arg(dir.path().join("work"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start gitopsd run");
        Daemon {
            port,
            pid: child.id().expect("pid"),
            started: Instant::now(),
            child,
            log_path,
            _dir: dir,
        }
    }

    /// The last 20 lines of its log.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `GET /api/v1/tiers/<tier>`, or `None` while it does not answer.
    pub async fn tier_status(&self, tier: &str) -> Option<Value> {
        let (port, path) = (self.port, format!("/api/v1/tiers/{tier}"));
        tokio::task::spawn_blocking(move || http_get_json(port, &path))
            .await
            .expect("join")
    }

    /// Polls the tier's status every `every` until `done` holds: the moment it was seen. Panics
    /// with the log's tail if the daemon exits or `deadline` passes first.
    pub async fn wait_for(
        &mut self,
        tier: &str,
        every: Duration,
        deadline: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Instant {
        let since = Instant::now();
        loop {
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!("gitopsd run exited early ({exit}):\n{}", self.tail());
            }
            assert!(
                since.elapsed() < deadline,
                "tier {tier}: not there after {deadline:?}:\n{}",
                self.tail()
            );
            if let Some(s) = self.tier_status(tier).await
                && done(&s)
            {
                return Instant::now();
            }
            tokio::time::sleep(every).await;
        }
    }

    /// SIGTERM, then up to 40 s for it to exit: how it ended.
    pub async fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        match tokio::time::timeout(Duration::from_secs(40), self.child.wait()).await {
            Ok(Ok(s)) => s.to_string(),
            Ok(Err(e)) => format!("wait failed: {e}"),
            Err(_) => {
                let _ = self.child.kill().await;
                "did not stop within 40 s after SIGTERM; killed".to_owned()
            }
        }
    }
}

/// A tier status that shows `revision` with sync `Synced`.
pub fn synced_at(revision: &str) -> impl Fn(&Value) -> bool + '_ {
    move |s| s["sync"] == "Synced" && s["revision"] == revision
}

/// Checkouts of the bench repo: `git checkout --detach <rev>` in its working tree.
pub struct GitCheckouts {
    pub dir: PathBuf,
}

impl Checkouts for GitCheckouts {
    fn checkout(&self, revision: &Revision) -> Result<PathBuf, CheckoutError> {
        let failed = |reason: String| CheckoutError::Failed {
            revision: revision.clone(),
            reason,
        };
        let out = Command::new("git")
            .args(["checkout", "-q", "--detach", revision.as_str()])
            .current_dir(&self.dir)
            .output()
            .map_err(|e| failed(e.to_string()))?;
        if !out.status.success() {
            return Err(failed(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        Ok(self.dir.clone())
    }
}

/// Requests by verb between two snapshots.
pub fn delta(
    before: &[(&'static str, u64)],
    counter: &RequestCounter,
) -> BTreeMap<&'static str, u64> {
    counter
        .by_verb()
        .into_iter()
        .zip(before)
        .filter_map(|((verb, now), (_, then))| (now > *then).then_some((verb, now - then)))
        .collect()
}

pub fn show_verbs(v: &BTreeMap<&'static str, u64>) -> String {
    if v.is_empty() {
        return "none".into();
    }
    let total: u64 = v.values().sum();
    let parts: Vec<String> = v.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("{total} ({})", parts.join(", "))
}
