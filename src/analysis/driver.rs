//! `run`: the async loop that takes each metric's measurements and feeds `AnalysisRun`.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use super::client::{ClientError, HttpClient};
use super::http_check::HttpChecker;
use super::measure::{Observation, ProviderError, judge};
use super::prometheus::Prometheus;
use super::run::{AnalysisOutcome, AnalysisRun};
use crate::config::{AnalysisConfig, AnalysisTemplate, MetricProvider, MetricSpec};

/// Takes one measurement of a metric (the providers, or a fake in tests).
pub trait Measure: Sync {
    fn measure(
        &self,
        metric: &MetricSpec,
    ) -> impl Future<Output = Result<Observation, ProviderError>> + Send;
}

/// The real providers, built once from the `analysis` section.
#[derive(Debug, Clone)]
pub struct Providers {
    prometheus: Option<Prometheus>,
    http: HttpChecker,
}

impl Providers {
    pub fn new(config: &AnalysisConfig) -> Result<Self, ClientError> {
        let client = HttpClient::new()?;
        Ok(Providers {
            prometheus: config
                .prometheus
                .clone()
                .map(|server| Prometheus::new(client.clone(), server)),
            http: HttpChecker::new(client),
        })
    }
}

impl Measure for Providers {
    async fn measure(&self, metric: &MetricSpec) -> Result<Observation, ProviderError> {
        match &metric.provider {
            MetricProvider::Prometheus(p) => match &self.prometheus {
                Some(server) => server.query(&p.query).await,
                None => Err(ProviderError::NoServer {
                    query: p.query.clone(),
                }),
            },
            MetricProvider::Http(check) => self.http.check(check).await,
        }
    }
}

/// Runs `template`: each metric measured at once, then every `interval` until it is decided;
/// returns at the first failure, when every metric is decided, or at once when `cancel` fires
/// (a measurement in flight is dropped). Every measurement taken is in the outcome.
pub async fn run<M: Measure>(
    template: &AnalysisTemplate,
    providers: &M,
    cancel: &CancellationToken,
) -> AnalysisOutcome {
    let mut state = AnalysisRun::new(template, Utc::now());
    let mut pending = FuturesUnordered::new();
    for (i, metric) in template.metrics.iter().enumerate() {
        pending.push(take(providers, metric, i, Duration::ZERO));
    }
    loop {
        let (i, observed) = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                tracing::info!(template = %template.name, "analysis cancelled");
                return state.outcome(Utc::now(), true);
            }
            next = pending.next() => match next {
                Some(taken) => taken,
                None => break,
            },
        };
        let metric = &template.metrics[i];
        let measurement = judge(metric, observed, Utc::now());
        tracing::info!(
            template = %template.name,
            metric = %metric.name,
            value = ?measurement.value,
            verdict = ?measurement.verdict,
            reason = measurement.reason.as_deref().unwrap_or(""),
            "analysis measurement"
        );
        if state.record(i, measurement).is_decided() {
            break;
        }
        if state.wants_more(i) {
            pending.push(take(providers, metric, i, metric.interval));
        }
    }
    let outcome = state.outcome(Utc::now(), false);
    tracing::info!(template = %template.name, phase = ?outcome.phase, "analysis finished");
    outcome
}

async fn take<'a, M: Measure>(
    providers: &'a M,
    metric: &'a MetricSpec,
    index: usize,
    after: Duration,
) -> (usize, Result<Observation, ProviderError>) {
    if !after.is_zero() {
        tokio::time::sleep(after).await;
    }
    (index, providers.measure(metric).await)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use crate::analysis::measure::tests::metric;
    use crate::analysis::{AnalysisPhase, Verdict};
    use crate::config::{Condition, OnEmpty};

    /// One scripted answer; `None` never answers (a hung provider).
    type Answer = Option<Result<Observation, ProviderError>>;

    /// Answers from a script per metric name.
    struct Script(Mutex<Vec<(String, VecDeque<Answer>)>>);

    impl Measure for Script {
        async fn measure(&self, metric: &MetricSpec) -> Result<Observation, ProviderError> {
            let next = {
                let mut s = self.0.lock().expect("script");
                let q = &mut s
                    .iter_mut()
                    .find(|(n, _)| *n == metric.name)
                    .expect("scripted metric")
                    .1;
                q.pop_front().expect("a scripted answer")
            };
            match next {
                Some(answer) => answer,
                None => std::future::pending().await,
            }
        }
    }

    fn script(entries: Vec<(&str, Vec<Answer>)>) -> Script {
        Script(Mutex::new(
            entries
                .into_iter()
                .map(|(n, a)| (n.to_owned(), a.into_iter().collect()))
                .collect(),
        ))
    }

    fn spec(name: &str, count: u32, interval_s: u64) -> MetricSpec {
        MetricSpec {
            name: name.into(),
            count,
            interval: Duration::from_secs(interval_s),
            ..metric(Some(Condition::Below(0.01)), OnEmpty::Fail)
        }
    }

    fn template(metrics: Vec<MetricSpec>) -> AnalysisTemplate {
        AnalysisTemplate {
            name: "t".into(),
            metrics,
        }
    }

    fn v(x: f64) -> Answer {
        Some(Ok(Observation::Value(x)))
    }

    #[tokio::test(start_paused = true)]
    async fn count_measurements_interval_apart_then_successful() {
        let t = template(vec![spec("errors", 3, 10)]);
        let p = script(vec![("errors", vec![v(0.0), v(0.0), v(0.0)])]);
        let start = tokio::time::Instant::now();
        let out = run(&t, &p, &CancellationToken::new()).await;
        assert_eq!(out.phase, AnalysisPhase::Successful);
        assert_eq!(out.metrics[0].measurements.len(), 3);
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(20),
            "first at once, then 10s apart"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_stops_every_metric_at_once() {
        let t = template(vec![spec("errors", 5, 1), spec("latency", 5, 100)]);
        let p = script(vec![
            ("errors", vec![v(0.0), v(0.5)]),
            ("latency", vec![v(0.0), v(0.0)]),
        ]);
        let out = run(&t, &p, &CancellationToken::new()).await;
        let AnalysisPhase::Failed(f) = &out.phase else {
            panic!("failed: {:?}", out.phase)
        };
        assert_eq!(
            (f.metric.as_str(), f.values.as_slice()),
            ("errors", &[Some(0.0), Some(0.5)][..])
        );
        assert_eq!(
            out.metrics[1].measurements.len(),
            1,
            "latency was not measured again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_down_fails_it_after_the_errors_in_a_row() {
        let t = template(vec![spec("errors", 1, 1)]);
        let down = || {
            Some(Err(ProviderError::Request {
                what: "prometheus query \"q\"".into(),
                url: "http://p".into(),
                reason: "Connection refused".into(),
            }))
        };
        let p = script(vec![("errors", vec![down(), down()])]);
        let out = run(&t, &p, &CancellationToken::new()).await;
        let AnalysisPhase::Failed(f) = &out.phase else {
            panic!("failed: {:?}", out.phase)
        };
        assert!(f.reason.contains("Connection refused"), "{}", f.reason);
        assert!(
            out.metrics[0]
                .measurements
                .iter()
                .all(|m| m.verdict == Verdict::Error)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_a_hung_measurement_at_once() {
        let t = template(vec![spec("errors", 3, 1)]);
        let p = script(vec![("errors", vec![v(0.0), None])]);
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            stop.cancel();
        });
        let out = run(&t, &p, &cancel).await;
        assert_eq!(out.phase, AnalysisPhase::Cancelled);
        assert_eq!(out.metrics[0].measurements.len(), 1);
    }
}
