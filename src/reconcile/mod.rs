//! The reconcile of one tier: the stages wired together.
//!
//! A revision from the source is rendered and validated ([`crate::desired`]); the accepted set
//! is deployed (objects whose digest differs from the inventory's are applied), the rest is
//! checked for drift ([`crate::drift`]), the policy decides what to correct ([`crate::policy`]),
//! prune removes inventory objects that left the set ([`crate::apply::plan_prune`]), and health
//! ([`crate::health`]) decides when a revision is healthy, or, past the tier's health timeout,
//! whether to roll back to the last healthy one.
//!
//! Safety rules kept here, in one place:
//! - nothing is applied or pruned until the tier's state (inventory, revisions) is read;
//! - the keys of objects about to be created are written to the inventory before the apply,
//!   so a daemon killed mid-apply still knows about them;
//! - prune runs only when the newest fetch, render and validation all succeeded and every
//!   object of the sync applied; it compares objects by identity (group, kind, namespace,
//!   name), so an apiVersion change is never a prune and a create;
//! - a revision rolled back is not deployed again until the tier's ref moves.

mod backends;
mod error;
mod execute;
mod gate;
#[cfg(test)]
mod harness;
mod intake;
mod jobs;
mod memo;
mod phase;
mod plan;
mod reason;
mod report;
mod rollout;
#[cfg(test)]
mod scenarios;
mod timing;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kube::Client;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::activity::{Activity, Observers};
use crate::apply::{Applier, ApplyItem, ObjectResult, Outcome, PruneTarget, plan_prune};
use crate::config::{Action, OutsideWindows, TierConfig};
use crate::desired::{Failure, Offer, TierDesired};
use crate::discovery::ScopeCache;
use crate::drift::{ApiDryRun, detect_except};
use crate::health::{self, Health, ObjectHealth};
use crate::live::{ApiLive, LiveObjects, Namespaces, ObjectId, ObjectKey};
use crate::policy::{self, FightTracker};
use crate::render::{DesiredObject, DesiredSet, KindScopes, Limits, ObjectScope};
use crate::revision::Revision;
use crate::state::{HealthyRecord, NOT_APPLIED, StateStore, TierState, short_digest};
use crate::window::{WindowState, window_state};

use crate::status::{LISTED, StatusHandle, SyncRecord, SyncState, UnhealthyObject};
pub use backends::Backends;
pub use error::{CheckoutError, ReconcileError};
pub use gate::{Clock, Hold, HoldKind, base_digest, promotion_gate, system_clock, window_hold};
pub use reason::ReconcileReason;

