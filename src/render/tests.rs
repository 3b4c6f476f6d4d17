//! Render tests over the fixture repos in `testdata/` (a shop: Deployments, Service,
//! ConfigMap, HPA, NetworkPolicies, PriorityClass, three tiers) and over hostile repos built
//! in temporary directories.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::json;

use super::*;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/render/testdata")
        .join(name)
}

fn render(repo: &Path, tier: &str) -> Result<DesiredSet, RenderError> {
    render_tier_with(
        repo,
        tier,
        &Limits::default(),
        &Kustomize::none(),
        &KindScopes::builtin(),
    )
}

fn error(repo: &Path, tier: &str) -> String {
    match render(repo, tier) {
        Ok(set) => panic!("expected an error, rendered {} objects", set.objects.len()),
        Err(e) => e.to_string(),
    }
}

fn names(set: &DesiredSet) -> Vec<String> {
    set.objects.iter().map(|o| o.key.to_string()).collect()
}

fn object<'s>(set: &'s DesiredSet, kind: &str, name: &str) -> &'s DesiredObject {
    set.objects
        .iter()
        .find(|o| o.key.kind == kind && o.key.name == name)
        .unwrap_or_else(|| panic!("{kind} {name} not in {:?}", names(set)))
}

/// A copy of a fixture repo that a test may change.
fn copy_of(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&testdata(name), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn write(repo: &Path, rel: &str, text: &str) {
    let p = repo.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A minimal repo: one tier `t` with the given tier.yaml and base files.
fn repo_with(tier_yaml: &str, base: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tiers/t/tier.yaml", tier_yaml);
    std::fs::create_dir_all(dir.path().join("base")).unwrap();
    for (name, text) in base {
        write(dir.path(), &format!("base/{name}"), text);
    }
    dir
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {a: b}\n";

#[test]
fn each_shop_tier_renders_the_base_plus_its_own_files() {
    let shop = testdata("shop");
    let exp = render(&shop, "experimental").unwrap();
    assert_eq!(
        names(&exp),
        [
            "Namespace shop-exp",
            "PriorityClass shop-low",
            "ConfigMap shop-exp/shop-config",
            "Deployment shop-exp/api",
            "Deployment shop-exp/worker",
            "HorizontalPodAutoscaler shop-exp/api",
            "NetworkPolicy shop-exp/api-ingress",
            "NetworkPolicy shop-exp/default-deny",
            "Pod shop-exp/toolbox",
            "Service shop-exp/api",
        ]
    );
    let op = render(&shop, "operational").unwrap();
    assert!(names(&op).contains(&"PodDisruptionBudget shop/api".to_owned()));
    assert!(!names(&op).iter().any(|n| n.contains("toolbox")));
    assert_eq!(render(&shop, "validation").unwrap().objects.len(), 9);
}

#[test]
fn objects_are_ordered_namespaces_then_crds_then_cluster_scoped_then_namespaced() {
    let repo = repo_with(
        "namespace: app\n",
        &[(
            "all.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: z}\n---\n\
             apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\n\
             spec: {group: example.com, scope: Namespaced, names: {kind: Widget, plural: widgets}}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: other}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: app}\n---\n\
             apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: fast}\nprovisioner: x\n",
        )],
    );
    let set = render(repo.path(), "t").unwrap();
    assert_eq!(
        names(&set),
        [
            "Namespace app",
            "CustomResourceDefinition widgets.example.com",
            "ClusterRole z",
            "StorageClass fast",
            "ConfigMap app/a",
            "ConfigMap other/b",
            "Service app/a",
        ]
    );
}

#[test]
fn the_tier_namespace_goes_only_on_namespaced_objects_that_name_none() {
    let set = render(&testdata("shop"), "validation").unwrap();
    assert_eq!(
        object(&set, "Deployment", "api").key.namespace.as_deref(),
        Some("shop-val")
    );
    assert_eq!(
        object(&set, "Deployment", "api").manifest["metadata"]["namespace"],
        "shop-val"
    );
    assert_eq!(
        object(&set, "PriorityClass", "shop-medium").key.namespace,
        None
    );
    assert!(
        object(&set, "Namespace", "shop-val").manifest["metadata"]
            .get("namespace")
            .is_none()
    );

    let repo = repo_with(
        "namespace: app\n",
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: own}\n",
        )],
    );
    assert_eq!(
        render(repo.path(), "t").unwrap().objects[0]
            .key
            .namespace
            .as_deref(),
        Some("own")
    );
}

#[test]
fn a_crd_with_cluster_scope_makes_its_kind_cluster_scoped() {
    let repo = repo_with(
        "namespace: app\n",
        &[(
            "issuer.yaml",
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: clusterissuers.cert-manager.io}\n\
             spec: {group: cert-manager.io, scope: Cluster, names: {kind: ClusterIssuer, plural: clusterissuers}, versions: [{name: v1, served: true, storage: true}]}\n---\n\
             apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: letsencrypt}\n",
        )],
    );
    let set = render(repo.path(), "t").unwrap();
    assert_eq!(names(&set)[1], "ClusterIssuer letsencrypt");
    assert_eq!(
        object(&set, "ClusterIssuer", "letsencrypt").key.namespace,
        None
    );
}

#[test]
fn a_cluster_scoped_object_that_names_a_namespace_is_refused() {
    let repo = repo_with(
        "",
        &[(
            "ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n",
        )],
    );
    assert_eq!(
        error(repo.path(), "t"),
        "base/ns.yaml line 1: Namespace a is cluster-scoped and must not set metadata.namespace \"b\""
    );
}

#[test]
fn tier_labels_and_the_tier_label_go_on_every_object() {
    let set = render(&testdata("shop"), "operational").unwrap();
    for o in &set.objects {
        let labels = &o.manifest["metadata"]["labels"];
        assert_eq!(labels[TIER_LABEL], "operational", "{}", o.key);
        assert_eq!(labels["env"], "operational", "{}", o.key);
        assert_eq!(labels["team"], "shop", "{}", o.key);
    }
    // Labels the manifest had stay; selectors and pod templates are left alone.
    let api = &object(&set, "Deployment", "api").manifest;
    assert_eq!(api["metadata"]["labels"]["app.kubernetes.io/name"], "api");
    assert!(api["spec"]["selector"]["matchLabels"].get("env").is_none());
    assert!(
        api["spec"]["template"]["metadata"]["labels"]
            .get(TIER_LABEL)
            .is_none()
    );
}

