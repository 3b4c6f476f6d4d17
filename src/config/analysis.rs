//! The `analysis` section: the Prometheus server metric checks query, and named analysis
//! templates, each a list of metrics measured `count` times, `interval` apart, and judged by a
//! typed condition (no expression language to parse). Used by rollouts (issue 16), not yet
//! wired: `crate::analysis::run` runs one template.
//!
//! The vocabulary follows Argo Rollouts' AnalysisTemplate (`count`, `interval`, `failureLimit`,
//! `inconclusiveLimit`, `consecutiveErrorLimit`) and Flagger's threshold ranges; every limit
//! here counts the measurements that END the run (1 = the first one), see docs/config.md.

use super::*;

/// `analysis:` in gitopsd.yaml.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AnalysisConfig {
    /// The server `prometheus` metrics query; required when any metric is one.
    #[serde(default)]
    pub prometheus: Option<PrometheusServer>,
    #[serde(default)]
    pub templates: Vec<AnalysisTemplate>,
}

impl AnalysisConfig {
    /// The template called `name`.
    pub fn template(&self, name: &str) -> Option<&AnalysisTemplate> {
        self.templates.iter().find(|t| t.name == name)
    }
}

/// Where Prometheus answers instant queries (`{url}/api/v1/query`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusServer {
    pub url: HttpUrl,
    /// How long one query may take, connect included (also sent as the query's own `timeout`).
    #[serde(default = "default_check_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A named list of metrics; the analysis passes when every metric does.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AnalysisTemplate {
    pub name: String,
    pub metrics: Vec<MetricSpec>,
}

/// One metric: what is measured, how often, and which values pass.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawMetric")]
pub struct MetricSpec {
    pub name: String,
    pub provider: MetricProvider,
    /// Time between two measurements (the first is taken at once).
    pub interval: Duration,
    /// Measurements (not counting errors) after which the metric is decided.
    pub count: u32,
    /// Which values pass; required wherever the provider yields a value.
    pub success_condition: Option<Condition>,
    /// Failed measurements that fail the metric (and the analysis, at once).
    pub failure_limit: u32,
    /// Inconclusive measurements that make the metric inconclusive.
    pub inconclusive_limit: u32,
    /// Errors in a row (the provider unreachable, a refused query) that fail the metric; an
    /// errored measurement is taken again and never passes.
    pub consecutive_error_limit: u32,
    /// What an empty result (no series, no value at the JSON path) means.
    pub on_empty: OnEmpty,
}

/// Where a metric's value comes from: exactly one provider per metric.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricProvider {
    Prometheus(PrometheusQuery),
    Http(HttpCheck),
}

/// A PromQL instant query, expected to return one sample.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusQuery {
    pub query: String,
}

/// A webhook-like HTTP check: the status alone, or a number read from its JSON body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpCheck {
    pub url: HttpUrl,
    #[serde(default)]
    pub method: HttpMethod,
    /// The status that passes; any 2xx when left out.
    #[serde(default)]
    pub expect_status: Option<u16>,
    /// Where the value compared with `successCondition` is in the JSON body.
    #[serde(default)]
    pub json_path: Option<JsonPath>,
    #[serde(default = "default_check_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    /// An empty body: the URL says what is checked.
    Post,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }
}

/// Which values pass: `{below: 0.01}` (strictly), `{above: 0.99}` (strictly) or
/// `{between: [a, b]}` (inclusive, as Flagger's `thresholdRange`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "RawCondition")]
pub enum Condition {
    Below(f64),
    Above(f64),
    Between([f64; 2]),
}

/// A condition as written: a map with one key (serde_yaml would want a YAML tag for an enum).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    #[serde(default)]
    below: Option<f64>,
    #[serde(default)]
    above: Option<f64>,
    #[serde(default)]
    between: Option<[f64; 2]>,
}

impl TryFrom<RawCondition> for Condition {
    type Error = &'static str;

