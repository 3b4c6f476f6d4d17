//! Which files a tier reads (subdirectories, order, what is refused) and where `${VAR}` is
//! substituted (opt-in by path, off per object): render-level tests on repos built in
//! temporary directories.

use std::path::Path;

use serde_json::json;

use super::*;

fn write(repo: &Path, rel: &str, text: &str) {
    let p = repo.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A repo with tier `t` (its tier.yaml) and the files given (paths from the repo root).
fn repo(tier_yaml: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tiers/t/tier.yaml", tier_yaml);
    std::fs::create_dir_all(dir.path().join("base")).unwrap();
    for (rel, text) in files {
        write(dir.path(), rel, text);
    }
    dir
}

fn render_with(repo: &Path, limits: &Limits) -> Result<DesiredSet, RenderError> {
    render_tier_with(
        repo,
        "t",
        limits,
        &Kustomize::from_env(),
        &KindScopes::builtin(),
    )
}

fn render(repo: &Path) -> Result<DesiredSet, RenderError> {
    render_with(repo, &Limits::default())
}

fn error(repo: &Path) -> String {
    match render(repo) {
        Ok(set) => panic!("expected an error, rendered {} objects", set.objects.len()),
        Err(e) => e.to_string(),
    }
}

fn cm(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{a: b}}\n")
}

/// Each object's name and the file it came from, in the set's order (ConfigMaps share one
/// apply rank and are ordered by name there; the walk's own order is checked separately).
fn sources(set: &DesiredSet) -> Vec<(String, String)> {
    set.objects
        .iter()
        .map(|o| (o.key.name.clone(), o.source.file.display().to_string()))
        .collect()
}

