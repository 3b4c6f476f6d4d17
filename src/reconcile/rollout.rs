//! Rollout: a revision applied and not yet healthy, and when it must be.
//!
//! The deadline runs on the monotonic clock while one reconciler follows the rollout (a step of
//! the wall clock does not move it); its start is also kept, by the wall clock, in the tier
//! state ([`RolloutRecord`]), so a restart or a change of leader resumes the deadline instead
//! of starting it again (issue 15 bug b: a daemon restarting more often than
//! `rollback.healthTimeout` never rolled back).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::state::RolloutRecord;

/// A revision applied and not yet healthy: when it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rollout {
    pub revision: String,
    pub started: Instant,
    pub deadline: Instant,
}

/// The rollout of `revision` as a reconciler that did not follow it so far takes it up (pure):
/// resumed from `persisted` when that records the same revision, else started `now`. Returns
/// the rollout and the record the tier state must hold for it (the persisted one when resumed).
///
/// A persisted start in the future (the wall clock stepped back since) counts as `now`: the
/// deadline is never shortened by a clock step backwards; a step forwards between two daemons
/// can shorten it, which the monotonic clock cannot help across processes.
pub(super) fn take_up(
    persisted: Option<&RolloutRecord>,
    revision: &str,
    timeout: Duration,
    wall_now: DateTime<Utc>,
    now: Instant,
) -> (Rollout, RolloutRecord) {
    let record = match persisted {
        Some(r) if r.revision == revision => r.clone(),
        _ => RolloutRecord {
            revision: revision.to_owned(),
            started_at: wall_now,
        },
    };
    let elapsed = (wall_now - record.started_at)
        .to_std()
        .unwrap_or(Duration::ZERO);
    let rollout = Rollout {
        revision: revision.to_owned(),
        started: now.checked_sub(elapsed).unwrap_or(now),
        deadline: now + timeout.saturating_sub(elapsed),
    };
    (rollout, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time")
    }

    fn record(revision: &str, started: i64) -> RolloutRecord {
        RolloutRecord {
            revision: revision.to_owned(),
            started_at: at(started),
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(60);

    #[test]
    fn a_new_rollout_starts_now_and_is_recorded() {
        let now = Instant::now();
        let (r, rec) = take_up(None, "b", TIMEOUT, at(100), now);
        assert_eq!(r.deadline, now + TIMEOUT);
        assert_eq!(r.started, now);
        assert_eq!(rec, record("b", 100));
    }

    #[test]
    fn a_recorded_rollout_resumes_its_deadline_after_a_restart() {
        let now = Instant::now();
        let (r, rec) = take_up(Some(&record("b", 50)), "b", TIMEOUT, at(100), now);
        assert_eq!(r.deadline, now + Duration::from_secs(10));
        assert_eq!(rec, record("b", 50), "the first start is kept");
        // Past it: the deadline is now, and the reconcile rolls back.
        let (r, _) = take_up(Some(&record("b", 0)), "b", TIMEOUT, at(100), now);
        assert_eq!(r.deadline, now);
    }

    #[test]
    fn the_record_of_another_revision_starts_over() {
        let now = Instant::now();
        let (r, rec) = take_up(Some(&record("a", 0)), "b", TIMEOUT, at(100), now);
        assert_eq!(r.deadline, now + TIMEOUT);
        assert_eq!(rec, record("b", 100));
    }

    #[test]
    fn a_start_in_the_future_counts_as_now() {
        let now = Instant::now();
        let (r, rec) = take_up(Some(&record("b", 500)), "b", TIMEOUT, at(100), now);
        assert_eq!(r.deadline, now + TIMEOUT);
        assert_eq!(rec, record("b", 500));
    }
}
