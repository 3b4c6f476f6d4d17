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
mod gate;
#[cfg(test)]
mod harness;
#[cfg(test)]
mod scenarios;
mod timing;

use std::collections::{BTreeMap, HashMap, HashSet};
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
use crate::apply::{Applier, Apply, ApplyItem, ObjectResult, Outcome, PruneTarget, plan_prune};
use crate::classify::Severity;
use crate::config::{Action, OutsideWindows, TierConfig};
use crate::desired::{Failure, Offer, TierDesired};
use crate::diff::{FIELD_MANAGER, FieldPath, applied_fields_v1, compare};
use crate::discovery::ScopeCache;
use crate::drift::{ApiDryRun, DryRunCache, detect_except};
use crate::health::{self, Health, ObjectHealth};
use crate::live::{ApiLive, Cluster, LiveObjects, LiveWatch, Namespaces, ObjectId, ObjectKey};
use crate::policy::{self, FightTracker, hold_back};
use crate::render::{DesiredObject, DesiredSet, KindScopes, Limits, ObjectScope};
use crate::state::{HealthyRecord, NOT_APPLIED, StateStorage, StateStore, TierState, short_digest};
use crate::window::{WindowState, window_state};

use crate::status::{LISTED, StatusHandle, SyncRecord, SyncState, UnhealthyObject};
pub use backends::Backends;
pub use gate::{Clock, Hold, HoldKind, base_digest, promotion_gate, system_clock, window_hold};