/// How long a reconcile waits for the live cache to list a new kind.
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a reconcile waits for a live cache whose watch failed (the API server restarted,
/// say) to list again before it gives up with the reason; the end of the list wakes the tier.
const CACHE_RESYNC_WAIT: Duration = Duration::from_secs(20);

/// Gives the files of a revision: the source's export in the daemon.
pub trait Checkouts: Send + Sync {
    /// Blocking (git). The directory holds the repo's files at `revision`.
    fn checkout(&self, revision: &Revision) -> Result<PathBuf, CheckoutError>;

    /// Blocking (git). What the config repo's healthy refs
    /// (`refs/gitopsd/healthy/<tier>/<sha>`) say `tier` recorded healthy, as fetched last.
    fn healthy_refs(&self, _tier: &str) -> Vec<HealthyRecord> {
        Vec::new()
    }

    /// Blocking (git). Publishes `record` as `refs/gitopsd/healthy/<tier>/<sha>` in the
    /// config repo.
    fn publish_healthy(&self, _tier: &str, _record: &HealthyRecord) -> Result<(), CheckoutError> {
        Err(CheckoutError::Unsupported {
            what: "publishing healthy refs",
        })
    }

    /// Blocking (git). The commits in `to`'s history that `from` lacks (every commit of `to`
    /// when `from` is `None`), newest first; each with its signature and the data it signs
    /// (`None` for an unsigned commit).
    fn commits_between(
        &self,
        _from: Option<&Revision>,
        _to: &Revision,
    ) -> Result<Vec<crate::signature::SignedCommit>, CheckoutError> {
        Err(CheckoutError::Unsupported {
            what: "listing commits",
        })
    }
}

impl Checkouts for Mutex<crate::source::Source> {
    fn checkout(&self, revision: &Revision) -> Result<PathBuf, CheckoutError> {
        let oid =
            git2::Oid::from_str(revision.as_str()).map_err(|e| CheckoutError::NotACommit {
                revision: revision.clone(),
                reason: e.to_string(),
            })?;
        let source = locked(self)?;
        Ok(source.export(oid)?)
    }

    fn healthy_refs(&self, tier: &str) -> Vec<HealthyRecord> {
        locked(self)
            .map(|source| source.healthy_refs(tier))
            .unwrap_or_default()
    }

    fn publish_healthy(&self, tier: &str, record: &HealthyRecord) -> Result<(), CheckoutError> {
        let source = locked(self)?;
        Ok(source.publish_healthy(tier, record)?)
    }

    fn commits_between(
        &self,
        from: Option<&Revision>,
        to: &Revision,
    ) -> Result<Vec<crate::signature::SignedCommit>, CheckoutError> {
        let source = locked(self)?;
        crate::signature::commits_between(source.repository(), from, to)
            .map_err(CheckoutError::from)
    }
}

/// The source, locked. A poisoned lock (a git operation panicked holding it) is an error: the
/// mirror may be mid-update.
fn locked(
    source: &Mutex<crate::source::Source>,
) -> Result<std::sync::MutexGuard<'_, crate::source::Source>, CheckoutError> {
    source.lock().map_err(|_| CheckoutError::LockPoisoned)
}

/// A desired set the tier deploys, with the revision it came from.
#[derive(Debug, Clone)]
struct Active {
    revision: Revision,
    set: Arc<DesiredSet>,
}

use crate::apply::Tally;
pub use jobs::drop_finished_jobs;
use jobs::{is_ttl_job, job_end_event, job_finished};
use phase::{PhaseEvent, Retry, TierPhase};
use report::{HealthStatus, StatusDelta, StatusReport, StoredOutcomes, SyncStatus};
use rollout::Rollout;

/// One tier's reconcile state, owned by its task: reconciles of a tier never overlap.
pub struct TierReconciler {
    tier: TierConfig,
    /// Reads Events (a Job's end) and API discovery (its default scope cache); everything
    /// else goes through the [`Backends`].
    client: Client,
    backends: Backends,
    /// `None` until read from the cluster: nothing is applied before.
    state: Option<TierState>,
    saved: Option<TierState>,
    live: memo::LiveView,
    desired: TierDesired,
    active: Option<Active>,
    last_healthy: Option<Active>,
    rollout: Option<Rollout>,
    fights: FightTracker,
    /// The newest revision when intake did not take it (state unreadable, held back, unknown
    /// kinds): what the next reconcile offers again.
    phase: TierPhase,
    source: memo::SourceHealth,
    /// What happened to the last revision's health (not healthy in time, rolled back): kept
    /// in the status until another revision is taken.
    health_note: Option<String>,
    status: StatusHandle,
    checkouts: Arc<dyn Checkouts>,
    /// Which kinds are namespaced (API discovery, cached): what the render stamps by.
    scopes: Arc<ScopeCache>,
    observers: Observers,
    arrived: memo::Arrived,
    reported: memo::Reported,
    window: memo::WindowSwitch,
    /// Cancelled when this replica stops leading: from then on the tier state is not written
    /// (the new leader owns it).
    write_guard: Option<CancellationToken>,
    /// This sync refused the active set: the cluster holds objects of it the tier may not
    /// take (`crate::ownership`), so nothing of the revision was applied.
    refused_now: bool,
    /// The prune guard's refusal of the last prune (with the fix), shown in the status.
    prune_refused: Option<String>,
    jobs: memo::JobWatch,
    settings: memo::Settings,
    /// What intake changed in the status and has not written yet.
    pending: StatusDelta,
}

