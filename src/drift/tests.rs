use serde_json::json;

use super::*;
use crate::diff::{FieldPath, PathSegment};

fn path(text: &[PathSegment]) -> FieldPath {
    FieldPath(text.to_vec())
}

fn field(f: &str) -> PathSegment {
    PathSegment::Field(f.to_owned())
}

fn extra_item(name: &str, annotations: serde_json::Value) -> crate::classify::DriftItem {
    let tier: TierConfig =
        serde_yaml::from_str("{name: t, ref: main, namespaces: [t]}").expect("tier");
    let object = ObjectKey {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some("t".into()),
        name: name.into(),
    };
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "t", "annotations": annotations,
            "labels": {crate::render::TIER_LABEL: "t"}}});
    classify(
        &object,
        Some(&live),
        &ObjectDiff::Extra,
        &tier,
        &HashSet::new(),
    )
    .remove(0)
}

#[test]
fn an_extra_object_in_the_inventory_is_pruned_if_prune_deletes_it_else_reported_with_why() {
    use crate::config::Action;
    let report = |items| DriftReport {
        tier: "t".into(),
        items,
        in_sync: 0,
        drifted: 3,
        counts: SeverityCounts::default(),
        dismissed_by_dry_run: 0,
    };
    let items = vec![
        extra_item("left-git", json!({})),
        extra_item("kept", json!({crate::apply::PRUNE_ANNOTATION: "disabled"})),
        extra_item("foreign", json!({})),
    ];
    let in_inventory = |k: &ObjectKey| k.name != "foreign";
    let pruning: TierConfig =
        serde_yaml::from_str("{name: t, ref: main, namespaces: [t], prune: true}").expect("tier");
    let mut r = report(items.clone());
    settle_extras(&mut r, &pruning, &in_inventory);
    let got: Vec<(&str, Action)> = r
        .items
        .iter()
        .map(|i| (i.key.name.as_str(), i.action))
        .collect();
    assert_eq!(
        got,
        [
            ("left-git", Action::Prune),
            ("kept", Action::Ignore),
            ("foreign", Action::Alert)
        ]
    );
    let reason = |i: usize, r: &DriftReport| r.items[i].reason.clone().unwrap_or_default();
    assert!(
        reason(1, &r).contains("gitopsd.io/prune: disabled"),
        "{}",
        reason(1, &r)
    );
    assert_eq!(reason(2, &r), crate::classify::NOT_IN_INVENTORY);

    // Prune off: nothing is pruned, each says why.
    let off: TierConfig =
        serde_yaml::from_str("{name: t, ref: main, namespaces: [t]}").expect("tier");
    let mut r = report(items);
    settle_extras(&mut r, &off, &in_inventory);
    assert_eq!(r.items[0].action, Action::Alert);
    assert!(
        reason(0, &r).contains("prune is off for tier t"),
        "{}",
        reason(0, &r)
    );
    assert_eq!(r.items[1].action, Action::Ignore, "it asks to be kept");
}

#[test]
fn a_difference_the_dry_run_reproduces_is_a_default_not_drift() {
    let live = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "nodePort": 30001}]}});
    let dry_run = live.clone();
    let local = vec![FieldDiff {
        path: path(&[
            field("spec"),
            field("ports"),
            PathSegment::Keyed(vec![
                ("port".into(), "80".into()),
                ("protocol".into(), "TCP".into()),
            ]),
            field("nodePort"),
        ]),
        desired: None,
        live: Some(json!(30001)),
    }];
    assert!(confirmed_diffs(local, &dry_run, &live).is_empty());
}

#[test]
fn a_difference_the_dry_run_would_correct_is_drift() {
    let live = json!({"spec": {"containers": [{"name": "api", "image": "evil:1"}]}});
    let dry_run = json!({"spec": {"containers": [{"name": "api", "image": "api:2"}]}});
    let local = vec![FieldDiff {
        path: path(&[
            field("spec"),
            field("containers"),
            PathSegment::Keyed(vec![("name".into(), "api".into())]),
            field("image"),
        ]),
        desired: Some(json!("api:2")),
        live: Some(json!("evil:1")),
    }];
    assert_eq!(confirmed_diffs(local, &dry_run, &live).len(), 1);
}

#[test]
fn a_configmap_value_that_only_looks_like_a_quantity_stays_drift_through_the_dry_run() {
    // Issue 15 a: "1.10" and "1.1" are one quantity but two strings. The local comparison
    // reports the difference (data of a ConfigMap is text); the dry-run, which returns the
    // manifest's "1.10" as stored, differs from the live "1.1", so it cannot dismiss it.
    let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"storage": "1.10"}});
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"storage": "1.1"}});
    let local = crate::diff::compare(&desired, &live, None);
    assert_eq!(local.len(), 1, "{local:?}");
    let dry_run = desired.clone();
    let confirmed = confirmed_diffs(local, &dry_run, &live);
    assert_eq!(confirmed.len(), 1);
    assert_eq!(confirmed[0].path.to_string(), "data.storage");
}

#[test]
fn absent_null_and_empty_are_one_value_when_confirming() {
    assert!(same(None, Some(&json!({}))));
    assert!(same(Some(&Value::Null), Some(&json!([]))));
    assert!(!same(None, Some(&json!(0))));
}

/// One live object, as a cache would hold it.
struct OneLive(Value);

