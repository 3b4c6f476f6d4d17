//! The comparison against real objects: each fixture was server-side applied by gitopsd to the
//! local v1.37 control plane and read back (`testdata/<kind>-<state>.json`), some after an
//! edit by another field manager.

use serde_json::{Value, json};

use super::{FIELD_MANAGER, FieldDiff, applied_fields_v1, compare};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/src/diff/testdata/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn diff(desired: &Value, live: &Value) -> Vec<FieldDiff> {
    compare(desired, live, applied_fields_v1(live, FIELD_MANAGER))
}

fn paths(diffs: &[FieldDiff]) -> Vec<String> {
    diffs.iter().map(|d| d.path.to_string()).collect()
}

#[test]
fn a_freshly_applied_object_shows_no_drift_although_the_server_defaulted_it() {
    let cases = [
        ("deployment-desired", "deployment-fresh"),
        ("deployment-worker-desired", "deployment-worker-fresh"),
        (
            "deployment-quantities-desired",
            "deployment-quantities-fresh",
        ),
        ("service-desired", "service-fresh"),
        ("hpa-desired", "hpa-fresh"),
        ("networkpolicy-desired", "networkpolicy-fresh"),
        ("priorityclass-desired", "priorityclass-fresh"),
        ("role-desired", "role-fresh"),
        ("crd-desired", "crd-fresh"),
        ("featureflag-desired", "featureflag-fresh"),
        ("featureflag-defaults-desired", "featureflag-defaults-fresh"),
    ];
    for (desired, live) in cases {
        let diffs = diff(&fixture(desired), &fixture(live));
        assert!(diffs.is_empty(), "{desired} vs {live}: {diffs:#?}");
    }
}

#[test]
fn every_object_of_the_example_tier_shows_no_drift_right_after_apply() {
    let desired = fixture("tier-experimental-desired");
    let live = fixture("tier-experimental-fresh");
    let desired = desired["items"].as_array().unwrap();
    let live = live["items"].as_array().unwrap();
    assert_eq!(desired.len(), 25);
    assert_eq!(desired.len(), live.len());
    for (d, l) in desired.iter().zip(live) {
        let name = format!("{}/{}", d["kind"], d["metadata"]["name"]);
        assert_eq!(name, format!("{}/{}", l["kind"], l["metadata"]["name"]));
        assert!(applied_fields_v1(l, FIELD_MANAGER).is_some(), "{name}");
        let diffs = diff(d, l);
        assert!(diffs.is_empty(), "{name}: {diffs:#?}");
    }
}

#[test]
fn a_secrets_string_data_compares_against_its_live_data() {
    let desired = fixture("secret-stringdata-desired");
    let live = fixture("secret-stringdata-fresh");
    assert!(live.get("stringData").is_none());
    assert!(diff(&desired, &live).is_empty());

    let mut changed = desired.clone();
    changed["stringData"]["c"] = json!("other");
    assert_eq!(paths(&diff(&changed, &live)), ["data.c"]);

    // gitopsd owned stringData.c; a manifest without it would remove data.c.
    let mut dropped = desired.clone();
    dropped["stringData"].as_object_mut().unwrap().remove("c");
    assert_eq!(paths(&diff(&dropped, &live)), ["data.c"]);
}

#[test]
fn a_status_subresource_entry_is_not_taken_for_gitopsds_apply() {
    let live = json!({"metadata": {"managedFields": [
        {"manager": "gitopsd", "operation": "Apply", "subresource": "status", "fieldsV1": {"f:status": {}}},
        {"manager": "gitopsd", "operation": "Update", "fieldsV1": {"f:spec": {}}},
        {"manager": "gitopsd", "operation": "Apply", "fieldsV1": {"f:spec": {"f:a": {}}}},
    ]}});
    assert_eq!(
        applied_fields_v1(&live, FIELD_MANAGER),
        Some(&json!({"f:spec": {"f:a": {}}}))
    );
}

#[test]
fn the_fresh_fixtures_carry_gitopsd_apply_entries() {
    for live in [
        "deployment-fresh",
        "service-fresh",
        "featureflag-defaults-fresh",
    ] {
        assert!(
            applied_fields_v1(&fixture(live), FIELD_MANAGER).is_some(),
            "{live}"
        );
    }
}

