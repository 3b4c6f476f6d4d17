//! `AnalysisRun`: the pure state machine that turns measurements into the analysis' phase.
//!
//! Per metric: `failureLimit` failed measurements fail it, `consecutiveErrorLimit` errors in a
//! row fail it (the provider down is never a pass), `inconclusiveLimit` inconclusive ones make
//! it inconclusive, and `count` judged measurements (errors are not counted: the measurement
//! is taken again) with none of those make it successful. The analysis fails as soon as one
//! metric fails; it is inconclusive when every metric is decided and one is inconclusive;
//! successful when every metric is.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::measure::{Measurement, Verdict};
use crate::config::{AnalysisTemplate, MetricSpec};

/// A metric's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MetricPhase {
    Running,
    Successful,
    Failed,
    Inconclusive,
}

/// Why an analysis failed: the metric, what it measured, why, and every value it measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub metric: String,
    /// The PromQL query, or the HTTP check's method and URL.
    pub query: String,
    pub reason: String,
    pub values: Vec<Option<f64>>,
}

/// Why an analysis is inconclusive.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inconclusive {
    pub metric: String,
    pub query: String,
    pub reason: String,
}

/// The analysis' phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
pub enum AnalysisPhase {
    Running,
    Successful,
    Failed(Failure),
    Inconclusive(Inconclusive),
    /// Stopped from outside before a decision (the driver's cancellation token).
    Cancelled,
}

impl AnalysisPhase {
    pub fn is_decided(&self) -> bool {
        !matches!(self, AnalysisPhase::Running)
    }
}

/// One metric's measurements so far, and its phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricRecord {
    pub name: String,
    pub query: String,
    pub phase: MetricPhase,
    pub measurements: Vec<Measurement>,
    #[serde(skip)]
    counts: Counts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    passed: u32,
    failed: u32,
    inconclusive: u32,
    errors_in_a_row: u32,
}

impl MetricRecord {
    fn judged(&self) -> u32 {
        self.counts.passed + self.counts.failed + self.counts.inconclusive
    }

    fn values(&self) -> Vec<Option<f64>> {
        self.measurements
            .iter()
            .filter(|m| m.verdict != Verdict::Error)
            .map(|m| m.value)
            .collect()
    }

    fn last_reason(&self) -> String {
        self.measurements
            .iter()
            .rev()
            .find_map(|m| m.reason.clone())
            .unwrap_or_default()
    }
}

/// The whole run: what the status API and the audit log will show.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisOutcome {
    pub template: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    #[serde(flatten)]
    pub phase: AnalysisPhase,
    pub metrics: Vec<MetricRecord>,
}

/// The state machine: fed measurements, it says the phase (pure; the driver owns the clock).
#[derive(Debug, Clone)]
pub struct AnalysisRun<'a> {
    template: &'a AnalysisTemplate,
    started_at: DateTime<Utc>,
    metrics: Vec<MetricRecord>,
    /// The first failure, kept: a later failure of another metric does not replace it.
    failure: Option<Failure>,
}

impl<'a> AnalysisRun<'a> {
    pub fn new(template: &'a AnalysisTemplate, started_at: DateTime<Utc>) -> Self {
        let metrics = template
            .metrics
            .iter()
            .map(|m| MetricRecord {
                name: m.name.clone(),
                query: m.describe(),
                phase: MetricPhase::Running,
                measurements: Vec::new(),
                counts: Counts::default(),
            })
            .collect();
        AnalysisRun {
            template,
            started_at,
            metrics,
            failure: None,
        }
    }

    /// Records metric `index`'s measurement and returns the analysis' phase. A measurement of
    /// a metric already decided is kept in its record but changes nothing.
    pub fn record(&mut self, index: usize, measurement: Measurement) -> AnalysisPhase {
        let Some(spec) = self.template.metrics.get(index) else {
            return self.phase();
        };
        let record = &mut self.metrics[index];
        let decided = record.phase != MetricPhase::Running;
        let c = &mut record.counts;
        match measurement.verdict {
            Verdict::Pass => c.passed += 1,
            Verdict::Fail => c.failed += 1,
            Verdict::Inconclusive => c.inconclusive += 1,
            Verdict::Error => c.errors_in_a_row += 1,
        }
        if measurement.verdict != Verdict::Error {
            c.errors_in_a_row = 0;
        }
        record.measurements.push(measurement);
        if !decided {
            record.phase = metric_phase(spec, record);
            if record.phase == MetricPhase::Failed && self.failure.is_none() {
                let reason = if record.counts.errors_in_a_row >= spec.consecutive_error_limit {
                    format!(
                        "{} errors in a row: {}",
                        record.counts.errors_in_a_row,
                        record.last_reason()
                    )
                } else {
                    format!(
                        "{} of {} measurements failed (failureLimit {}): {}",
                        record.counts.failed,
                        record.judged(),
                        spec.failure_limit,
                        record.last_reason()
                    )
                };
                self.failure = Some(Failure {
                    metric: record.name.clone(),
                    query: record.query.clone(),
                    reason,
                    values: record.values(),
                });
            }
        }
        self.phase()
    }

