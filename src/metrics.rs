//! Prometheus metrics: one struct owns every collector, registered once at start-up.
//!
//! Two sources feed it. What happens (syncs, applies, drift found, fetches, rollbacks) arrives
//! as [`Activity`]: counters and histograms, recorded by [`Observer::observe`]. What *is* (a
//! tier's revision, sync state, health, current drift, change window) is read from the tiers'
//! [`StatusHandle`]s at scrape time, so a gauge can never disagree with `GET /api/v1/tiers`.
//!
//! Labels take only bounded values: tier names, revisions (one series per tier at a time),
//! fixed enums, Kubernetes kinds; never an object's name.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec,
    Registry, TextEncoder,
};

use crate::activity::{Activity, Observer};
use crate::apply::Outcome;
use crate::config::{Action, ChangeWindow};
use crate::health::Health;
use crate::live::RequestCounter;
use crate::reconcile::HoldKind;
use crate::revision::Revision;
use crate::status::{StatusHandle, SyncState, TierStatus};

/// Every health a tier can have: `gitopsd_tier_health` has one series for each.
const HEALTHS: [Health; 5] = [
    Health::Healthy,
    Health::Progressing,
    Health::Degraded,
    Health::Missing,
    Health::Unknown,
];
/// The `result` of `gitopsd_sync_total` for a sync that a closed change window held back (a
/// revision or drift corrections wait), whatever its state.
pub const WINDOW_CLOSED: &str = "window_closed";
mod families;

const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];
/// The `Content-Type` of [`Metrics::render`]'s text (exposition format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot register the metric {name}: {source}")]
    Register {
        name: String,
        #[source]
        source: prometheus::Error,
    },
}

/// The `result` label of `gitopsd_sync_total`: the sync state in snake case, as Prometheus
/// label values usually are (`out_of_sync`, not `OutOfSync`).
pub fn sync_result(state: SyncState) -> &'static str {
    match state {
        SyncState::Unknown => "unknown",
        SyncState::Synced => "synced",
        SyncState::OutOfSync => "out_of_sync",
        SyncState::Failed => "failed",
        SyncState::Blocked => "blocked",
    }
}

/// What holds a blocked tier back: the hold of its newest revision, or, with none, a closed
/// change window (drift corrections wait for it). `None` while the tier is not blocked.
fn held_by(s: &TierStatus) -> Option<HoldKind> {
    (s.sync == SyncState::Blocked).then(|| s.held_by.unwrap_or(HoldKind::Window))
}

/// Seconds since the Unix epoch, the unit of Prometheus timestamps (`time()`).
fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Every collector of the daemon, and what it needs to refresh the state gauges.
pub struct Metrics {
    registry: Registry,
    tier_info: IntGaugeVec,
    tier_synced: IntGaugeVec,
    tier_health: IntGaugeVec,
    drift_objects: IntGaugeVec,
    drift_unresolved: IntGaugeVec,
    dryrun_cache_entries: IntGaugeVec,
    drift_detected: IntCounterVec,
    sync_total: IntCounterVec,
    sync_duration: HistogramVec,
    deployment_duration: HistogramVec,
    commit_to_applied: HistogramVec,
    rollback_total: IntCounterVec,
    apply_objects: IntCounterVec,
    fetch_duration: Histogram,
    fetch_errors: IntCounter,
    last_successful_fetch: Gauge,
    last_sync: GaugeVec,
    /// Set from `SyncFinished` (the status keeps no such time): no series before the first.
    last_successful_sync: GaugeVec,
    source_last_fetch: GaugeVec,
    source_stale: IntGaugeVec,
    source_rewrites: IntCounterVec,
    kube_requests: IntCounterVec,
    webhook_requests: IntCounterVec,
    notifications: IntCounterVec,
    http_refused: IntCounterVec,
    window_open: IntGaugeVec,
    promotion_blocked: IntGaugeVec,
    leader: IntGaugeVec,
    /// Each tier's change windows, for `gitopsd_change_window_open`.
    windows: BTreeMap<String, Vec<ChangeWindow>>,
    /// The kube client's request counts, copied into `gitopsd_kube_requests_total` at scrape.
    kube: Option<RequestCounter>,
    /// One scrape refreshes the gauges at a time; it holds the revision each tier's
    /// `gitopsd_tier_info` series carries, so the old one is removed when it changes.
    scrape: Mutex<BTreeMap<String, Revision>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metrics({} tiers)", self.windows.len())
    }
}

