//! The reconcile's decisions, as pure functions of plain data: what of the active set to deploy,
//! which drift waits for a change window, the manifest a correction applies, whether prune
//! runs, and the tier's one sync state. No I/O, no `&mut self`: the reconciler gathers the
//! inputs (state, live cache, drift report, policy decision) and carries the plan out.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::classify::Severity;
use crate::config::Action;
use crate::diff::{FIELD_MANAGER, FieldPath, applied_fields_v1, compare};
use crate::drift::DriftReport;
use crate::live::ObjectKey;
use crate::policy::{Correction, hold_back};
use crate::render::{DesiredObject, DesiredSet};
use crate::state::{Inventory, short_digest};
use crate::status::SyncState;

/// What a sync deploys of its desired set, before any drift is looked at.
#[derive(Debug, Default, PartialEq)]
pub(super) struct DeployPlan<'a> {
    /// Objects new or changed since they were last applied, in the set's order.
    pub deploy: Vec<&'a DesiredObject>,
    /// Keys not in the inventory yet: written to it (as not applied) before the apply, so a
    /// daemon killed mid-apply still knows about them.
    pub remember: Vec<ObjectKey>,
    /// In a refused sync (ownership): the objects the revision adds or changes, none applied,
    /// and left out of drift (their correction would apply the refused revision piecemeal).
    pub held: HashSet<ObjectKey>,
}

/// What to deploy of `set` given the `inventory` (a digest differs from the one last applied,
/// or the object is new); nothing when the sync is `refused`.
pub(super) fn plan_deploy<'a>(
    set: &'a DesiredSet,
    inventory: &Inventory,
    refused: bool,
) -> DeployPlan<'a> {
    let mut plan = DeployPlan::default();
    for o in &set.objects {
        match inventory.get(&o.key) {
            Some(d) if d == short_digest(&o.digest) => {}
            _ if refused => {
                plan.held.insert(o.key.clone());
            }
            Some(_) => plan.deploy.push(o),
            None => {
                plan.remember.push(o.key.clone());
                plan.deploy.push(o);
            }
        }
    }
    plan
}

/// The drift the policy sees while the change windows are `closed`: `apply` items wait
/// (critical ones too when `critical_too`); returns the report without them and how many wait.
pub(super) fn outside_window(
    report: &DriftReport,
    closed: bool,
    critical_too: bool,
) -> (DriftReport, usize) {
    if !closed {
        return (report.clone(), 0);
    }
    let mut waiting = 0;
    let mut r = report.clone();
    r.items.retain(|i| {
        let wait = i.action == Action::Apply && (critical_too || i.severity != Severity::Critical);
        if wait {
            waiting += 1;
        }
        !wait
    });
    (r, waiting)
}

/// The manifest a correction applies: exactly the corrected fields take their desired value;
/// every other difference (alerted, ignored, HPA-owned) and every field given up as
/// unconvergeable (`Correction::hold_back`: another controller keeps changing it back) is
/// applied at its live value, so a fought field stops being corrected. A missing object is
/// created from its manifest.
pub(super) fn correction_manifest(c: &Correction, manifest: &Value, live: Option<&Value>) -> Value {
    let Some(live) = live else {
        return manifest.clone();
    };
    let owned = applied_fields_v1(live, FIELD_MANAGER);
    let mut keep: Vec<FieldPath> = compare(manifest, live, owned)
        .into_iter()
        .map(|d| d.path)
        .filter(|p| !c.fields.contains(p))
        .collect();
    for p in &c.hold_back {
        if !keep.contains(p) {
            keep.push(p.clone());
        }
    }
    hold_back(manifest, live, &keep)
}

/// Whether prune runs in this sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PruneStep {
    Run,
    /// Not this time; the note says why when there was something to prune.
    Skip(Option<&'static str>),
}

/// Prune runs only when the newest revision fetched, rendered and validated (`newest_ok`),
/// and every object of the sync applied (an object refused, by RBAC or a conflict, may be the
/// replacement of one prune would delete). `leftovers`: the inventory holds objects that left
/// the desired set.
pub(super) fn prune_step(newest_ok: bool, apply_failed: bool, leftovers: bool) -> PruneStep {
    match (newest_ok, apply_failed) {
        (true, false) => PruneStep::Run,
        (true, true) => {
            PruneStep::Skip(leftovers.then_some(
                "prune skipped: an object of this sync failed to apply (see the failures)",
            ))
        }
        (false, _) => PruneStep::Skip(leftovers.then_some(
            "prune skipped: the newest revision could not be fetched, rendered or validated",
        )),
    }
}

