//! Faults of the git server, against the real daemon (`gitopsd run` as a child process) on the
//! local cluster (issue 21, items 2 and 9):
//!
//! - a git server that accepts connections and then never answers: the fetch is given up at
//!   `source.fetchTimeout`, the status shows the stale source (`Failed`, `source.stale`,
//!   `source.fetchError`) instead of `Synced`, and once the server answers again the next
//!   commit is applied, although the hung connections stay open;
//! - SIGTERM stops a daemon whose fetch hangs, and it releases its leader Lease;
//! - a force-push of the followed branch back to an older commit is reported in the status,
//!   the metrics, the audit log and the Kubernetes Events.
//!
//! The hanging server is a TCP proxy in the test ([`Proxy`]): while "silent" it accepts each
//! connection and holds it open without a byte; while "answering" it passes connections on to
//! lighttpd + `git http-backend` over TLS (a CA made by the test, given to the daemon through
//! `SSL_CERT_FILE`), serving the fixture's repo.

use crate::git_support;
use crate::reconcile_support;
use crate::support;

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use git_support::{Server, free_port, tls_certs};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use reconcile_support::{
    DaemonExtra, Fixture, IMAGE_1, TierExtra, base_files, brief_status, configmap, git, http_get,
};
use serde_json::Value;

/// A first sync on the local cluster.
const FIRST_SYNC: Duration = Duration::from_secs(60);

/// lighttpd + `git http-backend` over TLS, serving the repositories under `root` (no auth).
fn git_https_server(root: &Path, scratch: &Path) -> (Server, u16) {
    let certs = tls_certs();
    let port = free_port();
    let conf = format!(
        r#"server.document-root = "{d}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{d}/lighttpd-error.log"
server.modules = ("mod_alias", "mod_cgi", "mod_setenv", "mod_openssl")
ssl.engine = "enable"
ssl.pemfile = "{certs}/server.pem"
ssl.privkey = "{certs}/server.key"
alias.url = ( "/git" => "/usr/lib/git-core/git-http-backend" )
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ( "" => "" )
  setenv.add-environment = ( "GIT_PROJECT_ROOT" => "{root}", "GIT_HTTP_EXPORT_ALL" => "" )
}}
"#,
        d = scratch.display(),
        certs = certs.display(),
        root = root.display()
    );
    std::fs::write(scratch.join("lighttpd.conf"), conf).expect("lighttpd.conf");
    let mut cmd = Command::new("/usr/sbin/lighttpd");
    cmd.arg("-D").arg("-f").arg(scratch.join("lighttpd.conf"));
    let server = Server::start(cmd, port, scratch.join("lighttpd.log"));
    (server, port)
}