impl LiveObjects for OneLive {
    async fn get(&self, _: &ObjectKey) -> Result<Option<Value>, LiveError> {
        Ok(Some(self.0.clone()))
    }
    async fn labelled(&self, _: &str, _: &[(String, String)]) -> Result<Vec<Value>, LiveError> {
        Ok(Vec::new())
    }
    async fn labelled_keys(
        &self,
        _: &str,
        _: &[(String, String)],
    ) -> Result<Vec<ObjectKey>, LiveError> {
        Ok(Vec::new())
    }
}

/// A dry-run whose answer is the live object itself: every local difference is "a default".
struct EchoDryRun;

impl DryRun for EchoDryRun {
    async fn dry_run(&self, _: &DesiredObject, live: &Value) -> Result<Value, DriftError> {
        Ok(live.clone())
    }
}

fn testdata(name: &str) -> Value {
    let path = format!(
        "{}/src/diff/testdata/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("JSON")
}

fn set_of(manifest: Value) -> DesiredSet {
    let o = DesiredObject {
        key: ObjectKey {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: manifest["metadata"]["namespace"]
                .as_str()
                .map(str::to_owned),
            name: manifest["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .into(),
        },
        scope: crate::render::ObjectScope::Namespaced,
        manifest,
        source: crate::render::SourceLocation {
            file: "base/api.yaml".into(),
            document: 0,
            line: 1,
            item: None,
        },
        digest: "d".into(),
    };
    DesiredSet {
        tier: "t".into(),
        objects: vec![o],
        digest: "s".into(),
    }
}

#[tokio::test]
async fn a_foreign_security_field_is_critical_drift_that_no_dry_run_dismisses() {
    let desired = testdata("deployment-desired");
    let mut live = testdata("deployment-fresh");
    // Another manager's privileged flag; and an image change the dry-run will call a default,
    // so the dry-run runs and dismisses what it can.
    live["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] =
        json!(true);
    live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:1");
    live["metadata"]["managedFields"]
        .as_array_mut()
        .expect("managedFields")
        .push(json!({"manager": "kubectl-patch", "operation": "Update",
            "time": "2030-01-01T00:00:00Z", "fieldsV1": {"f:spec": {"f:template": {"f:spec":
            {"f:containers": {"k:{\"name\":\"api\"}": {"f:securityContext":
            {"f:privileged": {}}}}}}}}}));
    let tier: TierConfig =
        serde_yaml::from_str("{name: t, ref: main, namespaces: [t]}").expect("tier");
    let report = detect(&set_of(desired), &tier, &OneLive(live), &EchoDryRun)
        .await
        .expect("detect");
    assert_eq!(report.dismissed_by_dry_run, 1, "{report:#?}");
    assert_eq!(report.items.len(), 1, "{report:#?}");
    let item = &report.items[0];
    assert_eq!(
        item.field_path.as_ref().map(ToString::to_string).as_deref(),
        Some("spec.template.spec.containers[name=api].securityContext.privileged")
    );
    assert_eq!(item.severity, Severity::Critical);
    assert_eq!(item.rule, crate::classify::FOREIGN_SECURITY_RULE);
    assert_eq!(
        item.foreign.as_ref().and_then(|f| f.manager.as_deref()),
        Some("kubectl-patch")
    );
    assert_eq!((report.drifted, report.in_sync), (1, 0));
    assert_eq!(report.counts.critical, 1);
}

/// One live object under every key, and labelled keys as a cache watching a kind at two
/// versions lists them: each object once per version.
struct TwoVersions(Value, Vec<ObjectKey>);

impl LiveObjects for TwoVersions {
    async fn get(&self, _: &ObjectKey) -> Result<Option<Value>, LiveError> {
        Ok(Some(self.0.clone()))
    }
    async fn labelled(&self, _: &str, _: &[(String, String)]) -> Result<Vec<Value>, LiveError> {
        Ok(Vec::new())
    }
    async fn labelled_keys(
        &self,
        _: &str,
        _: &[(String, String)],
    ) -> Result<Vec<ObjectKey>, LiveError> {
        Ok(self.1.clone())
    }
}

#[tokio::test]
async fn extra_objects_are_found_by_identity_not_version() {
    let desired = testdata("deployment-desired");
    let set = set_of(desired.clone());
    let key = |version: &str, name: &str| ObjectKey {
        api_version: format!("apps/{version}"),
        kind: "Deployment".into(),
        namespace: set.objects[0].key.namespace.clone(),
        name: name.into(),
    };
    let name = set.objects[0].key.name.clone();
    let labelled = vec![
        key("v1", &name),
        // The desired object, listed again under another version of its group.
        key("v1beta2", &name),
        // A real extra object, listed under both versions: reported once.
        key("v1", "stray"),
        key("v1beta2", "stray"),
    ];
    let tier: TierConfig =
        serde_yaml::from_str("{name: t, ref: main, namespaces: [t]}").expect("tier");
    let report = detect(&set, &tier, &TwoVersions(desired, labelled), &EchoDryRun)
        .await
        .expect("detect");
    let extra: Vec<&str> = report
        .items
        .iter()
        .filter(|i| i.rule == "extra-object")
        .map(|i| i.key.name.as_str())
        .collect();
    assert_eq!(extra, ["stray"], "{:?}", report.items);
}
