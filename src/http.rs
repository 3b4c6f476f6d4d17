//! The status endpoint: liveness, readiness, each tier's status as JSON and its drift as a
//! diff, and the dashboard at `/`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use tracing::warn;

use serde::Deserialize;

use crate::daemon::Handles;
use crate::status::{SyncState, TierStatus};

mod dashboard;
mod secret;
mod sync;
mod webhook;

pub use secret::{Secret, SecretFileError};
pub use webhook::{Webhook, WebhookResult, WebhookStats};

/// Request bodies of every route but the webhook: none of them takes one larger than this.
const MAX_BODY: usize = 64 * 1024;
/// A request (body read and answer included) that takes longer is answered 408: a slow client
/// cannot hold a connection and its task open.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(handles: Handles) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::handler))
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
        .with_state(handles)
}

/// Serves until `shutdown`. Each request knows its peer's address (`ConnectInfo`), for the
/// audit of sync requests and the webhook's logs.
///
/// No header read timeout: hyper has one (30 s by default) but applies it only with a timer,
/// and `axum::serve` sets none; a client that never finishes its headers keeps its connection
/// until it goes away. Closing that needs our own accept loop over hyper-util.
pub async fn serve(listener: TcpListener, handles: Handles, shutdown: CancellationToken) {
    let app = router(handles).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        warn!(error = %e, "the status endpoint stopped");
    }
}

/// Ready once every tier has finished a sync (whatever its result): the daemon is working. A
/// replica on standby (another one leads) is ready: it serves status and metrics, and must stay
/// in the Service and count for the PodDisruptionBudget.
async fn readyz(State(h): State<Handles>) -> Response {
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

async fn tiers(State(h): State<Handles>) -> Json<Vec<TierStatus>> {
    Json(h.tiers.iter().map(|(_, s)| s.snapshot()).collect())
}

async fn tier(State(h): State<Handles>, Path(name): Path<String>) -> Response {
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
    State(h): State<Handles>,
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
            format!("format {other:?}: use text (the default) or json\n"),
        )
            .into_response(),
    }
}

fn not_found(h: &Handles, name: &str) -> Response {
    let known: Vec<&str> = h.tiers.iter().map(|(n, _)| n.as_str()).collect();
    (
        StatusCode::NOT_FOUND,
        format!("no tier {name:?}; tiers: {}\n", known.join(", ")),
    )
        .into_response()
}