/// What one reconcile did, for the caller's log and for waking up again.
#[derive(Debug, Clone, Default)]
pub struct Outcomes {
    /// Reconcile again at this time (a health deadline, a rollback to apply).
    pub wake_at: Option<Instant>,
}

impl TierReconciler {
    pub fn new(
        tier: TierConfig,
        last_tier: bool,
        client: Client,
        store: StateStore,
        checkouts: Arc<dyn Checkouts>,
        status: StatusHandle,
        observers: Observers,
    ) -> TierReconciler {
        let backends = Backends::kube(client.clone(), &tier, store);
        TierReconciler::with_backends(
            tier, last_tier, client, backends, checkouts, status, observers,
        )
    }

    /// As [`TierReconciler::new`], reading and writing through `backends` (tests: a fake
    /// cluster). `client` serves API discovery and Job Events only.
    pub fn with_backends(
        tier: TierConfig,
        last_tier: bool,
        client: Client,
        backends: Backends,
        checkouts: Arc<dyn Checkouts>,
        status: StatusHandle,
        observers: Observers,
    ) -> TierReconciler {
        let scopes = Arc::new(ScopeCache::new(client.clone()));
        TierReconciler {
            client,
            tier,
            backends,
            state: None,
            saved: None,
            live: memo::LiveView::default(),
            desired: TierDesired::default(),
            active: None,
            last_healthy: None,
            rollout: None,
            fights: FightTracker::default(),
            phase: TierPhase::Settled,
            source: memo::SourceHealth::default(),
            health_note: None,
            status,
            checkouts,
            scopes,
            observers,
            arrived: None,
            reported: memo::Reported::default(),
            window: memo::WindowSwitch::default(),
            write_guard: None,
            refused_now: false,
            prune_refused: None,
            jobs: memo::JobWatch::default(),
            settings: memo::Settings::new(last_tier),
            pending: StatusDelta::default(),
        }
    }

    /// The client every write of this tier goes through (applies, deletes, dry-runs): one that
    /// impersonates the tier's `serviceAccount` ([`crate::cluster::impersonating`]), so RBAC
    /// bounds the tier. Reads (the live cache, prune's checks), the state and Events keep the
    /// daemon's client given to [`TierReconciler::new`].
    pub fn set_write_client(&mut self, client: Client) {
        let api = ApiLive::new(client);
        self.backends.applier =
            Arc::new(Applier::new(api.clone(), &self.tier.name, &self.tier.apply));
        self.backends.dry_run = Arc::new(ApiDryRun::new(api));
    }

    /// Replaces the clock (tests: windows and soak times without waiting).
    pub fn set_clock(&mut self, clock: Clock) {
        self.settings.clock = clock;
    }

    /// Shares a discovery snapshot with other tiers (the daemon makes one for all).
    pub fn set_scope_cache(&mut self, scopes: Arc<ScopeCache>) {
        self.scopes = scopes;
    }

    /// Publish `refs/gitopsd/healthy/<tier>/<sha>` when a revision becomes healthy.
    pub fn set_publish_healthy(&mut self, on: bool) {
        self.settings.publish_healthy = on;
    }

    /// The switch a manual sync sets to override a closed change window once.
    pub fn window_override(&self) -> Arc<AtomicBool> {
        self.window.override_flag.clone()
    }

    /// Shares a switch that outlives this reconciler (the daemon makes a new one per term of
    /// leadership; the sync endpoint holds the switch).
    pub fn set_window_override(&mut self, flag: Arc<AtomicBool>) {
        self.window.override_flag = flag;
    }

    /// With leader election: `lost` is cancelled when this replica stops leading, and from
    /// then on the reconciler writes no state.
    pub fn set_write_guard(&mut self, lost: CancellationToken) {
        self.write_guard = Some(lost);
    }

    pub fn name(&self) -> &str {
        &self.tier.name
    }

