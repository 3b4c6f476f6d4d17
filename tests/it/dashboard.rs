//! What a person sees of a running daemon: the dashboard at `/` (loaded in headless Chromium),
//! a tier's drift as a diff (`/api/v1/tiers/<tier>/diff`) and `gitopsd status`, all against
//! the real binary reconciling a config repo onto the local cluster (the fixture of
//! tests/it/reconcile.rs).
//!
//! Chromium comes from scripts/install-deps.sh (Debian's `chromium`); `GITOPSD_CHROMIUM`
//! names another binary. Without one the test fails and says so: it is never skipped.

use crate::reconcile_support;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use reconcile_support::{Fixture, IMAGE_1, TierExtra, base_files, http_get};
use serde_json::{Value, json};

const FIRST_SYNC: Duration = Duration::from_secs(45);
const CHANGE: Duration = Duration::from_secs(30);
const EDITED_IMAGE: &str = "registry.example.com/shop/api:6.6.6";
/// The Secret's password in git, and the one planted in the cluster: neither may be shown.
const PASSWORD_IN_GIT: &str = "git-password-4711";
const PASSWORD_PLANTED: &str = "planted-password-0815";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn secret_yaml() -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\ndata:\n  password: {}\n",
        b64(PASSWORD_IN_GIT)
    )
}

/// Live edits by another field manager, as `kubectl edit` makes them: the api container's
/// image, and the Secret's password.
async fn edit_live(client: &Client, ns: &str) {
    let opts = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let image = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "api", "image": EDITED_IMAGE}
    ]}}}});
    deps.patch("api", &opts, &Patch::Strategic(&image))
        .await
        .expect("edit the deployment as kubectl-edit");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let password = json!({"data": {"password": b64(PASSWORD_PLANTED)}});
    secrets
        .patch("db", &opts, &Patch::Merge(&password))
        .await
        .expect("edit the secret as kubectl-edit");
}

fn drift_item<'a>(s: &'a Value, kind: &str, name: &str) -> Option<&'a Value> {
    s["drift"]["items"]
        .as_array()?
        .iter()
        .find(|i| i["kind"] == kind && i["name"] == name && i["severity"] == "critical")
}

/// The first of `chromium`, `chromium-browser` on PATH, or `GITOPSD_CHROMIUM`.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("GITOPSD_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the dashboard test needs headless Chromium and found none (chromium or \
         chromium-browser on PATH, or GITOPSD_CHROMIUM): run scripts/install-deps.sh, which \
         installs Debian's chromium"
    );
}

/// Runs headless Chromium with `args` and a profile of its own; its stdout is returned. Killed
/// after 90s.
fn run_chromium(profile: &Path, args: &[String]) -> String {
    let out_path = profile.with_extension("stdout");
    let err_path = profile.with_extension("stderr");
    let child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("chromium stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("chromium stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium().display()));
    // Killed however this ends (a panic of the wait included): no chromium is left behind.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(child);
    let status = support::eventually_blocking(
        &format!("chromium {args:?} to finish"),
        Duration::from_secs(90),
        || match child.0.try_wait().expect("wait for chromium") {
            Some(status) => Ok(status),
            None => Err(std::fs::read_to_string(&err_path).unwrap_or_default()),
        },
    );
    assert!(
        status.success(),
        "chromium {args:?} failed ({status}): {}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    std::fs::read_to_string(&out_path).expect("read chromium's stdout")
}

fn gitopsd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gitopsd"))
        .args(args)
        .env_remove("GITOPSD_SERVER")
        .env_remove("GITOPSD_LOG_FORMAT")
        .stdin(Stdio::null())
        .output()
        .expect("run gitopsd")
}

