//! Outbound notifications: an [`Observer`] that turns the activity a person must hear of
//! (critical drift, a failed sync, a rollback, a promotion held by a gate, a revision healthy
//! at the end of the promotion chain) into [`Notification`]s, routes each to the sinks of the
//! routes it matches, and queues it there. One task per sink delivers (`deliver.rs`), so a
//! sink that is down or slow never holds up the reconcile: `observe` only `try_send`s, and a
//! full queue drops and counts.
//!
//! Pure: which activity is an event (`Events`), routing (`Routes`), the request bodies
//! (`payload.rs`). I/O: the delivery tasks.

mod deliver;
mod payload;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::activity::{Activity, Observer};
use crate::classify::Severity;
use crate::config::{
    Action, NotificationsConfig, NotifyEvent, OverrideSeverity, RouteConfig, TierConfig,
};
use crate::hold::HoldKind;
use crate::outbound::HttpClient;
use crate::revision::Revision;
use crate::status::SyncState;

pub use deliver::{DeliveryError, NotifyError, SinkTarget};
pub use payload::{alertmanager_body, signature, slack_body, webhook_body};

/// The most drift items a notification lists (the rest are counted).
const LISTED_ITEMS: usize = 10;

/// One thing to tell: plain data, the same for every sink (each renders it its own way).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub event: NotifyEvent,
    pub tier: String,
    pub revision: Revision,
    /// The drift's highest severity; for other events, how urgent the event is.
    pub severity: Severity,
    /// One line, for a chat message or an alert's summary.
    pub summary: String,
    /// Further lines: the error, the reason, the drifted fields.
    pub details: Vec<String>,
    pub at: DateTime<Utc>,
    /// What was told is over: a tier whose sync failed synced again (Alertmanager resolves
    /// the alert at once instead of at its `endsAt`).
    pub resolved: bool,
}

/// How a notification ended at a sink; `label()` is the `result` label of
/// `gitopsd_notifications_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    Sent,
    /// Every attempt failed, or the answer was a refusal that sending again would not change.
    Failed,
    /// The sink's queue was full (or its task gone): never sent.
    Dropped,
}

impl DeliveryResult {
    pub const ALL: [DeliveryResult; 3] = [
        DeliveryResult::Sent,
        DeliveryResult::Failed,
        DeliveryResult::Dropped,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DeliveryResult::Sent => "sent",
            DeliveryResult::Failed => "failed",
            DeliveryResult::Dropped => "dropped",
        }
    }
}

/// Which activity is an event worth telling, and what it says. Keeps what it needs to tell a
/// failing sync once rather than at every reconcile.
#[derive(Debug, Default)]
pub struct Events {
    /// Tiers no other tier promotes from: a revision healthy there went all the way.
    last_tiers: BTreeSet<String>,
    /// Per tier, the failure last told (revision, error); cleared by a sync that did not fail.
    failing: HashMap<String, (Revision, String)>,
}

impl Events {
    pub fn new(tiers: &[TierConfig]) -> Events {
        let last_tiers = tiers
            .iter()
            .filter(|t| {
                !tiers
                    .iter()
                    .any(|o| o.promote_from.as_deref() == Some(t.name.as_str()))
            })
            .map(|t| t.name.clone())
            .collect();
        Events {
            last_tiers,
            failing: HashMap::new(),
        }
    }

    /// The notification `activity` makes, if any.
    pub fn event(&mut self, activity: &Activity, at: DateTime<Utc>) -> Option<Notification> {
        let n = |event, tier: &str, revision: &Revision, severity, summary, details| {
            Some(Notification {
                event,
                tier: tier.to_owned(),
                revision: revision.clone(),
                severity,
                summary,
                details,
                at,
                resolved: false,
            })
        };
        match activity {
            Activity::SyncFinished {
                tier,
                revision,
                result,
                error,
                ..
            } => {
                if *result != SyncState::Failed {
                    // The failure told is over: told too, so that its alert resolves.
                    let (failed, _) = self.failing.remove(tier)?;
                    let mut over = n(
                        NotifyEvent::SyncFailed,
                        tier,
                        revision,
                        Severity::High,
                        format!(
                            "tier {tier}: syncs again at {} (failed at {})",
                            revision.abbrev(),
                            failed.abbrev()
                        ),
                        Vec::new(),
                    )?;
                    over.resolved = true;
                    return Some(over);
                }
                let error = error.clone().unwrap_or_default();
                let told = (revision.clone(), error.clone());
                if self.failing.get(tier) == Some(&told) {
                    return None;
                }
                self.failing.insert(tier.clone(), told);
                n(
                    NotifyEvent::SyncFailed,
                    tier,
                    revision,
                    Severity::High,
                    format!("tier {tier}: sync of {} failed", revision.abbrev()),
                    vec![error],
                )
            }
            Activity::DriftFound {
                tier,
                revision,
                items,
            } => {
                let told: Vec<_> = items
                    .iter()
                    .filter(|i| i.action != Action::Ignore)
                    .collect();
                let severity = told.iter().map(|i| i.severity).max()?;
                let top = told.iter().filter(|i| i.severity == severity).count();
                let mut details: Vec<String> = told
                    .iter()
                    .take(LISTED_ITEMS)
                    .map(|i| match &i.field_path {
                        Some(p) => format!("{} {p}: {} ({})", i.key, i.severity, i.action.as_str()),
                        None => format!("{}: {} ({})", i.key, i.severity, i.action.as_str()),
                    })
                    .collect();
                if told.len() > LISTED_ITEMS {
                    details.push(format!("and {} more", told.len() - LISTED_ITEMS));
                }
                n(
                    NotifyEvent::DriftFound,
                    tier,
                    revision,
                    severity,
                    format!("tier {tier}: {top} new {severity} drift item(s)"),
                    details,
                )
            }
            Activity::RolledBack {
                tier,
                from,
                to,
                reason,
            } => n(
                NotifyEvent::RolledBack,
                tier,
                from,
                Severity::High,
                format!(
                    "tier {tier}: rolled back from {} to {}",
                    from.abbrev(),
                    to.abbrev()
                ),
                vec![reason.clone()],
            ),
            // A closed window opens by itself: no one needs to act.
            Activity::PromotionBlocked {
                tier,
                revision,
                reason,
                kind,
            } if *kind != HoldKind::Window => n(
                NotifyEvent::PromotionBlocked,
                tier,
                revision,
                Severity::Medium,
                format!(
                    "tier {tier}: {} held back ({})",
                    revision.abbrev(),
                    kind.as_str()
                ),
                vec![reason.clone()],
            ),
            Activity::RevisionHealthy { tier, revision, .. } if self.last_tiers.contains(tier) => {
                n(
                    NotifyEvent::RevisionHealthy,
                    tier,
                    revision,
                    Severity::Low,
                    format!("tier {tier}: {} is healthy", revision.abbrev()),
                    Vec::new(),
                )
            }
            _ => None,
        }
    }
}

