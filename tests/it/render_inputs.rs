//! Real install manifests as projects ship them, taken unchanged (issue 14, items 1, 3, 8):
//! a CRD of more than a MiB of YAML, `List` and `ConfigMapList` documents, YAML merge keys,
//! a byte order mark and CRLF line ends, a Secret of empty placeholders. `gitopsd validate`
//! renders and validates them; `gitopsd run` applies them to the local cluster.

use crate::reconcile_support;
use crate::support;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use reconcile_support::{Fixture, TierExtra};
use support::{gitopsd, stderr, stdout};

/// A CRD as controller-gen writes them: `properties` string fields, each with a long
/// description; ~380 bytes of YAML per property.
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

const RBAC_LIST: &str = "apiVersion: v1
kind: List
metadata: {}
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: Role
  metadata: {name: widget-reader}
  rules:
  - {apiGroups: [''], resources: [configmaps], verbs: [get, list, watch]}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: RoleBinding
  metadata: {name: widget-reader}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: widget-reader}
  subjects:
  - {kind: ServiceAccount, name: default}
";

const DASHBOARDS: &str = "# Dashboards, as a monitoring stack ships them.
---
apiVersion: v1
kind: ConfigMapList
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: dashboard-a}
  data: {a.json: '{\"title\": \"A\"}'}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: dashboard-b}
  data: {b.json: '{\"title\": \"B\"}'}
---
apiVersion: v1
kind: List
metadata: {}
items: []
---
# nothing but a comment
";

/// Two containers sharing settings through a YAML merge key: the second takes the first's
/// keys and overrides some. A file mode written in octal, as YAML 1.1 (kubectl) reads it.
const MERGED: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: merged}
spec:
  selector: {matchLabels: {app: merged}}
  template:
    metadata: {labels: {app: merged}}
    spec:
      securityContext: {runAsNonRoot: true}
      volumes:
      - name: dashboards
        configMap: {name: dashboard-a, defaultMode: 0644}
      containers:
      - &container
        name: a
        image: registry.example.com/a:1.0.0
        imagePullPolicy: IfNotPresent
        securityContext: {runAsNonRoot: true, allowPrivilegeEscalation: false}
        resources: {limits: {cpu: 100m, memory: 64Mi}}
      - <<: *container
        name: b
        image: registry.example.com/b:1.0.0
        imagePullPolicy: Always
";

/// A webhook's certificate Secret, filled in by the operator at run time.
const PLACEHOLDER_SECRET: &str = "apiVersion: v1
kind: Secret
metadata: {name: webhook-certs}
type: kubernetes.io/tls
data:
  tls.crt: ''
  tls.key: ''
";

/// A file saved on Windows: byte order mark and CRLF line ends.
fn windows_file() -> String {
    "\u{feff}apiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n  name: from-windows\r\ndata:\r\n  script: |\r\n    echo one\r\n    \techo tabbed\r\n"
        .to_owned()
}

fn files(group: &str) -> Vec<(String, String)> {
    vec![
        ("base/crd.yaml".into(), big_crd(group, 4000)),
        ("base/rbac.yaml".into(), RBAC_LIST.into()),
        ("base/dashboards.yaml".into(), DASHBOARDS.into()),
        ("base/merged.yaml".into(), MERGED.into()),
        ("base/secret.yaml".into(), PLACEHOLDER_SECRET.into()),
        ("base/windows.yaml".into(), windows_file()),
    ]
}

