//! Every metric family: its name, help, labels and buckets, registered once at start-up, and
//! the series that exist from the start at 0.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry,
};

use super::{Metrics, MetricsError, WINDOW_CLOSED, sync_result};
use crate::activity::WebhookResult;
use crate::apply::Outcome;
use crate::config::TierConfig;
use crate::live::RequestCounter;
use crate::status::SyncState;

/// Syncs and deployments take from well under a second (nothing to do) to many minutes (a
/// slow rollout waited for until healthy): buckets up to 30 minutes.
const LONG_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];
/// A fetch of the config repo: milliseconds when nothing changed, a minute for a big clone.
const FETCH_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// The sync results counted from the start, so `increase()` sees the first failure.
const RESULTS: [SyncState; 4] = [
    SyncState::Synced,
    SyncState::OutOfSync,
    SyncState::Failed,
    SyncState::Blocked,
];
/// The apply actions counted (an unchanged object is not an action).
const ACTIONS: [Outcome; 4] = [
    Outcome::Created,
    Outcome::Configured,
    Outcome::Pruned,
    Outcome::Failed,
];
/// Registers collectors, naming the one that failed.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn add<C: prometheus::core::Collector + Clone + 'static>(
        &self,
        name: &str,
        c: C,
    ) -> Result<C, MetricsError> {
        self.0
            .register(Box::new(c.clone()))
            .map_err(|source| MetricsError::Register {
                name: name.to_owned(),
                source,
            })?;
        Ok(c)
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec, MetricsError> {
        let c = IntGaugeVec::new(Opts::new(name, help), labels).map_err(|source| {
            MetricsError::Register {
                name: name.to_owned(),
                source,
            }
        })?;
        self.add(name, c)
    }

    fn counters(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, MetricsError> {
        let c = IntCounterVec::new(Opts::new(name, help), labels).map_err(|source| {
            MetricsError::Register {
                name: name.to_owned(),
                source,
            }
        })?;
        self.add(name, c)
    }

    fn histograms(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> Result<HistogramVec, MetricsError> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        let c = HistogramVec::new(opts, labels).map_err(|source| MetricsError::Register {
            name: name.to_owned(),
            source,
        })?;
        self.add(name, c)
    }
}

impl Metrics {
    /// Registers every metric for `tiers`; `kube` counts the daemon's Kubernetes requests.
    pub fn new(
        tiers: &[TierConfig],
        kube: Option<RequestCounter>,
    ) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let r = Registrar(&registry);
        let err = |name: &str| {
            let name = name.to_owned();
            move |source| MetricsError::Register { name, source }
        };
        let m = Metrics {
            tier_info: r.gauges(
                "gitopsd_tier_info",
                "The revision a tier deploys (1 for the current revision only).",
                &["tier", "revision"],
            )?,
            tier_synced: r.gauges(
                "gitopsd_tier_synced",
                "1 when the tier's last sync left the cluster matching its revision, else 0.",
                &["tier"],
            )?,
            tier_health: r.gauges(
                "gitopsd_tier_health",
                "The tier's health: 1 for the current status, 0 for the others.",
                &["tier", "status"],
            )?,
            drift_objects: r.gauges(
                "gitopsd_drift_objects",
                "Drift items the tier's last reconcile found, by severity.",
                &["tier", "severity"],
            )?,
            drift_unresolved: r.gauges(
                "gitopsd_drift_unresolved_objects",
                "Drift items the tier's last reconcile found whose action is not ignore (apply, alert or prune), by severity.",
                &["tier", "severity"],
            )?,
            dryrun_cache_entries: r.gauges(
                "gitopsd_dryrun_cache_entries",
                "Server-side-apply dry-run answers the tier keeps (at most one per desired object).",
                &["tier"],
            )?,
            drift_detected: r.counters(
                "gitopsd_drift_detected_total",
                "Drift items found that the previous reconcile had not seen.",
                &["tier", "severity", "kind"],
            )?,
            sync_total: r.counters(
                "gitopsd_sync_total",
                "Reconciles of a tier, by the sync state they ended in.",
                &["tier", "result"],
            )?,
            sync_duration: r.histograms(
                "gitopsd_sync_duration_seconds",
                "How long one reconcile of a tier took.",
                &LONG_BUCKETS,
                &["tier"],
            )?,
            deployment_duration: r.histograms(
                "gitopsd_deployment_duration_seconds",
                "From the fetch that brought a revision to the tier until it was healthy.",
                &LONG_BUCKETS,
                &["tier"],
            )?,
            commit_to_applied: r.histograms(
                "gitopsd_commit_to_applied_seconds",
                "From the fetch that brought a revision to the tier until all of it was applied.",
                &LONG_BUCKETS,
                &["tier"],
            )?,
            rollback_total: r.counters(
                "gitopsd_rollback_total",
                "Rollbacks of a tier to its last healthy revision.",
                &["tier"],
            )?,
            apply_objects: r.counters(
                "gitopsd_apply_objects_total",
                "Objects created, configured, pruned, or that failed to be.",
                &["tier", "action"],
            )?,
            fetch_duration: r.add(
                "gitopsd_git_fetch_duration_seconds",
                Histogram::with_opts(
                    HistogramOpts::new(
                        "gitopsd_git_fetch_duration_seconds",
                        "How long one fetch of the config repo took.",
                    )
                    .buckets(FETCH_BUCKETS.to_vec()),
                )
                .map_err(err("gitopsd_git_fetch_duration_seconds"))?,
            )?,
            fetch_errors: r.add(
                "gitopsd_git_fetch_errors_total",
                IntCounter::new(
                    "gitopsd_git_fetch_errors_total",
                    "Fetches of the config repo, or of one of its followed refs, that failed.",
                )
                .map_err(err("gitopsd_git_fetch_errors_total"))?,
            )?,
            last_successful_fetch: r.add(
                "gitopsd_last_successful_fetch_timestamp_seconds",
                Gauge::new(
                    "gitopsd_last_successful_fetch_timestamp_seconds",
                    "When the config repo was last fetched without error (Unix time).",
                )
                .map_err(err("gitopsd_last_successful_fetch_timestamp_seconds"))?,
            )?,
            source_last_fetch: r.add(
                "gitopsd_source_last_fetch_timestamp_seconds",
                GaugeVec::new(
                    Opts::new(
                        "gitopsd_source_last_fetch_timestamp_seconds",
                        "When the ref the tier follows was last fetched without error (Unix time).",
                    ),
                    &["tier"],
                )
                .map_err(err("gitopsd_source_last_fetch_timestamp_seconds"))?,
            )?,
            source_stale: r.gauges(
                "gitopsd_source_stale",
                "1 while no fetch of the tier's ref has succeeded for longer than 3 poll intervals plus source.fetchTimeout.",
                &["tier"],
            )?,
            source_rewrites: r.counters(
                "gitopsd_source_rewrites_total",
                "Rewrites (force-pushes) of the ref the tier follows: it moved to a commit that does not descend from the one before.",
                &["tier"],
            )?,
            last_sync: r.add(
                "gitopsd_last_sync_timestamp_seconds",
                GaugeVec::new(
                    Opts::new(
                        "gitopsd_last_sync_timestamp_seconds",
                        "When the tier's last reconcile started (Unix time).",
                    ),
                    &["tier"],
                )
                .map_err(err("gitopsd_last_sync_timestamp_seconds"))?,
            )?,
            last_successful_sync: r.add(
                "gitopsd_last_successful_sync_timestamp_seconds",
                GaugeVec::new(
                    Opts::new(
                        "gitopsd_last_successful_sync_timestamp_seconds",
                        "When the tier's last sync that ran to its end without an error ended (Unix time): Synced, or OutOfSync with drift the policy only alerts on.",
                    ),
                    &["tier"],
                )
                .map_err(err("gitopsd_last_successful_sync_timestamp_seconds"))?,
            )?,
            kube_requests: r.counters(
                "gitopsd_kube_requests_total",
                "Requests to the Kubernetes API server, by verb and response code (or class).",
                &["verb", "code"],
            )?,
            webhook_requests: r.counters(
                "gitopsd_webhook_requests_total",
                "Push webhook deliveries, by result (accepted, ignored, duplicate, unauthorized, rate_limited, bad_request).",
                &["result"],
            )?,
            notifications: r.counters(
                "gitopsd_notifications_total",
                "Outbound notifications, by sink and result (sent, failed after every attempt, dropped from a full queue).",
                &["sink", "result"],
            )?,
            http_refused: r.counters(
                "gitopsd_http_refused_total",
                "Requests and connections the status endpoint refused, by reason (every one counted, whereas the log samples them).",
                &["reason"],
            )?,
            window_open: r.gauges(
                "gitopsd_change_window_open",
                "1 when the tier is inside one of its change windows (or has none), else 0.",
                &["tier"],
            )?,
            promotion_blocked: r.gauges(
                "gitopsd_promotion_blocked",
                "1 when something holds the tier's revision (or drift corrections) back, for what holds it (held_by: promotion-gate, soak, signature, window); 0 for the others.",
                &["tier", "held_by"],
            )?,
            leader: r.gauges(
                "gitopsd_leader",
                "1 while this replica leads (holds the Lease, or leader election is off), 0 on standby.",
                &[],
            )?,
            windows: tiers
                .iter()
                .map(|t| (t.name.clone(), t.windows.clone()))
                .collect(),
            kube,
            scrape: Mutex::new(BTreeMap::new()),
            registry: registry.clone(),
        };
        let build_info = r.gauges(
            "gitopsd_build_info",
            "Always 1; the version of the running gitopsd.",
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        // The process's own CPU, memory, open files and start time (`process_*`, as every
        // Prometheus client exports them), read from /proc at scrape time (Linux only).
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .map_err(err("process_*"))?;
        // Series that exist from the start, at 0: a rate or increase() over them works from
        // the first event on, and an alert can tell "never failed" from "no data".
        for t in tiers {
            let tier = t.name.as_str();
            for s in RESULTS {
                m.sync_total.with_label_values(&[tier, sync_result(s)]);
            }
            m.sync_total.with_label_values(&[tier, WINDOW_CLOSED]);
            for a in ACTIONS {
                m.apply_objects.with_label_values(&[tier, a.as_str()]);
            }
            m.rollback_total.with_label_values(&[tier]);
            m.source_rewrites.with_label_values(&[tier]);
            m.source_stale.with_label_values(&[tier]);
            m.sync_duration.with_label_values(&[tier]);
            m.deployment_duration.with_label_values(&[tier]);
            m.commit_to_applied.with_label_values(&[tier]);
        }
        for r in WebhookResult::ALL {
            m.webhook_requests.with_label_values(&[r.label()]);
        }
        Ok(m)
    }
}
