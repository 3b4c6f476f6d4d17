//! What the cluster benchmarks share: the local cluster, its kubectl, and CPU time.
#![allow(dead_code)] // each bench uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn kubeconfig() -> PathBuf {
    if let Some(path) = std::env::var_os("GITOPSD_TEST_KUBECONFIG") {
        return PathBuf::from(path);
    }
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/cluster.sh"))
        .arg("up")
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run scripts/cluster.sh up");
    assert!(out.status.success(), "scripts/cluster.sh up failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("a kubeconfig path").trim())
}

/// The repo's kubectl: `scripts/cluster.sh env` puts it on PATH.
pub fn kubectl() -> PathBuf {
    let out = Command::new("bash")
        .arg("-c")
        .arg("eval \"$(bash scripts/cluster.sh env)\" && command -v kubectl")
        .current_dir(repo_root())
        .output()
        .expect("run scripts/cluster.sh env");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!path.is_empty(), "no kubectl from scripts/cluster.sh env");
    PathBuf::from(path)
}

/// CPU time of the whole process (every thread), in nanoseconds, from /proc/self/task/*/schedstat.
pub fn cpu_ns() -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("read /proc/self/task") {
        let path = task.expect("task entry").path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}
