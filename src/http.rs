//! The status endpoint: liveness, readiness and each tier's status as JSON.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::daemon::Handles;
use crate::status::{SyncState, TierStatus};

pub fn router(handles: Handles) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::handler))
        .route("/api/v1/tiers", get(tiers))
        .route("/api/v1/tiers/{tier}", get(tier))
        .route("/api/v1/tiers/{tier}/sync", post(sync_now))
        .with_state(handles)
}

pub async fn serve(listener: TcpListener, handles: Handles, shutdown: CancellationToken) {
    let app = router(handles);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        warn!(error = %e, "the status endpoint stopped");
    }
}

/// Ready once every tier has finished a sync (whatever its result): the daemon is working.
async fn readyz(State(h): State<Handles>) -> Response {
    let waiting: Vec<String> = h
        .tiers
        .iter()
        .filter(|(_, s)| s.snapshot().sync == SyncState::Unknown)
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

async fn sync_now(State(h): State<Handles>, Path(name): Path<String>) -> Response {
    match h.sync_now.get(&name) {
        Some(trigger) => {
            h.fetch_now.notify_one();
            trigger.notify_one();
            (StatusCode::ACCEPTED, "sync requested\n").into_response()
        }
        None => not_found(&h, &name),
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