fn write(dir: &Path, files: &[(String, String)]) {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

#[test]
fn validate_takes_real_manifest_shapes_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let mut all = files("widgets.render-inputs.example");
    all.push(("tiers/prod/tier.yaml".into(), "namespace: prod\n".into()));
    all.push((
        "gitopsd.yaml".into(),
        "source: {url: .}\ntiers:\n  - {name: prod, ref: main, namespaces: [prod], clusterScoped: true}\n".into(),
    ));
    write(repo, &all);
    assert!(
        all[0].1.len() > 1_400_000,
        "the CRD is {} bytes",
        all[0].1.len()
    );
    let config = repo.join("gitopsd.yaml");
    let out = gitopsd(&[
        "validate",
        "--config",
        config.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
        "--offline",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    // CRD, Role, RoleBinding, 2 dashboards, Deployment, Secret, ConfigMap: the last tier,
    // where security findings block, and none is found.
    assert!(
        text.contains("tier prod: 8 objects, 0 blocking, 0 warnings"),
        "{text}"
    );

    // The objects as rendered: List items on their own, the merge expanded.
    let out = gitopsd(&[
        "render",
        "--tier",
        "prod",
        "--repo",
        repo.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let items = list["items"].as_array().expect("items");
    let find = |kind: &str, name: &str| {
        items
            .iter()
            .find(|i| i["kind"] == kind && i["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind} {name} not rendered"))
    };
    assert_eq!(
        find("RoleBinding", "widget-reader")["metadata"]["namespace"],
        "prod"
    );
    assert_eq!(
        find("ConfigMap", "dashboard-b")["data"]["b.json"],
        "{\"title\": \"B\"}"
    );
    let c = &find("Deployment", "merged")["spec"]["template"]["spec"]["containers"];
    assert_eq!(c[0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c[1]["imagePullPolicy"], "Always");
    assert_eq!(c[1]["resources"]["limits"]["memory"], "64Mi");
    let volumes = &find("Deployment", "merged")["spec"]["template"]["spec"]["volumes"];
    assert_eq!(volumes[0]["configMap"]["defaultMode"], 420);
    assert_eq!(
        find("ConfigMap", "from-windows")["data"]["script"],
        "echo one\n\techo tabbed\n"
    );
}

/// Deletes the test's CRD (cluster-scoped, its group unique to the test) when dropped.
struct CrdGuard(String);

impl Drop for CrdGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        support::cleanup_blocking(move |client| async move {
            let api: Api<CustomResourceDefinition> = Api::all(client);
            let _ = api.delete(&name, &Default::default()).await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_applies_real_manifest_shapes_unchanged() {
    // The CRD's group carries the tier's random name, so it is this test's own.
    let mut f = Fixture::new("ri", Vec::new(), TierExtra::default());
    let group = format!("{}.render-inputs.example", f.tier);
    f.write_files(&files(&group));
    let head = f.commit("real manifest shapes");
    let _crd = CrdGuard(format!("widgets.{group}"));
    f.start();
    f.wait_synced_healthy(&head, Duration::from_secs(120)).await;

    let client = support::client().await;
    let ns = f.tier.as_str();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .get(&format!("widgets.{group}"))
        .await
        .expect("CRD applied");
    let props = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| s.properties.as_ref())
        .and_then(|p| p.get("spec"))
        .and_then(|s| s.properties.as_ref())
        .map(|p| p.len());
    assert_eq!(props, Some(4000));
    let roles: Api<Role> = Api::namespaced(client.clone(), ns);
    roles
        .get("widget-reader")
        .await
        .expect("Role from the List");
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    bindings
        .get("widget-reader")
        .await
        .expect("RoleBinding from the List");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for name in ["dashboard-a", "dashboard-b", "from-windows"] {
        cms.get(name)
            .await
            .unwrap_or_else(|e| panic!("ConfigMap {name}: {e}"));
    }
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let d = deps.get("merged").await.expect("Deployment");
    let d = serde_json::to_value(d).expect("JSON");
    let c = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        (&c[0]["imagePullPolicy"], &c[1]["imagePullPolicy"]),
        (&"IfNotPresent".into(), &"Always".into())
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["volumes"][0]["configMap"]["defaultMode"],
        420
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .get("webhook-certs")
        .await
        .expect("placeholder Secret");
}

#[test]
fn list_items_are_validated_like_any_object_and_named_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let all: Vec<(String, String)> = vec![
        (
            "base/pods.yaml".into(),
            "apiVersion: v1\nkind: PodList\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: fine}\n  spec:\n    securityContext: {runAsNonRoot: true}\n    containers: [{name: c, image: 'busybox:1.36'}]\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: debug}\n  spec:\n    securityContext: {runAsNonRoot: true}\n    containers: [{name: sh, image: 'busybox:1.36', securityContext: {privileged: true}}]\n".into(),
        ),
        ("tiers/ops/tier.yaml".into(), "namespace: ops\n".into()),
        (
            "gitopsd.yaml".into(),
            "source: {url: .}\ntiers:\n  - {name: ops, ref: main, namespaces: [ops]}\n".into(),
        ),
    ];
    write(repo, &all);
    let config = repo.join("gitopsd.yaml");
    let out = gitopsd(&[
        "validate",
        "--config",
        config.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
        "--offline",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.contains("tier ops: error: base/pods.yaml line 1 items[1]: Pod ops/debug: container \"sh\" is privileged [security/privileged-container]"),
        "{text}"
    );
    assert!(text.contains("tier ops: 2 objects, 1 blocking"), "{text}");
}
