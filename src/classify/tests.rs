use std::collections::{BTreeSet, HashSet};

use serde_json::{Value, json};

use super::mask::LAST_APPLIED;
use super::*;
use crate::config::{Action, Policy, TierConfig};
use crate::diff::{FieldDiff, FieldPath, ObjectDiff, PathSegment};

/// `spec.template.spec.containers[name=api].image` as a FieldPath (keys without dots only).
fn path(s: &str) -> FieldPath {
    let mut segments = Vec::new();
    for part in s.split('.') {
        let (field, rest) = part.split_once('[').unwrap_or((part, ""));
        segments.push(PathSegment::Field(field.to_owned()));
        if let Some(inner) = rest.strip_suffix(']') {
            segments.push(match inner.parse::<usize>() {
                Ok(i) => PathSegment::Index(i),
                Err(_) => PathSegment::Keyed(
                    inner
                        .split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                ),
            });
        }
    }
    FieldPath(segments)
}

fn tier_with(extra: &str) -> TierConfig {
    serde_yaml::from_str(&format!("{{name: t, ref: main, namespaces: [t]{extra}}}"))
        .expect("test tier parses")
}

fn object(kind: &str) -> ObjectKey {
    ObjectKey {
        api_version: "v1".into(),
        kind: kind.into(),
        namespace: Some("shop".into()),
        name: "api".into(),
    }
}

fn deployment_manifest() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop", "labels": {"app": "api", "team": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "template": {"metadata": {"labels": {"app": "api", "team": "web"}}}
        }
    })
}

fn classify_field(
    kind: &str,
    field: &str,
    desired: Value,
    live: Value,
    tier: &TierConfig,
) -> Vec<DriftItem> {
    let manifest = deployment_manifest();
    let diff = ObjectDiff::Changed(vec![FieldDiff {
        path: path(field),
        desired: Some(desired),
        live: Some(live),
    }]);
    classify(&object(kind), Some(&manifest), &diff, tier, &HashSet::new())
}

/// (severity, rule) of one field diff under the defaults.
fn decided(kind: &str, field: &str) -> (Severity, String) {
    let items = classify_field(kind, field, json!("a"), json!("b"), &tier_with(""));
    assert_eq!(items.len(), 1, "{kind} {field}: {items:?}");
    (items[0].severity, items[0].rule.to_string())
}

