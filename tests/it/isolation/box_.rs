//! Issue 13, items 4, 5, 7 and 10: renderers in a box, bounded exports, Secrets never printed,
//! untrusted names escaped. Each attack is made the way a person with push access to the
//! config repo would make it; the refusal is asserted by its message, and what did (not) reach
//! the cluster or the disk is checked separately. Negative checks wait for a later commit to be
//! applied (the daemon provably reconciled past the attack), never for a fixed time.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use serde_json::Value;

use crate::reconcile_support::{
    DaemonExtra, Files, Fixture, IMAGE_1, TierExtra, base_files, configmap, git, http_get,
};
use crate::support::{self, gitopsd, stderr, stdout};

const SYNC: Duration = Duration::from_secs(120);

/// The 12-line alias bomb of the issue: 9^8 (43 million) strings from a few hundred bytes.
const ALIAS_BOMB: &str = r#"apiVersion: v1
kind: ConfigMap
metadata: {name: bomb}
data:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
"#;

/// The kustomize the tests render with: `$GITOPSD_KUSTOMIZE`, else the one
/// scripts/build-kustomize.sh built; `None` when neither exists (the pre-check tests still run:
/// they are refused before kustomize would start).
fn kustomize() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GITOPSD_KUSTOMIZE").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/gitopsd/bin"))?;
    std::fs::read_dir(bin)
        .ok()?
        .flatten()
        .map(|e| e.path().join("kustomize"))
        .find(|p| p.is_file())
}

/// `gitopsd ARGS` with `kustomize` as its kustomize (or none).
fn gitopsd_with(kustomize: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitopsd"));
    cmd.args(args)
        .current_dir(support::repo_root())
        .env_remove("GITOPSD_CONFIG")
        .env("GITOPSD_LOG_FORMAT", "text");
    match kustomize {
        Some(k) => cmd.env("GITOPSD_KUSTOMIZE", k),
        None => cmd.env_remove("GITOPSD_KUSTOMIZE"),
    };
    cmd.output().expect("run gitopsd")
}

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
    }
}

/// A config for one tier `t` reading `repo`, with extra YAML lines at the top level.
fn config_for(dir: &Path, repo: &Path, top: &str) -> PathBuf {
    let config = dir.join("gitopsd.yaml");
    std::fs::write(
        &config,
        format!(
            "source: {{url: {}}}\n{top}tiers:\n  - {{name: t, ref: main, namespaces: [t]}}\n",
            repo.display()
        ),
    )
    .expect("write config");
    config
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn an_alias_bomb_in_a_kustomize_dir_is_refused_before_kustomize_runs_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = dir.path().join("repo");
    // The bomb as a resource, and again as an inline patch: both are YAML kustomize parses.
    write(
        &repo,
        &[
            ("tiers/t/kustomization.yaml", "resources:\n  - ../../base\n"),
            (
                "base/kustomization.yaml",
                "resources:\n  - app.yaml\n  - sub/bomb.yaml\n",
            ),
            ("base/app.yaml", &configmap("app", &[])),
            ("base/sub/bomb.yaml", ALIAS_BOMB),
        ],
    );
    let config = config_for(dir.path(), &repo, "");
    let k = kustomize();
    for args in [
        vec!["render", "--tier", "t", "--repo", s(&repo)],
        vec![
            "validate",
            "--offline",
            "--config",
            s(&config),
            "--repo",
            s(&repo),
        ],
    ] {
        let out = gitopsd_with(k.as_deref(), &args);
        let text = stdout(&out) + &stderr(&out);
        assert!(!out.status.success(), "{args:?} passed: {text}");
        assert!(
            text.contains("base/sub/bomb.yaml") && text.contains("max_document_nodes"),
            "{args:?}: {text}"
        );
    }

    // Inline in the kustomization itself (a patch), where no file of its own holds it.
    let inline = ALIAS_BOMB
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect::<String>();
    write(
        &repo,
        &[(
            "base/kustomization.yaml",
            &format!(
                "resources:\n  - app.yaml\npatches:\n  - target: {{kind: ConfigMap}}\n    patch: |\n{inline}"
            ),
        )],
    );
    let out = gitopsd_with(k.as_deref(), &["render", "--tier", "t", "--repo", s(&repo)]);
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("base/kustomization.yaml (patches[0].patch)")
            && text.contains("max_document_nodes"),
        "{text}"
    );
}

