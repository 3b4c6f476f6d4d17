//! Shared by the cluster tests (tests/it/, tests/faults_apiserver.rs): a config repo made with
//! the git CLI in a temp dir, a `gitopsd run` child process with a status endpoint on a port of
//! its own, and the cleanup of everything a test made in the cluster (killed and deleted however
//! the test ends).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::git_support;
use crate::support;

/// Runs git in `dir`, with a fixed identity and no user config.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_support::run(dir, "git", args)
}

/// A short random suffix for names that must be unique per test run.
pub fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:04x}", std::process::id() % 0xfff, nanos % 0xffff)
}

pub use git_support::free_port;

/// The files of one commit of the config repo: path (relative to the repo) -> content.
pub type Files = Vec<(String, String)>;

/// The fixture's Deployment `api` (2 replicas) with `image`; `unready` adds the kwok label that
/// keeps its pods Running but never Ready.
pub fn deployment(image: &str, unready: bool) -> String {
    let extra = if unready {
        "\n        gitopsd.io/kwok-unready: \"true\""
    } else {
        ""
    };
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  labels: {{app: api}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: api}}
  template:
    metadata:
      labels:
        app: api{extra}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
      containers:
        - name: api
          image: {image}
          ports:
            - {{name: http, containerPort: 8080}}
          env:
            - {{name: LOG_LEVEL, value: info}}
"#
    )
}

pub fn configmap(name: &str, annotations: &[(&str, &str)]) -> String {
    let mut s = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    if !annotations.is_empty() {
        s += "  annotations:\n";
        for (k, v) in annotations {
            s += &format!("    {k}: \"{v}\"\n");
        }
    }
    s += &format!("data:\n  owner: {name}\n  greeting: hello\n");
    s
}

pub const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  selector: {app: api}
  ports:
    - {name: http, port: 80, targetPort: http}
"#;

pub const IMAGE_1: &str = "registry.example.com/shop/api:1.4.2";
pub const IMAGE_2: &str = "registry.example.com/shop/api:1.4.3";
pub const IMAGE_3: &str = "registry.example.com/shop/api:1.4.4";

/// The standard fixture's base files: a Deployment, a Service, the ConfigMap `api-config` and
/// the ConfigMaps `extra-1` .. `extra-4`, one file each. With the tier's Namespace: 8 objects.
pub fn base_files(image: &str) -> Files {
    let mut files = vec![
        ("base/deployment.yaml".to_owned(), deployment(image, false)),
        ("base/service.yaml".to_owned(), SERVICE.to_owned()),
        (
            "base/api-config.yaml".to_owned(),
            configmap("api-config", &[]),
        ),
    ];
    for i in 1..=4 {
        files.push((
            format!("base/extra-{i}.yaml"),
            configmap(&format!("extra-{i}"), &[]),
        ));
    }
    files
}

/// Objects in the standard fixture, the Namespace included.
pub const BASE_OBJECTS: usize = 8;

/// Extra settings of the test's tier in gitopsd.yaml (YAML lines under the tier, indented by
/// four spaces), e.g. `policy: {critical: alert}`.
#[derive(Default, Clone)]
pub struct TierExtra(pub Vec<String>);

/// Daemon-wide settings of gitopsd.yaml: the poll interval (default `1s`) and extra YAML lines
/// under `source:` and `http:` (indented by two spaces there), e.g.
/// `webhookSecretFile: /tmp/x/secret`.
#[derive(Clone)]
pub struct DaemonExtra {
    pub interval: String,
    pub source: Vec<String>,
    pub http: Vec<String>,
}

impl Default for DaemonExtra {
    fn default() -> Self {
        DaemonExtra {
            interval: "1s".into(),
            source: Vec::new(),
            http: Vec::new(),
        }
    }
}

/// Everything one test owns: its config repo, its tier (also its namespace's name), its state
/// namespace, the daemon. Dropping it kills the daemon (printing its log tail when the test
/// failed) and deletes the namespaces.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub tier: String,
    pub state_ns: String,
    pub port: u16,
    pub config: PathBuf,
    pub daemon: Option<Daemon>,
    /// Logs of daemons that were stopped during the test, kept for the failure report.
    pub old_logs: Vec<PathBuf>,
    /// Extra environment of the daemon process (e.g. a preloaded libfaketime).
    pub daemon_env: Vec<(String, String)>,
}