#[test]
fn vars_are_substituted_in_base_and_tier_files_and_keep_their_yaml_type() {
    let set = render(&testdata("shop"), "operational").unwrap();
    let api = &object(&set, "Deployment", "api").manifest;
    assert_eq!(api["spec"]["replicas"], json!(3));
    assert_eq!(
        api["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/shop/api:1.4.2"
    );
    assert_eq!(
        object(&set, "PriorityClass", "shop-high").manifest["value"],
        json!(100000)
    );
    // `$${HOME}` is the escape for a literal `${HOME}`.
    let cm = &object(&set, "ConfigMap", "shop-config").manifest;
    assert_eq!(
        cm["data"]["entrypoint.sh"],
        "#!/bin/sh\nexec /app/api --home \"${HOME}\"\n"
    );
}

#[test]
fn an_undefined_var_is_an_error_naming_file_and_line() {
    let shop = copy_of("shop");
    write(
        shop.path(),
        "tiers/validation/extra.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata: {v: \"${MISSING}\"}\n",
    );
    assert_eq!(
        error(shop.path(), "validation"),
        "tiers/validation/extra.yaml line 5: ${MISSING} is not defined in tiers/validation/tier.yaml vars (rule: every ${VAR} must be defined; write $${MISSING} for a literal ${MISSING})"
    );
}

#[test]
fn merge_and_json_patches_change_their_targets_and_nothing_else() {
    let shop = testdata("shop");
    let op = render(&shop, "operational").unwrap();
    let api = &object(&op, "Deployment", "api").manifest;
    assert_eq!(
        api["spec"]["template"]["spec"]["priorityClassName"],
        "shop-high"
    );
    assert_eq!(
        api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        60
    );
    // The merge patch did not touch what it does not name.
    assert_eq!(
        api["spec"]["template"]["spec"]["containers"][0]["name"],
        "api"
    );
    let worker = &object(&op, "Deployment", "worker").manifest;
    assert_eq!(worker["spec"]["replicas"], 4);
    assert_eq!(
        worker["spec"]["template"]["spec"]["priorityClassName"],
        "shop-high"
    );
    assert_eq!(
        object(&op, "HorizontalPodAutoscaler", "api").manifest["spec"]["maxReplicas"],
        30
    );

    let val = render(&shop, "validation").unwrap();
    assert_eq!(
        object(&val, "Deployment", "worker").manifest["spec"]["template"]["spec"]["containers"][0]
            ["image"],
        "registry.example.com/shop/worker:1.4.2"
    );
    let exp = render(&shop, "experimental").unwrap();
    let cm = &object(&exp, "ConfigMap", "shop-config").manifest;
    assert_eq!(cm["data"]["LOG_LEVEL"], "debug");
    assert_eq!(cm["data"]["CHECKOUT_URL"], "http://api/checkout");
}

#[test]
fn a_patch_whose_target_does_not_exist_names_tier_yaml_and_the_patch_index() {
    let repo = repo_with(
        "patches:\n  - target: {kind: ConfigMap, name: cm}\n    merge: {data: {a: c}}\n  - target: {kind: Deployment, name: gone, namespace: x}\n    merge: {spec: {}}\n",
        &[("cm.yaml", CM)],
    );
    assert_eq!(
        error(repo.path(), "t"),
        "tiers/t/tier.yaml line 4: patches[1]: no object matches target Deployment x/gone (rule: a patch must target an existing object)"
    );
}

#[test]
fn a_json_patch_that_fails_names_the_patch_and_the_object() {
    let repo = repo_with(
        "namespace: app\npatches:\n  - target: {kind: ConfigMap, name: cm}\n    json: [{op: remove, path: /data/nope}]\n",
        &[("cm.yaml", CM)],
    );
    let e = error(repo.path(), "t");
    assert!(
        e.starts_with("tiers/t/tier.yaml line 3: patches[0] on ConfigMap app/cm: "),
        "{e}"
    );
    assert!(e.ends_with("(rule: RFC 6902 JSON patch)"), "{e}");
}

#[test]
fn a_patch_with_both_or_neither_kind_of_patch_is_refused() {
    let repo = repo_with(
        "patches:\n  - target: {kind: ConfigMap, name: cm}\n",
        &[("cm.yaml", CM)],
    );
    assert_eq!(
        error(repo.path(), "t"),
        "tiers/t/tier.yaml: patches[0]: expected exactly one of `merge` (RFC 7386) or `json` (RFC 6902)"
    );
}

#[test]
fn an_unknown_field_in_tier_yaml_is_named() {
    let repo = repo_with("namespace: a\nlabel: {x: y}\n", &[("cm.yaml", CM)]);
    let e = error(repo.path(), "t");
    assert!(
        e.starts_with("tiers/t/tier.yaml: label: unknown field `label`"),
        "{e}"
    );
}

#[test]
fn duplicate_objects_in_a_tier_name_both_files() {
    let shop = copy_of("shop");
    write(
        shop.path(),
        "tiers/experimental/again.yaml",
        "# same group (apps), kind and name as base/worker.yaml\napiVersion: apps/v1beta2\nkind: Deployment\nmetadata: {name: worker, namespace: shop-exp}\n",
    );
    assert_eq!(
        error(shop.path(), "experimental"),
        "Deployment shop-exp/worker is defined twice in tier experimental: base/worker.yaml line 1 and tiers/experimental/again.yaml line 2 (rule: one definition per apiVersion group, kind, namespace and name)"
    );
}

#[test]
fn the_same_name_in_different_namespaces_or_groups_is_not_a_duplicate() {
    let repo = repo_with(
        "namespace: a\n",
        &[(
            "x.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: b}\n",
        )],
    );
    assert_eq!(render(repo.path(), "t").unwrap().objects.len(), 2);
}

#[test]
fn a_document_that_is_not_an_object_names_file_line_and_what_is_missing() {
    let repo = repo_with(
        "",
        &[(
            "x.yaml",
            "# one\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
        )],
    );
    assert_eq!(
        error(repo.path(), "t"),
        "base/x.yaml line 3: document 1 is not a Kubernetes object: metadata.name is missing or not a non-empty string (rule: every document is a mapping with apiVersion, kind and metadata.name)"
    );
}

#[test]
fn empty_documents_and_files_are_skipped() {
    let repo = repo_with(
        "",
        &[
            ("a.yaml", "---\n# nothing\n---\n"),
            ("b.yaml", ""),
            ("c.yaml", &format!("---\n{CM}---\n---\n")),
        ],
    );
    let set = render(repo.path(), "t").unwrap();
    assert_eq!(names(&set), ["ConfigMap cm"]);
    assert_eq!(set.objects[0].source.file, Path::new("base/c.yaml"));
    assert_eq!(
        (set.objects[0].source.document, set.objects[0].source.line),
        (0, 2)
    );
}

#[test]
fn rendering_twice_gives_the_same_digests() {
    let a = render(&testdata("shop"), "operational").unwrap();
    let b = render(&testdata("shop"), "operational").unwrap();
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.digest.len(), 64);
    let c = render(&testdata("shop"), "validation").unwrap();
    assert_ne!(a.digest, c.digest);
}