/// Every default rule, by an example path; `each_default_rule_has_a_row` keeps it complete.
const TABLE: &[(&str, &str, Severity, &str)] = {
    use Severity::*;
    &[
        (
            "Deployment",
            "spec.template.spec.containers[name=api].securityContext.privileged",
            Critical,
            "privileged",
        ),
        (
            "Pod",
            "spec.containers[name=api].securityContext.allowPrivilegeEscalation",
            Critical,
            "privileged",
        ),
        (
            "Deployment",
            "spec.template.spec.containers[name=api].securityContext.capabilities.add[0]",
            Critical,
            "capabilities",
        ),
        (
            "Deployment",
            "spec.template.spec.hostNetwork",
            Critical,
            "host-namespaces",
        ),
        (
            "DaemonSet",
            "spec.template.spec.hostPID",
            Critical,
            "host-namespaces",
        ),
        ("Pod", "spec.hostIPC", Critical, "host-namespaces"),
        (
            "Deployment",
            "spec.template.spec.volumes[name=root].hostPath.path",
            Critical,
            "hostpath-volume",
        ),
        (
            "Deployment",
            "spec.template.spec.securityContext.runAsUser",
            Critical,
            "security-context",
        ),
        (
            "Deployment",
            "spec.template.spec.initContainers[name=init].securityContext.runAsNonRoot",
            Critical,
            "security-context",
        ),
        (
            "Deployment",
            "spec.template.spec.serviceAccountName",
            Critical,
            "service-account",
        ),
        (
            "Pod",
            "spec.automountServiceAccountToken",
            Critical,
            "automount-service-account-token",
        ),
        (
            "Deployment",
            "spec.template.spec.containers[name=api].image",
            Critical,
            "container-image",
        ),
        (
            "CronJob",
            "spec.jobTemplate.spec.template.spec.initContainers[name=init].image",
            Critical,
            "container-image",
        ),
        (
            "Pod",
            "spec.ephemeralContainers[name=debug].image",
            Critical,
            "container-image",
        ),
        (
            "Deployment",
            "spec.template.spec.containers[name=sidecar]",
            Critical,
            "container-added-or-removed",
        ),
        ("Role", "rules[0].verbs", Critical, "rbac-rules"),
        (
            "ClusterRole",
            "aggregationRule.clusterRoleSelectors[0]",
            Critical,
            "rbac-rules",
        ),
        ("RoleBinding", "subjects[0].name", Critical, "rbac-subjects"),
        (
            "ClusterRoleBinding",
            "roleRef.name",
            Critical,
            "rbac-role-ref",
        ),
        (
            "NetworkPolicy",
            "spec.ingress[0].from[0].podSelector",
            Critical,
            "network-policy",
        ),
        ("Secret", "data.password", Critical, "secret-data"),
        ("Secret", "stringData.token", Critical, "secret-data"),
        (
            "ValidatingWebhookConfiguration",
            "webhooks[name=check].clientConfig.url",
            Critical,
            "admission-webhooks",
        ),
        (
            "MutatingWebhookConfiguration",
            "webhooks[name=inject].rules[0]",
            Critical,
            "admission-webhooks",
        ),
        (
            "Deployment",
            "spec.template.spec.containers[name=api].command[0]",
            High,
            "container-command",
        ),
        (
            "Deployment",
            "spec.template.spec.containers[name=api].args",
            High,
            "container-command",
        ),
        (
            "Deployment",
            "spec.template.spec.containers[name=api].env[name=LOG].value",
            High,
            "container-env",
        ),
        (
            "Deployment",
            "spec.template.spec.initContainers[name=init].envFrom[0]",
            High,
            "container-env",
        ),
        (
            "Deployment",
            "spec.template.spec.containers[name=api].resources.limits.memory",
            High,
            "container-resources",
        ),
        (
            "Deployment",
            "spec.template.spec.containers[name=api].livenessProbe.periodSeconds",
            High,
            "container-probes",
        ),
        (
            "Deployment",
            "spec.template.spec.containers[name=api].readinessProbe",
            High,
            "container-probes",
        ),
        (
            "StatefulSet",
            "spec.template.spec.containers[name=db].startupProbe.httpGet.path",
            High,
            "container-probes",
        ),
        (
            "Deployment",
            "spec.template.spec.volumes[name=config].configMap.name",
            High,
            "volumes",
        ),
        ("Deployment", "spec.replicas", High, "replicas"),
        ("StatefulSet", "spec.replicas", High, "replicas"),
        ("ReplicaSet", "spec.replicas", High, "replicas"),
        ("Service", "spec.selector.app", High, "service-selector"),
        (
            "Service",
            "spec.ports[port=80,protocol=TCP].targetPort",
            High,
            "service-ports",
        ),
        ("ConfigMap", "data.settings", High, "configmap-data"),
        ("ConfigMap", "binaryData.blob", High, "configmap-data"),
        ("Ingress", "spec.rules[0].host", High, "ingress-rules"),
        (
            "Deployment",
            "spec.template.metadata.labels.app",
            High,
            "selector-label",
        ),
        ("Deployment", "metadata.labels.app", Low, "labels"),
        (
            "Deployment",
            "spec.template.metadata.labels.team",
            Low,
            "labels",
        ),
        ("Service", "metadata.annotations.owner", Low, "annotations"),
        (
            "Deployment",
            "spec.template.metadata.annotations.restartedAt",
            Low,
            "annotations",
        ),
        ("Deployment", "spec.strategy.type", Medium, "spec-field"),
        (
            "Deployment",
            "spec.template.spec.containers[name=api].volumeMounts[mountPath=/x].name",
            Medium,
            "spec-field",
        ),
        ("Service", "spec.sessionAffinity", Medium, "spec-field"),
        ("Role", "metadata.finalizers", Medium, "other-field"),
        ("PriorityClass", "value", Medium, "other-field"),
        ("Secret", "type", Medium, "other-field"),
    ]
};

