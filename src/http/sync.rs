//! `POST /api/v1/tiers/{tier}/sync`: a sync now, for whoever holds the API token
//! (`http.tokenFile`). Without a configured token the endpoint is off (403), never open.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::info;

use super::refused::{Reason, Refused};

use super::AppState;
use crate::activity::Activity;

/// The header a caller may send to say who it is. Informational only: anyone holding the token
/// can write anything in it; the audit trail's fact is the remote address.
pub const USER_HEADER: &str = "x-gitopsd-user";
/// At most this many characters of [`USER_HEADER`] are kept.
const USER_MAX: usize = 64;

/// `?overrideWindow=true`: sync even while the tier's change window is closed (recorded in
/// the audit log with who asked).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncQuery {
    #[serde(default)]
    override_window: bool,
}

pub async fn sync_now(
    State(h): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<SyncQuery>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let override_window = query.override_window;
    let remote = remote_addr(&request);
    // Refusals are logged by `refused::guard`, within its budget, never here: the tier name
    // is the caller's text until it is known to be a tier.
    let Some(token) = &h.api_token else {
        return (
            StatusCode::FORBIDDEN,
            Extension(Refused::new(
                Reason::Forbidden,
                "sync over the API is disabled",
            )),
            "sync over the API is disabled: set http.tokenFile\n",
        )
            .into_response();
    };
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let authorized = offered.is_some_and(|t| token.matches(t.as_bytes()));
    if !authorized {
        let why = if offered.is_some() {
            "wrong token"
        } else {
            "no bearer token"
        };
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Extension(Refused::new(Reason::Unauthorized, why)),
            "unauthorized: send Authorization: Bearer <the token in http.tokenFile>\n",
        )
            .into_response();
    }
    let Some(trigger) = h.sync_now.get(&name) else {
        return super::not_found(&h, &name);
    };
    let view = h.leader.borrow().clone();
    if let Some(note) = view.standby_note() {
        info!(tier = %name, remote = %remote, leader = view.holder.as_deref().unwrap_or("-"), "sync requested of a replica that does not lead");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "2")],
            format!(
                "this replica ({}) does not reconcile: {note}; ask the leader\n",
                view.identity
            ),
        )
            .into_response();
    }
    let who = who(
        &remote,
        headers.get(USER_HEADER).and_then(|v| v.to_str().ok()),
    );
    info!(tier = %name, who = %who, override_window, "sync requested over the API");
    if override_window && let Some(flag) = h.window_override.get(&name) {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    h.observers.emit(Activity::ManualSync {
        tier: name.clone(),
        who,
        override_window,
    });
    h.fetch_now.notify_one();
    trigger.notify_one();
    (StatusCode::ACCEPTED, "sync requested\n").into_response()
}

/// The token of `Bearer <token>` (the scheme is case-insensitive, RFC 7235).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The peer's address, as `axum::serve` with connect info records it (`unknown` without it).
pub(super) fn remote_addr(request: &Request) -> String {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.to_string())
}

/// The remote address, and what the caller says about itself (`X-Gitopsd-User`) reduced to
/// printable, harmless characters and [`USER_MAX`] of them, so a log or an Event cannot be
/// forged or flooded through it.
fn who(remote: &str, user: Option<&str>) -> String {
    let user: String = user
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.@+:/ ".contains(*c))
        .take(USER_MAX)
        .collect();
    let user = user.trim();
    if user.is_empty() {
        remote.to_owned()
    } else {
        format!("{remote} (X-Gitopsd-User: {user})")
    }
}

