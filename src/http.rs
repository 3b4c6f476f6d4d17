//! The status endpoint: liveness, readiness, each tier's status as JSON and its drift as a
//! diff, and the dashboard at `/`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tracing::{debug, warn};

use serde::Deserialize;

use crate::activity::Observers;
use crate::leader::LeaderView;
use crate::metrics::Metrics;
use crate::status::{StatusHandle, SyncState, TierStatus};

mod dashboard;
mod refused;
mod secret;
mod sync;
mod webhook;

pub use refused::Refusals;
pub use secret::{Secret, SecretFileError};
pub use sync::USER_HEADER;
pub use webhook::Webhook;

/// What the HTTP side reads and pokes (the router's state): the tiers' status and their
/// "sync now" triggers. The daemon builds it; nothing here reaches back into the daemon, and
/// what happens here (manual syncs, webhook deliveries) is told to `observers` as
/// [`Activity`](crate::activity::Activity).
#[derive(Clone)]
pub struct AppState {
    pub tiers: Vec<(String, StatusHandle)>,
    pub sync_now: HashMap<String, Arc<Notify>>,
    pub fetch_now: Arc<Notify>,
    pub observers: Observers,
    /// The bearer token of `POST /api/v1/tiers/{tier}/sync` (`http.tokenFile`); without one
    /// the endpoint answers 403.
    pub api_token: Option<Secret>,
    /// The push webhook (`source.webhookSecretFile`); without a secret `/webhook/git` is 404.
    pub webhook: Option<Arc<Webhook>>,
    /// Served at `GET /metrics` (`None`: answered 404).
    pub metrics: Option<Arc<Metrics>>,
    /// Per tier, the switch `?overrideWindow=true` sets before it triggers the sync.
    pub window_override: HashMap<String, Arc<AtomicBool>>,
    /// Who leads (always this replica without leader election): only the leader reconciles,
    /// and `POST .../sync` on another replica answers 503 naming the leader.
    pub leader: watch::Receiver<LeaderView>,
}

/// Request bodies of every route but the webhook: none of them takes one larger than this.
const MAX_BODY: usize = 64 * 1024;
/// A request (body read and answer included) that takes longer is answered 408: a slow client
/// cannot hold a connection and its task open.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection whose request head has not fully arrived this long after it started is
/// closed (slow or stalled clients; hyper answers 408 where it can).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// The routes, with a refusal budget of their own (see [`router_with`]).
pub fn router(handles: AppState) -> Router {
    router_with(handles, Arc::default())
}

/// The routes; every answer passes [`refused::guard`], which limits clients that keep being
/// refused and keeps the log of refusals bounded (`refusals`).
pub fn router_with(handles: AppState, refusals: Arc<Refusals>) -> Router {
    if let Some(m) = &handles.metrics {
        refusals.count_into(m.http_refused());
    }
    Router::new()
        .route("/", get(dashboard::page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/tiers", get(tiers))
        .route("/api/v1/tiers/{tier}", get(tier))
        .route("/api/v1/tiers/{tier}/diff", get(diff))
        .route("/api/v1/tiers/{tier}/sync", post(sync::sync_now))
        .route(
            "/webhook/git",
            post(webhook::receive).layer(DefaultBodyLimit::max(webhook::MAX_BODY)),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // Outermost: it sees the 404 of an unknown route, the 413 of the body limit and the
        // 408 of the timeout too.
        .layer(axum::middleware::from_fn_with_state(
            refusals,
            refused::guard,
        ))
        .with_state(handles)
}

/// Serves until `shutdown`, then lets open connections finish their request (for at most
/// [`DRAIN`]). Each request knows its peer's address (`ConnectInfo`), for the audit of sync
/// requests and the webhook's logs.
///
/// Our own accept loop rather than `axum::serve`: hyper closes a connection whose request head
/// has not arrived within [`HEADER_READ_TIMEOUT`] only when it has a timer, which
/// `axum::serve` does not give it; without one, a client that never finishes its headers
/// holds its connection and task forever.
pub async fn serve(listener: TcpListener, handles: AppState, shutdown: CancellationToken) {
    let refusals = Arc::new(Refusals::default());
    let app = router_with(handles, refusals.clone());
    let open = Arc::new(refused::Connections::default());
    let mut accept_errors = 0u64;
    // Once a window: how many refusals the log left out, so a flood that stopped shows its size.
    let summary = {
        let shutdown = shutdown.clone();
        let refusals = refusals.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(refused::WINDOW);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => refusals.summary(),
                }
            }
        })
    };
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment rather than spin, and log
                    // the 1st, 10th, 100th... only (this can last).
                    accept_errors += 1;
                    if refused::is_power_of_ten(accept_errors) {
                        warn!(error = %e, errors = accept_errors, "cannot accept a connection on the status endpoint");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        // A client holding too many connections open (or all of them together) gets its new
        // one closed at once: tasks and file descriptors stay bounded.
        let client = refused::Client::of(peer.ip());
        let Some(slot) = open.open(client) else {
            refused::connection_refused(&refusals, client);
            drop(stream);
            continue;
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "status endpoint connection ended");
            }
        });
    }
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(after = ?DRAIN, "status endpoint connections still open at shutdown; closing them");
    }
    summary.abort();
}

