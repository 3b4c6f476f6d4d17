//! What one sync did, as the reconcile reports it: objects counted per outcome (typed), and
//! what outranks the sync's own result in its report (bug f).

use std::collections::BTreeMap;

use crate::apply::Outcome;
use crate::classify::DriftItem;
use crate::desired::Failure;
use crate::drift::DriftReport;
use crate::health::Health;
use crate::policy::Unconvergeable;
use crate::status::{SyncState, TierStatus, UnhealthyObject};
use crate::window::WindowState;

/// What one reconcile of the active set writes to the tier's status: gathered while it runs,
/// written in one update at its end (with the sync record and `lastReconcileAt`), so a reader
/// never sees half a reconcile.
#[derive(Debug, Default)]
pub(super) struct StatusReport {
    /// The sync's result; `None` when it stopped before its end (the error says why).
    pub sync: Option<SyncStatus>,
    /// The tier's health; `None` when it was not assessed (a refused revision, a stopped sync).
    pub health: Option<HealthStatus>,
}

#[derive(Debug)]
pub(super) struct SyncStatus {
    pub window: Option<WindowState>,
    pub revision: Option<String>,
    pub sync: SyncState,
    pub objects: usize,
    pub alerts: Vec<DriftItem>,
    pub unconvergeable: Vec<Unconvergeable>,
    pub prune_refused: Option<String>,
    pub drift: DriftReport,
    pub last_error: Option<String>,
    pub dry_run_cache_entries: usize,
}

#[derive(Debug)]
pub(super) struct HealthStatus {
    pub health: Health,
    pub unhealthy: Vec<UnhealthyObject>,
    pub last_healthy_revision: Option<String>,
    pub failed_revision: Option<String>,
    pub rollbacks: u64,
}

impl StatusReport {
    /// Writes the report into `s`; a sync that failed (`error`) is `Failed` with it.
    pub fn write(self, s: &mut TierStatus, error: Option<String>) {
        if let Some(h) = self.health {
            s.health = h.health;
            s.unhealthy = h.unhealthy;
            s.last_healthy_revision = h.last_healthy_revision;
            s.failed_revision = h.failed_revision;
            s.rollbacks = h.rollbacks;
        }
        if let Some(r) = self.sync {
            s.window = r.window;
            s.revision = r.revision;
            s.sync = r.sync;
            s.objects = r.objects;
            s.alerts = r.alerts;
            s.unconvergeable = r.unconvergeable;
            s.prune_refused = r.prune_refused;
            s.drift = Some(r.drift);
            s.last_error = r.last_error;
            s.dry_run_cache_entries = r.dry_run_cache_entries;
        }
        if let Some(e) = error {
            s.sync = SyncState::Failed;
            s.last_error = Some(e);
        }
    }
}

/// Objects of one sync per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tally {
    created: usize,
    configured: usize,
    unchanged: usize,
    pruned: usize,
    failed: usize,
}

impl Tally {
    fn slot(&mut self, outcome: Outcome) -> &mut usize {
        match outcome {
            Outcome::Created => &mut self.created,
            Outcome::Configured => &mut self.configured,
            Outcome::Unchanged => &mut self.unchanged,
            Outcome::Pruned => &mut self.pruned,
            Outcome::Failed => &mut self.failed,
        }
    }

    pub fn add(&mut self, outcome: Outcome) {
        *self.slot(outcome) += 1;
    }

    pub fn get(&self, outcome: Outcome) -> usize {
        let mut copy = *self;
        *copy.slot(outcome)
    }

    /// Something was created, configured, pruned or failed.
    pub fn changed(&self) -> bool {
        self.created + self.configured + self.pruned + self.failed > 0
    }

    pub fn is_empty(&self) -> bool {
        !self.changed() && self.unchanged == 0
    }

    /// As the sync record, the audit log and Events write it: each outcome that happened, by
    /// its name.
    pub fn to_map(self) -> BTreeMap<String, usize> {
        [
            Outcome::Created,
            Outcome::Configured,
            Outcome::Unchanged,
            Outcome::Pruned,
            Outcome::Failed,
        ]
        .into_iter()
        .filter(|o| self.get(*o) > 0)
        .map(|o| (o.as_str().to_owned(), self.get(o)))
        .collect()
    }
}

/// The revision and the reason the tier is not in sync for, other than a failure of the sync
/// itself: the newest revision rejected (render, validation, ownership; named, as it is not
/// the one deployed), a failing fetch, a refused prune. `None` when nothing outranks the sync's
/// own outcome.
pub(super) fn standing_error(
    newest_failure: Option<&Failure>,
    active: Option<&str>,
    source_error: Option<&str>,
    prune_refused: Option<&str>,
) -> Option<(String, String)> {
    if let Some(f) = newest_failure {
        let (Failure::Render { revision, .. } | Failure::Blocked { revision, .. }) = f;
        return Some((revision.clone(), f.to_string()));
    }
    let active = active?;
    source_error
        .or(prune_refused)
        .map(|e| (active.to_owned(), e.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_is_written_as_the_outcomes_that_happened() {
        let mut t = Tally::default();
        assert!(t.is_empty() && !t.changed());
        t.add(Outcome::Unchanged);
        assert!(!t.is_empty() && !t.changed());
        t.add(Outcome::Created);
        t.add(Outcome::Created);
        t.add(Outcome::Failed);
        assert_eq!(t.get(Outcome::Created), 2);
        let map = t.to_map();
        let expected: BTreeMap<String, usize> = [("created", 2), ("failed", 1), ("unchanged", 1)]
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect();
        assert_eq!(map, expected);
    }

    #[test]
    fn a_blocked_newer_revision_is_named_with_its_reason() {
        let failure = Failure::Render {
            revision: "b".repeat(40),
            error: "base/x.yaml: not YAML".into(),
        };
        let (revision, error) =
            standing_error(Some(&failure), Some("a"), None, None).expect("an error");
        assert_eq!(revision, "b".repeat(40));
        assert!(error.contains("did not render") && error.contains("base/x.yaml"));
    }

    #[test]
    fn a_failing_fetch_or_a_refused_prune_is_the_active_revisions_error() {
        assert_eq!(
            standing_error(None, Some("a"), Some("fetch failed"), Some("prune refused")),
            Some(("a".into(), "fetch failed".into()))
        );
        assert_eq!(
            standing_error(None, Some("a"), None, Some("prune refused")),
            Some(("a".into(), "prune refused".into()))
        );
        assert_eq!(standing_error(None, Some("a"), None, None), None);
        assert_eq!(standing_error(None, None, Some("x"), None), None);
    }
}