#[test]
fn key_order_and_formatting_do_not_change_digests_but_values_do() {
    let one = repo_with(
        "",
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {a: b, c: d}\n",
        )],
    );
    let two = repo_with(
        "",
        &[(
            "cm.yaml",
            "data:\n  c: d\n  a: b\nmetadata:\n  name: cm\nkind: ConfigMap\napiVersion: v1\n",
        )],
    );
    let three = repo_with(
        "",
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {a: b, c: e}\n",
        )],
    );
    let (one, two, three) = (
        render(one.path(), "t").unwrap(),
        render(two.path(), "t").unwrap(),
        render(three.path(), "t").unwrap(),
    );
    assert_eq!(one.objects[0].digest, two.objects[0].digest);
    assert_eq!(one.digest, two.digest);
    assert_ne!(one.objects[0].digest, three.objects[0].digest);
    assert_ne!(one.digest, three.digest);
    // The object digest is the sha256 of the canonical JSON.
    let canonical = canonical_json(&one.objects[0].manifest);
    assert!(
        canonical.starts_with(r#"{"apiVersion":"v1","data":{"a":"b","c":"d"},"kind":"ConfigMap""#)
    );
    assert_eq!(
        one.objects[0].digest,
        digest::sha256_hex(canonical.as_bytes())
    );
}

#[test]
fn a_missing_tier_directory_or_a_tier_name_that_is_a_path_is_refused() {
    assert_eq!(
        error(&testdata("shop"), "staging"),
        "tiers/staging/: no such tier directory in the config repo"
    );
    assert!(
        error(&testdata("shop"), "../shop").starts_with("tier name \"../shop\" is not a DNS label")
    );
}

// ---- hostile repositories ----

#[cfg(unix)]
#[test]
fn a_symlinked_file_that_leaves_the_repo_is_refused() {
    let repo = repo_with("", &[("cm.yaml", CM)]);
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.yaml", CM);
    std::os::unix::fs::symlink(
        outside.path().join("secret.yaml"),
        repo.path().join("base/leak.yaml"),
    )
    .unwrap();
    let e = error(repo.path(), "t");
    assert!(e.starts_with("base/leak.yaml: symlink resolves to "), "{e}");
    assert!(
        e.ends_with("outside the repository (rule: symlinks must stay inside the repo)"),
        "{e}"
    );
}

#[cfg(unix)]
#[test]
fn a_symlinked_directory_that_leaves_the_repo_is_refused() {
    let repo = repo_with("", &[]);
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "cm.yaml", CM);
    std::fs::remove_dir(repo.path().join("base")).unwrap();
    std::os::unix::fs::symlink(outside.path(), repo.path().join("base")).unwrap();
    let e = error(repo.path(), "t");
    assert!(e.starts_with("base: symlink resolves to "), "{e}");
}

#[cfg(unix)]
#[test]
fn a_symlink_that_stays_inside_the_repo_is_followed() {
    let repo = repo_with("", &[]);
    write(repo.path(), "shared/cm.yaml", CM);
    std::os::unix::fs::symlink("../shared/cm.yaml", repo.path().join("base/cm.yaml")).unwrap();
    assert_eq!(names(&render(repo.path(), "t").unwrap()), ["ConfigMap cm"]);
}

#[cfg(unix)]
#[test]
fn a_fifo_named_like_a_manifest_is_refused_rather_than_read() {
    let repo = repo_with("", &[]);
    let fifo = repo.path().join("base/pipe.yaml");
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    assert_eq!(
        error(repo.path(), "t"),
        "base/pipe.yaml: is not a regular file (rule: only regular files and directories are read)"
    );
}

fn render_limited(repo: &Path, limits: &Limits) -> Result<DesiredSet, RenderError> {
    render_tier_with(
        repo,
        "t",
        limits,
        &Kustomize::none(),
        &KindScopes::builtin(),
    )
}

#[test]
fn a_file_over_the_size_limit_is_refused() {
    let big = format!("{CM}# {}\n", "x".repeat(2 * 1024 * 1024));
    let repo = repo_with("", &[("big.yaml", &big)]);
    let limits = Limits {
        max_file_bytes: 1024 * 1024,
        ..Limits::default()
    };
    assert_eq!(
        render_limited(repo.path(), &limits)
            .unwrap_err()
            .to_string(),
        format!(
            "base/big.yaml: {} bytes is over the limit of 1048576 bytes per file (rule: max_file_bytes, a guard against abuse: split the file, or raise render.maxFileBytes)",
            big.len()
        )
    );
}

