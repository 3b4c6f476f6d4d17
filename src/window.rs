//! Change windows: whether a tier may deploy now. A window opens at each firing of its cron
//! schedule, in its timezone, and stays open for its duration. Pure functions of the
//! configured windows and a time, so they are tested without a clock.
//!
//! A tier with no windows is always open; with any `allow` window it is open only inside one;
//! inside a `deny` window it is closed, whatever the allow windows say.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::config::{ChangeWindow, WindowKind};

/// Whether changes may land at `now`.
pub fn window_open(windows: &[ChangeWindow], now: DateTime<Utc>) -> bool {
    let denied = windows
        .iter()
        .any(|w| w.kind == WindowKind::Deny && is_open(w, now));
    let mut allows = windows
        .iter()
        .filter(|w| w.kind == WindowKind::Allow)
        .peekable();
    let allowed = allows.peek().is_none() || allows.any(|w| is_open(w, now));
    !denied && allowed
}

/// Whether a tier's windows let changes in now, and when that next changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowState {
    pub open: bool,
    /// When the tier next opens (while closed) or closes (while open); `None` when no firing
    /// in the coming year changes it (no windows, say).
    pub next_change: Option<DateTime<Utc>>,
}

/// Firings looked at per window to find the next change.
const LOOKAHEAD_FIRINGS: usize = 64;

/// [`window_open`] at `now`, with the next time the answer changes.
pub fn window_state(windows: &[ChangeWindow], now: DateTime<Utc>) -> WindowState {
    let open = window_open(windows, now);
    // The answer can only change where a window starts or ends: try those instants in order.
    let mut candidates: Vec<DateTime<Utc>> = Vec::new();
    for w in windows {
        let Ok(d) = TimeDelta::from_std(w.duration) else {
            continue;
        };
        let Some(from) = now.checked_sub_signed(d) else {
            continue;
        };
        let from = from.with_timezone(&w.timezone.0);
        for start in w.schedule.firings_after(from).take(LOOKAHEAD_FIRINGS) {
            let start = start.with_timezone(&Utc);
            if start > now {
                candidates.push(start);
            }
            if let Some(end) = start.checked_add_signed(d)
                && end > now
            {
                candidates.push(end);
            }
        }
    }
    candidates.sort();
    candidates.dedup();
    let horizon = now + TimeDelta::days(366);
    let next_change = candidates
        .into_iter()
        .take_while(|t| *t <= horizon)
        .find(|t| window_open(windows, *t) != open);
    WindowState { open, next_change }
}

