//! Which fields of which kinds hold Kubernetes quantities, by GroupKind and path.
//!
//! Only typed fields of built-in kinds are listed: the API server parses those as
//! `resource.Quantity` and stores them canonicalised (`0.5` becomes `500m`, `1073741824`
//! becomes `1Gi`), so the manifest's spelling and the live one differ without a change. Every
//! other field compares as written: a ConfigMap's `data.storage: "1.10"` is not `"1.1"`, and
//! a custom resource is stored as sent (its CRD's schema does not make the server rewrite a
//! quantity), so there is no second spelling to forgive; a false drift there is safer than a
//! hidden change. Status is never compared, so Node capacity and quota usage are not listed.

/// A path pattern: map keys from the object's root, list items skipped (as
/// [`super::FieldPath::fields`] yields them). `*` is any key (a resource name such as `cpu`
/// or `requests.storage`); `a|b` is either key.
type Pattern = &'static [&'static str];

/// Quantity fields of a PodSpec, from the PodSpec.
const POD_SPEC: &[Pattern] = &[
    &[
        "containers|initContainers|ephemeralContainers",
        "resources",
        "limits|requests",
        "*",
    ],
    // Pod-level resources (PodLevelResources).
    &["resources", "limits|requests", "*"],
    &["overhead", "*"],
    &["volumes", "emptyDir", "sizeLimit"],
    &[
        "volumes",
        "ephemeral",
        "volumeClaimTemplate",
        "spec",
        "resources",
        "limits|requests",
        "*",
    ],
];

/// Where each workload kind keeps its PodSpec: `(group, kind, path to the PodSpec)`.
const POD_SPEC_AT: &[(&str, &str, Pattern)] = &[
    ("", "Pod", &["spec"]),
    ("", "PodTemplate", &["template", "spec"]),
    ("", "ReplicationController", &["spec", "template", "spec"]),
    ("apps", "Deployment", &["spec", "template", "spec"]),
    ("apps", "ReplicaSet", &["spec", "template", "spec"]),
    ("apps", "StatefulSet", &["spec", "template", "spec"]),
    ("apps", "DaemonSet", &["spec", "template", "spec"]),
    ("batch", "Job", &["spec", "template", "spec"]),
    (
        "batch",
        "CronJob",
        &["spec", "jobTemplate", "spec", "template", "spec"],
    ),
];

/// Other quantity fields: `(group, kind, pattern from the object's root)`.
const FIELDS: &[(&str, &str, Pattern)] = &[
    (
        "",
        "PersistentVolumeClaim",
        &["spec", "resources", "limits|requests", "*"],
    ),
    ("", "PersistentVolume", &["spec", "capacity", "*"]),
    ("", "ResourceQuota", &["spec", "hard", "*"]),
    (
        "",
        "LimitRange",
        &[
            "spec",
            "limits",
            "default|defaultRequest|max|min|maxLimitRequestRatio",
            "*",
        ],
    ),
    (
        "apps",
        "StatefulSet",
        &[
            "spec",
            "volumeClaimTemplates",
            "spec",
            "resources",
            "limits|requests",
            "*",
        ],
    ),
    (
        "autoscaling",
        "HorizontalPodAutoscaler",
        &[
            "spec",
            "metrics",
            "resource|pods|object|external|containerResource",
            "target",
            "value|averageValue",
        ],
    ),
    (
        "node.k8s.io",
        "RuntimeClass",
        &["overhead", "podFixed", "*"],
    ),
    (
        "storage.k8s.io",
        "CSIStorageCapacity",
        &["capacity|maximumVolumeSize"],
    ),
];

/// The group of an `apiVersion`: `apps` of `apps/v1`, `""` (core) of `v1`.
pub(super) fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

/// Whether the field at `fields` (map keys from the root) of an object of `group`/`kind` is a
/// quantity the server canonicalises.
pub(super) fn is_quantity_field(group: &str, kind: &str, fields: &[&str]) -> bool {
    let pod_spec = POD_SPEC_AT
        .iter()
        .filter(|(g, k, _)| *g == group && *k == kind)
        .any(|(_, _, at)| {
            matches_prefix(at, fields).is_some_and(|rest| POD_SPEC.iter().any(|p| matches(p, rest)))
        });
    pod_spec
        || FIELDS
            .iter()
            .filter(|(g, k, _)| *g == group && *k == kind)
            .any(|(_, _, p)| matches(p, fields))
}

fn key_matches(pattern: &str, key: &str) -> bool {
    pattern == "*" || pattern.split('|').any(|p| p == key)
}

fn matches(pattern: &[&str], fields: &[&str]) -> bool {
    pattern.len() == fields.len() && pattern.iter().zip(fields).all(|(p, f)| key_matches(p, f))
}

/// What follows `prefix` in `fields`, when `fields` starts with it.
fn matches_prefix<'f>(prefix: &[&str], fields: &'f [&'f str]) -> Option<&'f [&'f str]> {
    (fields.len() >= prefix.len() && prefix.iter().zip(fields).all(|(p, f)| key_matches(p, f)))
        .then(|| &fields[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_quantity_fields_by_kind_and_path() {
        let yes = [
            (
                "apps",
                "Deployment",
                "spec.template.spec.containers.resources.limits.memory",
            ),
            (
                "batch",
                "CronJob",
                "spec.jobTemplate.spec.template.spec.initContainers.resources.requests.cpu",
            ),
            ("", "Pod", "spec.overhead.cpu"),
            ("", "Pod", "spec.volumes.emptyDir.sizeLimit"),
            ("", "LimitRange", "spec.limits.defaultRequest.cpu"),
            ("", "ResourceQuota", "spec.hard.requests.storage"),
            (
                "",
                "PersistentVolumeClaim",
                "spec.resources.requests.storage",
            ),
            (
                "apps",
                "StatefulSet",
                "spec.volumeClaimTemplates.spec.resources.requests.storage",
            ),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                "spec.metrics.pods.target.averageValue",
            ),
        ];
        let no = [
            ("", "ConfigMap", "data.storage"),
            ("", "Secret", "data.limits"),
            ("example.com", "Widget", "spec.default.version"),
            ("example.com", "Widget", "spec.resources.limits.memory"),
            ("apps", "Deployment", "spec.template.spec.containers.image"),
            ("", "LimitRange", "spec.limits.type"),
            ("", "Pod", "spec.containers.resources.claims.name"),
            (
                "autoscaling",
                "HorizontalPodAutoscaler",
                "spec.metrics.resource.target.averageUtilization",
            ),
        ];
        for (group, kind, path) in yes {
            let fields: Vec<&str> = path.split('.').collect();
            // `requests.storage` is one key of ResourceQuota's `hard`.
            let fields = if kind == "ResourceQuota" {
                vec!["spec", "hard", "requests.storage"]
            } else {
                fields
            };
            assert!(is_quantity_field(group, kind, &fields), "{kind} {path}");
        }
        for (group, kind, path) in no {
            let fields: Vec<&str> = path.split('.').collect();
            assert!(!is_quantity_field(group, kind, &fields), "{kind} {path}");
        }
        assert_eq!(group_of("v1"), "");
        assert_eq!(group_of("apps/v1"), "apps");
    }
}
