//! Ownership: a tier takes only what is its own (issue 13, "never take what is not yours").
//!
//! Before a desired object is applied, whoever holds the live object decides:
//! - no live object: the tier creates it;
//! - in the tier's inventory (its state ConfigMap): the tier's own, unless the live object now
//!   carries another tier's label (another tier adopted it). A missing label is no doubt here:
//!   a crash between the inventory write and the apply leaves the entry `not-applied` and the
//!   object unlabelled or absent, and a label someone removed is drift the tier corrects;
//! - not in the inventory: refused, whoever it is, unless the tier lists it under `adopt:` in
//!   gitopsd.yaml. That covers an object with no tier label (made by hand, by a controller,
//!   by an installer: the attack of issue 13 relabelled such a Namespace `privileged`), an
//!   object with another tier's label (two tiers rendering one object), and an object with
//!   this tier's label: a label alone is no proof, anyone who can write the object can set
//!   it, and only the inventory records what this tier created or adopted.
//!
//! The decision ([`claim`]) is pure; the daemon feeds it from its live cache (no request),
//! the CLI from the API server. A refusal is a blocking [`Finding`] that names the object,
//! its current holder (tier label and field managers) and the fix (`adopt:`).

use serde_json::Value;

use crate::config::{AdoptEntry, TierConfig, api_group};
use crate::live::{LiveError, LiveObjects, ObjectKey};
use crate::render::{DesiredObject, DesiredSet, TIER_LABEL};
use crate::validate::{Finding, Level, OwnershipRule, Rule};

/// What the live cluster holds under a desired object's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live<'a> {
    Absent,
    /// It exists, with this `gitopsd.io/tier` label (`None`: no label).
    Present {
        tier_label: Option<&'a str>,
    },
}

/// Whether the tier may apply a desired object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nothing there: the tier creates it.
    Create,
    /// The tier's own (in its inventory).
    Own,
    /// Someone else's, taken over because the tier's `adopt:` names it.
    Adopt,
    Refuse(Refusal),
}

/// Why a tier may not take an existing object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No gitopsd tier label, and not in the inventory: made outside gitopsd.
    Unlabelled,
    /// Labelled for another tier.
    OtherTier(String),
    /// Labelled for this tier, but not in its inventory: someone else set the label, or the
    /// tier's state was lost.
    LabelOnly,
}

/// The decision for one desired object (see the module doc).
pub fn claim(tier: &str, in_inventory: bool, adopted: bool, live: Live<'_>) -> Claim {
    let label = match live {
        Live::Absent => return Claim::Create,
        Live::Present { tier_label } => tier_label,
    };
    let refusal = match label {
        Some(t) if t != tier => Refusal::OtherTier(t.to_owned()),
        _ if in_inventory => return Claim::Own,
        Some(_) => Refusal::LabelOnly,
        None => Refusal::Unlabelled,
    };
    if adopted {
        Claim::Adopt
    } else {
        Claim::Refuse(refusal)
    }
}

/// The `gitopsd.io/tier` label of a live object as JSON.
pub fn tier_label(live: &Value) -> Option<&str> {
    live.pointer("/metadata/labels")
        .and_then(|l| l.get(TIER_LABEL))
        .and_then(Value::as_str)
}

/// The field managers of a live object as JSON (managedFields), each once, in order.
pub fn managers(live: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("manager").and_then(Value::as_str))
    {
        if !out.iter().any(|o| o == m) {
            out.push(m.to_owned());
        }
    }
    out
}

