//! One measurement: what a provider observed, and how the metric's spec judges it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{MetricSpec, OnEmpty};

/// What a provider saw, before any judgement.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// One number (a Prometheus sample, the value at an HTTP check's JSON path).
    Value(f64),
    /// No data: no series, or nothing at the JSON path.
    Empty,
    /// An answer that cannot be judged (several series), with why.
    Unclear(String),
    /// An HTTP check judged by its status alone.
    Status { code: u16, expected: bool },
}

/// Why a provider could not measure; never a pass.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    #[error("{what}: request to {url} failed: {reason}")]
    Request {
        what: String,
        url: String,
        reason: String,
    },
    #[error("{what}: no answer from {url} within {after:?}")]
    Timeout {
        what: String,
        url: String,
        after: Duration,
    },
    /// Prometheus refused the query (`status: error`), with its own message.
    #[error("prometheus query {query:?} failed on {url}: HTTP {status}: {error_type}: {message}")]
    Refused {
        query: String,
        url: String,
        status: u16,
        error_type: String,
        message: String,
    },
    #[error("{what}: unexpected answer from {url}: {reason}")]
    Answer {
        what: String,
        url: String,
        reason: String,
    },
    #[error(
        "prometheus query {query:?}: no Prometheus server is configured (analysis.prometheus.url)"
    )]
    NoServer { query: String },
}

/// A measurement's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
    /// The provider failed; the measurement is taken again.
    Error,
}

/// One measurement as the status API and the audit log will show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub at: DateTime<Utc>,
    /// The number measured (an HTTP check's status code when judged by status); NaN is
    /// written as null.
    pub value: Option<f64>,
    pub verdict: Verdict,
    /// Why it did not pass, or the provider's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Judges what `metric`'s provider returned at `at` (pure).
pub fn judge(
    metric: &MetricSpec,
    observed: Result<Observation, ProviderError>,
    at: DateTime<Utc>,
) -> Measurement {
    let (value, verdict, reason) = match observed {
        Err(e) => (None, Verdict::Error, Some(e.to_string())),
        Ok(Observation::Value(v)) if v.is_nan() => (
            Some(v),
            Verdict::Inconclusive,
            Some("the value is NaN (e.g. a ratio over no requests)".to_owned()),
        ),
        Ok(Observation::Value(v)) => match metric.success_condition {
            Some(c) if c.holds(v) => (Some(v), Verdict::Pass, None),
            Some(c) => (Some(v), Verdict::Fail, Some(format!("{v} is not {c}"))),
            // Config validation requires a condition wherever a value is measured.
            None => (
                Some(v),
                Verdict::Inconclusive,
                Some("no successCondition to compare the value with".to_owned()),
            ),
        },
        Ok(Observation::Empty) => {
            let why = Some("no data (empty result)".to_owned());
            match metric.on_empty {
                OnEmpty::Pass => (None, Verdict::Pass, None),
                OnEmpty::Fail => (None, Verdict::Fail, why),
                OnEmpty::Inconclusive => (None, Verdict::Inconclusive, why),
            }
        }
        Ok(Observation::Unclear(why)) => (None, Verdict::Inconclusive, Some(why)),
        Ok(Observation::Status { code, expected }) => {
            let value = Some(f64::from(code));
            if expected {
                (value, Verdict::Pass, None)
            } else {
                (value, Verdict::Fail, Some(format!("HTTP status {code}")))
            }
        }
    };
    Measurement {
        at,
        value,
        verdict,
        reason,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::{Condition, MetricProvider, PrometheusQuery};

    pub(crate) fn metric(condition: Option<Condition>, on_empty: OnEmpty) -> MetricSpec {
        MetricSpec {
            name: "errors".into(),
            provider: MetricProvider::Prometheus(PrometheusQuery { query: "q".into() }),
            interval: Duration::from_secs(1),
            count: 3,
            success_condition: condition,
            failure_limit: 1,
            inconclusive_limit: 1,
            consecutive_error_limit: 2,
            on_empty,
        }
    }

    #[test]
    fn a_value_is_judged_by_the_condition_and_nan_is_inconclusive() {
        let m = metric(Some(Condition::Below(0.01)), OnEmpty::Fail);
        let at = Utc::now();
        let j = |o| judge(&m, Ok(o), at);
        assert_eq!(j(Observation::Value(0.0)).verdict, Verdict::Pass);
        let bad = j(Observation::Value(0.2));
        assert_eq!(bad.verdict, Verdict::Fail);
        assert_eq!(bad.value, Some(0.2));
        assert_eq!(bad.reason.as_deref(), Some("0.2 is not below 0.01"));
        assert_eq!(
            j(Observation::Value(f64::NAN)).verdict,
            Verdict::Inconclusive
        );
        assert_eq!(
            j(Observation::Unclear("3 series".into())).reason.as_deref(),
            Some("3 series")
        );
        let s = j(Observation::Status {
            code: 503,
            expected: false,
        });
        assert_eq!((s.verdict, s.value), (Verdict::Fail, Some(503.0)));
        let e = judge(&m, Err(ProviderError::NoServer { query: "q".into() }), at);
        assert_eq!(e.verdict, Verdict::Error);
        assert!(e.reason.expect("reason").contains("\"q\""));
    }

    #[test]
    fn an_empty_result_follows_on_empty() {
        let at = Utc::now();
        for (on_empty, want) in [
            (OnEmpty::Fail, Verdict::Fail),
            (OnEmpty::Pass, Verdict::Pass),
            (OnEmpty::Inconclusive, Verdict::Inconclusive),
        ] {
            let m = metric(Some(Condition::Below(1.0)), on_empty);
            assert_eq!(judge(&m, Ok(Observation::Empty), at).verdict, want);
        }
    }

    #[test]
    fn a_measurement_serialises_in_camel_case_with_nan_as_null() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let m = judge(
            &metric(Some(Condition::Below(1.0)), OnEmpty::Fail),
            Ok(Observation::Value(f64::NAN)),
            at,
        );
        let json = serde_json::to_value(&m).expect("json");
        assert_eq!(json["at"], "2026-12-02T10:00:00Z");
        assert_eq!(json["value"], serde_json::Value::Null);
        assert_eq!(json["verdict"], "inconclusive");
    }
}