#[test]
fn edits_by_other_managers_are_found_at_their_field() {
    let api = "spec.template.spec.containers[name=api]";
    // (desired fixture, live fixture, [(path, desired value, live value)])
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, Value, Value)]);
    let cases: &[Case] = &[
        (
            "deployment-desired",
            "deployment-image-changed",
            &[(
                &format!("{api}.image"),
                json!("registry.example.com/shop/api:1.5.0-rc.1"),
                json!("registry.example.com/shop/api:6.6.6"),
            )],
        ),
        (
            "deployment-desired",
            "deployment-env-changed",
            &[(
                &format!("{api}.env[name=RUST_BACKTRACE].value"),
                json!("1"),
                json!("full"),
            )],
        ),
        (
            "deployment-desired",
            "deployment-label-changed",
            &[(
                "metadata.labels.env",
                json!("experimental"),
                json!("production"),
            )],
        ),
        (
            "deployment-worker-desired",
            "deployment-worker-replicas-changed",
            &[("spec.replicas", json!(1), json!(4))],
        ),
    ];
    for (desired, live, want) in cases {
        let diffs = diff(&fixture(desired), &fixture(live));
        let got: Vec<(String, Option<Value>, Option<Value>)> = diffs
            .into_iter()
            .map(|d| (d.path.to_string(), d.desired, d.live))
            .collect();
        let want: Vec<(String, Option<Value>, Option<Value>)> = want
            .iter()
            .map(|(p, d, l)| (p.to_string(), Some(d.clone()), Some(l.clone())))
            .collect();
        assert_eq!(got, want, "{desired} vs {live}");
    }
}

#[test]
fn what_other_managers_add_where_the_manifest_is_silent_is_not_drift() {
    let cases = [
        // A sidecar container injected by another manager.
        ("deployment-desired", "deployment-container-added"),
        // The HPA's Deployment sets no replicas; scaling it is the HPA's business.
        ("deployment-desired", "deployment-api-replicas-changed"),
    ];
    for (desired, live) in cases {
        let diffs = diff(&fixture(desired), &fixture(live));
        assert!(diffs.is_empty(), "{desired} vs {live}: {diffs:#?}");
    }
}

