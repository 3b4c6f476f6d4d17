//! Fetching on a timer and on demand.
//!
//! One fetch at a time, on the blocking pool (libgit2 blocks). A "fetch now" (the webhook)
//! arriving during a fetch leaves one permit in the `Notify`, so any number of triggers cause
//! at most one more fetch. After a failure the next try waits for the backoff instead of the
//! interval; a trigger still fetches at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tracing::{Instrument, info_span, warn};

use super::{Backoff, FetchOutcome, Source, SourceError};

/// Anything that can fetch the followed refs; [`Source`] in the daemon, a fake in tests.
pub trait Fetcher: Send + 'static {
    fn fetch(&mut self, refs: &[String]) -> Result<FetchOutcome, SourceError>;
    /// Names the repository in errors of the poller itself.
    fn url(&self) -> String;
}

impl Fetcher for Source {
    fn fetch(&mut self, refs: &[String]) -> Result<FetchOutcome, SourceError> {
        Source::fetch(self, refs)
    }

    fn url(&self) -> String {
        Source::url(self).to_owned()
    }
}

/// The result of one fetch, and when the poller will try next (unless triggered).
#[derive(Debug)]
pub struct FetchReport {
    pub result: Result<FetchOutcome, SourceError>,
    pub duration: Duration,
    pub next_in: Duration,
}

pub struct Poller<F: Fetcher> {
    fetcher: Option<F>,
    refs: Arc<[String]>,
    interval: Duration,
    backoff: Backoff,
    trigger: Arc<Notify>,
}

impl<F: Fetcher> Poller<F> {
    pub fn new(fetcher: F, refs: Vec<String>, interval: Duration) -> Self {
        Poller::with_backoff(fetcher, refs, interval, Backoff::default())
    }

    pub fn with_backoff(
        fetcher: F,
        refs: Vec<String>,
        interval: Duration,
        backoff: Backoff,
    ) -> Self {
        Poller {
            fetcher: Some(fetcher),
            refs: refs.into(),
            interval,
            backoff,
            trigger: Arc::new(Notify::new()),
        }
    }

    /// The "fetch now" handle: `notify_one()` on it fetches at once (or right after the
    /// fetch in progress).
    pub fn trigger(&self) -> Arc<Notify> {
        self.trigger.clone()
    }

