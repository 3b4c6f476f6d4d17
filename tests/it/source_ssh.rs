//! The source stage over `ssh://`, against Debian's sshd started by the test on a loopback port
//! with its own host key and authorized_keys: the right key, a wrong key, a wrong host key.

use crate::git_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use git_support::{Server, Upstream, free_port, run, ssh_keygen};
use gitopsd::config::{GitAuth, SourceConfig};
use gitopsd::source::{FetchOutcome, RefUpdate, Source, SourceError};

struct SshFixture {
    dir: tempfile::TempDir,
    port: u16,
    upstream: Upstream,
    _server: Server,
}

fn keygen(dir: &Path, name: &str) -> PathBuf {
    ssh_keygen(dir, name, name)
}

fn public_key(path: &Path) -> String {
    std::fs::read_to_string(path.with_extension("pub")).expect("read public key")
}

impl SshFixture {
    fn start() -> SshFixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let host_key = keygen(d, "host_key");
        let client = keygen(d, "client_key");
        std::fs::write(d.join("authorized_keys"), public_key(&client)).expect("authorized_keys");
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
             StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n",
            host_key.display(),
            d.join("authorized_keys").display(),
            d.join("sshd.pid").display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        // sshd insists on its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let mut cmd = Command::new("/usr/sbin/sshd");
        cmd.arg("-D").arg("-e").arg("-f").arg(d.join("sshd_config"));
        let server = Server::start(cmd, port, d.join("sshd.log"));
        let upstream = Upstream::new(&d.join("srv"), "config.git");
        SshFixture {
            dir,
            port,
            upstream,
            _server: server,
        }
    }

    fn url(&self) -> String {
        let user = run(self.dir.path(), "id", &["-un"]);
        format!(
            "ssh://{user}@127.0.0.1:{}{}",
            self.port,
            self.upstream.bare.display()
        )
    }

    fn known_hosts(&self, host_pub: &str) -> PathBuf {
        let mut fields = host_pub.split_whitespace();
        let (kind, key) = (
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        let path = self
            .dir
            .path()
            .join(format!("known_hosts.{}", fastrand_name()));
        std::fs::write(&path, format!("[127.0.0.1]:{} {kind} {key}\n", self.port))
            .expect("known_hosts");
        path
    }

    fn source(&self, key: &Path, known_hosts: &Path) -> (tempfile::TempDir, Source) {
        let config = SourceConfig {
            url: self.url().parse().expect("url"),
            auth: GitAuth {
                token_file: None,
                ssh_key_file: Some(key.to_owned()),
                known_hosts_file: Some(known_hosts.to_owned()),
            },
            interval: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(60),
            webhook_secret_file: None,
            publish_healthy: false,
            export_limits: Default::default(),
        };
        let work = tempfile::tempdir().expect("temp dir");
        let source = Source::new(&config, work.path().to_owned()).expect("source");
        (work, source)
    }
}

fn fastrand_name() -> String {
    format!(
        "{:x}",
        std::process::id() as u64
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
    )
}

fn main_update(out: &FetchOutcome) -> RefUpdate {
    match out.get("main") {
        Some(Ok(u)) => *u,
        other => panic!("main: {other:?}"),
    }
}

