//! Who leads, as the tier tasks see it: the channel the elector (or, without election, the
//! daemon) publishes a [`LeaderView`] on, and how a tier knows its term is over.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::leader::{Elector, LeaderView};

/// What publishes who leads, owned by [`run`] until every tier has stopped.
///
/// The tiers read a `watch` channel, and a closed one means nobody says who leads any more:
/// a tier on standby stops, and a leading tier stops writing ([`leadership_lost`]). So the
/// sender must live exactly as long as the tiers: the elector's task owns it with election
/// on; without election it is held here (it was leaked with `mem::forget` before).
pub(super) enum Leadership {
    /// `leaderElection.enabled` (or `--leader-elect`): the elector publishes every change and
    /// releases the Lease when `stop` is cancelled.
    Elected {
        task: tokio::task::JoinHandle<()>,
        stop: CancellationToken,
    },
    /// No election: this replica always leads; the view never changes.
    Always(watch::Sender<LeaderView>),
}

impl Leadership {
    pub(super) fn elected(elector: Elector) -> (watch::Receiver<LeaderView>, Leadership) {
        let (tx, rx) = watch::channel(elector.initial_view());
        let stop = CancellationToken::new();
        let task = tokio::spawn(elector.run(tx, stop.clone()));
        (rx, Leadership::Elected { task, stop })
    }

    pub(super) fn always(identity: &str) -> (watch::Receiver<LeaderView>, Leadership) {
        let (tx, rx) = watch::channel(LeaderView::always(identity));
        (rx, Leadership::Always(tx))
    }

    /// Called once every tier has stopped: the elector releases the Lease (given a few
    /// seconds), and the channel closes.
    pub(super) async fn stop(self) {
        match self {
            Leadership::Elected { task, stop } => {
                stop.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            }
            Leadership::Always(tx) => drop(tx),
        }
    }
}

/// Returns once this replica no longer leads: the view says so, or its channel closed (the
/// elector is gone, so nothing renews the Lease: writing on would risk two leaders).
pub(super) async fn leadership_lost(leader: &mut watch::Receiver<LeaderView>) {
    loop {
        if !leader.borrow_and_update().leading {
            return;
        }
        if leader.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `leadership_lost` has returned within a moment.
    async fn lost_soon(rx: &mut watch::Receiver<LeaderView>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), leadership_lost(rx))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn leadership_is_lost_when_the_view_says_so_or_nobody_publishes_it_any_more() {
        let (tx, mut rx) = watch::channel(LeaderView::always("me"));
        assert!(
            !lost_soon(&mut rx).await,
            "leading, and the elector is there"
        );
        tx.send_modify(|v| v.leading = false);
        assert!(lost_soon(&mut rx).await, "another replica took the Lease");

        // The elector went away (its task ended without a word): nothing renews the Lease, so
        // this replica must stop writing rather than lead on unwatched.
        let (tx, mut rx) = watch::channel(LeaderView::always("me"));
        drop(tx);
        assert!(lost_soon(&mut rx).await, "a closed channel is a lost lead");
    }

    #[tokio::test]
    async fn without_election_the_view_stays_published_until_the_daemon_stops_it() {
        let (mut rx, leadership) = Leadership::always("me");
        assert!(rx.borrow().leading);
        assert!(
            !lost_soon(&mut rx).await,
            "held by its owner, the channel stays open: the tiers keep leading"
        );
        leadership.stop().await;
        assert!(
            rx.has_changed().is_err(),
            "stopped: the channel is closed, nothing leaked"
        );
    }
}
