//! What each tier is doing, as the reconcile last saw it: the data behind the HTTP API, the
//! metrics and the dashboard. The reconcile writes it; readers take a snapshot.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::apply::{ObjectResult, Tally};
use crate::classify::DriftItem;
use crate::drift::DriftReport;
use crate::health::{Health, ObjectHealth};
use crate::live::ObjectKey;
use crate::policy::Unconvergeable;
use crate::revision::Revision;

/// Syncs kept per tier.
pub const HISTORY: usize = 20;
/// Objects listed by name in a status (failed applies, unhealthy objects); the counts stay
/// exact beyond it.
pub const LISTED: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SyncState {
    /// No sync has finished yet.
    Unknown,
    /// The cluster matches the tier's revision: every drift item is ignored by policy, or was
    /// corrected or pruned in this reconcile (`policy::unsettled`).
    Synced,
    /// Drift remains that was not corrected (`alert`, an extra object gitopsd does not delete,
    /// a correction given up or failed, a prune not done), or objects failed to apply.
    OutOfSync,
    /// The newest revision could not be fetched, rendered or validated, or state could not be
    /// read or written: nothing was applied.
    Failed,
    /// A promotion gate or change window holds the revision back.
    Blocked,
}

/// One sync of a tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRecord {
    pub revision: Revision,
    /// What started it: `revision`, `live-change`, `interval`, `trigger`, `rollback`.
    pub reason: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// Objects per outcome (`created`, `configured`, `unchanged`, `pruned`, `failed`).
    pub outcomes: Tally,
    /// Failed objects, with the reason (at most [`LISTED`]).
    pub failures: Vec<ObjectResult>,
    /// Drift items found, and how many were left alone by policy.
    pub drift: usize,
    pub alerts: usize,
    /// The prune guard refused, or objects it left alone: why.
    pub prune_notes: Vec<String>,
    /// A rollback happened in this sync: from which revision.
    pub rolled_back_from: Option<Revision>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnhealthyObject {
    pub object: ObjectKey,
    #[serde(flatten)]
    pub health: ObjectHealth,
}

/// A tier's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierStatus {
    pub tier: String,
    /// The revision whose desired set the tier deploys (after a rollback: the healthy one).
    pub revision: Option<Revision>,
    /// The newest revision of the tier's ref.
    pub source_revision: Option<Revision>,
    pub sync: SyncState,
    pub health: Health,
    pub unhealthy: Vec<UnhealthyObject>,
    pub objects: usize,
    pub drift: Option<DriftReport>,
    /// Drift left alone because the policy says `alert`.
    pub alerts: Vec<DriftItem>,
    pub unconvergeable: Vec<Unconvergeable>,
    /// The prune guard refuses to delete objects that left git: how many, why, and the fix.
    /// While set, the tier is `OutOfSync` (the cluster holds objects git no longer has).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_refused: Option<String>,
    /// The last sync worth recording (something changed or failed, a new revision, a
    /// trigger); quiet reconciles only move `last_reconcile_at`.
    pub last_sync: Option<SyncRecord>,
    pub last_reconcile_at: Option<DateTime<Utc>>,
    pub history: VecDeque<SyncRecord>,
    pub last_error: Option<String>,
    pub last_healthy_revision: Option<Revision>,
    pub failed_revision: Option<Revision>,
    pub rollbacks: u64,
    /// The newest revision, held back by a promotion gate, a signature check or a change
    /// window (the reason is in `last_error`).
    pub held_revision: Option<Revision>,
    /// What holds it: `promotion-gate`, `soak`, `signature` or `window`.
    pub held_by: Option<crate::hold::HoldKind>,
    /// Whether the change windows are open now and when that changes (`None`: no windows).
    pub window: Option<crate::window::WindowState>,
    /// With leader election, on a replica that does not lead: "standby, leader is X" (this
    /// replica reconciles nothing; the leader's status is the one that counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby: Option<String>,
    /// The tier's ref as the poller last saw it: when it was last fetched, why not since,
    /// whether it is stale, and the last history rewrite (force-push).
    pub source: SourceStatus,
    /// Answers the tier's dry-run cache holds (one per object at most), for
    /// `gitopsd_dryrun_cache_entries`; not part of the status API.
    #[serde(skip)]
    pub dry_run_cache_entries: usize,
}

/// What the daemon knows of the tier's ref in the config repo (written by the daemon on
/// every fetch report, not by the reconcile).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// The last fetch that brought an answer for the ref.
    pub last_fetch_at: Option<DateTime<Utc>>,
    /// The last fetch tried, successful or not.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Why the fetches since `last_fetch_at` failed (`None` once one succeeds again).
    pub fetch_error: Option<String>,
    /// No fetch has answered for longer than the stale threshold (a few poll intervals): the
    /// tier is `Failed` with this said in `lastError`, however its cluster objects look.
    pub stale: bool,
    /// Times the ref's history was rewritten (a force-push) since the daemon started.
    pub rewrites: u64,
    pub last_rewrite: Option<Rewrite>,
}

/// A followed ref moved to a commit that does not descend from the one before.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rewrite {
    pub git_ref: String,
    pub from: Revision,
    pub to: Revision,
    pub at: DateTime<Utc>,
}

impl TierStatus {
    pub fn new(tier: &str) -> TierStatus {
        TierStatus {
            tier: tier.to_owned(),
            revision: None,
            source_revision: None,
            sync: SyncState::Unknown,
            health: Health::Unknown,
            unhealthy: Vec::new(),
            objects: 0,
            drift: None,
            alerts: Vec::new(),
            unconvergeable: Vec::new(),
            prune_refused: None,
            last_sync: None,
            last_reconcile_at: None,
            history: VecDeque::new(),
            last_error: None,
            last_healthy_revision: None,
            failed_revision: None,
            rollbacks: 0,
            held_revision: None,
            held_by: None,
            window: None,
            standby: None,
            source: SourceStatus::default(),
            dry_run_cache_entries: 0,
        }
    }

    /// Adds a finished sync to the history.
    pub fn record(&mut self, sync: SyncRecord) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(sync.clone());
        self.last_sync = Some(sync);
    }
}

/// A tier's status, shared between its reconcile task (the writer) and readers.
#[derive(Debug, Clone)]
pub struct StatusHandle(Arc<RwLock<TierStatus>>);

impl StatusHandle {
    pub fn new(tier: &str) -> StatusHandle {
        StatusHandle(Arc::new(RwLock::new(TierStatus::new(tier))))
    }

    pub fn snapshot(&self) -> TierStatus {
        match self.0.read() {
            Ok(s) => s.clone(),
            // A writer panicked mid-update; what it left is still the best answer.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// One value of the status, without copying the rest (drift report, history).
    pub fn read<T>(&self, f: impl FnOnce(&TierStatus) -> T) -> T {
        match self.0.read() {
            Ok(s) => f(&s),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut TierStatus)) {
        let mut guard = match self.0.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard);
    }
}