    fn try_from(raw: RawCondition) -> Result<Self, Self::Error> {
        match (raw.below, raw.above, raw.between) {
            (Some(x), None, None) => Ok(Condition::Below(x)),
            (None, Some(x), None) => Ok(Condition::Above(x)),
            (None, None, Some(r)) => Ok(Condition::Between(r)),
            _ => Err(
                "expected exactly one of {below: X}, {above: X} or {between: [LOW, HIGH]} (for both bounds use between)",
            ),
        }
    }
}

impl Condition {
    /// Whether `value` passes; NaN never does (the run calls it inconclusive before asking).
    pub fn holds(self, value: f64) -> bool {
        match self {
            Condition::Below(max) => value < max,
            Condition::Above(min) => value > min,
            Condition::Between([min, max]) => (min..=max).contains(&value),
        }
    }

    fn bounds(self) -> Vec<f64> {
        match self {
            Condition::Below(x) | Condition::Above(x) => vec![x],
            Condition::Between([a, b]) => vec![a, b],
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Below(x) => write!(f, "below {x}"),
            Condition::Above(x) => write!(f, "above {x}"),
            Condition::Between([a, b]) => write!(f, "between {a} and {b}"),
        }
    }
}

/// What a measurement with no data is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnEmpty {
    /// No data is a failed measurement: a canary that serves nothing does not pass.
    #[default]
    Fail,
    Pass,
    Inconclusive,
}

/// An `http://` or `https://` URL with a host and no credentials (they would be logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(pub ::http::Uri);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpUrlError {
    #[error("invalid URL {given:?}: {reason}")]
    Invalid { given: String, reason: String },
    #[error("expected an http:// or https:// URL; found {0:?}")]
    Scheme(String),
    #[error("a URL may not carry credentials (they would be logged with it); found one in {0:?}")]
    Credentials(String),
}

impl FromStr for HttpUrl {
    type Err = HttpUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let uri: ::http::Uri =
            s.parse()
                .map_err(|e: ::http::uri::InvalidUri| HttpUrlError::Invalid {
                    given: s.to_owned(),
                    reason: e.to_string(),
                })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(HttpUrlError::Scheme(s.to_owned()));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(HttpUrlError::Credentials(s.to_owned()));
        }
        Ok(HttpUrl(uri))
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A path into a JSON document: `$.data.errorRate`, `items[0].value` (fields and indices only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    text: String,
    steps: Vec<JsonStep>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonStep {
    Field(String),
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid JSON path {given:?}: {reason}; expected fields and indices such as \"$.data.value\" or \"items[0].rate\""
)]
pub struct JsonPathError {
    given: String,
    reason: &'static str,
}

impl JsonPath {
    pub fn steps(&self) -> &[JsonStep] {
        &self.steps
    }

    /// The value at this path, if there is one.
    pub fn find<'v>(&self, mut value: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        for step in &self.steps {
            value = match step {
                JsonStep::Field(f) => value.get(f.as_str())?,
                JsonStep::Index(i) => value.get(*i)?,
            };
        }
        Some(value)
    }
}

impl FromStr for JsonPath {
    type Err = JsonPathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| JsonPathError {
            given: s.to_owned(),
            reason,
        };
        let body = s.strip_prefix('$').unwrap_or(s);
        let body = body.strip_prefix('.').unwrap_or(body);
        let mut steps = Vec::new();
        if body.is_empty() {
            return Err(err("it names no field"));
        }
        for part in body.split('.') {
            let (field, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !field.is_empty() {
                if !field
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
                {
                    return Err(err(
                        "a field has a character other than letters, digits, '_' and '-'",
                    ));
                }
                steps.push(JsonStep::Field(field.to_owned()));
            } else if rest.is_empty() {
                return Err(err("it has an empty field"));
            }
            while let Some(r) = rest.strip_prefix('[') {
                let (n, after) = r
                    .split_once(']')
                    .ok_or_else(|| err("a '[' is not closed"))?;
                let n = n.parse().map_err(|_| err("an index is not a number"))?;
                steps.push(JsonStep::Index(n));
                rest = after;
            }
            if !rest.is_empty() {
                return Err(err("text follows an index"));
            }
        }
        Ok(JsonPath {
            text: s.to_owned(),
            steps,
        })
    }
}