/// A CRD whose schema has `properties` properties, each with a long description, as
/// controller-gen writes them: YAML of ~380 bytes per property.
fn big_crd(group: &str, properties: usize) -> String {
    let mut y = format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.{group}\nspec:\n  group: {group}\n  names: {{kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec:\n            type: object\n            properties:\n"
    );
    for i in 0..properties {
        y.push_str(&format!(
            "              field{i:05}:\n                description: |-\n                  Field {i} of the widget. {}\n                type: string\n",
            "It says what the widget does with it, at length, as generated schemas do. ".repeat(4)
        ));
    }
    y
}

#[test]
fn a_crd_of_more_than_a_mebibyte_of_yaml_renders() {
    // Real bundles: prometheus-operator v0.85.0's bundle.yaml is 4.2 MB, its largest CRD
    // 786 KB of YAML; other projects ship CRDs of 1.4 MB of YAML.
    let crd = big_crd("widgets.render.example", 4000);
    assert!(crd.len() > 1_400_000, "{}", crd.len());
    let repo = repo_with("", &[("crd.yaml", &crd)]);
    let set = render(repo.path(), "t").unwrap();
    let o = object(
        &set,
        "CustomResourceDefinition",
        "widgets.widgets.render.example",
    );
    let props = o
        .manifest
        .pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties");
    assert_eq!(props.and_then(Value::as_object).map(Map::len), Some(4000));
}

#[test]
fn an_object_over_the_api_servers_request_limit_is_refused_naming_it_and_the_fix() {
    let text = format!(
        "{CM}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: huge}}\ndata:\n  blob: {}\n",
        "x".repeat(3 * 1024 * 1024)
    );
    let repo = repo_with("namespace: ns\n", &[("huge.yaml", &text)]);
    let e = error(repo.path(), "t");
    assert!(
        e.starts_with("base/huge.yaml line 6: ConfigMap ns/huge is 3145"),
        "{e}"
    );
    assert!(
        e.contains("bytes as JSON, over the limit of 3145728 bytes per object (rule: max_object_bytes; the API server refuses a request body over 3 MiB"),
        "{e}"
    );
    assert!(e.ends_with("make the object smaller, or raise render.maxObjectBytes only if your API server accepts it"), "{e}");
    // The limit counts what is sent: labels and namespace included.
    let limits = Limits {
        max_object_bytes: 3 * 1024 * 1024 + 4096,
        ..Limits::default()
    };
    assert!(render_limited(repo.path(), &limits).is_ok());
}

#[test]
fn a_tiers_total_is_bounded_while_parsing() {
    let cms: String = (0..50)
        .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm{i}}}\ndata: {{a: {}}}\n", "y".repeat(100_000)))
        .collect();
    let repo = repo_with("", &[("a.yaml", &cms)]);
    let limits = Limits {
        max_tier_bytes: 1024 * 1024,
        ..Limits::default()
    };
    let e = render_limited(repo.path(), &limits)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("base/a.yaml line ")
            && e.contains(
                "takes the tier's parsed objects past 1048576 bytes of memory (rule: max_tier_bytes"
            ),
        "{e}"
    );
    assert!(
        e.ends_with("split the tier, or raise render.maxTierBytes"),
        "{e}"
    );
    assert_eq!(render(repo.path(), "t").unwrap().objects.len(), 50);
}

#[test]
fn list_documents_are_expanded_into_their_items_like_kubectl() {
    let rbac = "apiVersion: v1\nkind: List\nmetadata: {}\nitems:\n\
        - apiVersion: rbac.authorization.k8s.io/v1\n  kind: Role\n  metadata: {name: reader}\n  rules: []\n\
        - apiVersion: rbac.authorization.k8s.io/v1\n  kind: RoleBinding\n  metadata: {name: reader}\n  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}\n  subjects: []\n";
    let cms = "# dashboards\n---\napiVersion: v1\nkind: ConfigMapList\nitems:\n\
        - {apiVersion: v1, kind: ConfigMap, metadata: {name: d1, labels: {app: x}}, data: {a: b}}\n\
        - {apiVersion: v1, kind: ConfigMap, metadata: {name: d2}}\n";
    let empty = "apiVersion: v1\nkind: List\nmetadata: {}\nitems: []\n---\napiVersion: v1\nkind: List\nmetadata: {resourceVersion: \"\"}\nitems: null\n";
    let repo = repo_with(
        "namespace: ns\nlabels: {team: a}\n",
        &[
            ("cms.yaml", cms),
            ("empty.yaml", empty),
            ("rbac.yaml", rbac),
        ],
    );
    let set = render(repo.path(), "t").unwrap();
    let mut got = names(&set);
    got.sort();
    assert_eq!(
        got,
        [
            "ConfigMap ns/d1",
            "ConfigMap ns/d2",
            "Role ns/reader",
            "RoleBinding ns/reader"
        ]
    );
    // Items are objects of their own: namespace and labels stamped, nothing of the List.
    let d1 = object(&set, "ConfigMap", "d1");
    assert_eq!(
        d1.manifest["metadata"]["labels"],
        json!({"app": "x", "team": "a", "gitopsd.io/tier": "t"})
    );
    assert!(d1.manifest.get("items").is_none());
    assert_eq!(d1.source.to_string(), "base/cms.yaml line 3 items[0]");
    assert_eq!((d1.source.document, d1.source.item), (1, Some(0)));
    let rb = object(&set, "RoleBinding", "reader");
    assert_eq!(rb.source.to_string(), "base/rbac.yaml line 1 items[1]");
}

#[test]
fn list_items_are_checked_like_any_object_and_named_by_index() {
    let list = |items: &str| format!("apiVersion: v1\nkind: List\nmetadata: {{}}\nitems:\n{items}");
    let cases = [
        (
            list(
                "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {}}\n",
            ),
            "base/l.yaml line 1: document 0 is not a Kubernetes object: items[1]: metadata.name is missing or not a non-empty string (rule: every document is a mapping with apiVersion, kind and metadata.name)",
        ),
        (
            list("- just text\n"),
            "base/l.yaml line 1: document 0 is not a Kubernetes object: items[0]: it is not a mapping (rule: every document is a mapping with apiVersion, kind and metadata.name)",
        ),
        (
            list("- {apiVersion: v1, kind: List, items: []}\n"),
            "base/l.yaml line 1: document 0 is a List whose items[0] is itself a List (rule: a List document holds its objects in `items`, a sequence of objects; nested Lists are not expanded: move their items up)",
        ),
        (
            "apiVersion: v1\nkind: List\nmetadata: {}\n".to_owned(),
            "base/l.yaml line 1: document 0 is a List whose `items` is missing (rule: a List document holds its objects in `items`, a sequence of objects; nested Lists are not expanded: move their items up)",
        ),
        (
            list(
                "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n",
            ),
            "ConfigMap ns/a is defined twice in tier t: base/l.yaml line 1 items[0] and base/l.yaml line 1 items[1] (rule: one definition per apiVersion group, kind, namespace and name)",
        ),
        (
            list(
                "- {apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRole, metadata: {name: r, namespace: ns}}\n",
            ),
            "base/l.yaml line 1: ClusterRole r is cluster-scoped and must not set metadata.namespace \"ns\"",
        ),
    ];
    for (text, want) in cases {
        let repo = repo_with("namespace: ns\n", &[("l.yaml", &text)]);
        assert_eq!(error(repo.path(), "t"), want, "{text}");
    }
}