/// What decides the tier's sync state after a sync.
#[derive(Debug, Default)]
pub(super) struct SyncFacts<'a> {
    /// An object of this sync failed to apply, prune or correct.
    pub failed: bool,
    pub unconvergeable: bool,
    /// Drift items not settled by this reconcile (`policy::unsettled`).
    pub unsettled: usize,
    /// The prune guard's refusal, as the status shows it.
    pub prune_refused: Option<&'a str>,
    /// The newest revision could not be rendered or validated (or was refused).
    pub newest_failure: Option<String>,
    /// The newest fetch failed.
    pub source_error: Option<&'a str>,
    /// The newest revision is held back (gate, signature, window): why.
    pub held: Option<&'a str>,
    /// Drift corrections waiting for a change window, and when the windows change next.
    pub window_waiting: usize,
    pub window_next: Option<DateTime<Utc>>,
    /// What happened to the last revision's health (not healthy in time, rolled back).
    pub health_note: Option<&'a str>,
    /// The first failed object's message.
    pub first_failure: Option<&'a str>,
}

/// The one sync rule (docs/DESIGN.md, "Sync state") and the error the status shows with it:
/// `Failed` (the newest revision or fetch failed) and `Blocked` (held, or corrections waiting
/// for a window) outrank the sync's own result; otherwise a failed object, an unconvergeable
/// field, unsettled drift or a refused prune leave the tier `OutOfSync`, and only then is it
/// `Synced`.
pub(super) fn sync_state(f: &SyncFacts) -> (SyncState, Option<String>) {
    if let Some(e) = &f.newest_failure {
        return (SyncState::Failed, Some(e.clone()));
    }
    if let Some(e) = f.source_error {
        return (SyncState::Failed, Some(e.to_owned()));
    }
    if let Some(why) = f.held {
        return (SyncState::Blocked, Some(why.to_owned()));
    }
    if f.window_waiting > 0 {
        let until = f
            .window_next
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "a window opens".into());
        return (
            SyncState::Blocked,
            Some(format!(
                "change window closed: {} drift correction(s) wait until {until}",
                f.window_waiting
            )),
        );
    }
    let sync = if f.failed || f.unconvergeable || f.unsettled > 0 || f.prune_refused.is_some() {
        SyncState::OutOfSync
    } else {
        SyncState::Synced
    };
    let error = f
        .health_note
        .or(f.first_failure)
        .or(f.prune_refused)
        .map(str::to_owned);
    (sync, error)
}

