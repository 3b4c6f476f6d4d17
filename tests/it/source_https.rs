//! The source stage over `https://`, against `git http-backend` behind Debian's lighttpd on a
//! loopback port, TLS with a CA made by the test, and a token checked by the web server.
//!
//! The test CA reaches libgit2's OpenSSL through `SSL_CERT_FILE`, which must be set before the
//! first git2 call in the process: one CA and server certificate serve every test of this
//! binary, made and announced once ([`certs`]) before any test touches git2.

use crate::git_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use git_support::{Server, Upstream, free_port, tls_certs};
use gitopsd::config::{GitAuth, SourceConfig};
use gitopsd::source::{Source, SourceError};

const TOKEN: &str = "t0ken-for-the-test";

fn source(url: &str, token_file: &Path) -> (tempfile::TempDir, Source) {
    let config = SourceConfig {
        url: url.parse().expect("url"),
        auth: GitAuth {
            token_file: Some(token_file.to_owned()),
            ssh_key_file: None,
            known_hosts_file: None,
        },
        interval: Duration::from_secs(60),
        fetch_timeout: Duration::from_secs(60),
        webhook_secret_file: None,
        publish_healthy: false,
        export_limits: Default::default(),
    };
    let work = tempfile::tempdir().expect("temp dir");
    let s = Source::new(&config, work.path().to_owned()).expect("source");
    (work, s)
}

/// An upstream served by lighttpd + `git http-backend` over TLS, behind a token.
struct HttpsFixture {
    dir: tempfile::TempDir,
    url: String,
    upstream: Upstream,
    /// A file holding the right token.
    token: PathBuf,
    server: Server,
}

impl HttpsFixture {
    fn start() -> HttpsFixture {
        let certs = tls_certs();
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let repos = d.join("repos");
        let upstream = Upstream::new(&repos, "config.git");
        std::fs::write(d.join("users"), format!("x-access-token:{TOKEN}\n")).expect("users");
        let port = free_port();
        let conf = format!(
            r#"server.document-root = "{d}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{d}/lighttpd-error.log"
server.modules = ("mod_alias", "mod_auth", "mod_authn_file", "mod_cgi", "mod_setenv", "mod_openssl")
ssl.engine = "enable"
ssl.pemfile = "{certs}/server.pem"
ssl.privkey = "{certs}/server.key"
auth.backend = "plain"
auth.backend.plain.userfile = "{d}/users"
auth.require = ( "/git" => ( "method" => "basic", "realm" => "git", "require" => "valid-user" ) )
alias.url = ( "/git" => "/usr/lib/git-core/git-http-backend" )
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ( "" => "" )
  setenv.add-environment = ( "GIT_PROJECT_ROOT" => "{repos}", "GIT_HTTP_EXPORT_ALL" => "" )
}}
"#,
            d = d.display(),
            certs = certs.display(),
            repos = repos.display()
        );
        std::fs::write(d.join("lighttpd.conf"), conf).expect("lighttpd.conf");
        let mut cmd = Command::new("/usr/sbin/lighttpd");
        cmd.arg("-D").arg("-f").arg(d.join("lighttpd.conf"));
        let server = Server::start(cmd, port, d.join("lighttpd.log"));
        let url = format!("https://127.0.0.1:{port}/git/config.git");
        let token = d.join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
        HttpsFixture {
            dir,
            url,
            upstream,
            token,
            server,
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("lighttpd-error.log")).unwrap_or_default()
    }
}

