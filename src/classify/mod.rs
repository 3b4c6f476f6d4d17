//! The classify stage: where a drift is classified. Each difference the diff stage found
//! becomes a [`DriftItem`] with a severity, the id of the rule that decided it, and the action
//! the tier's policy assigns to that severity. Secret values are masked here, so no caller
//! can forget to.
//!
//! Order of decisions for one field: replicas of an HPA-scaled workload are not drift; then
//! the tier's `severity` overrides from config, in order; then the [default rules](rules).

mod mask;
pub mod rules;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Action, OverrideSeverity, Policy, TierConfig};
use crate::diff::{FieldDiff, FieldPath, ObjectDiff};
use crate::object::ObjectKey;

pub use mask::{marker, mask_secret_values};
pub use rules::{PathPattern, PatternError, Rule, default_rules};

use rules::{Condition, Verdict, condition_holds};

/// How much a drift matters. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a tier's policy does about a drift of `severity`.
pub fn action_for(policy: &Policy, severity: Severity) -> Action {
    match severity {
        Severity::Critical => policy.critical,
        Severity::High => policy.high,
        Severity::Medium => policy.medium,
        Severity::Low => policy.low,
    }
}

/// Which object a drift is in: the crate's one object identity (the old name, kept while
/// other modules still use it).
pub type ObjectRef = ObjectKey;

/// One classified difference. Secret values in `desired` and `live` are always masked.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftItem {
    /// The object the item is about (flat in the JSON: `apiVersion`, `kind`, `namespace`,
    /// `name`).
    #[serde(flatten)]
    pub key: ObjectKey,
    /// The field's path (`spec.template.spec.containers[name=api].image`), `None` for a
    /// missing or extra object. The JSON keeps its old shape: `paths`, a list of the display
    /// string, empty for the whole object.
    #[serde(rename = "paths", serialize_with = "path_as_list")]
    pub field_path: Option<FieldPath>,
    /// `None`: absent on that side.
    pub desired: Option<Value>,
    pub live: Option<Value>,
    pub severity: Severity,
    /// The id of the rule that decided the severity, e.g. `container-image`.
    pub rule: RuleId,
    pub action: Action,
    /// Set for a security field the manifest does not set, which another field manager added
    /// (rule [`FOREIGN_SECURITY_RULE`] unless an override decided): correcting it removes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub foreign: Option<Foreign>,
    /// Why the action is what it is, where the policy alone does not say: an extra object is
    /// never applied, only reported or pruned ([`NOT_IN_INVENTORY`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `paths` as the JSON has always had it: `[]` or `["spec.replicas"]`.
fn path_as_list<S: serde::Serializer>(
    path: &Option<FieldPath>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(path.iter())
}

/// The reason of an extra object that is not in the tier's inventory.
pub const NOT_IN_INVENTORY: &str = "not in this tier's inventory: gitopsd never deletes what it did not create; delete it or add it to git";

/// Who set a foreign security field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Foreign {
    /// The field manager that wrote it, when managedFields tell.
    pub manager: Option<String>,
}

/// The rule id of a security-weakening field the manifest does not set ([`rules::SECURITY_FIELDS`]).
pub const FOREIGN_SECURITY_RULE: &str = BuiltinRule::ForeignSecurityField.as_str();

/// The rules decided here rather than by the rule table ([`default_rules`]): what other stages
/// look for in a drift item (an extra object to prune, a deleted object to create again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinRule {
    /// The desired object is not in the cluster.
    ObjectDeleted,
    /// A live object of the tier that the desired set no longer has.
    ExtraObject,
    /// A security-weakening field the manifest does not set, added by another field manager.
    ForeignSecurityField,
}

impl BuiltinRule {
    pub const ALL: [BuiltinRule; 3] = [
        BuiltinRule::ObjectDeleted,
        BuiltinRule::ExtraObject,
        BuiltinRule::ForeignSecurityField,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            BuiltinRule::ObjectDeleted => "object-deleted",
            BuiltinRule::ExtraObject => "extra-object",
            BuiltinRule::ForeignSecurityField => "foreign-security-field",
        }
    }
}

/// The id of the rule that decided a drift item's severity: a built-in one, a rule of the
/// table (`container-image`) or a tier's override (`override:Deployment:spec.replicas`).
/// Serialised as the id's string; equal when the strings are, however it was built.
#[derive(Debug, Clone)]
pub enum RuleId {
    Builtin(BuiltinRule),
    Named(String),
}

impl RuleId {
    pub fn as_str(&self) -> &str {
        match self {
            RuleId::Builtin(b) => b.as_str(),
            RuleId::Named(s) => s,
        }
    }
}

impl From<BuiltinRule> for RuleId {
    fn from(b: BuiltinRule) -> RuleId {
        RuleId::Builtin(b)
    }
}

