//! The Prometheus provider: one instant query (`POST /api/v1/query`), one sample expected.

use std::collections::BTreeMap;

use http_body_util::Full;
use hyper::body::Bytes;
use serde::Deserialize;

use super::client::{HttpClient, SendError};
use super::measure::{Observation, ProviderError};
use crate::config::PrometheusServer;

/// A Prometheus server, queried with the shared client.
#[derive(Debug, Clone)]
pub struct Prometheus {
    client: HttpClient,
    server: PrometheusServer,
    endpoint: String,
}

impl Prometheus {
    pub fn new(client: HttpClient, server: PrometheusServer) -> Self {
        // `http://p:9090` and `http://p:9090/prefix/` both take the API under their path.
        let endpoint = format!(
            "{}/api/v1/query",
            server.url.to_string().trim_end_matches('/')
        );
        Prometheus {
            client,
            server,
            endpoint,
        }
    }

    /// Runs `query` now; the server is told the same timeout, so it stops working on it too.
    pub async fn query(&self, query: &str) -> Result<Observation, ProviderError> {
        let timeout = self.server.timeout;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", query)
            .append_pair("timeout", &format!("{}ms", timeout.as_millis()))
            .finish();
        let request = ::http::Request::post(&self.endpoint)
            .header(
                ::http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(::http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| ProviderError::Request {
                what: format!("prometheus query {query:?}"),
                url: self.endpoint.clone(),
                reason: e.to_string(),
            })?;
        let what = || format!("prometheus query {query:?}");
        let url = self.server.url.to_string();
        match self.client.send(request, timeout).await {
            Ok(answer) => parse_query_response(answer.status, &answer.body, query, &url),
            Err(SendError::Timeout) => Err(ProviderError::Timeout {
                what: what(),
                url,
                after: timeout,
            }),
            Err(SendError::Request(reason)) => Err(ProviderError::Request {
                what: what(),
                url,
                reason,
            }),
            Err(SendError::Body(reason)) => Err(ProviderError::Answer {
                what: what(),
                url,
                reason,
            }),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryAnswer {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum QueryData {
    Vector(Vec<Sample>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct Sample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// Absent for a native histogram sample (`histogram` instead).
    #[serde(default)]
    value: Option<(f64, String)>,
}

/// An instant query's answer as an observation: one sample or a scalar is its value; no
/// series is empty; several series are unclear; an error names the query and the server's
/// message (pure, for tests).
pub fn parse_query_response(
    status: u16,
    body: &[u8],
    query: &str,
    url: &str,
) -> Result<Observation, ProviderError> {
    let answer_error = |reason: String| ProviderError::Answer {
        what: format!("prometheus query {query:?}"),
        url: url.to_owned(),
        reason,
    };
    let answer: QueryAnswer = serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        answer_error(format!(
            "HTTP {status}, not a Prometheus API answer ({e}): {}",
            text.trim()
        ))
    })?;
    if answer.status != "success" {
        return Err(ProviderError::Refused {
            query: query.to_owned(),
            url: url.to_owned(),
            status,
            error_type: answer.error_type.unwrap_or_else(|| "unknown".to_owned()),
            message: answer.error.unwrap_or_default(),
        });
    }
    let number = |text: &str| {
        text.parse::<f64>()
            .map_err(|_| answer_error(format!("the sample value {text:?} is not a number")))
    };
    match answer.data {
        None => Err(answer_error("a success without data".to_owned())),
        Some(QueryData::Scalar((_, v))) => number(&v).map(Observation::Value),
        Some(QueryData::Vector(samples)) => match samples.as_slice() {
            [] => Ok(Observation::Empty),
            [one] => match &one.value {
                Some((_, v)) => number(v).map(Observation::Value),
                None => Ok(Observation::Unclear(
                    "the sample is a native histogram, not a number".to_owned(),
                )),
            },
            several => {
                let shown: Vec<String> = several
                    .iter()
                    .take(3)
                    .map(|s| {
                        let labels: Vec<String> =
                            s.metric.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                        format!("{{{}}}", labels.join(", "))
                    })
                    .collect();
                Ok(Observation::Unclear(format!(
                    "the query returned {} series ({}{}); expected one: aggregate it, e.g. with sum()",
                    several.len(),
                    shown.join(", "),
                    if several.len() > 3 { ", ..." } else { "" }
                )))
            }
        },
        Some(QueryData::Matrix(_) | QueryData::String(_)) => Err(answer_error(
            "a range vector or string; expected an instant vector or a scalar (drop the [range] selector or wrap it in a function such as rate())".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> Result<Observation, ProviderError> {
        parse_query_response(status, body.as_bytes(), "q", "http://p:9090/")
    }

    #[test]
    fn one_sample_or_a_scalar_is_the_value() {
        assert_eq!(
            parse(
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"0.25"]}]}}"#
            ),
            Ok(Observation::Value(0.25))
        );
        assert_eq!(
            parse(
                200,
                r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"+Inf"]}}"#
            ),
            Ok(Observation::Value(f64::INFINITY))
        );
        let Ok(Observation::Value(nan)) = parse(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#,
        ) else {
            panic!("NaN is a value the judge calls inconclusive")
        };
        assert!(nan.is_nan());
    }

    #[test]
    fn no_series_is_empty_and_several_are_unclear() {
        assert_eq!(
            parse(
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#
            ),
            Ok(Observation::Empty)
        );
        let Ok(Observation::Unclear(why)) = parse(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"code":"200"},"value":[1,"1"]},{"metric":{"code":"500"},"value":[1,"2"]}]}}"#,
        ) else {
            panic!("unclear")
        };
        assert!(
            why.starts_with(r#"the query returned 2 series ({code="200"}, {code="500"})"#),
            "{why}"
        );
    }

    #[test]
    fn an_error_names_the_query_and_the_servers_message() {
        let e = parse(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected \")\""}"#,
        )
        .expect_err("refused");
        assert_eq!(
            e.to_string(),
            r#"prometheus query "q" failed on http://p:9090/: HTTP 400: bad_data: 1:5: parse error: unexpected ")""#
        );
        let e = parse(502, "<html>Bad Gateway</html>").expect_err("not the API");
        assert!(
            e.to_string().starts_with(r#"prometheus query "q": unexpected answer from http://p:9090/: HTTP 502, not a Prometheus API answer"#)
                && e.to_string().ends_with("<html>Bad Gateway</html>"),
            "{e}"
        );
        let e = parse(
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
        )
        .expect_err("matrix");
        assert!(e.to_string().contains("a range vector"), "{e}");
    }
}
