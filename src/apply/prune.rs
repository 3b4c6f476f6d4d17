//! Prune planning: which inventory objects that left the desired set may be deleted, behind
//! the guards of [`PruneConfig`]. Pure: the caller reads the live objects and deletes.

use std::collections::HashSet;

use serde_json::Value;

use super::PruneTarget;
use crate::config::PruneConfig;
use crate::live::{ObjectId, ObjectKey};
use crate::render::TIER_LABEL;

/// The annotation that keeps an object from ever being pruned.
pub const PRUNE_ANNOTATION: &str = "gitopsd.io/prune";

/// What prune would do for one tier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// The objects to delete (empty when `refused`).
    pub delete: Vec<PruneTarget>,
    /// Candidates left alone, and why.
    pub skipped: Vec<(ObjectKey, String)>,
    /// Why nothing is deleted at all, with the fix; `None` when the guards passed.
    pub refused: Option<String>,
    /// Candidates already gone from the cluster: the caller drops them from the inventory.
    /// (Added to the planned shape: they are neither deleted nor skipped.)
    pub gone: Vec<ObjectKey>,
}

/// Plans the pruning of `inventory` objects not in `desired`; `live` answers the live object
/// of a key (`None`: it does not exist).
///
/// An empty desired set with `prune.allowEmpty: true` may delete the whole inventory even over
/// `maxDeletePercent`: allowing it is the point of that setting.
pub fn plan_prune(
    tier: &str,
    config: &PruneConfig,
    inventory: &[ObjectKey],
    desired: &HashSet<ObjectKey>,
    live: &dyn Fn(&ObjectKey) -> Option<Value>,
) -> PrunePlan {
    let mut plan = PrunePlan::default();
    // By identity, not version: an object whose manifest moved to another version of its
    // group (`autoscaling/v1` to `autoscaling/v2`) is still desired (issue 21 item 4).
    let desired: HashSet<ObjectId> = desired.iter().map(ObjectKey::id).collect();
    let mut seen = HashSet::new();
    let mut candidates: Vec<(ObjectKey, Value)> = Vec::new();
    for key in inventory {
        if desired.contains(&key.id()) || !seen.insert(key.id()) {
            continue;
        }
        match live(key) {
            None => plan.gone.push(key.clone()),
            Some(object) => candidates.push((key.clone(), object)),
        }
    }
    if !config.enabled {
        let why = format!("prune is off for tier {tier}");
        plan.skipped = candidates
            .into_iter()
            .map(|(k, _)| (k, why.clone()))
            .collect();
        return plan;
    }

    let mut delete = Vec::new();
    for (key, object) in candidates {
        match skip_reason(tier, config, &key, &object) {
            Some(why) => plan.skipped.push((key, why)),
            None => delete.push(PruneTarget {
                uid: object
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                key,
            }),
        }
    }

    let total = inventory.len();
    if desired.is_empty() && total > 0 {
        if !config.allow_empty {
            plan.refused = Some(format!(
                "the desired set of tier {tier} is empty: refusing to prune all {total} objects; set prune.allowEmpty: true if that is intended"
            ));
            return plan;
        }
    } else if delete.len() * 100 > usize::from(config.max_delete_percent) * total {
        plan.refused = Some(format!(
            "would delete {} of {total} objects ({}%), over the limit of {}% (prune.maxDeletePercent) for tier {tier}; raise prune.maxDeletePercent if that is intended",
            delete.len(),
            delete.len() * 100 / total,
            config.max_delete_percent
        ));
        return plan;
    }
    plan.delete = delete;
    plan
}

/// Why prune keeps an inventory object that left the desired set (`object`: the live one), or
/// `None` when it deletes it unless the guard refuses the whole prune: what drift reports as
/// the extra object's fate before prune runs.
pub fn kept_reason(
    tier: &str,
    config: &PruneConfig,
    key: &ObjectKey,
    object: &Value,
) -> Option<String> {
    if !config.enabled {
        return Some(format!("prune is off for tier {tier}"));
    }
    skip_reason(tier, config, key, object)
}

