//! Drift detection: the desired set against the live objects, each local difference confirmed
//! by a server-side-apply dry-run, extra objects found by the tier label, every difference
//! classified. Secret values are masked by the classify stage and stay masked here.

mod confirm;
pub mod foreign;
mod seam;
mod text;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::future::Future;

use serde::Serialize;
use serde_json::Value;
use tracing::{Instrument, debug, info_span, warn};

use crate::classify::{
    BuiltinRule, DriftItem, Severity, classify, classify_foreign, hpa_scale_targets,
};
use crate::config::TierConfig;
use crate::diff::{FIELD_MANAGER, FieldDiff, ObjectDiff, PathSegment};
use crate::diff::{applied_fields_v1, compare, last_writer};
use crate::live::{LiveError, LiveObjects, ObjectId, ObjectKey};
use crate::render::{DesiredObject, DesiredSet};

pub use confirm::ApiDryRun;
pub use seam::DryRunCache;
pub use text::render_text;

#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("{object}: cannot read the live object: {source}")]
    Live {
        object: String,
        #[source]
        source: LiveError,
    },
    #[error("tier {tier}: cannot list the objects labelled for it: {source}")]
    Labelled {
        tier: String,
        #[source]
        source: LiveError,
    },
    #[error("{object}: the server-side-apply dry-run failed: {source}")]
    DryRun {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("{object}: {source}")]
    Discovery {
        object: String,
        #[source]
        source: LiveError,
    },
}

/// What the server would make of the desired object: a server-side-apply dry-run.
pub trait DryRun {
    /// The object as the server would store it if gitopsd applied `desired` now, given that
    /// `live` is what it holds.
    fn dry_run(
        &self,
        desired: &DesiredObject,
        live: &Value,
    ) -> impl Future<Output = Result<Value, DriftError>> + Send;
}

/// Drift items per severity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SeverityCounts {
    pub critical: usize,
    pub high: usize,
    pub medium: usize,
    pub low: usize,
}

impl SeverityCounts {
    fn add(&mut self, s: Severity) {
        match s {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
        }
    }
}

/// A tier's drift at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftReport {
    pub tier: String,
    /// Sorted by object, then path. Secret values masked.
    pub items: Vec<DriftItem>,
    /// Desired objects with no drift at all.
    pub in_sync: usize,
    /// Objects with at least one drift item (desired, missing or extra).
    pub drifted: usize,
    pub counts: SeverityCounts,
    /// Local differences the dry-run showed to be server defaults or admission mutations.
    pub dismissed_by_dry_run: usize,
}

impl DriftReport {
    pub fn has_drift(&self) -> bool {
        !self.items.is_empty()
    }

    /// Drops the items `drop` picks (what the reconcile knows is no drift: a finished Job its
    /// TTL deleted), keeping the counts true: an object left with no item is in sync.
    pub fn drop_items(&mut self, drop: impl Fn(&DriftItem) -> bool) {
        let objects = |items: &[DriftItem]| {
            items
                .iter()
                .map(DriftItem::object_key)
                .collect::<HashSet<_>>()
                .len()
        };
        let before = objects(&self.items);
        self.items.retain(|i| !drop(i));
        let after = objects(&self.items);
        self.in_sync += before - after;
        self.drifted = self.drifted.saturating_sub(before - after);
        self.counts = SeverityCounts::default();
        for i in &self.items {
            self.counts.add(i.severity);
        }
    }
}

/// Detects the drift of `set` against the cluster `live` reads, confirming each local
/// difference with `confirm`, and classifies it by `tier`'s rules and policy.
pub async fn detect(
    set: &DesiredSet,
    tier: &TierConfig,
    live: &impl LiveObjects,
    confirm: &impl DryRun,
) -> Result<DriftReport, DriftError> {
    Ok(detect_except(set, tier, live, confirm, &HashSet::new())
        .await?
        .report)
}

/// What [`detect_except`] found: the report, and the live copy each drifted desired object was
/// compared with (the policy names a fought field's manager from the very copy its drift was
/// seen on; a later read of the cache may already show another write).
#[derive(Debug)]
pub struct Detected {
    pub report: DriftReport,
    pub lives: HashMap<ObjectKey, Value>,
}

