//! One task per tier: standby while another replica leads, and while this one leads, a loop
//! that runs one reconcile at a time on whatever woke it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::leadership::leadership_lost;
use crate::leader::LeaderView;
use crate::reconcile::{ReconcileReason, TierReconciler};
use crate::revision::Revision;
use crate::status::StatusHandle;

/// Live changes arriving within this time are handled by one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(150);

#[derive(Clone)]
pub(super) enum TierEvent {
    Revision(Revision),
    FetchFailed(String),
}

/// One tier for the daemon's life: on standby while another replica leads (keeping the newest
/// revision it was told of), reconciling while this one leads. Each term of leadership gets a
/// fresh [`TierReconciler`], which reads the tier state again (the previous leader wrote it),
/// and a token cancelled at shutdown or as soon as leadership is lost: the current apply stops
/// between objects, and after a loss no state is written.
pub(super) async fn tier_task(
    make: impl Fn() -> TierReconciler,
    status: StatusHandle,
    mut events: mpsc::Receiver<TierEvent>,
    trigger: Arc<Notify>,
    interval: Duration,
    shutdown: CancellationToken,
    mut leader: watch::Receiver<LeaderView>,
) {
    let mut latest: Option<TierEvent> = None;
    loop {
        // Standby.
        loop {
            let view = leader.borrow_and_update().clone();
            if view.leading {
                break;
            }
            let note = view.standby_note();
            status.update(|s| s.standby = note);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = leader.changed() => if changed.is_err() { return },
                event = events.recv() => match event {
                    Some(e) => latest = Some(e),
                    None => return,
                },
                // A sync asked of a replica that does not lead does nothing.
                _ = trigger.notified() => {}
            }
        }
        status.update(|s| s.standby = None);
        info!("leading: reconciling this tier");
        let term = shutdown.child_token();
        let lost = CancellationToken::new();
        let watcher = {
            let (mut leader, term, lost) = (leader.clone(), term.clone(), lost.clone());
            tokio::spawn(async move {
                leadership_lost(&mut leader).await;
                lost.cancel();
                term.cancel();
            })
        };
        let mut reconciler = make();
        reconciler.set_write_guard(lost.clone());
        tier_loop(
            &mut reconciler,
            &mut events,
            latest.take(),
            &trigger,
            interval,
            &term,
        )
        .await;
        watcher.abort();
        if shutdown.is_cancelled() || !lost.is_cancelled() {
            break;
        }
        warn!("leadership lost: this tier stopped reconciling and writes nothing");
    }
    info!("tier stopped");
}

async fn tier_loop(
    reconciler: &mut TierReconciler,
    events: &mut mpsc::Receiver<TierEvent>,
    mut first: Option<TierEvent>,
    trigger: &Notify,
    interval: Duration,
    cancel: &CancellationToken,
) {
    let mut offered: Option<Revision> = None;
    let mut wake_at: Option<Instant> = None;
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Subscribed once, not per reconcile: a fresh receiver takes every change made before it
    // as seen, so a live edit during a reconcile waited for the next poll (issue 21). The
    // reconciler subscribed it when its live cache started, so nothing since then is missed.
    let mut changes: Option<watch::Receiver<u64>> = None;
    loop {
        if changes.is_none() {
            changes = reconciler.live_changes();
        }
        let pending = first.take();
        let reason = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            event = async { match pending { Some(e) => Some(e), None => events.recv().await } } => match event {
                None => break,
                Some(TierEvent::FetchFailed(e)) => {
                    warn!(error = %e, "fetch failed; the last good revision stays and prune waits");
                    reconciler.source_failed(&e);
                    continue;
                }
                Some(TierEvent::Revision(rev)) => {
                    if offered.as_ref() == Some(&rev) {
                        reconciler.source_recovered();
                        continue;
                    }
                    info!(revision = %rev, "new revision");
                    reconciler.offer_revision(&rev).await;
                    offered = Some(rev);
                    ReconcileReason::Revision
                }
            },
            _ = trigger.notified() => ReconcileReason::Trigger,
            _ = ticker.tick() => ReconcileReason::Interval,
            _ = sleep_until(wake_at) => ReconcileReason::Deadline,
            _ = changed(&mut changes) => {
                // Coalesce a burst (a rollout writes status many times): what changed during
                // the pause is read by this reconcile, so it is marked seen; a change after
                // this point wakes the next one.
                tokio::time::sleep(DEBOUNCE).await;
                if let Some(rx) = changes.as_mut() {
                    rx.borrow_and_update();
                }
                ReconcileReason::LiveChange
            }
        };
        let out = reconciler.reconcile(reason, cancel).await;
        wake_at = out.wake_at.map(Instant::from_std);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn changed(rx: &mut Option<watch::Receiver<u64>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