impl<'de> Deserialize<'de> for JsonPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A metric as written: the provider is one of two keys, made an enum by `TryFrom`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMetric {
    name: String,
    #[serde(default)]
    prometheus: Option<PrometheusQuery>,
    #[serde(default)]
    http: Option<HttpCheck>,
    #[serde(default = "default_interval", with = "humantime_serde")]
    interval: Duration,
    #[serde(default = "one")]
    count: u32,
    #[serde(default)]
    success_condition: Option<Condition>,
    #[serde(default = "one")]
    failure_limit: u32,
    #[serde(default = "one")]
    inconclusive_limit: u32,
    #[serde(default = "default_consecutive_error_limit")]
    consecutive_error_limit: u32,
    #[serde(default)]
    on_empty: OnEmpty,
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}

fn one() -> u32 {
    1
}

fn default_consecutive_error_limit() -> u32 {
    4
}

/// Why a metric's providers are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderChoiceError {
    #[error("metric {0:?} has both `prometheus` and `http`; expected exactly one provider")]
    Both(String),
    #[error(
        "metric {0:?} has no provider; expected `prometheus: {{query: ...}}` or `http: {{url: ...}}`"
    )]
    None(String),
}

impl TryFrom<RawMetric> for MetricSpec {
    type Error = ProviderChoiceError;

    fn try_from(raw: RawMetric) -> Result<Self, Self::Error> {
        let provider = match (raw.prometheus, raw.http) {
            (Some(p), None) => MetricProvider::Prometheus(p),
            (None, Some(h)) => MetricProvider::Http(h),
            (Some(_), Some(_)) => return Err(ProviderChoiceError::Both(raw.name)),
            (None, None) => return Err(ProviderChoiceError::None(raw.name)),
        };
        Ok(MetricSpec {
            name: raw.name,
            provider,
            interval: raw.interval,
            count: raw.count,
            success_condition: raw.success_condition,
            failure_limit: raw.failure_limit,
            inconclusive_limit: raw.inconclusive_limit,
            consecutive_error_limit: raw.consecutive_error_limit,
            on_empty: raw.on_empty,
        })
    }
}

impl MetricSpec {
    /// Whether the provider yields a number for `successCondition` (else only a status).
    pub fn yields_value(&self) -> bool {
        match &self.provider {
            MetricProvider::Prometheus(_) => true,
            MetricProvider::Http(h) => h.json_path.is_some(),
        }
    }

    /// What is measured, as messages name it: the PromQL, or `GET https://...`.
    pub fn describe(&self) -> String {
        match &self.provider {
            MetricProvider::Prometheus(p) => p.query.clone(),
            MetricProvider::Http(h) => match &h.json_path {
                Some(path) => format!("{} {} ({path})", h.method.as_str(), h.url),
                None => format!("{} {}", h.method.as_str(), h.url),
            },
        }
    }
}

impl AnalysisConfig {
    /// The rules serde cannot check: names, limits, and a condition exactly where a value is
    /// compared. Returns the field (under `analysis.`) and why.
    pub(super) fn check(&self) -> Result<(), (String, String)> {
        if let Some(p) = &self.prometheus
            && p.timeout.is_zero()
        {
            return Err(("prometheus.timeout".into(), "expected more than 0s".into()));
        }
        let mut seen = std::collections::HashMap::new();
        for (i, t) in self.templates.iter().enumerate() {
            let at = |field: &str| format!("templates[{i}].{field}");
            check_dns_label(&t.name).map_err(|e| (at("name"), e.to_string()))?;
            if let Some(first) = seen.insert(t.name.as_str(), i) {
                return Err((
                    at("name"),
                    format!(
                        "template {:?} is defined twice (first as analysis.templates[{first}]); rename or remove one",
                        t.name
                    ),
                ));
            }
            if t.metrics.is_empty() {
                return Err((at("metrics"), "expected at least one metric".into()));
            }
            let mut names = std::collections::HashSet::new();
            for (j, m) in t.metrics.iter().enumerate() {
                let at = |field: &str| at(&format!("metrics[{j}].{field}"));
                check_dns_label(&m.name).map_err(|e| (at("name"), e.to_string()))?;
                if !names.insert(m.name.as_str()) {
                    return Err((
                        at("name"),
                        format!(
                            "metric {:?} is listed twice in template {:?}",
                            m.name, t.name
                        ),
                    ));
                }
                check_metric(m, &self.prometheus).map_err(|(f, why)| match f.as_str() {
                    "" => (format!("templates[{i}].metrics[{j}]"), why),
                    _ => (at(&f), why),
                })?;
            }
        }
        Ok(())
    }
}