#[test]
fn a_renderer_that_the_precheck_cannot_see_through_meets_the_memory_cap() {
    // A "kustomize" that allocates 4 GiB whatever it is given: the box, not the pre-check,
    // must stop it. python3 is there on every machine the tests run on (scripts/install-deps).
    let dir = tempfile::tempdir().expect("temp dir");
    let fake = dir.path().join("kustomize");
    std::fs::write(
        &fake,
        "#!/bin/sh\nexec /usr/bin/python3 -c 'x = bytearray(4 << 30); print(len(x))'\n",
    )
    .expect("write fake kustomize");
    let _ = Command::new("chmod").arg("+x").arg(&fake).status();
    let repo = dir.path().join("repo");
    write(
        &repo,
        &[
            ("tiers/t/kustomization.yaml", "resources:\n  - app.yaml\n"),
            ("tiers/t/app.yaml", &configmap("app", &[])),
        ],
    );
    let config = config_for(
        dir.path(),
        &repo,
        "render: {kustomize: {memoryBytes: 1073741824}}\n",
    );
    let out = gitopsd_with(
        Some(&fake),
        &[
            "render",
            "--config",
            s(&config),
            "--tier",
            "t",
            "--repo",
            s(&repo),
        ],
    );
    let text = stderr(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("tiers/t/kustomization.yaml: kustomize build tiers/t was stopped at its memory cap of 1 GiB")
            && text.contains("kustomize_memory_bytes"),
        "{text}"
    );
}