impl Fixture {
    /// A repo whose first commit holds `base` and `tiers/<tier>/` (tier.yaml, namespace.yaml),
    /// and a gitopsd.yaml for one tier named `rt-<test>-<random>`.
    pub fn new(test: &str, base: Files, extra: TierExtra) -> Fixture {
        Fixture::with_daemon(test, base, extra, DaemonExtra::default())
    }

    /// As [`Fixture::new`], with daemon-wide settings.
    pub fn with_daemon(test: &str, base: Files, extra: TierExtra, daemon: DaemonExtra) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let suffix = random_suffix();
        let tier = format!("rt-{test}-{suffix}");
        let state_ns = format!("rt-state-{test}-{suffix}");
        assert!(tier.len() <= 63 && state_ns.len() <= 63, "names too long");
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).expect("mkdir repo");
        git(&repo, &["init", "-q", "-b", "main"]);
        let port = free_port();
        let mut tier_lines = format!(
            "  - name: {tier}\n    ref: main\n    namespaces: [{tier}]\n    clusterScoped: true\n    prune: true\n"
        );
        for l in &extra.0 {
            tier_lines += &format!("    {l}\n");
        }
        let lines = |ls: &[String]| ls.iter().map(|l| format!("  {l}\n")).collect::<String>();
        let (source_lines, http_lines) = (lines(&daemon.source), lines(&daemon.http));
        let config_text = format!(
            "source:\n  url: {}\n  interval: {}\n{source_lines}tiers:\n{tier_lines}http:\n  listen: \"127.0.0.1:{port}\"\n{http_lines}state:\n  namespace: {state_ns}\n",
            repo.display(),
            daemon.interval
        );
        let config = dir.path().join("gitopsd.yaml");
        std::fs::write(&config, config_text).expect("write gitopsd.yaml");
        let f = Fixture {
            dir,
            repo,
            tier,
            state_ns,
            port,
            config,
            daemon: None,
            old_logs: Vec::new(),
            daemon_env: Vec::new(),
        };
        let mut files = base;
        files.extend(f.tier_files());
        f.write_files(&files);
        f.commit("first commit");
        f
    }

    fn tier_files(&self) -> Files {
        let t = &self.tier;
        vec![
            (
                format!("tiers/{t}/tier.yaml"),
                format!("namespace: {t}\nlabels: {{env: test}}\n"),
            ),
            (
                format!("tiers/{t}/namespace.yaml"),
                format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {t}\n"),
            ),
        ]
    }

    pub fn write_files(&self, files: &Files) {
        for (path, content) in files {
            let p = self.repo.join(path);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&p, content).expect("write file");
        }
    }

    pub fn remove_files(&self, paths: &[&str]) {
        for p in paths {
            std::fs::remove_file(self.repo.join(p)).unwrap_or_else(|e| panic!("remove {p}: {e}"));
        }
    }

    /// Commits everything in the work tree; returns the commit sha.
    pub fn commit(&self, message: &str) -> String {
        git(&self.repo, &["add", "-A"]);
        git(&self.repo, &["commit", "-q", "-m", message]);
        git(&self.repo, &["rev-parse", "HEAD"])
    }

    pub fn head(&self) -> String {
        git(&self.repo, &["rev-parse", "HEAD"])
    }

    /// Starts the daemon and waits until the first commit (the head) is Synced and Healthy,
    /// within `timeout`: `Fixture::new(..).started(FIRST_SYNC).await`. Returns the fixture
    /// and that commit.
    pub async fn started(mut self, timeout: Duration) -> (Fixture, String) {
        self.start();
        let first = self.head();
        self.wait_synced_healthy(&first, timeout).await;
        (self, first)
    }

    /// Starts `gitopsd --log-format json run` and waits for its status endpoint.
    pub fn start(&mut self) {
        assert!(self.daemon.is_none(), "a daemon is already running");
        let n = self.old_logs.len();
        let log = self.dir.path().join(format!("gitopsd-{n}.log"));
        let workdir = self.dir.path().join("workdir");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_gitopsd"))
            .args(["--log-format", "json", "run", "--config"])
            .arg(&self.config)
            .arg("--kubeconfig")
            .arg(support::kubeconfig())
            .arg("--workdir")
            .arg(&workdir)
            .current_dir(self.dir.path())
            .env_remove("GITOPSD_CONFIG")
            .env_remove("GITOPSD_KUSTOMIZE")
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start gitopsd");
        let mut daemon = Daemon {
            child,
            log,
            port: self.port,
        };
        support::eventually_blocking(
            &format!("gitopsd to listen on {}", self.port),
            Duration::from_secs(30),
            || {
                if let Ok(Some(status)) = daemon.child.try_wait() {
                    panic!(
                        "gitopsd exited ({status}) before listening: {}",
                        daemon.log_tail(60)
                    );
                }
                TcpStream::connect(("127.0.0.1", self.port))
                    .map(drop)
                    .map_err(|e| format!("{e}; log: {}", daemon.log_tail(60)))
            },
        );
        self.daemon = Some(daemon);
    }

    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("the daemon is running")
    }

    /// Kills the daemon with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.child.kill();
            let _ = d.child.wait();
            self.old_logs.push(d.log.clone());
        }
    }

    /// Sends SIGTERM; waits up to `within` for the exit and returns its status.
    pub fn terminate(&mut self, within: Duration) -> Result<ExitStatus, String> {
        let d = self.daemon.as_mut().expect("the daemon is running");
        let pid = d.child.id().to_string();
        let out = Command::new("kill")
            .args(["-TERM", &pid])
            .output()
            .expect("run kill");
        assert!(out.status.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = d.child.try_wait().expect("wait for gitopsd") {
                let d = self.daemon.take().expect("the daemon");
                self.old_logs.push(d.log.clone());
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "gitopsd did not exit within {within:?} of SIGTERM: {}",
                    d.log_tail(40)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET /api/v1/tiers/<tier>, parsed.
    pub fn status(&self) -> Value {
        let (code, body) = http_get(self.port, &format!("/api/v1/tiers/{}", self.tier))
            .unwrap_or_else(|e| panic!("GET status: {e}"));
        assert_eq!(code, 200, "GET status answered {code}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("status is not JSON ({e}): {body}"))
    }

    /// Polls the status until `check` returns `Some`; panics naming `what` and the last status.
    pub async fn wait_status<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let mut last = Value::Null;
        support::eventually_or(what, timeout, || {
            if let Ok((200, body)) = http_get(self.port, &format!("/api/v1/tiers/{}", self.tier))
                && let Ok(v) = serde_json::from_str::<Value>(&body)
            {
                last = v;
            }
            let found = check(&last).ok_or_else(|| brief_status(&last));
            std::future::ready(found)
        })
        .await
    }

    /// The Events gitopsd recorded about this tier (regarding its state ConfigMap) with
    /// `reason`, as listed now (an empty list when the list fails).
    pub async fn state_events(
        &self,
        client: &kube::Client,
        reason: &str,
    ) -> Vec<k8s_openapi::api::events::v1::Event> {
        let api: kube::Api<k8s_openapi::api::events::v1::Event> =
            kube::Api::namespaced(client.clone(), &self.state_ns);
        let regarding = gitopsd::state::StateStore::config_map_name(&self.tier);
        let Ok(list) = api.list(&kube::api::ListParams::default()).await else {
            return Vec::new();
        };
        list.items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding.as_str())
            })
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect()
    }

    /// Waits until `n` reconciles of the tier that started after this call have finished (as
    /// the status's `lastReconcileAt` tells), and returns the status then. A negative assertion
    /// ("X did not happen") waits for this first: the daemon had its chances to do X.
    pub async fn wait_reconciles(&self, n: usize, timeout: Duration) -> Value {
        wait_timestamps(
            &format!("{n} more reconciles of tier {}", self.tier),
            "/lastReconcileAt",
            n,
            timeout,
            || self.status(),
        )
        .await
    }

    /// The daemon's /metrics: each series (name and labels, as written there) and its value.
    pub fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        let (code, body) =
            http_get(self.port, "/metrics").unwrap_or_else(|e| panic!("GET /metrics: {e}"));
        assert_eq!(code, 200, "GET /metrics answered {code}: {body}");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, n) = l.rsplit_once(' ')?;
                Some((series.to_owned(), n.parse().ok()?))
            })
            .collect()
    }

    /// Waits until the tier is Synced and Healthy at `revision`.
    pub async fn wait_synced_healthy(&self, revision: &str, timeout: Duration) -> Value {
        self.wait_status(&format!("Synced + Healthy at {revision}"), timeout, |s| {
            (s["revision"] == revision && s["sync"] == "Synced" && s["health"] == "Healthy")
                .then(|| s.clone())
        })
        .await
    }
}