/// How long a reconcile waits for the live cache to list a new kind.
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a reconcile waits for a live cache whose watch failed (the API server restarted,
/// say) to list again before it gives up with the reason; the end of the list wakes the tier.
const CACHE_RESYNC_WAIT: Duration = Duration::from_secs(20);

/// Gives the files of a revision: the source's export in the daemon.
pub trait Checkouts: Send + Sync {
    /// Blocking (git). The directory holds the repo's files at `revision`.
    fn checkout(&self, revision: &str) -> Result<PathBuf, String>;

    /// Blocking (git). What the config repo's healthy refs
    /// (`refs/gitopsd/healthy/<tier>/<sha>`) say `tier` recorded healthy, as fetched last.
    fn healthy_refs(&self, _tier: &str) -> Vec<HealthyRecord> {
        Vec::new()
    }

    /// Blocking (git). Publishes `record` as `refs/gitopsd/healthy/<tier>/<sha>` in the
    /// config repo.
    fn publish_healthy(&self, _tier: &str, _record: &HealthyRecord) -> Result<(), String> {
        Err("publishing healthy refs is not supported by this source".into())
    }

    /// Blocking (git). The commits in `to`'s history that `from` lacks (every commit of `to`
    /// when `from` is `None`), newest first; each with its signature and the data it signs
    /// (`None` for an unsigned commit).
    fn commits_between(
        &self,
        _from: Option<&str>,
        _to: &str,
    ) -> Result<Vec<crate::signature::SignedCommit>, String> {
        Err("this source cannot list commits".into())
    }
}

impl Checkouts for Mutex<crate::source::Source> {
    fn checkout(&self, revision: &str) -> Result<PathBuf, String> {
        let oid = git2::Oid::from_str(revision)
            .map_err(|e| format!("{revision} is not a commit id: {e}"))?;
        let source = self
            .lock()
            .map_err(|_| "the source mirror lock is poisoned".to_owned())?;
        source.export(oid).map_err(|e| e.to_string())
    }

    fn healthy_refs(&self, tier: &str) -> Vec<HealthyRecord> {
        match self.lock() {
            Ok(source) => source.healthy_refs(tier),
            Err(_) => Vec::new(),
        }
    }

    fn publish_healthy(&self, tier: &str, record: &HealthyRecord) -> Result<(), String> {
        let source = self
            .lock()
            .map_err(|_| "the source mirror lock is poisoned".to_owned())?;
        source
            .publish_healthy(tier, record)
            .map_err(|e| e.to_string())
    }

    fn commits_between(
        &self,
        from: Option<&str>,
        to: &str,
    ) -> Result<Vec<crate::signature::SignedCommit>, String> {
        let source = self
            .lock()
            .map_err(|_| "the source mirror lock is poisoned".to_owned())?;
        crate::signature::commits_between(source.repository(), from, to).map_err(|e| e.to_string())
    }
}

/// A desired set the tier deploys, with the revision it came from.
#[derive(Debug, Clone)]
struct Active {
    revision: String,
    set: Arc<DesiredSet>,
}

/// A revision applied and not yet healthy: when it must be.
#[derive(Debug, Clone)]
struct Rollout {
    revision: String,
    started: Instant,
    deadline: Instant,
}

/// One tier's reconcile state, owned by its task: reconciles of a tier never overlap.
pub struct TierReconciler {
    tier: TierConfig,
    last_tier: bool,
    /// Reads Events (a Job's end) and API discovery (its default scope cache); everything
    /// else goes through the [`Backends`].
    client: Client,
    api: Arc<dyn Cluster>,
    applier: Arc<dyn Apply>,
    dry_run: Arc<dyn DryRunCache>,
    store: Arc<dyn StateStorage>,
    /// `None` until read from the cluster: nothing is applied before.
    state: Option<TierState>,
    saved: Option<TierState>,
    cache: Option<Box<dyn LiveWatch>>,
    /// Subscribed when the cache starts, never marked seen here: [`Self::live_changes`] hands
    /// out clones, which see every change since the cache started.
    live_rx: Option<tokio::sync::watch::Receiver<u64>>,
    cache_digest: Option<String>,
    desired: TierDesired,
    active: Option<Active>,
    last_healthy: Option<Active>,
    rollout: Option<Rollout>,
    fights: FightTracker,
    /// A revision that could not be taken yet (the state was unreadable): offered again on
    /// the next reconcile.
    pending: Option<String>,
    /// `metadata.generation` of objects as this daemon last applied them: until the live
    /// cache shows that generation, its (older) status says nothing about the new spec.
    applied_generations: HashMap<ObjectKey, i64>,
    /// The live `resourceVersion` each object had when foreign fields were last removed from
    /// it: until the live cache shows a newer one, it still shows the fields just removed, and
    /// a second guarded patch built from that stale copy would only be refused.
    removed_at_version: HashMap<ObjectKey, String>,
    /// The newest fetch of the tier's ref succeeded.
    source_ok: bool,
    /// Why the newest fetch failed, while it does.
    source_error: Option<String>,
    /// What happened to the last revision's health (not healthy in time, rolled back): kept
    /// in the status until another revision is taken.
    health_note: Option<String>,
    status: StatusHandle,
    checkouts: Arc<dyn Checkouts>,
    limits: Limits,
    /// The last revision whose render failed, with the error: a render is a pure function of
    /// the commit, so a refused one (a kustomize build stopped at its memory cap, say) is not
    /// run again on every offer until the ref moves.
    refused_render: Option<(String, String)>,
    /// Which kinds are namespaced (API discovery, cached): what the render stamps by.
    scopes: Arc<ScopeCache>,
    /// A revision refused for kinds of unknown scope, and the discovery generation it was
    /// judged by: offered again once discovery answers differently (its CRD installed since,
    /// e.g. by the tier that owns it), not on every reconcile.
    unknown_kinds: Option<(String, u64)>,
    observers: Observers,
    /// When each revision offered reached this tier (for commit-to-applied and deployment
    /// durations); dropped once the revision is healthy or replaced.
    arrived: Option<(String, Instant)>,
    /// The revision whose first complete apply was reported.
    applied_reported: Option<String>,
    /// Drift seen by the previous reconcile (object, path): only new items are reported.
    drift_seen: HashSet<(ObjectKey, String)>,
    health_seen: Option<Health>,
    /// "Now" for windows and soak times; the system clock unless a test sets another.
    clock: Clock,
    /// The newest revision, held back by a gate, a window or a signature: re-checked on
    /// every reconcile, while the last deployed set keeps being reconciled.
    held: Option<(String, Hold)>,
    /// (revision, hold kind) already reported as `PromotionBlocked`: once each.
    blocked_reported: HashSet<(String, HoldKind)>,
    /// Set by a manual sync that overrides a closed window; taken by the next reconcile.
    window_override: Arc<AtomicBool>,
    /// This reconcile runs with the window overridden.
    override_now: bool,
    /// This reconcile left a revision or drift corrections waiting for a window.
    window_held: bool,
    /// Publish healthy revisions as refs in the config repo (`source.publishHealthy`).
    publish_healthy: bool,
    /// Cancelled when this replica stops leading: from then on the tier state is not written
    /// (the new leader owns it).
    write_guard: Option<CancellationToken>,
    /// This sync refused the active set: the cluster holds objects of it the tier may not
    /// take (`crate::ownership`), so nothing of the revision was applied.
    refused_now: bool,
    /// The refusals last logged, so that a refusal is logged when it appears, not every sync.
    refusals_logged: Vec<String>,
    /// The prune guard's refusal of the last prune (with the fix), shown in the status.
    prune_refused: Option<String>,
    /// (revision, refusal) last reported as `PruneRefused`: once per revision and reason.
    prune_refused_reported: Option<(String, String)>,
    /// The uid of each Job with ttlSecondsAfterFinished as last applied or seen: its end
    /// Event is matched by it.
    job_uids: HashMap<ObjectKey, String>,
    /// Jobs of this sync that finished for their manifest and are gone: neither drift nor
    /// unhealthy.
    jobs_gone: HashSet<ObjectKey>,
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
            applier: backends.applier,
            dry_run: backends.dry_run,
            api: backends.cluster,
            client,
            tier,
            last_tier,
            store: backends.store,
            state: None,
            saved: None,
            cache: None,
            live_rx: None,
            cache_digest: None,
            desired: TierDesired::default(),
            active: None,
            last_healthy: None,
            rollout: None,
            fights: FightTracker::default(),
            pending: None,
            applied_generations: HashMap::new(),
            removed_at_version: HashMap::new(),
            source_ok: false,
            source_error: None,
            health_note: None,
            status,
            checkouts,
            limits: Limits::default(),
            refused_render: None,
            scopes,
            unknown_kinds: None,
            observers,
            arrived: None,
            applied_reported: None,
            drift_seen: HashSet::new(),
            health_seen: None,
            clock: system_clock(),
            held: None,
            blocked_reported: HashSet::new(),
            window_override: Arc::new(AtomicBool::new(false)),
            override_now: false,
            window_held: false,
            publish_healthy: false,
            write_guard: None,
            refused_now: false,
            refusals_logged: Vec::new(),
            prune_refused: None,
            prune_refused_reported: None,
            job_uids: HashMap::new(),
            jobs_gone: HashSet::new(),
        }
    }

    /// The client every write of this tier goes through (applies, deletes, dry-runs): one that
    /// impersonates the tier's `serviceAccount` ([`crate::cluster::impersonating`]), so RBAC
    /// bounds the tier. Reads (the live cache, prune's checks), the state and Events keep the
    /// daemon's client given to [`TierReconciler::new`].
    pub fn set_write_client(&mut self, client: Client) {
        let api = ApiLive::new(client);
        self.applier = Arc::new(Applier::new(api.clone(), &self.tier.name, &self.tier.apply));
        self.dry_run = Arc::new(ApiDryRun::new(api));
    }

    /// Replaces the clock (tests: windows and soak times without waiting).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// Shares a discovery snapshot with other tiers (the daemon makes one for all).
    pub fn set_scope_cache(&mut self, scopes: Arc<ScopeCache>) {
        self.scopes = scopes;
    }

    /// Publish `refs/gitopsd/healthy/<tier>/<sha>` when a revision becomes healthy.
    pub fn set_publish_healthy(&mut self, on: bool) {
        self.publish_healthy = on;
    }

    /// The switch a manual sync sets to override a closed change window once.
    pub fn window_override(&self) -> Arc<AtomicBool> {
        self.window_override.clone()
    }

    /// Shares a switch that outlives this reconciler (the daemon makes a new one per term of
    /// leadership; the sync endpoint holds the switch).
    pub fn set_window_override(&mut self, flag: Arc<AtomicBool>) {
        self.window_override = flag;
    }

    fn window_now(&self) -> WindowState {
        window_state(&self.tier.windows, (self.clock)())
    }

    /// Why `revision` may not be deployed now: the promotion gate, the signatures, the
    /// change window, in that order. A revision already deployed passes.
    async fn hold_for(&mut self, revision: &str) -> Option<Hold> {
        let deployed = self.active.as_ref().map(|a| a.revision.as_str()) == Some(revision)
            || self
                .state
                .as_ref()
                .and_then(|s| s.last_applied_revision.as_deref())
                == Some(revision);
        if deployed {
            return None;
        }
        if let Some(from) = self.tier.promote_from.clone() {
            let mut evidence = match self.store.load(&from).await {
                Ok(state) => state.healthy,
                Err(e) => {
                    return Some(Hold {
                        kind: HoldKind::PromotionGate,
                        message: format!(
                            "promotion gate closed: cannot read the state of tier {from}: {e}"
                        ),
                        opens_at: None,
                    });
                }
            };
            let checkouts = self.checkouts.clone();
            let from2 = from.clone();
            let rev = revision.to_owned();
            let base = self.tier.gate == crate::config::PromotionGate::BaseDigest;
            let (refs, digest) = tokio::task::spawn_blocking(move || {
                let refs = checkouts.healthy_refs(&from2);
                let digest = if base {
                    checkouts
                        .checkout(&rev)
                        .ok()
                        .and_then(|root| base_digest(&root))
                } else {
                    None
                };
                (refs, digest)
            })
            .await
            .unwrap_or_default();
            evidence.extend(refs);
            if let Some(hold) = promotion_gate(
                &self.tier,
                revision,
                digest.as_deref(),
                &evidence,
                (self.clock)(),
            ) {
                return Some(hold);
            }
        }
        if let Some(signed) = self.tier.require_signed_commits.clone() {
            let from = self
                .active
                .as_ref()
                .map(|a| a.revision.clone())
                .or_else(|| self.state.as_ref()?.last_applied_revision.clone());
            let checkouts = self.checkouts.clone();
            let to = revision.to_owned();
            let checked = tokio::task::spawn_blocking(move || {
                let commits = checkouts.commits_between(from.as_deref(), &to)?;
                crate::signature::check_range(&commits, &signed.ssh_allowed_signers)
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("the signature check failed: {e}")));
            if let Err(why) = checked {
                return Some(Hold {
                    kind: HoldKind::Signature,
                    message: format!("signature check failed: {why}"),
                    opens_at: None,
                });
            }
        }
        if !self.override_now
            && let Some(hold) = window_hold(&self.window_now())
        {
            return Some(hold);
        }
        None
    }

    /// Holds `revision` back: the last deployed set stays active (rendered again after a
    /// restart), the status says why, and the block is reported once per revision and kind.
    async fn hold(&mut self, revision: &str, hold: Hold) {
        if self.active.is_none() {
            self.active = self.restore_last_applied().await;
        }
        if self
            .blocked_reported
            .insert((revision.to_owned(), hold.kind))
        {
            warn!(tier = %self.tier.name, revision, reason = %hold.message, "revision held back");
            self.observers.emit(Activity::PromotionBlocked {
                tier: self.tier.name.clone(),
                revision: revision.to_owned(),
                reason: hold.message.clone(),
            });
        }
        let message = hold.message.clone();
        let kind = hold.kind;
        let window = (!self.tier.windows.is_empty()).then(|| self.window_now());
        self.status.update(|s| {
            s.sync = SyncState::Blocked;
            s.last_error = Some(message);
            s.held_revision = Some(revision.to_owned());
            s.held_by = Some(kind);
            s.window = window;
        });
        self.held = Some((revision.to_owned(), hold));
    }

    /// Renders the revision last applied (after a restart, to keep reconciling it while a
    /// newer one is held back).
    async fn restore_last_applied(&mut self) -> Option<Active> {
        let revision = self.state.as_ref()?.last_applied_revision.clone()?;
        match self.render(&revision).await {
            Ok(set) => Some(Active {
                revision,
                set: Arc::new(set),
            }),
            Err(e) => {
                warn!(tier = %self.tier.name, error = %e, "cannot render the last applied revision");
                None
            }
        }
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
        self.live_rx.clone()
    }

    /// The source could not fetch the tier's ref: the last good revision stays, and prune
    /// waits until a fetch succeeds again.
    pub fn source_failed(&mut self, error: &str) {
        self.source_ok = false;
        self.source_error = Some(error.to_owned());
        let error = error.to_owned();
        self.status.update(|s| {
            s.sync = SyncState::Failed;
            s.last_error = Some(error);
        });
    }

    /// A fetch of the tier's ref succeeded again (with no new commit).
    pub fn source_recovered(&mut self) {
        self.source_ok = true;
        self.source_error = None;
    }

    /// Takes the newest commit of the tier's ref: renders and validates it, and makes it the
    /// active set when it passes (unless it is the revision rolled back).
    pub async fn offer_revision(&mut self, revision: &str) {
        self.source_recovered();
        if self.arrived.as_ref().is_none_or(|(r, _)| r != revision) {
            self.arrived = Some((revision.to_owned(), Instant::now()));
        }
        self.status
            .update(|s| s.source_revision = Some(revision.to_owned()));
        if !self.ensure_state().await {
            self.pending = Some(revision.to_owned());
            return;
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        match state.failed_revision.as_deref() {
            Some(failed) if failed == revision => {
                // Rolled back: hold the healthy set until git moves.
                if self.active.is_none() {
                    self.active = self.restore_last_healthy().await;
                }
                let message = format!(
                    "revision {} was rolled back after it did not become healthy; waiting for a new commit on {}",
                    short(revision),
                    self.tier.git_ref
                );
                self.health_note = Some(message.clone());
                self.status.update(|s| s.last_error = Some(message));
                return;
            }
            Some(_) => {
                info!(tier = %self.tier.name, revision, "the ref moved past the rolled-back revision");
                state.failed_revision = None;
            }
            None => {}
        }
        if let Some(hold) = self.hold_for(revision).await {
            self.hold(revision, hold).await;
            return;
        }
        if self.held.take().is_some() {
            self.status.update(|s| {
                s.held_revision = None;
                s.held_by = None;
            });
        }
        self.unknown_kinds = None;
        let render_started = Instant::now();
        let rendered = match &self.refused_render {
            Some((r, message)) if r == revision => Err(crate::render::RenderError::Refused {
                revision: revision.to_owned(),
                message: message.clone(),
            }),
            _ => self.render(revision).await,
        };
        let render_time = render_started.elapsed();
        match &rendered {
            // A render is remembered as refused only when the commit alone decides it: a
            // checkout can fail for a passing reason (disk, lock), and what discovery says
            // (scopes unknown while the API server is away, a CRD's scope against the
            // server's) changes without a commit, so those are tried again next time.
            Err(
                crate::render::RenderError::Checkout { .. }
                | crate::render::RenderError::Refused { .. }
                | crate::render::RenderError::ScopesUnavailable { .. }
                | crate::render::RenderError::CrdScopeConflict { .. },
            )
            | Ok(_) => {}
            Err(e) => self.refused_render = Some((revision.to_owned(), e.to_string())),
        }
        let objects = rendered.as_ref().map_or(0, |s| s.objects.len());
        let validate_started = Instant::now();
        let offer = self
            .desired
            .offer(revision, rendered, &self.tier, self.last_tier);
        info!(
            tier = %self.tier.name,
            revision,
            objects,
            render_ms = render_time.as_millis() as u64,
            validate_ms = validate_started.elapsed().as_millis() as u64,
            "revision rendered and validated"
        );
        match offer {
            Offer::Accepted | Offer::Unchanged => {
                self.health_note = None;
                if let Some(current) = self.desired.current() {
                    self.active = Some(Active {
                        revision: current.revision.clone(),
                        set: current.set.clone(),
                    });
                    for w in &current.warnings {
                        warn!(tier = %self.tier.name, revision, finding = %w, "validation warning");
                    }
                }
                self.status.update(|s| s.last_error = None);
            }
            Offer::Rejected => {
                let unknown = matches!(
                    self.desired.failure(),
                    Some(Failure::Blocked { findings, .. })
                        if findings.iter().any(|f| f.rule == "unknown-kind")
                );
                if unknown {
                    self.unknown_kinds =
                        Some((revision.to_owned(), self.scopes.generation().await));
                }
                let failure = self
                    .desired
                    .failure()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| format!("revision {revision} was rejected"));
                warn!(tier = %self.tier.name, revision, error = %failure, "the revision is not applied; the last good one stays");
                self.status.update(|s| {
                    s.sync = SyncState::Failed;
                    s.last_error = Some(failure);
                });
            }
        }
    }

    /// Renders `revision` with the discovery snapshot; when the set has a kind the snapshot
    /// does not know (a CRD installed since?), once more with a fresh one. Without any snapshot
    /// the render fails: the last good set stays and nothing is pruned.
    async fn render(&self, revision: &str) -> Result<DesiredSet, crate::render::RenderError> {
        let scopes = self.scopes.current().await.map_err(|e| {
            crate::render::RenderError::ScopesUnavailable {
                reason: e.to_string(),
            }
        })?;
        let set = self.render_with(revision, scopes).await?;
        let unknown = set
            .objects
            .iter()
            .any(|o| matches!(o.scope, ObjectScope::Unknown { .. }));
        if unknown && let Some(fresh) = self.scopes.refresh_on_miss().await {
            return self.render_with(revision, fresh).await;
        }
        Ok(set)
    }

    async fn render_with(
        &self,
        revision: &str,
        scopes: Arc<KindScopes>,
    ) -> Result<DesiredSet, crate::render::RenderError> {
        let checkouts = self.checkouts.clone();
        let tier = self.tier.name.clone();
        let revision = revision.to_owned();
        let limits = self.limits.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let root = checkouts
                .checkout(&revision)
                .map_err(|e| crate::render::RenderError::checkout(&revision, &e))?;
            crate::render::render_tier(&root, &tier, &limits, &scopes)
        })
        .await;
        match joined {
            Ok(r) => r,
            Err(e) => Err(crate::render::RenderError::checkout(
                "(task)",
                &format!("the render task failed: {e}"),
            )),
        }
    }

    /// Sets the bounds a render of this tier runs within (`render:` in the config).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Renders the last healthy revision again (after a restart, to roll back to it).
    async fn restore_last_healthy(&mut self) -> Option<Active> {
        if let Some(h) = &self.last_healthy {
            return Some(h.clone());
        }
        let revision = self.state.as_ref()?.last_healthy_revision.clone()?;
        match self.render(&revision).await {
            Ok(set) => {
                let active = Active {
                    revision,
                    set: Arc::new(set),
                };
                self.last_healthy = Some(active.clone());
                Some(active)
            }
            Err(e) => {
                let message = format!(
                    "cannot render the last healthy revision {} to roll back to: {e}",
                    short(&revision)
                );
                warn!(tier = %self.tier.name, error = %message, "nothing is applied");
                self.status.update(|s| {
                    s.sync = SyncState::Failed;
                    s.last_error = Some(message);
                });
                None
            }
        }
    }

    /// Reads the tier's state from the cluster once. `false` (with the error in status) when
    /// it cannot be read: then nothing may be applied or pruned.
    async fn ensure_state(&mut self) -> bool {
        if self.state.is_some() {
            return true;
        }
        match self.store.load(&self.tier.name).await {
            Ok(state) => {
                info!(
                    tier = %self.tier.name,
                    objects = state.inventory.len(),
                    last_applied = state.last_applied_revision.as_deref().unwrap_or("-"),
                    last_healthy = state.last_healthy_revision.as_deref().unwrap_or("-"),
                    "tier state read"
                );
                self.status.update(|s| {
                    s.last_healthy_revision = state.last_healthy_revision.clone();
                    s.failed_revision = state.failed_revision.clone();
                    s.rollbacks = state.rollbacks;
                });
                self.saved = Some(state.clone());
                self.state = Some(state);
                true
            }
            Err(e) => {
                let message = e.to_string();
                warn!(tier = %self.tier.name, error = %message, "cannot read the tier state; nothing is applied until it can");
                self.status.update(|s| {
                    s.sync = SyncState::Failed;
                    s.last_error = Some(message);
                });
                false
            }
        }
    }

    async fn save_state(&mut self) -> Result<(), String> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        if self.saved.as_ref() == Some(state) {
            return Ok(());
        }
        if self.write_guard.as_ref().is_some_and(|t| t.is_cancelled()) {
            return Err("this replica stopped leading: the tier state is not written".into());
        }
        self.store
            .save(&self.tier.name, state)
            .await
            .map_err(|e| e.to_string())?;
        self.saved = Some(state.clone());
        Ok(())
    }

    /// One reconcile of the active set. `reason` names what started it.
    pub async fn reconcile(&mut self, reason: &str, cancel: &CancellationToken) -> Outcomes {
        self.override_now = self.window_override.swap(false, Ordering::SeqCst);
        let mut out = self.reconcile_once(reason, cancel).await;
        // An override is good for this one reconcile only.
        self.override_now = false;
        // A hold that lifts by itself (a soak ends, a window opens) wakes the tier then.
        if let Some(opens_at) = self.held.as_ref().and_then(|(_, h)| h.opens_at) {
            let at = wake_at(opens_at, (self.clock)(), Instant::now());
            out.wake_at = Some(out.wake_at.map_or(at, |w| w.min(at)));
        }
        out
    }

    async fn reconcile_once(&mut self, reason: &str, cancel: &CancellationToken) -> Outcomes {
        self.window_held = false;
        if let Some(revision) = self.pending.take() {
            self.offer_revision(&revision).await;
        } else if let Some((revision, _)) = self.held.clone() {
            // Gates and windows are checked again: a held revision goes once they open.
            self.offer_revision(&revision).await;
        } else if let Some((revision, generation)) = self.unknown_kinds.clone() {
            // Discovery is asked again (at most every MISS_REFRESH_AFTER); only a changed
            // answer renders the revision again.
            self.scopes.refresh_on_miss().await;
            if self.scopes.generation().await != generation {
                info!(tier = %self.tier.name, revision, "API discovery changed; rendering the revision refused for unknown kinds again");
                self.offer_revision(&revision).await;
            }
        }
        if let Some((_, hold)) = &self.held {
            self.window_held = hold.kind == HoldKind::Window;
        }
        let Some(active) = self.active.clone() else {
            if let Some((revision, _)) = &self.held {
                // Nothing deployed yet, and the first revision is held back.
                self.observers.emit(Activity::SyncFinished {
                    tier: self.tier.name.clone(),
                    revision: revision.clone(),
                    reason: reason.to_owned(),
                    result: SyncState::Blocked,
                    duration: Duration::ZERO,
                    outcomes: BTreeMap::new(),
                    error: None,
                    notable: false,
                    window_closed: self.window_held,
                });
            }
            return Outcomes::default();
        };
        let span = info_span!("reconcile", tier = %self.tier.name, revision = %short(&active.revision), reason);
        self.reconcile_active(active, reason, cancel)
            .instrument(span)
            .await
    }

    async fn reconcile_active(
        &mut self,
        active: Active,
        reason: &str,
        cancel: &CancellationToken,
    ) -> Outcomes {
        let started_at = Utc::now();
        let started = Instant::now();
        let mut record = SyncRecord {
            revision: active.revision.clone(),
            reason: reason.to_owned(),
            started_at,
            duration_ms: 0,
            outcomes: BTreeMap::new(),
            failures: Vec::new(),
            drift: 0,
            alerts: 0,
            prune_notes: Vec::new(),
            rolled_back_from: None,
            error: None,
        };
        let result = self.sync(&active, cancel, &mut record).await;
        record.duration_ms = started.elapsed().as_millis() as u64;
        let mut outcomes = Outcomes::default();
        match result {
            Ok(o) => outcomes = o,
            Err(e) => {
                warn!(error = %e, "sync failed; the cluster keeps what was applied so far");
                record.error = Some(e.clone());
                self.status.update(|s| {
                    s.sync = SyncState::Failed;
                    s.last_error = Some(e);
                });
            }
        }
        let changed = record
            .outcomes
            .iter()
            .any(|(k, n)| k != Outcome::Unchanged.as_str() && *n > 0);
        let fully_applied = record.error.is_none()
            && !self.refused_now
            && !record.outcomes.contains_key(Outcome::Failed.as_str())
            && !cancel.is_cancelled();
        if fully_applied && self.applied_reported.as_deref() != Some(active.revision.as_str()) {
            if let Some((_, at)) = self.arrived.as_ref().filter(|(r, _)| *r == active.revision) {
                self.observers.emit(Activity::RevisionApplied {
                    tier: self.tier.name.clone(),
                    revision: active.revision.clone(),
                    since_arrival: at.elapsed(),
                });
            }
            self.applied_reported = Some(active.revision.clone());
        }
        // Applied and healthy both observed: the revision's arrival time has served.
        if self.applied_reported.as_deref() == Some(active.revision.as_str())
            && self
                .last_healthy
                .as_ref()
                .is_some_and(|h| h.revision == active.revision)
        {
            self.arrived.take_if(|(r, _)| *r == active.revision);
        }
        self.status
            .update(|s| s.last_reconcile_at = Some(started_at));
        // Quiet reconciles (a watch event or the interval, nothing to do) are not history.
        let notable = changed
            || record.error.is_some()
            || record.rolled_back_from.is_some()
            || matches!(reason, "revision" | "trigger" | "deadline");
        self.observers.emit(Activity::SyncFinished {
            tier: self.tier.name.clone(),
            revision: record.revision.clone(),
            reason: record.reason.clone(),
            result: self.status.read(|s| s.sync),
            duration: started.elapsed(),
            outcomes: record.outcomes.clone(),
            error: record.error.clone(),
            notable,
            window_closed: self.window_held,
        });
        if notable {
            info!(
                outcomes = ?record.outcomes,
                drift = record.drift,
                alerts = record.alerts,
                duration_ms = record.duration_ms,
                "sync finished"
            );
            self.status.update(|s| s.record(record));
        }
        outcomes
    }

    async fn sync(
        &mut self,
        active: &Active,
        cancel: &CancellationToken,
        record: &mut SyncRecord,
    ) -> Result<Outcomes, String> {
        let mut laps = timing::Laps::start();
        if !self.ensure_state().await {
            return Err("the tier state could not be read".into());
        }
        laps.lap("state-load");
        let set = active.set.clone();
        self.follow_set(&set).await?;
        laps.lap("live-cache");
        // A watch that failed is listing again: until it is done, an object the cache lacks
        // may exist (issue 21: a relist read as 1,178 deletions), so nothing is decided.
        self.live_synced(cancel).await?;

        // Ownership, before anything is written: an existing object the tier did not create
        // (no tier label, another tier's, or this tier's label without an inventory entry) is
        // taken only when `adopt:` names it. One refusal blocks the whole revision, as a
        // blocking validation finding does: applying the rest would deploy a revision the
        // tier knows to be wrong about what it owns (a Deployment without the ConfigMap it
        // was written against), and a partial apply could prune what the refused object was
        // meant to replace. So nothing new or changed is applied, nothing enters the
        // inventory, nothing is pruned (the refusal is the newest failure), drift is corrected
        // only on objects this revision leaves as they were last applied, and the status names
        // each refused object, its holder and the fix. The check reads the live cache, which
        // follows every desired object by name: when the holder lets go (or `adopt:` is set
        // and the daemon restarted), the next reconcile passes.
        let refusals = self.refusals(&set)?;
        self.refused_now = !refusals.is_empty();
        if self.refused_now {
            let lines: Vec<String> = refusals.iter().map(ToString::to_string).collect();
            if lines != self.refusals_logged {
                for f in &refusals {
                    warn!(object = %crate::escape::escape_line(&f.object), finding = %crate::escape::escape_line(&f.to_string()), "refused: the tier may not take this object; nothing of the revision is applied");
                }
                self.refusals_logged = lines;
            }
            self.desired.refuse(&active.revision, refusals);
        } else {
            self.refusals_logged.clear();
            self.desired.clear_refusal();
        }
        let refused = self.refused_now;
        laps.lap("ownership");

        // Deploy: objects new or changed since they were last applied.
        let state = self.state.as_mut().ok_or("no tier state")?;
        let mut deploy: Vec<&DesiredObject> = Vec::new();
        // In a refused sync: the objects the revision adds or changes, none of them applied.
        let mut held: HashSet<ObjectKey> = HashSet::new();
        let mut new_keys = false;
        for o in &set.objects {
            let key = ObjectKey::from(o);
            match state.inventory.get(&key) {
                Some(d) if d == short_digest(&o.digest) => {}
                _ if refused => {
                    held.insert(key);
                }
                Some(_) => deploy.push(o),
                None => {
                    // Remembered before it exists, so a crash mid-apply cannot orphan it.
                    state.inventory.insert(key, NOT_APPLIED.to_owned());
                    new_keys = true;
                    deploy.push(o);
                }
            }
        }
        if new_keys {
            self.save_state().await?;
            laps.lap("inventory-write");
        }
        // Left out of drift: objects just applied, and those held back by a refusal (their
        // correction would apply the refused revision piecemeal).
        let mut applied_keys = held;
        if !deploy.is_empty() {
            let items = self.items(deploy.iter().map(|o| (*o, &o.manifest))).await;
            let results = self.applier.apply(items, cancel).await;
            laps.lap("apply");
            self.note_results(&deploy, &results, record);
            applied_keys.extend(results.iter().map(|r| r.key.clone()));
            // Kinds whose CRD this apply created can be watched now.
            let any_unserved = self
                .cache
                .as_ref()
                .is_some_and(|c| c.unserved().next().is_some());
            if any_unserved {
                self.cache_digest = None;
                self.follow_set(&set).await?;
                laps.lap("live-cache-new-kinds");
            }
        }
        if cancel.is_cancelled() {
            // Stopping (SIGTERM) between objects: what was applied goes into the state, so the
            // next leader applies only the rest (no state is written after leadership is lost).
            self.save_state().await?;
            return Ok(Outcomes::default());
        }

        // Drift of the objects not just applied, and what the policy does about it. The apply
        // may have outlived a watch (an API server restart mid-apply).
        self.live_synced(cancel).await?;
        let cache = self.cache.as_ref().ok_or("the live cache did not start")?;
        let mut report = detect_except(&set, &self.tier, cache, &self.dry_run, &applied_keys)
            .await
            .map_err(|e| e.to_string())?;
        // A Job with ttlSecondsAfterFinished that finished for its manifest and was deleted by
        // the TTL controller is not drift: it runs once per manifest (issue 21 item 6).
        let mut jobs_gone: HashSet<ObjectKey> = HashSet::new();
        for o in set.objects.iter().filter(|o| is_ttl_job(o)) {
            let key = ObjectKey::from(o);
            let Some(state) = self.state.as_mut() else {
                break;
            };
            let namespace = o.namespace.clone().unwrap_or_default();
            let applied_here =
                state.inventory.get(&key).map(String::as_str) == Some(short_digest(&o.digest));
            let live = cache.get(&key).await.ok().flatten();
            if let Some(live) = &live {
                if let Some(uid) = live.pointer("/metadata/uid").and_then(Value::as_str) {
                    self.job_uids.insert(key.clone(), uid.to_owned());
                }
                if applied_here
                    && job_finished(live)
                    && !state.job_finished(&namespace, &o.name, &o.digest)
                {
                    info!(object = %o.display_name(), "job finished for this revision: it is not created again until git changes it");
                    state.record_job_finished(&namespace, &o.name, &o.digest, &active.revision);
                }
                continue;
            }
            if state.job_finished(&namespace, &o.name, &o.digest) {
                jobs_gone.insert(key);
                continue;
            }
            if !applied_here {
                continue;
            }
            // Gone before a reconcile saw it finish (ttlSecondsAfterFinished: 0): the Job
            // controller's Event says whether the Job gitopsd created ran to its end.
            let uid = self.job_uids.get(&key).cloned();
            match job_end_event(&self.client, &namespace, &o.name, uid.as_deref()).await {
                Ok(true) => {
                    info!(object = %o.display_name(), "job finished for this revision (its Event says so) and was deleted: it is not created again until git changes it");
                    state.record_job_finished(&namespace, &o.name, &o.digest, &active.revision);
                    jobs_gone.insert(key);
                }
                Ok(false) => {}
                Err(e) => {
                    debug!(object = %o.display_name(), error = %e, "cannot read the Job's Events")
                }
            }
        }
        if let Some(state) = self.state.as_mut() {
            state.finished_jobs.retain(|j| {
                set.objects.iter().any(|o| {
                    is_ttl_job(o)
                        && o.name == j.name
                        && o.namespace.as_deref() == Some(j.namespace.as_str())
                })
            });
        }
        if !jobs_gone.is_empty() {
            report.drop_items(|i| i.field_path.is_none() && jobs_gone.contains(&i.object_key()));
        }
        self.jobs_gone = jobs_gone;
        if let Some(state) = &self.state {
            // By identity: the inventory compares group, kind, namespace and name.
            crate::drift::settle_extras(&mut report, &self.tier, &|k| {
                state.inventory.contains_key(k)
            });
        }
        laps.lap("drift");
        let by_key: HashMap<ObjectKey, &DesiredObject> = set
            .objects
            .iter()
            .map(|o| (ObjectKey::from(o), o))
            .collect();
        // Who deletes the objects gitopsd had to create again, while their live copy tells.
        for key in self.fights.recreated_objects() {
            if let Some(o) = by_key.get(&key) {
                let live = cache.get(&key).await.ok().flatten();
                self.fights
                    .note_deleter(&key, policy::deletion_hint(&o.manifest, live.as_ref()));
            }
        }
        let mut lives: HashMap<ObjectKey, Value> = HashMap::new();
        for item in &report.items {
            let key = item.object_key();
            if let Ok(Some(l)) = cache.get(&key).await {
                lives.insert(key, l);
            }
        }
        let now = Instant::now();
        // Outside the change windows only critical drift is corrected (unless the tier holds
        // that too, or a manual sync overrode the window); the rest waits.
        let window = self.window_now();
        let closed = !window.open && !self.override_now;
        let mut waiting = 0;
        let policy_report = if closed {
            let critical_too = self.tier.critical_outside_windows == OutsideWindows::Hold;
            let mut r = report.clone();
            r.items.retain(|i| {
                let wait =
                    i.action == Action::Apply && (critical_too || i.severity != Severity::Critical);
                if wait {
                    waiting += 1;
                }
                !wait
            });
            r
        } else {
            report.clone()
        };
        if waiting > 0 {
            self.window_held = true;
        }
        let decision = self.fights.decide(
            &policy_report,
            &|k| by_key.get(k).map(|o| o.digest.clone()),
            &|k| lives.get(k).cloned(),
            now,
        );
        record.drift = report.items.len();
        record.alerts = decision.alerts.len();
        self.report_new_drift(&active.revision, &report);
        for u in &decision.unconvergeable {
            warn!(object = %crate::apply::display_name(&u.object), path = %u.path, manager = u.manager.as_deref().unwrap_or("?"), "unconvergeable drift: {u}");
        }
        let all_corrections: Vec<_> = decision
            .corrections
            .iter()
            .filter_map(|c| by_key.get(&c.object).map(|o| (c, *o)))
            .collect();
        // Foreign security fields are removed by a guarded JSON patch, one request per object
        // (an apply cannot remove a field gitopsd does not own); the rest is applied.
        let mut removed: Vec<ObjectResult> = Vec::new();
        let mut removed_from: Vec<&DesiredObject> = Vec::new();
        for (c, o) in all_corrections.iter().filter(|(c, _)| !c.remove.is_empty()) {
            let Some(live) = lives.get(&c.object) else {
                continue;
            };
            let version = live
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if version.is_some() && self.removed_at_version.get(&c.object) == version.as_ref() {
                debug!(object = %o.display_name(), "the live cache has not seen the last removal yet");
                continue;
            }
            let r = self
                .applier
                .remove_fields(&c.object, live, &c.remove, cancel)
                .await;
            if r.outcome != Outcome::Failed {
                if let Some(v) = version {
                    self.removed_at_version.insert(c.object.clone(), v);
                }
                let fields: Vec<String> = c.remove.iter().map(ToString::to_string).collect();
                self.fights.corrected(&c.object, &fields, &o.digest, now);
                info!(object = %o.display_name(), fields = ?fields, "foreign security fields removed");
            }
            removed.push(r);
            removed_from.push(*o);
        }
        if !removed.is_empty() {
            self.note_results(&removed_from, &removed, record);
        }
        let corrections: Vec<_> = all_corrections
            .into_iter()
            .filter(|(c, _)| c.needs_apply())
            .collect();
        if !corrections.is_empty() {
            let objects: Vec<&DesiredObject> = corrections.iter().map(|(_, o)| *o).collect();
            // A correction changes exactly the fields the policy corrects: every other
            // difference (alerted, ignored, held back, HPA-owned) is applied at its live value.
            let manifests: Vec<Value> = corrections
                .iter()
                .map(|(c, o)| match lives.get(&c.object) {
                    Some(live) => {
                        let owned = applied_fields_v1(live, FIELD_MANAGER);
                        let keep: Vec<FieldPath> = compare(&o.manifest, live, owned)
                            .into_iter()
                            .map(|d| d.path)
                            .filter(|p| !c.fields.contains(&p.to_string()))
                            .collect();
                        hold_back(&o.manifest, live, &keep)
                    }
                    None => o.manifest.clone(),
                })
                .collect();
            let mut items = self
                .items(objects.iter().copied().zip(manifests.iter()))
                .await;
            for (item, (c, _)) in items.iter_mut().zip(&corrections) {
                item.take_fields = c.fields.clone();
                // The version the drift and the held-back fields were read at: a take-back
                // forces nothing unless the object is still there (`Applier::take_back`).
                if let Some(v) = lives
                    .get(&c.object)
                    .and_then(|l| l.pointer("/metadata/resourceVersion"))
                    .and_then(Value::as_str)
                {
                    item.previous_resource_version = Some(v.to_owned());
                }
            }
            let results = self.applier.apply(items, cancel).await;
            self.note_results(&objects, &results, record);
            for ((c, o), r) in corrections.iter().zip(&results) {
                if r.outcome != Outcome::Failed {
                    // Foreign fields were counted when they were removed.
                    let applied: Vec<String> = c
                        .fields
                        .iter()
                        .filter(|f| !c.remove.iter().any(|p| p.to_string() == **f))
                        .cloned()
                        .collect();
                    self.fights.corrected(&c.object, &applied, &o.digest, now);
                    // A missing object created again: deletions count in the fight guard.
                    if c.fields.is_empty() && r.outcome == Outcome::Created {
                        self.fights.recreated(&c.object, &o.digest, now);
                    }
                    info!(object = %o.display_name(), fields = ?c.fields, "drift corrected");
                }
            }
        }
        laps.lap("corrections");
        let desired_keys: HashSet<ObjectKey> = by_key.keys().cloned().collect();
        // What leaves the inventory is compared by identity: a manifest moved to another
        // version of its group is the same object (issue 21 item 4).
        let desired_ids: HashSet<ObjectId> = desired_keys.iter().map(ObjectKey::id).collect();
        self.fights.retain(|k| desired_keys.contains(k));
        self.applied_generations
            .retain(|k, _| desired_keys.contains(k));
        self.removed_at_version
            .retain(|k, _| desired_keys.contains(k));
        self.dry_run.retain(&desired_keys);

        // Prune: only when the newest revision fetched, rendered and validated, and every
        // object of this sync was applied: an object refused (RBAC, a conflict) may be the
        // replacement of one prune would delete.
        let newest_ok =
            self.source_ok && self.desired.failure().is_none() && !cancel.is_cancelled();
        let apply_failed = record
            .outcomes
            .get(Outcome::Failed.as_str())
            .is_some_and(|n| *n > 0);
        if newest_ok && apply_failed {
            if self
                .state
                .as_ref()
                .is_some_and(|s| s.inventory.keys().any(|k| !desired_ids.contains(&k.id())))
            {
                record.prune_notes.push(
                    "prune skipped: an object of this sync failed to apply (see the failures)"
                        .into(),
                );
            }
        } else if newest_ok {
            self.prune(&desired_keys, cancel, record).await;
        } else if self
            .state
            .as_ref()
            .is_some_and(|s| s.inventory.keys().any(|k| !desired_ids.contains(&k.id())))
        {
            record.prune_notes.push(
                "prune skipped: the newest revision could not be fetched, rendered or validated"
                    .into(),
            );
        }

        if let Some(state) = self.state.as_mut()
            && !refused
        {
            state.last_applied_revision = Some(active.revision.clone());
        }
        laps.lap("prune");
        self.save_state().await?;
        laps.lap("state-write");

        let unconvergeable = !decision.unconvergeable.is_empty();
        let failed = record
            .outcomes
            .get(Outcome::Failed.as_str())
            .copied()
            .unwrap_or(0)
            > 0;
        // The one rule (docs/DESIGN.md, "Sync state"): drift leaves the tier OutOfSync unless
        // each item is ignored, or was corrected or pruned in this reconcile.
        let failed_keys: HashSet<&ObjectKey> = record.failures.iter().map(|r| &r.key).collect();
        let unsettled = crate::policy::unsettled(&report, &decision, &|item| {
            let key = item.object_key();
            match item.action {
                // Pruned (or found gone): out of the inventory, which compares identities.
                Action::Prune => self
                    .state
                    .as_ref()
                    .is_some_and(|s| !s.inventory.contains_key(&key)),
                _ => !failed_keys.contains(&key),
            }
        })
        .len();
        // A refused revision was not applied: it starts no rollout and is never recorded
        // healthy (a later tier's promotion gate reads that record).
        let outcomes = if refused {
            Outcomes::default()
        } else {
            self.assess_health(active, &report, record).await
        };
        laps.lap("health");
        // Every sync that wrote something says where its time went; quiet ones only at debug.
        if record.outcomes.is_empty() {
            debug!(phases = %laps, total_ms = laps.total().as_millis() as u64, "sync timings");
        } else {
            info!(phases = %laps, total_ms = laps.total().as_millis() as u64, "sync timings");
        }
        let sync = if failed || unconvergeable || unsettled > 0 {
            SyncState::OutOfSync
        } else {
            SyncState::Synced
        };
        // A refused prune leaves objects git no longer has: not in sync, whatever drift says.
        let prune_refused = self.prune_refused.clone();
        let sync = if prune_refused.is_some() {
            SyncState::OutOfSync
        } else {
            sync
        };
        let revision = if refused {
            self.state
                .as_ref()
                .and_then(|s| s.last_applied_revision.clone())
        } else {
            Some(active.revision.clone())
        };
        let objects = set.objects.len();
        // The newest revision's failure outranks what this sync of the last good set did.
        let (sync, error) = if let Some(f) = self.desired.failure() {
            (SyncState::Failed, Some(f.to_string()))
        } else if let Some(e) = &self.source_error {
            (SyncState::Failed, Some(e.clone()))
        } else if let Some((_, hold)) = &self.held {
            (SyncState::Blocked, Some(hold.message.clone()))
        } else if waiting > 0 {
            let until = window
                .next_change
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "a window opens".into());
            (
                SyncState::Blocked,
                Some(format!(
                    "change window closed: {waiting} drift correction(s) wait until {until}"
                )),
            )
        } else {
            let first_failure = record.failures.first().and_then(|r| r.message.clone());
            (
                sync,
                self.health_note
                    .clone()
                    .or(first_failure)
                    .or(prune_refused.clone()),
            )
        };
        let window = (!self.tier.windows.is_empty()).then_some(window);
        let dry_run_entries = self.dry_run.entries();
        self.status.update(|s| {
            s.window = window;
            s.revision = revision;
            s.sync = sync;
            s.objects = objects;
            s.alerts = decision.alerts;
            s.unconvergeable = decision.unconvergeable;
            s.prune_refused = prune_refused;
            s.drift = Some(report);
            s.last_error = error;
            s.dry_run_cache_entries = dry_run_entries;
        });
        Ok(outcomes)
    }

    /// The ownership refusals of `set` (see [`crate::ownership`]), read from the live cache
    /// and the inventory: no request.
    fn refusals(&self, set: &DesiredSet) -> Result<Vec<crate::validate::Finding>, String> {
        use crate::ownership::{Claim, Live, adopts, claim, finding};
        let cache = self.cache.as_ref().ok_or("the live cache did not start")?;
        let state = self.state.as_ref().ok_or("no tier state")?;
        let mut out = Vec::new();
        for o in &set.objects {
            let key = ObjectKey::from(o);
            let label = |live: &kube::api::DynamicObject| {
                live.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(crate::render::TIER_LABEL))
                    .cloned()
            };
            let found = match cache.peek(&key, label) {
                Ok(found) => found,
                // Not served (its CRD comes in this set): no object of it can exist yet.
                Err(crate::live::LiveError::UnknownKind { .. }) => None,
                Err(e) => return Err(format!("ownership of {}: {e}", o.display_name())),
            };
            let live = match &found {
                None => Live::Absent,
                Some(l) => Live::Present {
                    tier_label: l.as_deref(),
                },
            };
            // The inventory compares identities: another version of the group is the same object.
            let in_inventory = state.inventory.contains_key(&key);
            match claim(
                &self.tier.name,
                in_inventory,
                adopts(&self.tier, &key),
                live,
            ) {
                Claim::Create | Claim::Own => {}
                Claim::Adopt => {
                    info!(object = %o.display_name(), holder = found.flatten().as_deref().unwrap_or("no tier"), "adopting the object, as the tier's adopt: says")
                }
                Claim::Refuse(r) => {
                    let managers = cache
                        .peek(&key, |live| {
                            let mut names: Vec<String> = Vec::new();
                            for m in live.metadata.managed_fields.iter().flatten() {
                                if let Some(m) = &m.manager
                                    && !names.contains(m)
                                {
                                    names.push(m.clone());
                                }
                            }
                            names
                        })
                        .ok()
                        .flatten()
                        .unwrap_or_default();
                    out.push(finding(o, &self.tier, &r, &managers));
                }
            }
        }
        Ok(out)
    }

    /// Points the live cache at the set's kinds and objects (once per set), and waits until
    /// it has listed them.
    async fn follow_set(&mut self, set: &DesiredSet) -> Result<(), String> {
        if self.cache_digest.as_deref() == Some(set.digest.as_str()) && self.cache.is_some() {
            return Ok(());
        }
        let kinds = set.kinds();
        let names: Vec<ObjectKey> = set.objects.iter().map(ObjectKey::from).collect();
        match self.cache.as_mut() {
            Some(cache) => cache
                .update_kinds(&kinds, &names)
                .await
                .map_err(|e| e.to_string())?,
            None => {
                // The tier's namespaces only: no desired object can be outside them (validation),
                // and gitopsd's RBAC grants reads of namespaced kinds only there.
                let namespaces = Namespaces::only(&self.tier.namespaces);
                let cache = self
                    .api
                    .start_cache(&self.tier.name, namespaces, &kinds, &names)
                    .await
                    .map_err(|e| e.to_string())?;
                self.live_rx = Some(cache.changes());
                self.cache = Some(cache);
            }
        }
        if let Some(cache) = &self.cache {
            cache
                .wait_synced(CACHE_SYNC_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.cache_digest = Some(set.digest.clone());
        Ok(())
    }

    /// Waits (at most [`CACHE_RESYNC_WAIT`]) until every watch of the live cache is synced, the
    /// status saying why meanwhile; the error names the watch still listing.
    async fn live_synced(&self, cancel: &CancellationToken) -> Result<(), String> {
        let cache = self.cache.as_ref().ok_or("the live cache did not start")?;
        let Some(((api_version, kind), what)) = cache.not_synced() else {
            return Ok(());
        };
        let reason = format!(
            "the live cache is listing {api_version} {kind} ({what}) again after a watch error (API server restarted or unreachable?); drift detection and corrections wait until it has"
        );
        info!(tier = %self.tier.name, "{reason}");
        let shown = reason.clone();
        self.status.update(|s| s.last_error = Some(shown));
        tokio::select! {
            waited = cache.wait_synced(CACHE_RESYNC_WAIT) => waited.map_err(|e| format!("{reason}: still not synced after {}s: {e}", CACHE_RESYNC_WAIT.as_secs())),
            _ = cancel.cancelled() => Err(reason),
        }
    }

    /// Apply items for `(object, manifest to apply)` pairs, with each object's live
    /// resourceVersion from the cache (which tells created, configured and unchanged apart).
    async fn items<'a>(
        &self,
        pairs: impl Iterator<Item = (&DesiredObject, &'a Value)>,
    ) -> Vec<ApplyItem<'a>> {
        let mut items = Vec::new();
        for (o, manifest) in pairs {
            items.push(ApplyItem {
                manifest,
                previous_resource_version: self.resource_version(&ObjectKey::from(o)).await,
                take_fields: Vec::new(),
            });
        }
        items
    }

    async fn resource_version(&self, key: &ObjectKey) -> Option<String> {
        let cache = self.cache.as_ref()?;
        let live = cache.get(key).await.ok()??;
        live.pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Counts results, keeps failures for status, and moves applied digests into the inventory.
    fn note_results(
        &mut self,
        objects: &[&DesiredObject],
        results: &[ObjectResult],
        record: &mut SyncRecord,
    ) {
        for (o, r) in objects.iter().zip(results) {
            *record
                .outcomes
                .entry(r.outcome.as_str().to_owned())
                .or_default() += 1;
            self.report_object(&record.revision, r);
            if r.outcome == Outcome::Failed {
                warn!(object = %o.display_name(), error = r.message.as_deref().unwrap_or("?"), "apply failed");
                if record.failures.len() < LISTED {
                    record.failures.push(r.clone());
                }
            } else {
                if let Some(generation) = r.applied.as_ref().and_then(|a| a.generation) {
                    self.applied_generations.insert(r.key.clone(), generation);
                }
                if is_ttl_job(o)
                    && let Some(uid) = r.applied.as_ref().and_then(|a| a.uid.clone())
                {
                    self.job_uids.insert(r.key.clone(), uid);
                }
                if let Some(state) = self.state.as_mut() {
                    state
                        .inventory
                        .insert(r.key.clone(), short_digest(&o.digest).to_owned());
                }
            }
        }
    }

    async fn prune(
        &mut self,
        desired: &HashSet<ObjectKey>,
        cancel: &CancellationToken,
        record: &mut SyncRecord,
    ) {
        let Some(state) = self.state.as_ref() else {
            return;
        };
        let inventory: Vec<ObjectKey> = state.inventory.keys().cloned().collect();
        let desired_ids: HashSet<ObjectId> = desired.iter().map(ObjectKey::id).collect();
        let candidates: Vec<&ObjectKey> = inventory
            .iter()
            .filter(|k| !desired_ids.contains(&k.id()))
            .collect();
        self.prune_refused = None;
        if candidates.is_empty() {
            return;
        }
        let mut live: HashMap<ObjectKey, Value> = HashMap::new();
        for key in &candidates {
            match self.api.get(key).await {
                Ok(Some(v)) => {
                    live.insert((*key).clone(), v);
                }
                Ok(None) | Err(crate::live::LiveError::UnknownKind { .. }) => {}
                Err(e) => {
                    // Unknown state: do not prune on a guess.
                    record.prune_notes.push(format!(
                        "prune skipped: cannot read {}: {e}",
                        crate::apply::display_name(key)
                    ));
                    return;
                }
            }
        }
        let plan = plan_prune(
            &self.tier.name,
            &self.tier.prune,
            &inventory,
            desired,
            &|k| live.get(k).cloned(),
        );
        let Some(state) = self.state.as_mut() else {
            return;
        };
        for key in &plan.gone {
            state.inventory.remove(key);
        }
        if let Some(refused) = &plan.refused {
            warn!(reason = %refused, "prune refused");
            record.prune_notes.push(refused.clone());
            // The objects the guard kept: neither gone nor skipped for a reason of their own.
            let kept = candidates
                .len()
                .saturating_sub(plan.gone.len() + plan.skipped.len());
            let message = format!(
                "prune refused: {kept} objects that left git stay in the cluster: {refused} (or put them back in git)"
            );
            let report = (record.revision.clone(), refused.clone());
            if self.prune_refused_reported.as_ref() != Some(&report) {
                self.observers.emit(Activity::PruneRefused {
                    tier: self.tier.name.clone(),
                    revision: record.revision.clone(),
                    objects: kept,
                    reason: refused.clone(),
                });
                self.prune_refused_reported = Some(report);
            }
            self.prune_refused = Some(message);
            return;
        }
        for (key, why) in &plan.skipped {
            record
                .prune_notes
                .push(format!("{} kept: {why}", crate::apply::display_name(key)));
            // Another tier or a person took it over: no longer this tier's to prune.
            let taken = live
                .get(key)
                .and_then(|l| {
                    l.pointer(&format!(
                        "/metadata/labels/{}",
                        crate::render::TIER_LABEL.replace('/', "~1")
                    ))
                })
                .and_then(Value::as_str)
                != Some(self.tier.name.as_str());
            if taken {
                state.inventory.remove(key);
            }
        }
        if plan.delete.is_empty() {
            return;
        }
        let targets: Vec<PruneTarget> = plan.delete.clone();
        let results = self.applier.delete(targets, cancel).await;
        for r in &results {
            self.report_object(&record.revision, r);
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        for r in &results {
            *record
                .outcomes
                .entry(r.outcome.as_str().to_owned())
                .or_default() += 1;
            if r.outcome == Outcome::Pruned {
                info!(object = %crate::apply::display_name(&r.key), "pruned");
                state.inventory.remove(&r.key);
            } else if record.failures.len() < LISTED {
                record.failures.push(r.clone());
            }
        }
    }

    /// The tier's health from the live cache; marks a revision healthy, or rolls it back when
    /// its health timeout has passed.
    async fn assess_health(
        &mut self,
        active: &Active,
        report: &crate::drift::DriftReport,
        record: &mut SyncRecord,
    ) -> Outcomes {
        let Some(cache) = self.cache.as_ref() else {
            return Outcomes::default();
        };
        let missing: HashSet<(String, Option<String>, String)> = report
            .items
            .iter()
            .filter(|i| i.rule == "object-deleted")
            .map(|i| {
                (
                    i.key.kind.clone(),
                    i.key.namespace.clone(),
                    i.key.name.clone(),
                )
            })
            .collect();
        let mut unhealthy = Vec::new();
        let mut worst = Health::Healthy;
        for o in &active.set.objects {
            if self.jobs_gone.contains(&ObjectKey::from(o)) {
                continue;
            }
            let h = if missing.contains(&(o.kind.clone(), o.namespace.clone(), o.name.clone())) {
                health::assess_or_missing(None)
            } else if !has_health(&o.kind) {
                continue;
            } else {
                let key = ObjectKey::from(o);
                match cache.get(&key).await {
                    Ok(live) => {
                        let seen = live
                            .as_ref()
                            .and_then(|l| l.pointer("/metadata/generation"))
                            .and_then(Value::as_i64);
                        match (self.applied_generations.get(&key), seen) {
                            (Some(applied), Some(seen)) if seen < *applied => ObjectHealth {
                                health: Health::Progressing,
                                message: format!(
                                    "generation {applied} applied; the watch still shows {seen}"
                                ),
                            },
                            _ => health::assess_or_missing(live.as_ref()),
                        }
                    }
                    Err(_) => continue,
                }
            };
            worst = worst.max(h.health);
            if h.health != Health::Healthy && unhealthy.len() < LISTED {
                unhealthy.push(UnhealthyObject {
                    object: ObjectKey::from(o),
                    health: h,
                });
            }
        }
        let now = Instant::now();
        let mut out = Outcomes::default();
        let last_healthy = self
            .state
            .as_ref()
            .and_then(|s| s.last_healthy_revision.clone());
        if worst == Health::Healthy {
            let recorded = self
                .state
                .as_ref()
                .is_some_and(|s| s.healthy_record(&active.revision).is_some());
            if last_healthy.as_deref() != Some(active.revision.as_str()) || !recorded {
                if let Some(r) = &self.rollout {
                    info!(after = ?r.started.elapsed(), "revision healthy");
                }
                // Not taken: the same sync may have made the revision healthy before its
                // commit-to-applied time was observed (after the sync returns).
                let arrived = self.arrived.clone().filter(|(r, _)| *r == active.revision);
                let checkouts = self.checkouts.clone();
                let rev = active.revision.clone();
                let base = tokio::task::spawn_blocking(move || {
                    checkouts
                        .checkout(&rev)
                        .ok()
                        .and_then(|root| base_digest(&root))
                })
                .await
                .ok()
                .flatten();
                let since = (self.clock)();
                if let Some(state) = self.state.as_mut() {
                    state.record_healthy(&active.revision, since, base);
                }
                if let Err(e) = self.save_state().await {
                    warn!(error = %e, "cannot record the healthy revision");
                }
                // After the save: an observer may wake a tier whose gate reads this record.
                if let Some((_, at)) = arrived {
                    self.observers.emit(Activity::RevisionHealthy {
                        tier: self.tier.name.clone(),
                        revision: active.revision.clone(),
                        since_arrival: at.elapsed(),
                    });
                }
                self.publish(&active.revision).await;
            }
            self.last_healthy = Some(active.clone());
            self.rollout = None;
        } else if last_healthy.as_deref() != Some(active.revision.as_str()) {
            let timeout = self.tier.health_timeout();
            let rollout = match &self.rollout {
                Some(r) if r.revision == active.revision => r.clone(),
                _ => {
                    let r = Rollout {
                        revision: active.revision.clone(),
                        started: now,
                        deadline: now + timeout,
                    };
                    self.rollout = Some(r.clone());
                    r
                }
            };
            if now < rollout.deadline {
                out.wake_at = Some(rollout.deadline);
            } else {
                out = self
                    .health_deadline_passed(active, &unhealthy, record)
                    .await;
            }
        }
        let last_healthy = self
            .state
            .as_ref()
            .and_then(|s| s.last_healthy_revision.clone());
        let (failed, rollbacks) = self
            .state
            .as_ref()
            .map(|s| (s.failed_revision.clone(), s.rollbacks))
            .unwrap_or_default();
        if self.health_seen != Some(worst) {
            if let Some(from) = self.health_seen {
                self.observers.emit(Activity::HealthChanged {
                    tier: self.tier.name.clone(),
                    revision: active.revision.clone(),
                    from,
                    to: worst,
                });
            }
            self.health_seen = Some(worst);
        }
        self.status.update(|s| {
            s.health = worst;
            s.unhealthy = unhealthy;
            s.last_healthy_revision = last_healthy;
            s.failed_revision = failed;
            s.rollbacks = rollbacks;
        });
        out
    }

    /// Pushes the healthy ref of `revision` when the tier publishes them; a failure is a
    /// warning only.
    async fn publish(&self, revision: &str) {
        if !self.publish_healthy {
            return;
        }
        let Some(record) = self.state.as_ref().and_then(|s| s.healthy_record(revision)) else {
            return;
        };
        let checkouts = self.checkouts.clone();
        let tier = self.tier.name.clone();
        let pushed =
            tokio::task::spawn_blocking(move || checkouts.publish_healthy(&tier, &record)).await;
        match pushed {
            Ok(Ok(())) => {
                info!(revision, "healthy ref published to the config repo")
            }
            Ok(Err(e)) => {
                warn!(revision, error = %e, "cannot publish the healthy ref; the gate in this cluster is unaffected")
            }
            Err(e) => warn!(revision, error = %e, "the publish task failed"),
        }
    }

    async fn health_deadline_passed(
        &mut self,
        active: &Active,
        unhealthy: &[UnhealthyObject],
        record: &mut SyncRecord,
    ) -> Outcomes {
        let timeout = self.tier.health_timeout();
        let first = unhealthy
            .first()
            .map(|u| {
                format!(
                    "; first: {} {} ({})",
                    crate::apply::display_name(&u.object),
                    u.health.health,
                    u.health.message
                )
            })
            .unwrap_or_default();
        let message = format!(
            "revision {} did not become healthy within {}{first}",
            short(&active.revision),
            humantime::format_duration(timeout)
        );
        self.rollout = None;
        if !self.tier.rolls_back() {
            warn!("{message}; rollback is off for this tier");
            self.health_note = Some(format!("{message}; rollback is off for this tier"));
            return Outcomes::default();
        }
        let Some(target) = self.restore_last_healthy().await else {
            warn!("{message}; no healthy revision to roll back to");
            self.status.update(|s| {
                s.last_error = Some(format!("{message}; no healthy revision to roll back to"))
            });
            return Outcomes::default();
        };
        if target.revision == active.revision {
            return Outcomes::default();
        }
        warn!(to = %short(&target.revision), "{message}; rolling back");
        if let Some(state) = self.state.as_mut() {
            state.failed_revision = Some(active.revision.clone());
            state.rollbacks += 1;
        }
        if let Err(e) = self.save_state().await {
            warn!(error = %e, "cannot record the rollback; it is retried");
        }
        record.rolled_back_from = Some(active.revision.clone());
        let target_revision = target.revision.clone();
        self.observers.emit(Activity::RolledBack {
            tier: self.tier.name.clone(),
            from: active.revision.clone(),
            to: target_revision.clone(),
            reason: message.clone(),
        });
        self.active = Some(target);
        self.health_note = Some(format!(
            "{message}; rolled back to {}; waiting for a new commit on {}",
            short(&target_revision),
            self.tier.git_ref
        ));
        // Apply the healthy set at once.
        Outcomes {
            wake_at: Some(Instant::now()),
        }
    }
}

impl TierReconciler {
    /// Reports an object's outcome, unless nothing changed.
    fn report_object(&self, revision: &str, r: &ObjectResult) {
        if r.outcome == Outcome::Unchanged {
            return;
        }
        self.observers.emit(Activity::ObjectApplied {
            tier: self.tier.name.clone(),
            revision: revision.to_owned(),
            object: r.key.clone(),
            outcome: r.outcome,
            message: r.message.clone(),
        });
    }

    /// Reports the drift items the previous reconcile did not see, and remembers this one's.
    fn report_new_drift(&mut self, revision: &str, report: &crate::drift::DriftReport) {
        let mut seen = HashSet::new();
        let mut new = Vec::new();
        for item in &report.items {
            let key = (item.object_key(), item.paths.join(","));
            if !self.drift_seen.contains(&key) {
                new.push(item.clone());
            }
            seen.insert(key);
        }
        self.drift_seen = seen;
        if !new.is_empty() {
            self.observers.emit(Activity::DriftFound {
                tier: self.tier.name.clone(),
                revision: revision.to_owned(),
                items: new,
            });
        }
    }
}

/// The instant a hold opening at `opens_at` (by the reconcile's clock, which reads `now`)
/// lifts, a second late so the clock has passed it.
fn wake_at(opens_at: DateTime<Utc>, now: DateTime<Utc>, instant: Instant) -> Instant {
    let wait = (opens_at - now).to_std().unwrap_or(Duration::ZERO);
    instant + wait + Duration::from_secs(1)
}

/// A Job the TTL-after-finished controller deletes once it finished.
fn is_ttl_job(o: &DesiredObject) -> bool {
    o.kind == "Job"
        && crate::config::api_group(&o.api_version) == "batch"
        && o.manifest
            .pointer("/spec/ttlSecondsAfterFinished")
            .is_some_and(|t| !t.is_null())
}

/// Drops from `report` the absence of each Job with `ttlSecondsAfterFinished` that the tier
/// state records finished for its manifest: no drift, as the daemon sees it (`gitopsd diff`
/// reads the same state).
pub fn drop_finished_jobs(
    report: &mut crate::drift::DriftReport,
    set: &DesiredSet,
    state: &TierState,
) {
    let done: HashSet<ObjectKey> = set
        .objects
        .iter()
        .filter(|o| {
            is_ttl_job(o)
                && state.job_finished(o.namespace.as_deref().unwrap_or(""), &o.name, &o.digest)
        })
        .map(ObjectKey::from)
        .collect();
    if !done.is_empty() {
        report.drop_items(|i| i.field_path.is_none() && done.contains(&i.object_key()));
    }
}

/// Whether a live Job ran to its end: its `Complete` or `Failed` condition is true.
fn job_finished(live: &Value) -> bool {
    live.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                matches!(
                    c.get("type").and_then(Value::as_str),
                    Some("Complete" | "Failed")
                ) && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The reasons of the Events the Job controller records when a Job ends.
const JOB_END_REASONS: &[&str] = &[
    "Completed",
    "BackoffLimitExceeded",
    "DeadlineExceeded",
    "PodFailurePolicy",
    "MaxFailedIndexesExceeded",
    "FailedIndexes",
];

/// Whether the Job controller recorded the end of the Job `namespace/name` (of `uid`, when
/// known; after a restart gitopsd does not know it, and any end of a Job of that name counts).
async fn job_end_event(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<bool, kube::Error> {
    let api: kube::Api<k8s_openapi::api::core::v1::Event> =
        kube::Api::namespaced(client.clone(), namespace);
    let params = kube::api::ListParams::default().fields(&format!(
        "involvedObject.kind=Job,involvedObject.name={name}"
    ));
    let events = api.list(&params).await?;
    Ok(events.items.iter().any(|e| {
        JOB_END_REASONS.contains(&e.reason.as_deref().unwrap_or_default())
            && uid.is_none_or(|u| e.involved_object.uid.as_deref() == Some(u))
    }))
}

/// Kinds whose health is more than "it exists": the rest are healthy when present.
fn has_health(kind: &str) -> bool {
    !matches!(
        kind,
        "ConfigMap"
            | "Secret"
            | "ServiceAccount"
            | "Role"
            | "RoleBinding"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "NetworkPolicy"
            | "PriorityClass"
            | "HorizontalPodAutoscaler"
            | "PodDisruptionBudget"
            | "ResourceQuota"
            | "LimitRange"
    )
}

fn short(revision: &str) -> &str {
    revision.get(..12).unwrap_or(revision)
}

#[cfg(test)]
mod tests {
    use super::*;

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