fn check_metric(m: &MetricSpec, server: &Option<PrometheusServer>) -> Result<(), (String, String)> {
    if m.interval < Duration::from_secs(1) {
        return Err(("interval".into(), "expected at least 1s".into()));
    }
    for (field, value) in [
        ("count", m.count),
        ("failureLimit", m.failure_limit),
        ("inconclusiveLimit", m.inconclusive_limit),
        ("consecutiveErrorLimit", m.consecutive_error_limit),
    ] {
        if value == 0 {
            return Err((
                field.into(),
                "expected at least 1 (a limit counts the measurements that end the run)".into(),
            ));
        }
    }
    // A limit above the count can never be reached: such a metric could not fail.
    for (field, value) in [
        ("failureLimit", m.failure_limit),
        ("inconclusiveLimit", m.inconclusive_limit),
    ] {
        if value > m.count {
            return Err((
                field.into(),
                format!(
                    "{value} is more than count ({}): the metric could never reach it",
                    m.count
                ),
            ));
        }
    }
    match &m.provider {
        MetricProvider::Prometheus(p) => {
            if p.query.trim().is_empty() {
                return Err(("prometheus.query".into(), "expected a PromQL query".into()));
            }
            if server.is_none() {
                return Err((
                    "prometheus".into(),
                    "a prometheus metric needs the server: set analysis.prometheus.url".into(),
                ));
            }
        }
        MetricProvider::Http(h) => {
            if h.timeout.is_zero() {
                return Err(("http.timeout".into(), "expected more than 0s".into()));
            }
            if let Some(code) = h.expect_status
                && !(100..=599).contains(&code)
            {
                return Err((
                    "http.expectStatus".into(),
                    format!("expected an HTTP status from 100 to 599; found {code}"),
                ));
            }
        }
    }
    match (&m.success_condition, m.yields_value()) {
        // Named at the metric, as serde names a missing field: a field not written has no line.
        (None, true) => Err((
            String::new(),
            "missing field `successCondition`: the values that pass, e.g. {below: 0.01}, {above: 0.99} or {between: [0, 5]}"
                .into(),
        )),
        (Some(_), false) => Err((
            "successCondition".into(),
            "an http check without jsonPath is judged by its status alone; add http.jsonPath to compare a value".into(),
        )),
        (Some(c), true) => {
            if c.bounds().iter().any(|b| !b.is_finite()) {
                return Err((
                    "successCondition".into(),
                    format!("expected finite numbers; found {c}"),
                ));
            }
            if let Condition::Between([a, b]) = c
                && a > b
            {
                return Err((
                    "successCondition.between".into(),
                    format!("expected [low, high]; found [{a}, {b}]"),
                ));
            }
            Ok(())
        }
        (None, false) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "source: {url: /srv/config}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n";

    fn parse(analysis: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}{analysis}"), Path::new("gitopsd.yaml"))
    }

    fn error_of(analysis: &str) -> String {
        parse(analysis).expect_err("rejected").to_string()
    }

    #[test]
    fn an_analysis_section_parses_into_typed_metrics_with_defaults() {
        let c = parse(
            "analysis:\n  prometheus: {url: 'http://prometheus.monitoring:9090'}\n  templates:\n    - name: error-rate\n      metrics:\n        - name: errors\n          prometheus: {query: 'sum(rate(x[1m]))'}\n          interval: 30s\n          count: 5\n          successCondition: {below: 0.01}\n          failureLimit: 2\n          onEmpty: inconclusive\n        - name: smoke\n          http: {url: 'https://checks.example.com/ok', method: POST, expectStatus: 204}\n        - name: latency\n          http: {url: 'http://api/stats', jsonPath: '$.p99[0]'}\n          successCondition: {between: [0, 300]}\n",
        )
        .expect("valid");
        let a = &c.analysis;
        let server = a.prometheus.as_ref().expect("server");
        assert_eq!(server.url.to_string(), "http://prometheus.monitoring:9090/");
        assert_eq!(server.timeout, Duration::from_secs(10));
        let t = a.template("error-rate").expect("template");
        let m = &t.metrics[0];
        assert_eq!(
            m.provider,
            MetricProvider::Prometheus(PrometheusQuery {
                query: "sum(rate(x[1m]))".into()
            })
        );
        assert_eq!((m.interval, m.count), (Duration::from_secs(30), 5));
        assert_eq!(m.success_condition, Some(Condition::Below(0.01)));
        assert_eq!(
            (
                m.failure_limit,
                m.inconclusive_limit,
                m.consecutive_error_limit
            ),
            (2, 1, 4)
        );
        assert_eq!(m.on_empty, OnEmpty::Inconclusive);
        let smoke = &t.metrics[1];
        assert_eq!((smoke.interval, smoke.count), (Duration::from_secs(60), 1));
        assert_eq!(smoke.on_empty, OnEmpty::Fail);
        let MetricProvider::Http(h) = &smoke.provider else {
            panic!("http")
        };
        assert_eq!((h.method, h.expect_status), (HttpMethod::Post, Some(204)));
        assert_eq!(smoke.describe(), "POST https://checks.example.com/ok");
        let MetricProvider::Http(h) = &t.metrics[2].provider else {
            panic!("http")
        };
        let path = h.json_path.as_ref().expect("path");
        assert_eq!(
            path.steps(),
            [JsonStep::Field("p99".into()), JsonStep::Index(0)]
        );
        let doc = serde_json::json!({"p99": [250.5]});
        assert_eq!(path.find(&doc), Some(&serde_json::json!(250.5)));
        assert!(
            parse("")
                .expect("no analysis")
                .analysis
                .templates
                .is_empty()
        );
    }

    #[test]
    fn conditions_compare_as_documented() {
        assert!(Condition::Below(0.01).holds(0.0));
        assert!(!Condition::Below(0.01).holds(0.01));
        assert!(Condition::Above(0.99).holds(1.0));
        assert!(!Condition::Above(0.99).holds(0.99));
        assert!(Condition::Between([1.0, 2.0]).holds(1.0));
        assert!(Condition::Between([1.0, 2.0]).holds(2.0));
        assert!(!Condition::Between([1.0, 2.0]).holds(2.5));
        for c in [
            Condition::Below(1.0),
            Condition::Above(-1.0),
            Condition::Between([-1.0, 1.0]),
        ] {
            assert!(!c.holds(f64::NAN), "{c}");
        }
    }

    #[test]
    fn errors_name_the_metric_field_and_what_is_expected() {
        let server = "analysis:\n  prometheus: {url: 'http://p:9090'}\n  templates:\n    - name: t\n      metrics:\n";
        let e = error_of(&format!(
            "{server}        - {{name: m, prometheus: {{query: up}}, successCondition: {{under: 1}}}}\n"
        ));
        assert!(
            e.contains("analysis.templates[0].metrics[0].successCondition")
                && e.contains("unknown field `under`, expected one of `below`, `above`, `between`"),
            "{e}"
        );
        let e = error_of(&format!(
            "{server}        - {{name: m, prometheus: {{query: up}}}}\n"
        ));
        assert!(
            e.starts_with("gitopsd.yaml line 8 column ")
                && e.contains("analysis.templates[0].metrics[0]: missing field `successCondition`: the values that pass"),
            "{e}"
        );
        let e = error_of(&format!(
            "{server}        - {{name: m, prometheus: {{query: up}}, http: {{url: 'http://x'}}, successCondition: {{below: 1}}}}\n"
        ));
        assert!(
            e.contains(
                "analysis.templates[0].metrics[0]: metric \"m\" has both `prometheus` and `http`"
            ),
            "{e}"
        );
        let e = error_of(&format!("{server}        - {{name: m, count: 3}}\n"));
        assert!(e.contains("has no provider"), "{e}");
        let e = error_of(&format!(
            "{server}        - {{name: m, prometheus: {{query: up}}, successCondition: {{below: 1}}, failureLimit: 0}}\n"
        ));
        assert!(
            e.contains("line 8 column ")
                && e.contains("metrics[0].failureLimit: expected at least 1"),
            "{e}"
        );
        let e = error_of(&format!(
            "{server}        - {{name: m, prometheus: {{query: up}}, successCondition: {{between: [5, 1]}}}}\n"
        ));
        assert!(
            e.contains("successCondition.between: expected [low, high]"),
            "{e}"
        );
        let e = error_of(&format!(
            "{server}        - {{name: m, prometheus: {{query: up}}, successCondition: {{below: 1}}, count: 2, failureLimit: 3}}\n"
        ));
        assert!(
            e.contains(
                "metrics[0].failureLimit: 3 is more than count (2): the metric could never reach it"
            ),
            "{e}"
        );
        let e = error_of(&format!(
            "{server}        - {{name: m, prometheus: {{query: up}}, successCondition: {{below: 1, above: 0}}}}\n"
        ));
        assert!(
            e.contains("metrics[0].successCondition: expected exactly one of {below: X}"),
            "{e}"
        );
        let e = error_of(&format!(
            "{server}        - {{name: m, http: {{url: 'http://x/ok'}}, successCondition: {{below: 1}}}}\n"
        ));
        assert!(e.contains("judged by its status alone"), "{e}");
        let e = error_of(&format!(
            "{server}        - {{name: m, http: {{url: 'http://x/ok', jsonPath: 'a[x]'}}, successCondition: {{below: 1}}}}\n"
        ));
        assert!(
            e.contains(
                "metrics[0].http.jsonPath: invalid JSON path \"a[x]\": an index is not a number"
            ),
            "{e}"
        );
        let e = error_of(&format!(
            "{server}        - {{name: m, http: {{url: 'ftp://x/ok'}}}}\n"
        ));
        assert!(
            e.contains("metrics[0].http.url: expected an http:// or https:// URL"),
            "{e}"
        );
        let e = error_of(&format!(
            "{server}        - {{name: m, http: {{url: 'https://u:p@x/ok'}}}}\n"
        ));
        assert!(e.contains("may not carry credentials"), "{e}");
        let e = error_of(&format!(
            "{server}        - {{name: m, http: {{url: 'http://x/ok'}}, onEmpty: ignore}}\n"
        ));
        assert!(
            e.contains("unknown variant `ignore`, expected one of `fail`, `pass`, `inconclusive`"),
            "{e}"
        );
        let e = error_of(&format!(
            "{server}        - {{name: m, http: {{url: 'http://x/ok'}}, interval: 500ms}}\n"
        ));
        assert!(
            e.contains("metrics[0].interval: expected at least 1s"),
            "{e}"
        );
        let e = error_of(
            "analysis:\n  templates:\n    - name: t\n      metrics:\n        - {name: m, prometheus: {query: up}, successCondition: {below: 1}}\n",
        );
        assert!(
            e.contains(
                "analysis.templates[0].metrics[0].prometheus: a prometheus metric needs the server"
            ),
            "{e}"
        );
        let e = error_of(
            "analysis:\n  templates:\n    - {name: t, metrics: [{name: m, http: {url: 'http://x'}}]}\n    - {name: t, metrics: [{name: m, http: {url: 'http://x'}}]}\n",
        );
        assert!(
            e.contains("analysis.templates[1].name: template \"t\" is defined twice"),
            "{e}"
        );
        let e = error_of("analysis:\n  prometheus: {url: 'http://p', step: 1m}\n");
        assert!(
            e.contains("analysis.prometheus.step: unknown field `step`"),
            "{e}"
        );
    }
}
