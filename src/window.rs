//! Change windows: whether a tier may deploy now. A window opens at each firing of its cron
//! schedule, in its timezone, and stays open for its duration. Pure functions of the
//! configured windows and a time, so they are tested without a clock.
//!
//! Today this feeds the metric `gitopsd_change_window_open`; issue 7 makes the reconcile obey
//! it and adds allow/deny windows.

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::ChangeWindow;

/// Whether `now` falls inside one of `windows`. A tier with no windows is always open.
pub fn window_open(windows: &[ChangeWindow], now: DateTime<Utc>) -> bool {
    windows.is_empty() || windows.iter().any(|w| is_open(w, now))
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
    // Berlin time, summer and winter. `after` yields firings strictly after `from`.
    let from = from.with_timezone(&w.timezone.0);
    w.schedule
        .schedule
        .after(&from)
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
}