#[test]
fn an_object_over_the_limit_in_a_list_is_named_by_its_item() {
    let text = format!(
        "apiVersion: v1\nkind: ConfigMapList\nitems:\n- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: a}}}}\n- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: b}}, data: {{x: {}}}}}\n",
        "z".repeat(2000)
    );
    let repo = repo_with("namespace: ns\n", &[("l.yaml", &text)]);
    let limits = Limits {
        max_object_bytes: 1000,
        ..Limits::default()
    };
    let e = render_limited(repo.path(), &limits)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("base/l.yaml line 1 items[1]: ConfigMap ns/b is 2"),
        "{e}"
    );
}

#[test]
fn a_file_that_is_not_utf8_is_refused_with_its_line() {
    let repo = repo_with("", &[]);
    std::fs::write(
        repo.path().join("base/latin1.yaml"),
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caf\xe9}\n",
    )
    .unwrap();
    assert_eq!(
        error(repo.path(), "t"),
        "base/latin1.yaml line 3: not valid UTF-8 (rule: manifests are UTF-8 text)"
    );
}

#[test]
fn a_yaml_alias_bomb_is_refused() {
    // "Billion laughs": nine levels of nine aliases expand to 9^9 strings.
    let mut bomb =
        String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\nl0: &l0 lol\n");
    for i in 1..=9 {
        let prev = format!("*l{}", i - 1);
        bomb.push_str(&format!("l{i}: &l{i} [{}]\n", vec![prev; 9].join(", ")));
    }
    let repo = repo_with("", &[("bomb.yaml", &bomb)]);
    // serde_yaml's own guard (alias replays over 100 times the document's events) stops
    // this one before our node count does.
    assert_eq!(
        error(repo.path(), "t"),
        "base/bomb.yaml line 1: document 0 replays its aliases more than 100 times its own length; a YAML alias bomb? (rule: max_document_nodes, serde_yaml's alias guard: use fewer aliases)"
    );
}

#[test]
fn a_flat_alias_expansion_under_serde_yamls_guard_is_stopped_by_the_node_count() {
    // One anchor of 100 scalars used 3,000 times: few replays per event, 300,000 nodes.
    let bomb = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: lol}}\na: &a [{}]\nb: [{}]\n",
        vec!["lol"; 100].join(", "),
        vec!["*a"; 3000].join(", ")
    );
    let repo = repo_with("", &[("bomb.yaml", &bomb)]);
    assert_eq!(
        error(repo.path(), "t"),
        "base/bomb.yaml line 1: document 0 expands to more than 250000 nodes; a YAML alias bomb? (rule: max_document_nodes; if the document is real, split it or raise render.maxDocumentNodes)"
    );
}

#[test]
fn a_document_that_expands_past_the_node_limit_is_refused_even_without_a_bomb() {
    let repo = repo_with(
        "",
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {a: '1', b: '2', c: '3'}\n",
        )],
    );
    let limits = Limits {
        max_document_nodes: 5,
        ..Limits::default()
    };
    let e = render_tier_with(
        repo.path(),
        "t",
        &limits,
        &Kustomize::none(),
        &KindScopes::builtin(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("expands to more than 5 nodes"),
        "{e}"
    );
}

#[test]
fn a_deeply_nested_document_is_refused() {
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\ndata: {}{}\n",
        "[".repeat(100),
        "]".repeat(100)
    );
    let repo = repo_with("", &[("deep.yaml", &deep)]);
    assert_eq!(
        error(repo.path(), "t"),
        "base/deep.yaml line 4: nesting deeper than 64 levels (rule: max_depth)"
    );
    // serde_yaml's own limit (128) is reported the same way.
    let deeper = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
    let repo = repo_with("", &[("deep.yaml", &deeper)]);
    assert!(error(repo.path(), "t").contains("nesting deeper than 64 levels"));
}

#[test]
fn a_tier_over_the_object_limit_is_refused() {
    let many: String = (0..11)
        .map(|i| format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n"))
        .collect();
    let repo = repo_with("", &[("many.yaml", &many)]);
    let limits = Limits {
        max_objects: 10,
        ..Limits::default()
    };
    let e = render_tier_with(
        repo.path(),
        "t",
        &limits,
        &Kustomize::none(),
        &KindScopes::builtin(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "tier t renders 11 objects, over the limit of 10 (rule: max_objects)"
    );
}

// ---- kustomize ----

/// The pinned kustomize, built once per machine by the repo's own script (a no-op when built).
fn kustomize() -> Kustomize {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-kustomize.sh");
        let out = std::process::Command::new(&script)
            .output()
            .expect("run scripts/build-kustomize.sh");
        assert!(
            out.status.success(),
            "scripts/build-kustomize.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("the script prints the binary path")
                .trim(),
        )
    });
    Kustomize::at(bin)
}

#[test]
fn a_base_with_a_kustomization_is_built_by_kustomize_and_gets_the_tier_overlay() {
    let set = render_tier_with(
        &testdata("kustomized"),
        "experimental",
        &Limits::default(),
        &kustomize(),
        &KindScopes::builtin(),
    )
    .unwrap();
    let n = names(&set);
    assert!(
        n.iter()
            .any(|n| n.starts_with("ConfigMap shop-exp/worker-config-")),
        "{n:?}"
    );
    assert!(
        n.contains(&"Deployment shop-exp/worker".to_owned()),
        "{n:?}"
    );
    for o in &set.objects {
        assert_eq!(o.manifest["metadata"]["labels"][TIER_LABEL], "experimental");
        assert_eq!(o.source.file, Path::new("base/kustomization.yaml"));
    }
}

