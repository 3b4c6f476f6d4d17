//! Fetching on a timer and on demand.
//!
//! One fetch at a time, on the blocking pool (libgit2 blocks). A "fetch now" (the webhook)
//! arriving during a fetch leaves one permit in the `Notify`, so any number of triggers cause
//! at most one more fetch. After a failure the next try waits for the backoff instead of the
//! interval; a trigger still fetches at once.
//!
//! A fetch that outlives its deadline (`source.fetchTimeout`) is abandoned: the report says it
//! timed out, the next try waits for the backoff, and the fetcher's cancel flag is raised so
//! the blocking thread stops at libgit2's next callback or read timeout. Two fetches never
//! write the mirror at once: the next fetch first waits (one deadline more) for the abandoned
//! one to come back with its handle; only a thread stuck beyond that (somewhere libgit2 has
//! no timeout, a DNS lookup say) is left behind, and the mirror is opened again
//! ([`Poller::reopen_with`]). Dropping the poller (the daemon's shutdown) raises the flag too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

use super::{Backoff, FetchOutcome, Source, SourceError};

/// Anything that can fetch the followed refs; [`Source`] in the daemon, a fake in tests.
pub trait Fetcher: Send + 'static {
    fn fetch(&mut self, refs: &[String]) -> Result<FetchOutcome, SourceError>;
    /// Names the repository in errors of the poller itself.
    fn url(&self) -> String;
    /// The flag that stops a fetch in progress from another thread; `None`: it cannot be.
    fn cancel_flag(&self) -> Option<Arc<AtomicBool>> {
        None
    }
    /// How long one fetch may run before the poller abandons it; `None`: no deadline.
    fn deadline(&self) -> Option<Duration> {
        None
    }
}

impl Fetcher for Source {
    fn fetch(&mut self, refs: &[String]) -> Result<FetchOutcome, SourceError> {
        Source::fetch(self, refs)
    }

    fn url(&self) -> String {
        Source::url(self).to_owned()
    }

    fn cancel_flag(&self) -> Option<Arc<AtomicBool>> {
        Some(Source::cancel_flag(self))
    }

    fn deadline(&self) -> Option<Duration> {
        Some(Source::fetch_timeout(self))
    }
}

type Joined<F> = (F, Result<FetchOutcome, SourceError>);

/// Raises a cancel flag when dropped unless disarmed: the poller's future dropped mid-fetch
/// (the daemon aborts it at shutdown) must not leave the fetch thread running on.
struct RaiseOnDrop(Option<Arc<AtomicBool>>);

impl RaiseOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        if let Some(flag) = &self.0 {
            flag.store(true, Ordering::SeqCst);
        }
    }
}

/// A fetch given up at its deadline whose thread has not returned yet.
struct Abandoned<F> {
    handle: JoinHandle<Joined<F>>,
    /// Raised again at shutdown (the poller's drop).
    _cancel: RaiseOnDrop,
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
    abandoned: Option<Abandoned<F>>,
    /// Opens a second handle on the mirror when an abandoned fetch never comes back.
    reopen: Option<Box<dyn Fn() -> Result<F, SourceError> + Send>>,
    /// The fetcher's deadline, kept while it is away in an abandoned fetch.
    deadline: Option<Duration>,
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
            deadline: fetcher.deadline(),
            fetcher: Some(fetcher),
            abandoned: None,
            reopen: None,
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

    /// How a fetcher that does not come back is replaced: `open` makes a new handle on the
    /// same mirror (the daemon: `Source::new` again). Without it the poller waits for the
    /// abandoned fetch however long it takes.
    pub fn reopen_with(
        mut self,
        open: impl Fn() -> Result<F, SourceError> + Send + 'static,
    ) -> Self {
        self.reopen = Some(Box::new(open));
        self
    }

