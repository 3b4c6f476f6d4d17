//! Where a kind keeps its pod spec: one locator for every stage that reads pod specs
//! (validation's security rules, drift's pass over foreign security fields).

use serde_json::Value;

/// The field path of `kind`'s pod spec, or `None` for a kind without one.
pub fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &["spec"],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => &["spec", "template", "spec"],
        // PodTemplate keeps its template at the top level.
        "PodTemplate" => &["template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => return None,
    })
}

/// The pod spec inside `object` of `kind`, if it has one.
pub fn pod_spec<'a>(kind: &str, object: &'a Value) -> Option<&'a Value> {
    pod_spec_path(kind)?
        .iter()
        .try_fold(object, |v, key| v.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_workload_kind_has_its_pod_spec() {
        let spec = json!({"containers": []});
        let cases = [
            ("Pod", json!({"spec": spec})),
            ("Deployment", json!({"spec": {"template": {"spec": spec}}})),
            (
                "ReplicationController",
                json!({"spec": {"template": {"spec": spec}}}),
            ),
            ("PodTemplate", json!({"template": {"spec": spec}})),
            (
                "CronJob",
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}}),
            ),
        ];
        for (kind, object) in cases {
            assert_eq!(pod_spec(kind, &object), Some(&spec), "{kind}");
        }
        assert_eq!(pod_spec("ConfigMap", &json!({"spec": spec})), None);
    }
}
