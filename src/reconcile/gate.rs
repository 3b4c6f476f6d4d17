//! Why a revision may not be deployed yet: the promotion gate (`promoteFrom`, `soak`, `gate`),
//! and the change windows. Pure decisions over evidence the reconcile gathers, so they are
//! tested without a cluster or a clock.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::{PromotionGate, TierConfig};
use crate::revision::Revision;
use crate::state::HealthyRecord;
use crate::window::WindowState;

/// A clock: the reconcile asks it for "now" (windows, soak); tests set it.
pub type Clock = std::sync::Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    std::sync::Arc::new(Utc::now)
}

pub use crate::hold::HoldKind;

/// What holds a revision back, and what would let it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub kind: HoldKind,
    pub message: String,
    /// When the hold lifts by itself (a soak ends, a window opens): the reconcile wakes then
    /// instead of at its next interval. `None`: something else must happen first.
    pub opens_at: Option<DateTime<Utc>>,
}

/// The promotion gate of `tier` for `revision`, given what `promoteFrom` recorded healthy
/// (from its state in the cluster, or its healthy refs in git). `base_digest` is the digest
/// of the revision's `base/` files (for `gate: baseDigest`). `None`: the gate is open.
pub fn promotion_gate(
    tier: &TierConfig,
    revision: &Revision,
    base_digest: Option<&str>,
    evidence: &[HealthyRecord],
    now: DateTime<Utc>,
) -> Option<Hold> {
    let from = tier.promote_from.as_deref()?;
    let exact = evidence.iter().find(|h| h.revision == *revision);
    let same_base = || {
        let base = base_digest?;
        evidence
            .iter()
            .filter(|h| h.base_digest.as_deref() == Some(base))
            .min_by_key(|h| h.since)
    };
    let record = match tier.gate {
        PromotionGate::Revision => exact,
        PromotionGate::BaseDigest => exact.or_else(same_base),
    };
    let Some(record) = record else {
        let what = match tier.gate {
            PromotionGate::Revision => format!("revision {}", revision.short()),
            PromotionGate::BaseDigest => {
                format!("revision {} (or one with the same base)", revision.short())
            }
        };
        return Some(Hold {
            kind: HoldKind::PromotionGate,
            message: format!(
                "promotion gate closed: tier {from} has not recorded {what} healthy; it opens once {from} is healthy at it{}",
                tier.soak
                    .map(|s| format!(" for {}", humantime::format_duration(s)))
                    .unwrap_or_default()
            ),
            opens_at: None,
        });
    };
    let soak = tier.soak?;
    let healthy_for = now.signed_duration_since(record.since);
    let needed = TimeDelta::from_std(soak).unwrap_or(TimeDelta::MAX);
    if healthy_for >= needed {
        return None;
    }
    let opens = record.since.checked_add_signed(needed);
    let for_ = Duration::from_secs(healthy_for.num_seconds().max(0) as u64);
    Some(Hold {
        kind: HoldKind::Soak,
        message: format!(
            "promotion gate closed: tier {from} is healthy at {} for {} of the {} soak; it opens at {}",
            record.revision.short(),
            humantime::format_duration(for_),
            humantime::format_duration(soak),
            opens
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "never".into())
        ),
        opens_at: opens,
    })
}

/// The change windows' hold on a new revision. `None` when open.
pub fn window_hold(window: &WindowState) -> Option<Hold> {
    if window.open {
        return None;
    }
    Some(Hold {
        kind: HoldKind::Window,
        message: format!(
            "change window closed: the revision waits until {}",
            window
                .next_change
                .map(|t| format!("the window opens at {}", t.to_rfc3339()))
                .unwrap_or_else(|| "a window opens (none is scheduled within a year)".into())
        ),
        opens_at: window.next_change,
    })
}