#[test]
fn a_field_gitopsd_applied_and_the_manifest_dropped_is_drift() {
    let live = fixture("deployment-fresh");
    let mut desired = fixture("deployment-desired");
    let spec = desired["spec"].as_object_mut().unwrap();
    spec.remove("revisionHistoryLimit");
    let container = &mut spec["template"]["spec"]["containers"][0];
    container["env"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["name"] != "RUST_BACKTRACE");
    container.as_object_mut().unwrap().remove("readinessProbe");
    desired["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("env");

    let diffs = diff(&desired, &live);
    assert_eq!(
        paths(&diffs),
        [
            "metadata.labels.env",
            "spec.revisionHistoryLimit",
            "spec.template.spec.containers[name=api].env[name=RUST_BACKTRACE]",
            "spec.template.spec.containers[name=api].readinessProbe.httpGet.path",
            "spec.template.spec.containers[name=api].readinessProbe.httpGet.port",
            "spec.template.spec.containers[name=api].readinessProbe.periodSeconds",
            "spec.template.spec.containers[name=api].readinessProbe.timeoutSeconds",
        ]
    );
    assert!(
        diffs
            .iter()
            .all(|d| d.desired.is_none() && d.live.is_some())
    );
    // Without gitopsd's managedFields entry the same removals are invisible.
    assert!(compare(&desired, &live, None).is_empty());
}

#[test]
fn a_container_the_manifest_adds_is_drift_at_that_item() {
    let live = fixture("deployment-fresh");
    let mut desired = fixture("deployment-desired");
    desired["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "proxy", "image": "proxy:1"}));
    let diffs = diff(&desired, &live);
    assert_eq!(paths(&diffs), ["spec.template.spec.containers[name=proxy]"]);
    assert_eq!(diffs[0].live, None);
}

#[test]
fn quantities_written_differently_are_equal_and_changed_ones_are_not() {
    let live = fixture("deployment-quantities-fresh");
    let desired = fixture("deployment-quantities-desired");
    // The manifest says 0.5 (a number) and 0.25Gi; the server stored 500m and 256Mi.
    let limits = &desired["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"];
    assert_eq!(limits["cpu"], json!(0.5));
    assert!(diff(&desired, &live).is_empty());

    let mut more = desired.clone();
    more["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("0.6");
    assert_eq!(
        paths(&diff(&more, &live)),
        ["spec.template.spec.containers[name=api].resources.limits.cpu"]
    );
}

#[test]
fn values_compare_by_meaning() {
    let cases = [
        (
            "int-or-string port",
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
            json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": "8080"}]}}),
            true,
        ),
        (
            "maxSurge as number and string",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "1"}}}}),
            true,
        ),
        (
            "a percentage stays a string",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "25%"}}}}),
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 1}}}}),
            false,
        ),
        (
            "numbers by value",
            json!({"spec": {"x": 1}}),
            json!({"spec": {"x": 1.0}}),
            true,
        ),
        (
            "a number is not a string outside IntOrString fields",
            json!({"data": {"x": 1}}),
            json!({"data": {"x": "1"}}),
            false,
        ),
        (
            "empty map equals absent",
            json!({"metadata": {"annotations": {}}}),
            json!({"metadata": {}}),
            true,
        ),
        (
            "empty list equals null",
            json!({"spec": {"tolerations": []}}),
            json!({"spec": {"tolerations": null}}),
            true,
        ),
        (
            "quantities outside quantity fields compare as text",
            json!({"data": {"x": "1Gi"}}),
            json!({"data": {"x": "1024Mi"}}),
            false,
        ),
        (
            "an ephemeral-storage quantity",
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "spec": {"hard": {"requests.storage": "1Gi"}}}),
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "spec": {"hard": {"requests.storage": "1073741824"}}}),
            true,
        ),
        (
            "emptyDir sizeLimit",
            json!({"apiVersion": "v1", "kind": "Pod", "spec": {"volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1G"}}]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "spec": {"volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1000M"}}]}}),
            true,
        ),
        (
            "a Deployment's memory limit in two spellings",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"name": "a", "resources": {"limits": {"memory": "1Gi"}}}]}}}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"name": "a", "resources": {"limits": {"memory": "1024Mi"}}}]}}}}),
            true,
        ),
        (
            "a LimitRange default cpu in two spellings",
            json!({"apiVersion": "v1", "kind": "LimitRange", "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}}]}}),
            json!({"apiVersion": "v1", "kind": "LimitRange", "spec": {"limits": [{"type": "Container", "default": {"cpu": "0.5"}}]}}),
            true,
        ),
        (
            "a ConfigMap's data.storage is text, not a quantity",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"storage": "1.10"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"storage": "1.1"}}),
            false,
        ),
        (
            "a ConfigMap's data.limits is text too",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"limits": "1k"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"limits": "1000"}}),
            false,
        ),
        (
            "a custom resource's spec.default.version is text",
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"default": {"version": "1.10"}}}),
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"default": {"version": "1.1"}}}),
            false,
        ),
        (
            "a custom resource is stored as sent: no second spelling to forgive",
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"resources": {"limits": {"memory": "1Gi"}}}}),
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"resources": {"limits": {"memory": "1024Mi"}}}}),
            false,
        ),
        (
            "a zero value not applied before against an absent field is reported",
            json!({"spec": {"runAsUser": 0}}),
            json!({"spec": {}}),
            false,
        ),
        (
            "status and server metadata are never compared",
            json!({"metadata": {"uid": "a", "annotations": {"deployment.kubernetes.io/revision": "1"}}, "status": {"x": 1}}),
            json!({"metadata": {"uid": "b", "annotations": {"deployment.kubernetes.io/revision": "9"}}, "status": {"x": 2}}),
            true,
        ),
        (
            "atomic list order matters",
            json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}),
            json!({"spec": {"tolerations": [{"key": "b"}, {"key": "a"}]}}),
            false,
        ),
        (
            "keyed list order does not",
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
            json!({"spec": {"containers": [{"name": "b"}, {"name": "a"}]}}),
            true,
        ),
        (
            "defaults inside atomic list items are not drift",
            json!({"spec": {"ingress": [{"ports": [{"port": 8080}]}]}}),
            json!({"spec": {"ingress": [{"ports": [{"port": 8080, "protocol": "TCP"}]}]}}),
            true,
        ),
        (
            "an extra item in an atomic list is drift",
            json!({"rules": [{"verbs": ["get"]}]}),
            json!({"rules": [{"verbs": ["get"]}, {"verbs": ["list"]}]}),
            false,
        ),
    ];
    for (name, desired, live, equal) in cases {
        let diffs = compare(&desired, &live, None);
        assert_eq!(diffs.is_empty(), equal, "{name}: {diffs:#?}");
    }
}