/// Polls `status` until the timestamp at `pointer` in it (e.g. `/lastReconcileAt`, or
/// `/source/lastFetchAt`) has taken `n` different values later than the call, i.e. `n` of the
/// events it records began after the call; returns the status then. Values are compared, not
/// durations: a missed poll only makes the wait longer.
pub async fn wait_timestamps(
    what: &str,
    pointer: &str,
    n: usize,
    timeout: Duration,
    mut status: impl FnMut() -> Value,
) -> Value {
    let since = chrono::Utc::now();
    let mut seen = std::collections::BTreeSet::new();
    support::eventually_every(what, timeout, Duration::from_millis(100), || {
        let s = status();
        if let Some(at) = s
            .pointer(pointer)
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            && at > since
        {
            seen.insert(at);
        }
        let done = if seen.len() >= n {
            Ok(s)
        } else {
            Err(format!(
                "{} of {n} since {since}; status {}",
                seen.len(),
                brief_status(&s)
            ))
        };
        std::future::ready(done)
    })
    .await
}

/// The status without its history (which is long), for assertion messages.
pub fn brief_status(s: &Value) -> String {
    let mut s = s.clone();
    if let Some(o) = s.as_object_mut()
        && let Some(n) = o.get("history").and_then(Value::as_array).map(Vec::len)
    {
        o.insert("history".into(), Value::String(format!("({n} records)")));
    }
    serde_json::to_string_pretty(&s).unwrap_or_default()
}

