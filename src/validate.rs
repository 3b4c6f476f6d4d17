//! Validation of a rendered tier, in stages: schema, security, scope. Each finding names the
//! file, the object and the rule; a blocking finding means the tier applies nothing and keeps
//! its last good desired set. (Reference errors, such as a duplicate object, a patch without a
//! target or an undefined `${VAR}`, stop the render itself: see `render::RenderError`.)

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use crate::config::TierConfig;
/// The rule levels are part of a tier's config (`validation:`): defined there, read here.
pub use crate::config::{Level, SecurityRule, UnknownSecurityRule, ValidationConfig};
use crate::render::{DesiredObject, DesiredSet, ObjectScope};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Schema,
    Security,
    Scope,
    /// Whose the live object is (`crate::ownership`): checked against the cluster.
    Ownership,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Schema => "schema",
            Stage::Security => "security",
            Stage::Scope => "scope",
            Stage::Ownership => "ownership",
        })
    }
}

/// One problem found, with everything a person needs to find and fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    /// The rule, which names its stage too.
    pub rule: Rule,
    /// `base/api.yaml line 3`
    pub location: String,
    /// `Deployment shop-exp/api`
    pub object: String,
    pub message: String,
}

/// The rule of a finding, a closed set: one enum per stage. Only the security rules have a
/// level set in config (`validation.rules`, checked against [`SecurityRule::ALL`]); the others
/// always block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Schema(SchemaRule),
    Security(SecurityRule),
    Scope(ScopeRule),
    Ownership(OwnershipRule),
}

impl Rule {
    /// The stage that checks the rule.
    pub const fn stage(self) -> Stage {
        match self {
            Rule::Schema(_) => Stage::Schema,
            Rule::Security(_) => Stage::Security,
            Rule::Scope(_) => Stage::Scope,
            Rule::Ownership(_) => Stage::Ownership,
        }
    }

    /// The id findings show (`[stage/id]`).
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Schema(r) => r.as_str(),
            Rule::Security(r) => r.id(),
            Rule::Scope(r) => r.as_str(),
            Rule::Ownership(r) => r.as_str(),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rule ids of the schema stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaRule {
    ApiVersion,
    Kind,
    Name,
}

impl SchemaRule {
    pub const fn as_str(self) -> &'static str {
        match self {
            SchemaRule::ApiVersion => "api-version",
            SchemaRule::Kind => "kind",
            SchemaRule::Name => "name",
        }
    }
}

/// The rule ids of the ownership stage (`crate::ownership`): why a live object is not the
/// tier's to take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnershipRule {
    NotOwned,
    OtherTier,
    LabelOnly,
}

impl OwnershipRule {
    pub const fn as_str(self) -> &'static str {
        match self {
            OwnershipRule::NotOwned => "not-owned",
            OwnershipRule::OtherTier => "other-tier",
            OwnershipRule::LabelOnly => "label-only",
        }
    }
}

/// The rule ids of the scope stage: the reconcile tells a revision rejected for unknown kinds
/// (which a later discovery may serve) by its id, so it is typed, not compared as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeRule {
    NamespaceObject,
    UnknownKind,
    NamespaceOnClusterScoped,
    NoNamespace,
    Namespace,
    ClusterScoped,
    /// The tier's ServiceAccount may not write an object (`crate::access`, checked against
    /// the cluster).
    ServiceAccountPermission,
}

impl ScopeRule {
    pub const ALL: [ScopeRule; 7] = [
        ScopeRule::NamespaceObject,
        ScopeRule::UnknownKind,
        ScopeRule::NamespaceOnClusterScoped,
        ScopeRule::NoNamespace,
        ScopeRule::Namespace,
        ScopeRule::ClusterScoped,
        ScopeRule::ServiceAccountPermission,
    ];

    /// The id findings and `validation.rules` name it by.
    pub const fn as_str(self) -> &'static str {
        match self {
            ScopeRule::NamespaceObject => "namespace-object",
            ScopeRule::UnknownKind => "unknown-kind",
            ScopeRule::NamespaceOnClusterScoped => "namespace-on-cluster-scoped",
            ScopeRule::NoNamespace => "no-namespace",
            ScopeRule::Namespace => "namespace",
            ScopeRule::ClusterScoped => "cluster-scoped",
            ScopeRule::ServiceAccountPermission => "service-account-permission",
        }
    }
}

