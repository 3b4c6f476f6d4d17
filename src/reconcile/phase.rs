//! Where the newest revision offered to a tier stands when intake did not take it: one value
//! instead of three `Option`s that were exclusive in fact (a revision pending while the state
//! was unreadable, one held back, one refused for kinds of unknown scope), and a pure transition
//! function, tested the way kube-runtime tests its watcher's `step`.
//!
//! The rollout of the revision taken (`rollout.rs`) is not part of it: a newer revision can be
//! held while the one taken before rolls out.

use super::gate::{Hold, HoldKind};
use crate::revision::Revision;

/// What the next reconcile offers again, and why.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TierPhase {
    /// Nothing waits: the newest revision was taken, or rejected until git moves.
    Settled,
    /// The tier state could not be read: nothing is applied; the revision is offered again.
    StateUnread { revision: Revision },
    /// Held back by a promotion gate, a soak, a signature or a change window: re-checked on
    /// every reconcile while the set deployed before keeps being reconciled.
    Held { revision: Revision, hold: Hold },
    /// Refused for kinds of unknown scope, judged by discovery generation `generation`: offered
    /// again once discovery answers differently (its CRD installed since), not every time.
    UnknownKinds { revision: Revision, generation: u64 },
}

/// What intake found out about an offered revision.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum PhaseEvent {
    StateUnreadable {
        revision: Revision,
    },
    HeldBack {
        revision: Revision,
        hold: Hold,
    },
    /// The revision passed the holds: it is rendered and validated next.
    Passed,
    /// The next reconcile offers the waiting revision again: one pending on an unreadable
    /// state is consumed (an unreadable state puts it back); the others wait until they pass.
    OfferedAgain,
    RejectedForUnknownKinds {
        revision: Revision,
        generation: u64,
    },
}

/// How the next reconcile treats the revision waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Offer it again.
    Always,
    /// Offer it again if discovery's generation moved past this one.
    IfDiscoveryChanged(u64),
}

/// The phase after `event` (pure). The newest fact wins: a revision offered again replaces
/// whatever waited before it.
pub(super) fn step(phase: TierPhase, event: PhaseEvent) -> TierPhase {
    match event {
        PhaseEvent::OfferedAgain => match phase {
            TierPhase::StateUnread { .. } => TierPhase::Settled,
            other => other,
        },
        PhaseEvent::StateUnreadable { revision } => TierPhase::StateUnread { revision },
        PhaseEvent::HeldBack { revision, hold } => TierPhase::Held { revision, hold },
        PhaseEvent::Passed => TierPhase::Settled,
        PhaseEvent::RejectedForUnknownKinds {
            revision,
            generation,
        } => TierPhase::UnknownKinds {
            revision,
            generation,
        },
    }
}

impl TierPhase {
    /// The revision to offer again on the next reconcile, and on what condition.
    pub fn to_offer(&self) -> Option<(&Revision, Retry)> {
        match self {
            TierPhase::Settled => None,
            TierPhase::StateUnread { revision } | TierPhase::Held { revision, .. } => {
                Some((revision, Retry::Always))
            }
            TierPhase::UnknownKinds {
                revision,
                generation,
            } => Some((revision, Retry::IfDiscoveryChanged(*generation))),
        }
    }

    /// The revision held back, and why.
    pub fn held(&self) -> Option<(&Revision, &Hold)> {
        match self {
            TierPhase::Held { revision, hold } => Some((revision, hold)),
            _ => None,
        }
    }

    /// Whether a change window holds the newest revision.
    pub fn window_held(&self) -> bool {
        self.held().is_some_and(|(_, h)| h.kind == HoldKind::Window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(kind: HoldKind) -> Hold {
        Hold {
            kind,
            message: format!("{kind:?}"),
            opens_at: None,
        }
    }

    fn steps(events: Vec<PhaseEvent>) -> TierPhase {
        events.into_iter().fold(TierPhase::Settled, step)
    }

    #[test]
    fn an_unreadable_state_offers_the_revision_again() {
        let p = steps(vec![PhaseEvent::StateUnreadable {
            revision: "a".into(),
        }]);
        assert_eq!(
            p.to_offer().map(|(r, x)| (r.as_str(), x)),
            Some(("a", Retry::Always))
        );
        assert_eq!(p.held(), None);
        // Read on the next offer, and it passes: nothing waits.
        assert_eq!(step(p.clone(), PhaseEvent::Passed), TierPhase::Settled);
        // Offered again, it no longer waits (an unreadable state puts it back).
        assert_eq!(step(p, PhaseEvent::OfferedAgain), TierPhase::Settled);
    }

    #[test]
    fn a_held_revision_is_rechecked_until_it_passes() {
        let p = steps(vec![PhaseEvent::HeldBack {
            revision: "a".into(),
            hold: hold(HoldKind::Window),
        }]);
        assert_eq!(
            p.to_offer().map(|(r, x)| (r.as_str(), x)),
            Some(("a", Retry::Always))
        );
        assert!(p.window_held());
        let p = step(p, PhaseEvent::OfferedAgain);
        assert!(p.window_held(), "still held until it passes");
        let p = step(
            p,
            PhaseEvent::HeldBack {
                revision: "a".into(),
                hold: hold(HoldKind::PromotionGate),
            },
        );
        assert!(!p.window_held());
        assert_eq!(
            p.held().map(|(r, h)| (r.as_str(), h.kind)),
            Some(("a", HoldKind::PromotionGate))
        );
        assert_eq!(step(p, PhaseEvent::Passed).to_offer(), None);
    }

    #[test]
    fn unknown_kinds_wait_for_discovery_to_change() {
        let p = steps(vec![PhaseEvent::RejectedForUnknownKinds {
            revision: "a".into(),
            generation: 7,
        }]);
        assert_eq!(
            p.to_offer().map(|(r, x)| (r.as_str(), x)),
            Some(("a", Retry::IfDiscoveryChanged(7)))
        );
        assert_eq!(p.held(), None);
    }

    #[test]
    fn a_newer_revision_replaces_what_waited() {
        // Refused for unknown kinds, then a newer revision held: the held one is offered.
        let p = steps(vec![
            PhaseEvent::RejectedForUnknownKinds {
                revision: "a".into(),
                generation: 7,
            },
            PhaseEvent::HeldBack {
                revision: "b".into(),
                hold: hold(HoldKind::Signature),
            },
        ]);
        assert_eq!(
            p.to_offer().map(|(r, x)| (r.as_str(), x)),
            Some(("b", Retry::Always))
        );
        // It passes: neither waits any more.
        assert_eq!(step(p, PhaseEvent::Passed), TierPhase::Settled);
    }
}