/// [`detect`], leaving out the desired objects in `skip`: those the reconcile has just applied,
/// whose live state the cache may not show yet. They still count as desired (not extra).
pub async fn detect_except(
    set: &DesiredSet,
    tier: &TierConfig,
    live: &impl LiveObjects,
    confirm: &impl DryRun,
    skip: &HashSet<ObjectKey>,
) -> Result<Detected, DriftError> {
    let span = info_span!("detect", tier = %set.tier);
    async {
        // Desired keys and manifests are borrowed, not cloned: this loop runs over every
        // object of every reconcile.
        let mut diffs: Vec<(Cow<'_, ObjectKey>, Cow<'_, Value>, ObjectDiff)> = Vec::new();
        // Live HPAs only (what `hpa_scale_targets` reads): holding every live object until
        // the end of the loop cost a whole copy of the cluster per reconcile.
        let mut live_hpas: Vec<Value> = Vec::new();
        let mut dismissed = 0;
        // Classified at once: they need the live object (for the manager), not kept here.
        let mut foreign_items: Vec<DriftItem> = Vec::new();
        let mut lives: HashMap<ObjectKey, Value> = HashMap::new();
        for o in &set.objects {
            if !skip.is_empty() && skip.contains(&o.key) {
                continue;
            }
            let span = info_span!("object", object = %o.key);
            let (diff, live_obj, dismissed_here, foreign) = async {
                let current = match live.get(&o.key).await {
                    Ok(v) => v,
                    // A kind the server does not serve (its CRD not applied yet): not there.
                    Err(LiveError::UnknownKind { .. }) => None,
                    Err(source) => {
                        return Err(DriftError::Live {
                            object: o.key.to_string(),
                            source,
                        });
                    }
                };
                let Some(current) = current else {
                    return Ok((ObjectDiff::Missing, None, 0, Vec::new()));
                };
                let owned = applied_fields_v1(&current, FIELD_MANAGER);
                let local = compare(&o.manifest, &current, owned);
                if local.is_empty() {
                    let foreign = foreign_drift(o, &current, &local);
                    return Ok((ObjectDiff::Changed(local), Some(current), 0, foreign));
                }
                let seen = local.len();
                let confirmed = match confirm.dry_run(o, &current).await {
                    Ok(result) => confirmed_diffs(local, &result, &current),
                    // A rejected dry-run (webhook, immutable field) proves nothing either way:
                    // report what the local comparison saw rather than hide it.
                    Err(e) => {
                        warn!(error = %e, "dry-run failed; keeping the local diff");
                        local
                    }
                };
                let dismissed = seen - confirmed.len();
                // Security fields the manifest does not set: never dismissed by the dry-run
                // (gitopsd's apply would leave them, which is the point; a mutating webhook
                // that adds one to gitopsd's own apply included), only left to a confirmed
                // diff that already covers them.
                let foreign = foreign_drift(o, &current, &confirmed);
                Ok((
                    ObjectDiff::Changed(confirmed),
                    Some(current),
                    dismissed,
                    foreign,
                ))
            }
            .instrument(span)
            .await?;
            dismissed += dismissed_here;
            let drifted = !foreign.is_empty()
                || matches!(&diff, ObjectDiff::Changed(fields) if !fields.is_empty());
            match live_obj {
                Some(l) if is_hpa(&l) => {
                    if drifted {
                        lives.insert(o.key.clone(), l.clone());
                    }
                    live_hpas.push(l);
                }
                Some(l) if drifted => {
                    lives.insert(o.key.clone(), l);
                }
                _ => {}
            }
            if !foreign.is_empty() {
                foreign_items.extend(classify_foreign(&o.key, &foreign, tier));
            }
            diffs.push((Cow::Borrowed(&o.key), Cow::Borrowed(&o.manifest), diff));
        }

        // Extra objects: labelled for the tier, of the tier's kinds, not desired.
        let kinds = set.kinds();
        // By identity: a kind watched at two versions (two manifests of one group at
        // different versions) shows each object under both, and a desired object under the
        // version it is not desired at is the same object, not an extra one.
        let desired: HashSet<ObjectId> = set.objects.iter().map(|o| o.key.id()).collect();
        let mut extra_seen: HashSet<ObjectId> = HashSet::new();
        let labelled = live
            .labelled_keys(&set.tier, &kinds)
            .await
            .map_err(|source| DriftError::Labelled {
                tier: set.tier.clone(),
                source,
            })?;
        // Only extra objects are read whole: the desired ones were read above.
        for key in labelled {
            if desired.contains(&key.id()) || !extra_seen.insert(key.id()) {
                continue;
            }
            let l = match live.get(&key).await {
                Ok(Some(l)) => l,
                // Gone between the two reads: nothing extra to report.
                Ok(None) => continue,
                Err(source) => {
                    return Err(DriftError::Labelled {
                        tier: set.tier.clone(),
                        source,
                    });
                }
            };
            let shown = without_server_metadata(&l);
            if is_hpa(&l) {
                live_hpas.push(l);
            }
            diffs.push((Cow::Owned(key), Cow::Owned(shown), ObjectDiff::Extra));
        }

        let hpa_targets = hpa_scale_targets(
            set.objects
                .iter()
                .map(|o| &o.manifest)
                .chain(live_hpas.iter()),
        );
        let mut items = Vec::new();
        let mut in_sync = 0;
        let mut drifted = 0;
        for (object, manifest, diff) in &diffs {
            let mut found = classify(object, Some(manifest.as_ref()), diff, tier, &hpa_targets);
            found.extend(foreign_items.iter().filter(|i| i.key == **object).cloned());
            if found.is_empty() {
                in_sync += 1;
            } else {
                drifted += 1;
            }
            items.extend(found);
        }
        // By the path's display string, as the report has always been ordered (a missing
        // path, the whole object, first).
        items.sort_by_cached_key(|i| {
            (
                i.key.namespace.clone(),
                i.key.kind.clone(),
                i.key.name.clone(),
                i.field_path.as_ref().map(ToString::to_string),
            )
        });
        let mut counts = SeverityCounts::default();
        items.iter().for_each(|i| counts.add(i.severity));
        // Only objects the policy may act on (some drift classified, not dismissed).
        lives.retain(|k, _| items.iter().any(|i| i.key == *k));
        Ok(Detected {
            report: DriftReport {
                tier: set.tier.clone(),
                items,
                in_sync,
                drifted,
                counts,
                dismissed_by_dry_run: dismissed,
            },
            lives,
        })
    }
    .instrument(span)
    .await
}