#[test]
fn a_map_the_live_object_lacks_is_reported_leaf_by_leaf() {
    let diffs = compare(
        &json!({"spec": {"securityContext": {"privileged": true, "runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}}}}),
        &json!({"spec": {}}),
        None,
    );
    assert_eq!(
        paths(&diffs),
        [
            "spec.securityContext.capabilities.add",
            "spec.securityContext.privileged",
            "spec.securityContext.runAsUser",
        ]
    );
    assert_eq!(diffs[1].desired, Some(json!(true)));
    assert_eq!(diffs[1].live, None);
}

#[test]
fn a_zero_value_gitopsd_applied_and_the_server_dropped_is_not_drift() {
    let owned = json!({"f:spec": {"f:hostNetwork": {}, "f:replicas": {}}});
    let desired = json!({"spec": {"hostNetwork": false, "replicas": 0, "paused": false}});
    let live = json!({"spec": {}});
    // `paused` was not applied by gitopsd: it may be unset for real, so it is reported.
    assert_eq!(
        paths(&compare(&desired, &live, Some(&owned))),
        ["spec.paused"]
    );
}

#[test]
fn a_value_of_another_type_differs_as_a_whole() {
    let diffs = compare(
        &json!({"spec": {"a": {"b": 1}}}),
        &json!({"spec": {"a": "x"}}),
        None,
    );
    assert_eq!(paths(&diffs), ["spec.a"]);
    assert_eq!(diffs[0].live, Some(json!("x")));
}

#[test]
fn an_atomic_list_differs_as_one_unit() {
    let diffs = compare(
        &json!({"rules": [{"verbs": ["get"]}]}),
        &json!({"rules": [{"verbs": ["list"]}]}),
        None,
    );
    assert_eq!(paths(&diffs), ["rules"]);
    assert_eq!(diffs[0].desired, Some(json!([{"verbs": ["get"]}])));
}

#[test]
fn an_item_gitopsd_applied_that_the_manifest_dropped_is_drift_but_another_managers_is_not() {
    let owned =
        json!({"f:spec": {"f:containers": {"k:{\"name\":\"old\"}": {".": {}, "f:name": {}}}}});
    let desired = json!({"spec": {"containers": [{"name": "api"}]}});
    let live =
        json!({"spec": {"containers": [{"name": "api"}, {"name": "old"}, {"name": "sidecar"}]}});
    let diffs = compare(&desired, &live, Some(&owned));
    assert_eq!(paths(&diffs), ["spec.containers[name=old]"]);
}

#[test]
fn a_malformed_managed_fields_entry_is_ignored() {
    let desired = json!({"spec": {}});
    let live = json!({"spec": {"a": 1}});
    assert!(compare(&desired, &live, Some(&json!({"bogus": {}}))).is_empty());
}

#[test]
fn diffs_come_sorted_by_path() {
    let diffs = compare(
        &json!({"spec": {"b": 1, "a": 1}, "metadata": {"labels": {"z": "1"}}}),
        &json!({"spec": {"b": 2, "a": 2}, "metadata": {"labels": {"z": "2"}}}),
        None,
    );
    assert_eq!(paths(&diffs), ["metadata.labels.z", "spec.a", "spec.b"]);
}