/// The blocking finding of a refused object: its holder and the fix.
pub fn finding(
    object: &DesiredObject,
    tier: &TierConfig,
    refusal: &Refusal,
    managers: &[String],
) -> Finding {
    let managers = if managers.is_empty() {
        "no field managers recorded".to_owned()
    } else {
        format!("field managers: {}", managers.join(", "))
    };
    let entry = crate::config::AdoptEntry {
        api_version: None,
        kind: object.key.kind.clone(),
        namespace: object.key.namespace.clone(),
        name: object.key.name.clone(),
    };
    let (rule, holder) = match refusal {
        Refusal::Unlabelled => (
            OwnershipRule::NotOwned,
            format!("it exists and no gitopsd tier holds it (no {TIER_LABEL} label; {managers})"),
        ),
        Refusal::OtherTier(other) => (
            OwnershipRule::OtherTier,
            format!("it belongs to tier {other:?} ({TIER_LABEL}={other}; {managers})"),
        ),
        Refusal::LabelOnly => (
            OwnershipRule::LabelOnly,
            format!(
                "it carries {TIER_LABEL}={} but is not in the tier's inventory, and a label alone is no proof ({managers})",
                tier.name
            ),
        ),
    };
    Finding {
        level: Level::Block,
        rule: Rule::Ownership(rule),
        location: object.source.to_string(),
        object: object.key.to_string(),
        message: format!(
            "tier {:?} may not take over this object: {holder}; to hand it to the tier, add `adopt: [{entry}]` to tier {:?} in gitopsd.yaml, or remove it from the repo",
            tier.name, tier.name
        ),
    }
}

/// Whether `tier` adopts `key` by an `adopt:` entry.
pub fn adopts(tier: &TierConfig, key: &ObjectKey) -> bool {
    tier.adopt.iter().any(|a| entry_names(a, key))
}

/// Whether an `adopt:` entry names the object `key`: kind, namespace and name, and the API
/// group when the entry gives an apiVersion. (Here, not in `config`: config knows no live
/// object.)
fn entry_names(entry: &AdoptEntry, key: &ObjectKey) -> bool {
    entry.kind == key.kind
        && entry.namespace == key.namespace
        && entry.name == key.name
        && entry
            .api_version
            .as_deref()
            .is_none_or(|av| api_group(av) == api_group(&key.api_version))
}