impl Finding {
    /// The finding is of this scope rule.
    pub fn is(&self, rule: ScopeRule) -> bool {
        self.rule == Rule::Scope(rule)
    }

    /// The stage that found it.
    pub fn stage(&self) -> Stage {
        self.rule.stage()
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Block => "error",
            Level::Warn => "warning",
        };
        write!(
            f,
            "{level}: {}: {}: {} [{}/{}]",
            self.location,
            self.object,
            self.message,
            self.stage(),
            self.rule
        )
    }
}

/// Validates a rendered tier. `last_tier` picks the default security level (see
/// [`ValidationConfig::security`]). Findings come in object order, then stage order.
pub fn validate(set: &DesiredSet, tier: &TierConfig, last_tier: bool) -> Vec<Finding> {
    let mut findings = Vec::new();
    for object in &set.objects {
        let mut push = |level, rule, message: String| {
            findings.push(Finding {
                level,
                rule,
                location: object.source.to_string(),
                object: object.key.to_string(),
                message,
            })
        };
        for (rule, message) in schema_findings(object) {
            push(Level::Block, Rule::Schema(rule), message);
        }
        for (rule, message) in security_findings(&object.key.kind, &object.manifest)
            .into_iter()
            .chain(rbac_findings(object, tier))
        {
            let level = tier.validation.level(rule, last_tier);
            push(level, Rule::Security(rule), message);
        }
        for (rule, message) in scope_findings(object, tier) {
            push(Level::Block, Rule::Scope(rule), message);
        }
    }
    findings
}

/// Whether any finding stops the tier.
pub fn blocks(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.level == Level::Block)
}

fn schema_findings(object: &DesiredObject) -> Vec<(SchemaRule, String)> {
    let mut out = Vec::new();
    let av = object.key.api_version.as_str();
    let well_formed_av = match av.split_once('/') {
        None => is_version(av),
        Some((group, version)) => is_dns_subdomain(group) && is_version(version),
    };
    if !well_formed_av {
        out.push((
            SchemaRule::ApiVersion,
            format!("apiVersion {av:?} is not `v1` or `group/version` (e.g. `apps/v1`)"),
        ));
    }
    let kind = object.key.kind.as_str();
    if !kind.starts_with(|c: char| c.is_ascii_uppercase())
        || !kind.chars().all(|c| c.is_ascii_alphanumeric())
    {
        out.push((
            SchemaRule::Kind,
            format!("kind {kind:?} is not a Kubernetes kind name (e.g. `Deployment`)"),
        ));
    }
    // RBAC objects may use path-segment names such as `system:aggregate-to-view`.
    let rbac = av.starts_with("rbac.authorization.k8s.io/");
    let name = object.key.name.as_str();
    let name_ok = if rbac {
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '%'])
    } else {
        is_dns_subdomain(name)
    };
    if !name_ok {
        out.push((
            SchemaRule::Name,
            format!(
                "metadata.name {name:?} is not a valid name (lowercase letters, digits, '-' and '.', at most 253)"
            ),
        ));
    }
    out
}