/// What really happens to each extra object of `report` (an object labelled for the tier, not
/// in its desired set), which classify reports with [`crate::classify::NOT_IN_INVENTORY`]:
/// one the tier's inventory holds (`in_inventory`) left git, and prune deletes it in this
/// sync (action `prune`) unless prune keeps it: annotated `gitopsd.io/prune: disabled`, it asks
/// to be kept, and is (`ignore`); else (prune off, a protected kind) it is reported with the
/// reason, or ignored as the policy says. One that is not in the inventory gitopsd did not
/// create, and never deletes.
pub fn settle_extras(
    report: &mut DriftReport,
    tier: &TierConfig,
    in_inventory: &dyn Fn(&ObjectKey) -> bool,
) {
    for item in &mut report.items {
        if item.rule != BuiltinRule::ExtraObject || !in_inventory(&item.object_key()) {
            continue;
        }
        let live = item.live.clone().unwrap_or(Value::Null);
        let asks_to_stay = live
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(crate::apply::PRUNE_ANNOTATION))
            .and_then(Value::as_str)
            == Some("disabled");
        match crate::apply::kept_reason(&tier.name, &tier.prune, &item.object_key(), &live) {
            None => {
                item.action = crate::config::Action::Prune;
                item.reason = Some("not in git any more: prune deletes it in this sync".into());
            }
            Some(_) if asks_to_stay => {
                item.action = crate::config::Action::Ignore;
                item.reason = Some(format!(
                    "not in git any more, kept as its annotation {}: disabled asks",
                    crate::apply::PRUNE_ANNOTATION
                ));
            }
            Some(why) => {
                item.reason = Some(format!(
                    "not in git any more, and prune keeps it: {why}; delete it, or add it back to git"
                ));
            }
        }
    }
}

/// The foreign security fields of `live` ([`foreign::foreign_security_fields`]) the
/// (confirmed) comparison has not already reported (a field the manifest sets, or a whole atomic list),
/// each with the field manager that wrote it.
fn foreign_drift(
    o: &DesiredObject,
    live: &Value,
    local: &[FieldDiff],
) -> Vec<(FieldDiff, Option<String>)> {
    let related = |a: &[PathSegment], b: &[PathSegment]| a.starts_with(b) || b.starts_with(a);
    foreign::foreign_security_fields(&o.key.kind, &o.manifest, live)
        .into_iter()
        .filter(|f| !local.iter().any(|l| related(&l.path.0, &f.diff.path.0)))
        .map(|f| {
            let manager = last_writer(live, &f.diff.path);
            debug!(
                path = %f.diff.path,
                entry = f.entry.id,
                manager = manager.as_deref().unwrap_or("?"),
                "foreign security field"
            );
            (f.diff, manager)
        })
        .collect()
}

fn is_hpa(object: &Value) -> bool {
    object.get("kind").and_then(Value::as_str) == Some("HorizontalPodAutoscaler")
}

/// The local diffs the dry-run confirms: where the object the server would store after
/// gitopsd's apply differs from the live one. Where they agree, the local difference was a
/// default or an admission mutation the server applies anyway: not drift.
fn confirmed_diffs(local: Vec<FieldDiff>, dry_run: &Value, live: &Value) -> Vec<FieldDiff> {
    local
        .into_iter()
        .filter(|fd| !same(fd.path.value_in(dry_run), fd.path.value_in(live)))
        .collect()
}

/// Absent, null, `{}` and `[]` are one value, as in the diff stage.
fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    if empty(a) && empty(b) {
        return true;
    }
    a == b
}

/// The object without what the server writes on its own: for showing an extra object.
fn without_server_metadata(live: &Value) -> Value {
    let mut v = live.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "managedFields",
            "resourceVersion",
            "uid",
            "generation",
            "creationTimestamp",
        ] {
            meta.remove(k);
        }
    }
    if let Some(map) = v.as_object_mut() {
        map.remove("status");
    }
    v
}

#[cfg(test)]
mod tests;
