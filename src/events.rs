//! Kubernetes Events (`events.k8s.io/v1`) that tell a tier's story: `kubectl get events -n
//! <state namespace>` lists what gitopsd did, each Event regarding the tier's state ConfigMap
//! `gitopsd-state-<tier>`.
//!
//! Summaries, not one Event per object (object-level detail is the audit log's job). Reasons:
//! `SyncSucceeded`/`SyncFailed` (notable syncs), `Applied`, `Pruned`, `DriftDetected`,
//! `RolledBack`, `PromotionBlocked`, `HealthChanged`; `Warning` for failures, rollbacks,
//! critical drift, blocked promotions and a Degraded tier, `Normal` otherwise.
//!
//! The observer never blocks the reconcile: it hands each Event to a bounded channel (full:
//! dropped, counted, warned) read by one task that publishes; a failed publish is a warning.
//!
//! Repeated Events are aggregated into a series, as the Events API intends: an Event with the
//! same tier, reason, type and message as one published within [`SERIES_WINDOW`] of its last
//! occurrence is not created again; its `series.count` and `series.lastObservedTime` are
//! patched. kube-runtime's `Recorder` does series too, but its key leaves the message out, so
//! two different summaries with one reason (`Applied`: "3 created", later "1 configured") would
//! become one series showing only the first message; hence this small publisher of our own.
//!
//! The regarding object may not exist yet (the state ConfigMap is written by the first sync):
//! the API server accepts an Event about an object that does not exist. Its uid is looked up
//! and added once the ConfigMap exists, so `kubectl describe configmap` lists the Events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::activity::{Activity, Observer};
use crate::apply::{Outcome, Tally};
use crate::classify::Severity;
use crate::health::Health;
use crate::state::StateStore;
use crate::status::SyncState;