    /// A receiver that changes when a watched live object changes or a watch lists again (none
    /// before the first set). Subscribed when the cache started: a change made since then,
    /// during a reconcile included, is not missed. Keep it across reconciles.
    pub fn live_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.live.changes.clone()
    }

    /// The source could not fetch the tier's ref: the last good revision stays, and prune
    /// waits until a fetch succeeds again.
    pub fn source_failed(&mut self, error: &str) {
        self.source.ok = false;
        self.source.error = Some(error.to_owned());
        let error = error.to_owned();
        self.status.update(|s| {
            s.sync = SyncState::Failed;
            s.last_error = Some(error);
        });
    }

    /// A fetch of the tier's ref succeeded again (with no new commit).
    pub fn source_recovered(&mut self) {
        self.source.ok = true;
        self.source.error = None;
    }

    /// Sets the bounds a render of this tier runs within (`render:` in the config).
    pub fn set_limits(&mut self, limits: Limits) {
        self.settings.limits = limits;
    }

    /// One reconcile of the active set. `reason` names what started it.
    pub async fn reconcile(
        &mut self,
        reason: ReconcileReason,
        cancel: &CancellationToken,
    ) -> Outcomes {
        self.window.override_now = self.window.override_flag.swap(false, Ordering::SeqCst);
        let mut out = self.reconcile_once(reason, cancel).await;
        // A reconcile that ended before its report (nothing deployed yet, a revision held)
        // still shows what intake found.
        self.write_pending_status();
        // An override is good for this one reconcile only.
        self.window.override_now = false;
        // A hold that lifts by itself (a soak ends, a window opens) wakes the tier then.
        if let Some(opens_at) = self.phase.held().and_then(|(_, h)| h.opens_at) {
            let at = wake_at(opens_at, (self.settings.clock)(), Instant::now());
            out.wake_at = Some(out.wake_at.map_or(at, |w| w.min(at)));
        }
        out
    }

    async fn reconcile_once(
        &mut self,
        reason: ReconcileReason,
        cancel: &CancellationToken,
    ) -> Outcomes {
        self.window.held = false;
        let waiting = self
            .phase
            .to_offer()
            .map(|(revision, retry)| (revision.clone(), retry));
        match waiting {
            // Gates and windows are checked again: a held revision goes once they open; a
            // revision pending on an unreadable state is offered again.
            Some((revision, Retry::Always)) => {
                self.advance(PhaseEvent::OfferedAgain);
                self.offer_revision(&revision).await;
            }
            Some((revision, Retry::IfDiscoveryChanged(generation))) => {
                // Discovery is asked again (at most every MISS_REFRESH_AFTER); only a changed
                // answer renders the revision again.
                self.scopes.refresh_on_miss().await;
                if self.scopes.generation().await != generation {
                    info!(tier = %self.tier.name, %revision, "API discovery changed; rendering the revision refused for unknown kinds again");
                    self.offer_revision(&revision).await;
                }
            }
            None => {}
        }
        self.window.held = self.phase.window_held();
        let Some(active) = self.active.clone() else {
            if let Some((revision, _)) = self.phase.held() {
                // Nothing deployed yet, and the first revision is held back.
                self.observers.emit(Activity::SyncFinished {
                    tier: self.tier.name.clone(),
                    revision: revision.clone(),
                    reason: reason.to_string(),
                    result: SyncState::Blocked,
                    duration: Duration::ZERO,
                    outcomes: Tally::default(),
                    error: None,
                    notable: false,
                    window_closed: self.window.held,
                });
            }
            return Outcomes::default();
        };
        let span = info_span!("reconcile", tier = %self.tier.name, revision = %active.revision.short(), reason = %reason);
        self.reconcile_active(active, reason, cancel)
            .instrument(span)
            .await
    }

    /// Points the live cache at the set's kinds and objects (once per set), and waits until
    /// it has listed them.
    async fn follow_set(&mut self, set: &DesiredSet) -> Result<(), ReconcileError> {
        if self.live.digest.as_deref() == Some(set.digest.as_str()) && self.live.cache.is_some() {
            return Ok(());
        }
        let kinds = set.kinds();
        let names: Vec<ObjectKey> = set.objects.iter().map(|o| o.key.clone()).collect();
        match self.live.cache.as_mut() {
            Some(cache) => cache.update_kinds(&kinds, &names).await?,
            None => {
                // The tier's namespaces only: no desired object can be outside them (validation),
                // and gitopsd's RBAC grants reads of namespaced kinds only there.
                let namespaces = Namespaces::only(&self.tier.namespaces);
                let cache = self
                    .backends
                    .cluster
                    .start_cache(&self.tier.name, namespaces, &kinds, &names)
                    .await?;
                self.live.changes = Some(cache.changes());
                self.live.cache = Some(cache);
            }
        }
        if let Some(cache) = &self.live.cache {
            cache.wait_synced(CACHE_SYNC_TIMEOUT).await?;
        }
        self.live.digest = Some(set.digest.clone());
        Ok(())
    }
}