/// sha256 over the files under `root/base` (their paths relative to it and their contents,
/// in path order): two revisions with the same digest have the same base. `None` without a
/// `base/` directory.
pub fn base_digest(root: &std::path::Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    let base = root.join("base");
    let mut files = Vec::new();
    let mut dirs = vec![base.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(path),
                Ok(t) if t.is_file() => files.push(path),
                _ => {}
            }
        }
    }
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        let rel = f.strip_prefix(&base).ok()?.to_string_lossy().into_owned();
        let bytes = std::fs::read(&f).ok()?;
        h.update(rel.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    Some(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(yaml: &str) -> TierConfig {
        serde_yaml::from_str(&format!(
            "{{name: validation, ref: v, namespaces: [v], promoteFrom: experimental, {yaml}}}"
        ))
        .expect("tier")
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).expect("time")
    }

    fn record(rev: &str, since: i64, base: Option<&str>) -> HealthyRecord {
        HealthyRecord {
            revision: rev.into(),
            since: at(since),
            base_digest: base.map(str::to_owned),
        }
    }

    #[test]
    fn a_tier_without_promote_from_has_no_gate() {
        let t: TierConfig = serde_yaml::from_str("{name: e, ref: main, namespaces: [e]}").unwrap();
        assert_eq!(promotion_gate(&t, &"abc".into(), None, &[], at(0)), None);
    }

    #[test]
    fn the_gate_opens_only_for_the_revision_recorded_healthy() {
        let t = tier("");
        let hold = promotion_gate(&t, &"bbbb".into(), None, &[record("aaaa", 0, None)], at(10))
            .expect("closed");
        assert_eq!(hold.kind, HoldKind::PromotionGate);
        assert_eq!(
            hold.message,
            "promotion gate closed: tier experimental has not recorded revision bbbb healthy; it opens once experimental is healthy at it"
        );
        assert_eq!(
            promotion_gate(&t, &"aaaa".into(), None, &[record("aaaa", 0, None)], at(10)),
            None
        );
    }

    #[test]
    fn the_soak_counts_from_when_the_revision_became_healthy() {
        let t = tier("soak: 30m");
        let ev = [record("aaaa", 0, None)];
        let hold = promotion_gate(&t, &"aaaa".into(), None, &ev, at(600)).expect("still soaking");
        assert_eq!(hold.kind, HoldKind::Soak);
        assert!(
            hold.message
                .contains("healthy at aaaa for 10m of the 30m soak"),
            "{}",
            hold.message
        );
        assert!(
            hold.message.contains(&at(1800).to_rfc3339()),
            "{}",
            hold.message
        );
        assert_eq!(
            hold.opens_at,
            Some(at(1800)),
            "the tier wakes when the soak ends"
        );
        assert_eq!(
            promotion_gate(&t, &"aaaa".into(), None, &ev, at(1800)),
            None
        );
    }

    #[test]
    fn a_closed_window_holds_until_it_opens_and_an_open_one_does_not_hold() {
        let closed = WindowState {
            open: false,
            next_change: Some(at(3600)),
        };
        let hold = window_hold(&closed).expect("closed");
        assert_eq!(hold.kind, HoldKind::Window);
        assert_eq!(hold.opens_at, Some(at(3600)));
        let open = WindowState {
            open: true,
            next_change: Some(at(3600)),
        };
        assert_eq!(window_hold(&open), None);
    }

    #[test]
    fn an_unrecorded_revision_has_no_time_to_wake_for() {
        let hold = promotion_gate(&tier(""), &"bbbb".into(), None, &[], at(0)).expect("closed");
        assert_eq!(hold.opens_at, None);
    }

    #[test]
    fn a_base_digest_gate_takes_a_revision_with_the_same_base() {
        let t = tier("gate: baseDigest");
        let ev = [record("aaaa", 0, Some("b1"))];
        assert_eq!(
            promotion_gate(&t, &"cccc".into(), Some("b1"), &ev, at(5)),
            None
        );
        assert!(promotion_gate(&t, &"cccc".into(), Some("b2"), &ev, at(5)).is_some());
        assert!(promotion_gate(&t, &"cccc".into(), None, &ev, at(5)).is_some());
        // The revision gate does not.
        let t = tier("");
        assert!(promotion_gate(&t, &"cccc".into(), Some("b1"), &ev, at(5)).is_some());
    }
}
