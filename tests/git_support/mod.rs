//! Shared by the source transport tests: upstream repositories made with the git CLI, free
//! loopback ports, and servers started (and killed on drop) by the test.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support;

pub fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap_or_else(|e| {
            panic!("run {program} {args:?}: {e} (scripts/install-deps.sh installs it)")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare repository at `bare` and a working clone the test commits in and pushes from.
pub struct Upstream {
    pub bare: PathBuf,
    pub work: PathBuf,
}

impl Upstream {
    pub fn new(root: &Path, name: &str) -> Upstream {
        let bare = root.join(name);
        let work = root.join(format!("{name}.work"));
        std::fs::create_dir_all(root).expect("mkdir");
        run(root, "git", &["init", "-q", "--bare", "-b", "main", name]);
        run(
            root,
            "git",
            &["init", "-q", "-b", "main", &work.to_string_lossy()],
        );
        run(
            &work,
            "git",
            &["remote", "add", "origin", &bare.to_string_lossy()],
        );
        Upstream { bare, work }
    }

    pub fn commit(&self, file: &str, content: &str) -> String {
        std::fs::write(self.work.join(file), content).expect("write file");
        run(&self.work, "git", &["add", "-A"]);
        run(
            &self.work,
            "git",
            &["commit", "-q", "-m", &format!("change {file}")],
        );
        run(&self.work, "git", &["rev-parse", "HEAD"])
    }

    pub fn push(&self, spec: &str) {
        run(
            &self.work,
            "git",
            &["push", "-q", "--force", "origin", spec],
        );
    }

    pub fn reset_hard(&self, commit: &str) {
        run(&self.work, "git", &["reset", "-q", "--hard", commit]);
    }
}

/// An ed25519 key pair without a passphrase, made with ssh-keygen: `dir/name` and
/// `dir/name.pub`, with `comment` in the public key.
pub fn ssh_keygen(dir: &Path, name: &str, comment: &str) -> PathBuf {
    let path = dir.join(name);
    run(
        dir,
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            comment,
            "-f",
            &path.to_string_lossy(),
        ],
    );
    path
}

/// Ports handed out below Linux's ephemeral range (32768-60999): a port the kernel picked for
/// `bind(0)` is released before the server binds it, and in that gap any outgoing connection
/// (the daemons' own, to the API server) may take it as its local port. Below the range only
/// another test asks for it, and one process never hands the same port out twice.
const TEST_PORTS: std::ops::Range<u32> = 20000..32000;

pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = TEST_PORTS.end - TEST_PORTS.start;
    // Two test processes at once (a developer's run beside CI's) start far apart.
    let offset = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(TEST_PORTS.start + (offset + n) % span) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {TEST_PORTS:?}")
}

/// A server process, killed when the test ends however it ends.
pub struct Server {
    pub child: Child,
    pub log: PathBuf,
}

impl Server {
    /// Starts `cmd` and waits until it accepts connections on `port`.
    pub fn start(mut cmd: Command, port: u16, log: PathBuf) -> Server {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start {cmd:?}: {e} (scripts/install-deps.sh installs it)"));
        let mut server = Server { child, log };
        // Waiting for a real process to listen: no clock to pause here.
        support::eventually_blocking(
            &format!("{cmd:?} to listen on {port}"),
            Duration::from_secs(10),
            || {
                if let Ok(Some(status)) = server.child.try_wait() {
                    panic!("{cmd:?} exited ({status}): {}", server.log_text());
                }
                TcpStream::connect(("127.0.0.1", port))
                    .map(drop)
                    .map_err(|e| format!("{e}; log: {}", server.log_text()))
            },
        );
        server
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// The directory holding `ca.pem`, `server.pem` and `server.key`, made on first use; sets
/// `SSL_CERT_FILE` to the CA (inherited by the daemons a test starts). Every test of a binary
/// that serves https calls it before any git2 call. The directory lives under cargo's test tmp dir and outlives the process (a
/// static is never dropped).
pub fn tls_certs() -> &'static Path {
    static CERTS: OnceLock<PathBuf> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("gitopsd-test-certs-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir")
            .keep();
        make_certs(&dir);
        // SAFETY: inside the OnceLock, before any git2 call in the process; the other test
        // threads wait on this OnceLock before reading anything.
        unsafe { std::env::set_var("SSL_CERT_FILE", dir.join("ca.pem")) };
        dir
    })
}