/// AppState for router tests: tiers `a` and `b`, no daemon behind them.
#[cfg(test)]
pub(super) fn test_handles(
    token: Option<&str>,
    webhook: Option<super::Webhook>,
    observers: crate::activity::Observers,
) -> AppState {
    use std::sync::Arc;
    use tokio::sync::Notify;
    let names = ["a", "b"];
    AppState {
        tiers: names
            .iter()
            .map(|n| (n.to_string(), crate::status::StatusHandle::new(n)))
            .collect(),
        sync_now: names
            .iter()
            .map(|n| (n.to_string(), Arc::new(Notify::new())))
            .collect(),
        fetch_now: Arc::new(Notify::new()),
        observers,
        api_token: token.map(super::Secret::new),
        webhook: webhook.map(Arc::new),
        metrics: None,
        window_override: names
            .iter()
            .map(|n| (n.to_string(), Arc::default()))
            .collect(),
        leader: tokio::sync::watch::channel(crate::leader::LeaderView::always("test")).1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use tower::ServiceExt;

    use crate::activity::{Observer, Observers};

    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, String)>>);

    impl Observer for Seen {
        fn observe(&self, activity: &Activity) {
            if let Activity::ManualSync { tier, who, .. } = activity {
                self.0.lock().unwrap().push((tier.clone(), who.clone()));
            }
        }
    }

    async fn post_sync(h: &AppState, tier: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::post(format!("/api/v1/tiers/{tier}/sync"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(Body::empty()).expect("request");
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40312))));
        super::super::router(h.clone())
            .oneshot(req)
            .await
            .expect("infallible")
    }

    async fn text(r: Response) -> String {
        let b = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8_lossy(&b).into_owned()
    }

    #[tokio::test]
    async fn sync_needs_the_bearer_token_and_records_who_asked() {
        let seen = Arc::new(Seen::default());
        let h = test_handles(Some("t0ken"), None, Observers::new(vec![seen.clone()]));

        let r = post_sync(&h, "a", &[]).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let r = post_sync(&h, "a", &[("authorization", "Bearer wrong")]).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let r = post_sync(&h, "a", &[("authorization", "Basic t0ken")]).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        // Unknown tiers are not revealed to callers without the token.
        let r = post_sync(&h, "nope", &[]).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(seen.0.lock().unwrap().is_empty());

        let r = post_sync(
            &h,
            "a",
            &[("authorization", "Bearer t0ken"), (USER_HEADER, "alice")],
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let r = post_sync(&h, "b", &[("authorization", "Bearer t0ken")]).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let r = post_sync(&h, "nope", &[("authorization", "Bearer t0ken")]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![
                (
                    "a".to_owned(),
                    "192.0.2.7:40312 (X-Gitopsd-User: alice)".to_owned()
                ),
                ("b".to_owned(), "192.0.2.7:40312".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn override_window_sets_the_tiers_switch_and_is_recorded() {
        let seen = Arc::new(Seen::default());
        let h = test_handles(Some("t0ken"), None, Observers::new(vec![seen.clone()]));
        let flag = |t: &str| h.window_override[t].load(std::sync::atomic::Ordering::SeqCst);
        let r = post_sync(&h, "a", &[("authorization", "Bearer t0ken")]).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert!(!flag("a"));
        let mut req = Request::post("/api/v1/tiers/a/sync?overrideWindow=true")
            .header("authorization", "Bearer t0ken")
            .body(Body::empty())
            .expect("request");
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40312))));
        let r = super::super::router(h.clone())
            .oneshot(req)
            .await
            .expect("infallible");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert!(flag("a"));
        assert!(!flag("b"));
    }

    #[tokio::test]
    async fn sync_is_forbidden_without_a_configured_token_and_reads_stay_open() {
        let h = test_handles(None, None, Observers::default());
        for headers in [&[][..], &[("authorization", "Bearer anything")][..]] {
            let r = post_sync(&h, "a", headers).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
            assert_eq!(
                text(r).await,
                "sync over the API is disabled: set http.tokenFile\n"
            );
        }
        for path in ["/healthz", "/api/v1/tiers", "/api/v1/tiers/a"] {
            let r = super::super::router(h.clone())
                .oneshot(Request::get(path).body(Body::empty()).expect("request"))
                .await
                .expect("infallible");
            assert_eq!(r.status(), StatusCode::OK, "{path}");
        }
    }

    #[test]
    fn bearer_takes_the_token_of_a_bearer_header_only() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearerabc"), None);
    }

    #[test]
    fn who_is_the_address_and_a_sanitised_bounded_user() {
        assert_eq!(who("10.0.0.1:4000", None), "10.0.0.1:4000");
        assert_eq!(who("10.0.0.1:4000", Some("  ")), "10.0.0.1:4000");
        assert_eq!(
            who("10.0.0.1:4000", Some("alice@example.com")),
            "10.0.0.1:4000 (X-Gitopsd-User: alice@example.com)"
        );
        // Control characters (a forged log line) are dropped, and the length is bounded.
        assert_eq!(
            who("a", Some("bob\r\nlevel=error msg=\"forged\"")),
            "a (X-Gitopsd-User: boblevelerror msgforged)"
        );
        let long = "x".repeat(500);
        assert_eq!(
            who("a", Some(&long)),
            format!("a (X-Gitopsd-User: {})", "x".repeat(64))
        );
    }

    #[tokio::test]
    async fn a_replica_on_standby_refuses_a_sync_naming_the_leader_and_stays_ready() {
        let seen = Arc::new(Seen::default());
        let mut h = test_handles(Some("t0ken"), None, Observers::new(vec![seen.clone()]));
        let (tx, rx) = tokio::sync::watch::channel(crate::leader::LeaderView {
            enabled: true,
            leading: false,
            identity: "gitopsd-1".into(),
            holder: Some("gitopsd-0".into()),
        });
        h.leader = rx;
        let r = post_sync(&h, "a", &[("authorization", "Bearer t0ken")]).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = text(r).await;
        assert!(body.contains("standby, leader is gitopsd-0"), "{body}");
        assert!(seen.0.lock().unwrap().is_empty(), "no sync was recorded");
        let ready = super::super::router(h.clone())
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(ready.status(), StatusCode::OK, "a standby replica is ready");

        tx.send_modify(|v| v.leading = true);
        let r = post_sync(&h, "a", &[("authorization", "Bearer t0ken")]).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
}