/// Every sync record in the status, oldest first: the history (whose last entry is
/// lastSync), or lastSync alone when there is no history.
pub fn records(s: &Value) -> Vec<Value> {
    match s["history"].as_array() {
        Some(h) if !h.is_empty() => h.clone(),
        _ if !s["lastSync"].is_null() => vec![s["lastSync"].clone()],
        _ => Vec::new(),
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if let Some(mut d) = self.daemon.take() {
            let _ = d.child.kill();
            let _ = d.child.wait();
            self.old_logs.push(d.log.clone());
        }
        if failed {
            for log in &self.old_logs {
                eprintln!(
                    "--- gitopsd log {} (tier {}), last lines ---\n{}",
                    log.display(),
                    self.tier,
                    tail(log, 80)
                );
            }
        }
        // Delete the tier's namespace, its state namespace, and nothing else. A thread of its
        // own: the test's runtime may be the one dropping us.
        let names = [self.tier.clone(), self.state_ns.clone()];
        support::cleanup_blocking(move |client| async move {
            let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
            for n in names {
                let _ = api.delete(&n, &kube::api::DeleteParams::background()).await;
            }
        });
    }
}

pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub port: u16,
}

impl Daemon {
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

pub fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A minimal HTTP/1.1 GET: the status code and the body (`Connection: close`, so the body is
/// everything after the headers; a chunked body is decoded).
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    http_request(port, "GET", path, &[], b"")
}

/// A minimal HTTP/1.1 request with `headers` and `body` (its Content-Length added unless
/// `headers` has one): the status code and the body, as [`http_get`].
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    if method != "GET"
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head += &format!("Content-Length: {}\r\n", body.len());
    }
    head += "\r\n";
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {text:?}"))?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status code in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok((code, body))
}

fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body
            .split_once("\r\n")
            .ok_or_else(|| "truncated chunk".to_owned())?;
        let size = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
        if size == 0 {
            return Ok(out);
        }
        out += rest.get(..size).ok_or_else(|| "short chunk".to_owned())?;
        body = rest.get(size + 2..).unwrap_or("");
    }
}