/// The instant a hold opening at `opens_at` (by the reconcile's clock, which reads `now`)
/// lifts, a second late so the clock has passed it.
fn wake_at(opens_at: DateTime<Utc>, now: DateTime<Utc>, instant: Instant) -> Instant {
    let wait = (opens_at - now).to_std().unwrap_or(Duration::ZERO);
    instant + wait + Duration::from_secs(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoCheckouts;

    impl Checkouts for NoCheckouts {
        fn checkout(&self, revision: &Revision) -> Result<PathBuf, CheckoutError> {
            Err(CheckoutError::NotACommit {
                revision: revision.clone(),
                reason: "no checkouts in this test".to_owned(),
            })
        }
    }

    /// A reconciler that never reaches a server: its client points at a closed port.
    fn offline_reconciler() -> TierReconciler {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        let tier: TierConfig =
            serde_yaml::from_str("{name: t, ref: main, namespaces: [t]}").expect("tier");
        TierReconciler::new(
            tier,
            false,
            client.clone(),
            StateStore::new(client, "state"),
            Arc::new(NoCheckouts),
            StatusHandle::new("t"),
            Observers::new(Vec::new()),
        )
    }

    /// Bug h: what was reported as held back is bounded within a leadership term: only the
    /// revision held now is remembered.
    #[tokio::test]
    async fn held_revisions_reported_stay_bounded() {
        let mut r = offline_reconciler();
        for i in 0..100 {
            for kind in [HoldKind::PromotionGate, HoldKind::Window] {
                let hold = Hold {
                    kind,
                    message: "held".to_owned(),
                    opens_at: None,
                };
                r.hold(&Revision::new(format!("{i:040}")), hold).await;
            }
        }
        assert!(
            r.reported.blocked.len() <= HoldKind::ALL.len(),
            "{} entries remembered",
            r.reported.blocked.len()
        );
    }

    #[test]
    fn a_job_is_finished_when_complete_or_failed() {
        let job = |t: &str, s: &str| serde_json::json!({"status": {"conditions": [{"type": t, "status": s}]}});
        assert!(job_finished(&job("Complete", "True")));
        assert!(job_finished(&job("Failed", "True")));
        assert!(!job_finished(&job("Complete", "False")));
        assert!(!job_finished(&job("Suspended", "True")));
        assert!(!job_finished(&serde_json::json!({})));
    }

    #[test]
    fn a_hold_wakes_the_tier_a_second_after_it_opens_by_the_reconciles_clock() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let instant = Instant::now();
        let in_ten_minutes = now + chrono::TimeDelta::minutes(10);
        assert_eq!(
            wake_at(in_ten_minutes, now, instant),
            instant + Duration::from_secs(601)
        );
        // Already open (the clock moved past it): at once, a second late.
        assert_eq!(
            wake_at(now - chrono::TimeDelta::minutes(1), now, instant),
            instant + Duration::from_secs(1)
        );
    }
}
