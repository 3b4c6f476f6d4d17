//! What happened, as plain data: the reconcile, the source poller and the HTTP side report
//! [`Activity`]; observers record it (Prometheus metrics, Kubernetes Events, the audit log).
//!
//! Observers are called inline and must not block: one that does I/O hands the activity to
//! its own task or does a small append.

use std::sync::Arc;
use std::time::Duration;

use crate::apply::{Outcome, Tally};
use crate::classify::DriftItem;
use crate::health::Health;
use crate::hold::HoldKind;
use crate::live::ObjectKey;
use crate::revision::Revision;
use crate::status::SyncState;

/// One thing that happened to the source or a tier.
#[derive(Debug, Clone)]
pub enum Activity {
    /// A fetch of the config repo finished.
    Fetched {
        duration: Duration,
        error: Option<String>,
    },
    /// A reconcile of a tier finished. `notable` is false for quiet ones (nothing changed,
    /// started by a watch event or the interval): counted, not narrated.
    SyncFinished {
        tier: String,
        revision: Revision,
        reason: String,
        result: SyncState,
        duration: Duration,
        /// Objects per outcome (`created`, `configured`, `unchanged`, `pruned`, `failed`).
        outcomes: Tally,
        error: Option<String>,
        notable: bool,
        /// A change window kept a revision or drift corrections waiting.
        window_closed: bool,
    },
    /// One object was created, configured, pruned, or failed to be (never `unchanged`).
    ObjectApplied {
        tier: String,
        revision: Revision,
        object: ObjectKey,
        outcome: Outcome,
        /// Why it failed, or what a correction took back.
        message: Option<String>,
    },
    /// Drift items not seen in the tier's previous reconcile (Secret values already masked).
    DriftFound {
        tier: String,
        revision: Revision,
        items: Vec<DriftItem>,
    },
    /// The tier's first successful sync of a revision: everything in it was applied.
    RevisionApplied {
        tier: String,
        revision: Revision,
        /// Since the fetch that brought the revision to this tier.
        since_arrival: Duration,
    },
    /// A revision became healthy for the first time.
    RevisionHealthy {
        tier: String,
        revision: Revision,
        since_arrival: Duration,
    },
    /// The tier's overall health changed.
    HealthChanged {
        tier: String,
        revision: Revision,
        from: Health,
        to: Health,
    },
    RolledBack {
        tier: String,
        from: Revision,
        to: Revision,
        reason: String,
    },
    /// A promotion gate or change window holds a revision back.
    PromotionBlocked {
        tier: String,
        revision: Revision,
        reason: String,
        /// Which hold: notifications tell a gate that stays closed from a window that is
        /// simply closed.
        kind: HoldKind,
    },
    /// The prune guard refused to delete what left git (`prune.maxDeletePercent`, an empty
    /// desired set): reported when a revision's refusal first appears, not on every sync.
    PruneRefused {
        tier: String,
        revision: Revision,
        /// How many objects left git and are kept.
        objects: usize,
        /// Why, and the fix.
        reason: String,
    },
    /// The ref a tier follows moved to a commit that does not descend from the one before
    /// (a force-push): followed anyway, and told to everyone watching, since what it drops
    /// from the cluster was never reviewed as a removal.
    HistoryRewritten {
        tier: String,
        git_ref: String,
        from: Revision,
        to: Revision,
    },
    /// The push webhook answered a delivery (`POST /webhook/git`, with a secret configured).
    WebhookDelivery { result: WebhookResult },
    /// Someone asked for a sync through the API.
    ManualSync {
        tier: String,
        /// Who asked: the remote address, and the `X-Gitopsd-User` header if sent (what the
        /// caller says of itself: informational, not verified).
        who: String,
        /// The caller asked to override a closed change window (`?overrideWindow=true`).
        override_window: bool,
    },
}

impl Activity {
    /// The tier it concerns (`None` for the source's own activity).
    pub fn tier(&self) -> Option<&str> {
        match self {
            Activity::Fetched { .. } | Activity::WebhookDelivery { .. } => None,
            Activity::SyncFinished { tier, .. }
            | Activity::ObjectApplied { tier, .. }
            | Activity::DriftFound { tier, .. }
            | Activity::RevisionApplied { tier, .. }
            | Activity::RevisionHealthy { tier, .. }
            | Activity::HealthChanged { tier, .. }
            | Activity::RolledBack { tier, .. }
            | Activity::PromotionBlocked { tier, .. }
            | Activity::PruneRefused { tier, .. }
            | Activity::HistoryRewritten { tier, .. }
            | Activity::ManualSync { tier, .. } => Some(tier),
        }
    }
}

/// How a push webhook delivery ended; `label()` is the `result` label of
/// `gitopsd_webhook_requests_total`. Here rather than in `http`, so that observers (metrics)
/// count deliveries without importing the HTTP side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    /// A push to a followed ref: a fetch was started.
    Accepted,
    /// Authentic, but nothing to do: another ref, a ping, another event.
    Ignored,
    /// Authentic, and already received within the replay window: nothing done.
    Duplicate,
    /// A missing or wrong signature or token.
    Unauthorized,
    /// Authentic, but over the shared rate limit.
    RateLimited,
    /// Not a GitHub or GitLab delivery, too large, or a body that is not a push's JSON.
    BadRequest,
}

impl WebhookResult {
    pub const ALL: [WebhookResult; 6] = [
        WebhookResult::Accepted,
        WebhookResult::Ignored,
        WebhookResult::Duplicate,
        WebhookResult::Unauthorized,
        WebhookResult::RateLimited,
        WebhookResult::BadRequest,
    ];

    pub fn label(self) -> &'static str {
        match self {
            WebhookResult::Accepted => "accepted",
            WebhookResult::Ignored => "ignored",
            WebhookResult::Duplicate => "duplicate",
            WebhookResult::Unauthorized => "unauthorized",
            WebhookResult::RateLimited => "rate_limited",
            WebhookResult::BadRequest => "bad_request",
        }
    }
}

/// Records activity somewhere.
pub trait Observer: Send + Sync {
    fn observe(&self, activity: &Activity);
}

/// Every observer of a daemon; cheap to clone, empty by default (tests, one-shot commands).
#[derive(Clone, Default)]
pub struct Observers(Arc<Vec<Arc<dyn Observer>>>);

impl Observers {
    pub fn new(observers: Vec<Arc<dyn Observer>>) -> Observers {
        Observers(Arc::new(observers))
    }

    /// These observers and one more.
    pub fn with(&self, extra: Arc<dyn Observer>) -> Observers {
        let mut all: Vec<Arc<dyn Observer>> = self.0.iter().cloned().collect();
        all.push(extra);
        Observers::new(all)
    }

    pub fn emit(&self, activity: Activity) {
        for o in self.0.iter() {
            o.observe(&activity);
        }
    }
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Observers({})", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl Observer for Seen {
        fn observe(&self, activity: &Activity) {
            if let Ok(mut s) = self.0.lock() {
                s.push(activity.tier().unwrap_or("-").to_owned());
            }
        }
    }

    #[test]
    fn every_observer_sees_every_activity_in_order() {
        let a = Arc::new(Seen::default());
        let b = Arc::new(Seen::default());
        let observers = Observers::new(vec![a.clone(), b.clone()]);
        observers.emit(Activity::ManualSync {
            tier: "validation".into(),
            who: "ci".into(),
            override_window: false,
        });
        observers.emit(Activity::Fetched {
            duration: Duration::from_millis(5),
            error: None,
        });
        for seen in [&a, &b] {
            assert_eq!(*seen.0.lock().unwrap(), vec!["validation", "-"]);
        }
    }
}
