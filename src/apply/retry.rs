//! Retries of transient API failures: exponential backoff with full jitter, so that many
//! objects failing at once (an API server restarting) do not retry in lockstep.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How often and how long to retry a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay's upper bound; doubled after each failure.
    pub base: Duration,
    /// The largest delay's upper bound.
    pub cap: Duration,
    /// Attempts in all, the first included.
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
            attempts: 5,
        }
    }
}

impl Backoff {
    /// The upper bound of the delay after failed attempt `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Full jitter: uniform in [0, ceiling].
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(fastrand::u64(0..=ceiling))
    }
}

/// The start of server-side apply's 500 for a manifest its schema does not take.
const NOT_TYPED: &str = "failed to create typed patch object";

/// Whether a failed request may succeed if sent again: throttling (429), the server's
/// transient failures (500, 502, 503, 504), and connection errors or timeouts.
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        // Server-side apply answers 500 when the manifest does not fit the kind's schema
        // (`failed to create typed patch object`): the same request fails the same way, so
        // it is not retried (four such objects cost 4 s of backoff per sync).
        kube::Error::Api(s) if s.code == 500 && s.message.contains(NOT_TYPED) => false,
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        // Connection refused or reset, TLS handshakes cut short, timeouts of the client's
        // service stack: the request may never have reached the server.
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Runs `op` until it succeeds, fails with an error `transient` rejects, or `policy.attempts`
/// attempts failed. A cancelled token stops further attempts (the request in flight finishes,
/// and no request is sent after the cancellation): the last error is returned.
///
/// A loop of our own, not `backon` (in the tree through kube-runtime): its `with_jitter` draws
/// from `[d, 2d)`, not full jitter's `[0, d]`, and it drops each error before it sleeps, so a
/// cancellation during the backoff could return the last error only through a side slot.
/// Tried on a branch (issue 15): twice the code for the same behaviour.
pub async fn retry<T, E, F, Fut>(
    policy: &Backoff,
    cancel: &CancellationToken,
    transient: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < policy.attempts.max(1) && transient(&e) => {
                let delay = policy.delay(attempt);
                debug!(attempt, ?delay, error = %e, "transient failure, retrying");
                // Biased: full jitter can draw a zero delay, ready at once like a cancelled
                // token; cancellation must win that tie every time.
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(e),
                    _ = tokio::time::sleep(delay) => {}
                }
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use kube::core::Status;

    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("boom", "").with_code(code).boxed())
    }

    #[test]
    fn transient_codes() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_transient(&api_error(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422, 501] {
            assert!(!is_transient(&api_error(code)), "{code}");
        }
    }

    #[test]
    fn a_manifest_the_schema_refuses_is_not_retried() {
        let e = kube::Error::Api(
            Status::failure(
                "failed to create typed patch object (kyverno/k; apps/v1, Kind=Deployment): .spec.template.spec.volumes[name=\"t\"].projected.defaultMode: expected numeric (int or float), got string",
                "",
            )
            .with_code(500)
            .boxed(),
        );
        assert!(!is_transient(&e));
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff::default();
        let ms: Vec<u128> = (1..=7).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(ms, [200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.ceiling(200), Duration::from_secs(5));
        for a in 1..10 {
            assert!(b.delay(a) <= b.ceiling(a));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_up_to_the_limit() {
        let calls = AtomicU32::new(0);
        let r: Result<(), kube::Error> = retry(
            &Backoff::default(),
            &CancellationToken::new(),
            is_transient,
            || {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Err(api_error(503)) }
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn succeeds_after_a_transient_error() {
        let calls = AtomicU32::new(0);
        let r = retry(
            &Backoff::default(),
            &CancellationToken::new(),
            is_transient,
            || {
                let n = calls.fetch_add(1, Ordering::Relaxed);
                async move { if n < 2 { Err(api_error(429)) } else { Ok(n) } }
            },
        )
        .await;
        assert_eq!(r.ok(), Some(2));
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_fail_at_once() {
        let calls = AtomicU32::new(0);
        let r: Result<(), kube::Error> = retry(
            &Backoff::default(),
            &CancellationToken::new(),
            is_transient,
            || {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Err(api_error(422)) }
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancellation_during_the_backoff_sends_no_further_request_and_returns_the_last_error()
    {
        // A seeded draw: full jitter may draw a zero delay, which would not give the canceller
        // a chance to run during the backoff.
        fastrand::seed(7);
        let calls = AtomicU32::new(0);
        let cancel = CancellationToken::new();
        let policy = Backoff {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(10),
            attempts: 5,
        };
        let canceller = cancel.clone();
        let r: Result<(), kube::Error> = retry(&policy, &cancel, is_transient, || {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            // The second attempt fails, then the token is cancelled while the retry waits.
            if n == 1 {
                let c = canceller.clone();
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    c.cancel();
                });
            }
            async move { Err(api_error(if n == 0 { 503 } else { 429 })) }
        })
        .await;
        let Err(kube::Error::Api(s)) = r else {
            panic!("the last error, got {r:?}")
        };
        assert_eq!(s.code, 429);
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_retrying() {
        let calls = AtomicU32::new(0);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let r: Result<(), kube::Error> = retry(&Backoff::default(), &cancel, is_transient, || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(api_error(500)) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