/// Which sinks a notification goes to.
#[derive(Debug, Clone)]
pub struct Routes(Vec<(RouteConfig, usize)>);

impl Routes {
    /// `routes` with each sink name resolved to its index in `sinks` (a route naming no sink,
    /// which the config check refuses, is left out).
    pub fn new(routes: &[RouteConfig], sinks: &[String]) -> Routes {
        Routes(
            routes
                .iter()
                .filter_map(|r| Some((r.clone(), sinks.iter().position(|s| s == &r.sink)?)))
                .collect(),
        )
    }

    /// The indexes of the sinks `n` goes to, each once, in order.
    pub fn sinks_for(&self, n: &Notification) -> Vec<usize> {
        let mut out = Vec::new();
        for (route, sink) in &self.0 {
            let tier = route.tiers.is_empty() || route.tiers.contains(&n.tier);
            let event = route.events.is_empty() || route.events.contains(&n.event);
            let severe = n.event != NotifyEvent::DriftFound
                || n.severity >= min_severity(route.min_severity);
            if tier && event && severe && !out.contains(sink) {
                out.push(*sink);
            }
        }
        out
    }
}

/// A route's drift threshold: critical unless it says otherwise (`ignore` is refused by the
/// config check; were it here, it would let everything through).
fn min_severity(s: Option<OverrideSeverity>) -> Severity {
    match s {
        None | Some(OverrideSeverity::Critical) => Severity::Critical,
        Some(OverrideSeverity::High) => Severity::High,
        Some(OverrideSeverity::Medium) => Severity::Medium,
        Some(OverrideSeverity::Low | OverrideSeverity::Ignore) => Severity::Low,
    }
}

/// A sink's queue, as the observer sees it.
struct Queue {
    name: String,
    tx: mpsc::Sender<Arc<Notification>>,
}

/// The observer: decides, routes, queues; never waits.
pub struct Notifier {
    events: Mutex<Events>,
    routes: Routes,
    queues: Vec<Queue>,
    counter: Option<prometheus::IntCounterVec>,
}

impl Notifier {
    /// Reads the sinks' files, and starts one delivery task per sink. The tasks end when the
    /// notifier is dropped and their queues are drained; `shutdown` stops their retries.
    pub fn start(
        config: &NotificationsConfig,
        tiers: &[TierConfig],
        counter: Option<prometheus::IntCounterVec>,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Notifier>, Vec<JoinHandle<()>>), NotifyError> {
        let client = HttpClient::new().map_err(NotifyError::Client)?;
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for (i, sink) in config.sinks.iter().enumerate() {
            let target = SinkTarget::load(sink, i)?;
            let (tx, rx) = mpsc::channel(config.queue);
            if let Some(c) = &counter {
                for r in DeliveryResult::ALL {
                    c.with_label_values(&[sink.name.as_str(), r.label()]);
                }
            }
            let delivery = deliver::Delivery {
                name: sink.name.clone(),
                target,
                client: client.clone(),
                timeout: config.timeout,
                attempts: config.attempts,
                counter: counter.clone(),
                shutdown: shutdown.clone(),
            };
            tasks.push(tokio::spawn(delivery.run(rx)));
            queues.push(Queue {
                name: sink.name.clone(),
                tx,
            });
        }
        let names: Vec<String> = queues.iter().map(|q| q.name.clone()).collect();
        let notifier = Notifier {
            events: Mutex::new(Events::new(tiers)),
            routes: Routes::new(&config.routes, &names),
            queues,
            counter,
        };
        Ok((Arc::new(notifier), tasks))
    }
}

impl Observer for Notifier {
    fn observe(&self, activity: &Activity) {
        let n = match self.events.lock() {
            Ok(mut events) => events.event(activity, Utc::now()),
            Err(_) => return,
        };
        let Some(n) = n else { return };
        let n = Arc::new(n);
        for i in self.routes.sinks_for(&n) {
            let Some(q) = self.queues.get(i) else {
                continue;
            };
            if let Err(e) = q.tx.try_send(n.clone()) {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "the queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the delivery task stopped",
                };
                warn!(sink = %q.name, tier = %n.tier, revision = %n.revision, event = n.event.as_str(), why, "notification dropped");
                if let Some(c) = &self.counter {
                    c.with_label_values(&[q.name.as_str(), DeliveryResult::Dropped.label()])
                        .inc();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