/// Why a candidate must not be deleted, if it must not.
fn skip_reason(
    tier: &str,
    config: &PruneConfig,
    key: &ObjectKey,
    object: &Value,
) -> Option<String> {
    if !config.may_prune_kind(&key.kind) {
        return Some(format!(
            "{} objects are protected from prune; list the kind to opt in (prune.kinds: [{}])",
            key.kind, key.kind
        ));
    }
    let annotation = object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(PRUNE_ANNOTATION))
        .and_then(Value::as_str);
    if annotation == Some("disabled") {
        return Some(format!("annotated {PRUNE_ANNOTATION}: disabled"));
    }
    let label = object
        .pointer("/metadata/labels")
        .and_then(|l| l.get(TIER_LABEL))
        .and_then(Value::as_str);
    match label {
        Some(t) if t == tier => None,
        Some(other) => Some(format!(
            "its {TIER_LABEL} label names tier {other}: that tier took it over"
        )),
        None => Some(format!(
            "it has no {TIER_LABEL} label: someone else took it over"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    const TIER: &str = "exp";

    fn key(kind: &str, name: &str) -> ObjectKey {
        ObjectKey {
            api_version: if kind == "Namespace" { "v1" } else { "x/v1" }.into(),
            kind: kind.into(),
            namespace: (kind != "Namespace").then(|| "ns".to_owned()),
            name: name.into(),
        }
    }

    fn object(name: &str, labels: Value, annotations: Value) -> Value {
        json!({"metadata": {"name": name, "uid": format!("uid-{name}"),
            "labels": labels, "annotations": annotations}})
    }

    fn ours(name: &str) -> Value {
        object(name, json!({TIER_LABEL: TIER}), json!({}))
    }

    fn enabled() -> PruneConfig {
        PruneConfig {
            enabled: true,
            max_delete_percent: 50,
            allow_empty: false,
            kinds: Vec::new(),
        }
    }

    /// Inventory a..j (10 objects), every one live and ours unless `live` says otherwise.
    fn run(
        config: &PruneConfig,
        inventory: &[ObjectKey],
        desired: &[ObjectKey],
        live: HashMap<ObjectKey, Option<Value>>,
    ) -> PrunePlan {
        let desired: HashSet<ObjectKey> = desired.iter().cloned().collect();
        let lookup = |k: &ObjectKey| match live.get(k) {
            Some(v) => v.clone(),
            None => Some(ours(&k.name)),
        };
        plan_prune(TIER, config, inventory, &desired, &lookup)
    }

    fn ten() -> Vec<ObjectKey> {
        "abcdefghij"
            .chars()
            .map(|c| key("ConfigMap", &c.to_string()))
            .collect()
    }

    fn names(targets: &[PruneTarget]) -> Vec<&str> {
        targets.iter().map(|t| t.key.name.as_str()).collect()
    }

    #[test]
    fn deletes_candidates_with_their_uid() {
        let inv = ten();
        let plan = run(&enabled(), &inv, &inv[2..], HashMap::new());
        assert_eq!(names(&plan.delete), ["a", "b"]);
        assert_eq!(plan.delete[0].uid.as_deref(), Some("uid-a"));
        assert_eq!(plan.refused, None);
        assert!(plan.skipped.is_empty() && plan.gone.is_empty());
    }

    #[test]
    fn an_object_moved_to_another_version_of_its_group_is_not_pruned() {
        let v1 = ObjectKey {
            api_version: "autoscaling/v1".into(),
            kind: "HorizontalPodAutoscaler".into(),
            namespace: Some("ns".into()),
            name: "api".into(),
        };
        let v2 = ObjectKey {
            api_version: "autoscaling/v2".into(),
            ..v1.clone()
        };
        let other_group = ObjectKey {
            api_version: "example.com/v1".into(),
            ..v1.clone()
        };
        let mut inv = ten();
        inv.push(v1.clone());
        let mut desired = inv[..10].to_vec();
        desired.push(v2);
        let plan = run(&enabled(), &inv, &desired, HashMap::new());
        assert_eq!(plan, PrunePlan::default());
        // Another group is another object: the v1 HPA is pruned.
        desired.pop();
        desired.push(other_group);
        let plan = run(&enabled(), &inv, &desired, HashMap::new());
        assert_eq!(names(&plan.delete), ["api"]);
    }

    #[test]
    fn nothing_to_prune() {
        let inv = ten();
        let plan = run(&enabled(), &inv, &inv, HashMap::new());
        assert_eq!(plan, PrunePlan::default());
        let plan = run(&enabled(), &[], &[], HashMap::new());
        assert_eq!(plan, PrunePlan::default());
    }

    #[test]
    fn gone_objects_are_neither_deleted_nor_skipped() {
        let inv = ten();
        let live = HashMap::from([(inv[0].clone(), None)]);
        let plan = run(&enabled(), &inv, &inv[2..], live);
        assert_eq!(plan.gone, [inv[0].clone()]);
        assert_eq!(names(&plan.delete), ["b"]);
        assert!(plan.skipped.is_empty());
    }

    #[test]
    fn prune_off_skips_everything() {
        let inv = ten();
        let config = PruneConfig::default();
        let plan = run(&config, &inv, &inv[2..], HashMap::new());
        assert!(plan.delete.is_empty());
        assert_eq!(plan.refused, None);
        assert_eq!(plan.skipped.len(), 2);
        assert_eq!(plan.skipped[0].1, "prune is off for tier exp");
    }

    #[test]
    fn protected_kinds_need_opting_in() {
        let ns = key("Namespace", "shop");
        let mut inv = ten();
        inv.push(ns.clone());
        let desired = &inv[..10];
        let plan = run(&enabled(), &inv, desired, HashMap::new());
        assert!(plan.delete.is_empty());
        assert_eq!(plan.skipped.len(), 1);
        assert_eq!(plan.skipped[0].0, ns);
        assert!(
            plan.skipped[0].1.contains("Namespace"),
            "{}",
            plan.skipped[0].1
        );
        assert!(
            plan.skipped[0].1.contains("prune.kinds: [Namespace]"),
            "{}",
            plan.skipped[0].1
        );

        let config = PruneConfig {
            kinds: vec!["Namespace".into()],
            ..enabled()
        };
        let plan = run(&config, &inv, desired, HashMap::new());
        assert_eq!(names(&plan.delete), ["shop"]);
    }

    #[test]
    fn annotation_disables_prune() {
        let inv = ten();
        let live = HashMap::from([(
            inv[0].clone(),
            Some(object(
                "a",
                json!({TIER_LABEL: TIER}),
                json!({PRUNE_ANNOTATION: "disabled"}),
            )),
        )]);
        let plan = run(&enabled(), &inv, &inv[2..], live);
        assert_eq!(names(&plan.delete), ["b"]);
        assert_eq!(plan.skipped[0].0, inv[0]);
        assert!(plan.skipped[0].1.contains("gitopsd.io/prune: disabled"));
    }

    #[test]
    fn objects_taken_over_are_skipped() {
        let inv = ten();
        let live = HashMap::from([
            (inv[0].clone(), Some(object("a", json!({}), json!({})))),
            (
                inv[1].clone(),
                Some(object("b", json!({TIER_LABEL: "other"}), json!({}))),
            ),
        ]);
        let plan = run(&enabled(), &inv, &inv[2..], live);
        assert!(plan.delete.is_empty());
        assert!(
            plan.skipped[0].1.contains("no gitopsd.io/tier label"),
            "{}",
            plan.skipped[0].1
        );
        assert!(
            plan.skipped[1].1.contains("tier other"),
            "{}",
            plan.skipped[1].1
        );
    }

    #[test]
    fn empty_desired_set_is_refused() {
        let inv = ten();
        let plan = run(&enabled(), &inv, &[], HashMap::new());
        assert!(plan.delete.is_empty());
        assert_eq!(
            plan.refused.as_deref(),
            Some(
                "the desired set of tier exp is empty: refusing to prune all 10 objects; set prune.allowEmpty: true if that is intended"
            )
        );
    }

    #[test]
    fn empty_desired_set_allowed() {
        let inv = ten();
        let config = PruneConfig {
            allow_empty: true,
            ..enabled()
        };
        let plan = run(&config, &inv, &[], HashMap::new());
        assert_eq!(plan.delete.len(), 10);
        assert_eq!(plan.refused, None);
    }

    #[test]
    fn over_the_share_is_refused() {
        let inv = ten();
        let plan = run(&enabled(), &inv, &inv[8..], HashMap::new());
        assert!(plan.delete.is_empty());
        let why = plan.refused.unwrap_or_default();
        assert!(
            why.starts_with(
                "would delete 8 of 10 objects (80%), over the limit of 50% (prune.maxDeletePercent)"
            ),
            "{why}"
        );
    }

    #[test]
    fn exactly_at_the_share_is_allowed() {
        let inv = ten();
        let plan = run(&enabled(), &inv, &inv[5..], HashMap::new());
        assert_eq!(plan.delete.len(), 5);
        assert_eq!(plan.refused, None);
    }

    #[test]
    fn skipped_objects_do_not_count_towards_the_share() {
        let inv = ten();
        // 8 candidates, 5 of them taken over: 3 deleted, 30%.
        let live: HashMap<_, _> = inv[..5]
            .iter()
            .map(|k| (k.clone(), Some(object(&k.name, json!({}), json!({})))))
            .collect();
        let plan = run(&enabled(), &inv, &inv[8..], live);
        assert_eq!(plan.delete.len(), 3);
        assert_eq!(plan.skipped.len(), 5);
        assert_eq!(plan.refused, None);
    }
}