    /// The fetcher for the next fetch: the one at hand, or the abandoned fetch's once it
    /// returns (waiting one deadline for it), or a new one. `Ok(None)`: the receiver left.
    async fn next_fetcher(
        &mut self,
        tx: &mpsc::Sender<FetchReport>,
        url: &str,
    ) -> Result<Option<F>, SourceError> {
        if let Some(f) = self.fetcher.take() {
            return Ok(Some(f));
        }
        let Some(mut abandoned) = self.abandoned.take() else {
            return Ok(None);
        };
        // Nothing to replace it with: wait as long as it takes.
        let grace = self.deadline.filter(|_| self.reopen.is_some());
        tokio::select! {
            joined = &mut abandoned.handle => match joined {
                Ok((f, _)) => {
                    info!(url = %url, "the abandoned fetch has returned; fetching again");
                    return Ok(Some(f));
                }
                Err(e) => warn!(url = %url, error = %e, "the abandoned fetch task failed"),
            },
            _ = sleep_for(grace) => {
                warn!(url = %url, waited = ?grace, "the abandoned fetch has still not returned; leaving its thread behind and opening the mirror again");
            }
            _ = tx.closed() => return Ok(None),
        }
        match &self.reopen {
            Some(open) => open().map(Some),
            None => Err(SourceError::Task {
                url: url.to_owned(),
                reason: "the fetch task failed and the mirror cannot be opened again".into(),
            }),
        }
    }

