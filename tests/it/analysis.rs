//! Metric analysis (`gitopsd::analysis`, issue 16) against a real Prometheus (Debian's
//! `prometheus` package; scripts/install-deps.sh installs it), started per test on a loopback
//! port with a generated config. It scrapes a small exporter the test runs: two versions of an
//! app whose error rates the test sets (kwok pods serve no traffic, so the exporter stands for
//! the app), every second. No cluster is needed. `GITOPSD_PROMETHEUS` names another server
//! binary than `prometheus` on the PATH.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitopsd::analysis::{
    AnalysisOutcome, AnalysisPhase, HttpClient, Observation, Prometheus, Providers, Verdict, run,
};
use gitopsd::config::{
    AnalysisConfig, AnalysisTemplate, Condition, HttpCheck, HttpMethod, MetricProvider, MetricSpec,
    OnEmpty, PrometheusQuery, PrometheusServer,
};
use tokio_util::sync::CancellationToken;

use crate::git_support::{Server, free_port};
use crate::support::eventually_or;

/// The error ratio of one version over the last 10 s.
fn error_ratio(version: &str) -> String {
    format!(
        "sum(rate(http_requests_total{{job=\"app\",version=\"{version}\",code=\"500\"}}[10s])) / sum(rate(http_requests_total{{job=\"app\",version=\"{version}\"}}[10s]))"
    )
}