#[test]
fn a_tier_directory_with_a_kustomization_is_the_tiers_whole_input() {
    let set = render_tier_with(
        &testdata("kustomized"),
        "validation",
        &Limits::default(),
        &kustomize(),
        &KindScopes::builtin(),
    )
    .unwrap();
    let worker = object(&set, "Deployment", "worker");
    assert_eq!(worker.key.namespace.as_deref(), Some("shop-val"));
    assert_eq!(worker.manifest["spec"]["replicas"], 2);
    assert_eq!(worker.manifest["metadata"]["labels"]["env"], "validation");
    // base/ came in once, through the overlay's resources, not a second time beside it.
    assert_eq!(set.objects.len(), 4, "{:?}", names(&set));
}

#[test]
fn a_kustomization_path_that_leaves_the_repo_is_refused_before_kustomize_runs() {
    let repo = copy_of("kustomized");
    write(
        repo.path(),
        "tiers/validation/kustomization.yaml",
        "resources: [../../base, ../../../../etc]\n",
    );
    assert_eq!(
        render_tier_with(
            repo.path(),
            "validation",
            &Limits::default(),
            &Kustomize::none(),
            &KindScopes::builtin(),
        )
        .unwrap_err()
        .to_string(),
        "tiers/validation/kustomization.yaml: resources[1] references \"../../../../etc\", which leaves the repository (rule: kustomize paths must stay inside the repo)"
    );
}