#[test]
fn each_default_rule_decides_its_example_paths() {
    let mut wrong = Vec::new();
    for (kind, field, severity, rule) in TABLE {
        let got = decided(kind, field);
        if got != (*severity, (*rule).to_owned()) {
            wrong.push(format!(
                "{kind} {field}: expected {severity} {rule}, got {got:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn each_default_rule_has_a_row_in_the_table() {
    let ids: BTreeSet<&str> = default_rules().iter().map(|r| r.id.as_str()).collect();
    let tested: BTreeSet<&str> = TABLE.iter().map(|row| row.3).collect();
    let untested: Vec<_> = ids.difference(&tested).collect();
    assert!(
        untested.is_empty(),
        "rules without a test row: {untested:?}"
    );
}

#[test]
fn every_default_rule_says_why() {
    for r in default_rules() {
        assert!(!r.why.trim().is_empty(), "{} has no why", r.id);
    }
}

#[test]
fn a_hostpath_volume_added_whole_is_critical_and_another_volume_high() {
    let tier = tier_with("");
    let at = "spec.template.spec.volumes[name=v]";
    let host = classify_field(
        "Deployment",
        at,
        json!({"name": "v", "hostPath": {"path": "/"}}),
        Value::Null,
        &tier,
    );
    assert_eq!(
        (host[0].severity, host[0].rule.as_str()),
        (Severity::Critical, "hostpath-volume")
    );
    let other = classify_field(
        "Deployment",
        at,
        json!({"name": "v", "emptyDir": {}}),
        Value::Null,
        &tier,
    );
    assert_eq!(
        (other[0].severity, other[0].rule.as_str()),
        (Severity::High, "volumes")
    );
}

#[test]
fn a_template_label_map_is_high_when_it_holds_a_key_the_selector_reads() {
    let tier = tier_with("");
    let items = classify_field(
        "Deployment",
        "spec.template.metadata.labels",
        json!({"app": "api"}),
        json!({"app": "web"}),
        &tier,
    );
    assert_eq!(items[0].rule, "selector-label");
}

#[test]
fn a_label_the_selector_reads_is_high_and_a_plain_label_is_low() {
    assert_eq!(
        decided("Deployment", "spec.template.metadata.labels.app"),
        (Severity::High, "selector-label".into())
    );
    assert_eq!(
        decided("Deployment", "spec.template.metadata.labels.team"),
        (Severity::Low, "labels".into())
    );
    // The object's own labels are read by no selector of its own.
    assert_eq!(
        decided("Deployment", "metadata.labels.app"),
        (Severity::Low, "labels".into())
    );
}

#[test]
fn match_expressions_keys_count_as_read_by_the_selector() {
    let manifest = json!({"spec": {"selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}}});
    assert_eq!(selector_label_keys(&manifest), ["tier"]);
    let rc = json!({"spec": {"selector": {"app": "api"}}});
    assert_eq!(selector_label_keys(&rc), ["app"]);
}

#[test]
fn replicas_of_a_workload_an_hpa_targets_are_not_drift() {
    let hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}}
    });
    let targets = hpa_scale_targets([&hpa, &deployment_manifest()]);
    assert_eq!(
        targets,
        HashSet::from([("shop".into(), "Deployment".into(), "api".into())])
    );
    let diff = ObjectDiff::Changed(vec![
        FieldDiff {
            path: path("spec.replicas"),
            desired: Some(json!(2)),
            live: Some(json!(7)),
        },
        FieldDiff {
            path: path("spec.template.spec.containers[name=api].image"),
            desired: Some(json!("a:1")),
            live: Some(json!("a:2")),
        },
    ]);
    let items = classify(&object("Deployment"), None, &diff, &tier_with(""), &targets);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].rule, "container-image");
    // Another workload's replicas are still drift.
    let mut other = object("Deployment");
    other.name = "worker".into();
    let items = classify(&other, None, &diff, &tier_with(""), &targets);
    assert_eq!(items[0].rule, "replicas");
}

#[test]
fn a_missing_object_is_one_critical_item_and_an_extra_one_medium() {
    let tier = tier_with("");
    let targets = HashSet::new();
    let manifest = deployment_manifest();
    let missing = classify(
        &object("Deployment"),
        Some(&manifest),
        &ObjectDiff::Missing,
        &tier,
        &targets,
    );
    assert_eq!(missing.len(), 1);
    assert_eq!(
        (missing[0].severity, missing[0].rule.as_str()),
        (Severity::Critical, "object-deleted")
    );
    assert!(missing[0].field_path.is_none() && missing[0].live.is_none());
    let extra = classify(
        &object("Deployment"),
        Some(&manifest),
        &ObjectDiff::Extra,
        &tier,
        &targets,
    );
    assert_eq!(extra.len(), 1);
    assert_eq!(
        (extra[0].severity, extra[0].rule.as_str()),
        (Severity::Medium, "extra-object")
    );
    assert!(extra[0].desired.is_none());
}

#[test]
fn an_extra_object_is_reported_never_applied_unless_the_policy_ignores_it() {
    let targets = HashSet::new();
    let manifest = deployment_manifest();
    let extra = |tier: &TierConfig| {
        classify(
            &object("Deployment"),
            Some(&manifest),
            &ObjectDiff::Extra,
            tier,
            &targets,
        )
        .remove(0)
    };
    // The default policy says `apply` for medium: an extra object is still only reported.
    let item = extra(&tier_with(""));
    assert_eq!(item.action, Action::Alert);
    assert_eq!(item.reason.as_deref(), Some(NOT_IN_INVENTORY));
    assert!(
        item.to_string()
            .contains("never deletes what it did not create"),
        "{item}"
    );
    let item = extra(&tier_with(", policy: {medium: ignore}"));
    assert_eq!(item.action, Action::Ignore);
}

#[test]
fn an_object_in_sync_has_no_drift_items() {
    let items = classify(
        &object("Deployment"),
        None,
        &ObjectDiff::Changed(vec![]),
        &tier_with(""),
        &HashSet::new(),
    );
    assert!(items.is_empty());
}

#[test]
fn the_policy_assigns_each_severity_its_action() {
    let tier = tier_with(", policy: {critical: apply, high: alert, medium: alert, low: ignore}");
    let action =
        |kind: &str, field: &str| classify_field(kind, field, json!(1), json!(2), &tier)[0].action;
    assert_eq!(
        action(
            "Deployment",
            "spec.template.spec.containers[name=api].image"
        ),
        Action::Apply
    );
    assert_eq!(action("Deployment", "spec.replicas"), Action::Alert);
    assert_eq!(action("Deployment", "spec.strategy.type"), Action::Alert);
    assert_eq!(action("Deployment", "metadata.labels.team"), Action::Ignore);
    let policy = Policy {
        critical: Action::Alert,
        ..Policy::default()
    };
    assert_eq!(action_for(&policy, Severity::Critical), Action::Alert);
    assert_eq!(action_for(&policy, Severity::Low), Action::Apply);
}

#[test]
fn overrides_come_before_the_defaults_in_order() {
    let tier = tier_with(
        ", severity: [{kind: Deployment, path: spec.replicas, severity: low}, {path: '**.image', severity: medium}, {path: '**', severity: critical}]",
    );
    let got = |kind: &str, field: &str| {
        let i = &classify_field(kind, field, json!(1), json!(2), &tier)[0];
        (i.severity, i.rule.clone())
    };
    assert_eq!(
        got("Deployment", "spec.replicas"),
        (Severity::Low, "override:Deployment:spec.replicas".into())
    );
    assert_eq!(
        got("StatefulSet", "spec.replicas"),
        (Severity::Critical, "override:*:**".into())
    );
    assert_eq!(
        got("Pod", "spec.containers[name=api].image"),
        (Severity::Medium, "override:*:**.image".into())
    );
}

#[test]
fn an_ignore_override_means_not_drift() {
    let tier = tier_with(
        ", severity: [{kind: Deployment, path: 'metadata.annotations.**', severity: ignore}]",
    );
    assert!(
        classify_field(
            "Deployment",
            "metadata.annotations.note",
            json!(1),
            json!(2),
            &tier
        )
        .is_empty()
    );
    // Only for the kind named.
    assert_eq!(
        classify_field(
            "Service",
            "metadata.annotations.note",
            json!(1),
            json!(2),
            &tier
        )
        .len(),
        1
    );
}

#[test]
fn patterns_match_one_field_with_a_star_and_any_number_with_two() {
    let p = |s: &str| s.parse::<PathPattern>().expect("valid pattern");
    let m = |pat: &str, fields: &[&str]| p(pat).matches(fields);
    assert!(m("spec.replicas", &["spec", "replicas"]));
    assert!(!m("spec.replicas", &["spec", "replicas", "x"]));
    assert!(!m("spec.replicas", &["spec"]));
    assert!(m("spec.*.x", &["spec", "a", "x"]));
    assert!(!m("spec.*.x", &["spec", "x"]));
    assert!(m("**.image", &["image"]));
    assert!(m(
        "**.containers.image",
        &["spec", "template", "spec", "containers", "image"]
    ));
    assert!(m(
        "spec.template.spec.**.securityContext.**",
        &["spec", "template", "spec", "containers", "securityContext"]
    ));
    assert!(m(
        "spec.template.spec.**.securityContext.**",
        &["spec", "template", "spec", "securityContext", "a", "b"]
    ));
    assert!(!m(
        "spec.template.spec.**.securityContext.**",
        &["spec", "securityContext"]
    ));
    assert!(m("**", &[]));
    assert!(m("**.**.a.**.**", &["x", "a"]));
}

#[test]
fn malformed_patterns_are_refused_with_the_reason() {
    let err = |s: &str| {
        s.parse::<PathPattern>()
            .expect_err("invalid pattern")
            .to_string()
    };
    assert!(err("").contains("expected a dotted field path"));
    assert!(err("spec..replicas").contains("field 2"));
    assert!(err("spec.rep*").contains("whole fields only"));
    assert!(err("containers[0].image").contains("without brackets"));
    assert!(err("spec.a b").contains("whitespace"));
}

fn secret_items() -> Vec<DriftItem> {
    let secret = object("Secret");
    let manifest = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api"},
        "data": {"password": "aHVudGVyMg=="}, "stringData": {"token": "s3cr3t-token"}
    });
    let tier = tier_with("");
    let targets = HashSet::new();
    let mut items = classify(
        &secret,
        Some(&manifest),
        &ObjectDiff::Missing,
        &tier,
        &targets,
    );
    let diff = ObjectDiff::Changed(vec![
        FieldDiff {
            path: path("data.password"),
            desired: Some(json!("aHVudGVyMg==")),
            live: Some(json!("b3RoZXItdmFsdWU=")),
        },
        FieldDiff {
            path: path("stringData"),
            desired: Some(json!({"token": "s3cr3t-token"})),
            live: None,
        },
        FieldDiff {
            path: path("data.same"),
            desired: Some(json!("c2FtZS12YWx1ZQ==")),
            live: Some(json!("c2FtZS12YWx1ZQ==")),
        },
        FieldDiff {
            path: path("metadata.labels.app"),
            desired: Some(json!("api")),
            live: None,
        },
    ]);
    items.extend(classify(&secret, Some(&manifest), &diff, &tier, &targets));
    items
}