fn is_version(v: &str) -> bool {
    // v1, v2beta1, v1alpha3
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    tail.is_empty()
        || ["alpha", "beta"].iter().any(|p| {
            tail.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The pod spec inside a workload, wherever the kind keeps it.
fn pod_spec<'a>(kind: &str, manifest: &'a Value) -> Option<&'a Value> {
    crate::podspec::pod_spec(kind, manifest)
}

fn security_findings(kind: &str, manifest: &Value) -> Vec<(SecurityRule, String)> {
    let mut out = Vec::new();
    if kind == "Secret" && manifest.get("apiVersion").and_then(Value::as_str) == Some("v1") {
        // Only keys with a value: a Secret of empty placeholders (filled in the cluster by
        // an operator or by hand) holds no secret in git.
        let keys: BTreeSet<&str> = ["data", "stringData"]
            .iter()
            .filter_map(|k| manifest.get(*k).and_then(Value::as_object))
            .flat_map(|m| {
                m.iter()
                    .filter(|(_, v)| !matches!(v, Value::Null) && v.as_str() != Some(""))
                    .map(|(k, _)| k.as_str())
            })
            .collect();
        if !keys.is_empty() {
            out.push((
                SecurityRule::PlaintextSecret,
                format!(
                    "a plaintext Secret in git (keys: {}); use a sealed or external secret instead",
                    keys.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let Some(spec) = pod_spec(kind, manifest) else {
        return out;
    };
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec.get(key).and_then(Value::as_bool) == Some(true) {
            out.push((
                SecurityRule::HostNamespaces,
                format!("spec.{key} shares the node's namespace with the pod"),
            ));
        }
    }
    for volume in spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(path) = volume.pointer("/hostPath/path").and_then(Value::as_str) {
            let name = volume.get("name").and_then(Value::as_str).unwrap_or("?");
            out.push((
                SecurityRule::HostPath,
                format!("volume {name:?} mounts the node's {path}"),
            ));
        }
    }
    let pod_non_root = spec
        .pointer("/securityContext/runAsNonRoot")
        .and_then(Value::as_bool);
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
            if c.pointer("/securityContext/privileged")
                .and_then(Value::as_bool)
                == Some(true)
            {
                out.push((
                    SecurityRule::PrivilegedContainer,
                    format!("container {name:?} is privileged"),
                ));
            }
            let non_root = c
                .pointer("/securityContext/runAsNonRoot")
                .and_then(Value::as_bool)
                .or(pod_non_root);
            if non_root != Some(true) {
                out.push((
                    SecurityRule::RunAsNonRoot,
                    format!(
                        "container {name:?} may run as root: set securityContext.runAsNonRoot: true on the pod or the container"
                    ),
                ));
            }
            match c.get("image").and_then(Value::as_str) {
                Some(image) => {
                    if let Some(why) = image_tag_problem(image) {
                        out.push((
                            SecurityRule::ImageTag,
                            format!("container {name:?} image {image:?} {why}"),
                        ));
                    }
                }
                None => out.push((
                    SecurityRule::ImageTag,
                    format!("container {name:?} names no image"),
                )),
            }
        }
    }
    out
}

/// Groups and users that stand for everyone (or every ServiceAccount) the API server knows.
const EVERYONE: &[(&str, &str)] = &[
    ("Group", "system:authenticated"),
    ("Group", "system:unauthenticated"),
    ("Group", "system:serviceaccounts"),
    ("User", "system:anonymous"),
];

/// Verbs that grant more than the rules they sit in: making bindings (`bind`), roles beyond
/// one's own (`escalate`), or acting as someone else (`impersonate`).
const ESCALATING_VERBS: &[&str] = &["*", "bind", "escalate", "impersonate"];

/// What a tier's RBAC objects would hand out beyond the tier: a binding to everyone, to a
/// ServiceAccount of a namespace outside the tier, or of `cluster-admin`; a role with
/// escalating verbs or every verb on every resource. RBAC stops a ServiceAccount that lacks
/// these rights from granting them; this finds them before a commit gets that far.
fn rbac_findings(object: &DesiredObject, tier: &TierConfig) -> Vec<(SecurityRule, String)> {
    if crate::config::api_group(&object.key.api_version) != "rbac.authorization.k8s.io" {
        return Vec::new();
    }
    let m = &object.manifest;
    let mut out = Vec::new();
    let mut push = |message: String| out.push((SecurityRule::RbacGrant, message));
    match object.key.kind.as_str() {
        "RoleBinding" | "ClusterRoleBinding" => {
            let role = m.pointer("/roleRef/name").and_then(Value::as_str);
            if m.pointer("/roleRef/kind").and_then(Value::as_str) == Some("ClusterRole")
                && role == Some("cluster-admin")
            {
                push("binds ClusterRole cluster-admin (every verb on every resource)".into());
            }
            for subject in m
                .get("subjects")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("?");
                let name = subject.get("name").and_then(Value::as_str).unwrap_or("?");
                if EVERYONE.contains(&(kind, name)) {
                    push(format!(
                        "grants its role to {kind} {name:?}, that is to everyone"
                    ));
                } else if kind == "ServiceAccount" {
                    let ns = subject
                        .get("namespace")
                        .and_then(Value::as_str)
                        .or(object.key.namespace.as_deref());
                    match ns {
                        Some(ns) if tier.namespaces.iter().any(|n| n == ns) => {}
                        Some(ns) => push(format!(
                            "grants its role to ServiceAccount {ns}/{name}, outside tier {:?}'s namespaces",
                            tier.name
                        )),
                        None => push(format!(
                            "grants its role to ServiceAccount {name:?} with no namespace"
                        )),
                    }
                }
            }
        }
        "Role" | "ClusterRole" => {
            for rule in m
                .get("rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let list = |key: &str| -> Vec<&str> {
                    rule.get(key)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect()
                };
                let (verbs, resources) = (list("verbs"), list("resources"));
                let escalating: Vec<&str> = verbs
                    .iter()
                    .copied()
                    .filter(|v| ESCALATING_VERBS.contains(v))
                    .collect();
                if verbs.contains(&"*") && resources.contains(&"*") {
                    push("grants every verb on every resource".into());
                } else if !escalating.is_empty() {
                    push(format!(
                        "grants {} on {}",
                        escalating.join(", "),
                        resources.join(", ")
                    ));
                }
            }
        }
        _ => {}
    }
    out
}

