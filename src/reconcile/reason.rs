//! What started a reconcile: a closed set, written as before (`revision`, `trigger`,
//! `interval`, `deadline`, `live-change`) in the sync record, the audit log, Events and logs.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReconcileReason {
    /// A new commit of the tier's ref.
    Revision,
    /// A manual sync or a webhook.
    Trigger,
    /// The poll interval passed.
    Interval,
    /// A health deadline, a rollback to apply, or a hold that lifts by itself.
    Deadline,
    /// A watched live object changed.
    LiveChange,
}

impl ReconcileReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileReason::Revision => "revision",
            ReconcileReason::Trigger => "trigger",
            ReconcileReason::Interval => "interval",
            ReconcileReason::Deadline => "deadline",
            ReconcileReason::LiveChange => "live-change",
        }
    }

    /// Whether a reconcile for this reason is history even when it changed nothing: someone
    /// or something asked for it (a commit, a person, a deadline), unlike a watch event or
    /// the interval.
    pub fn always_notable(self) -> bool {
        matches!(
            self,
            ReconcileReason::Revision | ReconcileReason::Trigger | ReconcileReason::Deadline
        )
    }
}

impl fmt::Display for ReconcileReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_written_as_before() {
        let all = [
            ReconcileReason::Revision,
            ReconcileReason::Trigger,
            ReconcileReason::Interval,
            ReconcileReason::Deadline,
            ReconcileReason::LiveChange,
        ];
        let text: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            ["revision", "trigger", "interval", "deadline", "live-change"]
        );
        let notable: Vec<bool> = all.iter().map(|r| r.always_notable()).collect();
        assert_eq!(notable, [true, true, false, true, false]);
    }
}