/// Each version's share of failed requests, set by the test.
type ErrorRates = Arc<Mutex<Vec<(&'static str, f64)>>>;

/// The app's exporter: each scrape counts 100 more requests per version, the version's error
/// rate of them answered 500; `/check` answers the `bad` version's rate as JSON.
struct Exporter {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn exporter(rates: ErrorRates) -> Exporter {
    use axum::routing::get;
    let totals: Arc<Mutex<Vec<(f64, f64)>>> = Arc::default();
    let scrape = {
        let rates = rates.clone();
        move || {
            let rates = rates.lock().expect("rates").clone();
            let mut totals = totals.lock().expect("totals");
            totals.resize(rates.len(), (0.0, 0.0));
            let mut text = String::from("# TYPE http_requests_total counter\n");
            for ((version, rate), (ok, failed)) in rates.iter().zip(totals.iter_mut()) {
                *ok += 100.0 * (1.0 - rate);
                *failed += 100.0 * rate;
                text.push_str(&format!(
                    "http_requests_total{{version=\"{version}\",code=\"200\"}} {ok}\nhttp_requests_total{{version=\"{version}\",code=\"500\"}} {failed}\n"
                ));
            }
            std::future::ready(text)
        }
    };
    let check = move || {
        let rate = rates
            .lock()
            .expect("rates")
            .iter()
            .find(|(v, _)| *v == "bad")
            .map_or(0.0, |(_, r)| *r);
        std::future::ready(axum::Json(serde_json::json!({"app": {"errorRate": rate}})))
    };
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .route("/check", get(check));
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the exporter");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Exporter { port, task }
}

/// A Prometheus scraping the exporter every second, killed with the test.
struct Env {
    _exporter: Exporter,
    _prometheus: Server,
    _dir: tempfile::TempDir,
    exporter_port: u16,
    config: AnalysisConfig,
}

async fn start(rates: &[(&'static str, f64)]) -> Env {
    let exporter = exporter(Arc::new(Mutex::new(rates.to_vec()))).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(
        &config_file,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            exporter.port
        ),
    )
    .expect("write prometheus.yml");
    let port = free_port();
    let mut cmd =
        Command::new(std::env::var_os("GITOPSD_PROMETHEUS").unwrap_or_else(|| "prometheus".into()));
    cmd.arg(format!("--config.file={}", config_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn");
    let log: PathBuf = dir.path().join("prometheus.log");
    let prometheus = tokio::task::block_in_place(|| Server::start(cmd, port, log));
    let config = AnalysisConfig {
        prometheus: Some(PrometheusServer {
            url: format!("http://127.0.0.1:{port}").parse().expect("url"),
            timeout: Duration::from_secs(10),
        }),
        templates: Vec::new(),
    };
    let env = Env {
        exporter_port: exporter.port,
        _exporter: exporter,
        _prometheus: prometheus,
        _dir: dir,
        config,
    };
    // Until each version's ratio has the two samples a rate needs.
    let server = env.config.prometheus.clone().expect("server");
    let prom = Prometheus::new(HttpClient::new().expect("client"), server);
    for (version, _) in rates {
        let query = error_ratio(version);
        eventually_or(
            &format!("Prometheus to answer {query}"),
            Duration::from_secs(60),
            || async {
                match prom.query(&query).await {
                    Ok(Observation::Value(v)) if !v.is_nan() => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
    env
}

fn prometheus_metric(name: &str, query: String, count: u32, condition: Condition) -> MetricSpec {
    MetricSpec {
        name: name.into(),
        provider: MetricProvider::Prometheus(PrometheusQuery { query }),
        interval: Duration::from_secs(1),
        count,
        success_condition: Some(condition),
        failure_limit: 2,
        inconclusive_limit: 1,
        consecutive_error_limit: 2,
        on_empty: OnEmpty::Fail,
    }
}

fn template(metrics: Vec<MetricSpec>) -> AnalysisTemplate {
    AnalysisTemplate {
        name: "canary".into(),
        metrics,
    }
}

async fn analyse(config: &AnalysisConfig, template: &AnalysisTemplate) -> AnalysisOutcome {
    let providers = Providers::new(config).expect("providers");
    run(template, &providers, &CancellationToken::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_version_passes_and_a_bad_one_fails_with_its_query_and_values() {
    let env = start(&[("good", 0.0), ("bad", 0.2)]).await;
    let good = template(vec![prometheus_metric(
        "errors",
        error_ratio("good"),
        3,
        Condition::Below(0.01),
    )]);
    let bad = template(vec![prometheus_metric(
        "errors",
        error_ratio("bad"),
        3,
        Condition::Below(0.01),
    )]);
    let (good, bad) = tokio::join!(analyse(&env.config, &good), analyse(&env.config, &bad));

    assert_eq!(good.phase, AnalysisPhase::Successful, "{good:#?}");
    // For the record (no bound asserted): the run beyond its two 1 s intervals.
    eprintln!(
        "3 measurements 1s apart took {} ms",
        (good.finished_at - good.started_at).num_milliseconds()
    );
    let taken = &good.metrics[0].measurements;
    assert_eq!(taken.len(), 3, "{taken:#?}");
    assert!(
        taken
            .iter()
            .all(|m| m.verdict == Verdict::Pass && m.value == Some(0.0)),
        "{taken:#?}"
    );

    let AnalysisPhase::Failed(f) = &bad.phase else {
        panic!("the bad version fails: {bad:#?}")
    };
    assert_eq!(f.metric, "errors");
    assert_eq!(f.query, error_ratio("bad"));
    // failureLimit 2: it stops at the second failure, before the count of 3.
    assert_eq!(f.values.len(), 2, "{f:#?}");
    for v in &f.values {
        let v = v.expect("a value");
        assert!((v - 0.2).abs() < 1e-9, "an error ratio of 0.2, found {v}");
    }
    assert!(
        f.reason
            .starts_with("2 of 2 measurements failed (failureLimit 2): 0.")
            && f.reason.ends_with("is not below 0.01"),
        "{}",
        f.reason
    );
    let json = serde_json::to_value(&bad).expect("json");
    assert_eq!(json["phase"], "failed");
    assert_eq!(json["metrics"][0]["measurements"][0]["verdict"], "fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_result_follows_on_empty() {
    let env = start(&[("good", 0.0)]).await;
    let empty = |on_empty| {
        template(vec![MetricSpec {
            count: 1,
            failure_limit: 1,
            on_empty,
            ..prometheus_metric("errors", error_ratio("absent"), 1, Condition::Below(0.01))
        }])
    };
    let (pass, fail, unsure) = (
        empty(OnEmpty::Pass),
        empty(OnEmpty::Fail),
        empty(OnEmpty::Inconclusive),
    );
    let (pass, fail, unsure) = tokio::join!(
        analyse(&env.config, &pass),
        analyse(&env.config, &fail),
        analyse(&env.config, &unsure),
    );
    assert_eq!(pass.phase, AnalysisPhase::Successful, "{pass:#?}");
    assert_eq!(pass.metrics[0].measurements[0].value, None);
    let AnalysisPhase::Failed(f) = &fail.phase else {
        panic!("onEmpty: fail fails: {fail:#?}")
    };
    assert!(f.reason.ends_with("no data (empty result)"), "{}", f.reason);
    assert_eq!(f.values, [None]);
    let AnalysisPhase::Inconclusive(i) = &unsure.phase else {
        panic!("onEmpty: inconclusive: {unsure:#?}")
    };
    assert_eq!(i.query, error_ratio("absent"));

    // Several series cannot be judged: inconclusive, naming them.
    let several = template(vec![prometheus_metric(
        "errors",
        "rate(http_requests_total{job=\"app\"}[10s])".into(),
        1,
        Condition::Below(0.01),
    )]);
    let out = analyse(&env.config, &several).await;
    let AnalysisPhase::Inconclusive(i) = &out.phase else {
        panic!("several series are inconclusive: {out:#?}")
    };
    assert!(
        i.reason.contains("the query returned 2 series (")
            && i.reason.contains("code=\"500\"")
            && i.reason
                .ends_with("expected one: aggregate it, e.g. with sum()"),
        "{}",
        i.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_is_an_error_never_a_pass() {
    let env = start(&[("good", 0.0)]).await;
    // A port nothing listens on, and then the server itself refusing the query.
    let down = AnalysisConfig {
        prometheus: Some(PrometheusServer {
            url: format!("http://127.0.0.1:{}", free_port())
                .parse()
                .expect("url"),
            timeout: Duration::from_secs(10),
        }),
        templates: Vec::new(),
    };
    let query = error_ratio("good");
    let t = template(vec![prometheus_metric(
        "errors",
        query.clone(),
        1,
        Condition::Below(0.01),
    )]);
    let out = analyse(&down, &t).await;
    let AnalysisPhase::Failed(f) = &out.phase else {
        panic!("Prometheus down fails the analysis: {out:#?}")
    };
    assert!(
        f.reason.starts_with("2 errors in a row: prometheus query")
            && f.reason.contains(&format!("{query:?}"))
            && f.reason.contains("Connection refused"),
        "{}",
        f.reason
    );
    assert!(
        out.metrics[0]
            .measurements
            .iter()
            .all(|m| m.verdict == Verdict::Error),
        "{out:#?}"
    );

    let broken = template(vec![prometheus_metric(
        "errors",
        "sum(rate(http_requests_total[10s])".into(),
        1,
        Condition::Below(0.01),
    )]);
    let out = analyse(&env.config, &broken).await;
    let AnalysisPhase::Failed(f) = &out.phase else {
        panic!("a refused query fails the analysis: {out:#?}")
    };
    assert!(
        f.reason.contains("failed on http://127.0.0.1:")
            && f.reason.contains("HTTP 400: bad_data: ")
            && f.reason.contains("parse error"),
        "{}",
        f.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_check_judges_a_status_or_a_json_value() {
    let env = start(&[("bad", 0.2)]).await;
    let check = |path: &str, json_path: Option<&str>, condition| MetricSpec {
        name: path.trim_start_matches('/').into(),
        provider: MetricProvider::Http(HttpCheck {
            url: format!("http://127.0.0.1:{}{path}", env.exporter_port)
                .parse()
                .expect("url"),
            method: HttpMethod::Get,
            expect_status: None,
            json_path: json_path.map(|p| p.parse().expect("path")),
            timeout: Duration::from_secs(10),
        }),
        interval: Duration::from_secs(1),
        count: 1,
        success_condition: condition,
        failure_limit: 1,
        inconclusive_limit: 1,
        consecutive_error_limit: 2,
        on_empty: OnEmpty::Fail,
    };
    let status = analyse(&env.config, &template(vec![check("/check", None, None)])).await;
    assert_eq!(status.phase, AnalysisPhase::Successful, "{status:#?}");
    assert_eq!(status.metrics[0].measurements[0].value, Some(200.0));
    let missing = analyse(&env.config, &template(vec![check("/nope", None, None)])).await;
    assert!(
        matches!(&missing.phase, AnalysisPhase::Failed(f) if f.reason.ends_with("HTTP status 404")),
        "{missing:#?}"
    );
    let value = analyse(
        &env.config,
        &template(vec![check(
            "/check",
            Some("$.app.errorRate"),
            Some(Condition::Below(0.01)),
        )]),
    )
    .await;
    let AnalysisPhase::Failed(f) = &value.phase else {
        panic!("an error rate of 0.2 fails: {value:#?}")
    };
    assert_eq!(f.values, [Some(0.2)]);
    assert!(f.query.starts_with("GET http://127.0.0.1:"), "{}", f.query);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_the_run_at_once_even_mid_request() {
    let env = start(&[("good", 0.0)]).await;
    // A check whose server accepts and never answers, beside a metric that waits an hour.
    let hung = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let hung_port = hung.local_addr().expect("addr").port();
    let t = template(vec![
        MetricSpec {
            interval: Duration::from_secs(3600),
            ..prometheus_metric("errors", error_ratio("good"), 3, Condition::Below(0.01))
        },
        MetricSpec {
            name: "smoke".into(),
            provider: MetricProvider::Http(HttpCheck {
                url: format!("http://127.0.0.1:{hung_port}/")
                    .parse()
                    .expect("url"),
                method: HttpMethod::Post,
                expect_status: None,
                json_path: None,
                timeout: Duration::from_secs(3600),
            }),
            success_condition: None,
            ..prometheus_metric("smoke", String::new(), 1, Condition::Below(0.0))
        },
    ]);
    let providers = Providers::new(&env.config).expect("providers");
    let cancel = CancellationToken::new();
    let running = {
        let cancel = cancel.clone();
        async move { run(&t, &providers, &cancel).await }
    };
    let handle = tokio::spawn(running);
    // The Prometheus metric's first measurement is taken at once; then both wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cancelled_at = std::time::Instant::now();
    cancel.cancel();
    // Only a guard against a hang: without cancellation the run would wait an hour.
    let out = tokio::time::timeout(Duration::from_secs(600), handle)
        .await
        .expect("the run returns when cancelled")
        .expect("run task");
    eprintln!(
        "the run returned {:?} after its cancellation",
        cancelled_at.elapsed()
    );
    assert_eq!(out.phase, AnalysisPhase::Cancelled, "{out:#?}");
    assert_eq!(out.metrics[1].measurements.len(), 0, "{out:#?}");
    let errors = &out.metrics[0].measurements;
    assert!(
        errors.len() <= 1 && errors.iter().all(|m| m.verdict == Verdict::Pass),
        "{errors:#?}"
    );
    drop(hung);
}