#[test]
fn https_remote_with_the_right_token_fetches_shallow_and_a_wrong_token_is_refused() {
    let fx = HttpsFixture::start();
    let (d, up, url) = (fx.dir.path(), &fx.upstream, &fx.url);
    for i in 0..3 {
        up.commit("x.yaml", &format!("v: {i}\n"));
    }
    let a = up.commit("x.yaml", "v: a\n");
    up.push("main");

    // The right token: the tip only, over TLS checked against the test CA.
    let (work, mut s) = source(url, &fx.token);
    let out = s
        .fetch(&["main".into()])
        .unwrap_or_else(|e| panic!("{e}\nlighttpd: {}", fx.error_log()));
    match out.get("main") {
        Some(Ok(u)) => assert_eq!(u.commit.to_string(), a),
        other => panic!("main: {other:?}"),
    }
    let mirror = git2::Repository::open_bare(work.path().join("mirror")).expect("mirror");
    assert!(mirror.is_shallow(), "the mirror holds only the tip");
    let b = up.commit("x.yaml", "v: b\n");
    up.push("main");
    match s.fetch(&["main".into()]).expect("second fetch").get("main") {
        Some(Ok(u)) => {
            assert_eq!(u.commit.to_string(), b);
            assert!(u.changed && !u.rewrite, "{u:?}");
        }
        other => panic!("main: {other:?}"),
    }

    // A wrong token: refused, the URL named, the token in no message.
    let bad = d.join("bad-token");
    std::fs::write(&bad, "not-the-token").expect("token");
    let (_work2, mut s2) = source(url, &bad);
    let err = s2
        .fetch(&["main".into()])
        .expect_err("a wrong token must be refused");
    assert!(matches!(err, SourceError::AuthRefused { .. }), "{err:?}");
    let msg = format!("{err} {err:?}");
    assert!(msg.contains(url.as_str()), "{msg}");
    assert!(
        !msg.contains("not-the-token") && !msg.contains(TOKEN),
        "{msg}"
    );
    drop(fx.server);
}

#[test]
fn https_follows_a_commit_that_is_no_branch_tip_beside_a_branch_in_the_same_fetch() {
    let fx = HttpsFixture::start();
    let up = &fx.upstream;
    for i in 0..3 {
        up.commit("x.yaml", &format!("v: {i}\n"));
    }
    // Plain git http-backend refuses a want that is no advertised tip: the commit must come
    // as history of a branch.
    let older = up.commit("x.yaml", "v: older\n");
    let tip = up.commit("x.yaml", "v: tip\n");
    up.push("main");
    let (_work, mut s) = source(&fx.url, &fx.token);

    let wanted = vec!["main".to_owned(), older.clone()];
    let out = s
        .fetch(&wanted)
        .unwrap_or_else(|e| panic!("{e}\nlighttpd: {}", fx.error_log()));
    match out.get("main") {
        Some(Ok(u)) => assert_eq!(u.commit.to_string(), tip),
        other => panic!("main: {other:?}"),
    }
    match out.get(&older) {
        Some(Ok(u)) => assert_eq!(u.commit.to_string(), older),
        other => panic!("{older}: {other:?}\nlighttpd: {}", fx.error_log()),
    }
    assert_eq!(
        s.last_good(&older).map(|o| o.to_string()),
        Some(older.clone())
    );
}

#[test]
fn https_a_commit_that_exists_nowhere_fails_only_its_own_ref() {
    let fx = HttpsFixture::start();
    let tip = fx.upstream.commit("x.yaml", "v: a\n");
    fx.upstream.push("main");
    let (_work, mut s) = source(&fx.url, &fx.token);
    let nowhere = "0123456789abcdef0123456789abcdef01234567";

    let out = s
        .fetch(&["main".into(), nowhere.into()])
        .unwrap_or_else(|e| panic!("the branch must still be fetched: {e}"));
    match out.get("main") {
        Some(Ok(u)) => assert_eq!(u.commit.to_string(), tip),
        other => panic!("main: {other:?}"),
    }
    match out.get(nowhere) {
        Some(Err(e @ SourceError::CommitNotReachable { .. })) => {
            let msg = format!("{e} {e:?}");
            assert!(msg.contains(nowhere) && msg.contains(&fx.url), "{msg}");
            assert!(!msg.contains(TOKEN), "{msg}");
        }
        other => panic!("{nowhere}: {other:?}"),
    }
    assert_eq!(s.last_good(nowhere), None);
}
