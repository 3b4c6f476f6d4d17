//! The everyday commands against a running daemon: `gitopsd sync` (the real binary, with the
//! API token) on the local cluster.

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
