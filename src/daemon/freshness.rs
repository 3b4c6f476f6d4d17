//! What the daemon records of the source: each fetch report in the status of the tiers that
//! follow its refs, the events it sends them, and the watchdog that marks refs stale.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use super::TierEvent;
use crate::activity::{Activity, Observers};
use crate::revision::Revision;
use crate::source::FetchReport;
use crate::status::StatusHandle;

/// A ref with no successful fetch for this many poll intervals (plus one fetch timeout) is
/// stale: its tiers turn `Failed` whatever their objects look like, and say so.
pub const STALE_INTERVALS: u32 = 3;

/// Why the fetch failed, for the whole repo or for one followed ref.
pub(super) fn fetch_error(report: &FetchReport) -> Option<String> {
    match &report.result {
        Err(e) => Some(e.to_string()),
        Ok(outcome) => outcome.refs.iter().find_map(|r| {
            r.result
                .as_ref()
                .err()
                .map(|e| format!("{}: {e}", r.git_ref))
        }),
    }
}

pub(super) fn dispatch(
    report: &FetchReport,
    senders: &[(String, mpsc::Sender<TierEvent>)],
    freshness: &Freshness,
) {
    for (git_ref, tx) in senders {
        let event = match &report.result {
            Ok(outcome) => match outcome.get(git_ref) {
                Some(Ok(update)) => TierEvent::Revision(Revision::from(update.commit)),
                Some(Err(e)) => TierEvent::FetchFailed(freshness.failure(git_ref, &e.to_string())),
                None => continue,
            },
            Err(e) => TierEvent::FetchFailed(freshness.failure(git_ref, &e.to_string())),
        };
        // A full queue means the tier is busy; the next poll says the same again.
        let _ = tx.try_send(event);
    }
}

/// When each followed ref last fetched well, and what the tiers' status says of it.
///
/// "Synced" must never hide a source that stopped answering: a failed fetch already makes its
/// tiers `Failed` (the reconcile keeps the fetch error), and past `stale_after` without a
/// successful fetch the ref is stale: `source.stale` in the status, `gitopsd_source_stale`,
/// and the tiers' error says how long it has been. The watchdog ([`Freshness::check`]) does
/// that on its own timer, so it holds even when no fetch report comes at all.
pub(super) struct Freshness {
    url: String,
    stale_after: Duration,
    started: Instant,
    /// Per ref, the last successful fetch.
    last_ok: HashMap<String, (Instant, chrono::DateTime<chrono::Utc>)>,
    /// Per ref, the last fetch error since then.
    last_error: HashMap<String, String>,
}

impl Freshness {
    pub(super) fn new(url: &str, stale_after: Duration) -> Freshness {
        Freshness {
            url: url.to_owned(),
            stale_after,
            started: Instant::now(),
            last_ok: HashMap::new(),
            last_error: HashMap::new(),
        }
    }

