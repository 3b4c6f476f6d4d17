//! The HTTP check provider (as Flagger's webhooks): the status alone, or a number read from
//! the JSON body at `jsonPath`.

use http_body_util::Full;
use hyper::body::Bytes;

use super::client::{HttpClient, SendError};
use super::measure::{Observation, ProviderError};
use crate::config::{HttpCheck, JsonPath};

/// Runs HTTP checks with the shared client.
#[derive(Debug, Clone)]
pub struct HttpChecker {
    client: HttpClient,
}

impl HttpChecker {
    pub fn new(client: HttpClient) -> Self {
        HttpChecker { client }
    }

    pub async fn check(&self, check: &HttpCheck) -> Result<Observation, ProviderError> {
        let what = || format!("http check {} {}", check.method.as_str(), check.url);
        let url = check.url.to_string();
        let request = ::http::Request::builder()
            .method(check.method.as_str())
            .uri(check.url.0.clone())
            .header(::http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| ProviderError::Request {
                what: what(),
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let answer = match self.client.send(request, check.timeout).await {
            Ok(a) => a,
            Err(SendError::Timeout) => {
                return Err(ProviderError::Timeout {
                    what: what(),
                    url,
                    after: check.timeout,
                });
            }
            Err(SendError::Request(reason)) => {
                return Err(ProviderError::Request {
                    what: what(),
                    url,
                    reason,
                });
            }
            Err(SendError::Body(reason)) => {
                return Err(ProviderError::Answer {
                    what: what(),
                    url,
                    reason,
                });
            }
        };
        judge_answer(check, answer.status, &answer.body).map_err(|reason| ProviderError::Answer {
            what: what(),
            url,
            reason,
        })
    }
}

/// The observation an answer makes (pure): a status not expected is a failed check whatever
/// the body; with `jsonPath`, the number there.
fn judge_answer(check: &HttpCheck, status: u16, body: &[u8]) -> Result<Observation, String> {
    let expected = match check.expect_status {
        Some(code) => status == code,
        None => (200..300).contains(&status),
    };
    match &check.json_path {
        Some(path) if expected => value_at(path, body),
        _ => Ok(Observation::Status {
            code: status,
            expected,
        }),
    }
}

fn value_at(path: &JsonPath, body: &[u8]) -> Result<Observation, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match path.find(&doc) {
        None | Some(serde_json::Value::Null) => Ok(Observation::Empty),
        Some(serde_json::Value::Number(n)) => n
            .as_f64()
            .map(Observation::Value)
            .ok_or_else(|| format!("the number at {path} does not fit a float")),
        // Prometheus-style numbers written as strings ("0.25", "NaN").
        Some(serde_json::Value::String(s)) => s
            .parse()
            .map(Observation::Value)
            .map_err(|_| format!("the value at {path} is {s:?}, not a number")),
        Some(serde_json::Value::Bool(b)) => Ok(Observation::Value(if *b { 1.0 } else { 0.0 })),
        Some(other) => Err(format!(
            "the value at {path} is {}, not a number",
            if other.is_array() {
                "an array"
            } else {
                "an object"
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::HttpMethod;

    fn check(expect_status: Option<u16>, json_path: Option<&str>) -> HttpCheck {
        HttpCheck {
            url: "http://x/check".parse().expect("url"),
            method: HttpMethod::Get,
            expect_status,
            json_path: json_path.map(|p| p.parse().expect("path")),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_status_alone_or_the_value_at_the_path() {
        let c = check(None, None);
        assert_eq!(
            judge_answer(&c, 204, b""),
            Ok(Observation::Status {
                code: 204,
                expected: true
            })
        );
        assert_eq!(
            judge_answer(&c, 500, b""),
            Ok(Observation::Status {
                code: 500,
                expected: false
            })
        );
        assert_eq!(
            judge_answer(&check(Some(418), None), 200, b""),
            Ok(Observation::Status {
                code: 200,
                expected: false
            })
        );
        let c = check(None, Some("$.data.rate"));
        assert_eq!(
            judge_answer(&c, 200, br#"{"data":{"rate":0.5}}"#),
            Ok(Observation::Value(0.5))
        );
        assert_eq!(
            judge_answer(&c, 200, br#"{"data":{"rate":"0.25"}}"#),
            Ok(Observation::Value(0.25))
        );
        assert_eq!(
            judge_answer(&c, 200, br#"{"data":{}}"#),
            Ok(Observation::Empty)
        );
        assert_eq!(
            judge_answer(&c, 503, br#"{"data":{"rate":0.0}}"#),
            Ok(Observation::Status {
                code: 503,
                expected: false
            }),
            "a status not expected fails the check whatever the body says"
        );
        assert_eq!(
            judge_answer(&c, 200, br#"{"data":{"rate":[1]}}"#),
            Err("the value at $.data.rate is an array, not a number".to_owned())
        );
        assert!(
            judge_answer(&c, 200, b"ok")
                .expect_err("not JSON")
                .starts_with("the body is not JSON")
        );
    }
}
