//! The push webhook and the API token end to end: `gitopsd run` (the real binary) with a poll
//! interval of an hour, so only a webhook can bring a new commit in time, on the local cluster.
//!
//! The router's other answers (403 without a token, 404 without a webhook secret, 429, the
//! request timeout) are unit tests in src/http/.

use crate::reconcile_support;
use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use reconcile_support::{
    DaemonExtra, Fixture, IMAGE_1, IMAGE_2, IMAGE_3, TierExtra, base_files, deployment,
    http_request,
};
use sha2::Sha256;

/// A first sync on the local cluster (kwok pods become Ready in about a second).
const FIRST_SYNC: Duration = Duration::from_secs(45);
/// Far below the poll interval (1h): only the webhook can make a commit arrive this soon.
const VIA_WEBHOOK: Duration = Duration::from_secs(20);

const SECRET: &str = "webhook-secret-for-tests";
const TOKEN: &str = "api-token-for-tests";

fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn push_body(git_ref: &str, after: &str) -> Vec<u8> {
    serde_json::json!({"ref": git_ref, "after": after, "commits": []})
        .to_string()
        .into_bytes()
}

fn post(f: &Fixture, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    http_request(f.port, "POST", path, headers, body).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

fn github_push(f: &Fixture, secret: &str, git_ref: &str, after: &str) -> (u16, String) {
    let body = push_body(git_ref, after);
    let sig = github_signature(secret, &body);
    post(
        f,
        "/webhook/git",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
}

/// Writes the webhook secret and the API token (with a trailing newline, as `echo` does) into
/// `dir`, and the daemon settings that name them, with a poll interval of an hour.
fn secured(dir: &Path) -> DaemonExtra {
    let secret = dir.join("webhook-secret");
    let token = dir.join("api-token");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("write secret");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("write token");
    DaemonExtra {
        interval: "1h".into(),
        source: vec![format!("webhookSecretFile: {}", secret.display())],
        http: vec![format!("tokenFile: {}", token.display())],
    }
}

/// An annotation on the fixture's ConfigMap `api-config`, set by the test (not drift: the
/// manifest has no annotations), which wakes a reconcile as any change of a tier object does.
async fn poke(f: &Fixture, n: usize) {
    let cms: Api<ConfigMap> = Api::namespaced(support::client().await, &f.tier);
    let patch =
        serde_json::json!({"metadata": {"annotations": {"test.gitopsd.io/poke": n.to_string()}}});
    cms.patch("api-config", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("annotate api-config: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_is_applied_at_once_with_an_hourly_poll_and_a_forged_one_is_not() {
    let secrets = tempfile::tempdir().expect("temp dir");
    let (mut f, _) = Fixture::with_daemon(
        "hook",
        base_files(IMAGE_1),
        TierExtra::default(),
        secured(secrets.path()),
    )
    .started(FIRST_SYNC)
    .await;

    // (a) A GitHub push of a followed ref: fetched, applied and healthy within seconds.
    f.write_files(&vec![(
        "base/deployment.yaml".to_owned(),
        deployment(IMAGE_2, false),
    )]);
    let second = f.commit("image 1.4.3");
    let sent = Instant::now();
    let (code, body) = github_push(&f, SECRET, "refs/heads/main", &second);
    assert_eq!(code, 202, "{body}");
    f.wait_synced_healthy(&second, VIA_WEBHOOK).await;
    let delay = sent.elapsed();
    println!("GitHub push -> applied and healthy in {delay:?} (poll interval 1h)");

    // A push of another branch is answered, and fetches nothing.
    let (code, body) = github_push(&f, SECRET, "refs/heads/feature", &second);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "ignored: ref refs/heads/feature is not followed\n");

    // (b) A forged signature: 401, and the commit it announces is not applied.
    let fetched_before_forged = f.status();
    f.write_files(&vec![(
        "base/deployment.yaml".to_owned(),
        deployment(IMAGE_3, false),
    )]);
    let third = f.commit("image 1.4.4");
    let (code, body) = github_push(&f, "not-the-secret", "refs/heads/main", &third);
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(
        &f,
        "/webhook/git",
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "guess")],
        &push_body("refs/heads/main", &third),
    );
    assert_eq!(code, 401, "{body}");
    // The daemon runs on: two reconciles (woken by live edits, since the poll interval is an
    // hour) finish after the forged deliveries, and no fetch was made meanwhile.
    for n in 0..2 {
        poke(&f, n).await;
        f.wait_reconciles(1, VIA_WEBHOOK).await;
    }
    let s = f.status();
    assert_eq!(
        s["revision"], second,
        "a forged delivery must not bring a commit in"
    );
    assert_eq!(
        s["source"]["lastAttemptAt"], fetched_before_forged["source"]["lastAttemptAt"],
        "a forged delivery must not make the daemon fetch"
    );

    // A GitLab push with the secret as its token brings it.
    let sent = Instant::now();
    let (code, body) = post(
        &f,
        "/webhook/git",
        &[
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", SECRET),
            ("Content-Type", "application/json"),
        ],
        &push_body("refs/heads/main", &third),
    );
    assert_eq!(code, 202, "{body}");
    f.wait_synced_healthy(&third, VIA_WEBHOOK).await;
    println!(
        "GitLab push -> applied and healthy in {:?} (poll interval 1h)",
        sent.elapsed()
    );

    // (e) A body larger than 5 MiB is refused once the limit is reached (one byte over: the
    // server has read everything when it answers, so closing the connection resets nothing).
    let too_big = vec![b' '; 5 * 1024 * 1024 + 1];
    let (code, body) = post(
        &f,
        "/webhook/git",
        &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", "sha256=00"),
        ],
        &too_big,
    );
    assert_eq!(code, 413, "{body}");
    // The daemon's log names outcomes, never the secret or the token.
    let log = std::fs::read_to_string(&f.daemon().log).expect("read the log");
    assert!(
        log.contains("webhook push to a followed ref"),
        "log:\n{log}"
    );
    // Refusals are logged by the status endpoint's refusal guard (within its budget).
    assert!(
        log.contains("request refused") && log.contains("X-Hub-Signature-256 does not match"),
        "log:\n{log}"
    );
    assert!(
        !log.contains(SECRET) && !log.contains(TOKEN),
        "secret material in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_over_the_api_needs_the_token() {
    let secrets = tempfile::tempdir().expect("temp dir");
    let (mut f, _) = Fixture::with_daemon(
        "apitoken",
        base_files(IMAGE_1),
        TierExtra::default(),
        secured(secrets.path()),
    )
    .started(FIRST_SYNC)
    .await;
    let path = format!("/api/v1/tiers/{}/sync", f.tier);

    let (code, body) = post(&f, &path, &[], b"");
    assert_eq!(code, 401, "{body}");
    let (code, body) = post(&f, &path, &[("Authorization", "Bearer wrong")], b"");
    assert_eq!(code, 401, "{body}");

    // With the token: the sync also fetches, so a commit arrives without a webhook.
    f.write_files(&vec![(
        "base/deployment.yaml".to_owned(),
        deployment(IMAGE_2, false),
    )]);
    let second = f.commit("image 1.4.3");
    let auth = format!("Bearer {TOKEN}");
    let (code, body) = post(
        &f,
        &path,
        &[("Authorization", &auth), ("X-Gitopsd-User", "ci-job-42")],
        b"",
    );
    assert_eq!(code, 202, "{body}");
    f.wait_synced_healthy(&second, VIA_WEBHOOK).await;
    let log = std::fs::read_to_string(&f.daemon().log).expect("read the log");
    assert!(log.contains("X-Gitopsd-User: ci-job-42"), "log:\n{log}");

    // Reads need no token.
    assert_eq!(f.status()["revision"], second.as_str());
}

/// Reading the secrets is the first thing `gitopsd run` does once connected: a missing or empty
/// file stops it, naming the field, the path and the fix.
#[test]
fn a_missing_or_empty_secret_file_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-token");
    let empty = dir.path().join("empty-secret");
    std::fs::write(&empty, " \n").expect("write");
    let cases = [
        (
            format!(
                "http:\n  listen: \"127.0.0.1:0\"\n  tokenFile: {}\n",
                missing.display()
            ),
            "cannot read http.tokenFile",
            &missing,
            "remove http.tokenFile",
        ),
        (
            format!(
                "http:\n  listen: \"127.0.0.1:0\"\n  tokenFile: {}\n",
                empty.display()
            ),
            "is empty",
            &empty,
            "remove http.tokenFile",
        ),
        (
            "http:\n  listen: \"127.0.0.1:0\"\n".to_owned(),
            "is empty",
            &empty,
            "remove source.webhookSecretFile",
        ),
    ];
    for (i, (http, says, path, fix)) in cases.iter().enumerate() {
        let webhook = if fix.contains("webhook") {
            format!("  webhookSecretFile: {}\n", path.display())
        } else {
            String::new()
        };
        let config = dir.path().join(format!("gitopsd-{i}.yaml"));
        std::fs::write(
            &config,
            format!(
                "source:\n  url: {}\n{webhook}tiers:\n  - name: a\n    ref: main\n    namespaces: [a]\n{http}",
                dir.path().display(),
            ),
        )
        .expect("write config");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gitopsd"))
            .args(["run", "--config"])
            .arg(&config)
            .arg("--kubeconfig")
            .arg(support::kubeconfig())
            .arg("--workdir")
            .arg(dir.path().join("workdir"))
            .env_remove("GITOPSD_CONFIG")
            .output()
            .expect("run gitopsd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i}: {stderr}");
        for part in [*says, &path.display().to_string(), *fix] {
            assert!(stderr.contains(part), "case {i}: no {part:?} in: {stderr}");
        }
    }
}