#[test]
fn no_secret_value_appears_in_debug_display_or_json() {
    let items = secret_items();
    assert_eq!(items.len(), 5);
    for item in &items {
        let shown = [
            format!("{item:?}"),
            item.to_string(),
            serde_json::to_string(item).expect("a drift item serializes"),
        ];
        for text in shown {
            for secret in [
                "aHVudGVyMg==",
                "hunter2",
                "s3cr3t-token",
                "b3RoZXItdmFsdWU=",
                "c2FtZS12YWx1ZQ==",
            ] {
                assert!(!text.contains(secret), "{secret} leaked in {text}");
            }
        }
    }
    // Keys and metadata are not secret.
    assert_eq!(
        items[2].desired,
        Some(json!({"token": marker(&json!("s3cr3t-token"))}))
    );
    assert_eq!(items[4].desired, Some(json!("api")));
}

#[test]
fn masked_values_show_whether_they_are_equal() {
    let items = secret_items();
    let (changed, same) = (&items[1], &items[3]);
    assert_ne!(changed.desired, changed.live);
    assert_eq!(same.desired, same.live);
    let m = same
        .desired
        .as_ref()
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(m.starts_with("<masked sha256:") && m.len() == 24, "{m}");
}

#[test]
fn masking_twice_changes_nothing_and_other_kinds_are_left_alone() {
    let mut items = secret_items();
    let before = items.clone();
    items.iter_mut().for_each(mask_secret_values);
    assert_eq!(items, before);
    let cm = classify_field(
        "ConfigMap",
        "data.settings",
        json!("plain"),
        json!("other"),
        &tier_with(""),
    );
    assert_eq!(cm[0].desired, Some(json!("plain")));
}