    /// Whether metric `index` still wants measurements.
    pub fn wants_more(&self, index: usize) -> bool {
        !self.phase().is_decided()
            && self
                .metrics
                .get(index)
                .is_some_and(|m| m.phase == MetricPhase::Running)
    }

    /// The analysis' phase now.
    pub fn phase(&self) -> AnalysisPhase {
        if let Some(f) = &self.failure {
            return AnalysisPhase::Failed(f.clone());
        }
        if self.metrics.iter().any(|m| m.phase == MetricPhase::Running) {
            return AnalysisPhase::Running;
        }
        match self
            .metrics
            .iter()
            .find(|m| m.phase == MetricPhase::Inconclusive)
        {
            Some(m) => AnalysisPhase::Inconclusive(Inconclusive {
                metric: m.name.clone(),
                query: m.query.clone(),
                reason: format!(
                    "{} inconclusive measurements: {}",
                    m.counts.inconclusive,
                    m.last_reason()
                ),
            }),
            None => AnalysisPhase::Successful,
        }
    }

    /// The run as it stands, finished at `now`; `cancelled` when it was stopped undecided.
    pub fn outcome(self, now: DateTime<Utc>, cancelled: bool) -> AnalysisOutcome {
        let phase = match self.phase() {
            AnalysisPhase::Running if cancelled => AnalysisPhase::Cancelled,
            p => p,
        };
        AnalysisOutcome {
            template: self.template.name.clone(),
            started_at: self.started_at,
            finished_at: now,
            phase,
            metrics: self.metrics,
        }
    }
}

