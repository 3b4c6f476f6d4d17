//! The policy stage: what the reconcile does about each drift (apply, alert or ignore, as the
//! tier's policy says for its severity), and where gitopsd stops fighting another controller.
//!
//! A drift gitopsd corrected that comes back, again and again at the same field, while the
//! desired object stays the same, is another controller writing that field. Re-applying it
//! forever only makes both controllers busy; after [`FIGHT_LIMIT`] corrections within
//! [`FIGHT_WINDOW`] the field is held back from applies and reported as unconvergeable, naming
//! the field manager that wrote it.
//!
//! Deletions count the same way: an object gitopsd created again after it went missing, that
//! goes missing again and again (a TTL controller, an operator that owns it, a finalizer loop),
//! is given up after [`FIGHT_LIMIT`] recreations within [`FIGHT_WINDOW`] and reported as
//! unconvergeable, naming who deletes it where the last live copy tells ([`deletion_hint`]).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::classify::{BuiltinRule, DriftItem, Severity};
use crate::config::Action;
use crate::diff::{FIELD_MANAGER, FieldPath, PathSegment, last_writer, matches_keys};
use crate::drift::DriftReport;
use crate::live::ObjectKey;

/// Corrections of one field, within [`FIGHT_WINDOW`], after which gitopsd stops correcting it.
pub const FIGHT_LIMIT: usize = 3;
pub const FIGHT_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The path under which recreations of a deleted object are counted, and shown.
pub const DELETED: &str = "(the object)";

/// What gitopsd gave up fighting over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Fought {
    /// A field another writer keeps changing back.
    Field,
    /// The whole object: something keeps deleting it after gitopsd creates it again.
    Deletion,
}

/// A field gitopsd gave up correcting: something else keeps writing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unconvergeable {
    pub object: ObjectKey,
    /// The field fought over; `None` for the whole object (a deletion), written as
    /// [`DELETED`] in the JSON as it always was.
    #[serde(serialize_with = "path_or_deleted")]
    pub path: Option<FieldPath>,
    pub severity: Severity,
    /// The field manager that wrote the live value, when managedFields tell; for a deletion,
    /// who deletes it, as far as its last live copy tells.
    pub manager: Option<String>,
    pub corrections: usize,
    pub fought: Fought,
}

impl Unconvergeable {
    /// The path as shown in logs and the JSON: the field's, or [`DELETED`] for the object.
    pub fn shown_path(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| DELETED.to_owned(), ToString::to_string)
    }
}

fn path_or_deleted<S: serde::Serializer>(
    path: &Option<FieldPath>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => serializer.collect_str(path),
        None => serializer.serialize_str(DELETED),
    }
}

impl std::fmt::Display for Unconvergeable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = &self.object;
        if self.fought == Fought::Deletion {
            return write!(
                f,
                "{name}: created again {} times and deleted again each time, by {}; gitopsd stops creating it until the desired object changes (stop what deletes it, or remove the object from git)",
                self.corrections,
                self.manager
                    .as_deref()
                    .unwrap_or("an unknown deleter (the API server records no deleter, and its last live copy names none)")
            );
        }
        write!(
            f,
            "{name} {}: corrected {} times and changed back each time by {}; gitopsd stops re-applying it until the desired object changes (stop the other writer, or give it the field with a severity override `ignore`)",
            self.shown_path(),
            self.corrections,
            self.manager.as_deref().unwrap_or("another field manager")
        )
    }
}

/// One object to apply again to correct its drift.
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    pub object: ObjectKey,
    /// Fields whose live value is applied instead of the desired one (unconvergeable ones).
    pub hold_back: Vec<FieldPath>,
    /// The corrected fields, to count as corrections once the apply succeeded. Empty for a
    /// missing object.
    pub fields: Vec<FieldPath>,
    /// Foreign security fields to remove (also in `fields`): a server-side apply leaves them,
    /// as gitopsd does not own them, so they are removed by a guarded JSON patch
    /// (`Applier::remove_fields`).
    pub remove: Vec<FieldPath>,
}

impl Correction {
    fn new(object: ObjectKey) -> Correction {
        Correction {
            object,
            hold_back: Vec::new(),
            fields: Vec::new(),
            remove: Vec::new(),
        }
    }

    /// Whether the correction needs a server-side apply of the manifest: a missing object, or
    /// drift other than foreign fields to remove.
    pub fn needs_apply(&self) -> bool {
        self.fields.is_empty() || self.fields.len() > self.remove.len()
    }
}

/// What the policy decided for one drift report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub corrections: Vec<Correction>,
    /// Drift left alone and reported (`alert`).
    pub alerts: Vec<DriftItem>,
    pub unconvergeable: Vec<Unconvergeable>,
}

/// Corrections per field, remembered between reconciles of one tier.
#[derive(Debug, Default)]
pub struct FightTracker {
    /// (object, field path or `None` for the object created again) -> (the desired digest
    /// it was corrected to, when).
    corrected: HashMap<(ObjectKey, Option<FieldPath>), (String, Vec<Instant>)>,
    /// Who deletes each object gitopsd created again, as its last live copy told.
    deleters: HashMap<ObjectKey, String>,
}