impl From<&str> for RuleId {
    /// A built-in id's string becomes that built-in rule.
    fn from(s: &str) -> RuleId {
        match BuiltinRule::ALL.into_iter().find(|b| b.as_str() == s) {
            Some(b) => RuleId::Builtin(b),
            None => RuleId::Named(s.to_owned()),
        }
    }
}

impl PartialEq for RuleId {
    fn eq(&self, other: &RuleId) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RuleId {}

impl std::hash::Hash for RuleId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<BuiltinRule> for RuleId {
    fn eq(&self, other: &BuiltinRule) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<str> for RuleId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RuleId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl DriftItem {
    /// The object as messages name it (`Deployment shop/api`), without building a key.
    pub fn object_name(&self) -> crate::object::ObjectName<'_> {
        crate::object::ObjectName {
            kind: &self.key.kind,
            namespace: self.key.namespace.as_deref(),
            name: &self.key.name,
        }
    }

    /// The object the item is about.
    pub fn object_key(&self) -> ObjectKey {
        self.key.clone()
    }
}

impl fmt::Display for DriftItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| match v {
            Some(v) => v.to_string(),
            None => "(absent)".to_owned(),
        };
        write!(f, "{} {}", self.severity, self.object_name())?;
        if let Some(path) = &self.field_path {
            write!(f, " {path}")?;
        }
        write!(
            f,
            ": {} -> {} (rule {}, action {})",
            show(&self.live),
            show(&self.desired),
            self.rule,
            self.action
        )?;
        if let Some(foreign) = &self.foreign {
            write!(
                f,
                ", set by {} outside the manifest",
                foreign
                    .manager
                    .as_deref()
                    .unwrap_or("another field manager")
            )?;
        }
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

/// The workloads HPAs scale, as `(namespace, kind, name)`, from HorizontalPodAutoscaler
/// manifests (desired and live alike); other objects are skipped.
pub fn hpa_scale_targets<'a>(
    objects: impl IntoIterator<Item = &'a Value>,
) -> HashSet<(String, String, String)> {
    objects
        .into_iter()
        .filter(|o| o.get("kind").and_then(Value::as_str) == Some("HorizontalPodAutoscaler"))
        .filter_map(|hpa| {
            let namespace = hpa
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let target = hpa.pointer("/spec/scaleTargetRef")?;
            let kind = target.get("kind")?.as_str()?;
            let name = target.get("name")?.as_str()?;
            Some((namespace.to_owned(), kind.to_owned(), name.to_owned()))
        })
        .collect()
}

/// Classifies one object's diff: one item for a missing or extra object, one per field
/// otherwise (fields that are not drift, by HPA or by an `ignore` override, are dropped).
///
/// `manifest` is the object as known (desired, or live for an extra object): the workload's
/// own `spec.selector` is read from it. `hpa_targets` comes from [`hpa_scale_targets`].
pub fn classify(
    object: &ObjectKey,
    manifest: Option<&Value>,
    diff: &ObjectDiff,
    tier: &TierConfig,
    hpa_targets: &HashSet<(String, String, String)>,
) -> Vec<DriftItem> {
    let item = |field_path: Option<&FieldPath>, desired, live, severity, rule: &str| {
        let mut item = DriftItem {
            key: object.clone(),
            desired,
            live,
            severity,
            rule: rule.into(),
            action: action_for(&tier.policy, severity),
            field_path: field_path.cloned(),
            foreign: None,
            reason: None,
        };
        mask_secret_values(&mut item);
        item
    };
    match diff {
        ObjectDiff::Missing => vec![item(
            None,
            manifest.cloned(),
            None,
            Severity::Critical,
            BuiltinRule::ObjectDeleted.as_str(),
        )],
        // Drift never deletes, and prune deletes only what the tier's inventory holds: an
        // extra object is reported (or ignored), never applied. `drift::settle_extras` says
        // what happens to the ones in the inventory.
        ObjectDiff::Extra => {
            let mut extra = item(
                None,
                None,
                manifest.cloned(),
                Severity::Medium,
                BuiltinRule::ExtraObject.as_str(),
            );
            if extra.action != Action::Ignore {
                extra.action = Action::Alert;
            }
            extra.reason = Some(NOT_IN_INVENTORY.to_owned());
            vec![extra]
        }
        ObjectDiff::Changed(fields) => {
            let selector_keys = manifest.map(selector_label_keys).unwrap_or_default();
            let overrides = override_rules(tier);
            fields
                .iter()
                .filter(|fd| !owned_by_hpa(object, fd, hpa_targets))
                .filter_map(|fd| {
                    let (severity, rule) = decide(object, fd, &overrides, &selector_keys)?;
                    Some(item(
                        Some(&fd.path),
                        fd.desired.clone(),
                        fd.live.clone(),
                        severity,
                        rule,
                    ))
                })
                .collect()
        }
    }
}

