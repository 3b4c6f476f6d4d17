//! Retry delays after a failed fetch: exponential from 1 s up to 5 min, with jitter so that many
//! daemons behind one git server do not retry in step.

use std::time::Duration;

pub const MIN_DELAY: Duration = Duration::from_secs(1);
pub const MAX_DELAY: Duration = Duration::from_secs(5 * 60);

/// Retry delays; pure apart from the random source, which the caller may inject.
pub struct Backoff {
    attempt: u32,
    min: Duration,
    max: Duration,
    random: Box<dyn FnMut() -> f64 + Send>,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff")
            .field("attempt", &self.attempt)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(MIN_DELAY, MAX_DELAY, fastrand::f64)
    }
}

impl Backoff {
    /// `random` returns a number in `[0, 1)`.
    pub fn new(min: Duration, max: Duration, random: impl FnMut() -> f64 + Send + 'static) -> Self {
        Backoff {
            attempt: 0,
            min,
            max: max.max(min),
            random: Box::new(random),
        }
    }

    /// The delay before the next retry; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let r = (self.random)();
        let d = delay(self.min, self.max, self.attempt, r);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// After a success the next failure starts again from the minimum.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// "Equal jitter": half the exponential step is fixed, half random, so the delay still grows
/// (unlike full jitter, which may retry at once) and never leaves `[min, max]`. Not backon's
/// `with_jitter`: it adds up to a whole step after the cap (`[d, 2d)`), so 5 min could be 10.
pub fn delay(min: Duration, max: Duration, attempt: u32, random: f64) -> Duration {
    let r = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // 2^attempt overflows quickly; past 2^30 the cap has long been reached.
    let step = min.saturating_mul(1u32 << attempt.min(30)).min(max);
    let half = step / 2;
    (half + half.mul_f64(r)).clamp(min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_between_one_second_and_five_minutes_for_any_attempt_and_random() {
        for attempt in [0, 1, 2, 5, 8, 9, 10, 31, 32, 1000, u32::MAX] {
            for r in [0.0, 0.25, 0.5, 0.999_999, 1.0, -3.0, 7.0, f64::NAN] {
                let d = delay(MIN_DELAY, MAX_DELAY, attempt, r);
                assert!(
                    (MIN_DELAY..=MAX_DELAY).contains(&d),
                    "attempt {attempt}, random {r}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn delays_grow_exponentially_until_the_cap() {
        let highs: Vec<u64> = (0..12)
            .map(|a| delay(MIN_DELAY, MAX_DELAY, a, 1.0).as_secs())
            .collect();
        assert_eq!(highs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        // The random half: with random 0 the delay is half the step (but never under 1 s).
        assert_eq!(delay(MIN_DELAY, MAX_DELAY, 4, 0.0), Duration::from_secs(8));
        assert_eq!(delay(MIN_DELAY, MAX_DELAY, 0, 0.0), MIN_DELAY);
        assert_eq!(delay(MIN_DELAY, MAX_DELAY, 20, 0.0), MAX_DELAY / 2);
    }

    #[test]
    fn jitter_comes_from_the_injected_random_source_and_reset_starts_over() {
        let mut values = [0.0, 1.0, 0.5].into_iter().cycle();
        let mut b = Backoff::new(MIN_DELAY, MAX_DELAY, move || values.next().unwrap_or(0.0));
        assert_eq!(b.next_delay(), Duration::from_secs(1)); // step 1 s, random 0
        assert_eq!(b.next_delay(), Duration::from_secs(2)); // step 2 s, random 1
        assert_eq!(b.next_delay(), Duration::from_secs(3)); // step 4 s, random 0.5
        assert_eq!(b.attempt(), 3);
        b.reset();
        assert_eq!(b.attempt(), 0);
        // After the reset the cycle gives random 0 again at attempt 0.
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