#[test]
fn severities_are_ordered_and_spelled_in_lowercase() {
    assert!(
        Severity::Critical > Severity::High
            && Severity::High > Severity::Medium
            && Severity::Medium > Severity::Low
    );
    assert_eq!(Severity::Critical.to_string(), "critical");
    assert_eq!(
        serde_json::to_string(&Severity::High).ok().as_deref(),
        Some("\"high\"")
    );
    assert_eq!(
        serde_json::from_str::<Severity>("\"low\"").ok(),
        Some(Severity::Low)
    );
}

#[test]
fn the_last_applied_copy_of_a_secret_is_masked_in_every_shape() {
    let secret = object("Secret");
    let last_applied =
        r#"{"apiVersion":"v1","kind":"Secret","stringData":{"password":"pl41n-t3xt"}}"#;
    let live = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "api", "annotations": {LAST_APPLIED: last_applied, "team": "shop"}},
        "data": {"password": "cGw0MW4tdDN4dA=="}
    });
    let tier = tier_with("");
    let targets = HashSet::new();
    let mut items = classify(&secret, None, &ObjectDiff::Extra, &tier, &targets);
    let annotations = json!({LAST_APPLIED: last_applied, "team": "shop"});
    let diff = ObjectDiff::Changed(vec![
        FieldDiff {
            path: path("metadata.annotations"),
            desired: None,
            live: Some(annotations.clone()),
        },
        FieldDiff {
            path: path("metadata"),
            desired: None,
            live: Some(json!({"annotations": annotations})),
        },
    ]);
    items.extend(classify(&secret, None, &diff, &tier, &targets));
    items[0].live = Some(live.clone());
    mask_secret_values(&mut items[0]);
    // The annotation alone, under its own path.
    let mut one = items[1].clone();
    one.field_path = Some(FieldPath(
        ["metadata", "annotations", LAST_APPLIED]
            .map(|f| PathSegment::Field(f.into()))
            .to_vec(),
    ));
    one.live = Some(json!(last_applied));
    mask_secret_values(&mut one);
    items.push(one);
    for item in &items {
        let text = serde_json::to_string(item).expect("serializes") + &item.to_string();
        assert!(!text.contains("pl41n-t3xt"), "{text}");
        assert!(!text.contains("cGw0MW4tdDN4dA=="), "{text}");
    }
    // Other annotations stay readable.
    assert!(
        serde_json::to_string(&items[1])
            .expect("serializes")
            .contains("shop")
    );
}

