//! Which kinds are cluster-scoped, and the order objects are applied in.
//!
//! The one list of built-in cluster-scoped kinds lives here. Kinds a CRD in the same set
//! declares with `scope: Cluster` are cluster-scoped too, so a tier's namespace is never
//! stamped on, say, a ClusterIssuer.

use std::cmp::Ordering;
use std::collections::HashSet;

use serde_json::Value;

/// Built-in cluster-scoped kinds, as (API group, kind); "" is the core group.
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("networking.k8s.io", "IngressClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
];

/// The API group of an apiVersion: `apps/v1` -> `apps`, `v1` -> "".
pub(crate) fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// Answers "is this kind cluster-scoped?" for one render.
pub(crate) struct Scopes {
    from_crds: HashSet<(String, String)>,
}

impl Scopes {
    /// Learns the cluster-scoped kinds declared by the CRDs among `manifests`.
    pub(crate) fn new<'a>(manifests: impl Iterator<Item = &'a Value>) -> Scopes {
        let mut from_crds = HashSet::new();
        for m in manifests {
            if m["kind"] != "CustomResourceDefinition"
                || group(m["apiVersion"].as_str().unwrap_or("")) != "apiextensions.k8s.io"
            {
                continue;
            }
            let spec = &m["spec"];
            if spec["scope"] == "Cluster"
                && let (Some(g), Some(k)) = (spec["group"].as_str(), spec["names"]["kind"].as_str())
            {
                from_crds.insert((g.to_owned(), k.to_owned()));
            }
        }
        Scopes { from_crds }
    }

    pub(crate) fn is_cluster_scoped(&self, api_version: &str, kind: &str) -> bool {
        let g = group(api_version);
        CLUSTER_SCOPED.contains(&(g, kind))
            || self.from_crds.contains(&(g.to_owned(), kind.to_owned()))
    }
}

/// Apply order: Namespaces, then CRDs (what later objects live in or are), then other
/// cluster-scoped objects, then namespaced ones.
pub(crate) fn rank(api_version: &str, kind: &str, cluster_scoped: bool) -> u8 {
    match (group(api_version), kind) {
        ("", "Namespace") => 0,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => 1,
        _ if cluster_scoped => 2,
        _ => 3,
    }
}

/// The sort key: rank, kind, namespace, name, then group so the order is total.
pub(crate) fn compare(
    a: &super::DesiredObject,
    b: &super::DesiredObject,
    a_rank: u8,
    b_rank: u8,
) -> Ordering {
    a_rank
        .cmp(&b_rank)
        .then_with(|| a.kind.cmp(&b.kind))
        .then_with(|| a.namespace.cmp(&b.namespace))
        .then_with(|| a.name.cmp(&b.name))
        .then_with(|| group(&a.api_version).cmp(group(&b.api_version)))
}
