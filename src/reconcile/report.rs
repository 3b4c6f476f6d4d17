//! What one sync did, as the reconcile reports it: objects counted per outcome (typed), and
//! what outranks the sync's own result in its report (bug f).

use crate::classify::DriftItem;
use crate::desired::Failure;
use crate::drift::DriftReport;
use crate::health::Health;
use crate::hold::HoldKind;
use crate::policy::Unconvergeable;
use crate::revision::Revision;
use crate::state::TierState;
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
    pub revision: Option<Revision>,
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
    pub stored: StoredOutcomes,
}

/// What the tier state says of past rollouts, as the status shows it: written when the state
/// is read (intake) and with each health assessment.
#[derive(Debug, Default, PartialEq)]
pub(super) struct StoredOutcomes {
    pub last_healthy_revision: Option<Revision>,
    pub failed_revision: Option<Revision>,
    pub rollbacks: u64,
}

impl StoredOutcomes {
    pub fn of(state: &TierState) -> StoredOutcomes {
        StoredOutcomes {
            last_healthy_revision: state.last_healthy_revision.clone(),
            failed_revision: state.failed_revision.clone(),
            rollbacks: state.rollbacks,
        }
    }

    fn write(self, s: &mut TierStatus) {
        s.last_healthy_revision = self.last_healthy_revision;
        s.failed_revision = self.failed_revision;
        s.rollbacks = self.rollbacks;
    }
}

impl StatusReport {
    /// Writes the report into `s`; a sync that failed (`error`) is `Failed` with it.
    pub fn write(self, s: &mut TierStatus, error: Option<String>) {
        if let Some(h) = self.health {
            s.health = h.health;
            s.unhealthy = h.unhealthy;
            h.stored.write(s);
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

/// What intake (offer, hold, state read, restore) changes in the tier's status, gathered and
/// written in one update: at the end of an offer, or with the reconcile's report when intake
/// ran inside a reconcile. Each field is the last value intake set (`None`: not touched), as a
/// series of updates would have left it.
#[derive(Debug, Default, PartialEq)]
pub(super) struct StatusDelta {
    pub source_revision: Option<Revision>,
    /// The tier state as read.
    pub stored: Option<StoredOutcomes>,
    /// The revision held back and by what (`Some(None)`: no longer held).
    pub held: Option<Option<(Revision, HoldKind)>>,
    pub window: Option<Option<WindowState>>,
    pub sync: Option<SyncState>,
    pub last_error: Option<Option<String>>,
}

impl StatusDelta {
    /// The tier is `sync` with `message` as its error.
    pub fn fail(&mut self, sync: SyncState, message: String) {
        self.sync = Some(sync);
        self.last_error = Some(Some(message));
    }

    /// Nothing to write (derived from `Default`, so a new field cannot be forgotten here).
    pub fn is_empty(&self) -> bool {
        *self == StatusDelta::default()
    }

    pub fn write(self, s: &mut TierStatus) {
        if let Some(r) = self.source_revision {
            s.source_revision = Some(r);
        }
        if let Some(stored) = self.stored {
            stored.write(s);
        }
        if let Some(held) = self.held {
            let (revision, kind) = held.unzip();
            s.held_revision = revision;
            s.held_by = kind;
        }
        if let Some(w) = self.window {
            s.window = w;
        }
        if let Some(sync) = self.sync {
            s.sync = sync;
        }
        if let Some(e) = self.last_error {
            s.last_error = e;
        }
    }
}

/// The revision and the reason the tier is not in sync for, other than a failure of the sync
/// itself: the newest revision rejected (render, validation, ownership; named, as it is not
/// the one deployed), a failing fetch, a refused prune. `None` when nothing outranks the sync's
/// own outcome.
pub(super) fn standing_error(
    newest_failure: Option<&Failure>,
    active: Option<&Revision>,
    source_error: Option<&str>,
    prune_refused: Option<&str>,
) -> Option<(Revision, String)> {
    if let Some(f) = newest_failure {
        let (Failure::Render { revision, .. } | Failure::Blocked { revision, .. }) = f;
        return Some((revision.clone(), f.to_string()));
    }
    let active = active?;
    source_error
        .or(prune_refused)
        .map(|e| (active.clone(), e.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_newer_revision_is_named_with_its_reason() {
        let failure = Failure::Render {
            revision: "b".repeat(40).into(),
            error: "base/x.yaml: not YAML".into(),
        };
        let (revision, error) =
            standing_error(Some(&failure), Some(&"a".into()), None, None).expect("an error");
        assert_eq!(revision.as_str(), "b".repeat(40));
        assert!(error.contains("did not render") && error.contains("base/x.yaml"));
    }

    #[test]
    fn a_failing_fetch_or_a_refused_prune_is_the_active_revisions_error() {
        assert_eq!(
            standing_error(
                None,
                Some(&"a".into()),
                Some("fetch failed"),
                Some("prune refused")
            ),
            Some(("a".into(), "fetch failed".into()))
        );
        assert_eq!(
            standing_error(None, Some(&"a".into()), None, Some("prune refused")),
            Some(("a".into(), "prune refused".into()))
        );
        assert_eq!(standing_error(None, Some(&"a".into()), None, None), None);
        assert_eq!(standing_error(None, None, Some("x"), None), None);
    }

    #[test]
    fn an_intake_delta_writes_its_last_values_and_leaves_the_rest() {
        let mut s = TierStatus {
            revision: Some("a".into()),
            held_revision: Some("h".into()),
            held_by: Some(HoldKind::Window),
            last_error: Some("old".into()),
            ..TierStatus::new("t")
        };
        let mut d = StatusDelta::default();
        assert!(d.is_empty());
        d.source_revision = Some("b".into());
        d.fail(SyncState::Failed, "first".into());
        d.fail(SyncState::Blocked, "second".into());
        d.held = Some(None);
        d.write(&mut s);
        assert_eq!(s.source_revision, Some("b".into()));
        assert_eq!(s.sync, SyncState::Blocked);
        assert_eq!(s.last_error.as_deref(), Some("second"));
        assert_eq!((&s.held_revision, s.held_by), (&None, None));
        assert_eq!(s.revision, Some("a".into()), "not intake's to change");

        let cleared = StatusDelta {
            last_error: Some(None),
            ..StatusDelta::default()
        };
        cleared.write(&mut s);
        assert_eq!(s.last_error, None);
        assert_eq!(s.sync, SyncState::Blocked, "untouched");
    }
}