/// Classifies security fields the manifest does not set but the live object has
/// ([`rules::SECURITY_FIELDS`], found by the drift stage), each with the field manager that
/// set it: critical under [`FOREIGN_SECURITY_RULE`], unless one of the tier's `severity`
/// overrides matches first (which may also say `ignore`).
pub fn classify_foreign(
    object: &ObjectKey,
    fields: &[(FieldDiff, Option<String>)],
    tier: &TierConfig,
) -> Vec<DriftItem> {
    let overrides = override_rules(tier);
    fields
        .iter()
        .filter_map(|(fd, manager)| {
            let path: Vec<&str> = fd.path.fields().collect();
            let values = [fd.desired.as_ref(), fd.live.as_ref()];
            let (severity, rule) = match overrides.iter().find(|r| {
                r.applies_to_kind(&object.kind)
                    && r.matches_path(&path)
                    && condition_holds(r.condition, &path, values, &[])
            }) {
                Some(r) => match r.verdict {
                    Verdict::Severity(s) => (s, r.id.as_str()),
                    Verdict::Ignore => return None,
                },
                None => (Severity::Critical, FOREIGN_SECURITY_RULE),
            };
            let mut item = DriftItem {
                key: object.clone(),
                desired: fd.desired.clone(),
                live: fd.live.clone(),
                severity,
                rule: rule.into(),
                action: action_for(&tier.policy, severity),
                field_path: Some(fd.path.clone()),
                foreign: Some(Foreign {
                    manager: manager.clone(),
                }),
                reason: None,
            };
            mask_secret_values(&mut item);
            Some(item)
        })
        .collect()
}

/// An HPA sets the replicas of its target; the manifest's number is only a starting point.
fn owned_by_hpa(
    object: &ObjectKey,
    fd: &FieldDiff,
    hpa_targets: &HashSet<(String, String, String)>,
) -> bool {
    fd.path.fields().eq(["spec", "replicas"])
        && hpa_targets.contains(&(
            object.namespace.clone().unwrap_or_default(),
            object.kind.clone(),
            object.name.clone(),
        ))
}

/// The first rule that matches, overrides first; `None` when an override says `ignore`.
fn decide<'r>(
    object: &ObjectKey,
    fd: &FieldDiff,
    overrides: &'r [Rule],
    selector_keys: &[String],
) -> Option<(Severity, &'r str)> {
    let fields: Vec<&str> = fd.path.fields().collect();
    let values = [fd.desired.as_ref(), fd.live.as_ref()];
    let rule = overrides.iter().chain(default_rules()).find(|r| {
        r.applies_to_kind(&object.kind)
            && r.matches_path(&fields)
            && condition_holds(r.condition, &fields, values, selector_keys)
    });
    match rule {
        Some(r) => match r.verdict {
            Verdict::Severity(s) => Some((s, r.id.as_str())),
            Verdict::Ignore => None,
        },
        // The defaults end with a catch-all, so this is not reached; medium if it ever is.
        None => Some((Severity::Medium, "other-field")),
    }
}

/// The tier's config overrides as rules, ids naming kind and path so a reader finds the entry.
fn override_rules(tier: &TierConfig) -> Vec<Rule> {
    tier.severity
        .iter()
        .map(|o| Rule {
            id: format!(
                "override:{}:{}",
                o.kind.as_deref().unwrap_or("*"),
                o.path.as_str()
            ),
            kinds: o.kind.clone().map(|k| vec![k]),
            patterns: vec![o.path.clone()],
            condition: Condition::Always,
            verdict: match o.severity {
                OverrideSeverity::Critical => Verdict::Severity(Severity::Critical),
                OverrideSeverity::High => Verdict::Severity(Severity::High),
                OverrideSeverity::Medium => Verdict::Severity(Severity::Medium),
                OverrideSeverity::Low => Verdict::Severity(Severity::Low),
                OverrideSeverity::Ignore => Verdict::Ignore,
            },
            why: "set in the tier's config",
        })
        .collect()
}

/// Label keys the object's own `spec.selector` reads: `matchLabels`, `matchExpressions`, or a
/// plain map (ReplicationController).
fn selector_label_keys(manifest: &Value) -> Vec<String> {
    let Some(selector) = manifest
        .pointer("/spec/selector")
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    let structured =
        selector.contains_key("matchLabels") || selector.contains_key("matchExpressions");
    let mut keys: Vec<String> = if structured {
        selector
            .get("matchLabels")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    } else {
        selector.keys().cloned().collect()
    };
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        keys.extend(
            exprs
                .iter()
                .filter_map(|e| e.get("key").and_then(Value::as_str))
                .map(str::to_owned),
        );
    }
    keys
}
