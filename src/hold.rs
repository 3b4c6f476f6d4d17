//! What holds a revision back, as a closed set: a leaf module, so the status (which shows it)
//! and the reconcile (which decides it, `reconcile::gate`) both read it without importing
//! each other (the cycle {activity, reconcile, status}).

/// What kind of hold: one per reason, so a revision's block is reported once per kind; the
/// status's `heldBy` and the `held_by` label of `gitopsd_promotion_blocked` (alerts tell a gate
/// that stays closed from a change window that is simply closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HoldKind {
    /// `promoteFrom` has not recorded the revision healthy.
    PromotionGate,
    /// It has, but not for the `soak` time yet (lifts by itself).
    Soak,
    /// A commit in the range has no good signature.
    Signature,
    /// The change windows are closed (lifts by itself when one opens).
    Window,
}

impl HoldKind {
    pub const ALL: [HoldKind; 4] = [
        HoldKind::PromotionGate,
        HoldKind::Soak,
        HoldKind::Signature,
        HoldKind::Window,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::PromotionGate => "promotion-gate",
            HoldKind::Soak => "soak",
            HoldKind::Signature => "signature",
            HoldKind::Window => "window",
        }
    }
}
