//! The `gitopsd` binary as a user runs it: exit codes, messages, and the cluster connection.

use crate::support;

use support::{gitopsd, stderr};

#[test]
fn check_accepts_the_example_config() {
    let out = gitopsd(&["run", "--config", "examples/gitopsd.yaml", "--check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "examples/gitopsd.yaml: valid (3 tiers: experimental, validation, operational)\n"
    );
}

#[test]
fn a_broken_config_exits_2_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gitopsd.yaml");
    std::fs::write(
        &path,
        "source: {url: /srv/config}\ntiers:\n  - {name: exp, ref: main, namespaces: [exp], prune: maybe}\n",
    )
    .unwrap();
    let out = gitopsd(&["run", "--config", path.to_str().unwrap(), "--check"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: {} line 3 column 54: tiers[0].prune: invalid type: string \"maybe\", expected true, false, or {{enabled, maxDeletePercent, allowEmpty, kinds}}\n",
            path.display()
        )
    );
}

#[test]
fn help_shows_examples_and_the_config_flag() {
    let out = gitopsd(&["run", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--config <FILE>"), "{help}");
    assert!(help.contains("[env: GITOPSD_CONFIG=]"), "{help}");
    assert!(help.contains("--check"), "{help}");
    let top = gitopsd(&["--help"]);
    assert!(String::from_utf8_lossy(&top.stdout).contains("Examples:"));
}

#[test]
fn an_unreachable_api_server_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    )
    .unwrap();
    let out = gitopsd(&[
        "run",
        "--config",
        "examples/gitopsd.yaml",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: the Kubernetes API server at https://127.0.0.1:1/ did not answer"),
        "{err}"
    );
}

#[test]
fn run_connects_to_the_api_server_of_the_kubeconfig() {
    use std::io::BufRead;
    let kubeconfig = support::kubeconfig().to_str().unwrap().to_owned();
    let work = tempfile::tempdir().unwrap();
    // The daemon runs until stopped: read its log until it says it connected, then stop it.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gitopsd"))
        .args([
            "run",
            "--config",
            "examples/gitopsd.yaml",
            "--kubeconfig",
            &kubeconfig,
        ])
        .arg("--workdir")
        .arg(work.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start gitopsd run");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let version = support::pinned_kubernetes_version();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut connected = false;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                if line.contains("connected to Kubernetes") && line.contains(&version) {
                    connected = true;
                    break;
                }
                seen.push(line);
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        connected,
        "no `connected to Kubernetes {version}` line in: {seen:#?}"
    );
}

/// Text logs written to a file (`2> gitopsd.log`, not a terminal) carry no colour codes.
#[test]
fn text_logs_to_a_file_are_plain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("gitopsd.yaml");
    std::fs::write(
        &config,
        "source: {url: /nonexistent/config-repo}\ntiers:\n  - {name: plain, ref: main, namespaces: [plain]}\n",
    )
    .expect("write the config");
    let log = dir.path().join("gitopsd.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gitopsd"))
        .args(["--log-format", "text", "run", "--config"])
        .arg(&config)
        .arg("--kubeconfig")
        .arg(support::kubeconfig())
        .arg("--workdir")
        .arg(dir.path().join("workdir"))
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start gitopsd");
    // A WARN line (the tier has no serviceAccount) is one a terminal would colour.
    let text = support::eventually_blocking(
        "the daemon's first warning",
        std::time::Duration::from_secs(60),
        || {
            let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
            if text.contains("WARN") {
                Ok(text)
            } else {
                Err(text)
            }
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(!text.contains('\u{1b}'), "{text:?}");
}