#[test]
fn a_foreign_security_field_is_critical_names_its_manager_and_yields_to_overrides() {
    let priv_path = path("spec.template.spec.containers[name=api].securityContext.privileged");
    let found = vec![(
        FieldDiff {
            path: priv_path.clone(),
            desired: None,
            live: Some(json!(true)),
        },
        Some("kubectl-patch".to_owned()),
    )];
    let tier = tier_with(", policy: {critical: alert}");
    let items = classify_foreign(&object("Deployment"), &found, &tier);
    assert_eq!(items.len(), 1);
    let i = &items[0];
    assert_eq!(
        (i.severity, i.rule.as_str(), i.action),
        (Severity::Critical, FOREIGN_SECURITY_RULE, Action::Alert)
    );
    assert_eq!(i.field_path.as_ref(), Some(&priv_path));
    assert_eq!(
        i.foreign.as_ref().and_then(|f| f.manager.as_deref()),
        Some("kubectl-patch")
    );
    assert!(i.to_string().contains("set by kubectl-patch"), "{i}");

    // An operator who accepts the field says so with an override, as for any drift.
    let tier =
        tier_with(", severity: [{path: \"**.securityContext.privileged\", severity: ignore}]");
    assert!(classify_foreign(&object("Deployment"), &found, &tier).is_empty());
    let tier =
        tier_with(", severity: [{kind: Deployment, path: \"**.privileged\", severity: low}]");
    let items = classify_foreign(&object("Deployment"), &found, &tier);
    assert_eq!(items[0].severity, Severity::Low);
    assert_eq!(items[0].rule, "override:Deployment:**.privileged");
}