/// `None` when the image is pinned by a tag other than `latest`, or by a digest.
fn image_tag_problem(image: &str) -> Option<&'static str> {
    if image.contains('@') {
        return None;
    }
    // The tag follows the last ':' after the last '/': `host:5000/app` has no tag.
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        None => Some("has no tag (it means :latest, which moves)"),
        Some((_, "latest")) => Some("uses :latest, which moves; pin a version"),
        Some(_) => None,
    }
}

/// Scope is judged on the final object (every patch, var and kustomize step done) and on its
/// kind's scope as the API server serves it (or the built-in table offline): the namespace an
/// object carries must agree with that scope, and the tier must be allowed that scope.
fn scope_findings(object: &DesiredObject, tier: &TierConfig) -> Vec<(ScopeRule, String)> {
    // A Namespace object is the namespace itself (its labels set its Pod Security level): a
    // tier writes only those it lists, whatever else clusterScoped lets it create. Any case
    // of the kind and any core spelling of the version count (`v1`, `core/v1`, `/v1`), so
    // another spelling the API server might accept cannot slip past.
    if is_namespace_kind(&object.key.api_version, &object.key.kind)
        && !tier.namespaces.iter().any(|n| n == &object.key.name)
    {
        return vec![(
            ScopeRule::NamespaceObject,
            format!(
                "tier {:?} may create or change only the Namespaces it lists ({}), not {:?}: add it to the tier's namespaces in gitopsd.yaml, or remove the Namespace from the repo",
                tier.name,
                if tier.namespaces.is_empty() {
                    "none".to_owned()
                } else {
                    tier.namespaces.join(", ")
                },
                object.key.name
            ),
        )];
    }
    let kind = &object.key.kind;
    let group = match object.key.api_version.rsplit_once('/') {
        Some((g, _)) => format!("group {g}"),
        None => "the core group".to_owned(),
    };
    let mut out = Vec::new();
    match (object.scope, &object.key.namespace) {
        (ObjectScope::Unknown { offline: false }, _) => out.push((
            ScopeRule::UnknownKind,
            format!(
                "kind {kind} ({group}) at apiVersion {} is not served by the cluster and no CustomResourceDefinition in the tier defines it, so whether it is namespaced is unknown (is a CRD or an API service missing? a typo in apiVersion or kind?)",
                object.key.api_version
            ),
        )),
        (ObjectScope::Unknown { offline: true }, _) => out.push((
            ScopeRule::UnknownKind,
            format!(
                "kind {kind} ({group}) at apiVersion {} is not a Kubernetes {} kind and no CustomResourceDefinition in the tier defines it, so whether it is namespaced is unknown offline (validate against the cluster with --kubeconfig, or add the CRD to the tier)",
                object.key.api_version,
                crate::render::builtin_kubernetes_version()
            ),
        )),
        (ObjectScope::Cluster, Some(ns)) => out.push((
            ScopeRule::NamespaceOnClusterScoped,
            format!(
                "{kind} ({group}) is cluster-scoped but the object carries metadata.namespace {ns:?}; the API server would create it cluster-wide (remove the namespace; a tier.yaml namespace is stamped only on namespaced kinds)"
            ),
        )),
        (ObjectScope::Namespaced, None) => out.push((
            ScopeRule::NoNamespace,
            format!(
                "{kind} ({group}) is namespaced but the object names no namespace (set metadata.namespace, or `namespace:` in tiers/{}/tier.yaml)",
                tier.name
            ),
        )),
        (ObjectScope::Namespaced, Some(ns))
            if !tier.namespaces.iter().any(|allowed| allowed == ns) =>
        {
            out.push((
                ScopeRule::Namespace,
                format!(
                    "namespace {ns:?} is outside tier {:?}'s namespaces ({})",
                    tier.name,
                    if tier.namespaces.is_empty() {
                        "none".to_owned()
                    } else {
                        tier.namespaces.join(", ")
                    }
                ),
            ))
        }
        _ => {}
    }
    if object.scope == ObjectScope::Cluster && !tier.cluster_scoped {
        out.push((
            ScopeRule::ClusterScoped,
            format!(
                "{kind} ({group}) is cluster-scoped and tier {:?} may not create cluster-scoped objects (set clusterScoped: true)",
                tier.name
            ),
        ));
    }
    out
}

