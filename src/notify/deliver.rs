//! Delivery: one task per sink takes notifications off its queue in order and sends each,
//! retrying transient failures with jittered backoff a bounded number of times.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::payload::{alertmanager_body, signature, slack_body, webhook_body};
use super::{DeliveryResult, Notification};
use crate::apply::{Backoff, retry};
use crate::config::{SinkConfig, SinkKind, check_url};
use crate::outbound::{ClientError, HttpClient, SendError};

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notifications.sinks[{index}] ({sink}): cannot read {}: {source}", path.display())]
    Read {
        index: usize,
        sink: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("notifications.sinks[{index}] ({sink}): {} is empty; write the secret into it", path.display())]
    Empty {
        index: usize,
        sink: String,
        path: PathBuf,
    },
    #[error("notifications.sinks[{index}] ({sink}): the URL in {}: {message}", path.display())]
    Url {
        index: usize,
        sink: String,
        path: PathBuf,
        message: String,
    },
    #[error(transparent)]
    Client(ClientError),
}

/// Why one attempt to deliver failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(String),
    #[error("answer unreadable: {0}")]
    Body(String),
    #[error("answered {status}: {body}")]
    Status { status: u16, body: String },
}

impl DeliveryError {
    /// Whether sending again may succeed: no answer, or the receiver's own trouble (429,
    /// 5xx); another 4xx says the request itself is refused.
    pub fn transient(&self) -> bool {
        match self {
            DeliveryError::Timeout(_) | DeliveryError::Request(_) | DeliveryError::Body(_) => true,
            DeliveryError::Status { status, .. } => *status == 429 || *status >= 500,
        }
    }
}

/// Where a sink sends, with its secrets read.
#[derive(Clone)]
pub enum SinkTarget {
    Webhook {
        url: String,
        secret: Vec<u8>,
    },
    Slack {
        url: String,
    },
    Alertmanager {
        url: String,
        resolve_after: Duration,
    },
}

impl std::fmt::Debug for SinkTarget {
    // The secret and the Slack URL (itself a secret) are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkTarget::Webhook { url, .. } => write!(f, "Webhook({url})"),
            SinkTarget::Slack { .. } => write!(f, "Slack"),
            SinkTarget::Alertmanager { url, .. } => write!(f, "Alertmanager({url})"),
        }
    }
}

impl SinkTarget {
    /// Reads the files `sink` names (`index` names it in errors).
    pub fn load(sink: &SinkConfig, index: usize) -> Result<SinkTarget, NotifyError> {
        let read = |path: &PathBuf| -> Result<String, NotifyError> {
            let text = std::fs::read_to_string(path).map_err(|source| NotifyError::Read {
                index,
                sink: sink.name.clone(),
                path: path.clone(),
                source,
            })?;
            let text = text.trim().to_owned();
            if text.is_empty() {
                return Err(NotifyError::Empty {
                    index,
                    sink: sink.name.clone(),
                    path: path.clone(),
                });
            }
            Ok(text)
        };
        Ok(match &sink.kind {
            SinkKind::Webhook(w) => SinkTarget::Webhook {
                url: w.url.clone(),
                secret: read(&w.secret_file)?.into_bytes(),
            },
            SinkKind::Slack(s) => {
                let url = read(&s.url_file)?;
                check_url(&url).map_err(|_| NotifyError::Url {
                    index,
                    sink: sink.name.clone(),
                    path: s.url_file.clone(),
                    // The URL is the secret: not quoted.
                    message: "expected an http:// or https:// URL".into(),
                })?;
                SinkTarget::Slack { url }
            }
            SinkKind::Alertmanager(a) => SinkTarget::Alertmanager {
                url: format!("{}/api/v2/alerts", a.url.trim_end_matches('/')),
                resolve_after: a.resolve_after,
            },
        })
    }

    /// The request that delivers `n`.
    pub fn request(&self, n: &Notification) -> Result<http::Request<Full<Bytes>>, http::Error> {
        let (url, body, signed) = match self {
            SinkTarget::Webhook { url, secret } => {
                let body = webhook_body(n);
                let sig = signature(secret, &body);
                (url, body, sig)
            }
            SinkTarget::Slack { url } => (url, slack_body(n), None),
            SinkTarget::Alertmanager { url, resolve_after } => {
                (url, alertmanager_body(n, *resolve_after), None)
            }
        };
        let mut builder = http::Request::post(url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "gitopsd");
        if let Some(sig) = signed {
            builder = builder.header("x-gitopsd-signature", sig);
        }
        builder.body(Full::new(Bytes::from(body)))
    }
}

/// One sink's delivery task.
pub(super) struct Delivery {
    pub name: String,
    pub target: SinkTarget,
    pub client: HttpClient,
    pub timeout: Duration,
    pub attempts: u32,
    pub counter: Option<prometheus::IntCounterVec>,
    pub shutdown: CancellationToken,
}

impl Delivery {
    pub async fn run(self, mut rx: mpsc::Receiver<Arc<Notification>>) {
        let backoff = Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(10),
            attempts: self.attempts,
        };
        while let Some(n) = rx.recv().await {
            let result = retry(&backoff, &self.shutdown, DeliveryError::transient, || {
                self.send(&n)
            })
            .await;
            let counted = match result {
                Ok(()) => {
                    debug!(sink = %self.name, tier = %n.tier, revision = %n.revision, event = n.event.as_str(), "notification sent");
                    DeliveryResult::Sent
                }
                Err(e) => {
                    warn!(sink = %self.name, tier = %n.tier, revision = %n.revision, event = n.event.as_str(), error = %e, "notification not delivered");
                    DeliveryResult::Failed
                }
            };
            if let Some(c) = &self.counter {
                c.with_label_values(&[self.name.as_str(), counted.label()])
                    .inc();
            }
        }
    }

    async fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let request = self
            .target
            .request(n)
            .map_err(|e| DeliveryError::Request(e.to_string()))?;
        match self.client.send(request, self.timeout).await {
            Ok(a) if (200..300).contains(&a.status) => Ok(()),
            Ok(a) => Err(DeliveryError::Status {
                status: a.status,
                body: crate::escape::printable(&String::from_utf8_lossy(&a.body), 200),
            }),
            Err(SendError::Timeout) => Err(DeliveryError::Timeout(self.timeout)),
            Err(SendError::Request(e)) => Err(DeliveryError::Request(e)),
            Err(SendError::Body(e)) => Err(DeliveryError::Body(e)),
        }
    }
}
