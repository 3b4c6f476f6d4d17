//! What each sink is sent for a notification: pure functions of the notification.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::Notification;
use crate::config::NotifyEvent;

/// The generic webhook's body: the notification itself, as JSON.
pub fn webhook_body(n: &Notification) -> Vec<u8> {
    // A struct of strings, numbers and a timestamp: serializing it cannot fail; were it to,
    // an empty object still tells the receiver something happened.
    serde_json::to_vec(n).unwrap_or_else(|_| b"{}".to_vec())
}

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`, the `X-Gitopsd-Signature` header (the
/// shape GitHub's `X-Hub-Signature-256` has, so receivers' existing checks fit). `None` only
/// if the key were refused, which HMAC never does (any length is a valid key).
pub fn signature(secret: &[u8], body: &[u8]) -> Option<String> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).ok()?;
    mac.update(body);
    Some(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// A Slack incoming webhook's body: `{"text": ...}`, the summary first, details below.
pub fn slack_body(n: &Notification) -> Vec<u8> {
    let mut text = if n.resolved {
        format!("*{} resolved* {}", n.event.as_str(), n.summary)
    } else {
        format!("*{}* [{}] {}", n.event.as_str(), n.severity, n.summary)
    };
    for d in n.details.iter().filter(|d| !d.is_empty()) {
        text.push('\n');
        text.push_str(d);
    }
    json!({ "text": text }).to_string().into_bytes()
}

/// Alertmanager's `POST /api/v2/alerts` body: one alert, labelled by what it is and where
/// (the same event of the same tier is one alert, updated), resolving `resolve_after` later,
/// or at once for a notification that something is over.
pub fn alertmanager_body(n: &Notification, resolve_after: Duration) -> Vec<u8> {
    let ends = if n.resolved {
        n.at
    } else {
        n.at + chrono::Duration::from_std(resolve_after)
            .unwrap_or_else(|_| chrono::Duration::hours(1))
    };
    let alert: Value = json!({
        "labels": {
            "alertname": alertname(n.event),
            "tier": n.tier,
            "severity": n.severity.as_str(),
            "event": n.event.as_str(),
            "source": "gitopsd",
        },
        "annotations": {
            "summary": n.summary,
            "description": n.details.join("\n"),
            "revision": n.revision.as_str(),
        },
        "startsAt": n.at.to_rfc3339(),
        "endsAt": ends.to_rfc3339(),
    });
    json!([alert]).to_string().into_bytes()
}

/// Alert names as Prometheus rules spell them.
fn alertname(e: NotifyEvent) -> &'static str {
    match e {
        NotifyEvent::DriftFound => "GitopsdDriftFound",
        NotifyEvent::SyncFailed => "GitopsdSyncFailed",
        NotifyEvent::RolledBack => "GitopsdRolledBack",
        NotifyEvent::PromotionBlocked => "GitopsdPromotionBlocked",
        NotifyEvent::RevisionHealthy => "GitopsdRevisionHealthy",
    }
}
