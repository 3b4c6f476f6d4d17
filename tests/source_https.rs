//! The source stage over `https://`, against `git http-backend` behind Debian's lighttpd on a
//! loopback port, TLS with a CA made by the test, and a token checked by the web server.
//!
//! One test in this binary on purpose: the test CA reaches libgit2's OpenSSL through
//! `SSL_CERT_FILE`, which must be set before the first git2 call in the process.

mod git_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use git_support::{Server, Upstream, free_port, run};
use gitopsd::config::{GitAuth, SourceConfig};
use gitopsd::source::{Source, SourceError};

const TOKEN: &str = "t0ken-for-the-test";

fn make_certs(d: &Path) {
    run(
        d,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=gitopsd test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    run(
        d,
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        d.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("san");
    run(
        d,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

fn source(url: &str, token_file: &Path) -> (tempfile::TempDir, Source) {
    let config = SourceConfig {
        url: url.parse().expect("url"),
        auth: GitAuth {
            token_file: Some(token_file.to_owned()),
            ssh_key_file: None,
            known_hosts_file: None,
        },
        interval: Duration::from_secs(60),
        webhook_secret_file: None,
    };
    let work = tempfile::tempdir().expect("temp dir");
    let s = Source::new(&config, work.path().to_owned()).expect("source");
    (work, s)
}

#[test]
fn https_remote_with_the_right_token_fetches_shallow_and_a_wrong_token_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    make_certs(d);
    // SAFETY: the only test of this binary, before any git2 call; no other thread reads the
    // environment yet.
    unsafe { std::env::set_var("SSL_CERT_FILE", d.join("ca.pem")) };

    let repos = d.join("repos");
    let up = Upstream::new(&repos, "config.git");
    for i in 0..3 {
        up.commit("x.yaml", &format!("v: {i}\n"));
    }
    let a = up.commit("x.yaml", "v: a\n");
    up.push("main");
    std::fs::write(d.join("users"), format!("x-access-token:{TOKEN}\n")).expect("users");
    let port = free_port();
    let conf = format!(
        r#"server.document-root = "{d}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{d}/lighttpd-error.log"
server.modules = ("mod_alias", "mod_auth", "mod_authn_file", "mod_cgi", "mod_setenv", "mod_openssl")
ssl.engine = "enable"
ssl.pemfile = "{d}/server.pem"
ssl.privkey = "{d}/server.key"
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
        repos = repos.display()
    );
    std::fs::write(d.join("lighttpd.conf"), conf).expect("lighttpd.conf");
    let mut cmd = Command::new("/usr/sbin/lighttpd");
    cmd.arg("-D").arg("-f").arg(d.join("lighttpd.conf"));
    let server = Server::start(cmd, port, d.join("lighttpd.log"));
    let url = format!("https://127.0.0.1:{port}/git/config.git");

    // The right token: the tip only, over TLS checked against the test CA.
    let good = d.join("token");
    std::fs::write(&good, format!("{TOKEN}\n")).expect("token");
    let (work, mut s) = source(&url, &good);
    let out = s.fetch(&["main".into()]).unwrap_or_else(|e| {
        panic!(
            "{e}\nlighttpd: {}",
            std::fs::read_to_string(d.join("lighttpd-error.log")).unwrap_or_default()
        )
    });
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
    let (_work2, mut s2) = source(&url, &bad);
    let err = s2
        .fetch(&["main".into()])
        .expect_err("a wrong token must be refused");
    assert!(matches!(err, SourceError::AuthRefused { .. }), "{err:?}");
    let msg = format!("{err} {err:?}");
    assert!(msg.contains(&url), "{msg}");
    assert!(
        !msg.contains("not-the-token") && !msg.contains(TOKEN),
        "{msg}"
    );
    drop(server);
}