fn metric_phase(spec: &MetricSpec, record: &MetricRecord) -> MetricPhase {
    let c = record.counts;
    if c.failed >= spec.failure_limit || c.errors_in_a_row >= spec.consecutive_error_limit {
        MetricPhase::Failed
    } else if c.inconclusive >= spec.inconclusive_limit {
        MetricPhase::Inconclusive
    } else if record.judged() >= spec.count {
        MetricPhase::Successful
    } else {
        MetricPhase::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::measure::tests::metric;
    use crate::config::{Condition, OnEmpty};

    fn template(metrics: Vec<MetricSpec>) -> AnalysisTemplate {
        AnalysisTemplate {
            name: "t".into(),
            metrics,
        }
    }

    fn m(verdict: Verdict, value: Option<f64>) -> Measurement {
        Measurement {
            at: Utc::now(),
            value,
            verdict,
            reason: match verdict {
                Verdict::Pass => None,
                _ => Some(format!("{verdict:?}")),
            },
        }
    }

    fn spec(count: u32, failures: u32, inconclusive: u32, errors: u32) -> MetricSpec {
        MetricSpec {
            count,
            failure_limit: failures,
            inconclusive_limit: inconclusive,
            consecutive_error_limit: errors,
            ..metric(Some(Condition::Below(0.01)), OnEmpty::Fail)
        }
    }

    #[test]
    fn count_passes_make_it_successful_and_not_before() {
        let t = template(vec![spec(3, 1, 1, 2)]);
        let mut run = AnalysisRun::new(&t, Utc::now());
        assert_eq!(
            run.record(0, m(Verdict::Pass, Some(0.0))),
            AnalysisPhase::Running
        );
        assert_eq!(
            run.record(0, m(Verdict::Pass, Some(0.0))),
            AnalysisPhase::Running
        );
        assert!(run.wants_more(0));
        assert_eq!(
            run.record(0, m(Verdict::Pass, Some(0.0))),
            AnalysisPhase::Successful
        );
        assert!(!run.wants_more(0));
    }

    #[test]
    fn the_failure_limit_fails_it_at_once_with_the_values() {
        let t = template(vec![spec(5, 2, 1, 2)]);
        let mut run = AnalysisRun::new(&t, Utc::now());
        run.record(0, m(Verdict::Fail, Some(0.2)));
        assert_eq!(
            run.phase(),
            AnalysisPhase::Running,
            "one failure is tolerated"
        );
        run.record(0, m(Verdict::Pass, Some(0.0)));
        let AnalysisPhase::Failed(f) = run.record(0, m(Verdict::Fail, Some(0.3))) else {
            panic!("failed at the second failure")
        };
        assert_eq!(f.metric, "errors");
        assert_eq!(f.query, "q");
        assert_eq!(f.values, [Some(0.2), Some(0.0), Some(0.3)]);
        assert!(
            f.reason.starts_with("2 of 3 measurements failed"),
            "{}",
            f.reason
        );
        assert!(!run.wants_more(0));
    }

    #[test]
    fn errors_are_retried_never_counted_and_fail_it_in_a_row() {
        let t = template(vec![spec(2, 1, 1, 3)]);
        let mut run = AnalysisRun::new(&t, Utc::now());
        run.record(0, m(Verdict::Error, None));
        run.record(0, m(Verdict::Error, None));
        run.record(0, m(Verdict::Pass, Some(0.0)));
        run.record(0, m(Verdict::Error, None));
        assert_eq!(
            run.record(0, m(Verdict::Error, None)),
            AnalysisPhase::Running
        );
        let AnalysisPhase::Failed(f) = run.record(0, m(Verdict::Error, None)) else {
            panic!("three errors in a row fail it")
        };
        assert!(
            f.reason.starts_with("3 errors in a row: Error"),
            "{}",
            f.reason
        );
        assert_eq!(f.values, [Some(0.0)]);

        // All errors: never a pass, however long the count.
        let t = template(vec![spec(1, 1, 1, 2)]);
        let mut run = AnalysisRun::new(&t, Utc::now());
        run.record(0, m(Verdict::Error, None));
        assert!(matches!(
            run.record(0, m(Verdict::Error, None)),
            AnalysisPhase::Failed(_)
        ));
    }

    #[test]
    fn inconclusive_waits_for_the_other_metrics_and_a_failure_outranks_it() {
        let t = template(vec![
            spec(2, 1, 1, 2),
            MetricSpec {
                name: "latency".into(),
                ..spec(2, 1, 1, 2)
            },
        ]);
        let mut run = AnalysisRun::new(&t, Utc::now());
        assert_eq!(
            run.record(0, m(Verdict::Inconclusive, None)),
            AnalysisPhase::Running
        );
        assert!(!run.wants_more(0));
        assert!(run.wants_more(1));
        run.record(1, m(Verdict::Pass, Some(0.0)));
        let AnalysisPhase::Inconclusive(i) = run.record(1, m(Verdict::Pass, Some(0.0))) else {
            panic!("inconclusive once all are decided")
        };
        assert_eq!(i.metric, "errors");

        let mut run = AnalysisRun::new(&t, Utc::now());
        run.record(0, m(Verdict::Inconclusive, None));
        let AnalysisPhase::Failed(f) = run.record(1, m(Verdict::Fail, Some(1.0))) else {
            panic!("failed")
        };
        assert_eq!(f.metric, "latency");
    }

    #[test]
    fn the_outcome_is_cancelled_only_when_undecided_and_serialises_flat() {
        let t = template(vec![spec(2, 1, 1, 2)]);
        let mut run = AnalysisRun::new(&t, Utc::now());
        run.record(0, m(Verdict::Pass, Some(0.0)));
        let out = run.clone().outcome(Utc::now(), true);
        assert_eq!(out.phase, AnalysisPhase::Cancelled);
        assert_eq!(out.metrics[0].measurements.len(), 1);
        run.record(0, m(Verdict::Fail, Some(0.5)));
        let out = run.outcome(Utc::now(), true);
        let json = serde_json::to_value(&out).expect("json");
        assert_eq!(json["phase"], "failed");
        assert_eq!(json["metric"], "errors");
        assert_eq!(json["values"], serde_json::json!([0.0, 0.5]));
        assert_eq!(json["metrics"][0]["phase"], "failed");
        assert_eq!(json["metrics"][0]["measurements"][1]["verdict"], "fail");
        assert!(json.get("startedAt").is_some() && json.get("finishedAt").is_some());
    }
}