/// Open when the schedule fired in `(now - duration, now]`: the window is `[firing,
/// firing + duration)`.
fn is_open(w: &ChangeWindow, now: DateTime<Utc>) -> bool {
    // A duration beyond what chrono can represent never closes.
    let Some(from) = TimeDelta::from_std(w.duration)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
    else {
        return true;
    };
    // The schedule is read in the window's timezone, so "0 8 * * 1-5" in Europe/Berlin is 08:00
    // Berlin time, summer and winter. `firings_after` yields firings strictly after `from`.
    let from = from.with_timezone(&w.timezone.0);
    w.schedule
        .firings_after(from)
        .next()
        .is_some_and(|start| start.with_timezone(&Utc) <= now)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;
    use crate::config::Timezone;

    fn window(schedule: &str, minutes: u64, tz: chrono_tz::Tz) -> ChangeWindow {
        ChangeWindow {
            kind: WindowKind::Allow,
            schedule: schedule.parse().expect("a valid schedule"),
            duration: Duration::from_secs(minutes * 60),
            timezone: Timezone(tz),
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn a_tier_without_windows_is_always_open() {
        assert!(window_open(&[], utc(2026, 1, 1, 3, 0, 0)));
    }

    #[test]
    fn a_window_is_open_from_its_firing_until_its_duration_has_passed() {
        // Weekdays 08:00 UTC for 2 hours; 2026-11-23 is a Monday.
        let w = [window("0 8 * * 1-5", 120, chrono_tz::UTC)];
        assert!(!window_open(&w, utc(2026, 11, 23, 7, 59, 59)));
        assert!(window_open(&w, utc(2026, 11, 23, 8, 0, 0)));
        assert!(window_open(&w, utc(2026, 11, 23, 9, 59, 59)));
        assert!(!window_open(&w, utc(2026, 11, 23, 10, 0, 0)));
        // Friday it fires, Saturday and Sunday it does not.
        assert!(window_open(&w, utc(2026, 11, 27, 8, 30, 0)));
        assert!(!window_open(&w, utc(2026, 11, 28, 8, 30, 0)));
        assert!(!window_open(&w, utc(2026, 11, 29, 8, 30, 0)));
    }

    #[test]
    fn a_schedule_fires_in_its_timezone_across_daylight_saving() {
        // 08:00 in Berlin is 07:00 UTC in winter and 06:00 UTC in summer.
        let w = [window("0 8 * * *", 60, chrono_tz::Europe::Berlin)];
        assert!(window_open(&w, utc(2026, 1, 15, 7, 30, 0)));
        assert!(!window_open(&w, utc(2026, 1, 15, 6, 30, 0)));
        assert!(window_open(&w, utc(2026, 7, 15, 6, 30, 0)));
        assert!(!window_open(&w, utc(2026, 7, 15, 7, 30, 0)));
    }

    #[test]
    fn a_window_that_spans_midnight_is_open_after_it() {
        // Fridays 22:00 for 10 hours (2026-11-27 is a Friday): still open early on Saturday.
        let w = [window("0 22 * * 5", 600, chrono_tz::UTC)];
        assert!(!window_open(&w, utc(2026, 11, 27, 21, 59, 0)));
        assert!(window_open(&w, utc(2026, 11, 27, 23, 0, 0)));
        assert!(window_open(&w, utc(2026, 11, 28, 7, 59, 0)));
        assert!(!window_open(&w, utc(2026, 11, 28, 8, 0, 0)));
    }

    #[test]
    fn any_open_window_of_several_opens_the_tier() {
        let w = [
            window("0 8 * * *", 60, chrono_tz::UTC),
            window("0 20 * * *", 60, chrono_tz::UTC),
        ];
        assert!(window_open(&w, utc(2026, 11, 23, 20, 15, 0)));
        assert!(!window_open(&w, utc(2026, 11, 23, 12, 0, 0)));
    }

    fn deny(schedule: &str, minutes: u64, tz: chrono_tz::Tz) -> ChangeWindow {
        ChangeWindow {
            kind: WindowKind::Deny,
            ..window(schedule, minutes, tz)
        }
    }

    #[test]
    fn a_deny_window_alone_closes_only_while_it_is_open() {
        // Fridays from 16:00 for 64 hours: no deploys over the weekend (2026-11-27 is a Friday).
        let w = [deny("0 16 * * 5", 64 * 60, chrono_tz::UTC)];
        assert!(window_open(&w, utc(2026, 11, 27, 15, 59, 0)));
        assert!(!window_open(&w, utc(2026, 11, 27, 16, 0, 0)));
        assert!(!window_open(&w, utc(2026, 11, 29, 23, 59, 0)));
        assert!(window_open(&w, utc(2026, 11, 30, 8, 0, 0)));
    }

    #[test]
    fn deny_beats_allow() {
        // Allowed weekdays 08:00-18:00, denied 12:00-13:00.
        let w = [
            window("0 8 * * 1-5", 600, chrono_tz::UTC),
            deny("0 12 * * *", 60, chrono_tz::UTC),
        ];
        assert!(window_open(&w, utc(2026, 11, 23, 11, 59, 0)));
        assert!(!window_open(&w, utc(2026, 11, 23, 12, 30, 0)));
        assert!(window_open(&w, utc(2026, 11, 23, 13, 0, 0)));
        assert!(!window_open(&w, utc(2026, 11, 23, 18, 0, 0)));
    }

    #[test]
    fn the_state_names_when_the_window_next_opens_and_closes() {
        let w = [
            window("0 8 * * 1-5", 600, chrono_tz::UTC),
            deny("0 12 * * *", 60, chrono_tz::UTC),
        ];
        // Monday 07:00: closed, opens at 08:00.
        let s = window_state(&w, utc(2026, 11, 23, 7, 0, 0));
        assert!(!s.open);
        assert_eq!(s.next_change, Some(utc(2026, 11, 23, 8, 0, 0)));
        // 09:00: open, closes at the deny window's 12:00.
        let s = window_state(&w, utc(2026, 11, 23, 9, 0, 0));
        assert!(s.open);
        assert_eq!(s.next_change, Some(utc(2026, 11, 23, 12, 0, 0)));
        // 12:30: closed by the deny window, open again at 13:00.
        let s = window_state(&w, utc(2026, 11, 23, 12, 30, 0));
        assert_eq!(s.next_change, Some(utc(2026, 11, 23, 13, 0, 0)));
        // Friday 19:00: closed until Monday 08:00.
        let s = window_state(&w, utc(2026, 11, 27, 19, 0, 0));
        assert!(!s.open);
        assert_eq!(s.next_change, Some(utc(2026, 11, 30, 8, 0, 0)));
        // No windows: open, and it never changes.
        assert_eq!(
            window_state(&[], utc(2026, 11, 23, 9, 0, 0)),
            WindowState {
                open: true,
                next_change: None
            }
        );
    }

    #[test]
    fn a_schedule_restricting_both_days_fires_when_either_matches_as_in_standard_cron() {
        // "0 9 1 * MON": 09:00 on the 1st of the month AND on every Monday (standard cron),
        // not only on a Monday that is the 1st.
        let w = [window("0 9 1 * MON", 60, chrono_tz::UTC)];
        // 2026-11-23 is a Monday, not the 1st.
        assert!(window_open(&w, utc(2026, 11, 23, 9, 30, 0)));
        // 2026-12-01 is a Tuesday, the 1st.
        assert!(window_open(&w, utc(2026, 12, 1, 9, 30, 0)));
        // 2026-11-24 is neither.
        assert!(!window_open(&w, utc(2026, 11, 24, 9, 30, 0)));
        // From Tuesday the 24th the next opening is Monday the 30th, then Tuesday the 1st.
        let s = window_state(&w, utc(2026, 11, 24, 12, 0, 0));
        assert_eq!(s.next_change, Some(utc(2026, 11, 30, 9, 0, 0)));
        let s = window_state(&w, utc(2026, 11, 30, 12, 0, 0));
        assert_eq!(s.next_change, Some(utc(2026, 12, 1, 9, 0, 0)));
    }

    #[test]
    fn berlin_windows_open_at_the_local_hour_on_both_sides_of_the_daylight_saving_changes() {
        // Daily 09:00-10:00 in Berlin. Summer time starts Sunday 2026-03-29 (02:00 CET ->
        // 03:00 CEST) and ends Sunday 2026-10-25 (03:00 CEST -> 02:00 CET).
        let w = [window("0 9 * * *", 60, chrono_tz::Europe::Berlin)];
        // Saturday before the spring change: 09:00 CET = 08:00 UTC.
        assert!(window_open(&w, utc(2026, 3, 28, 8, 0, 0)));
        assert!(!window_open(&w, utc(2026, 3, 28, 7, 59, 0)));
        // The Sunday of the change itself and the Monday after: 09:00 CEST = 07:00 UTC.
        for day in [29, 30] {
            assert!(!window_open(&w, utc(2026, 3, day, 6, 59, 0)), "{day}");
            assert!(window_open(&w, utc(2026, 3, day, 7, 0, 0)), "{day}");
            assert!(window_open(&w, utc(2026, 3, day, 7, 59, 0)), "{day}");
            assert!(!window_open(&w, utc(2026, 3, day, 8, 0, 0)), "{day}");
        }
        // Saturday before the autumn change: still CEST, 07:00 UTC; the Sunday of the change
        // and after: CET again, 08:00 UTC.
        assert!(window_open(&w, utc(2026, 10, 24, 7, 0, 0)));
        for day in [25, 26] {
            assert!(!window_open(&w, utc(2026, 10, day, 7, 30, 0)), "{day}");
            assert!(window_open(&w, utc(2026, 10, day, 8, 0, 0)), "{day}");
        }
        // The next opening seen from the Saturday evening before spring: Sunday 07:00 UTC.
        let s = window_state(&w, utc(2026, 3, 28, 20, 0, 0));
        assert_eq!(s.next_change, Some(utc(2026, 3, 29, 7, 0, 0)));
        // A window inside the hour that the spring change skips (02:30 does not exist on
        // 2026-03-29) and one that the autumn change repeats (02:30 happens twice on
        // 2026-10-25): neither fires twice nor makes the tier open for a day.
        let w = [window("30 2 * * *", 30, chrono_tz::Europe::Berlin)];
        assert!(!window_open(&w, utc(2026, 3, 29, 12, 0, 0)));
        assert!(!window_open(&w, utc(2026, 10, 25, 12, 0, 0)));
    }
}
