//! Severity rules as data: which field paths of which kinds matter how much.
//!
//! A rule matches a [`FieldPath`](crate::diff::FieldPath)'s field names (list items dropped),
//! so `**.containers.image` matches `spec.template.spec.containers[name=api].image`. The first
//! matching rule decides; the defaults are listed most specific first.

mod security;

use std::sync::LazyLock;

use serde_json::Value;

use super::Severity;
/// Patterns are written in the config (`severity[].path`) as well as here: defined there.
pub use crate::config::{PathPattern, PatternError};
pub use security::{SECURITY_FIELDS, SecurityField, SecurityScope, Weakens};

/// What a rule looks at besides kind and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Always,
    /// The desired or live value is a map holding this key (a whole list item added or
    /// removed, e.g. a volume that is a `hostPath`).
    ValueHasKey(&'static str),
    /// A pod template label that the workload's own `spec.selector` reads.
    SelectorReadsLabel,
}

/// What a rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Severity(Severity),
    /// Not drift at all (only config overrides say this).
    Ignore,
}

/// One severity rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Shown beside each drift item: `container-image`, or `override:<kind>:<path>`.
    pub id: String,
    /// `None`: any kind.
    pub kinds: Option<Vec<String>>,
    /// Any one of them matching is enough.
    pub patterns: Vec<PathPattern>,
    pub condition: Condition,
    pub verdict: Verdict,
    /// One line for people reading the rule table.
    pub why: &'static str,
}

impl Rule {
    pub fn applies_to_kind(&self, kind: &str) -> bool {
        self.kinds
            .as_ref()
            .is_none_or(|ks| ks.iter().any(|k| k == kind))
    }

    pub fn matches_path(&self, fields: &[&str]) -> bool {
        self.patterns.iter().any(|p| p.matches(fields))
    }
}

/// The pod spec's container lists: a rule on a container field applies to all three.
const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Kinds whose `spec.template` is a pod template selected by `spec.selector`.
const WORKLOADS: [&str; 6] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
];

struct Def {
    id: &'static str,
    kinds: Option<&'static [&'static str]>,
    patterns: Vec<String>,
    condition: Condition,
    severity: Severity,
    why: &'static str,
}

fn def<S: Into<String>>(
    id: &'static str,
    kinds: Option<&'static [&'static str]>,
    patterns: impl IntoIterator<Item = S>,
    severity: Severity,
    why: &'static str,
) -> Def {
    Def {
        id,
        kinds,
        patterns: patterns.into_iter().map(Into::into).collect(),
        condition: Condition::Always,
        severity,
        why,
    }
}

/// `**.<list>.<field>` for each container list.
fn in_containers(fields: &[&str]) -> Vec<String> {
    CONTAINER_LISTS
        .iter()
        .flat_map(|list| fields.iter().map(move |f| format!("**.{list}.{f}")))
        .collect()
}

/// The default rules, most specific first (DESIGN.md, "Severity, by default"). Pod spec
/// fields are matched under `**` because pod specs sit at different depths (Pod, workloads,
/// CronJob) and custom resources embed them too.
pub fn default_rules() -> &'static [Rule] {
    static RULES: LazyLock<Vec<Rule>> = LazyLock::new(build_default_rules);
    &RULES
}