impl FightTracker {
    /// Decides what to do about `report`. `digest` gives each desired object's digest (a
    /// changed object starts its count over); `live` its live object (to name the manager).
    pub fn decide(
        &mut self,
        report: &DriftReport,
        digest: &dyn Fn(&ObjectKey) -> Option<String>,
        live: &dyn Fn(&ObjectKey) -> Option<Value>,
        now: Instant,
    ) -> Decision {
        let mut decision = Decision::default();
        let mut per_object: BTreeMap<ObjectKey, Correction> = BTreeMap::new();
        let mut held: BTreeMap<ObjectKey, Vec<FieldPath>> = BTreeMap::new();
        for item in &report.items {
            match item.action {
                // Deleting an extra object is prune's business.
                Action::Ignore | Action::Prune => continue,
                Action::Alert => {
                    decision.alerts.push(item.clone());
                    continue;
                }
                Action::Apply => {}
            }
            // Drift never deletes (classify never gives an extra object `apply`).
            if item.rule == BuiltinRule::ExtraObject {
                continue;
            }
            let key = item.object_key();
            let Some(path) = &item.field_path else {
                // The whole object is missing: create it again, unless it keeps being deleted.
                let current = digest(&key).unwrap_or_default();
                let count = self.recent(&key, None, &current, now);
                if count >= FIGHT_LIMIT {
                    decision.unconvergeable.push(Unconvergeable {
                        manager: self.deleters.get(&key).cloned(),
                        object: key,
                        path: None,
                        severity: item.severity,
                        corrections: count,
                        fought: Fought::Deletion,
                    });
                    continue;
                }
                per_object
                    .entry(key.clone())
                    .or_insert_with(|| Correction::new(key));
                continue;
            };
            let current = digest(&key).unwrap_or_default();
            let count = self.recent(&key, Some(path), &current, now);
            if count >= FIGHT_LIMIT {
                let manager = live(&key).and_then(|l| last_writer(&l, path));
                decision.unconvergeable.push(Unconvergeable {
                    object: key.clone(),
                    path: Some(path.clone()),
                    severity: item.severity,
                    manager,
                    corrections: count,
                    fought: Fought::Field,
                });
                held.entry(key).or_default().push(path.clone());
                continue;
            }
            let c = per_object
                .entry(key.clone())
                .or_insert_with(|| Correction::new(key));
            c.fields.push(path.clone());
            if item.foreign.is_some() {
                c.remove.push(path.clone());
            }
        }
        for (key, mut c) in per_object {
            c.hold_back = held.remove(&key).unwrap_or_default();
            decision.corrections.push(c);
        }
        decision
    }

    /// Records that `fields` of `object` were corrected to the desired object of `digest`.
    pub fn corrected(
        &mut self,
        object: &ObjectKey,
        fields: &[FieldPath],
        digest: &str,
        now: Instant,
    ) {
        for f in fields {
            self.count(object, Some(f.clone()), digest, now);
        }
    }

    /// Notes one correction of `path` (`None`: the object created again).
    fn count(&mut self, object: &ObjectKey, path: Option<FieldPath>, digest: &str, now: Instant) {
        let entry = self
            .corrected
            .entry((object.clone(), path))
            .or_insert_with(|| (digest.to_owned(), Vec::new()));
        if entry.0 != digest {
            *entry = (digest.to_owned(), Vec::new());
        }
        entry.1.push(now);
    }

    /// Corrections of a field within the window, for the current desired object.
    fn recent(
        &mut self,
        object: &ObjectKey,
        path: Option<&FieldPath>,
        digest: &str,
        now: Instant,
    ) -> usize {
        let id = (object.clone(), path.cloned());
        let Some((d, times)) = self.corrected.get_mut(&id) else {
            return 0;
        };
        if d != digest {
            self.corrected.remove(&id);
            return 0;
        }
        times.retain(|t| now.saturating_duration_since(*t) < FIGHT_WINDOW);
        times.len()
    }

    /// Forgets objects that left the desired set.
    pub fn retain(&mut self, keep: impl Fn(&ObjectKey) -> bool) {
        self.corrected.retain(|(k, _), _| keep(k));
        self.deleters.retain(|k, _| keep(k));
    }

    /// Records that `object` was created again (it had gone missing) from the desired object
    /// of `digest`.
    pub fn recreated(&mut self, object: &ObjectKey, digest: &str, now: Instant) {
        self.count(object, None, digest, now);
    }