    /// Records a fetch report in the status of each tier it concerns, and reports rewrites.
    pub(super) fn record(
        &mut self,
        report: &FetchReport,
        tiers: &[(String, String, StatusHandle)],
        observers: &Observers,
    ) {
        let now = chrono::Utc::now();
        for (tier, git_ref, status) in tiers {
            let result = match &report.result {
                Ok(outcome) => match outcome.get(git_ref) {
                    Some(Ok(update)) => Ok(*update),
                    Some(Err(e)) => Err(e.to_string()),
                    None => continue,
                },
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(update) => {
                    self.last_ok.insert(git_ref.clone(), (Instant::now(), now));
                    self.last_error.remove(git_ref);
                    let rewrite = match (update.rewrite, update.previous) {
                        (true, Some(from)) => Some(crate::status::Rewrite {
                            git_ref: git_ref.clone(),
                            from: Revision::from(from),
                            to: Revision::from(update.commit),
                            at: now,
                        }),
                        _ => None,
                    };
                    if let Some(r) = &rewrite {
                        warn!(tier = %tier, git_ref = %git_ref, from = %r.from, to = %r.to, "the history of the followed ref was rewritten (force-push)");
                        observers.emit(Activity::HistoryRewritten {
                            tier: tier.clone(),
                            git_ref: git_ref.clone(),
                            from: r.from.clone(),
                            to: r.to.clone(),
                        });
                    }
                    status.update(|s| {
                        s.source.last_attempt_at = Some(now);
                        s.source.last_fetch_at = Some(now);
                        s.source.fetch_error = None;
                        s.source.stale = false;
                        if let Some(r) = rewrite {
                            s.source.rewrites += 1;
                            s.source.last_rewrite = Some(r);
                        }
                    });
                }
                Err(e) => {
                    self.last_error.insert(git_ref.clone(), e.clone());
                    let stale = self.stale_for(git_ref).is_some();
                    status.update(|s| {
                        s.source.last_attempt_at = Some(now);
                        s.source.fetch_error = Some(e);
                        s.source.stale = stale;
                    });
                }
            }
        }
    }

    /// How long `git_ref` has gone without a successful fetch, if that is past the limit.
    fn stale_for(&self, git_ref: &str) -> Option<Duration> {
        let since = self
            .last_ok
            .get(git_ref)
            .map_or(self.started, |(at, _)| *at);
        let age = since.elapsed();
        (age > self.stale_after).then_some(age)
    }

    /// The error a tier gets for a failed fetch of `git_ref`: the stale note first when the
    /// ref has gone unanswered for long, so the message does not flip between the two.
    pub(super) fn failure(&self, git_ref: &str, error: &str) -> String {
        match self.stale_note(git_ref) {
            Some(note) => format!("{note}; the last error: {error}"),
            None => error.to_owned(),
        }
    }

