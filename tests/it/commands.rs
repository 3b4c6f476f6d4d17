//! The everyday commands as a user runs them (the real binary): `gitopsd sync` against a
//! daemon on the local cluster (with the API token), `status --watch` against a stand-in for
//! the status endpoint, `completions`.

use crate::reconcile_support;
use crate::support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use reconcile_support::{
    DaemonExtra, Fixture, IMAGE_1, IMAGE_2, TierExtra, base_files, deployment,
};
use support::{stderr, stdout};

/// A first sync on the local cluster (kwok pods become Ready in about a second).
const FIRST_SYNC: Duration = Duration::from_secs(45);

const TOKEN: &str = "api-token-for-command-tests";

/// The API token in `dir` (with a trailing newline, as `echo` writes it), and daemon settings
/// with a poll interval of an hour: only a sync request brings a commit in time.
fn with_token(dir: &Path) -> DaemonExtra {
    let token = dir.join("api-token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("write token");
    DaemonExtra {
        interval: "1h".into(),
        source: Vec::new(),
        http: vec![format!("tokenFile: {}", token.display())],
    }
}

/// `gitopsd ARGS` against the fixture's daemon, with `env` and without the caller's token.
fn cli(f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gitopsd"))
        .args(args)
        .env("GITOPSD_SERVER", format!("http://127.0.0.1:{}", f.port))
        .env("GITOPSD_LOG_FORMAT", "text")
        .env_remove("GITOPSD_TOKEN")
        .env_remove("GITOPSD_TOKEN_FILE")
        .envs(env.iter().copied())
        .output()
        .expect("run gitopsd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_asks_the_daemon_and_waits_for_the_result() {
    let secrets = tempfile::tempdir().expect("temp dir");
    let mut f = Fixture::with_daemon(
        "cmdsync",
        base_files(IMAGE_1),
        TierExtra::default(),
        with_token(secrets.path()),
    );
    let first = f.head();
    f.start();
    f.wait_synced_healthy(&first, FIRST_SYNC).await;
    let tier = f.tier.clone();
    let token_file = secrets.path().join("api-token");
    let token_file = token_file.to_str().expect("utf-8 path");

    // No token: the error names the flag and the variable.
    let out = cli(&f, &["sync", &tier], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--token-file FILE") && err.contains("GITOPSD_TOKEN"),
        "{err}"
    );
    // A wrong token: 401, and where the right one is.
    let out = cli(&f, &["sync", &tier], &[("GITOPSD_TOKEN", "wrong")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("refused the token (401)") && err.contains("http.tokenFile"),
        "{err}"
    );
    // An unknown tier: the tiers there are.
    let out = cli(
        &f,
        &["sync", "no-such-tier", "--token-file", token_file],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no tier \"no-such-tier\"") && err.contains(&tier),
        "{err}"
    );

    // A commit the daemon would see only in an hour: `sync --wait` returns once it is
    // deployed, and the status says so at that moment.
    f.write_files(&vec![(
        "base/deployment.yaml".to_owned(),
        deployment(IMAGE_2, false),
    )]);
    let second = f.commit("image 1.4.3");
    let out = cli(
        &f,
        &["sync", &tier, "--wait", "--token-file", token_file],
        &[("USER", "alice")],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.starts_with(&format!("tier {tier}: sync requested\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("tier {tier}: Synced, ")) && text.contains(&second[..7]),
        "{text}"
    );
    assert_eq!(
        f.status()["revision"],
        second.as_str(),
        "deployed when --wait returned"
    );
    let log = std::fs::read_to_string(&f.daemon().log).expect("read the log");
    assert!(log.contains("X-Gitopsd-User: alice"), "who asked is logged");

    // A commit that cannot be rendered: `sync --wait` exits 1 with the error.
    f.write_files(&vec![(
        "base/extra-3.yaml".to_owned(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra-3\ndata: [unclosed\n".to_owned(),
    )]);
    let broken = f.commit("broken yaml");
    let out = cli(&f, &["sync", &tier, "-w"], &[("GITOPSD_TOKEN", TOKEN)]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains(&format!("tier {tier}: Failed, ")), "{text}");
    assert!(text.contains("base/extra-3.yaml"), "{text}");
    assert_eq!(f.status()["sourceRevision"], broken.as_str());
}

/// A stand-in for the daemon's status endpoint: each answer is one tier whose last reconcile
/// is a second later than the one before (so every row printed by `--watch` is a new one), and
/// `Failed` from the third answer on.
fn changing_status_server() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => seen.extend_from_slice(&buf[..k]),
                }
            }
            let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z").expect("time")
                + chrono::Duration::seconds(n as i64);
            let body = serde_json::json!([{
                "tier": "watched", "revision": "0123456789abcdef", "health": "Healthy",
                "sync": if n >= 2 { "Failed" } else { "Synced" },
                "lastReconcileAt": at.to_rfc3339(), "lastError": null, "drift": null,
            }]);
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}"
            );
        }
    });
    port
}

fn spawn_watch(port: u16) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_gitopsd"))
        .args(["status", "--watch", "--interval", "100ms"])
        .env("GITOPSD_SERVER", format!("http://127.0.0.1:{port}"))
        .env("GITOPSD_LOG_FORMAT", "text")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run gitopsd status --watch")
}

#[test]
fn status_watch_prints_changed_rows_and_ends_cleanly_on_a_closed_pipe_or_ctrl_c() {
    use std::io::{BufRead, BufReader};
    let port = changing_status_server();

    // The header, then a row per answer (each one changed), until the reader goes away.
    let mut child = spawn_watch(port);
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut lines = Vec::new();
    while lines.len() < 5 {
        let mut line = String::new();
        assert!(out.read_line(&mut line).expect("read") > 0, "{lines:?}");
        lines.push(line);
    }
    assert!(lines[0].starts_with("TIER "), "{lines:?}");
    assert!(
        lines[1].starts_with("watched ") && lines[1].contains(" Synced "),
        "{lines:?}"
    );
    assert!(lines[4].contains(" Failed "), "{lines:?}");
    assert!(
        lines[2..].iter().all(|l| !l.starts_with("TIER")),
        "one header: {lines:?}"
    );
    drop(out);
    let status = child.wait().expect("wait");
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err);
    assert!(
        status.success(),
        "a closed pipe ends the watch cleanly: {status} {err}"
    );
    assert_eq!(err, "", "nothing said about the closed pipe");

    // Ctrl-C (SIGINT) ends it with 0 as well.
    let mut child = spawn_watch(port);
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    assert!(line.starts_with("TIER "), "{line}");
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(kill.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "Ctrl-C ends the watch cleanly: {status}");
}

#[test]
fn bash_completion_names_the_subcommands_and_parses() {
    let out = support::gitopsd(&["completions", "bash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = stdout(&out);
    for sub in [
        "run",
        "render",
        "validate",
        "diff",
        "status",
        "sync",
        "promote",
        "audit",
        "completions",
    ] {
        assert!(script.contains(&format!("gitopsd,{sub})")), "{sub} missing");
    }
    assert!(
        script.contains(
            "opts=\"-h -V --log-format --help --version run render validate diff status sync"
        ),
        "the top-level words"
    );
    assert!(script.contains("--watch"), "flags are completed too");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("gitopsd.bash");
    std::fs::write(&file, &script).expect("write script");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash -n");
    assert!(check.status.success(), "bash -n: {}", stderr(&check));
    for shell in ["zsh", "fish"] {
        let out = support::gitopsd(&["completions", shell]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
}