fn build_default_rules() -> Vec<Rule> {
    use Severity::{Critical, High, Low, Medium};
    let defs = vec![
        // --- critical ---
        def(
            "privileged",
            None,
            ["**.privileged", "**.allowPrivilegeEscalation"],
            Critical,
            "a privileged container is root on the node",
        ),
        def(
            "capabilities",
            None,
            ["**.capabilities.**"],
            Critical,
            "added capabilities widen what a process may do to the kernel",
        ),
        def(
            "host-namespaces",
            None,
            ["**.hostNetwork", "**.hostPID", "**.hostIPC"],
            Critical,
            "sharing the node's network, process or IPC namespace escapes the pod",
        ),
        def(
            "hostpath-volume",
            None,
            ["**.volumes.hostPath.**"],
            Critical,
            "a hostPath volume reads or writes the node's filesystem",
        ),
        Def {
            condition: Condition::ValueHasKey("hostPath"),
            ..def(
                "hostpath-volume",
                None,
                ["**.volumes"],
                Critical,
                "a hostPath volume added or removed as a whole",
            )
        },
        def(
            "security-context",
            None,
            ["**.securityContext.**"],
            Critical,
            "the security context decides the user, privileges and sandbox of a process",
        ),
        def(
            "service-account",
            None,
            ["**.serviceAccountName", "**.serviceAccount"],
            Critical,
            "the service account decides what the pod may do through the API",
        ),
        def(
            "automount-service-account-token",
            None,
            ["**.automountServiceAccountToken"],
            Critical,
            "a mounted token hands API credentials to every process of the pod",
        ),
        def(
            "container-image",
            None,
            in_containers(&["image"]),
            Critical,
            "the image is the code that runs; a changed image is a changed program",
        ),
        def(
            "container-added-or-removed",
            None,
            CONTAINER_LISTS.map(|l| format!("**.{l}")),
            Critical,
            "a container appearing or going brings or takes its image and privileges",
        ),
        def(
            "rbac-rules",
            Some(&["Role", "ClusterRole"]),
            ["rules.**", "aggregationRule.**"],
            Critical,
            "RBAC rules are who may do what in the cluster",
        ),
        def(
            "rbac-subjects",
            Some(&["RoleBinding", "ClusterRoleBinding"]),
            ["subjects.**"],
            Critical,
            "binding subjects decide who holds a role",
        ),
        def(
            "rbac-role-ref",
            Some(&["RoleBinding", "ClusterRoleBinding"]),
            ["roleRef.**"],
            Critical,
            "the role reference decides which permissions a binding grants",
        ),
        def(
            "network-policy",
            Some(&["NetworkPolicy"]),
            ["spec.**"],
            Critical,
            "a network policy is a firewall; any change opens or closes traffic",
        ),
        def(
            "secret-data",
            Some(&["Secret"]),
            ["data.**", "stringData.**"],
            Critical,
            "secret values are credentials; a changed one may be a stolen or planted one",
        ),
        def(
            "admission-webhooks",
            Some(&[
                "ValidatingWebhookConfiguration",
                "MutatingWebhookConfiguration",
            ]),
            ["webhooks.**"],
            Critical,
            "admission webhooks see or rewrite every matching request to the API",
        ),
        // --- high ---
        def(
            "container-command",
            None,
            in_containers(&["command.**", "args.**"]),
            High,
            "command and arguments change what the image does",
        ),
        def(
            "container-env",
            None,
            in_containers(&["env.**", "envFrom.**"]),
            High,
            "environment variables configure the program, often its endpoints and flags",
        ),
        def(
            "container-resources",
            None,
            in_containers(&["resources.**"]),
            High,
            "requests and limits decide scheduling, throttling and OOM kills",
        ),
        def(
            "container-probes",
            None,
            in_containers(&["livenessProbe.**", "readinessProbe.**", "startupProbe.**"]),
            High,
            "probes decide restarts and whether the pod gets traffic",
        ),
        def(
            "volumes",
            None,
            ["**.volumes.**"],
            High,
            "volumes decide what data and config a pod sees",
        ),
        def(
            "replicas",
            Some(&["Deployment", "StatefulSet", "ReplicaSet"]),
            ["spec.replicas"],
            High,
            "replicas are capacity; HPA-owned replicas never reach this rule",
        ),
        def(
            "service-selector",
            Some(&["Service"]),
            ["spec.selector.**"],
            High,
            "the selector decides which pods receive the service's traffic",
        ),
        def(
            "service-ports",
            Some(&["Service"]),
            ["spec.ports.**"],
            High,
            "ports decide where clients can reach the service",
        ),
        def(
            "configmap-data",
            Some(&["ConfigMap"]),
            ["data.**", "binaryData.**"],
            High,
            "config map data is the program's configuration",
        ),
        def(
            "ingress-rules",
            Some(&["Ingress"]),
            ["spec.rules.**"],
            High,
            "ingress rules route outside traffic to services",
        ),
        Def {
            condition: Condition::SelectorReadsLabel,
            ..def(
                "selector-label",
                Some(&WORKLOADS),
                ["spec.template.metadata.labels.**"],
                High,
                "a pod label the workload's selector reads decides which pods it owns",
            )
        },
        // --- low ---
        def(
            "labels",
            None,
            ["metadata.labels.**", "**.template.metadata.labels.**"],
            Low,
            "a label no selector of this object reads changes no behaviour by itself",
        ),
        def(
            "annotations",
            None,
            [
                "metadata.annotations.**",
                "**.template.metadata.annotations.**",
            ],
            Low,
            "annotations are notes for tools and people",
        ),
        // --- medium: everything else ---
        def(
            "spec-field",
            None,
            ["spec.**"],
            Medium,
            "any other spec field changes the object's behaviour in ways no rule above names",
        ),
        def(
            "other-field",
            None,
            ["**"],
            Medium,
            "any other field, e.g. of kinds without a spec",
        ),
    ];
    defs.into_iter()
        .map(|d| Rule {
            id: d.id.to_owned(),
            kinds: d
                .kinds
                .map(|ks| ks.iter().map(|k| (*k).to_owned()).collect()),
            patterns: d
                .patterns
                .iter()
                // The defaults are constants checked by the tests; a typo is a bug here.
                .map(|p| p.parse().expect("default severity patterns are valid"))
                .collect(),
            condition: d.condition,
            verdict: Verdict::Severity(d.severity),
            why: d.why,
        })
        .collect()
}

/// Whether `condition` holds for a diff at `fields` with these values; `selector_keys` are the
/// label keys the object's own `spec.selector` reads.
pub(super) fn condition_holds(
    condition: Condition,
    fields: &[&str],
    values: [Option<&Value>; 2],
    selector_keys: &[String],
) -> bool {
    match condition {
        Condition::Always => true,
        Condition::ValueHasKey(key) => values
            .iter()
            .flatten()
            .any(|v| v.as_object().is_some_and(|m| m.contains_key(key))),
        Condition::SelectorReadsLabel => {
            let at = fields
                .windows(2)
                .position(|w| w == ["metadata", "labels"])
                .map(|i| i + 2);
            match at.and_then(|i| fields.get(i)) {
                Some(key) => selector_keys.iter().any(|k| k == key),
                // The whole label map differs: any of its keys read by the selector counts.
                None => values.iter().flatten().any(|v| {
                    v.as_object()
                        .is_some_and(|m| m.keys().any(|k| selector_keys.contains(k)))
                }),
            }
        }
    }
}