#[test]
fn built_in_rule_ids_keep_their_strings_however_the_id_is_built() {
    let strings: Vec<&str> = BuiltinRule::ALL.iter().map(|b| b.as_str()).collect();
    assert_eq!(
        strings,
        ["object-deleted", "extra-object", "foreign-security-field"]
    );
    for b in BuiltinRule::ALL {
        let parsed = RuleId::from(b.as_str());
        assert!(matches!(parsed, RuleId::Builtin(p) if p == b), "{b:?}");
        assert_eq!(RuleId::from(b), RuleId::Named(b.as_str().to_owned()));
        assert_eq!(
            serde_json::to_string(&RuleId::from(b)).expect("serialise"),
            format!("\"{}\"", b.as_str())
        );
    }
    let table = RuleId::from("container-image");
    assert_eq!(table, "container-image");
    assert_ne!(table, BuiltinRule::ExtraObject);
    assert_eq!(table.to_string(), "container-image");
}

#[test]
fn missing_and_extra_objects_carry_the_built_in_rules() {
    let tier = tier_with("");
    let none = HashSet::new();
    let missing = classify(
        &object("Deployment"),
        None,
        &ObjectDiff::Missing,
        &tier,
        &none,
    );
    assert_eq!(missing[0].rule, BuiltinRule::ObjectDeleted);
    let extra = classify(
        &object("Deployment"),
        None,
        &ObjectDiff::Extra,
        &tier,
        &none,
    );
    assert_eq!(extra[0].rule, BuiltinRule::ExtraObject);
}