    /// Fetches at once, then on every interval and trigger, sending each report to `tx`;
    /// returns when the receiver is dropped, or with an error when a fetch task died.
    pub async fn run(mut self, tx: mpsc::Sender<FetchReport>) -> Result<(), SourceError> {
        loop {
            // A trigger that came before this fetch starts is answered by it: drop its permit,
            // so only triggers during the fetch cause another.
            tokio::select! {
                biased;
                _ = self.trigger.notified() => {}
                _ = std::future::ready(()) => {}
            }
            let Some(mut fetcher) = self.fetcher.take() else {
                return Ok(());
            };
            let url = fetcher.url();
            let refs = self.refs.clone();
            let started = tokio::time::Instant::now();
            let span = info_span!("poll", url = %url);
            let joined = tokio::task::spawn_blocking(move || {
                let result = fetcher.fetch(&refs);
                (fetcher, result)
            })
            .instrument(span)
            .await;
            let (fetcher, result) = joined.map_err(|e| SourceError::Task {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            self.fetcher = Some(fetcher);
            let next_in = match &result {
                Ok(_) => {
                    self.backoff.reset();
                    self.interval
                }
                Err(e) => {
                    let d = self.backoff.next_delay();
                    warn!(url = %url, error = %e, retry_in = ?d, "fetch failed; the last good commits stay in use");
                    d
                }
            };
            let report = FetchReport {
                result,
                duration: started.elapsed(),
                next_in,
            };
            if tx.send(report).await.is_err() {
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(next_in) => {}
                _ = self.trigger.notified() => {}
                _ = tx.closed() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Fails while `fail` says so; counts the calls; runs `during` inside each fetch.
    struct Fake {
        calls: Arc<AtomicUsize>,
        fail: Arc<std::sync::atomic::AtomicBool>,
        during: Option<Box<dyn FnMut(usize) + Send>>,
    }

    impl Fetcher for Fake {
        fn fetch(&mut self, _refs: &[String]) -> Result<FetchOutcome, SourceError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(during) = &mut self.during {
                during(n);
            }
            if self.fail.load(Ordering::SeqCst) {
                Err(SourceError::RefNotFound {
                    url: "file:///nowhere".into(),
                    git_ref: "main".into(),
                })
            } else {
                Ok(FetchOutcome { refs: Vec::new() })
            }
        }
        fn url(&self) -> String {
            "file:///nowhere".into()
        }
    }

    fn fake(fail: bool) -> (Fake, Arc<AtomicUsize>, Arc<std::sync::atomic::AtomicBool>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(fail));
        (
            Fake {
                calls: calls.clone(),
                fail: flag.clone(),
                during: None,
            },
            calls,
            flag,
        )
    }

    /// Lets the poller run until it waits on its timer again.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fetches_at_once_then_every_interval_and_at_once_when_triggered() {
        let (f, calls, _) = fake(false);
        let poller = Poller::new(f, vec!["main".into()], Duration::from_secs(60));
        let trigger = poller.trigger();
        let (tx, mut rx) = mpsc::channel(1);
        let task = tokio::spawn(poller.run(tx));

        let first = rx.recv().await.expect("first report");
        assert!(first.result.is_ok());
        assert_eq!(first.next_in, Duration::from_secs(60));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        tokio::time::advance(Duration::from_secs(59)).await;
        settle().await;
        assert!(rx.try_recv().is_err(), "no fetch before the interval");
        tokio::time::advance(Duration::from_secs(1)).await;
        rx.recv().await.expect("report after the interval");
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // Three triggers while idle: one fetch at once, and not three.
        trigger.notify_one();
        trigger.notify_one();
        trigger.notify_one();
        rx.recv().await.expect("report after the trigger");
        settle().await;
        assert!(rx.try_recv().is_err(), "triggers coalesce into one fetch");
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        drop(rx);
        tokio::time::advance(Duration::from_secs(60)).await;
        task.await
            .expect("poller task")
            .expect("poller ends cleanly");
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_during_a_fetch_cause_exactly_one_more_fetch() {
        let (mut f, calls, _) = fake(false);
        let trigger = Arc::new(Notify::new());
        let t = trigger.clone();
        // Webhooks arrive while the second fetch runs: after it, one fetch more, not three.
        f.during = Some(Box::new(move |n| {
            if n == 2 {
                t.notify_one();
                t.notify_one();
                t.notify_one();
            }
        }));
        let mut poller = Poller::new(f, vec!["main".into()], Duration::from_secs(60));
        poller.trigger = trigger.clone();
        let (tx, mut rx) = mpsc::channel(1);
        let _task = tokio::spawn(poller.run(tx));

        rx.recv().await.expect("first report");
        trigger.notify_one();
        rx.recv().await.expect("report of the triggered fetch");
        rx.recv()
            .await
            .expect("report of the fetch the mid-fetch triggers asked for");
        settle().await;
        assert!(
            rx.try_recv().is_err(),
            "no further fetch before the interval"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_retry_after_growing_backoff_and_success_returns_to_the_interval() {
        let (f, calls, fail) = fake(true);
        // Random 1.0: the top of each jitter range, so the delays are exact.
        let backoff = Backoff::new(super::super::MIN_DELAY, super::super::MAX_DELAY, || 1.0);
        let poller = Poller::with_backoff(f, vec!["main".into()], Duration::from_secs(60), backoff);
        let (tx, mut rx) = mpsc::channel(1);
        let _task = tokio::spawn(poller.run(tx));

        let mut delays = Vec::new();
        for _ in 0..4 {
            let r = rx.recv().await.expect("report");
            assert!(r.result.is_err());
            delays.push(r.next_in.as_secs());
            tokio::time::advance(r.next_in).await;
        }
        assert_eq!(delays, [1, 2, 4, 8]);
        fail.store(false, Ordering::SeqCst);
        let ok = rx.recv().await.expect("report");
        assert!(ok.result.is_ok());
        assert_eq!(ok.next_in, Duration::from_secs(60));
        assert_eq!(calls.load(Ordering::SeqCst), 5);

        // A new failure starts the backoff from 1 s again.
        fail.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(60)).await;
        let again = rx.recv().await.expect("report");
        assert_eq!(again.next_in, Duration::from_secs(1));
    }
}
