//! The outbound HTTP client that analysis providers and notification sinks share: hyper over
//! rustls (both already in the tree through kube), HTTP/1.1, a deadline on the whole exchange
//! and a bound on the body read.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The most of an answer that is read: a Prometheus answer with one sample is a few hundred
/// bytes, and a check's JSON little more; anything this large is a wrong query or endpoint.
const MAX_BODY_BYTES: usize = 4 << 20;

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot load the system's root certificates for outbound https (analysis checks, notifications): {0}"
    )]
    Roots(#[source] std::io::Error),
}

/// Why one exchange failed (the provider names what was asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    Timeout,
    Request(String),
    Body(String),
}

/// An answer: its status and body.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// A cheap handle (clones share the connection pool).
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    pub fn new() -> Result<Self, ClientError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(ClientError::Roots)?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Sends one request and reads its answer, all within `timeout`.
    pub async fn send(
        &self,
        request: ::http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, SendError> {
        let exchange = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(|e| SendError::Request(error_chain(&e)))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| SendError::Body(e.to_string()))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(SendError::Timeout))
    }
}

/// The error and its causes on one line: hyper's own message ("client error (Connect)") says
/// little without them ("Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