#[test]
fn a_kustomization_that_references_remote_or_absolute_locations_is_refused() {
    for (reference, field) in [
        ("https://github.com/org/repo//deploy?ref=v1", "resources[0]"),
        ("github.com/org/repo/deploy", "resources[0]"),
        ("/etc/kubernetes", "resources[0]"),
    ] {
        let repo = copy_of("kustomized");
        write(
            repo.path(),
            "base/kustomization.yaml",
            &format!("resources: [\"{reference}\"]\n"),
        );
        let e = render_tier_with(
            repo.path(),
            "experimental",
            &Limits::default(),
            &Kustomize::none(),
            &KindScopes::builtin(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            format!(
                "base/kustomization.yaml: {field} references {reference:?}, a remote or absolute location (rule: render reads only the checked-out repo)"
            )
        );
    }
}

#[cfg(unix)]
#[test]
fn a_kustomization_resource_symlinked_out_of_the_repo_is_refused() {
    let repo = copy_of("kustomized");
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "cm.yaml", CM);
    std::os::unix::fs::symlink(
        outside.path().join("cm.yaml"),
        repo.path().join("base/leak.yaml"),
    )
    .unwrap();
    write(
        repo.path(),
        "base/kustomization.yaml",
        "resources: [worker.yaml, leak.yaml]\n",
    );
    let e = render_tier_with(
        repo.path(),
        "experimental",
        &Limits::default(),
        &Kustomize::none(),
        &KindScopes::builtin(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("base/leak.yaml: symlink resolves to "), "{e}");
}

#[test]
fn a_failing_kustomize_build_names_the_kustomization_and_says_why() {
    let repo = copy_of("kustomized");
    write(
        repo.path(),
        "base/kustomization.yaml",
        "resources: [missing.yaml]\n",
    );
    let e = render_tier_with(
        repo.path(),
        "experimental",
        &Limits::default(),
        &kustomize(),
        &KindScopes::builtin(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("base/kustomization.yaml: kustomize build base failed (exit status: 1): "),
        "{e}"
    );
    assert!(e.contains("missing.yaml"), "{e}");
}

#[test]
fn a_missing_kustomize_binary_is_a_clear_error() {
    let e = render_tier_with(
        &testdata("kustomized"),
        "experimental",
        &Limits::default(),
        &Kustomize::at("/nonexistent/kustomize"),
        &KindScopes::builtin(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "base/kustomization.yaml: needs kustomize, which was not found: set GITOPSD_KUSTOMIZE or put kustomize on PATH (scripts/build-kustomize.sh builds it)"
    );
}

#[test]
fn kustomize_output_over_its_limit_is_refused() {
    let limits = Limits {
        max_kustomize_output_bytes: 100,
        ..Limits::default()
    };
    let e = render_tier_with(
        &testdata("kustomized"),
        "experimental",
        &limits,
        &kustomize(),
        &KindScopes::builtin(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("base/kustomization.yaml (kustomize build output): "),
        "{e}"
    );
    assert!(
        e.ends_with("over the limit of 100 bytes per file (rule: max_file_bytes, a guard against abuse: split the file, or raise render.kustomize.maxOutputBytes)"),
        "{e}"
    );
}

#[test]
fn vars_in_tier_yaml_are_substituted_into_its_patches_and_escapes_work_there_too() {
    let repo = repo_with(
        "vars: {V: x}\nsubstitute: []\npatches:\n  - target: {kind: ConfigMap, name: cm}\n    merge: {data: {a: \"${V}\", b: \"$${V}\"}}\n",
        &[("cm.yaml", CM)],
    );
    let set = render(repo.path(), "t").unwrap();
    assert_eq!(
        set.objects[0].manifest["data"],
        json!({"a": "x", "b": "${V}"})
    );
}

#[test]
fn var_names_and_values_are_checked_in_tier_yaml() {
    let repo = repo_with("vars: {1BAD: x}\n", &[("cm.yaml", CM)]);
    assert_eq!(
        error(repo.path(), "t"),
        "tiers/t/tier.yaml: vars.1BAD: a var name is letters, digits and '_', not starting with a digit"
    );
    let repo = repo_with("vars: {A: \"${B}\", B: x}\n", &[("cm.yaml", CM)]);
    assert_eq!(
        error(repo.path(), "t"),
        "tiers/t/tier.yaml: vars.A: a var value may not contain ${...}"
    );
}

#[test]
fn custom_yaml_tags_are_refused_with_the_file_and_line() {
    let repo = repo_with(
        "",
        &[(
            "t.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: !include secrets.yaml\n",
        )],
    );
    let e = error(repo.path(), "t");
    assert!(e.starts_with("base/t.yaml line 4: YAML syntax: "), "{e}");
    assert!(e.contains("custom YAML tags"), "{e}");
}

#[cfg(unix)]
#[test]
fn a_symlink_loop_is_an_error_naming_the_file() {
    let repo = repo_with("", &[]);
    let base = repo.path().join("base");
    std::os::unix::fs::symlink("b.yaml", base.join("a.yaml")).unwrap();
    std::os::unix::fs::symlink("a.yaml", base.join("b.yaml")).unwrap();
    let e = error(repo.path(), "t");
    assert!(e.starts_with("base/a.yaml: cannot read: "), "{e}");
}

#[cfg(unix)]
#[test]
fn a_kustomize_that_hangs_is_killed_at_the_deadline() {
    use std::os::unix::fs::PermissionsExt;
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("kustomize");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 30\n").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let limits = Limits {
        kustomize_timeout: std::time::Duration::from_millis(200),
        ..Limits::default()
    };
    let start = std::time::Instant::now();
    let e = render_tier_with(
        &testdata("kustomized"),
        "experimental",
        &limits,
        &Kustomize::at(&fake),
        &KindScopes::builtin(),
    )
    .unwrap_err()
    .to_string();
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(
        e,
        "base/kustomization.yaml: kustomize build base failed (killed after 200ms): no result within the deadline (rule: kustomize_timeout)"
    );
}

// Issue 13: scope is judged on what will be applied, and comes from the API server (or the
// built-in table offline), never from a short list.

/// tier.yaml with a namespace and the patches given (YAML items, two spaces in).
fn tier_with_patches(patches: &str) -> String {
    format!("namespace: app\nlabels: {{team: shop}}\npatches:\n{patches}")
}

#[test]
fn a_merge_patch_that_turns_a_configmap_into_a_clusterrolebinding_is_refused_naming_the_line() {
    let repo = repo_with(
        &tier_with_patches(
            "  - target: {kind: ConfigMap, name: cm}\n    merge: {data: {a: c}}\n\
             \x20 # the attack\n\
             \x20 - target: {kind: ConfigMap, name: cm}\n    merge:\n      apiVersion: rbac.authorization.k8s.io/v1\n      kind: ClusterRoleBinding\n      \
             metadata: {namespace: null}\n      roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n      \
             subjects: [{kind: Group, name: 'system:authenticated', apiGroup: rbac.authorization.k8s.io}]\n",
        ),
        &[("cm.yaml", CM)],
    );
    assert_eq!(
        error(repo.path(), "t"),
        "tiers/t/tier.yaml line 7: patches[1] changes apiVersion of ConfigMap app/cm from \"v1\" to \"rbac.authorization.k8s.io/v1\"; a patch may not change the apiVersion, kind, metadata.name or metadata.namespace of its target (rule: scope and security are checked on what the file says the object is): write the other object in its own manifest instead"
    );
}

#[test]
fn json_patches_may_not_change_kind_name_or_namespace_by_any_op() {
    let cases = [
        (
            "[{op: replace, path: /kind, value: Secret}]",
            "kind",
            "\"ConfigMap\"",
            "\"Secret\"",
        ),
        (
            "[{op: add, path: /kind, value: Secret}]",
            "kind",
            "\"ConfigMap\"",
            "\"Secret\"",
        ),
        (
            "[{op: copy, from: /data/k, path: /kind}]",
            "kind",
            "\"ConfigMap\"",
            "\"ClusterRole\"",
        ),
        (
            "[{op: move, from: /data/k, path: /kind}]",
            "kind",
            "\"ConfigMap\"",
            "\"ClusterRole\"",
        ),
        (
            "[{op: replace, path: /metadata/name, value: other}]",
            "metadata.name",
            "\"cm\"",
            "\"other\"",
        ),
        (
            "[{op: remove, path: /metadata/namespace}]",
            "metadata.namespace",
            "\"app\"",
            "(none)",
        ),
        (
            "[{op: move, from: /metadata/namespace, path: /data/ns}]",
            "metadata.namespace",
            "\"app\"",
            "(none)",
        ),
        (
            "[{op: replace, path: /metadata/namespace, value: kube-system}]",
            "metadata.namespace",
            "\"app\"",
            "\"kube-system\"",
        ),
        (
            "[{op: replace, path: /metadata, value: {name: cm}}]",
            "metadata.namespace",
            "\"app\"",
            "(none)",
        ),
        (
            "[{op: replace, path: /apiVersion, value: v2}]",
            "apiVersion",
            "\"v1\"",
            "\"v2\"",
        ),
    ];
    for (ops, field, from, to) in cases {
        let repo = repo_with(
            &tier_with_patches(&format!(
                "  - target: {{kind: ConfigMap, name: cm}}\n    json: {ops}\n"
            )),
            &[(
                "cm.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {k: ClusterRole}\n",
            )],
        );
        let e = error(repo.path(), "t");
        assert!(
            e.starts_with(&format!(
                "tiers/t/tier.yaml line 4: patches[0] changes {field} of ConfigMap app/cm from {from} to {to}; "
            )),
            "{ops}: {e}"
        );
    }
}

#[test]
fn a_merge_patch_may_not_add_a_namespace_or_rename() {
    for (merge, field) in [
        ("{metadata: {namespace: kube-system}}", "metadata.namespace"),
        ("{metadata: {name: admin}}", "metadata.name"),
    ] {
        let repo = repo_with(
            &format!(
                "patches:\n  - target: {{kind: ClusterRole, name: reader}}\n    merge: {merge}\n"
            ),
            &[(
                "cr.yaml",
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\nrules: []\n",
            )],
        );
        let e = error(repo.path(), "t");
        assert!(
            e.starts_with(&format!(
                "tiers/t/tier.yaml line 2: patches[0] changes {field} of ClusterRole reader"
            )),
            "{e}"
        );
    }
}

#[test]
fn a_patch_that_leaves_identity_alone_still_applies() {
    let repo = repo_with(
        &tier_with_patches(
            "  - target: {kind: ConfigMap, name: cm, namespace: app}\n    json: [{op: replace, path: /kind, value: ConfigMap}, {op: add, path: /data/x, value: y}]\n",
        ),
        &[("cm.yaml", CM)],
    );
    let set = render(repo.path(), "t").unwrap();
    assert_eq!(set.objects[0].manifest["data"]["x"], "y");
    assert_eq!(set.objects[0].scope, ObjectScope::Namespaced);
}

#[test]
fn cluster_scoped_kinds_the_old_list_missed_get_no_namespace() {
    let kinds = [
        ("admissionregistration.k8s.io/v1", "MutatingAdmissionPolicy"),
        (
            "admissionregistration.k8s.io/v1",
            "MutatingAdmissionPolicyBinding",
        ),
        ("storage.k8s.io/v1", "VolumeAttributesClass"),
        ("networking.k8s.io/v1", "ServiceCIDR"),
        ("networking.k8s.io/v1", "IPAddress"),
        ("resource.k8s.io/v1", "DeviceClass"),
        ("resource.k8s.io/v1", "ResourceSlice"),
        ("certificates.k8s.io/v1beta1", "ClusterTrustBundle"),
        ("storagemigration.k8s.io/v1beta1", "StorageVersionMigration"),
    ];
    let docs: Vec<String> = kinds
        .iter()
        .enumerate()
        .map(|(i, (av, k))| format!("apiVersion: {av}\nkind: {k}\nmetadata: {{name: x{i}}}\n"))
        .collect();
    let repo = repo_with("namespace: app\n", &[("all.yaml", &docs.join("---\n"))]);
    let set = render(repo.path(), "t").unwrap();
    assert_eq!(set.objects.len(), kinds.len());
    for o in &set.objects {
        assert_eq!(o.key.namespace, None, "{}", o.key);
        assert!(o.manifest["metadata"].get("namespace").is_none());
        assert_eq!(o.scope, ObjectScope::Cluster, "{}", o.key);
    }
}

#[test]
fn a_kind_nobody_knows_gets_no_namespace_and_an_unknown_scope() {
    let repo = repo_with(
        "namespace: app\n",
        &[(
            "w.yaml",
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\n\
             apiVersion: v1\nkind: List\nmetadata: {name: l}\nitems: []\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1beta1\nkind: ClusterRoleBinding\nmetadata: {name: old}\n",
        )],
    );
    let set = render(repo.path(), "t").unwrap();
    for o in &set.objects {
        assert_eq!(o.key.namespace, None, "{}", o.key);
        assert_eq!(o.scope, ObjectScope::Unknown { offline: true });
    }
    // The API server's answer, where it has one, is what counts.
    let served = KindScopes::discovered([(
        "example.com/v1".to_owned(),
        "Widget".to_owned(),
        KindScope::Cluster,
    )]);
    let set = render_tier_with(
        repo.path(),
        "t",
        &Limits::default(),
        &Kustomize::none(),
        &served,
    )
    .unwrap();
    let w = object(&set, "Widget", "w");
    assert_eq!(
        (w.scope, w.key.namespace.as_deref()),
        (ObjectScope::Cluster, None)
    );
    // Discovery knows no ConfigMap here: it is not stamped either.
    assert_eq!(
        object(&set, "ClusterRoleBinding", "old").scope,
        ObjectScope::Unknown { offline: false }
    );
}

#[test]
fn a_crd_in_the_set_cannot_redeclare_a_served_kinds_scope() {
    let repo = repo_with(
        "namespace: app\n",
        &[(
            "crd.yaml",
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: clusterrolebindings.rbac.authorization.k8s.io}\n\
             spec: {group: rbac.authorization.k8s.io, scope: Namespaced, names: {kind: ClusterRoleBinding, plural: clusterrolebindings}, versions: [{name: v1, served: true, storage: true}]}\n",
        )],
    );
    assert_eq!(
        error(repo.path(), "t"),
        "base/crd.yaml line 1: CustomResourceDefinition clusterrolebindings.rbac.authorization.k8s.io declares ClusterRoleBinding in rbac.authorization.k8s.io/v1 namespaced, but the API server knows it as cluster-scoped (rule: a kind's scope cannot change; fix spec.scope or the CRD's group and kind)"
    );
}

#[test]
fn a_patch_that_makes_a_crd_cluster_scoped_leaves_the_stamped_namespace_for_validation_to_see() {
    let repo = repo_with(
        "namespace: app\npatches:\n  - target: {kind: CustomResourceDefinition, name: widgets.example.com}\n    merge: {spec: {scope: Cluster}}\n",
        &[(
            "w.yaml",
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\n\
             spec: {group: example.com, scope: Namespaced, names: {kind: Widget, plural: widgets}, versions: [{name: v1, served: true, storage: true}]}\n---\n\
             apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
        )],
    );
    let set = render(repo.path(), "t").unwrap();
    let w = object(&set, "Widget", "w");
    assert_eq!(w.scope, ObjectScope::Cluster);
    assert_eq!(w.key.namespace.as_deref(), Some("app"));
}

#[test]
fn a_kustomize_patch_that_changes_kind_is_judged_by_the_kind_it_produces() {
    let repo = copy_of("kustomized");
    write(
        repo.path(),
        "tiers/validation/kustomization.yaml",
        "resources: [../../base]\nnamespace: shop-val\npatches:\n- target: {kind: ConfigMap}\n  patch: |-\n    - {op: replace, path: /apiVersion, value: rbac.authorization.k8s.io/v1}\n    - {op: replace, path: /kind, value: ClusterRoleBinding}\n",
    );
    let set = render_tier_with(
        repo.path(),
        "validation",
        &Limits::default(),
        &kustomize(),
        &KindScopes::builtin(),
    )
    .unwrap();
    let crb: Vec<_> = set
        .objects
        .iter()
        .filter(|o| o.key.kind == "ClusterRoleBinding")
        .collect();
    assert!(!crb.is_empty(), "{:?}", names(&set));
    // Judged as the cluster-scoped kind it now is (validation blocks it in a tier without
    // clusterScoped), never as the ConfigMap it was.
    for o in crb {
        assert_eq!(o.scope, ObjectScope::Cluster);
        assert_eq!(o.key.namespace, None);
    }
}
