//! What one sync did, as the reconcile reports it: objects counted per outcome (typed), and
//! what outranks the sync's own result in its report (bug f).

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