impl Metrics {
    /// `gitopsd_http_refused_total{reason}`, for the status endpoint's refusal guard to count
    /// into (a handle on the same counters).
    pub fn http_refused(&self) -> IntCounterVec {
        self.http_refused.clone()
    }

    /// `gitopsd_notifications_total{sink, result}`, for the notifier to count deliveries into.
    pub fn notifications(&self) -> IntCounterVec {
        self.notifications.clone()
    }

    /// Whether this replica leads, for `gitopsd_leader` (set at each scrape).
    pub fn set_leading(&self, leading: bool) {
        self.leader
            .with_label_values(&[] as &[&str])
            .set(i64::from(leading));
    }

    /// The text exposition of every metric, the state gauges refreshed from `tiers` first.
    pub fn render(&self, tiers: &[(String, StatusHandle)]) -> String {
        let statuses: Vec<TierStatus> = tiers.iter().map(|(_, s)| s.snapshot()).collect();
        self.refresh(&statuses, Utc::now());
        let mut out = Vec::new();
        // Encoding to a Vec fails only on a metric family that is malformed, which the
        // registry does not produce; what was written is still the best answer.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sets the state gauges from the tiers' status, and copies the kube request counts.
    fn refresh(&self, statuses: &[TierStatus], now: chrono::DateTime<Utc>) {
        let mut revisions = match self.scrape.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        for s in statuses {
            let tier = s.tier.as_str();
            // tier_info: one series per tier, for the revision it deploys now.
            let current = s.revision.clone();
            if let Some(old) = revisions.get(tier)
                && Some(old) != current.as_ref()
            {
                let _ = self.tier_info.remove_label_values(&[tier, old.as_str()]);
                revisions.remove(tier);
            }
            if let Some(rev) = current {
                self.tier_info
                    .with_label_values(&[tier, rev.as_str()])
                    .set(1);
                revisions.insert(tier.to_owned(), rev);
            }
            self.tier_synced
                .with_label_values(&[tier])
                .set(i64::from(s.sync == SyncState::Synced));
            let held_by = held_by(s);
            for kind in HoldKind::ALL {
                self.promotion_blocked
                    .with_label_values(&[tier, kind.as_str()])
                    .set(i64::from(held_by == Some(kind)));
            }
            for h in HEALTHS {
                self.tier_health
                    .with_label_values(&[tier, h.as_str()])
                    .set(i64::from(s.health == h));
            }
            let counts = s
                .drift
                .as_ref()
                .map(|d| d.counts.clone())
                .unwrap_or_default();
            for (severity, n) in
                SEVERITIES
                    .iter()
                    .zip([counts.critical, counts.high, counts.medium, counts.low])
            {
                self.drift_objects
                    .with_label_values(&[tier, severity])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            // `ignore` means neither corrected nor reported: not unresolved either.
            let mut unresolved = [0i64; SEVERITIES.len()];
            for item in s.drift.iter().flat_map(|d| &d.items) {
                let at = SEVERITIES.iter().position(|v| *v == item.severity.as_str());
                if item.action != Action::Ignore
                    && let Some(i) = at
                {
                    unresolved[i] += 1;
                }
            }
            for (severity, n) in SEVERITIES.iter().zip(unresolved) {
                self.drift_unresolved
                    .with_label_values(&[tier, severity])
                    .set(n);
            }
            self.dryrun_cache_entries
                .with_label_values(&[tier])
                .set(i64::try_from(s.dry_run_cache_entries).unwrap_or(i64::MAX));
            // No series before the first reconcile: 0 would read as 1970.
            if let Some(at) = s.last_reconcile_at {
                self.last_sync
                    .with_label_values(&[tier])
                    .set(at.timestamp_millis() as f64 / 1000.0);
            }
            if let Some(at) = s.source.last_fetch_at {
                self.source_last_fetch
                    .with_label_values(&[tier])
                    .set(at.timestamp_millis() as f64 / 1000.0);
            }
            self.source_stale
                .with_label_values(&[tier])
                .set(i64::from(s.source.stale));
            let windows = self.windows.get(tier).map(Vec::as_slice).unwrap_or(&[]);
            self.window_open
                .with_label_values(&[tier])
                .set(i64::from(crate::window::window_open(windows, now)));
        }
        if let Some(kube) = &self.kube {
            // The counter is the source of truth; the Prometheus counter catches up to it.
            for (verb, code, n) in kube.by_verb_and_code() {
                let c = self.kube_requests.with_label_values(&[verb, code]);
                c.inc_by(n.saturating_sub(c.get()));
            }
        }
    }

    fn observe_duration(h: &HistogramVec, tier: &str, d: Duration) {
        h.with_label_values(&[tier]).observe(d.as_secs_f64());
    }
}

impl Observer for Metrics {
    fn observe(&self, activity: &Activity) {
        match activity {
            Activity::Fetched { duration, error } => {
                self.fetch_duration.observe(duration.as_secs_f64());
                if error.is_some() {
                    self.fetch_errors.inc();
                } else {
                    self.last_successful_fetch
                        .set(unix_seconds(SystemTime::now()));
                }
            }
            Activity::SyncFinished {
                tier,
                result,
                duration,
                window_closed,
                error,
                ..
            } => {
                if succeeded(*result, error.as_deref()) {
                    self.last_successful_sync
                        .with_label_values(&[tier])
                        .set(Utc::now().timestamp_millis() as f64 / 1000.0);
                }
                // Objects are counted from ObjectApplied, not from `outcomes`, so never twice.
                let result = if *window_closed {
                    WINDOW_CLOSED
                } else {
                    sync_result(*result)
                };
                self.sync_total.with_label_values(&[tier, result]).inc();
                Self::observe_duration(&self.sync_duration, tier, *duration);
            }
            Activity::ObjectApplied { tier, outcome, .. } => {
                if *outcome != Outcome::Unchanged {
                    self.apply_objects
                        .with_label_values(&[tier, outcome.as_str()])
                        .inc();
                }
            }
            Activity::DriftFound { tier, items, .. } => {
                for item in items {
                    self.drift_detected
                        .with_label_values(&[tier, item.severity.as_str(), &item.key.kind])
                        .inc();
                }
            }
            Activity::RevisionApplied {
                tier,
                since_arrival,
                ..
            } => Self::observe_duration(&self.commit_to_applied, tier, *since_arrival),
            Activity::RevisionHealthy {
                tier,
                since_arrival,
                ..
            } => Self::observe_duration(&self.deployment_duration, tier, *since_arrival),
            Activity::RolledBack { tier, .. } => {
                self.rollback_total.with_label_values(&[tier]).inc();
            }
            // State, read from the status at scrape time.
            Activity::HistoryRewritten { tier, .. } => {
                self.source_rewrites.with_label_values(&[tier]).inc();
            }
            Activity::WebhookDelivery { result } => {
                self.webhook_requests
                    .with_label_values(&[result.label()])
                    .inc();
            }
            Activity::HealthChanged { .. }
            | Activity::PromotionBlocked { .. }
            | Activity::PruneRefused { .. }
            | Activity::ManualSync { .. } => {}
        }
    }
}

/// A sync that ran to its end without an error: the tier matches git, or differs only where
/// the policy says to alert. Failed and Blocked syncs, and one whose record carries an error (a
/// refused prune, a failing fetch), are not.
fn succeeded(result: SyncState, error: Option<&str>) -> bool {
    matches!(result, SyncState::Synced | SyncState::OutOfSync) && error.is_none()
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::activity::WebhookResult;
    use crate::classify::{DriftItem, Severity};
    use crate::config::TierConfig;
    use crate::drift::{DriftReport, SeverityCounts};
    use crate::live::{ObjectKey, Verb};

    const TIER: &str = "validation";

    fn tier(extra: &str) -> TierConfig {
        serde_yaml::from_str(&format!(
            "{{name: {TIER}, ref: main, namespaces: [shop]{extra}}}"
        ))
        .expect("test tier parses")
    }

    fn metrics() -> (Metrics, Vec<(String, StatusHandle)>) {
        let m = Metrics::new(&[tier("")], Some(RequestCounter::new())).expect("metrics");
        (m, vec![(TIER.to_owned(), StatusHandle::new(TIER))])
    }

    /// The value of one series, named with its labels as the exposition writes them.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Every series of `name` (labels included), without comments.
    fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .collect()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_metrics_are_exported() {
        let (m, tiers) = metrics();
        let text = m.render(&tiers);
        // A test process may not have used a whole second of CPU yet: present is enough there.
        assert!(
            value(&text, "process_cpu_seconds_total").is_some(),
            "{text}"
        );
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                value(&text, name).is_some_and(|v| v > 0.0),
                "{name} in:\n{text}"
            );
        }
    }

