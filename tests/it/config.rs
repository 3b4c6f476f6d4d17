//! The daemon's `--workdir` (issue 15, bug g), with the real binary: two daemons following the
//! same repository with the same workdir would share one mirror; the second is refused.

use crate::reconcile_support;
use crate::support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reconcile_support::{Fixture, IMAGE_1, TierExtra, base_files, free_port};

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_on_the_same_workdir_and_repo_is_refused_naming_the_mirror_and_the_fix() {
    let mut f = Fixture::new("workdir", base_files(IMAGE_1), TierExtra::default());
    f.start();
    let first_pid = f.daemon().child.id();
    let workdir = f.dir.path().join("workdir");
    // The same config but another status port, so only the workdir is shared.
    let text = std::fs::read_to_string(&f.config).expect("read gitopsd.yaml");
    let port = f.port.to_string();
    let other = f.dir.path().join("second.yaml");
    std::fs::write(&other, text.replace(&port, &free_port().to_string())).expect("write");

    let log = f.dir.path().join("second.log");
    let second = Command::new(env!("CARGO_BIN_EXE_gitopsd"))
        .args(["run", "--config"])
        .arg(&other)
        .arg("--kubeconfig")
        .arg(support::kubeconfig())
        .arg("--workdir")
        .arg(&workdir)
        .env_remove("GITOPSD_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start the second gitopsd");
    let mut second = KillOnDrop(second);
    // Not a bound on how fast it is refused: only so that a daemon that is not refused fails
    // the test instead of hanging it.
    let status = support::eventually("the second daemon exits", Duration::from_secs(120), || {
        let status = second.0.try_wait().expect("wait for the second daemon");
        async move { status }
    })
    .await;
    let stderr = std::fs::read_to_string(&log).expect("read the second daemon's log");
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&workdir.join("source").display().to_string())
            && stderr.contains(&format!("in use by process {first_pid}"))
            && stderr.contains("give each daemon its own --workdir"),
        "the error names the mirror, its holder and the fix: {stderr}"
    );
    assert!(
        f.daemon().child.try_wait().expect("wait").is_none(),
        "the first daemon keeps running"
    );
}

/// Two daemons sharing a workdir but following different repositories keep an audit log each,
/// beside their mirrors: neither chain is interleaved with the other (both appended to
/// `<workdir>/audit.log` before).
#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_sharing_a_workdir_with_different_repos_keep_an_audit_chain_each() {
    let sync = Duration::from_secs(120);
    let (a, _) = Fixture::new("audit-a", base_files(IMAGE_1), TierExtra::default())
        .started(sync)
        .await;
    let b = Fixture::new("audit-b", base_files(IMAGE_1), TierExtra::default());
    let workdir = a.dir.path().join("workdir");
    let log = b.dir.path().join("second.log");
    let second = Command::new(env!("CARGO_BIN_EXE_gitopsd"))
        .args(["run", "--config"])
        .arg(&b.config)
        .arg("--kubeconfig")
        .arg(support::kubeconfig())
        .arg("--workdir")
        .arg(&workdir)
        .env_remove("GITOPSD_CONFIG")
        .env_remove("GITOPSD_KUSTOMIZE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start the second gitopsd");
    let _second = KillOnDrop(second);
    b.wait_synced_healthy(&b.head(), sync).await;

    let logs: Vec<_> = std::fs::read_dir(workdir.join("source"))
        .expect("the workdir's sources")
        .map(|e| e.expect("a source directory").path().join("audit.log"))
        .collect();
    assert_eq!(logs.len(), 2, "one source directory per repo: {logs:?}");
    for (mine, other) in [(&a.tier, &b.tier), (&b.tier, &a.tier)] {
        // The writer thread appends a moment after the status is published.
        let path = support::eventually("each daemon's audit log", sync, || {
            let found = logs
                .iter()
                .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(mine.as_str())))
                .cloned();
            async move { found }
        })
        .await;
        let text = std::fs::read_to_string(&path).expect("read the audit log");
        assert!(
            !text.contains(other.as_str()),
            "{}: {mine}'s log holds {other}'s records",
            path.display()
        );
        let out = support::gitopsd(&["audit", "verify", path.to_str().expect("utf-8 path")]);
        assert!(
            out.status.success(),
            "{}: {}{}",
            path.display(),
            support::stdout(&out),
            support::stderr(&out)
        );
    }
}

/// Kills the child when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