    fn stale_note(&self, git_ref: &str) -> Option<String> {
        let age = self.stale_for(git_ref)?;
        let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
        let since = match self.last_ok.get(git_ref) {
            Some((_, at)) => format!(
                "since {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => "since the daemon started".to_owned(),
        };
        Some(format!(
            "source stale: no fetch of {git_ref} from {} has succeeded for {age} ({since}; the limit is {STALE_INTERVALS} poll intervals plus source.fetchTimeout); the last good revision stays applied and prune waits",
            self.url
        ))
    }

    /// The watchdog: marks stale refs in their tiers' status and fails those tiers, even if
    /// the poller has reported nothing (a fetch stuck past every deadline).
    pub(super) fn check(
        &self,
        tiers: &[(String, String, StatusHandle)],
        senders: &[(String, mpsc::Sender<TierEvent>)],
    ) {
        for ((_, git_ref, status), (_, tx)) in tiers.iter().zip(senders) {
            let Some(note) = self.stale_note(git_ref) else {
                continue;
            };
            let error = match self.last_error.get(git_ref) {
                Some(e) => format!("{note}; the last error: {e}"),
                None => format!("{note}; no fetch has finished since"),
            };
            if !status.read(|s| s.source.stale) {
                warn!(git_ref = %git_ref, "{note}");
            }
            status.update(|s| {
                s.source.stale = true;
                if s.source.fetch_error.is_none() {
                    s.source.fetch_error = Some(error.clone());
                }
            });
            let _ = tx.try_send(TierEvent::FetchFailed(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::activity::Observer;
    use crate::source::SourceError;

    fn oid(c: char) -> git2::Oid {
        git2::Oid::from_str(&c.to_string().repeat(40)).expect("oid")
    }

    fn report(update: Result<crate::source::RefUpdate, ()>) -> FetchReport {
        use crate::source::{FetchOutcome, RefOutcome};
        let result = match update {
            Ok(u) => Ok(FetchOutcome {
                refs: vec![RefOutcome {
                    git_ref: "main".into(),
                    result: Ok(u),
                }],
            }),
            Err(()) => Err(SourceError::TimedOut {
                url: "https://git.example/c.git".into(),
                refs: "main".into(),
                after: Duration::from_secs(3),
            }),
        };
        FetchReport {
            result,
            duration: Duration::from_millis(5),
            next_in: Duration::from_secs(1),
        }
    }

    #[derive(Default)]
    struct Seen(Mutex<Vec<Activity>>);

    impl Observer for Seen {
        fn observe(&self, activity: &Activity) {
            if let Ok(mut s) = self.0.lock() {
                s.push(activity.clone());
            }
        }
    }

    #[tokio::test]
    async fn fetches_are_recorded_in_the_status_and_a_rewrite_is_told_to_the_observers() {
        let status = StatusHandle::new("dev");
        let tiers = vec![("dev".to_owned(), "main".to_owned(), status.clone())];
        let seen = Arc::new(Seen::default());
        let observers = Observers::new(vec![seen.clone()]);
        let mut freshness = Freshness::new("https://git.example/c.git", Duration::from_secs(3600));

        let moved = crate::source::RefUpdate {
            commit: oid('a'),
            previous: Some(oid('b')),
            changed: true,
            rewrite: true,
        };
        freshness.record(&report(Ok(moved)), &tiers, &observers);
        let s = status.snapshot().source;
        assert!(s.last_fetch_at.is_some() && s.fetch_error.is_none() && !s.stale);
        assert_eq!(s.rewrites, 1);
        let r = s.last_rewrite.expect("the rewrite");
        assert_eq!(
            (r.from.as_str(), r.to.as_str()),
            (oid('b').to_string().as_str(), oid('a').to_string().as_str())
        );
        let activity = seen.0.lock().unwrap().clone();
        assert!(
            matches!(&activity[..], [Activity::HistoryRewritten { tier, git_ref, .. }] if tier == "dev" && git_ref == "main"),
            "{activity:?}"
        );

        // A failed fetch keeps the last good time and says why; no rewrite is told twice.
        let before = status.snapshot().source.last_fetch_at;
        freshness.record(&report(Err(())), &tiers, &observers);
        let s = status.snapshot().source;
        assert_eq!(s.last_fetch_at, before);
        assert!(
            s.fetch_error
                .expect("the error")
                .contains("source.fetchTimeout")
        );
        assert!(!s.stale, "one failure is not stale");
        assert_eq!(seen.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_source_unanswered_past_the_limit_is_stale_and_fails_its_tiers_even_with_no_report() {
        let status = StatusHandle::new("dev");
        let tiers = vec![("dev".to_owned(), "main".to_owned(), status.clone())];
        let (tx, mut rx) = mpsc::channel(4);
        let senders = vec![("main".to_owned(), tx)];
        let freshness = Freshness::new("https://git.example/c.git", Duration::from_millis(20));
        // Not yet: the watchdog leaves a fresh daemon alone.
        freshness.check(&tiers, &senders);
        assert!(rx.try_recv().is_err());
        assert!(!status.snapshot().source.stale);

        // No fetch report at all (a fetch stuck past every deadline), past the limit.
        tokio::time::sleep(Duration::from_millis(30)).await;
        freshness.check(&tiers, &senders);
        let s = status.snapshot().source;
        assert!(s.stale);
        match rx.try_recv() {
            Ok(TierEvent::FetchFailed(e)) => {
                assert!(
                    e.starts_with("source stale: no fetch of main from https://git.example/c.git"),
                    "{e}"
                );
                assert!(
                    e.contains("since the daemon started") && e.contains("prune waits"),
                    "{e}"
                );
            }
            _ => panic!("the tier is told its source failed"),
        }
        // A fetch error while stale carries the note first, so the message stays put.
        let e = freshness.failure("main", "connection refused");
        assert!(
            e.starts_with("source stale:") && e.ends_with("the last error: connection refused"),
            "{e}"
        );
    }
}