#[test]
fn the_real_kustomize_builds_in_its_box() {
    let Some(k) = kustomize() else {
        eprintln!("skipped: no kustomize built (scripts/build-kustomize.sh)");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = dir.path().join("repo");
    write(
        &repo,
        &[
            ("tiers/t/kustomization.yaml", "resources:\n  - app.yaml\n"),
            ("tiers/t/app.yaml", &configmap("app", &[])),
        ],
    );
    let out = gitopsd_with(Some(&k), &["render", "--tier", "t", "--repo", s(&repo)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("name: app"), "{}", stdout(&out));
}

#[tokio::test]
async fn the_daemon_refuses_the_bomb_and_keeps_the_last_good_set() {
    let (f, good) = Fixture::new("box-bomb", base_files(IMAGE_1), TierExtra::default())
        .started(SYNC)
        .await;

    // The tier directory becomes a kustomization pulling in the bomb beside a new ConfigMap.
    let t = f.tier.clone();
    f.write_files(&vec![
        (
            format!("tiers/{t}/kustomization.yaml"),
            "resources:\n  - namespace.yaml\n  - ../../base\n  - after-bomb.yaml\n  - bomb.yaml\n"
                .to_owned(),
        ),
        (
            "base/kustomization.yaml".to_owned(),
            "resources: [deployment.yaml, service.yaml, api-config.yaml, extra-1.yaml, extra-2.yaml, extra-3.yaml, extra-4.yaml]\n".to_owned(),
        ),
        (format!("tiers/{t}/after-bomb.yaml"), configmap("after-bomb", &[])),
        (format!("tiers/{t}/bomb.yaml"), ALIAS_BOMB.to_owned()),
    ]);
    let bomb = f.commit("an alias bomb in a kustomization");
    let file = format!("tiers/{t}/bomb.yaml");
    let s = f
        .wait_status("the bomb refused", SYNC, |s| {
            (s["sourceRevision"] == bomb.as_str()
                && s["lastError"].as_str().is_some_and(|e| e.contains(&file)))
            .then(|| s.clone())
        })
        .await;
    let error = s["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("max_document_nodes"), "{error}");
    assert_eq!(s["revision"], good.as_str(), "the last good set stays");

    // A fix without the bomb (and without kustomize, which the fixture's daemon does not
    // have: the bomb above was refused before kustomize would have been looked for) is
    // applied: the daemon reconciled past the bomb, and only now does the ConfigMap exist.
    let cms: Api<ConfigMap> = Api::namespaced(support::client().await, &t);
    assert!(cms.get_opt("after-bomb").await.expect("get").is_none());
    f.remove_files(&[
        &format!("tiers/{t}/kustomization.yaml"),
        &format!("tiers/{t}/bomb.yaml"),
        "base/kustomization.yaml",
    ]);
    let fixed = f.commit("the bomb removed");
    f.wait_synced_healthy(&fixed, SYNC).await;
    assert!(cms.get_opt("after-bomb").await.expect("get").is_some());
    assert!(cms.get_opt("bomb").await.expect("get").is_none());
}

/// A commit of `repo` (on top of HEAD) that adds `junk/` naming one `blob_bytes` blob `fanout`
/// times, made with git's plumbing: git stores the blob once.
fn fanout_commit(repo: &Path, blob_bytes: usize, fanout: usize) -> String {
    let blob_file = repo.join("../big.bin");
    std::fs::write(&blob_file, vec![b'y'; blob_bytes]).expect("write blob");
    let blob = git(repo, &["hash-object", "-w", s(&blob_file)]);
    let listing: String = (0..fanout)
        .map(|i| format!("100644 blob {blob}\tcopy-{i}.bin\n"))
        .collect();
    let junk = mktree(repo, &listing);
    let mut top = git(repo, &["ls-tree", "HEAD"]);
    top += &format!("\n040000 tree {junk}\tjunk\n");
    let tree = mktree(repo, &top);
    let commit = git(
        repo,
        &[
            "commit-tree",
            &tree,
            "-p",
            "HEAD",
            "-m",
            "one blob, many names",
        ],
    );
    git(repo, &["update-ref", "refs/heads/main", &commit]);
    git(repo, &["reset", "-q", "--hard", &commit]);
    commit
}

fn mktree(repo: &Path, listing: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .arg("mktree")
        .current_dir(repo)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("git mktree");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(listing.as_bytes())
        .expect("write listing");
    let out = child.wait_with_output().expect("git mktree");
    assert!(out.status.success(), "git mktree failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[tokio::test]
async fn a_commit_naming_one_blob_many_times_is_refused_before_anything_is_written() {
    let daemon = DaemonExtra {
        source: vec!["exportLimits: {maxBytes: 4000000}".into()],
        ..DaemonExtra::default()
    };
    let (f, good) = Fixture::with_daemon(
        "box-export",
        base_files(IMAGE_1),
        TierExtra::default(),
        daemon,
    )
    .started(SYNC)
    .await;
    // The mirror of the fixture's repo under the daemon's workdir, as the daemon keys it.
    let url = f.repo.display().to_string().parse().expect("the repo URL");
    let revisions =
        gitopsd::source::mirror_dir(&f.dir.path().join("workdir"), &url).join("revisions");
    assert!(
        revisions.join(&good).is_dir(),
        "the good export is where the test looks"
    );
    let before = dir_bytes(&revisions);

    // 1 MiB named 300 times: a few KiB pushed, 300 MiB exported.
    let bomb = fanout_commit(&f.repo, 1024 * 1024, 300);
    let s = f
        .wait_status("the export refused", SYNC, |s| {
            (s["sourceRevision"] == bomb.as_str()
                && s["lastError"]
                    .as_str()
                    .is_some_and(|e| e.contains("exportLimits")))
            .then(|| s.clone())
        })
        .await;
    let error = s["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains(&bomb) && error.contains("source.exportLimits.maxBytes = 4000000"),
        "{error}"
    );
    assert_eq!(s["revision"], good.as_str(), "the last good set stays");
    assert!(!revisions.join(&bomb).exists(), "no export of the commit");
    let after = dir_bytes(&revisions);
    assert!(
        after < before + 1024 * 1024,
        "the checkout dir grew from {before} to {after} bytes"
    );

    // The next commit (without junk/) is applied; the good export was never pruned away.
    git(&f.repo, &["rm", "-rq", "junk"]);
    f.write_files(&vec![(
        "base/after-export.yaml".to_owned(),
        configmap("after-export", &[]),
    )]);
    let fixed = f.commit("junk removed");
    f.wait_synced_healthy(&fixed, SYNC).await;
    assert!(revisions.join(&good).is_dir(), "the last good export stays");
    let cms: Api<ConfigMap> = Api::namespaced(support::client().await, &f.tier);
    assert!(cms.get_opt("after-export").await.expect("get").is_some());
}

/// kubectl, if this machine has one (scripts/build-control-plane.sh builds it).
fn kubectl() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let built = std::fs::read_dir(home.join(".cache/gitopsd/bin"))
        .ok()?
        .flatten()
        .map(|e| e.path().join("kubectl"))
        .find(|p| p.is_file());
    built.or_else(|| Some(PathBuf::from("/usr/bin/kubectl")).filter(|p| p.is_file()))
}

const PLAINTEXT: &str = "pl41n-hunter2-value";
/// base64 of PLAINTEXT.
const ENCODED: &str = "cGw0MW4taHVudGVyMi12YWx1ZQ==";

/// Creates the Secret `extra-secret` in the tier namespace, labelled for the tier, the way a
/// person does: `kubectl apply` (client-side), which stores the whole manifest, stringData in
/// plain text, in the last-applied annotation.
async fn kubectl_apply_secret(tier: &str) {
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: extra-secret\n  namespace: {tier}\n  labels: {{gitopsd.io/tier: {tier}}}\nstringData:\n  password: {PLAINTEXT}\n"
    );
    if let Some(kubectl) = kubectl() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("secret.yaml");
        std::fs::write(&file, manifest).expect("write");
        let out = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(support::kubeconfig())
            .args(["apply", "-f"])
            .arg(&file)
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        // What kubectl would send: the object with its own JSON in the annotation.
        let mut v: Value = serde_yaml::from_str(&manifest).expect("yaml");
        let copy = v.to_string();
        v["metadata"]["annotations"] =
            serde_json::json!({"kubectl.kubernetes.io/last-applied-configuration": copy});
        let api: Api<Secret> = Api::namespaced(support::client().await, tier);
        let secret: Secret = serde_json::from_value(v).expect("a Secret");
        api.create(&Default::default(), &secret)
            .await
            .expect("create");
    }
    let api: Api<Secret> = Api::namespaced(support::client().await, tier);
    let live = api.get("extra-secret").await.expect("the Secret exists");
    let annotation = live
        .metadata
        .annotations
        .unwrap_or_default()
        .remove("kubectl.kubernetes.io/last-applied-configuration")
        .unwrap_or_default();
    assert!(
        annotation.contains(PLAINTEXT),
        "the attack is set up: {annotation}"
    );
}

/// The tier may hold Secrets in git (the fixture's tier is the last one, where the
/// `plaintext-secret` rule would block them).
fn plaintext_secrets_allowed() -> TierExtra {
    TierExtra(vec!["validation: {rules: {plaintext-secret: warn}}".into()])
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [PLAINTEXT, ENCODED] {
        assert!(!text.contains(secret), "{what} shows {secret}: {text}");
    }
}

#[tokio::test]
async fn an_extra_secrets_last_applied_copy_is_masked_in_diff_status_and_audit() {
    // The tier deploys a Secret of its own, so Secrets are among the kinds it watches.
    let mut base = base_files(IMAGE_1);
    base.push((
        "base/app-secret.yaml".into(),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-secret\nstringData:\n  user: app\n"
            .into(),
    ));
    let (mut f, _) = Fixture::new("box-secret", base, plaintext_secrets_allowed())
        .started(SYNC)
        .await;
    kubectl_apply_secret(&f.tier).await;

    let kc = support::kubeconfig();
    let base = [
        "diff",
        "--config",
        s(&f.config),
        "--kubeconfig",
        s(kc),
        "--tier",
        &f.tier,
    ];
    for format in ["text", "json"] {
        let mut args = base.to_vec();
        args.extend(["-o", format]);
        let out = gitopsd(&args);
        let text = stdout(&out) + &stderr(&out);
        assert!(
            text.contains("extra-secret"),
            "diff -o {format} names it: {text}"
        );
        assert!(text.contains("<masked sha256:"), "diff -o {format}: {text}");
        assert_no_secret(&format!("gitopsd diff -o {format}"), &text);
    }

    // The daemon sees it as an extra object; its status, diff and dashboard data show no value.
    f.wait_status("the extra Secret in the drift report", SYNC, |s| {
        s["drift"]
            .to_string()
            .contains("extra-secret")
            .then_some(())
    })
    .await;
    let tier = f.tier.clone();
    for path in [
        format!("/api/v1/tiers/{tier}"),
        format!("/api/v1/tiers/{tier}/diff"),
        "/api/v1/tiers".to_owned(),
    ] {
        let (code, body) = http_get(f.port, &path).expect("GET");
        assert_eq!(code, 200, "{path}: {body}");
        assert_no_secret(&path, &body);
    }
    let audit = std::fs::read_to_string(support::audit_log_in(&f.dir.path().join("workdir")))
        .unwrap_or_default();
    assert_no_secret("the audit log", &audit);
    let log = f.daemon().log_tail(100_000);
    assert_no_secret("the log", &log);
}

#[tokio::test]
async fn an_api_error_that_echoes_a_secret_value_is_masked_in_status_and_audit_log() {
    let (mut f, _) = Fixture::new(
        "box-apierr",
        base_files(IMAGE_1),
        plaintext_secrets_allowed(),
    )
    .started(SYNC)
    .await;

    // A number where the API wants a string: the server's error quotes the value.
    f.write_files(&vec![(
        "base/db-secret.yaml".to_owned(),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: 987654321987\n"
            .to_owned(),
    )]);
    let bad = f.commit("a Secret the server refuses");
    let s = f
        .wait_status("the Secret's apply failed", SYNC, |s| {
            let text = s.to_string();
            (s["sourceRevision"] == bad.as_str()
                && text.contains("Secret")
                && text.contains("stringData.password"))
            .then(|| s.clone())
        })
        .await;
    let body = s.to_string();
    assert!(body.contains("<masked>"), "{body}");
    assert!(
        !body.contains("987654321987"),
        "the status shows the value: {body}"
    );
    let audit = std::fs::read_to_string(support::audit_log_in(&f.dir.path().join("workdir")))
        .unwrap_or_default();
    assert!(
        audit.contains("stringData.password"),
        "the audit log has the failure: {audit}"
    );
    assert!(
        !audit.contains("987654321987"),
        "the audit log shows the value: {audit}"
    );
    let log = f.daemon().log_tail(100_000);
    assert!(!log.contains("987654321987"), "the log shows the value");

    // The Secret never reached the cluster with that value; a fix is applied.
    f.write_files(&vec![(
        "base/db-secret.yaml".to_owned(),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: \"fixed\"\n"
            .to_owned(),
    )]);
    let fixed = f.commit("the Secret fixed");
    f.wait_synced_healthy(&fixed, SYNC).await;
}

#[tokio::test]
async fn escape_sequences_in_repo_file_names_are_shown_escaped() {
    let red = "base/\x1b[31mred\x1b]0;pwned\x07.yaml";
    let shown = "base/\\x1b[31mred\\x1b]0;pwned\\x07.yaml";
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = dir.path().join("repo");
    let mut files: Files = base_files(IMAGE_1);
    files.push((
        "tiers/t/namespace.yaml".into(),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: t\n".into(),
    ));
    files.push((red.into(), configmap("red", &[])));
    for (p, c) in &files {
        write(&repo, &[(p, c)]);
    }
    let config = config_for(dir.path(), &repo, "");
    // Good: the file shows in render's comments.
    let out = gitopsd(&["render", "--tier", "t", "--repo", s(&repo)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    assert!(text.contains(shown), "{text}");
    // Broken: the file shows in the error of render and of validate.
    write(&repo, &[(red, "kind: [\n")]);
    for args in [
        vec!["render", "--tier", "t", "--repo", s(&repo)],
        vec![
            "validate",
            "--offline",
            "--config",
            s(&config),
            "--repo",
            s(&repo),
        ],
    ] {
        let out = gitopsd(&args);
        let text = stdout(&out) + &stderr(&out);
        assert!(!out.status.success(), "{args:?}: {text}");
        assert!(
            !text.contains('\x1b') && !text.contains('\x07'),
            "{args:?}: {text:?}"
        );
        assert!(text.contains(shown), "{args:?}: {text}");
    }

    // The daemon's status and log show the name escaped too.
    let (mut f, _) = Fixture::new("box-escape", base_files(IMAGE_1), TierExtra::default())
        .started(SYNC)
        .await;
    f.write_files(&vec![(red.to_owned(), "kind: [\n".to_owned())]);
    let bad = f.commit("a file name with escapes");
    let s = f
        .wait_status("the broken file refused", SYNC, |s| {
            (s["sourceRevision"] == bad.as_str() && s["lastError"].as_str().is_some())
                .then(|| s.clone())
        })
        .await;
    let error = s["lastError"].as_str().unwrap_or_default();
    assert!(error.contains(shown), "{error}");
    let log = f.daemon().log_tail(100_000);
    assert!(
        !log.contains('\x1b') && !log.contains('\x07'),
        "raw escapes in the log"
    );
}

#[test]
fn a_token_file_given_as_kubeconfig_is_never_printed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkJPWCJ9.dG9wLXNlY3JldC1zYS10b2tlbg.c2lnbmF0dXJl";
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{token}\n")).expect("write token");
    let repo = dir.path().join("repo");
    write(
        &repo,
        &[(
            "tiers/t/namespace.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: t\n",
        )],
    );
    let config = config_for(dir.path(), &repo, "");
    for args in [
        vec![
            "validate",
            "--config",
            s(&config),
            "--kubeconfig",
            s(&file),
            "--repo",
            s(&repo),
        ],
        vec![
            "diff",
            "--tier",
            "t",
            "--repo",
            s(&repo),
            "--kubeconfig",
            s(&file),
        ],
    ] {
        let out = gitopsd(&args);
        let text = stdout(&out) + &stderr(&out);
        assert!(!out.status.success(), "{args:?}: {text}");
        assert!(
            !text.contains("dG9wLXNlY3JldC1zYS10b2tlbg"),
            "{args:?}: {text}"
        );
        assert!(
            text.contains(s(&file)) && text.contains("not a kubeconfig"),
            "{args:?}: {text}"
        );
    }
    // The same file through KUBECONFIG, where kube infers the config.
    let out = Command::new(env!("CARGO_BIN_EXE_gitopsd"))
        .args(["validate", "--config", s(&config), "--repo", s(&repo)])
        .env("KUBECONFIG", &file)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("GITOPSD_CONFIG")
        .output()
        .expect("run gitopsd");
    let text = stdout(&out) + &stderr(&out);
    assert!(text.contains("not a kubeconfig"), "{text}");
    assert!(!text.contains("dG9wLXNlY3JldC1zYS10b2tlbg"), "{text}");
}
