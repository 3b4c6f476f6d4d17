//! Repo layout and config checks, end to end: manifests in subdirectories (a `git mv` into
//! one keeps the objects), `${...}` text in manifests that did not opt in to substitution,
//! and `gitopsd run --check` on config errors and the files the config names.

use crate::reconcile_support;
use crate::support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};
use reconcile_support::{Fixture, IMAGE_1, TierExtra, base_files, configmap, git, records};
use support::{gitopsd, stderr, stdout};

const FIRST_SYNC: Duration = Duration::from_secs(45);
const CHANGE: Duration = Duration::from_secs(30);

/// A Grafana-style dashboard: `${...}` that is Grafana's, not ours.
const DASHBOARD: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dashboard\ndata:\n  panel.json: '{\"datasource\": \"${DS_PROMETHEUS}\", \"legend\": \"{{pod}} ${__field.name}\"}'\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_moved_into_a_subdirectory_keeps_its_object_and_subdirectories_are_read() {
    let client = support::client().await;
    let (f, _) = Fixture::new("layout-mv", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.tier);
    let uid_before = cms.get("extra-1").await.expect("extra-1").uid();

    // The layout projects ship: base/<project>/manifests/..., and a dashboard with `${...}`.
    std::fs::create_dir_all(f.repo.join("base/vendor")).expect("mkdir");
    git(
        &f.repo,
        &["mv", "base/extra-1.yaml", "base/vendor/extra-1.yaml"],
    );
    f.write_files(&vec![
        (
            "base/project/manifests/new.yaml".to_owned(),
            configmap("from-subdir", &[]),
        ),
        (
            "base/project/dashboards/dashboard.yaml".to_owned(),
            DASHBOARD.to_owned(),
        ),
    ]);
    let second = f.commit("move extra-1 into base/vendor/, add a project directory");
    let status = f
        .wait_status("the revision with subdirectories", CHANGE, |s| {
            (s["revision"] == second.as_str() && s["sync"] == "Synced").then(|| s.clone())
        })
        .await;
    assert!(status["lastError"].is_null(), "{status}");

    // The same object (same uid: neither pruned nor recreated), and the new ones.
    let moved = cms.get("extra-1").await.expect("extra-1 is still there");
    assert_eq!(moved.uid(), uid_before, "extra-1 was recreated");
    assert!(moved.metadata.deletion_timestamp.is_none());
    cms.get("from-subdir")
        .await
        .expect("base/project/manifests/new.yaml applied");
    let dash = cms.get("dashboard").await.expect("the dashboard applied");
    let panel = dash
        .data
        .as_ref()
        .and_then(|d| d.get("panel.json"))
        .expect("panel.json");
    assert!(
        panel.contains("${DS_PROMETHEUS}") && panel.contains("${__field.name}"),
        "{panel}"
    );
    let pruned: u64 = records(&status)
        .iter()
        .map(|r| r["outcomes"]["pruned"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(pruned, 0, "nothing pruned: {status}");
}

fn write(path: &std::path::Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[test]
fn render_reads_subdirectories_and_leaves_dollar_braces_alone_without_opting_in() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("base/project/manifests/dashboard.yaml"),
        DASHBOARD,
    );
    write(&dir.path().join("tiers/exp/tier.yaml"), "namespace: exp\n");
    let out = gitopsd(&[
        "render",
        "--tier",
        "exp",
        "--repo",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("${DS_PROMETHEUS}"), "{text}");
    assert!(text.contains("name: dashboard"), "{text}");
}

#[test]
fn check_fails_on_a_secret_file_that_cannot_be_read_naming_field_line_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-token");
    let secret = dir.path().join("webhook-secret");
    write(&secret, "hush-hush-secret\n");
    let config = dir.path().join("gitopsd.yaml");
    write(
        &config,
        &format!(
            "source:\n  url: https://git.example.com/config.git\n  webhookSecretFile: {}\ntiers:\n  - {{name: dev, ref: main, namespaces: [dev]}}\nhttp:\n  tokenFile: {}\n",
            secret.display(),
            missing.display()
        ),
    );
    let out = gitopsd(&["run", "--config", config.to_str().unwrap(), "--check"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with(&format!(
            "error: {} line 7 column 14: http.tokenFile: cannot read {}:",
            config.display(),
            missing.display()
        )),
        "{err}"
    );
    assert!(!err.contains("hush-hush"), "{err}");

    write(&missing, "token\n");
    let out = gitopsd(&["run", "--config", config.to_str().unwrap(), "--check"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn config_errors_found_after_parsing_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gitopsd.yaml");
    let cases = [
        (
            "source: {url: /srv/config}\ntiers:\n  - {name: dev, ref: main, namespaces: [dev]}\n  - {name: dev, ref: x, namespaces: [b]}\n",
            "line 4 column 12: tiers[1].name: tier \"dev\" is defined twice (first as tiers[0].name line 3 column 12)",
        ),
        (
            "source: {url: /srv/config}\ntiers:\n  - name: dev\n    ref: main\n    namespaces: [dev]\n    promoteFrom: nope\n",
            "line 6 column 18: tiers[0].promoteFrom: expected the name of a tier listed before",
        ),
        (
            "source:\n  url: /srv/config\n  interval: 0\ntiers: [{name: dev, ref: main, namespaces: [dev]}]\n",
            "line 3 column 13: source.interval: expected at least 1s",
        ),
    ];
    for (text, expected) in cases {
        write(&config, text);
        let out = gitopsd(&["run", "--config", config.to_str().unwrap(), "--check"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.starts_with(&format!("error: {} {expected}", config.display())),
            "{err}"
        );
    }
}