/// Events waiting to be published; beyond this they are dropped (and counted).
pub const QUEUE: usize = 256;
/// An identical Event within this time of the last one is counted in its series.
pub const SERIES_WINDOW: Duration = Duration::from_secs(10 * 60);
/// The Events API limits a note to 1 kB.
const MAX_NOTE: usize = 1000;
/// Objects named in a summary.
const NAMED: usize = 3;
/// The reporting controller of every Event.
pub const CONTROLLER: &str = "gitopsd";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One Event to publish, about a tier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Note {
    pub tier: String,
    pub type_: EventType,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

/// Object names seen in a tier's sync so far, for its summary Events.
#[derive(Default)]
struct Pending {
    applied: Vec<String>,
    pruned: Vec<String>,
}

/// The [`Observer`]: turns activity into [`Note`]s and queues them for [`Publisher`].
pub struct EventsObserver {
    tx: mpsc::Sender<Note>,
    dropped: AtomicU64,
    pending: Mutex<HashMap<String, Pending>>,
}

impl EventsObserver {
    /// The observer and the task that publishes what it queues into `namespace`. The task
    /// ends when every clone of the observer is dropped and the queue is empty.
    pub fn start(
        client: kube::Client,
        namespace: &str,
    ) -> (std::sync::Arc<EventsObserver>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let publisher = Publisher::new(client, namespace);
        let task = tokio::spawn(publisher.run(rx));
        (std::sync::Arc::new(EventsObserver::new(tx)), task)
    }

    pub fn new(tx: mpsc::Sender<Note>) -> EventsObserver {
        EventsObserver {
            tx,
            dropped: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The Events an activity makes (none for most object-level activity, which is only
    /// remembered for the sync's summary).
    pub fn notes(&self, activity: &Activity) -> Vec<Note> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match activity {
            Activity::ObjectApplied {
                tier,
                object,
                outcome,
                ..
            } => {
                let p = pending.entry(tier.clone()).or_default();
                let list = match outcome {
                    Outcome::Created | Outcome::Configured => &mut p.applied,
                    Outcome::Pruned => &mut p.pruned,
                    _ => return Vec::new(),
                };
                // Enough to name the first few in sorted order, bounded.
                if list.len() < 64 {
                    let ns = object
                        .namespace
                        .as_deref()
                        .map(|n| format!("{n}/"))
                        .unwrap_or_default();
                    list.push(format!("{} {ns}{}", object.kind, object.name));
                }
                Vec::new()
            }
            Activity::SyncFinished { tier, .. } => {
                let p = pending.remove(tier).unwrap_or_default();
                sync_notes(activity, p)
            }
            other => other_notes(other).into_iter().collect(),
        }
    }
}

impl Observer for EventsObserver {
    fn observe(&self, activity: &Activity) {
        for note in self.notes(activity) {
            if let Err(e) = self.tx.try_send(note) {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_multiple_of(100) {
                    let why = match e {
                        mpsc::error::TrySendError::Full(_) => "the queue is full",
                        mpsc::error::TrySendError::Closed(_) => "the publisher stopped",
                    };
                    warn!(
                        dropped = n,
                        queue = QUEUE,
                        "a Kubernetes Event was dropped: {why}"
                    );
                }
            }
        }
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_NOTE {
        let mut cut = MAX_NOTE - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn named(mut names: Vec<String>, total: usize) -> String {
    names.sort();
    names.dedup();
    let more = total.saturating_sub(names.len().min(NAMED));
    let mut s = names.into_iter().take(NAMED).collect::<Vec<_>>().join(", ");
    if more > 0 {
        s += &format!(" and {more} more");
    }
    s
}

/// `8 created, 1 configured` (non-zero outcomes, in a fixed order).
fn counts(outcomes: &Tally, keys: &[Outcome]) -> String {
    keys.iter()
        .map(|k| (outcomes.get(*k), k.as_str()))
        .filter(|(n, _)| *n > 0)
        .map(|(n, k)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn sync_notes(activity: &Activity, pending: Pending) -> Vec<Note> {
    let Activity::SyncFinished {
        tier,
        revision,
        reason,
        result,
        outcomes,
        error,
        notable,
        ..
    } = activity
    else {
        return Vec::new();
    };
    let rev = revision.abbrev();
    let mut notes = Vec::new();
    let note = |type_, reason: &'static str, action, message: String| Note {
        tier: tier.clone(),
        type_,
        reason,
        action,
        message: truncate(message),
    };
    if *notable && *result != SyncState::Blocked {
        let failed = outcomes.get(Outcome::Failed);
        let summary = counts(
            outcomes,
            &[
                Outcome::Created,
                Outcome::Configured,
                Outcome::Pruned,
                Outcome::Unchanged,
                Outcome::Failed,
            ],
        );
        let summary = if summary.is_empty() {
            "nothing to change".to_owned()
        } else {
            summary
        };
        if error.is_some() || failed > 0 || *result == SyncState::Failed {
            let why = error
                .clone()
                .unwrap_or_else(|| format!("{failed} objects failed to apply"));
            notes.push(note(
                EventType::Warning,
                "SyncFailed",
                "Sync",
                format!("sync of {rev} ({reason}) failed: {why}; {summary}"),
            ));
        } else {
            notes.push(note(
                EventType::Normal,
                "SyncSucceeded",
                "Sync",
                if *result == SyncState::OutOfSync {
                    format!("synced {rev} ({reason}): {summary}; drift the policy corrects remains")
                } else {
                    format!("synced {rev} ({reason}): {summary}")
                },
            ));
        }
    }
    let changed = outcomes.get(Outcome::Created) + outcomes.get(Outcome::Configured);
    if changed > 0 {
        notes.push(note(
            EventType::Normal,
            "Applied",
            "Apply",
            format!(
                "{rev}: {}: {}",
                counts(outcomes, &[Outcome::Created, Outcome::Configured]),
                named(pending.applied, changed)
            ),
        ));
    }
    let pruned = outcomes.get(Outcome::Pruned);
    if pruned > 0 {
        notes.push(note(
            EventType::Normal,
            "Pruned",
            "Prune",
            format!("{rev}: {pruned} pruned: {}", named(pending.pruned, pruned)),
        ));
    }
    notes
}

fn other_notes(activity: &Activity) -> Option<Note> {
    let (tier, type_, reason, action, message) = match activity {
        Activity::DriftFound {
            tier,
            revision,
            items,
        } => {
            let mut per: BTreeMap<Severity, usize> = BTreeMap::new();
            for i in items {
                *per.entry(i.severity).or_default() += 1;
            }
            let by_severity = per
                .iter()
                .rev()
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut listed: Vec<String> = items
                .iter()
                .take(NAMED)
                .map(|i| {
                    let paths = match &i.field_path {
                        None => String::new(),
                        Some(path) => format!(" {path}"),
                    };
                    format!("{}{paths} ({}, {})", i.key, i.severity, i.action.as_str())
                })
                .collect();
            if items.len() > NAMED {
                listed.push(format!("and {} more", items.len() - NAMED));
            }
            let critical = per.contains_key(&Severity::Critical);
            (
                tier,
                if critical {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                "DriftDetected",
                "DetectDrift",
                format!(
                    "{} drift items at {} ({by_severity}): {}",
                    items.len(),
                    revision.abbrev(),
                    listed.join("; ")
                ),
            )
        }
        Activity::RolledBack {
            tier,
            from,
            to,
            reason,
        } => (
            tier,
            EventType::Warning,
            "RolledBack",
            "Rollback",
            format!(
                "rolled back from {} to {}: {reason}",
                from.abbrev(),
                to.abbrev()
            ),
        ),
        Activity::PromotionBlocked {
            tier,
            revision,
            reason,
            ..
        } => (
            tier,
            EventType::Warning,
            "PromotionBlocked",
            "Promote",
            format!("{} is held back: {reason}", revision.abbrev()),
        ),
        Activity::PruneRefused {
            tier,
            revision,
            objects,
            reason,
        } => (
            tier,
            EventType::Warning,
            "PruneRefused",
            "Prune",
            format!(
                "{objects} objects that left git at {} are kept: {reason}",
                revision.abbrev()
            ),
        ),
        Activity::HistoryRewritten {
            tier,
            git_ref,
            from,
            to,
        } => (
            tier,
            EventType::Warning,
            "HistoryRewritten",
            "Fetch",
            format!(
                "the history of {git_ref} was rewritten (force-push): {} -> {}, which does not descend from it; following {}",
                from.abbrev(),
                to.abbrev(),
                to.abbrev()
            ),
        ),
        Activity::HealthChanged {
            tier,
            revision,
            from,
            to,
        } => (
            tier,
            if *to == Health::Degraded {
                EventType::Warning
            } else {
                EventType::Normal
            },
            "HealthChanged",
            "AssessHealth",
            format!("{from:?} -> {to:?} at {}", revision.abbrev()),
        ),
        _ => return None,
    };
    Some(Note {
        tier: tier.clone(),
        type_,
        reason,
        action,
        message: truncate(message),
    })
}

/// An Event published, and when it was last seen, for the series.
struct Published {
    name: String,
    count: i32,
    last: Instant,
}

/// Publishes [`Note`]s as `events.k8s.io/v1` Events regarding `gitopsd-state-<tier>`.
pub struct Publisher {
    client: kube::Client,
    namespace: String,
    instance: String,
    recent: HashMap<Note, Published>,
    /// The state ConfigMap's uid per tier, once it exists.
    uids: HashMap<String, String>,
}

impl Publisher {
    pub fn new(client: kube::Client, namespace: &str) -> Publisher {
        Publisher {
            client,
            namespace: namespace.to_owned(),
            instance: instance(),
            recent: HashMap::new(),
            uids: HashMap::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Note>) {
        while let Some(note) = rx.recv().await {
            if let Err(e) = self.publish(&note).await {
                warn!(
                    tier = %note.tier,
                    reason = note.reason,
                    namespace = %self.namespace,
                    error = %e,
                    "cannot publish a Kubernetes Event (gitopsd needs create and patch on events.k8s.io events in its state namespace)"
                );
            }
        }
    }

    /// Creates the Event, or counts it in the series of an identical recent one.
    pub async fn publish(&mut self, note: &Note) -> Result<(), kube::Error> {
        let now = Instant::now();
        self.recent
            .retain(|_, p| now.duration_since(p.last) < SERIES_WINDOW);
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        if let Some(p) = self.recent.get_mut(note) {
            let count = p.count + 1;
            let patch = serde_json::json!({
                "series": {"count": count, "lastObservedTime": MicroTime(Timestamp::now())},
            });
            match api
                .patch(&p.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    p.count = count;
                    p.last = now;
                    return Ok(());
                }
                // Expired (the API server's event TTL) or deleted: start a new one.
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let regarding = self.regarding(&note.tier).await;
        let name = format!(
            "{}.{:x}",
            StateStore::config_map_name(&note.tier),
            Timestamp::now().as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    CONTROLLER.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(Timestamp::now())),
            type_: Some(note.type_.as_str().to_owned()),
            reason: Some(note.reason.to_owned()),
            action: Some(note.action.to_owned()),
            note: Some(note.message.clone()),
            regarding: Some(regarding),
            reporting_controller: Some(CONTROLLER.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        api.create(&PostParams::default(), &event).await?;
        debug!(tier = %note.tier, reason = note.reason, name = %name, "event published");
        if self.recent.len() < 1024 {
            self.recent.insert(
                note.clone(),
                Published {
                    name,
                    count: 1,
                    last: now,
                },
            );
        }
        Ok(())
    }

    /// The tier's state ConfigMap, with its uid when it exists.
    async fn regarding(&mut self, tier: &str) -> ObjectReference {
        let name = StateStore::config_map_name(tier);
        if !self.uids.contains_key(tier) {
            let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            if let Ok(Some(cm)) = cms.get_opt(&name).await
                && let Some(uid) = cm.metadata.uid
            {
                self.uids.insert(tier.to_owned(), uid);
            }
        }
        ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("ConfigMap".to_owned()),
            namespace: Some(self.namespace.clone()),
            name: Some(name),
            uid: self.uids.get(tier).cloned(),
            ..ObjectReference::default()
        }
    }
}

/// Who reports: the pod's name in a cluster (`POD_NAME` or `HOSTNAME`), else `gitopsd`.
fn instance() -> String {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .map(|s| s.chars().take(128).collect())
        .unwrap_or_else(|| CONTROLLER.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::ObjectKey;

    fn observer() -> (EventsObserver, mpsc::Receiver<Note>) {
        let (tx, rx) = mpsc::channel(2);
        (EventsObserver::new(tx), rx)
    }

    fn object(name: &str, outcome: Outcome) -> Activity {
        Activity::ObjectApplied {
            tier: "t".into(),
            revision: "0123456789abcdef".into(),
            object: ObjectKey {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("t".into()),
                name: name.into(),
            },
            outcome,
            message: None,
        }
    }

    fn sync(outcomes: &[(Outcome, usize)], reason: &str, error: Option<&str>) -> Activity {
        Activity::SyncFinished {
            tier: "t".into(),
            revision: "0123456789abcdef".into(),
            reason: reason.into(),
            result: if error.is_some() {
                SyncState::Failed
            } else {
                SyncState::Synced
            },
            duration: Duration::from_millis(5),
            outcomes: outcomes.iter().copied().collect(),
            error: error.map(str::to_owned),
            notable: true,
            window_closed: false,
        }
    }

    #[test]
    fn a_sync_makes_one_summary_event_per_kind_of_change_not_one_per_object() {
        let (o, _rx) = observer();
        for name in ["e", "d", "c", "b", "a"] {
            assert!(o.notes(&object(name, Outcome::Created)).is_empty());
        }
        assert!(o.notes(&object("old", Outcome::Pruned)).is_empty());
        let notes = o.notes(&sync(
            &[
                (Outcome::Created, 5),
                (Outcome::Unchanged, 2),
                (Outcome::Pruned, 1),
            ],
            "revision",
            None,
        ));
        let reasons: Vec<_> = notes.iter().map(|n| n.reason).collect();
        assert_eq!(reasons, ["SyncSucceeded", "Applied", "Pruned"]);
        assert_eq!(
            notes[0].message,
            "synced 0123456 (revision): 5 created, 1 pruned, 2 unchanged"
        );
        assert_eq!(
            notes[1].message,
            "0123456: 5 created: ConfigMap t/a, ConfigMap t/b, ConfigMap t/c and 2 more"
        );
        assert_eq!(notes[2].message, "0123456: 1 pruned: ConfigMap t/old");
        assert!(notes.iter().all(|n| n.type_ == EventType::Normal));
        // The names were for that sync only.
        let again = o.notes(&sync(&[(Outcome::Unchanged, 7)], "trigger", None));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].message, "synced 0123456 (trigger): 7 unchanged");
    }

    #[test]
    fn failures_rollbacks_critical_drift_and_degraded_health_are_warnings() {
        let (o, _rx) = observer();
        let failed = o.notes(&sync(&[], "revision", Some("render failed: x")));
        assert_eq!(failed[0].reason, "SyncFailed");
        assert_eq!(failed[0].type_, EventType::Warning);
        let quiet = Activity::SyncFinished {
            tier: "t".into(),
            revision: "r".into(),
            reason: "interval".into(),
            result: SyncState::Synced,
            duration: Duration::ZERO,
            outcomes: Tally::default(),
            error: None,
            notable: false,
            window_closed: false,
        };
        assert!(o.notes(&quiet).is_empty());
        let rb = o.notes(&Activity::RolledBack {
            tier: "t".into(),
            from: "bbbbbbbbbb".into(),
            to: "aaaaaaaaaa".into(),
            reason: "not healthy within 2m".into(),
        });
        assert_eq!(rb[0].reason, "RolledBack");
        assert_eq!(rb[0].type_, EventType::Warning);
        let health = |to| {
            o.notes(&Activity::HealthChanged {
                tier: "t".into(),
                revision: "r".into(),
                from: Health::Progressing,
                to,
            })
        };
        assert_eq!(health(Health::Degraded)[0].type_, EventType::Warning);
        assert_eq!(health(Health::Healthy)[0].type_, EventType::Normal);
        assert_eq!(
            health(Health::Healthy)[0].message,
            "Progressing -> Healthy at r"
        );
    }

    #[test]
    fn a_history_rewrite_is_a_warning_naming_the_ref_and_both_commits() {
        let (o, _rx) = observer();
        let notes = o.notes(&Activity::HistoryRewritten {
            tier: "validation".into(),
            git_ref: "main".into(),
            from: format!("bbbbbbb{}", "0".repeat(33)).into(),
            to: format!("aaaaaaa{}", "0".repeat(33)).into(),
        });
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].tier, "validation");
        assert_eq!(notes[0].type_, EventType::Warning);
        assert_eq!(notes[0].reason, "HistoryRewritten");
        assert!(
            notes[0].message.contains("main") && notes[0].message.contains("bbbbbbb -> aaaaaaa"),
            "{}",
            notes[0].message
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let (o, _rx) = observer();
        for _ in 0..5 {
            o.observe(&sync(&[(Outcome::Unchanged, 1)], "trigger", None));
        }
        assert_eq!(o.dropped(), 3);
    }

    #[test]
    fn a_long_message_is_cut_to_the_api_limit_on_a_char_boundary() {
        let s = truncate("é".repeat(800));
        assert!(s.len() <= MAX_NOTE, "{}", s.len());
        assert!(s.ends_with("..."));
    }
}