    /// Fetches at once, then on every interval and trigger, sending each report to `tx`;
    /// returns when the receiver is dropped, or with an error when a fetch task died.
    pub async fn run(mut self, tx: mpsc::Sender<FetchReport>) -> Result<(), SourceError> {
        let mut url = self.fetcher.as_ref().map(Fetcher::url).unwrap_or_default();
        loop {
            // A trigger that came before this fetch starts is answered by it: drop its permit,
            // so only triggers during the fetch cause another.
            tokio::select! {
                biased;
                _ = self.trigger.notified() => {}
                _ = std::future::ready(()) => {}
            }
            let started = tokio::time::Instant::now();
            let result = match self.next_fetcher(&tx, &url).await {
                Ok(None) => return Ok(()),
                Ok(Some(fetcher)) => {
                    url = fetcher.url();
                    self.fetch_once(fetcher, &url).await?
                }
                Err(e) => Err(e),
            };
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

impl<F: Fetcher> Poller<F> {
    /// One fetch on the blocking pool, abandoned at the fetcher's deadline.
    async fn fetch_once(
        &mut self,
        mut fetcher: F,
        url: &str,
    ) -> Result<Result<FetchOutcome, SourceError>, SourceError> {
        let refs = self.refs.clone();
        let cancel = fetcher.cancel_flag();
        self.deadline = fetcher.deadline();
        if let Some(flag) = &cancel {
            // Raised if this handle's previous fetch was abandoned.
            flag.store(false, Ordering::SeqCst);
        }
        let guard = RaiseOnDrop(cancel.clone());
        let span = info_span!("poll", url = %url);
        let mut handle = tokio::task::spawn_blocking(move || {
            let result = fetcher.fetch(&refs);
            (fetcher, result)
        });
        let joined = tokio::select! {
            joined = (&mut handle).instrument(span) => Some(joined),
            _ = sleep_for(self.deadline) => None,
        };
        match joined {
            Some(joined) => {
                guard.disarm();
                let (fetcher, result) = joined.map_err(|e| SourceError::Task {
                    url: url.to_owned(),
                    reason: e.to_string(),
                })?;
                self.fetcher = Some(fetcher);
                Ok(result)
            }
            None => {
                let deadline = self.deadline.unwrap_or_default();
                if let Some(flag) = &cancel {
                    flag.store(true, Ordering::SeqCst);
                }
                let err = SourceError::TimedOut {
                    url: url.to_owned(),
                    refs: self.refs.join(", "),
                    after: deadline,
                };
                warn!(url = %url, deadline = ?deadline, "git fetch abandoned at its deadline: the server stopped answering");
                self.abandoned = Some(Abandoned {
                    handle,
                    _cancel: guard,
                });
                Ok(Err(err))
            }
        }
    }
}

async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
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

    /// Hangs while `hang` is up, like a git server that accepted the connection and went
    /// silent; gives up when its cancel flag is raised, unless `deaf` (a thread stuck where
    /// nothing checks the flag). Real time: tokio's paused clock does not advance while a
    /// blocking task runs.
    struct Hanging {
        calls: Arc<AtomicUsize>,
        hang: Arc<AtomicBool>,
        deaf: bool,
        cancel: Arc<AtomicBool>,
        cancelled: Arc<AtomicUsize>,
        deadline: Option<Duration>,
    }

    impl Hanging {
        fn new(hang: bool, deaf: bool) -> Hanging {
            Hanging {
                calls: Arc::default(),
                hang: Arc::new(AtomicBool::new(hang)),
                deaf,
                cancel: Arc::default(),
                cancelled: Arc::default(),
                deadline: Some(DEADLINE),
            }
        }
    }

    impl Fetcher for Hanging {
        fn fetch(&mut self, _refs: &[String]) -> Result<FetchOutcome, SourceError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            while self.hang.load(Ordering::SeqCst) {
                if !self.deaf && self.cancel.load(Ordering::SeqCst) {
                    self.cancelled.fetch_add(1, Ordering::SeqCst);
                    return Err(SourceError::Cancelled {
                        url: self.url(),
                        refs: "main".into(),
                    });
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(FetchOutcome { refs: Vec::new() })
        }
        fn url(&self) -> String {
            "https://git.example/config.git".into()
        }
        fn cancel_flag(&self) -> Option<Arc<AtomicBool>> {
            Some(self.cancel.clone())
        }
        fn deadline(&self) -> Option<Duration> {
            self.deadline
        }
    }

    const DEADLINE: Duration = Duration::from_millis(300);

    fn exact_backoff() -> Backoff {
        Backoff::new(super::super::MIN_DELAY, super::super::MAX_DELAY, || 1.0)
    }

    #[tokio::test]
    async fn a_fetch_that_hangs_is_abandoned_at_its_deadline_cancelled_and_retried_with_backoff() {
        let f = Hanging::new(true, false);
        let (calls, hang, cancelled) = (f.calls.clone(), f.hang.clone(), f.cancelled.clone());
        let poller = Poller::with_backoff(
            f,
            vec!["main".into()],
            Duration::from_secs(60),
            exact_backoff(),
        );
        let (tx, mut rx) = mpsc::channel(1);
        let _task = tokio::spawn(poller.run(tx));

        let first = rx.recv().await.expect("a report at the deadline");
        match &first.result {
            Err(e @ SourceError::TimedOut { after, .. }) => {
                assert_eq!(*after, DEADLINE);
                let msg = e.to_string();
                assert!(
                    msg.contains("source.fetchTimeout") && msg.contains("git.example"),
                    "{msg}"
                );
            }
            other => panic!("expected a timeout: {other:?}"),
        }
        assert_eq!(
            first.next_in,
            Duration::from_secs(1),
            "retried with the backoff"
        );
        // The abandoned thread saw its cancel flag and stopped (real time: a thread).
        while cancelled.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The server answers again: the retry after the backoff gets through.
        hang.store(false, Ordering::SeqCst);
        let second = rx.recv().await.expect("the retry's report");
        assert!(second.result.is_ok(), "{:?}", second.result);
        assert_eq!(second.next_in, Duration::from_secs(60));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_fetch_thread_that_never_returns_is_left_behind_and_the_mirror_opened_again() {
        let f = Hanging::new(true, true);
        let (stuck, calls) = (f.hang.clone(), f.calls.clone());
        let reopened = Arc::new(AtomicUsize::new(0));
        let r = reopened.clone();
        let poller = Poller::with_backoff(
            f,
            vec!["main".into()],
            Duration::from_secs(60),
            exact_backoff(),
        )
        .reopen_with(move || {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(Hanging::new(false, false))
        });
        let (tx, mut rx) = mpsc::channel(1);
        let _task = tokio::spawn(poller.run(tx));

        let first = rx.recv().await.expect("a report at the deadline");
        assert!(
            matches!(first.result, Err(SourceError::TimedOut { .. })),
            "{:?}",
            first.result
        );
        // The next fetch waits one deadline for the stuck thread, then opens the mirror again.
        let second = rx.recv().await.expect("a report from the new handle");
        assert!(second.result.is_ok(), "{:?}", second.result);
        assert_eq!(reopened.load(Ordering::SeqCst), 1);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the stuck handle was not used again"
        );
        // Let the stuck thread end, or the test runtime would wait for it.
        stuck.store(false, Ordering::SeqCst);
    }

    #[tokio::test]
    async fn dropping_the_poller_mid_fetch_cancels_the_fetch() {
        let mut f = Hanging::new(true, false);
        f.deadline = None;
        let (calls, cancelled) = (f.calls.clone(), f.cancelled.clone());
        let poller = Poller::new(f, vec!["main".into()], Duration::from_secs(60));
        let (tx, _rx) = mpsc::channel(1);
        let task = tokio::spawn(poller.run(tx));
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The daemon aborts the poller at shutdown.
        task.abort();
        let _ = task.await;
        while cancelled.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