/// Where screenshots are kept for a person to look at: target/test-artifacts.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("mkdir target/test-artifacts");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_drift_shows_on_the_dashboard_in_the_diff_and_in_gitopsd_status() {
    let client = support::client().await;
    let mut files = base_files(IMAGE_1);
    files.push(("base/secret.yaml".to_owned(), secret_yaml()));
    // Every severity alerts, so the drift stays for the pages to show; a plaintext Secret in
    // git is only a warning here (it is the test's point).
    let extra = TierExtra(vec![
        "policy: {critical: alert, high: alert, medium: alert, low: alert}".into(),
        "validation: {rules: {plaintext-secret: warn}}".into(),
    ]);
    let (f, first) = Fixture::new("dash", files, extra).started(FIRST_SYNC).await;

    edit_live(&client, &f.tier).await;
    // The edited image rolls out (kwok's pods become ready at once), so the tier is healthy
    // again, and out of sync.
    f.wait_status("critical drift of the image and the secret", CHANGE, |s| {
        (s["health"] == "Healthy"
            && drift_item(s, "Deployment", "api").is_some()
            && drift_item(s, "Secret", "db").is_some())
        .then_some(())
    })
    .await;

    // The diff: the image line both ways, the Secret's values masked.
    let diff_path = format!("/api/v1/tiers/{}/diff", f.tier);
    let (code, diff) = http_get(f.port, &diff_path).expect("GET diff");
    assert_eq!(code, 200, "{diff}");
    let image_line = |sign: char, image: &str| {
        diff.lines()
            .any(|l| l.starts_with(sign) && l.contains(".image: ") && l.ends_with(image))
    };
    assert!(image_line('-', EDITED_IMAGE), "no live image line: {diff}");
    assert!(image_line('+', IMAGE_1), "no desired image line: {diff}");
    assert!(
        diff.contains(&format!("--- live v1 Secret {}/db", f.tier)),
        "{diff}"
    );
    assert!(diff.contains("<masked sha256:"), "{diff}");
    for secret in [PASSWORD_IN_GIT, PASSWORD_PLANTED] {
        assert!(!diff.contains(secret), "the diff shows {secret}: {diff}");
        assert!(
            !diff.contains(&b64(secret)),
            "the diff shows {secret}: {diff}"
        );
    }
    let (code, json) = http_get(f.port, &format!("{diff_path}?format=json")).expect("GET diff");
    assert_eq!(code, 200, "{json}");
    let report: Value = serde_json::from_str(&json).expect("the JSON diff parses");
    assert_eq!(report["tier"], f.tier.as_str());
    assert!(report["counts"]["critical"].as_u64() >= Some(2), "{report}");
    let (code, body) = http_get(f.port, "/api/v1/tiers/no-such-tier/diff").expect("GET");
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains(&f.tier),
        "the 404 names the known tiers: {body}"
    );

    // gitopsd status: the tier's row, then the API's JSON.
    let server = format!("http://127.0.0.1:{}", f.port);
    let out = gitopsd(&["status", "--server", &server]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.starts_with("TIER "), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{} ", f.tier)))
        .unwrap_or_else(|| panic!("no row for {}: {table}", f.tier));
    assert!(row.contains(&first[..7]), "{row}");
    assert!(
        row.contains("OutOfSync") && row.contains("Healthy"),
        "{row}"
    );
    assert!(row.contains("2 critical"), "{row}");
    let out = gitopsd(&["status", "--server", &server, "-o", "json"]);
    assert!(out.status.success());
    let tiers: Value = serde_json::from_slice(&out.stdout).expect("status -o json parses");
    assert_eq!(tiers[0]["tier"], f.tier.as_str());

    // The dashboard, as Chromium draws it once its script has fetched the status.
    let page = format!("http://127.0.0.1:{}/", f.port);
    let dom = run_chromium(
        &f.dir.path().join("chromium-dom"),
        &[
            "--virtual-time-budget=5000".into(),
            "--dump-dom".into(),
            page.clone(),
        ],
    );
    let object = format!("Deployment {}/api", f.tier);
    let row = dom
        .split("<tr ")
        .find(|r| r.contains(&format!("data-object=\"{object}\"")))
        .unwrap_or_else(|| panic!("no drift row for {object} in the DOM: {dom}"));
    assert!(row.contains("data-severity=\"critical\""), "{row}");
    assert!(
        row.contains("container-image") && row.contains(EDITED_IMAGE),
        "{row}"
    );
    assert!(
        dom.contains(&format!("data-object=\"Secret {}/db\"", f.tier)),
        "no drift row for the Secret: {dom}"
    );
    for secret in [PASSWORD_IN_GIT, PASSWORD_PLANTED] {
        assert!(
            !dom.contains(secret) && !dom.contains(&b64(secret)),
            "{dom}"
        );
    }
    // The page's own script mentions "unreachable": look for the banner being shown instead.
    assert!(
        dom.contains("<div id=\"banner\" role=\"alert\" class=\"\"></div>")
            || dom.contains("<div id=\"banner\" role=\"alert\"></div>"),
        "the unreachable banner is shown: {dom}"
    );

    let png = artifacts().join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(
        &f.dir.path().join("chromium-shot"),
        &[
            "--virtual-time-budget=5000".into(),
            "--window-size=1366,768".into(),
            format!("--screenshot={}", png.display()),
            page,
        ],
    );
    let bytes =
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        bytes.len() > 20_000,
        "the screenshot is {} bytes: a blank page?",
        bytes.len()
    );
}

#[test]
fn status_names_the_server_and_the_fix_when_no_daemon_answers() {
    let port = reconcile_support::free_port();
    let server = format!("http://127.0.0.1:{port}");
    let out = gitopsd(&["status", "--server", &server]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&server), "{err}");
    assert!(
        err.contains("gitopsd run") && err.contains("--server"),
        "{err}"
    );

    let out = gitopsd(&["status", "--server", "https://127.0.0.1:8443"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("https is not supported"), "{err}");
}