/// The ownership findings of a desired set against live objects read from `live` (one read
/// per object: the CLI's path; the daemon reads its cache in place). `inventory` is the tier's
/// state.
pub async fn check(
    set: &DesiredSet,
    tier: &TierConfig,
    inventory: &crate::state::Inventory,
    live: &impl LiveObjects,
) -> Result<Vec<Finding>, LiveError> {
    let mut findings = Vec::new();
    for object in &set.objects {
        let key = &object.key;
        let found = match live.get(key).await {
            Ok(found) => found,
            // A kind the server does not serve has no objects (validate reports the kind).
            Err(LiveError::UnknownKind { .. }) => None,
            Err(e) => return Err(e),
        };
        let state = match &found {
            None => Live::Absent,
            Some(v) => Live::Present {
                tier_label: tier_label(v),
            },
        };
        let decision = claim(
            &tier.name,
            inventory.contains_key(key),
            adopts(tier, key),
            state,
        );
        if let (Claim::Refuse(r), Some(v)) = (decision, &found) {
            findings.push(finding(object, tier, &r, &managers(v)));
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;

    const TIER: &str = "exp";

    fn present(label: Option<&str>) -> Live<'_> {
        Live::Present { tier_label: label }
    }

    #[test]
    fn an_absent_object_is_created_and_an_inventory_object_is_the_tiers_own() {
        assert_eq!(claim(TIER, false, false, Live::Absent), Claim::Create);
        assert_eq!(claim(TIER, true, false, Live::Absent), Claim::Create);
        assert_eq!(claim(TIER, true, false, present(Some(TIER))), Claim::Own);
        // A crash between the inventory write and the apply (`not-applied`), or a label
        // someone removed: still the tier's, the label is drift.
        assert_eq!(claim(TIER, true, false, present(None)), Claim::Own);
    }

    #[test]
    fn an_object_outside_the_inventory_is_refused_whatever_its_label_unless_adopted() {
        assert_eq!(
            claim(TIER, false, false, present(None)),
            Claim::Refuse(Refusal::Unlabelled)
        );
        assert_eq!(
            claim(TIER, false, false, present(Some("ops"))),
            Claim::Refuse(Refusal::OtherTier("ops".into()))
        );
        // A label alone is no proof.
        assert_eq!(
            claim(TIER, false, false, present(Some(TIER))),
            Claim::Refuse(Refusal::LabelOnly)
        );
        for label in [None, Some("ops"), Some(TIER)] {
            assert_eq!(claim(TIER, false, true, present(label)), Claim::Adopt);
        }
    }

    #[test]
    fn another_tiers_label_outranks_the_inventory() {
        // Another tier adopted it since: it is that tier's now.
        assert_eq!(
            claim(TIER, true, false, present(Some("ops"))),
            Claim::Refuse(Refusal::OtherTier("ops".into()))
        );
        assert_eq!(claim(TIER, true, true, present(Some("ops"))), Claim::Adopt);
    }

    fn object(manifest: Value) -> DesiredObject {
        DesiredObject::for_test(manifest, "tiers/exp/namespace.yaml", 2)
    }

    #[test]
    fn a_refusal_names_the_object_its_holder_and_the_adopt_entry_that_fixes_it() {
        let tier: TierConfig =
            serde_yaml::from_str("{name: exp, ref: main, namespaces: [exp], clusterScoped: true}")
                .expect("tier");
        let ns =
            object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "exp"}}));
        let live = json!({"metadata": {"name": "exp", "managedFields": [
            {"manager": "kubectl-create", "operation": "Update"},
            {"manager": "kubectl-label", "operation": "Update"},
            {"manager": "kubectl-create", "operation": "Update"}
        ]}});
        assert_eq!(tier_label(&live), None);
        let f = finding(&ns, &tier, &Refusal::Unlabelled, &managers(&live));
        assert_eq!(
            f.to_string(),
            "error: tiers/exp/namespace.yaml line 2: Namespace exp: tier \"exp\" may not take over this object: it exists and no gitopsd tier holds it (no gitopsd.io/tier label; field managers: kubectl-create, kubectl-label); to hand it to the tier, add `adopt: [{kind: Namespace, name: exp}]` to tier \"exp\" in gitopsd.yaml, or remove it from the repo [ownership/not-owned]"
        );
        let cm = object(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "exp"}}),
        );
        let f = finding(&cm, &tier, &Refusal::OtherTier("ops".into()), &[]);
        assert!(
            f.message.contains(
                "it belongs to tier \"ops\" (gitopsd.io/tier=ops; no field managers recorded)"
            ) && f
                .message
                .contains("`adopt: [{kind: ConfigMap, namespace: exp, name: c}]`"),
            "{f}"
        );
        assert_eq!(f.rule.as_str(), "other-tier");
        let f = finding(&cm, &tier, &Refusal::LabelOnly, &[]);
        assert!(f.message.contains("a label alone is no proof"), "{f}");
    }

    #[test]
    fn an_adopt_entry_names_an_object_by_kind_namespace_and_name() {
        let tier: TierConfig = serde_yaml::from_str(
            "{name: exp, ref: main, namespaces: [exp], clusterScoped: true, adopt: [{kind: ConfigMap, namespace: exp, name: c}, {kind: Namespace, name: exp}]}",
        )
        .expect("tier");
        let key = |kind: &str, ns: Option<&str>, name: &str| ObjectKey {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: ns.map(str::to_owned),
            name: name.into(),
        };
        assert!(adopts(&tier, &key("ConfigMap", Some("exp"), "c")));
        assert!(adopts(&tier, &key("Namespace", None, "exp")));
        assert!(!adopts(&tier, &key("ConfigMap", Some("exp"), "d")));
        assert!(!adopts(&tier, &key("Secret", Some("exp"), "c")));
        assert!(!adopts(&tier, &key("ConfigMap", None, "c")));
        let mut other_group = key("Namespace", None, "exp");
        other_group.api_version = "example.com/v1".into();
        assert!(adopts(&tier, &other_group), "no apiVersion: any group");
        let tier: TierConfig = serde_yaml::from_str(
            "{name: exp, ref: main, namespaces: [exp], clusterScoped: true, adopt: [{apiVersion: v1, kind: Namespace, name: exp}]}",
        )
        .expect("tier");
        assert!(adopts(&tier, &key("Namespace", None, "exp")));
        assert!(!adopts(&tier, &other_group));
    }
}