/// Whether `apiVersion`/`kind` name the core Namespace, in any spelling.
fn is_namespace_kind(api_version: &str, kind: &str) -> bool {
    let core = match api_version.split_once('/') {
        None => true,
        Some((group, _)) => group.is_empty() || group.eq_ignore_ascii_case("core"),
    };
    core && kind.eq_ignore_ascii_case("Namespace")
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;

    #[test]
    fn scope_rule_ids_are_distinct() {
        let mut ids: Vec<&str> = ScopeRule::ALL.iter().map(|r| r.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), ScopeRule::ALL.len());
    }

    fn object(manifest: Value) -> DesiredObject {
        DesiredObject::for_test(manifest, "base/app.yaml", 1)
    }

    fn tier(yaml: &str) -> TierConfig {
        serde_yaml::from_str(yaml).expect("tier config")
    }

    fn findings(manifest: Value, last_tier: bool) -> Vec<Finding> {
        let set = DesiredSet {
            tier: "t".into(),
            objects: vec![object(manifest)],
            digest: String::new(),
        };
        let t = tier("{name: t, ref: main, namespaces: [shop], clusterScoped: false}");
        validate(&set, &t, last_tier)
    }

    fn deployment(container: Value, pod_security: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "api", "namespace": "shop"},
            "spec": {"template": {"spec": {"securityContext": pod_security, "containers": [container]}}}
        })
    }

    #[test]
    fn a_hardened_deployment_has_no_findings() {
        let f = findings(
            deployment(
                json!({"name": "api", "image": "registry.example.com/shop/api:1.4.2"}),
                json!({"runAsNonRoot": true}),
            ),
            true,
        );
        assert_eq!(f, vec![]);
    }

    #[test]
    fn a_privileged_root_latest_container_is_blocked_in_the_last_tier() {
        let f = findings(
            deployment(
                json!({"name": "api", "image": "shop/api:latest", "securityContext": {"privileged": true}}),
                json!({}),
            ),
            true,
        );
        let rules: Vec<&str> = f.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(
            rules,
            ["privileged-container", "run-as-non-root", "image-tag"]
        );
        assert!(f.iter().all(|f| f.level == Level::Block));
        assert_eq!(
            f[0].to_string(),
            "error: base/app.yaml line 1: Deployment shop/api: container \"api\" is privileged [security/privileged-container]"
        );
        assert!(blocks(&f));
    }

    #[test]
    fn security_findings_only_warn_before_the_last_tier() {
        let f = findings(
            deployment(json!({"name": "api", "image": "shop/api"}), json!({})),
            false,
        );
        assert_eq!(f.len(), 2);
        assert!(f.iter().all(|f| f.level == Level::Warn));
        assert!(!blocks(&f));
        assert_eq!(
            f[1].message,
            "container \"api\" image \"shop/api\" has no tag (it means :latest, which moves)"
        );
    }

    #[test]
    fn per_rule_levels_override_the_tier_default() {
        let t = tier(
            "{name: t, ref: main, namespaces: [shop], validation: {security: block, rules: {image-tag: warn}}}",
        );
        let set = DesiredSet {
            tier: "t".into(),
            objects: vec![object(deployment(
                json!({"name": "api", "image": "shop/api:latest"}),
                json!({"runAsNonRoot": true}),
            ))],
            digest: String::new(),
        };
        let f = validate(&set, &t, false);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].rule.as_str(), f[0].level), ("image-tag", Level::Warn));
    }

    #[test]
    fn an_unknown_rule_name_in_config_lists_the_known_ones() {
        let e = serde_yaml::from_str::<TierConfig>(
            "{name: t, ref: main, namespaces: [a], validation: {rules: {no-root: warn}}}",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown security rule \"no-root\"; expected one of privileged-container, run-as-non-root, host-path, host-namespaces, plaintext-secret, image-tag, rbac-grant"),
            "{e}"
        );
    }

    #[test]
    fn only_security_rules_take_a_level_in_config() {
        // Schema, scope and ownership rules always block: naming one is a config error.
        for id in [
            "namespace",
            "not-owned",
            "kind",
            "service-account-permission",
        ] {
            let e = serde_yaml::from_str::<TierConfig>(&format!(
                "{{name: t, ref: main, namespaces: [a], validation: {{rules: {{{id}: warn}}}}}}"
            ))
            .unwrap_err()
            .to_string();
            assert!(e.contains(&format!("unknown security rule {id:?}")), "{e}");
        }
    }

    #[test]
    fn every_rule_id_is_one_rule_of_its_stage() {
        let all: Vec<Rule> = [SchemaRule::ApiVersion, SchemaRule::Kind, SchemaRule::Name]
            .map(Rule::Schema)
            .into_iter()
            .chain(SecurityRule::ALL.map(Rule::Security))
            .chain(ScopeRule::ALL.map(Rule::Scope))
            .chain(
                [
                    OwnershipRule::NotOwned,
                    OwnershipRule::OtherTier,
                    OwnershipRule::LabelOnly,
                ]
                .map(Rule::Ownership),
            )
            .collect();
        let shown: BTreeSet<String> = all.iter().map(|r| format!("{}/{}", r.stage(), r)).collect();
        assert_eq!(shown.len(), all.len());
        assert!(shown.contains("scope/service-account-permission"));
        assert!(shown.contains("ownership/other-tier"));
    }

    #[test]
    fn host_path_host_network_and_container_level_root_are_found_in_a_cronjob() {
        let f = findings(
            json!({
                "apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": "backup", "namespace": "shop"},
                "spec": {"jobTemplate": {"spec": {"template": {"spec": {
                    "hostNetwork": true,
                    "securityContext": {"runAsNonRoot": true},
                    "volumes": [{"name": "logs", "hostPath": {"path": "/var/log"}}],
                    "containers": [{"name": "b", "image": "backup@sha256:abc", "securityContext": {"runAsNonRoot": false}}]
                }}}}}
            }),
            true,
        );
        let got: Vec<(&str, &str)> = f
            .iter()
            .map(|f| (f.rule.as_str(), f.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "host-namespaces",
                    "spec.hostNetwork shares the node's namespace with the pod"
                ),
                ("host-path", "volume \"logs\" mounts the node's /var/log"),
                (
                    "run-as-non-root",
                    "container \"b\" may run as root: set securityContext.runAsNonRoot: true on the pod or the container"
                ),
            ]
        );
    }

    #[test]
    fn a_plaintext_secret_is_named_with_its_keys_never_its_values() {
        let f = findings(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
                   "data": {"password": "aHVudGVyMg=="}, "stringData": {"user": "shop"}}),
            true,
        );
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "a plaintext Secret in git (keys: password, user); use a sealed or external secret instead"
        );
        assert!(!f[0].to_string().contains("aHVudGVyMg=="));
    }

    #[test]
    fn a_secret_of_empty_placeholders_is_not_a_plaintext_secret() {
        // Install manifests ship Secrets whose values an operator or a person fills in.
        for manifest in [
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "webhook-certs", "namespace": "shop"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "w", "namespace": "shop"},
                   "data": {"tls.crt": "", "tls.key": ""}, "stringData": {"token": ""}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "w", "namespace": "shop"},
                   "data": {}, "type": "kubernetes.io/tls"}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "w", "namespace": "shop"},
                   "data": {"a": null}}),
        ] {
            let f = findings(manifest.clone(), true);
            assert!(f.is_empty(), "{manifest}: {f:?}");
        }
        // One real value among placeholders is still a secret in git, named alone.
        let f = findings(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
                   "data": {"tls.crt": "", "password": "aHVudGVyMg=="}, "stringData": {"user": ""}}),
            true,
        );
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "a plaintext Secret in git (keys: password); use a sealed or external secret instead"
        );
    }

    #[test]
    fn rbac_that_reaches_beyond_the_tier_is_a_security_finding() {
        let binding = |role_kind: &str, role: &str, subjects: Value| {
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "b", "namespace": "shop"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
                "subjects": subjects
            })
        };
        let messages = |manifest: Value| -> Vec<String> {
            findings(manifest, true)
                .into_iter()
                .filter(|f| f.rule == Rule::Security(SecurityRule::RbacGrant))
                .map(|f| {
                    assert_eq!(f.level, Level::Block, "{f}");
                    f.message
                })
                .collect()
        };
        // The tier's own ServiceAccount, by its namespace or the binding's: nothing to say.
        assert_eq!(
            messages(binding(
                "Role",
                "read",
                json!([{"kind": "ServiceAccount", "name": "api"},
                       {"kind": "ServiceAccount", "name": "worker", "namespace": "shop"}])
            )),
            Vec::<String>::new()
        );
        assert_eq!(
            messages(binding(
                "ClusterRole",
                "cluster-admin",
                json!([{"kind": "Group", "name": "system:authenticated", "apiGroup": "rbac.authorization.k8s.io"},
                       {"kind": "ServiceAccount", "name": "default", "namespace": "kube-system"}])
            )),
            [
                "binds ClusterRole cluster-admin (every verb on every resource)",
                "grants its role to Group \"system:authenticated\", that is to everyone",
                "grants its role to ServiceAccount kube-system/default, outside tier \"t\"'s namespaces",
            ]
        );
        let role = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "r", "namespace": "shop"},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate", "bind"]},
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
            ]
        });
        assert_eq!(
            messages(role),
            [
                "grants escalate, bind on roles",
                "grants every verb on every resource"
            ]
        );
    }

    #[test]
    fn objects_outside_the_tier_scope_are_blocked() {
        let f = findings(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "kube-system"}}),
            false,
        );
        assert_eq!(
            f[0].to_string(),
            "error: base/app.yaml line 1: ConfigMap kube-system/c: namespace \"kube-system\" is outside tier \"t\"'s namespaces (shop) [scope/namespace]"
        );
        let f = findings(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:shop-reader"}}),
            false,
        );
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule.as_str(), "cluster-scoped");
        assert!(blocks(&f));
    }

    fn scoped(manifest: Value, scope: ObjectScope, tier_yaml: &str) -> Vec<Finding> {
        let mut o = object(manifest);
        o.scope = scope;
        let set = DesiredSet {
            tier: "t".into(),
            objects: vec![o],
            digest: String::new(),
        };
        validate(&set, &tier(tier_yaml), false)
    }

    const NOT_CLUSTER: &str = "{name: t, ref: main, namespaces: [shop], clusterScoped: false}";
    const CLUSTER: &str = "{name: t, ref: main, namespaces: [shop], clusterScoped: true}";

    #[test]
    fn a_cluster_scoped_kind_carrying_a_namespace_blocks_in_any_tier() {
        let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                         "metadata": {"name": "x", "namespace": "shop"}});
        let f = scoped(crb.clone(), ObjectScope::Cluster, NOT_CLUSTER);
        let rules: Vec<&str> = f.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(rules, ["namespace-on-cluster-scoped", "cluster-scoped"]);
        assert_eq!(
            f[0].to_string(),
            "error: base/app.yaml line 1: ClusterRoleBinding shop/x: ClusterRoleBinding (group rbac.authorization.k8s.io) is cluster-scoped but the object carries metadata.namespace \"shop\"; the API server would create it cluster-wide (remove the namespace; a tier.yaml namespace is stamped only on namespaced kinds) [scope/namespace-on-cluster-scoped]"
        );
        let f = scoped(crb, ObjectScope::Cluster, CLUSTER);
        assert_eq!(f.len(), 1);
        assert!(blocks(&f));
    }

    #[test]
    fn a_kind_of_unknown_scope_blocks_naming_kind_and_group() {
        let w =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        for (offline, says) in [
            (
                false,
                "is not served by the cluster and no CustomResourceDefinition in the tier defines it",
            ),
            (
                true,
                "is not a Kubernetes 1.37 kind and no CustomResourceDefinition in the tier defines it",
            ),
        ] {
            let f = scoped(w.clone(), ObjectScope::Unknown { offline }, CLUSTER);
            assert_eq!(f.len(), 1, "{f:?}");
            assert_eq!(
                (f[0].rule.as_str(), f[0].level),
                ("unknown-kind", Level::Block)
            );
            assert!(f[0].is(ScopeRule::UnknownKind) && !f[0].is(ScopeRule::NoNamespace));
            assert!(
                f[0].message.starts_with(&format!(
                    "kind Widget (group example.com) at apiVersion example.com/v1 {says}"
                )),
                "{}",
                f[0].message
            );
        }
    }

    #[test]
    fn a_namespaced_kind_without_a_namespace_blocks_rather_than_landing_in_default() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let f = scoped(cm, ObjectScope::Namespaced, CLUSTER);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].rule.as_str(), "no-namespace");
        assert_eq!(
            f[0].message,
            "ConfigMap (the core group) is namespaced but the object names no namespace (set metadata.namespace, or `namespace:` in tiers/t/tier.yaml)"
        );
    }

    #[test]
    fn a_namespace_object_outside_the_tiers_namespaces_is_blocked_in_every_spelling() {
        let t = tier("{name: t, ref: main, namespaces: [shop], clusterScoped: true}");
        let check = |api_version: &str, kind: &str, name: &str| {
            let set = DesiredSet {
                tier: "t".into(),
                objects: vec![object(
                    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}),
                )],
                digest: String::new(),
            };
            validate(&set, &t, false)
                .into_iter()
                .filter(|f| f.is(ScopeRule::NamespaceObject))
                .collect::<Vec<_>>()
        };
        let f = check("v1", "Namespace", "kube-system");
        assert_eq!(
            f[0].to_string(),
            "error: base/app.yaml line 1: Namespace kube-system: tier \"t\" may create or change only the Namespaces it lists (shop), not \"kube-system\": add it to the tier's namespaces in gitopsd.yaml, or remove the Namespace from the repo [scope/namespace-object]"
        );
        assert!(blocks(&f));
        for (av, kind) in [
            ("core/v1", "Namespace"),
            ("v1", "namespace"),
            ("/v1", "NAMESPACE"),
        ] {
            assert_eq!(check(av, kind, "other").len(), 1, "{av} {kind}");
        }
        assert!(check("v1", "Namespace", "shop").is_empty());
        assert!(check("example.com/v1", "Namespace", "other").is_empty());
        // A namespaced tier cannot hold a Namespace at all: the cluster-scoped rule says so
        // as well when the name is listed.
        let t = tier("{name: t, ref: main, namespaces: [shop]}");
        let set = DesiredSet {
            tier: "t".into(),
            objects: vec![object(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            )],
            digest: String::new(),
        };
        let rules: Vec<&str> = validate(&set, &t, false)
            .iter()
            .map(|f| f.rule.as_str())
            .collect();
        assert_eq!(rules, ["cluster-scoped"]);
    }

    #[test]
    fn malformed_api_version_kind_and_name_are_schema_errors() {
        let f = findings(
            json!({"apiVersion": "apps/version1", "kind": "deployment", "metadata": {"name": "Api_1", "namespace": "shop"}}),
            false,
        );
        let rules: Vec<&str> = f.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(rules, ["api-version", "kind", "name"]);
        assert!(
            f.iter()
                .all(|f| f.stage() == Stage::Schema && f.level == Level::Block)
        );
    }

    #[test]
    fn versions_and_image_tags_parse_as_kubernetes_and_registries_mean_them() {
        for ok in ["v1", "v2beta1", "v1alpha3"] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in ["1", "v", "vbeta1", "v1beta", "v1gamma1"] {
            assert!(!is_version(bad), "{bad}");
        }
        assert_eq!(image_tag_problem("registry:5000/shop/api:1.2"), None);
        assert!(image_tag_problem("registry:5000/shop/api").is_some());
        assert_eq!(image_tag_problem("api@sha256:0123"), None);
    }
}