#[test]
fn ssh_remote_with_the_right_key_fetches_shallow_and_tells_fast_forward_from_force_push() {
    let fx = SshFixture::start();
    let up = &fx.upstream;
    // A history deeper than one commit, to see that only the tip comes over.
    for i in 0..5 {
        up.commit("x.yaml", &format!("v: {i}\n"));
    }
    let a = up.commit("x.yaml", "v: a\n");
    up.push("main");
    let known = fx.known_hosts(&public_key(&fx.dir.path().join("host_key")));
    let (work, mut source) = fx.source(&fx.dir.path().join("client_key"), &known);

    let first = main_update(
        &source
            .fetch(&["main".into()])
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(first.commit.to_string(), a);
    let mirror = git2::Repository::open_bare(work.path().join("mirror")).expect("mirror");
    assert!(mirror.is_shallow(), "the mirror holds only the tip");

    let b = up.commit("x.yaml", "v: b\n");
    let c = up.commit("x.yaml", "v: c\n");
    up.push("main");
    let ff = main_update(&source.fetch(&["main".into()]).expect("fetch"));
    assert_eq!(ff.commit.to_string(), c);
    assert!(
        ff.changed && !ff.rewrite,
        "two commits on top are a fast-forward: {ff:?}"
    );

    up.reset_hard(&b);
    let d = up.commit("x.yaml", "v: d\n");
    up.push("+main");
    let rw = main_update(&source.fetch(&["main".into()]).expect("fetch"));
    assert_eq!(rw.commit.to_string(), d);
    assert!(
        rw.changed && rw.rewrite,
        "a force-push is a rewrite: {rw:?}"
    );
}

#[test]
fn ssh_remote_refuses_a_wrong_key_and_names_the_url() {
    let fx = SshFixture::start();
    fx.upstream.commit("x.yaml", "v: a\n");
    fx.upstream.push("main");
    let wrong = keygen(fx.dir.path(), "wrong_key");
    let known = fx.known_hosts(&public_key(&fx.dir.path().join("host_key")));
    let (_work, mut source) = fx.source(&wrong, &known);
    let err = source
        .fetch(&["main".into()])
        .expect_err("a wrong key must be refused");
    assert!(matches!(err, SourceError::AuthRefused { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{} refused the credentials while fetching main",
            fx.url()
        )),
        "{msg}"
    );
    assert_eq!(source.last_good("main"), None);
}

#[test]
fn ssh_remote_with_a_wrong_host_key_is_refused_naming_the_host() {
    let fx = SshFixture::start();
    fx.upstream.commit("x.yaml", "v: a\n");
    fx.upstream.push("main");
    let other = keygen(fx.dir.path(), "other_host_key");
    let known = fx.known_hosts(&public_key(&other));
    let (_work, mut source) = fx.source(&fx.dir.path().join("client_key"), &known);
    let err = source
        .fetch(&["main".into()])
        .expect_err("a wrong host key must be refused");
    assert_eq!(
        err.to_string(),
        format!(
            "ssh host key of 127.0.0.1 ({}) ([127.0.0.1]:{}) does not match known_hosts: the server offers a different key; fetch of main refused",
            fx.url(),
            fx.port
        )
    );
}

#[test]
fn ssh_follows_a_commit_that_is_no_branch_tip_beside_a_branch_in_the_same_fetch() {
    let fx = SshFixture::start();
    let up = &fx.upstream;
    for i in 0..3 {
        up.commit("x.yaml", &format!("v: {i}\n"));
    }
    // sshd's git-upload-pack refuses a want that is no advertised tip: the commit must come
    // as history of a branch.
    let older = up.commit("x.yaml", "v: older\n");
    let tip = up.commit("x.yaml", "v: tip\n");
    up.push("main");
    let known = fx.known_hosts(&public_key(&fx.dir.path().join("host_key")));
    let (_work, mut source) = fx.source(&fx.dir.path().join("client_key"), &known);

    let wanted = vec!["main".to_owned(), older.clone()];
    let out = source.fetch(&wanted).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(main_update(&out).commit.to_string(), tip);
    match out.get(&older) {
        Some(Ok(u)) => assert_eq!(u.commit.to_string(), older),
        other => panic!("{older}: {other:?}"),
    }
    assert_eq!(
        source.last_good(&older).map(|o| o.to_string()),
        Some(older.clone())
    );

    // The second time the mirror has it: nothing moved.
    let again = source.fetch(&wanted).expect("second fetch");
    for r in &wanted {
        match again.get(r) {
            Some(Ok(u)) => assert!(!u.changed, "{r}: {u:?}"),
            other => panic!("{r}: {other:?}"),
        }
    }
}

#[test]
fn ssh_a_commit_that_exists_nowhere_fails_only_its_own_ref() {
    let fx = SshFixture::start();
    let tip = fx.upstream.commit("x.yaml", "v: a\n");
    fx.upstream.push("main");
    let known = fx.known_hosts(&public_key(&fx.dir.path().join("host_key")));
    let (_work, mut source) = fx.source(&fx.dir.path().join("client_key"), &known);
    let nowhere = "0123456789abcdef0123456789abcdef01234567";

    let out = source
        .fetch(&["main".into(), nowhere.into()])
        .unwrap_or_else(|e| panic!("the branch must still be fetched: {e}"));
    assert_eq!(main_update(&out).commit.to_string(), tip);
    match out.get(nowhere) {
        Some(Err(e @ SourceError::CommitNotReachable { .. })) => {
            let msg = e.to_string();
            assert!(msg.contains(nowhere) && msg.contains(&fx.url()), "{msg}");
        }
        other => panic!("{nowhere}: {other:?}"),
    }
    assert_eq!(source.last_good(nowhere), None);
}