    /// The objects gitopsd created again and whose deleter is worth noting while they exist.
    pub fn recreated_objects(&self) -> Vec<ObjectKey> {
        self.corrected
            .keys()
            .filter(|(_, p)| p.is_none())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Notes who is likely to delete `object` (from [`deletion_hint`]), kept for the report.
    pub fn note_deleter(&mut self, object: &ObjectKey, hint: Option<String>) {
        if let Some(h) = hint {
            self.deleters.insert(object.clone(), h);
        }
    }
}

/// Who deletes an object, as far as its desired manifest and its last live copy tell: a Job's
/// `ttlSecondsAfterFinished` (the TTL-after-finished controller), an owner reference (its owner
/// or the garbage collector), or else the last field manager other than gitopsd that wrote it.
/// The API server records no deleter in the object; `None` when nothing names one.
pub fn deletion_hint(manifest: &Value, live: Option<&Value>) -> Option<String> {
    let kind = manifest.get("kind").and_then(Value::as_str);
    let ttl = |o: &Value| {
        o.pointer("/spec/ttlSecondsAfterFinished")
            .and_then(Value::as_i64)
    };
    if kind == Some("Job")
        && let Some(t) = live.and_then(ttl).or_else(|| ttl(manifest))
    {
        return Some(format!(
            "the TTL-after-finished controller (ttlSecondsAfterFinished: {t})"
        ));
    }
    let live = live?;
    if let Some(owner) = live
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|o| o.first())
    {
        let at = |f: &str| owner.get(f).and_then(Value::as_str).unwrap_or("?");
        return Some(format!(
            "its owner {} {} (ownerReferences) or the garbage collector",
            at("kind"),
            at("name")
        ));
    }
    live.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .filter(|e| e.get("manager").and_then(Value::as_str) != Some(FIELD_MANAGER))
        // A controller's status writes say nothing about who deletes the object.
        .filter(|e| !status_only(e))
        .max_by_key(|e| e.get("time").and_then(Value::as_str).unwrap_or_default())
        .and_then(|e| e.get("manager").and_then(Value::as_str))
        .map(|m| format!("{m} (probably: the last other field manager that wrote it)"))
}

/// Whether a managedFields entry writes the status alone (the status subresource, or only
/// `f:status`). `fieldsV1` may be JSON text (the live cache keeps it so).
fn status_only(entry: &Value) -> bool {
    if entry.get("subresource").and_then(Value::as_str) == Some("status") {
        return true;
    }
    let parsed;
    let fields = match entry.get("fieldsV1") {
        Some(Value::String(text)) => {
            parsed = serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
            &parsed
        }
        Some(v) => v,
        None => return false,
    };
    fields
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.keys().all(|k| k == "f:status"))
}

/// The drift items of `report` that keep a tier OutOfSync: the one rule of docs/DESIGN.md
/// ("Sync state"). An item is settled when its action is `ignore`, or when its action is
/// automatic (`apply`, `prune`), it was not given up as unconvergeable, and it was done
/// (`done`: the correction or the prune succeeded in this reconcile). Everything else is
/// not: `alert` (reported, left alone), an extra object gitopsd does not delete, a
/// correction that failed or was given up, a prune that was refused or failed.
pub fn unsettled<'r>(
    report: &'r DriftReport,
    decision: &Decision,
    done: &dyn Fn(&DriftItem) -> bool,
) -> Vec<&'r DriftItem> {
    report
        .items
        .iter()
        .filter(|item| match item.action {
            Action::Ignore => false,
            Action::Alert => true,
            Action::Prune => !done(item),
            Action::Apply => {
                let given_up = decision.unconvergeable.iter().any(|u| {
                    u.object == item.object_key()
                        && match &u.path {
                            Some(path) => item.field_path.as_ref() == Some(path),
                            None => u.fought == Fought::Deletion && item.field_path.is_none(),
                        }
                });
                given_up || !done(item)
            }
        })
        .collect()
}

/// The manifest to apply with the `hold_back` fields set to their live values (or removed
/// where the live object has none), so the apply leaves them as they are.
pub fn hold_back(manifest: &Value, live: &Value, fields: &[FieldPath]) -> Value {
    let mut out = manifest.clone();
    for path in fields {
        let live_value = path.value_in(live).cloned();
        let Some((last, parent_path)) = path.0.split_last() else {
            continue;
        };
        let Some(parent) = value_at_mut(&mut out, parent_path) else {
            continue;
        };
        match (last, live_value) {
            (PathSegment::Field(f), Some(v)) => {
                if let Some(m) = parent.as_object_mut() {
                    m.insert(f.clone(), v);
                }
            }
            (PathSegment::Field(f), None) => {
                if let Some(m) = parent.as_object_mut() {
                    m.remove(f);
                }
            }
            (seg, Some(v)) => {
                if let Some(slot) = seg.step_mut(parent) {
                    *slot = v;
                }
            }
            // A list item the live object does not have: leave it out.
            (PathSegment::Keyed(keys), None) => {
                if let Some(items) = parent.as_array_mut() {
                    items.retain(|x| !matches_keys(x, keys));
                }
            }
            (PathSegment::Index(_), None) => {}
        }
    }
    out
}

fn value_at_mut<'v>(root: &'v mut Value, path: &[PathSegment]) -> Option<&'v mut Value> {
    path.iter().try_fold(root, |cur, seg| seg.step_mut(cur))
}

#[cfg(test)]
mod tests;
