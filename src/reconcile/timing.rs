//! Where a sync's time goes: named laps, logged once per sync (issue 14 item 7 found the first
//! sync of a CRD-heavy repo slower than kubectl; these lines say which stage to look at).

use std::fmt;
use std::time::{Duration, Instant};

/// Consecutive laps of one sync, each named by the stage that ran in it.
pub(crate) struct Laps {
    started: Instant,
    last: Instant,
    laps: Vec<(&'static str, Duration)>,
}

impl Laps {
    pub(crate) fn start() -> Laps {
        let now = Instant::now();
        Laps {
            started: now,
            last: now,
            laps: Vec::new(),
        }
    }

    /// Ends the lap running since the last call, naming it `stage`.
    pub(crate) fn lap(&mut self, stage: &'static str) {
        let now = Instant::now();
        self.laps.push((stage, now - self.last));
        self.last = now;
    }

    pub(crate) fn total(&self) -> Duration {
        self.last - self.started
    }
}

/// `state-load 3ms, live-cache 120ms, ...`: laps under a millisecond are left out.
impl fmt::Display for Laps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (stage, d) in &self.laps {
            let ms = d.as_millis();
            if ms == 0 {
                continue;
            }
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{stage} {ms}ms")?;
        }
        if first {
            f.write_str("all under 1ms")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laps_name_their_stage_and_skip_the_instant_ones() {
        let mut l = Laps::start();
        l.laps.push(("render", Duration::from_millis(12)));
        l.laps.push(("state", Duration::from_micros(300)));
        l.laps.push(("apply", Duration::from_millis(1500)));
        assert_eq!(l.to_string(), "render 12ms, apply 1500ms");
        assert_eq!(Laps::start().to_string(), "all under 1ms");
    }
}