    #[test]
    fn the_last_successful_sync_is_set_by_a_sync_that_ended_without_an_error() {
        let (m, tiers) = metrics();
        let finished = |result: SyncState, error: Option<&str>| Activity::SyncFinished {
            tier: TIER.into(),
            revision: "abc".into(),
            reason: "interval".into(),
            result,
            duration: Duration::from_millis(10),
            outcomes: crate::apply::Tally::default(),
            error: error.map(str::to_owned),
            notable: false,
            window_closed: false,
        };
        let name = "gitopsd_last_successful_sync_timestamp_seconds";
        for (result, error) in [
            (SyncState::Failed, Some("render failed")),
            (SyncState::Blocked, None),
            (SyncState::OutOfSync, Some("prune refused")),
        ] {
            m.observe(&finished(result, error));
            assert!(series(&m.render(&tiers), name).is_empty(), "{result:?}");
        }
        let before = Utc::now().timestamp() as f64;
        m.observe(&finished(SyncState::OutOfSync, None));
        let at = value(&m.render(&tiers), &format!(r#"{name}{{tier="{TIER}"}}"#))
            .expect("set by an OutOfSync sync with only alerts");
        assert!(at >= before, "{at} < {before}");
        m.observe(&finished(SyncState::Failed, Some("fetch failed")));
        assert_eq!(
            value(&m.render(&tiers), &format!(r#"{name}{{tier="{TIER}"}}"#)),
            Some(at),
            "a failure leaves the last success"
        );
    }

    fn drift_item(kind: &str, severity: Severity) -> DriftItem {
        DriftItem {
            key: crate::object::ObjectKey {
                api_version: "v1".into(),
                kind: kind.into(),
                namespace: Some("shop".into()),
                name: "api".into(),
            },
            desired: None,
            live: None,
            severity,
            rule: "test".into(),
            action: crate::config::Action::Alert,
            field_path: None,
            foreign: None,
            reason: None,
        }
    }

    fn applied(outcome: Outcome) -> Activity {
        Activity::ObjectApplied {
            tier: TIER.into(),
            revision: "abc".into(),
            object: ObjectKey {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("shop".into()),
                name: "api".into(),
            },
            outcome,
            message: None,
        }
    }

    #[test]
    fn activity_is_counted_by_tier_and_bounded_labels() {
        let (m, tiers) = metrics();
        m.observe(&Activity::SyncFinished {
            tier: TIER.into(),
            revision: "abc".into(),
            reason: "revision".into(),
            result: SyncState::OutOfSync,
            duration: Duration::from_millis(2500),
            outcomes: crate::apply::Tally::from([(crate::apply::Outcome::Created, 2)]),
            error: None,
            notable: true,
            window_closed: false,
        });
        m.observe(&applied(Outcome::Created));
        m.observe(&applied(Outcome::Created));
        m.observe(&applied(Outcome::Failed));
        m.observe(&applied(Outcome::Unchanged));
        m.observe(&Activity::DriftFound {
            tier: TIER.into(),
            revision: "abc".into(),
            items: vec![
                drift_item("Deployment", Severity::Critical),
                drift_item("Deployment", Severity::Critical),
                drift_item("ConfigMap", Severity::Low),
            ],
        });
        m.observe(&Activity::RevisionApplied {
            tier: TIER.into(),
            revision: "abc".into(),
            since_arrival: Duration::from_secs(3),
        });
        m.observe(&Activity::RevisionHealthy {
            tier: TIER.into(),
            revision: "abc".into(),
            since_arrival: Duration::from_secs(90),
        });
        m.observe(&Activity::RolledBack {
            tier: TIER.into(),
            from: "abc".into(),
            to: "def".into(),
            reason: "unhealthy".into(),
        });
        let text = m.render(&tiers);
        let t = r#"tier="validation""#;
        for (s, want) in [
            (
                format!(r#"gitopsd_sync_total{{result="out_of_sync",{t}}}"#),
                1.0,
            ),
            (format!(r#"gitopsd_sync_total{{result="synced",{t}}}"#), 0.0),
            (format!(r#"gitopsd_sync_total{{result="failed",{t}}}"#), 0.0),
            (
                format!(r#"gitopsd_sync_total{{result="blocked",{t}}}"#),
                0.0,
            ),
            (
                format!(r#"gitopsd_sync_duration_seconds_count{{{t}}}"#),
                1.0,
            ),
            (format!(r#"gitopsd_sync_duration_seconds_sum{{{t}}}"#), 2.5),
            (
                format!(r#"gitopsd_sync_duration_seconds_bucket{{{t},le="2.5"}}"#),
                1.0,
            ),
            (
                format!(r#"gitopsd_sync_duration_seconds_bucket{{{t},le="1"}}"#),
                0.0,
            ),
            (
                format!(r#"gitopsd_apply_objects_total{{action="created",{t}}}"#),
                2.0,
            ),
            (
                format!(r#"gitopsd_apply_objects_total{{action="failed",{t}}}"#),
                1.0,
            ),
            (
                format!(r#"gitopsd_apply_objects_total{{action="pruned",{t}}}"#),
                0.0,
            ),
            (
                format!(r#"gitopsd_apply_objects_total{{action="configured",{t}}}"#),
                0.0,
            ),
            (
                format!(
                    r#"gitopsd_drift_detected_total{{kind="Deployment",severity="critical",{t}}}"#
                ),
                2.0,
            ),
            (
                format!(r#"gitopsd_drift_detected_total{{kind="ConfigMap",severity="low",{t}}}"#),
                1.0,
            ),
            (
                format!(r#"gitopsd_commit_to_applied_seconds_sum{{{t}}}"#),
                3.0,
            ),
            (
                format!(r#"gitopsd_deployment_duration_seconds_sum{{{t}}}"#),
                90.0,
            ),
            (
                format!(r#"gitopsd_deployment_duration_seconds_bucket{{{t},le="120"}}"#),
                1.0,
            ),
            (
                format!(r#"gitopsd_deployment_duration_seconds_bucket{{{t},le="+Inf"}}"#),
                1.0,
            ),
            (format!(r#"gitopsd_rollback_total{{{t}}}"#), 1.0),
        ] {
            assert_eq!(value(&text, &s), Some(want), "{s} in:\n{text}");
        }
        // `unchanged` is no action: no series for it.
        assert!(!text.contains(r#"action="unchanged""#), "{text}");
        assert_eq!(
            series(&text, "gitopsd_apply_objects_total").len(),
            4,
            "{text}"
        );
    }

    #[test]
    fn a_failed_fetch_counts_an_error_and_leaves_the_last_success_time() {
        let (m, tiers) = metrics();
        let before = unix_seconds(SystemTime::now());
        m.observe(&Activity::Fetched {
            duration: Duration::from_millis(40),
            error: None,
        });
        let text = m.render(&tiers);
        let at = value(&text, "gitopsd_last_successful_fetch_timestamp_seconds").expect("set");
        assert!(at >= before.floor(), "{at} < {before}");
        assert_eq!(value(&text, "gitopsd_git_fetch_errors_total"), Some(0.0));
        m.observe(&Activity::Fetched {
            duration: Duration::from_secs(3),
            error: Some("connection refused".into()),
        });
        let text = m.render(&tiers);
        assert_eq!(value(&text, "gitopsd_git_fetch_errors_total"), Some(1.0));
        assert_eq!(
            value(&text, "gitopsd_git_fetch_duration_seconds_count"),
            Some(2.0)
        );
        assert_eq!(
            value(&text, "gitopsd_git_fetch_duration_seconds_sum"),
            Some(3.04)
        );
        assert_eq!(
            value(&text, "gitopsd_last_successful_fetch_timestamp_seconds"),
            Some(at)
        );
    }

    #[test]
    fn the_source_of_each_tier_is_measured_rewrites_last_fetch_and_staleness() {
        let (m, tiers) = metrics();
        let t = r#"tier="validation""#;
        let text = m.render(&tiers);
        let rewrites = format!("gitopsd_source_rewrites_total{{{t}}}");
        let stale = format!("gitopsd_source_stale{{{t}}}");
        assert_eq!(value(&text, &rewrites), Some(0.0), "from the start");
        assert_eq!(value(&text, &stale), Some(0.0));
        assert!(series(&text, "gitopsd_source_last_fetch_timestamp_seconds").is_empty());

        m.observe(&Activity::HistoryRewritten {
            tier: TIER.into(),
            git_ref: "main".into(),
            from: "b".repeat(40).into(),
            to: "a".repeat(40).into(),
        });
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        tiers[0].1.update(|s| {
            s.source.last_fetch_at = Some(at);
            s.source.stale = true;
        });
        let text = m.render(&tiers);
        assert_eq!(value(&text, &rewrites), Some(1.0));
        assert_eq!(value(&text, &stale), Some(1.0));
        assert_eq!(
            value(
                &text,
                &format!("gitopsd_source_last_fetch_timestamp_seconds{{{t}}}")
            ),
            Some(at.timestamp() as f64)
        );
    }

    #[test]
    fn state_gauges_are_read_from_the_status_at_scrape_time() {
        let (m, tiers) = metrics();
        let t = r#"tier="validation""#;
        // Before the first sync: not synced, health Unknown, no drift, no last sync time.
        let text = m.render(&tiers);
        assert_eq!(
            value(&text, &format!("gitopsd_tier_synced{{{t}}}")),
            Some(0.0)
        );
        assert_eq!(
            value(
                &text,
                &format!(r#"gitopsd_tier_health{{status="Unknown",{t}}}"#)
            ),
            Some(1.0)
        );
        assert!(series(&text, "gitopsd_tier_info").is_empty(), "{text}");
        assert!(series(&text, "gitopsd_last_sync_timestamp_seconds").is_empty());

        let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00.5Z")
            .expect("time")
            .with_timezone(&Utc);
        tiers[0].1.update(|s| {
            s.revision = Some("abc".into());
            s.sync = SyncState::Synced;
            s.health = Health::Degraded;
            s.last_reconcile_at = Some(at);
            s.drift = Some(DriftReport {
                tier: TIER.into(),
                items: Vec::new(),
                in_sync: 3,
                drifted: 2,
                counts: SeverityCounts {
                    critical: 1,
                    high: 0,
                    medium: 0,
                    low: 2,
                },
                dismissed_by_dry_run: 0,
            });
        });
        let text = m.render(&tiers);
        for (s, want) in [
            (format!(r#"gitopsd_tier_info{{revision="abc",{t}}}"#), 1.0),
            (format!("gitopsd_tier_synced{{{t}}}"), 1.0),
            (
                format!(r#"gitopsd_promotion_blocked{{held_by="window",{t}}}"#),
                0.0,
            ),
            (
                format!(r#"gitopsd_promotion_blocked{{held_by="promotion-gate",{t}}}"#),
                0.0,
            ),
            (
                format!(r#"gitopsd_tier_health{{status="Degraded",{t}}}"#),
                1.0,
            ),
            (
                format!(r#"gitopsd_tier_health{{status="Healthy",{t}}}"#),
                0.0,
            ),
            (
                format!(r#"gitopsd_tier_health{{status="Unknown",{t}}}"#),
                0.0,
            ),
            (
                format!(r#"gitopsd_drift_objects{{severity="critical",{t}}}"#),
                1.0,
            ),
            (
                format!(r#"gitopsd_drift_objects{{severity="high",{t}}}"#),
                0.0,
            ),
            (
                format!(r#"gitopsd_drift_objects{{severity="medium",{t}}}"#),
                0.0,
            ),
            (
                format!(r#"gitopsd_drift_objects{{severity="low",{t}}}"#),
                2.0,
            ),
            (
                format!("gitopsd_last_sync_timestamp_seconds{{{t}}}"),
                1_795_428_000.5,
            ),
            (format!("gitopsd_change_window_open{{{t}}}"), 1.0),
        ] {
            assert_eq!(value(&text, &s), Some(want), "{s} in:\n{text}");
        }
        assert_eq!(series(&text, "gitopsd_tier_health").len(), 5, "{text}");
        assert_eq!(series(&text, "gitopsd_drift_objects").len(), 4, "{text}");

        // Blocked with no held revision: drift corrections wait for a closed window.
        tiers[0].1.update(|s| s.sync = SyncState::Blocked);
        let text = m.render(&tiers);
        assert_eq!(
            value(
                &text,
                &format!(r#"gitopsd_promotion_blocked{{held_by="window",{t}}}"#)
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, &format!("gitopsd_tier_synced{{{t}}}")),
            Some(0.0)
        );
    }

    #[test]
    fn tier_info_drops_the_old_revision_when_the_revision_changes() {
        let (m, tiers) = metrics();
        tiers[0].1.update(|s| s.revision = Some("abc".into()));
        let text = m.render(&tiers);
        assert_eq!(
            series(&text, "gitopsd_tier_info"),
            vec![r#"gitopsd_tier_info{revision="abc",tier="validation"} 1"#]
        );
        tiers[0].1.update(|s| s.revision = Some("def".into()));
        let text = m.render(&tiers);
        assert_eq!(
            series(&text, "gitopsd_tier_info"),
            vec![r#"gitopsd_tier_info{revision="def",tier="validation"} 1"#]
        );
    }

    #[test]
    fn a_tier_outside_its_change_windows_reports_the_window_closed() {
        // A window that is never open: 1 minute on the 30th of February.
        let tiers_config = [tier(
            ", windows: [{schedule: \"0 0 30 2 *\", duration: 1m}]",
        )];
        let m = Metrics::new(&tiers_config, None).expect("metrics");
        let tiers = vec![(TIER.to_owned(), StatusHandle::new(TIER))];
        let text = m.render(&tiers);
        assert_eq!(
            value(&text, r#"gitopsd_change_window_open{tier="validation"}"#),
            Some(0.0),
            "{text}"
        );
    }

    #[test]
    fn kube_requests_follow_the_clients_counter() {
        let counter = RequestCounter::new();
        let m = Metrics::new(&[tier("")], Some(counter.clone())).expect("metrics");
        counter.record_answer(Verb::Patch, Some(200));
        counter.record_answer(Verb::Patch, Some(409));
        counter.record_answer(Verb::Read, Some(503));
        let text = m.render(&[]);
        assert_eq!(
            value(
                &text,
                r#"gitopsd_kube_requests_total{code="409",verb="patch"}"#
            ),
            Some(1.0)
        );
        counter.record_answer(Verb::Patch, Some(409));
        // Two scrapes in a row do not count anything twice.
        let _ = m.render(&[]);
        let text = m.render(&[]);
        assert_eq!(
            series(&text, "gitopsd_kube_requests_total"),
            vec![
                r#"gitopsd_kube_requests_total{code="200",verb="patch"} 1"#,
                r#"gitopsd_kube_requests_total{code="409",verb="patch"} 2"#,
                r#"gitopsd_kube_requests_total{code="5xx",verb="read"} 1"#,
            ]
        );
    }

    #[test]
    fn webhook_deliveries_are_counted_by_result() {
        let (m, tiers) = metrics();
        for result in [
            WebhookResult::Unauthorized,
            WebhookResult::Unauthorized,
            WebhookResult::Accepted,
        ] {
            m.observe(&Activity::WebhookDelivery { result });
        }
        // Two scrapes in a row do not count anything twice.
        let _ = m.render(&tiers);
        let text = m.render(&tiers);
        let unauthorized = r#"gitopsd_webhook_requests_total{result="unauthorized"}"#;
        assert_eq!(value(&text, unauthorized), Some(2.0));
        assert_eq!(
            value(
                &text,
                r#"gitopsd_webhook_requests_total{result="accepted"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"gitopsd_webhook_requests_total{result="rate_limited"}"#
            ),
            Some(0.0)
        );
    }

    #[test]
    fn promotion_blocked_says_what_holds_the_revision() {
        let (m, tiers) = metrics();
        let held = |text: &str, kind: &str| {
            value(
                text,
                &format!(r#"gitopsd_promotion_blocked{{held_by="{kind}",tier="validation"}}"#),
            )
        };
        let text = m.render(&tiers);
        assert_eq!(
            series(&text, "gitopsd_promotion_blocked").len(),
            4,
            "one series per kind, from the first scrape: {text}"
        );
        for kind in HoldKind::ALL {
            tiers[0].1.update(|s| {
                s.sync = SyncState::Blocked;
                s.held_by = Some(kind);
            });
            let text = m.render(&tiers);
            for other in HoldKind::ALL {
                let want = if other == kind { 1.0 } else { 0.0 };
                assert_eq!(held(&text, other.as_str()), Some(want), "{kind:?}: {text}");
            }
        }
        // Synced again: nothing holds it (a stale held_by does not count).
        tiers[0].1.update(|s| s.sync = SyncState::Synced);
        let text = m.render(&tiers);
        for kind in HoldKind::ALL {
            assert_eq!(held(&text, kind.as_str()), Some(0.0));
        }
    }

    #[test]
    fn ignored_drift_is_not_unresolved() {
        let (m, tiers) = metrics();
        let item = |severity, action| DriftItem {
            action,
            ..drift_item("Deployment", severity)
        };
        tiers[0].1.update(|s| {
            s.drift = Some(DriftReport {
                tier: TIER.into(),
                items: vec![
                    item(Severity::Critical, crate::config::Action::Ignore),
                    item(Severity::Low, crate::config::Action::Ignore),
                    item(Severity::Low, crate::config::Action::Ignore),
                    item(Severity::Low, crate::config::Action::Alert),
                    item(Severity::High, crate::config::Action::Apply),
                ],
                in_sync: 0,
                drifted: 1,
                counts: SeverityCounts {
                    critical: 1,
                    high: 1,
                    medium: 0,
                    low: 3,
                },
                dismissed_by_dry_run: 0,
            });
        });
        let text = m.render(&tiers);
        let t = r#"tier="validation""#;
        for (severity, all, unresolved) in [
            ("critical", 1.0, 0.0),
            ("high", 1.0, 1.0),
            ("medium", 0.0, 0.0),
            ("low", 3.0, 1.0),
        ] {
            assert_eq!(
                value(
                    &text,
                    &format!(r#"gitopsd_drift_objects{{severity="{severity}",{t}}}"#)
                ),
                Some(all),
                "{text}"
            );
            assert_eq!(
                value(
                    &text,
                    &format!(r#"gitopsd_drift_unresolved_objects{{severity="{severity}",{t}}}"#)
                ),
                Some(unresolved),
                "{text}"
            );
        }
    }

    #[test]
    fn build_info_names_the_version() {
        let (m, tiers) = metrics();
        let text = m.render(&tiers);
        assert_eq!(
            series(&text, "gitopsd_build_info"),
            vec![format!(
                r#"gitopsd_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            )]
        );
    }
}