#[test]
fn manifests_in_subdirectories_are_read_depth_first_in_bytewise_order() {
    let r = repo(
        "namespace: ns\n",
        &[
            ("base/a.yaml", &cm("a")),
            ("base/b/c.yml", &cm("b-c")),
            (
                "base/b/d/e.json",
                r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b-d-e"}}"#,
            ),
            ("base/c.yaml", &cm("c")),
            ("base/vendor/project/manifests/deploy.yaml", &cm("vendor")),
            ("base/README.md", "not a manifest"),
            ("base/b/notes.txt", "not a manifest"),
            ("base/.hidden/x.yaml", &cm("hidden")),
            ("base/b/.swp.yaml", &cm("swap")),
            ("tiers/t/own.yaml", &cm("t-own")),
            ("tiers/t/sub/more.yaml", &cm("t-sub")),
        ],
    );
    let set = render(r.path()).unwrap();
    assert_eq!(
        sources(&set),
        [
            ("a", "base/a.yaml"),
            ("b-c", "base/b/c.yml"),
            ("b-d-e", "base/b/d/e.json"),
            ("c", "base/c.yaml"),
            ("t-own", "tiers/t/own.yaml"),
            ("t-sub", "tiers/t/sub/more.yaml"),
            ("vendor", "base/vendor/project/manifests/deploy.yaml"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    // The walk's own order, before render sorts objects into apply order.
    let repo = files::Repo::open(r.path()).unwrap();
    let limits = walk::WalkLimits {
        max_files: 100,
        max_depth: 10,
    };
    let found = walk::walk(&repo, &repo.root().join("base"), &[], limits).unwrap();
    let rel: Vec<String> = found
        .iter()
        .map(|i| match i {
            walk::Input::File(f) => repo.display(f),
            walk::Input::Kustomize { kfile, .. } => repo.display(kfile),
        })
        .collect();
    assert_eq!(
        rel,
        [
            "base/a.yaml",
            "base/b/c.yml",
            "base/b/d/e.json",
            "base/c.yaml",
            "base/vendor/project/manifests/deploy.yaml"
        ]
    );
}

#[test]
fn moving_a_file_into_a_subdirectory_keeps_its_objects_and_their_digests() {
    let r = repo("namespace: ns\n", &[("base/a.yaml", &cm("a"))]);
    let before = render(r.path()).unwrap();
    std::fs::create_dir_all(r.path().join("base/vendor")).unwrap();
    std::fs::rename(
        r.path().join("base/a.yaml"),
        r.path().join("base/vendor/a.yaml"),
    )
    .unwrap();
    let after = render(r.path()).unwrap();
    assert_eq!(after.objects.len(), 1);
    assert_eq!(
        after.objects[0].source.file,
        Path::new("base/vendor/a.yaml")
    );
    assert_eq!(after.digest, before.digest);
}

#[test]
fn a_manifest_suffix_in_another_case_is_refused_not_skipped() {
    let r = repo("", &[("base/x/App.YAML", &cm("a"))]);
    assert_eq!(
        error(r.path()),
        "base/x/App.YAML: has a manifest suffix in another case and would not be read (rule: manifests end in .yaml, .yml or .json, lowercase): rename it to end in .yaml, or rename it to a suffix that is not a manifest's if it is none"
    );
}

#[test]
fn file_count_and_directory_depth_are_bounded() {
    let r = repo(
        "",
        &[
            ("base/a.yaml", &cm("a")),
            ("base/b.yaml", &cm("b")),
            ("base/c.yaml", &cm("c")),
        ],
    );
    let few = Limits {
        max_manifest_files: 2,
        ..Limits::default()
    };
    let e = render_with(r.path(), &few).unwrap_err().to_string();
    assert!(e.starts_with("base/: more than 2 manifest files"), "{e}");

    let r = repo("", &[("base/a/b/c/x.yaml", &cm("x"))]);
    let shallow = Limits {
        max_directory_depth: 2,
        ..Limits::default()
    };
    let e = render_with(r.path(), &shallow).unwrap_err().to_string();
    assert!(
        e.starts_with("base/a/b/c/: more than 2 directories below base/"),
        "{e}"
    );
    assert!(render(r.path()).is_ok());
}

#[test]
fn symlinked_directories_stay_inside_the_repo_and_are_read_once() {
    let r = repo("namespace: ns\n", &[("base/sub/a.yaml", &cm("a"))]);
    // A loop back to base/ and a second name for sub/: each directory is read once.
    std::os::unix::fs::symlink("..", r.path().join("base/sub/loop")).unwrap();
    std::os::unix::fs::symlink("sub", r.path().join("base/again")).unwrap();
    let set = render(r.path()).unwrap();
    assert_eq!(
        sources(&set),
        [("a".to_owned(), "base/again/a.yaml".to_owned())]
    );

    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "x.yaml", &cm("x"));
    write(outside.path(), "LICENSE", "text");
    let r = repo("", &[("base/a.yaml", &cm("a"))]);
    // A file that is never read may point anywhere; a directory may not.
    std::os::unix::fs::symlink(
        outside.path().join("LICENSE"),
        r.path().join("base/LICENSE"),
    )
    .unwrap();
    assert!(render(r.path()).is_ok());
    std::os::unix::fs::symlink(outside.path(), r.path().join("base/out")).unwrap();
    let e = error(r.path());
    assert!(e.starts_with("base/out: symlink resolves to "), "{e}");
}

#[test]
fn document_end_markers_keep_their_lines_when_substituting() {
    // A YAML error after a `...` line is reported on the same line substituted or not.
    let text = format!(
        "{}...\n---\n# ${{A}}\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: b}}\ndata: [\n",
        cm("a")
    );
    let plain = repo("namespace: ns\n", &[("base/all.yaml", &text)]);
    let substituted = repo(
        "namespace: ns\nvars: {A: x}\nsubstitute: [base]\n",
        &[("base/all.yaml", &text)],
    );
    let e = error(plain.path());
    assert!(e.starts_with("base/all.yaml line 1"), "{e}");
    assert_eq!(error(substituted.path()), e);
}

#[test]
fn a_subdirectory_with_a_kustomization_is_built_by_kustomize() {
    let kustomize = Kustomize::from_env();
    let r = repo(
        "namespace: ns\n",
        &[
            ("base/a.yaml", &cm("a")),
            (
                "base/app/kustomization.yaml",
                "resources: [cm.yaml]\nnamePrefix: app-\n",
            ),
            ("base/app/cm.yaml", &cm("x")),
            // Not listed by the kustomization: kustomize owns the directory, so not read.
            ("base/app/unlisted.yaml", &cm("unlisted")),
        ],
    );
    let result = render_tier_with(
        r.path(),
        "t",
        &Limits::default(),
        &kustomize,
        &KindScopes::builtin(),
    );
    match result {
        Ok(set) => assert_eq!(
            sources(&set),
            [
                ("a".to_owned(), "base/a.yaml".to_owned()),
                ("app-x".to_owned(), "base/app/kustomization.yaml".to_owned()),
            ]
        ),
        // Without a kustomize binary the directory is still recognised as kustomize's.
        Err(RenderError::KustomizeMissing { file }) => {
            assert_eq!(file, "base/app/kustomization.yaml")
        }
        Err(e) => panic!("{e}"),
    }
}

const DASHBOARD: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dashboard}\ndata:\n  panel.json: '{\"datasource\": \"${DS_PROMETHEUS}\", \"expr\": \"rate(x[$__rate_interval])\"}'\n  legend: '{{pod}} ${__field.name}'\n";

#[test]
fn without_opting_in_dollar_braces_are_text_and_never_an_error() {
    let r = repo("namespace: ns\n", &[("base/dashboard.yaml", DASHBOARD)]);
    let set = render(r.path()).unwrap();
    assert_eq!(
        set.objects[0].manifest["data"]["legend"],
        json!("{{pod}} ${__field.name}")
    );
    assert!(
        set.objects[0].manifest["data"]["panel.json"]
            .as_str()
            .unwrap()
            .contains("${DS_PROMETHEUS}")
    );
}

#[test]
fn substitution_happens_only_in_the_paths_listed_under_substitute() {
    let app = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {tag: \"${TAG}\", n: ${N}}\n";
    let r = repo(
        "namespace: ns\nvars: {TAG: \"1.2\", N: 3}\nsubstitute: [tiers/t/apps/]\n",
        &[
            ("base/dashboard.yaml", DASHBOARD),
            ("tiers/t/apps/app.yaml", app),
        ],
    );
    let set = render(r.path()).unwrap();
    let app = set.objects.iter().find(|o| o.key.name == "app").unwrap();
    assert_eq!(app.manifest["data"], json!({"tag": "1.2", "n": 3}));
    let dash = set
        .objects
        .iter()
        .find(|o| o.key.name == "dashboard")
        .unwrap();
    assert_eq!(
        dash.manifest["data"]["legend"],
        json!("{{pod}} ${__field.name}")
    );
}

#[test]
fn an_annotation_turns_substitution_off_for_one_object() {
    let file = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app}}\ndata: {{tag: \"${{TAG}}\"}}\n---\n{}",
        DASHBOARD.replace(
            "metadata: {name: dashboard}",
            "metadata:\n  name: dashboard\n  annotations: {gitopsd.io/substitute: disabled}"
        )
    );
    let r = repo(
        "namespace: ns\nvars: {TAG: \"1.2\"}\nsubstitute: [base]\n",
        &[("base/all.yaml", &file)],
    );
    let set = render(r.path()).unwrap();
    let app = set.objects.iter().find(|o| o.key.name == "app").unwrap();
    assert_eq!(app.manifest["data"], json!({"tag": "1.2"}));
    let dash = set
        .objects
        .iter()
        .find(|o| o.key.name == "dashboard")
        .unwrap();
    assert_eq!(
        dash.manifest["data"]["legend"],
        json!("{{pod}} ${__field.name}")
    );

    // Without the annotation, the dashboard's reference is an error, on its own line.
    let r = repo(
        "namespace: ns\nvars: {TAG: \"1.2\"}\nsubstitute: [base]\n",
        &[("base/all.yaml", &format!("{}---\n{DASHBOARD}", cm("a")))],
    );
    let e = error(r.path());
    assert!(
        e.starts_with("base/all.yaml line 10: ${DS_PROMETHEUS} is not defined"),
        "{e}"
    );
}

#[test]
fn vars_without_substitute_fail_with_the_migration() {
    let r = repo("vars: {TAG: \"1\"}\n", &[("base/a.yaml", &cm("a"))]);
    assert_eq!(
        error(r.path()),
        "tiers/t/tier.yaml: substitute: vars are declared but no `substitute:` says where ${VAR} is replaced; substitution is opt-in: add `substitute: [base, tiers/t]` to replace it in every manifest as before, list only the directories or files that use vars, or `substitute: []` to use them in tier.yaml alone"
    );
}

#[test]
fn substitute_paths_must_exist_and_stay_in_the_repo() {
    let r = repo(
        "substitute: [base, tiers/t/aps]\n",
        &[("base/a.yaml", &cm("a"))],
    );
    assert_eq!(
        error(r.path()),
        "tiers/t/tier.yaml: substitute[1]: tiers/t/aps does not exist in the repo; expected a directory or file whose manifests use vars"
    );
    let r = repo("substitute: [../x]\n", &[("base/a.yaml", &cm("a"))]);
    assert!(error(r.path()).starts_with(
        "tiers/t/tier.yaml: substitute[0]: expected a path relative to the repo root"
    ),);
}