/// The desired objects by key.
pub(super) fn by_key(set: &DesiredSet) -> HashMap<&ObjectKey, &DesiredObject> {
    set.objects.iter().map(|o| (&o.key, o)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::render::ObjectScope;

    fn object(name: &str, digest: &str) -> DesiredObject {
        let manifest = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "t"}, "data": {"k": digest}});
        DesiredObject {
            key: ObjectKey {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("t".into()),
                name: name.into(),
            },
            manifest,
            source: crate::render::SourceLocation {
                file: "base/cm.yaml".into(),
                document: 0,
                line: 1,
                item: None,
            },
            digest: digest.into(),
            scope: ObjectScope::Namespaced,
        }
    }

    fn set(objects: Vec<DesiredObject>) -> DesiredSet {
        DesiredSet {
            tier: "t".into(),
            objects,
            digest: "set".into(),
        }
    }

    /// Three objects: one unchanged since the inventory's digest, one changed, one new.
    fn same_changed_new() -> (DesiredSet, Inventory) {
        let s = set(vec![
            object("same", "d1"),
            object("changed", "d2"),
            object("new", "d3"),
        ]);
        let mut inventory = Inventory::new();
        inventory.insert(s.objects[0].key.clone(), "d1".into());
        inventory.insert(s.objects[1].key.clone(), "old".into());
        (s, inventory)
    }

    #[test]
    fn deploy_takes_new_and_changed_objects_and_remembers_new_ones_first() {
        let (s, inventory) = same_changed_new();
        let plan = plan_deploy(&s, &inventory, false);
        let names: Vec<&str> = plan.deploy.iter().map(|o| o.key.name.as_str()).collect();
        assert_eq!(names, ["changed", "new"]);
        assert_eq!(plan.remember, [s.objects[2].key.clone()]);
        assert!(plan.held.is_empty());
    }

    #[test]
    fn a_refused_sync_deploys_nothing_and_holds_what_it_would_have_changed() {
        let (s, inventory) = same_changed_new();
        let plan = plan_deploy(&s, &inventory, true);
        assert!(plan.deploy.is_empty() && plan.remember.is_empty());
        let held: HashSet<ObjectKey> = s.objects[1..].iter().map(|o| o.key.clone()).collect();
        assert_eq!(plan.held, held);
    }

    #[test]
    fn prune_runs_only_after_a_good_revision_and_a_whole_apply() {
        assert_eq!(prune_step(true, false, true), PruneStep::Run);
        assert!(matches!(
            prune_step(true, true, true),
            PruneStep::Skip(Some(n)) if n.contains("failed to apply")
        ));
        assert!(matches!(
            prune_step(false, false, true),
            PruneStep::Skip(Some(n)) if n.contains("could not be fetched")
        ));
        assert_eq!(prune_step(false, true, false), PruneStep::Skip(None));
    }

    #[test]
    fn a_refused_prune_is_out_of_sync_whatever_drift_says() {
        let (sync, error) = sync_state(&SyncFacts {
            prune_refused: Some("prune refused: 6 objects"),
            ..SyncFacts::default()
        });
        assert_eq!(sync, SyncState::OutOfSync);
        assert_eq!(error.as_deref(), Some("prune refused: 6 objects"));
        assert_eq!(sync_state(&SyncFacts::default()), (SyncState::Synced, None));
    }

    #[test]
    fn the_newest_failure_outranks_a_hold_and_a_hold_outranks_drift() {
        let facts = SyncFacts {
            newest_failure: Some("revision b is blocked".into()),
            held: Some("gate closed"),
            unsettled: 2,
            ..SyncFacts::default()
        };
        assert_eq!(sync_state(&facts).0, SyncState::Failed);
        let facts = SyncFacts {
            held: Some("gate closed"),
            unsettled: 2,
            ..SyncFacts::default()
        };
        assert_eq!(
            sync_state(&facts),
            (SyncState::Blocked, Some("gate closed".into()))
        );
        let facts = SyncFacts {
            window_waiting: 3,
            ..SyncFacts::default()
        };
        let (sync, error) = sync_state(&facts);
        assert_eq!(sync, SyncState::Blocked);
        assert_eq!(
            error.as_deref(),
            Some("change window closed: 3 drift correction(s) wait until a window opens")
        );
    }

    #[test]
    fn a_correction_applies_its_fields_and_holds_fought_ones_at_their_live_value() {
        let manifest = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "api", "namespace": "t"},
            "spec": {"replicas": 2, "paused": false}});
        let live = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "api", "namespace": "t"},
            "spec": {"replicas": 5, "paused": true}});
        let replicas = FieldPath(vec![
            crate::diff::PathSegment::Field("spec".into()),
            crate::diff::PathSegment::Field("replicas".into()),
        ]);
        let c = Correction {
            object: ObjectKey {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: Some("t".into()),
                name: "api".into(),
            },
            hold_back: vec![replicas],
            fields: vec![FieldPath(vec![
                crate::diff::PathSegment::Field("spec".into()),
                crate::diff::PathSegment::Field("paused".into()),
            ])],
            remove: Vec::new(),
        };
        let applied = correction_manifest(&c, &manifest, Some(&live));
        assert_eq!(
            applied["spec"]["replicas"], 5,
            "the fought field stays as it is"
        );
        assert_eq!(
            applied["spec"]["paused"], false,
            "the corrected field is taken back"
        );
        // A missing object is created from its manifest.
        assert_eq!(correction_manifest(&c, &manifest, None), manifest);
    }
}
