//! `gitopsd render` and `gitopsd validate` as a user runs them: on the example config repo, on
//! a real git repository at a ref, and against the local cluster's discovery.

use crate::support;

use support::{gitopsd, stderr, stdout};

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_owned()
}

fn write(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn render_prints_the_example_tier_in_apply_order_with_its_digest() {
    let out = gitopsd(&[
        "render",
        "--tier",
        "experimental",
        "--repo",
        "examples/config-repo",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let header = text.lines().next().unwrap();
    assert!(
        header.starts_with("# tier experimental: 25 objects at files on disk, digest sha256:"),
        "{header}"
    );
    let docs: Vec<serde_yaml::Value> = text
        .split("\n---\n")
        .skip(1)
        .map(|d| serde_yaml::from_str(d).expect("each document is YAML"))
        .collect();
    assert_eq!(docs.len(), 25);
    assert_eq!(docs[0]["kind"].as_str(), Some("Namespace"));
    assert_eq!(docs[1]["kind"].as_str(), Some("CustomResourceDefinition"));
    for d in &docs {
        assert_eq!(
            d["metadata"]["labels"]["gitopsd.io/tier"].as_str(),
            Some("experimental"),
            "{d:?}"
        );
    }
    // Same input, same digest.
    let again = stdout(&gitopsd(&[
        "render",
        "--tier",
        "experimental",
        "--repo",
        "examples/config-repo",
    ]));
    assert_eq!(again.lines().next(), Some(header));
}

#[test]
fn render_json_is_a_list_annotated_with_tier_and_digest() {
    let out = gitopsd(&[
        "render",
        "-t",
        "operational",
        "--repo",
        "examples/config-repo",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(list["kind"], "List");
    assert_eq!(
        list["metadata"]["annotations"]["gitopsd.io/tier"],
        "operational"
    );
    let items = list["items"].as_array().unwrap();
    // 23: no Secret and no CRD (the FeatureFlag CRD belongs to experimental alone).
    assert_eq!(items.len(), 23);
    assert!(
        items.iter().all(|i| i["kind"] != "Secret"),
        "operational has no plaintext Secret"
    );
    assert!(
        items
            .iter()
            .all(|i| i["kind"] != "CustomResourceDefinition"),
        "the shared CRD is experimental's, not operational's"
    );
}

#[test]
fn render_reads_a_git_repository_at_the_ref_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    write(
        repo,
        "base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {level: ${LEVEL}}\n",
    );
    write(
        repo,
        "tiers/exp/tier.yaml",
        "namespace: exp\nvars: {LEVEL: debug}\nsubstitute: [base]\n",
    );
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-qm", "first"]);
    let first = git(repo, &["rev-parse", "HEAD"]);
    git(repo, &["branch", "tier/exp"]);
    write(
        repo,
        "tiers/exp/tier.yaml",
        "namespace: exp\nvars: {LEVEL: info}\nsubstitute: [base]\n",
    );
    git(repo, &["commit", "-qam", "second"]);

    let path = repo.to_str().unwrap();
    let out = gitopsd(&[
        "render", "--tier", "exp", "--repo", path, "--ref", "tier/exp",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("# tier exp: 1 objects at {first}, digest sha256:")),
        "{text}"
    );
    assert!(text.contains("level: debug"), "{text}");

    let out = gitopsd(&["render", "--tier", "exp", "--repo", path, "--ref", "main"]);
    assert!(stdout(&out).contains("level: info"), "{}", stderr(&out));
}

#[test]
fn a_render_error_names_file_and_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "base/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  level: ${LEVEL}\n",
    );
    write(
        dir.path(),
        "tiers/exp/tier.yaml",
        "namespace: exp\nsubstitute: [base]\n",
    );
    let out = gitopsd(&[
        "render",
        "--tier",
        "exp",
        "--repo",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: base/cm.yaml line 5"), "{err}");
    assert!(err.contains("LEVEL"), "{err}");
}

/// The shipped tier ServiceAccounts and their RBAC (manifests/core: namespace.yaml, rbac.yaml,
/// tier-access.yaml), applied server-side as `kubectl apply --server-side` would: the example
/// config's tiers write as them. Under the lock of the example's namespaces (tests/it/drift.rs
/// deletes them), after any deletion of theirs finished; held until the returned file drops.
async fn install_tier_access(live: &gitopsd::live::ApiLive) -> std::fs::File {
    use k8s_openapi::api::core::v1::Namespace;
    use serde::Deserialize;
    let path = std::env::temp_dir().join("gitopsd-test-example-tiers.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    let namespaces: kube::Api<Namespace> = kube::Api::all(live.client().clone());
    for ns in ["shop-exp", "shop-val", "shop-ops"] {
        support::eventually(
            &format!("namespace {ns} deleted"),
            std::time::Duration::from_secs(120),
            || {
                let namespaces = namespaces.clone();
                async move {
                    let found = namespaces.get_opt(ns).await.expect("read namespace");
                    found
                        .is_none_or(|n| n.metadata.deletion_timestamp.is_none())
                        .then_some(())
                }
            },
        )
        .await;
    }
    for file in ["namespace.yaml", "rbac.yaml", "tier-access.yaml"] {
        let path = support::repo_root().join("manifests/core").join(file);
        let text = std::fs::read_to_string(&path).expect("read manifest");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let object = serde_json::Value::deserialize(doc).expect("manifest YAML");
            let key = gitopsd::live::ObjectKey::of(&object);
            support::apply_as(live, "gitopsd-install", &key, &object).await;
        }
    }
    lock
}

#[tokio::test]
async fn validate_passes_the_example_config_repo_against_the_cluster() {
    // Experimental owns the FeatureFlag CRD; the later tiers validate once it is served, as
    // they would after experimental's first sync.
    let live = gitopsd::live::ApiLive::new(support::client().await);
    support::ensure_crd(&live).await;
    // Each tier writes as its ServiceAccount: validate asks RBAC (SubjectAccessReview) whether
    // the shipped Roles let it write the whole example set, and finds nothing missing.
    let _lock = install_tier_access(&live).await;
    let kubeconfig = support::kubeconfig().to_str().unwrap().to_owned();
    // The cluster is shared: the CRD (applied above, as experimental's first sync would) and
    // the tier Namespaces (manifests/core, installed by the deploy tests) may exist with no
    // gitopsd inventory holding them, and a tier takes over no such object unless it adopts
    // it, as manifests/core/gitopsd.yaml does.
    let mut config_text =
        std::fs::read_to_string(support::repo_root().join("examples/gitopsd.yaml"))
            .expect("read the example config");
    // The example adopts each tier's Namespace already; experimental adopts the CRD here too.
    let line = "    adopt: [{kind: Namespace, name: shop-exp}]";
    assert!(
        config_text.contains(line),
        "{line} in examples/gitopsd.yaml"
    );
    config_text = config_text.replace(
        line,
        "    adopt: [{kind: Namespace, name: shop-exp}, {kind: CustomResourceDefinition, name: featureflags.shop.example.com}]",
    );
    for ns in ["shop-val", "shop-ops"] {
        let line = format!("    adopt: [{{kind: Namespace, name: {ns}}}]");
        assert!(
            config_text.contains(&line),
            "{line} in examples/gitopsd.yaml"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gitopsd.yaml");
    std::fs::write(&config, config_text).unwrap();
    let out = gitopsd(&[
        "validate",
        "--config",
        config.to_str().unwrap(),
        "--repo",
        "examples/config-repo",
        "--kubeconfig",
        &kubeconfig,
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("tier operational: 23 objects, 0 blocking, 0 warnings"),
        "{text}"
    );
    assert!(
        text.contains("tier experimental: 25 objects, 0 blocking, 1 warnings"),
        "{text}"
    );
}

#[test]
fn validate_blocks_a_kind_the_cluster_does_not_serve_and_a_privileged_pod() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    write(
        repo,
        "base/widget.yaml",
        "apiVersion: widgets.example.invalid/v1\nkind: Widget\nmetadata: {name: w}\n",
    );
    write(
        repo,
        "base/pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: debug}\nspec:\n  securityContext: {runAsNonRoot: true}\n  containers:\n  - {name: sh, image: 'busybox:1.36', securityContext: {privileged: true}}\n",
    );
    write(repo, "tiers/ops/tier.yaml", "namespace: ops\n");
    write(
        repo,
        "gitopsd.yaml",
        "source: {url: .}\ntiers:\n  - {name: ops, ref: main, namespaces: [ops]}\n",
    );
    let kubeconfig = support::kubeconfig().to_str().unwrap().to_owned();
    let config = repo.join("gitopsd.yaml");
    let args = [
        "validate",
        "--config",
        config.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
    ];
    let out = gitopsd(&[&args[..], &["--kubeconfig", &kubeconfig]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("tier ops: error: base/pod.yaml line 1: Pod ops/debug: container \"sh\" is privileged [security/privileged-container]"), "{text}");
    // Not stamped with the tier namespace: whether Widget is namespaced is not known.
    assert!(text.contains("tier ops: error: base/widget.yaml line 1: Widget w: kind Widget (group widgets.example.invalid) at apiVersion widgets.example.invalid/v1 is not served by the cluster and no CustomResourceDefinition in the tier defines it, so whether it is namespaced is unknown (is a CRD or an API service missing? a typo in apiVersion or kind?) [scope/unknown-kind]"), "{text}");
    assert!(
        text.contains("tier ops: 2 objects, 2 blocking, 0 warnings"),
        "{text}"
    );

    // Offline, Widget is not one of Kubernetes' own kinds and its CRD is not in the tier: its
    // scope is unknown, and that blocks too.
    let out = gitopsd(&[&args[..], &["--offline"]].concat());
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("Widget w: kind Widget (group widgets.example.invalid) at apiVersion widgets.example.invalid/v1 is not a Kubernetes 1.37 kind"), "{text}");
    assert!(
        text.contains("tier ops: 2 objects, 2 blocking, 0 warnings"),
        "{text}"
    );
}
