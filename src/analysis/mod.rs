//! **analysis**: metric checks that decide whether a new version is good, for progressive
//! delivery (issue 16; used by rollouts, not yet wired into the reconcile).
//!
//! A template (`config::AnalysisTemplate`) lists metrics; each is measured by a provider
//! (`prometheus.rs`: a PromQL instant query; `http_check.rs`: a webhook-like HTTP check), every
//! `interval`, `count` times. A measurement is judged on its own (`measure::judge`: the typed
//! `successCondition`, `onEmpty`, NaN or several series inconclusive, a provider error an
//! error), and the pure state machine `AnalysisRun` (`run.rs`) turns the measurements into the
//! analysis' phase: running, successful, failed (which metric, why, its values) or
//! inconclusive. `run` (`driver.rs`) is the async loop that takes the measurements, stops at
//! the first decision and at once when cancelled, and returns every measurement taken.
//!
//! A leaf: it imports only `config` and `outbound` (the HTTP client, shared with
//! notifications); the rollout engine calls it and reports the outcome
//! (status, Events, audit, metrics).

// The client moved to `outbound` (notifications send with it too); `client` names it here.
use crate::outbound as client;
mod driver;
mod http_check;
mod measure;
mod prometheus;
mod run;

pub use client::HttpClient;
pub use driver::{Measure, Providers, run};
pub use http_check::HttpChecker;
pub use measure::{Measurement, Observation, ProviderError, Verdict, judge};
pub use prometheus::{Prometheus, parse_query_response};
pub use run::{
    AnalysisOutcome, AnalysisPhase, AnalysisRun, Failure, Inconclusive, MetricPhase, MetricRecord,
};