/// `GET /metrics`: the text exposition format (version 0.0.4), the gauges of who leads and of
/// each tier's state refreshed first; 404 when metrics are off.
async fn metrics(State(h): State<AppState>) -> Response {
    match &h.metrics {
        Some(m) => {
            m.set_leading(h.leader.borrow().leading);
            (
                [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                m.render(&h.tiers),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response(),
    }
}

/// Ready once every tier has finished a sync (whatever its result): the daemon is working. A
/// replica on standby (another one leads) is ready: it serves status and metrics, and must stay
/// in the Service and count for the PodDisruptionBudget.
async fn readyz(State(h): State<AppState>) -> Response {
    if let Some(note) = h.leader.borrow().standby_note() {
        return format!("ok ({note})\n").into_response();
    }
    let waiting: Vec<String> = h
        .tiers
        .iter()
        .filter(|(_, s)| s.read(|t| t.sync) == SyncState::Unknown)
        .map(|(n, _)| n.clone())
        .collect();
    if waiting.is_empty() {
        "ok\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("waiting for the first sync of: {}\n", waiting.join(", ")),
        )
            .into_response()
    }
}

async fn tiers(State(h): State<AppState>) -> Json<Vec<TierStatus>> {
    Json(h.tiers.iter().map(|(_, s)| s.snapshot()).collect())
}

async fn tier(State(h): State<AppState>, Path(name): Path<String>) -> Response {
    match h.tiers.iter().find(|(n, _)| *n == name) {
        Some((_, s)) => Json(s.snapshot()).into_response(),
        None => not_found(&h, &name),
    }
}

#[derive(Debug, Deserialize)]
struct DiffQuery {
    /// `text` (the default): the unified diff; `json`: the drift report.
    format: Option<String>,
}

/// The tier's current drift as `gitopsd diff` prints it (no colour; Secret values masked, as
/// they are in the report), or the report itself with `?format=json`. 503 before the tier's
/// first reconcile has produced a report.
async fn diff(
    State(h): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Response {
    let Some((_, s)) = h.tiers.iter().find(|(n, _)| *n == name) else {
        return not_found(&h, &name);
    };
    let Some(report) = s.read(|t| t.drift.clone()) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("tier {name}: no drift report yet (its first reconcile has not finished)\n"),
        )
            .into_response();
    };
    match q.format.as_deref() {
        None | Some("text") => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            crate::drift::render_text(&report, false),
        )
            .into_response(),
        Some("json") => Json(report).into_response(),
        Some(other) => (
            StatusCode::BAD_REQUEST,
            format!(
                "format \"{}\": use text (the default) or json\n",
                crate::escape::printable(other, 64)
            ),
        )
            .into_response(),
    }
}

/// 404 for a tier that does not exist, naming the ones that do (the caller's name escaped and
/// cut: it is echoed).
fn not_found(h: &AppState, name: &str) -> Response {
    let known: Vec<&str> = h.tiers.iter().map(|(n, _)| n.as_str()).collect();
    (
        StatusCode::NOT_FOUND,
        axum::Extension(refused::Refused::new(
            refused::Reason::NotFound,
            "no such tier",
        )),
        format!(
            "no tier \"{}\"; tiers: {}\n",
            crate::escape::printable(name, 64),
            known.join(", ")
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::activity::Observers;

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_its_headers_is_cut_off_and_others_are_served() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let handles = sync::test_handles(None, None, Observers::default());
        let server = tokio::spawn(serve(listener, handles, shutdown.clone()));

        let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: gitopsd\r\n")
            .await
            .expect("half a request head");
        let started = tokio::time::Instant::now();
        let mut answer = Vec::new();
        let _ = slow.read_to_end(&mut answer).await;
        let waited = started.elapsed();
        assert!(
            waited >= HEADER_READ_TIMEOUT && waited < HEADER_READ_TIMEOUT + Duration::from_secs(1),
            "closed after {waited:?}"
        );

        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        client
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: gitopsd\r\nConnection: close\r\n\r\n")
            .await
            .expect("a whole request");
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok\n"), "{answer}");

        shutdown.cancel();
        server.await.expect("the server stops on shutdown");
    }

    #[tokio::test]
    async fn a_client_over_its_connection_limit_is_closed_at_once_and_others_are_served() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let handles = sync::test_handles(None, None, Observers::default());
        let server = tokio::spawn(serve(listener, handles, shutdown.clone()));

        let from = |ip: [u8; 4]| {
            let s = tokio::net::TcpSocket::new_v4().expect("socket");
            s.bind(std::net::SocketAddr::from((ip, 0))).expect("bind");
            s.connect(addr)
        };
        // Idle connections (no request yet) up to the limit.
        let mut held = Vec::new();
        for _ in 0..refused::CONNECTIONS_PER_CLIENT {
            held.push(from([127, 0, 0, 1]).await.expect("connect"));
        }
        let mut over = from([127, 0, 0, 1]).await.expect("connect");
        let _ = over
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
            .await;
        let mut answer = Vec::new();
        let _ = over.read_to_end(&mut answer).await;
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

        let mut other = from([127, 0, 0, 2]).await.expect("connect");
        other
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n")
            .await
            .expect("a whole request");
        let mut answer = String::new();
        other.read_to_string(&mut answer).await.expect("answer");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        drop(held);
        shutdown.cancel();
        server.await.expect("the server stops on shutdown");
    }
}