/// A TCP proxy on a loopback port. Silent: accepts and holds every connection without a byte
/// (a git server that hangs instead of refusing). Answering: passes new connections on to
/// `backend`. Connections held while silent stay open and silent until the test ends: the
/// daemon must get past them by itself.
struct Proxy {
    port: u16,
    answering: Arc<AtomicBool>,
    /// Connections accepted while silent.
    hung: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(backend: u16, answering: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let proxy = Proxy {
            port,
            answering: Arc::new(AtomicBool::new(answering)),
            hung: Arc::default(),
            held: Arc::default(),
        };
        let (answering, hung, held) = (
            proxy.answering.clone(),
            proxy.hung.clone(),
            proxy.held.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if !answering.load(Ordering::SeqCst) {
                    hung.fetch_add(1, Ordering::SeqCst);
                    held.lock().expect("held").push(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", backend)) else {
                    continue;
                };
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        proxy
    }

    fn answer(&self, yes: bool) {
        self.answering.store(yes, Ordering::SeqCst);
    }

    fn hung(&self) -> usize {
        self.hung.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(held) = self.held.lock() {
            for c in held.iter() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Copies `from` to `to` on a thread of its own until either side closes.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// A fixture whose daemon fetches the repo over https through a [`Proxy`], with `source`
/// lines added to its config and `top` lines appended to it.
fn https_fixture(
    test: &str,
    source: &[&str],
    top: &str,
    answering: bool,
) -> (Fixture, Proxy, Server) {
    let f = Fixture::with_daemon(
        test,
        base_files(IMAGE_1),
        TierExtra::default(),
        DaemonExtra {
            source: source.iter().map(|s| (*s).to_owned()).collect(),
            ..DaemonExtra::default()
        },
    );
    let scratch = f.dir.path().join("lighttpd");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    let (server, backend) = git_https_server(f.dir.path(), &scratch);
    let proxy = Proxy::start(backend, answering);
    let config = std::fs::read_to_string(&f.config).expect("read gitopsd.yaml");
    let local = format!("url: {}\n", f.repo.display());
    assert!(config.contains(&local), "{config}");
    let config = config.replace(
        &local,
        &format!("url: https://127.0.0.1:{}/git/repo\n", proxy.port),
    ) + top;
    std::fs::write(&f.config, config).expect("write gitopsd.yaml");
    (f, proxy, server)
}

fn metric(text: &str, name: &str, tier: &str) -> Option<f64> {
    let prefix = format!("{name}{{tier=\"{tier}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn metrics(f: &Fixture) -> String {
    let (code, text) = http_get(f.port, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_server_that_hangs_is_given_up_shown_stale_and_the_next_commit_applies_when_it_answers()
 {
    let (mut f, proxy, _server) = https_fixture("hang", &["fetchTimeout: 3s"], "", true);
    let first = f.head();
    f.start();
    let s = f.wait_synced_healthy(&first, FIRST_SYNC).await;
    assert!(
        s["source"]["lastFetchAt"].is_string(),
        "{}",
        brief_status(&s)
    );
    assert_eq!(s["source"]["stale"], false);

    // The server stops answering, and a commit arrives meanwhile.
    proxy.answer(false);
    f.write_files(&vec![(
        "base/api-config.yaml".to_owned(),
        configmap("api-config", &[("changed", "while-the-server-hangs")]),
    )]);
    let second = f.commit("a change while the git server hangs");

    // No Synced over a source that does not answer: the fetch is given up at its deadline,
    // and after 3 intervals + the timeout the source is stale.
    let s = f
        .wait_status(
            "a Failed tier with a stale source",
            Duration::from_secs(60),
            |s| {
                (s["sync"] == "Failed"
                    && s["source"]["stale"] == true
                    && s["source"]["fetchError"]
                        .as_str()
                        .is_some_and(|e| e.contains("source.fetchTimeout")))
                .then(|| s.clone())
            },
        )
        .await;
    assert_eq!(s["revision"], first.as_str(), "{}", brief_status(&s));
    let error = s["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("source stale"), "{}", brief_status(&s));
    let last_fetch: chrono::DateTime<chrono::Utc> = s["source"]["lastFetchAt"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("lastFetchAt: {}", brief_status(&s)));
    assert!(
        chrono::Utc::now() - last_fetch > chrono::TimeDelta::seconds(6),
        "the last good fetch is older than the stale limit: {}",
        brief_status(&s)
    );
    support::eventually(
        "the fetch retried after the backoff",
        Duration::from_secs(30),
        || async { (proxy.hung() >= 2).then_some(()) },
    )
    .await;
    let text = metrics(&f);
    assert_eq!(
        metric(&text, "gitopsd_source_stale", &f.tier),
        Some(1.0),
        "{text}"
    );
    assert_eq!(metric(&text, "gitopsd_tier_synced", &f.tier), Some(0.0));
    let at = metric(
        &text,
        "gitopsd_source_last_fetch_timestamp_seconds",
        &f.tier,
    )
    .expect("the last fetch time per tier");
    assert!(
        (at - last_fetch.timestamp() as f64).abs() < 2.0,
        "{at} vs {last_fetch}"
    );

    // The server answers again; the connections it held stay open and silent. The next
    // fetch after the backoff gets through, and the commit is applied.
    proxy.answer(true);
    let s = f
        .wait_synced_healthy(&second, Duration::from_secs(90))
        .await;
    assert_eq!(s["source"]["stale"], false, "{}", brief_status(&s));
    assert!(s["source"]["fetchError"].is_null(), "{}", brief_status(&s));
    let text = metrics(&f);
    assert_eq!(metric(&text, "gitopsd_source_stale", &f.tier), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_daemon_stuck_in_a_hung_fetch_and_releases_its_lease() {
    let client = support::client().await;
    let lease = format!("faults-git-{}", reconcile_support::random_suffix());
    // A deadline far beyond the test: only the shutdown may end the fetch.
    let (mut f, proxy, _server) = https_fixture(
        "sigterm",
        &["fetchTimeout: 1h"],
        &format!("leaderElection:\n  enabled: true\n  leaseName: {lease}\n"),
        false,
    );
    f.start();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &f.state_ns);
    let holder = |l: Option<Lease>| {
        l.and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
    };
    support::eventually("the Lease held", Duration::from_secs(30), || async {
        holder(leases.get_opt(&lease).await.ok().flatten())
    })
    .await;
    support::eventually(
        "a fetch hanging on the server",
        Duration::from_secs(30),
        || async { (proxy.hung() >= 1).then_some(()) },
    )
    .await;

    // Generous: the shutdown grace for applies is 25 s, and nothing applies here.
    let status = f
        .terminate(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "gitopsd exited with {status}");
    let l = leases.get_opt(&lease).await.expect("read the Lease");
    assert_eq!(holder(l), None, "the Lease is released on the way out");
    let _ = leases.delete(&lease, &Default::default()).await;
}

fn audit_lines(path: &Path) -> Vec<Value> {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_push_back_to_an_older_commit_is_reported_in_status_metrics_audit_and_events() {
    let client = support::client().await;
    let (f, first) = Fixture::new("rewrite", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;
    f.write_files(&vec![(
        "base/api-config.yaml".to_owned(),
        configmap("api-config", &[("release", "two")]),
    )]);
    let second = f.commit("the second release");
    let s = f
        .wait_synced_healthy(&second, Duration::from_secs(45))
        .await;
    assert_eq!(s["source"]["rewrites"], 0, "{}", brief_status(&s));

    // Force-push main back to the first commit: `git reset --hard` on the followed repo.
    git(&f.repo, &["reset", "-q", "--hard", &first]);
    let s = f.wait_synced_healthy(&first, Duration::from_secs(45)).await;
    let source = &s["source"];
    assert_eq!(source["rewrites"], 1, "{}", brief_status(&s));
    assert_eq!(source["lastRewrite"]["gitRef"], "main");
    assert_eq!(source["lastRewrite"]["from"], second.as_str());
    assert_eq!(source["lastRewrite"]["to"], first.as_str());
    assert!(source["lastRewrite"]["at"].is_string());

    let text = metrics(&f);
    assert_eq!(
        metric(&text, "gitopsd_source_rewrites_total", &f.tier),
        Some(1.0),
        "{text}"
    );

    let audit = support::audit_log_in(&f.dir.path().join("workdir"));
    let line = support::eventually(
        "the rewrite in the audit log",
        Duration::from_secs(20),
        || {
            let found = audit_lines(&audit)
                .into_iter()
                .find(|l| l["event"] == "history-rewritten");
            async move { found }
        },
    )
    .await;
    assert_eq!(line["tier"], f.tier.as_str(), "{line}");
    assert_eq!(line["ref"], "main", "{line}");
    assert_eq!(line["from"], second.as_str(), "{line}");
    assert_eq!(line["to"], first.as_str(), "{line}");

    let events: Api<Event> = Api::namespaced(client.clone(), &f.state_ns);
    let regarding = gitopsd::state::StateStore::config_map_name(&f.tier);
    let event = support::eventually("a HistoryRewritten Event", Duration::from_secs(30), || {
        let (events, regarding) = (events.clone(), regarding.clone());
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("HistoryRewritten")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                            == Some(regarding.as_str())
                })
        }
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("main") && note.contains(&second[..7]) && note.contains(&first[..7]),
        "{note}"
    );
}

/// libgit2 itself gives up on a server that accepts and never answers (its read timeout, set
/// from `source.fetchTimeout`), so an abandoned fetch thread comes back by itself. The only
/// `Source` made in this test process: the timeouts are process-wide, set by the first one.
#[test]
fn a_fetch_from_a_silent_server_fails_by_itself_at_the_read_timeout() {
    tls_certs();
    let proxy = Proxy::start(free_port(), false);
    let config = gitopsd::config::SourceConfig {
        url: format!("https://127.0.0.1:{}/git/repo", proxy.port)
            .parse()
            .expect("url"),
        auth: Default::default(),
        interval: Duration::from_secs(60),
        fetch_timeout: Duration::from_secs(2),
        webhook_secret_file: None,
        publish_healthy: false,
        export_limits: Default::default(),
    };
    let work = tempfile::tempdir().expect("temp dir");
    let mut source = gitopsd::source::Source::new(&config, work.path().to_owned()).expect("source");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(source.fetch(&["main".to_owned()]).map(|_| ()));
    });
    // Generous: the read timeout is 2 s.
    let result = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the fetch returns by itself");
    let err = result.expect_err("a silent server cannot answer");
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{}", proxy.port)), "{msg}");
    assert!(proxy.hung() >= 1);
}
