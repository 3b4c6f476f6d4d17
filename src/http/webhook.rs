//! `POST /webhook/git`: a push webhook from GitHub or GitLab makes the poller fetch at once
//! instead of at the next interval.
//!
//! The order of the checks: the route is off (404) without `source.webhookSecretFile`; the
//! body is read up to [`MAX_BODY`] (413 past it); the signature (GitHub: HMAC-SHA256 of the
//! raw body) or token (GitLab) is checked in constant time (401). Only an authentic delivery
//! goes on: one already received ([`DEDUPE_WINDOW`], by delivery id and by body digest) is
//! answered 200 and triggers nothing; the others take a token from the bucket shared by all
//! senders (429 when empty), and only then is the JSON parsed. A push to a ref some tier
//! follows wakes the poller (202); any other authentic delivery is answered 200 and changes
//! nothing.
//!
//! Forged deliveries never touch the shared bucket, so they cannot starve genuine ones: they
//! are refusals, limited per client with every other refused request (`refused.rs`).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use tracing::info;

use super::AppState;
use super::refused::{Reason, Refused};
use super::secret::Secret;
use crate::activity::{Activity, WebhookResult};
use crate::escape::printable;

/// The largest delivery read. GitHub caps payloads at 25 MB, but a push payload lists up to
/// 2048 commits with their messages and changed paths; a big merge runs to a few MB. 5 MiB
/// lets those through while keeping what one request can make us buffer and hash small.
pub const MAX_BODY: usize = 5 * 1024 * 1024;
/// Authentic deliveries let through per second, on average. A forge sends one per push; since
/// every accepted delivery only wakes the poller (whose `Notify` keeps at most one pending
/// fetch), more would add nothing.
const RATE_PER_SEC: f64 = 10.0;
/// Authentic deliveries let through at once: a push of many branches and tags, or a manual
/// redelivery of a batch, arrives together.
const BURST: f64 = 20.0;
/// How long a delivery is remembered to recognise a replay. Forges retry a failed delivery
/// within minutes; an older replay triggers at most one fetch (of what git holds now).
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(600);
/// Remembered keys at most (two per delivery: its id and its body's digest). At the bucket's
/// rate a window holds at most 6,000 deliveries, so this evicts nothing unexpired in practice;
/// the bound holds whatever happens.
pub const DEDUPE_MAX: usize = 16_384;
/// The headers naming a delivery: GitHub's, GitLab's per-event UUID and its retry key.
const DELIVERY_ID_HEADERS: [&str; 3] = [
    "x-github-delivery",
    "x-gitlab-event-uuid",
    "idempotency-key",
];

/// What the webhook needs: the secret, the refs the tiers follow, the rate limit of authentic
/// deliveries and the deliveries seen lately.
pub struct Webhook {
    secret: Secret,
    refs: Vec<String>,
    state: Mutex<Intake>,
}

/// The shared bucket and the replay window, under one lock: a delivery is checked against the
/// window, takes a token, and is remembered in one step.
#[derive(Debug)]
struct Intake {
    bucket: TokenBucket,
    seen: Seen,
}

impl Webhook {
    /// `refs`: each tier's `ref` as written in the config (`main`, `refs/heads/main`, a tag, a
    /// commit sha).
    pub fn new(secret: Secret, refs: Vec<String>) -> Webhook {
        Webhook {
            secret,
            refs,
            state: Mutex::new(Intake {
                bucket: TokenBucket::new(RATE_PER_SEC, BURST, Instant::now()),
                seen: Seen::default(),
            }),
        }
    }

    fn follows(&self, pushed: &str) -> bool {
        self.refs.iter().any(|r| follows(r, pushed))
    }

    /// Lets an authentic delivery in: `Duplicate` if one of `keys` was seen within the window
    /// (nothing taken), `Err(wait)` over the rate, else remembered.
    fn admit(&self, keys: &[Key], now: Instant) -> Admission {
        let mut intake = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if intake.seen.contains_any(keys, now) {
            return Admission::Duplicate;
        }
        if let Err(wait) = intake.bucket.take(now) {
            return Admission::RateLimited(wait);
        }
        intake.seen.insert(keys, now);
        Admission::Admitted
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("refs", &self.refs).finish()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Admission {
    Admitted,
    Duplicate,
    RateLimited(Duration),
}

/// A remembered delivery: the sha256 of its id or of its body (fixed size whatever the
/// sender wrote).
type Key = [u8; 32];

/// Deliveries seen within [`DEDUPE_WINDOW`], oldest first, at most [`DEDUPE_MAX`] keys.
#[derive(Debug, Default)]
struct Seen {
    order: VecDeque<(Instant, Key)>,
    keys: HashSet<Key>,
}

impl Seen {
    fn expire(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front() {
            if now.saturating_duration_since(*at) < DEDUPE_WINDOW && self.order.len() <= DEDUPE_MAX
            {
                break;
            }
            self.keys.remove(key);
            self.order.pop_front();
        }
    }

    fn contains_any(&mut self, keys: &[Key], now: Instant) -> bool {
        self.expire(now);
        keys.iter().any(|k| self.keys.contains(k))
    }

    fn insert(&mut self, keys: &[Key], now: Instant) {
        for k in keys {
            if self.keys.insert(*k) {
                self.order.push_back((now, *k));
            }
        }
        self.expire(now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.len()
    }
}

/// The keys a delivery is remembered by: each delivery id header it carries, and the digest
/// of its event and body. The id is not covered by GitHub's signature (nor is anything by
/// GitLab's token), so a replay with a new id is caught by the body digest; a forge's own
/// retry of a delivery carries the same id.
fn delivery_keys(headers: &HeaderMap, body: &[u8]) -> Vec<Key> {
    let mut keys = Vec::new();
    for name in DELIVERY_ID_HEADERS {
        if let Some(id) = headers.get(name) {
            let mut h = Sha256::new();
            h.update(b"id\0");
            h.update(name.as_bytes());
            h.update(b"\0");
            h.update(id.as_bytes());
            keys.push(h.finalize().into());
        }
    }
    let event = headers
        .get("x-github-event")
        .or_else(|| headers.get("x-gitlab-event"))
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(b"body\0");
    h.update(event);
    h.update(b"\0");
    h.update(body);
    keys.push(h.finalize().into());
    keys
}

pub async fn receive(State(h): State<AppState>, request: Request) -> Response {
    let Some(hook) = h.webhook.clone() else {
        return (
            StatusCode::NOT_FOUND,
            Extension(Refused::new(Reason::NotFound, "the push webhook is off")),
            "the push webhook is off: set source.webhookSecretFile\n",
        )
            .into_response();
    };
    let result = handle(&hook, &h, request).await;
    h.observers
        .emit(Activity::WebhookDelivery { result: result.0 });
    result.1
}

/// A refusal's answer, with the word for the refusal log.
fn refuse(
    result: WebhookResult,
    status: StatusCode,
    reason: Reason,
    detail: impl Into<std::borrow::Cow<'static, str>>,
    body: String,
) -> (WebhookResult, Response) {
    (
        result,
        (status, Extension(Refused::new(reason, detail)), body).into_response(),
    )
}

async fn handle(hook: &Webhook, h: &AppState, request: Request) -> (WebhookResult, Response) {
    let headers = request.headers().clone();
    // Honours the route's DefaultBodyLimit: 413 past MAX_BODY.
    let body = match Bytes::from_request(request, &()).await {
        Ok(b) => b,
        Err(rejection) => {
            let reason = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Reason::TooLarge
            } else {
                Reason::BadRequest
            };
            let (result, mut response) = (WebhookResult::BadRequest, rejection.into_response());
            response
                .extensions_mut()
                .insert(Refused::new(reason, "webhook body refused"));
            return (result, response);
        }
    };
    let delivery = match verify(&headers, &body, &hook.secret) {
        Ok(d) => d,
        Err(Invalid::Unauthorized(why)) => {
            return refuse(
                WebhookResult::Unauthorized,
                StatusCode::UNAUTHORIZED,
                Reason::Unauthorized,
                why,
                format!("unauthorized: {why}\n"),
            );
        }
        Err(Invalid::BadRequest(why)) => {
            return refuse(
                WebhookResult::BadRequest,
                StatusCode::BAD_REQUEST,
                Reason::BadRequest,
                why.clone(),
                format!("{why}\n"),
            );
        }
    };
    match hook.admit(&delivery_keys(&headers, &body), Instant::now()) {
        Admission::Admitted => {}
        Admission::Duplicate => {
            return refuse(
                WebhookResult::Duplicate,
                StatusCode::OK,
                Reason::Duplicate,
                "webhook delivery already received",
                "duplicate delivery, ignored\n".to_owned(),
            );
        }
        Admission::RateLimited(wait) => {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let (result, mut response) = refuse(
                WebhookResult::RateLimited,
                StatusCode::TOO_MANY_REQUESTS,
                Reason::RateLimited,
                "webhook deliveries over the rate limit",
                "too many webhook deliveries; retry later\n".to_owned(),
            );
            if let Ok(v) = secs.to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return (result, response);
        }
    }
    match delivery {
        Delivery::Ping => {
            info!("webhook ping");
            (
                WebhookResult::Ignored,
                (StatusCode::OK, "pong\n").into_response(),
            )
        }
        Delivery::Other(event) => {
            info!(event = %event, "webhook event ignored: not a push");
            (
                WebhookResult::Ignored,
                (
                    StatusCode::OK,
                    format!("ignored: event {event:?} is not a push\n"),
                )
                    .into_response(),
            )
        }
        Delivery::Push => match pushed_ref(&body) {
            Err(why) => refuse(
                WebhookResult::BadRequest,
                StatusCode::BAD_REQUEST,
                Reason::BadRequest,
                why.to_string(),
                format!("{why}\n"),
            ),
            Ok(pushed) if hook.follows(&pushed) => {
                info!(git_ref = %printable(&pushed, 256), "webhook push to a followed ref: fetching now");
                // A tokio Notify keeps at most one permit: a flood of pushes leaves one pending
                // fetch, never a queue of them (the poller answers it after the fetch in
                // progress, if any).
                h.fetch_now.notify_one();
                (
                    WebhookResult::Accepted,
                    (
                        StatusCode::ACCEPTED,
                        format!("fetching: ref {} is followed\n", printable(&pushed, 256)),
                    )
                        .into_response(),
                )
            }
            Ok(pushed) => {
                info!(git_ref = %printable(&pushed, 256), "webhook push ignored: ref not followed");
                (
                    WebhookResult::Ignored,
                    (
                        StatusCode::OK,
                        format!("ignored: ref {} is not followed\n", printable(&pushed, 256)),
                    )
                        .into_response(),
                )
            }
        },
    }
}

/// An authentic delivery.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    Push,
    Ping,
    /// Another event, by its name.
    Other(String),
}

#[derive(Debug, PartialEq, Eq)]
enum Invalid {
    Unauthorized(&'static str),
    BadRequest(String),
}

/// Checks a delivery's signature (GitHub) or token (GitLab) against `secret`, in constant time,
/// and says what it is.
fn verify(headers: &HeaderMap, body: &[u8], secret: &Secret) -> Result<Delivery, Invalid> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(event) = text("x-github-event") {
        let signature = text("x-hub-signature-256")
            .ok_or(Invalid::Unauthorized("no X-Hub-Signature-256 header"))?;
        let hex_sig = signature
            .strip_prefix("sha256=")
            .ok_or(Invalid::Unauthorized(
                "X-Hub-Signature-256 is not sha256=<hex>",
            ))?;
        let sig = hex::decode(hex_sig)
            .map_err(|_| Invalid::Unauthorized("X-Hub-Signature-256 is not sha256=<hex>"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|_| Invalid::Unauthorized("unusable secret"))?;
        mac.update(body);
        // verify_slice compares in constant time.
        mac.verify_slice(&sig)
            .map_err(|_| Invalid::Unauthorized("X-Hub-Signature-256 does not match"))?;
        return Ok(match event {
            "push" => Delivery::Push,
            "ping" => Delivery::Ping,
            other => Delivery::Other(bounded(other)),
        });
    }
    if let Some(event) = text("x-gitlab-event") {
        let token =
            text("x-gitlab-token").ok_or(Invalid::Unauthorized("no X-Gitlab-Token header"))?;
        if !secret.matches(token.as_bytes()) {
            return Err(Invalid::Unauthorized("X-Gitlab-Token does not match"));
        }
        return Ok(match event {
            "Push Hook" | "Tag Push Hook" => Delivery::Push,
            other => Delivery::Other(bounded(other)),
        });
    }
    Err(Invalid::BadRequest(
        "not a GitHub or GitLab webhook: neither X-GitHub-Event nor X-Gitlab-Event is set".into(),
    ))
}

/// An event name for a message: at most 64 characters, printable ASCII.
fn bounded(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect()
}

/// Why a push delivery's body names no ref we can use: answered 400 with this text.
#[derive(Debug, thiserror::Error)]
enum PushBodyError {
    #[error("the body is form-encoded: set the webhook's content type to application/json")]
    FormEncoded,
    #[error("the push's ref is longer than {MAX_REF} bytes")]
    RefTooLong,
    #[error("the body is not a push event's JSON with a \"ref\": {0}")]
    NotPushJson(#[source] serde_json::Error),
}

/// The longest pushed ref taken (git itself has no limit; no real ref comes near this).
const MAX_REF: usize = 1024;

/// The `ref` of a push event's JSON body (GitHub and GitLab both send it).
fn pushed_ref(body: &[u8]) -> Result<String, PushBodyError> {
    #[derive(serde::Deserialize)]
    struct Push {
        #[serde(rename = "ref")]
        git_ref: String,
    }
    if body.starts_with(b"payload=") {
        return Err(PushBodyError::FormEncoded);
    }
    match serde_json::from_slice::<Push>(body) {
        Ok(p) if p.git_ref.len() <= MAX_REF => Ok(p.git_ref),
        Ok(_) => Err(PushBodyError::RefTooLong),
        Err(e) => Err(PushBodyError::NotPushJson(e)),
    }
}

/// Whether a push to `pushed` (always a full ref, `refs/heads/main`) moves what a tier that
/// follows `tier_ref` sees. The source resolves a short name as a branch first, then a tag
/// (`main` -> `refs/heads/main` or `refs/tags/main`), and takes a name starting with `refs/`
/// as it is; a commit sha never moves, so no push concerns it.
fn follows(tier_ref: &str, pushed: &str) -> bool {
    if tier_ref.starts_with("refs/") {
        return tier_ref == pushed;
    }
    if tier_ref.len() == 40 && tier_ref.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    pushed
        .strip_prefix("refs/heads/")
        .or_else(|| pushed.strip_prefix("refs/tags/"))
        == Some(tier_ref)
}

/// A token bucket: `burst` tokens at most, refilled at `rate` per second; each request takes one.
#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// HMAC-SHA256 of RFC 4231 test case 2, as GitHub would write it.
    const RFC4231_KEY: &str = "Jefe";
    const RFC4231_DATA: &[u8] = b"what do ya want for nothing?";
    const RFC4231_MAC: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("header value"));
        }
        h
    }

    #[test]
    fn a_github_delivery_signed_with_the_secret_is_accepted() {
        let secret = Secret::new(RFC4231_KEY);
        let sig = format!("sha256={RFC4231_MAC}");
        let h = headers(&[("x-github-event", "push"), ("x-hub-signature-256", &sig)]);
        assert_eq!(verify(&h, RFC4231_DATA, &secret), Ok(Delivery::Push));
        let h = headers(&[("x-github-event", "ping"), ("x-hub-signature-256", &sig)]);
        assert_eq!(verify(&h, RFC4231_DATA, &secret), Ok(Delivery::Ping));
        let h = headers(&[("x-github-event", "issues"), ("x-hub-signature-256", &sig)]);
        assert_eq!(
            verify(&h, RFC4231_DATA, &secret),
            Ok(Delivery::Other("issues".into()))
        );
        // Upper-case hex is still the same signature.
        let upper = format!("sha256={}", RFC4231_MAC.to_uppercase());
        let h = headers(&[("x-github-event", "push"), ("x-hub-signature-256", &upper)]);
        assert_eq!(verify(&h, RFC4231_DATA, &secret), Ok(Delivery::Push));
    }

    #[test]
    fn a_github_delivery_with_a_bad_missing_or_malformed_signature_is_unauthorized() {
        let secret = Secret::new(RFC4231_KEY);
        let unauthorized = |pairs: &[(&'static str, &str)], body: &[u8]| {
            matches!(
                verify(&headers(pairs), body, &secret),
                Err(Invalid::Unauthorized(_))
            )
        };
        let good = format!("sha256={RFC4231_MAC}");
        // The body changed after signing.
        assert!(unauthorized(
            &[("x-github-event", "push"), ("x-hub-signature-256", &good)],
            b"what do ya want for something?"
        ));
        // Signed with another secret.
        let other = Secret::new("not-jefe");
        assert!(matches!(
            verify(
                &headers(&[("x-github-event", "push"), ("x-hub-signature-256", &good)]),
                RFC4231_DATA,
                &other
            ),
            Err(Invalid::Unauthorized(_))
        ));
        // Missing.
        assert!(unauthorized(&[("x-github-event", "push")], RFC4231_DATA));
        // The old SHA-1 header alone is not enough.
        assert!(unauthorized(
            &[
                ("x-github-event", "push"),
                ("x-hub-signature", &format!("sha1={RFC4231_MAC}"))
            ],
            RFC4231_DATA
        ));
        // Wrong prefix, no prefix, not hex, truncated.
        for sig in [
            format!("sha1={RFC4231_MAC}"),
            RFC4231_MAC.to_owned(),
            "sha256=zz".to_owned(),
            format!("sha256={}", &RFC4231_MAC[..62]),
            "sha256=".to_owned(),
        ] {
            assert!(
                unauthorized(
                    &[("x-github-event", "push"), ("x-hub-signature-256", &sig)],
                    RFC4231_DATA
                ),
                "{sig}"
            );
        }
        // A ping is no exception.
        assert!(unauthorized(&[("x-github-event", "ping")], RFC4231_DATA));
    }

    #[test]
    fn a_gitlab_delivery_needs_the_secret_as_its_token() {
        let secret = Secret::new("gl-secret");
        let h = headers(&[
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", "gl-secret"),
        ]);
        assert_eq!(verify(&h, b"{}", &secret), Ok(Delivery::Push));
        let h = headers(&[
            ("x-gitlab-event", "Tag Push Hook"),
            ("x-gitlab-token", "gl-secret"),
        ]);
        assert_eq!(verify(&h, b"{}", &secret), Ok(Delivery::Push));
        let h = headers(&[
            ("x-gitlab-event", "Merge Request Hook"),
            ("x-gitlab-token", "gl-secret"),
        ]);
        assert_eq!(
            verify(&h, b"{}", &secret),
            Ok(Delivery::Other("Merge Request Hook".into()))
        );
        for bad in [
            vec![
                ("x-gitlab-event", "Push Hook"),
                ("x-gitlab-token", "gl-secreT"),
            ],
            vec![
                ("x-gitlab-event", "Push Hook"),
                ("x-gitlab-token", "gl-secret "),
            ],
            vec![("x-gitlab-event", "Push Hook")],
        ] {
            assert!(
                matches!(
                    verify(&headers(&bad), b"{}", &secret),
                    Err(Invalid::Unauthorized(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_delivery_from_neither_forge_is_a_bad_request() {
        let secret = Secret::new("s");
        assert!(matches!(
            verify(&headers(&[("x-gitea-event", "push")]), b"{}", &secret),
            Err(Invalid::BadRequest(_))
        ));
    }

    #[test]
    fn the_pushed_ref_is_read_from_the_json_body() {
        assert_eq!(
            pushed_ref(br#"{"ref":"refs/heads/main","after":"abc"}"#).ok(),
            Some("refs/heads/main".into())
        );
        assert!(matches!(
            pushed_ref(b"{}"),
            Err(PushBodyError::NotPushJson(_))
        ));
        assert!(matches!(
            pushed_ref(b"not json"),
            Err(PushBodyError::NotPushJson(_))
        ));
        let long = format!(r#"{{"ref":"refs/heads/{}"}}"#, "x".repeat(MAX_REF));
        assert!(matches!(
            pushed_ref(long.as_bytes()),
            Err(PushBodyError::RefTooLong)
        ));
        let form = pushed_ref(b"payload=%7B%7D").expect_err("form-encoded");
        assert!(matches!(form, PushBodyError::FormEncoded));
        assert!(form.to_string().contains("application/json"), "{form}");
    }

    #[test]
    fn a_push_concerns_a_tier_that_follows_the_ref_by_short_or_full_name() {
        assert!(follows("main", "refs/heads/main"));
        assert!(follows("refs/heads/main", "refs/heads/main"));
        assert!(follows("v1.2", "refs/tags/v1.2"));
        assert!(follows("refs/tags/v1.2", "refs/tags/v1.2"));
        assert!(follows("tier/operational", "refs/heads/tier/operational"));
        assert!(!follows("main", "refs/heads/main-2"));
        assert!(!follows("main", "refs/heads/feature/main"));
        assert!(!follows("main", "main"));
        assert!(!follows("refs/heads/main", "refs/tags/main"));
        assert!(!follows("refs/heads/main", "refs/heads/dev"));
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert!(!follows(sha, "refs/heads/main"));
        assert!(!follows(sha, &format!("refs/heads/{sha}")));
    }

    #[test]
    fn the_bucket_lets_a_burst_through_then_the_rate_and_says_when_to_retry() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 20.0, t0);
        for i in 0..20 {
            assert!(b.take(t0).is_ok(), "request {i} of the burst");
        }
        let wait = b.take(t0).expect_err("over the burst");
        assert!(
            wait > Duration::from_millis(99) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // 100 ms later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(t1).is_ok());
        assert!(b.take(t1).is_err());
        // After a long quiet time the bucket is full again, never fuller.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..20 {
            assert!(b.take(t2).is_ok());
        }
        assert!(b.take(t2).is_err());
        // A clock read earlier than the last (another thread's) does not refill or panic.
        assert!(b.take(t1).is_err());
    }

    mod router {
        use super::*;
        use crate::activity::Observers;
        use crate::http::sync::test_handles;
        use axum::body::Body;
        use tower::ServiceExt;

        const SECRET: &str = "hook-secret";

        /// The deliveries' results, as the observers (metrics) are told them.
        #[derive(Default)]
        struct Results(std::sync::Mutex<Vec<WebhookResult>>);

        impl crate::activity::Observer for Results {
            fn observe(&self, activity: &Activity) {
                if let Activity::WebhookDelivery { result } = activity {
                    self.0
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(*result);
                }
            }
        }

        impl Results {
            fn count(&self, label: &str) -> u64 {
                let seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
                seen.iter().filter(|r| r.label() == label).count() as u64
            }

            fn counts(&self) -> [(&'static str, u64); 6] {
                WebhookResult::ALL.map(|r| (r.label(), self.count(r.label())))
            }
        }

        fn handles(secret: Option<&str>) -> (AppState, std::sync::Arc<Results>) {
            let hook = secret.map(|s| Webhook::new(Secret::new(s), vec!["main".into()]));
            let results = std::sync::Arc::new(Results::default());
            let h = test_handles(None, hook, Observers::new(vec![results.clone()]));
            (h, results)
        }

        fn sign(body: &[u8]) -> String {
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }

        async fn deliver(h: &AppState, headers: &[(&str, &str)], body: Vec<u8>) -> Response {
            deliver_from(h, [192, 0, 2, 1], headers, body).await
        }

        /// A delivery from the client at `ip`.
        async fn deliver_from(
            h: &AppState,
            ip: [u8; 4],
            headers: &[(&str, &str)],
            body: Vec<u8>,
        ) -> Response {
            let mut req = Request::post("/webhook/git");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let mut req = req.body(Body::from(body)).expect("request");
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                    ip, 40000,
                ))));
            crate::http::router(h.clone())
                .oneshot(req)
                .await
                .expect("infallible")
        }

        async fn github_push(h: &AppState, git_ref: &str) -> Response {
            let body = format!(r#"{{"ref":"{git_ref}","after":"0123"}}"#).into_bytes();
            let sig = sign(&body);
            deliver(
                h,
                &[("x-github-event", "push"), ("x-hub-signature-256", &sig)],
                body,
            )
            .await
        }

        /// Whether the poller was asked to fetch (takes the permit).
        async fn fetch_asked(h: &AppState) -> bool {
            tokio::time::timeout(Duration::from_millis(20), h.fetch_now.notified())
                .await
                .is_ok()
        }

        #[tokio::test]
        async fn the_webhook_is_404_without_a_secret() {
            let (h, _) = handles(None);
            let r = github_push(&h, "refs/heads/main").await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND);
            assert!(!fetch_asked(&h).await);
        }

        #[tokio::test]
        async fn a_signed_push_to_a_followed_ref_fetches_and_others_do_not() {
            let (h, results) = handles(Some(SECRET));
            let r = github_push(&h, "refs/heads/main").await;
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            assert!(fetch_asked(&h).await);

            let r = github_push(&h, "refs/heads/dev").await;
            assert_eq!(r.status(), StatusCode::OK);
            let body = axum::body::to_bytes(r.into_body(), 1024)
                .await
                .expect("body");
            assert_eq!(&body[..], b"ignored: ref refs/heads/dev is not followed\n");
            assert!(!fetch_asked(&h).await);

            let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
            let r = deliver(
                &h,
                &[
                    ("x-github-event", "push"),
                    ("x-hub-signature-256", "sha256=00"),
                ],
                body.clone(),
            )
            .await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            let r = deliver(
                &h,
                &[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", SECRET)],
                body.clone(),
            )
            .await;
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            let r = deliver(&h, &[], body).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
            let ping = b"{}".to_vec();
            let sig = sign(&ping);
            let r = deliver(
                &h,
                &[("x-github-event", "ping"), ("x-hub-signature-256", &sig)],
                ping,
            )
            .await;
            assert_eq!(r.status(), StatusCode::OK);

            assert_eq!(
                results.counts(),
                [
                    ("accepted", 2),
                    ("ignored", 2),
                    ("duplicate", 0),
                    ("unauthorized", 1),
                    ("rate_limited", 0),
                    ("bad_request", 1),
                ]
            );
        }

        #[tokio::test]
        async fn the_webhook_takes_bodies_up_to_5_mib_and_refuses_larger_with_413() {
            let (h, results) = handles(Some(SECRET));
            // Larger than the 64 KiB of other routes: the webhook's own limit applies.
            let mut big = br#"{"ref":"refs/heads/main","pad":""#.to_vec();
            big.extend(std::iter::repeat_n(b'x', 1024 * 1024));
            big.extend(br#""}"#);
            let sig = sign(&big);
            let r = deliver(
                &h,
                &[("x-github-event", "push"), ("x-hub-signature-256", &sig)],
                big,
            )
            .await;
            assert_eq!(r.status(), StatusCode::ACCEPTED);

            let huge = vec![b' '; MAX_BODY + 1];
            let r = deliver(&h, &[("x-github-event", "push")], huge).await;
            assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(results.count("bad_request"), 1);
        }

        #[tokio::test(start_paused = true)]
        async fn a_body_that_never_ends_is_cut_off_with_408_after_the_request_timeout() {
            let (h, _) = handles(Some(SECRET));
            let stalled = futures::stream::pending::<Result<Bytes, std::io::Error>>();
            let req = Request::post("/webhook/git")
                .header("x-github-event", "push")
                .body(Body::from_stream(stalled))
                .expect("request");
            let started = tokio::time::Instant::now();
            let r = crate::http::router(h.clone())
                .oneshot(req)
                .await
                .expect("infallible");
            assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
            assert_eq!(started.elapsed(), Duration::from_secs(30));
        }

        #[tokio::test]
        async fn forged_deliveries_take_nothing_from_the_bucket_and_a_genuine_one_gets_through() {
            let (h, results) = handles(Some(SECRET));
            // More forged deliveries than the bucket holds, each from a client of its own
            // (the per-client limit is the refusal guard's business).
            for i in 0..(BURST as u8 + 10) {
                let r = deliver_from(
                    &h,
                    [198, 51, 100, i],
                    &[
                        ("x-github-event", "push"),
                        (
                            "x-hub-signature-256",
                            &format!("sha256={}", "00".repeat(32)),
                        ),
                    ],
                    br#"{"ref":"refs/heads/main"}"#.to_vec(),
                )
                .await;
                assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            }
            let r = github_push(&h, "refs/heads/main").await;
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            assert!(fetch_asked(&h).await);
            assert_eq!(results.count("unauthorized"), BURST as u64 + 10);
            assert_eq!(results.count("rate_limited"), 0);
        }

        #[tokio::test]
        async fn authentic_deliveries_over_the_rate_are_refused_with_429_and_retry_after() {
            let (h, results) = handles(Some(SECRET));
            let mut statuses = Vec::new();
            let mut retry_after = None;
            for i in 0..25 {
                // Each a different push (a replay would be a duplicate, not a rate question).
                let r = github_push(&h, &format!("refs/heads/b{i}")).await;
                if r.status() == StatusCode::TOO_MANY_REQUESTS {
                    retry_after = r.headers().get(header::RETRY_AFTER).cloned();
                }
                statuses.push(r.status().as_u16());
            }
            assert!(statuses[..20].iter().all(|s| *s == 200), "{statuses:?}");
            assert!(statuses[20..].contains(&429), "{statuses:?}");
            assert_eq!(retry_after.expect("Retry-After"), "1");
            assert!(results.count("rate_limited") >= 1);
        }

        #[tokio::test]
        async fn a_replayed_delivery_is_answered_200_and_triggers_nothing() {
            let (h, results) = handles(Some(SECRET));
            let body = br#"{"ref":"refs/heads/main","after":"0123"}"#.to_vec();
            let sig = sign(&body);
            let send = |id: &'static str| {
                let (h, body, sig) = (h.clone(), body.clone(), sig.clone());
                async move {
                    deliver(
                        &h,
                        &[
                            ("x-github-event", "push"),
                            ("x-hub-signature-256", &sig),
                            ("x-github-delivery", id),
                        ],
                        body,
                    )
                    .await
                }
            };
            let r = send("72d3162e-cc78-11e3-81ab-4c9367dc0958").await;
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            assert!(fetch_asked(&h).await);
            // The same delivery again, and the same body under a new (unsigned) id.
            for id in [
                "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                "00000000-0000-0000-0000-000000000001",
            ] {
                let r = send(id).await;
                assert_eq!(r.status(), StatusCode::OK, "{id}");
                let text = axum::body::to_bytes(r.into_body(), 1024)
                    .await
                    .expect("body");
                assert_eq!(&text[..], b"duplicate delivery, ignored\n");
                assert!(!fetch_asked(&h).await, "{id}");
            }
            // GitLab: the same event id with another body is the same delivery too.
            let gl = |body: &'static [u8]| {
                deliver(
                    &h,
                    &[
                        ("x-gitlab-event", "Push Hook"),
                        ("x-gitlab-token", SECRET),
                        (
                            "x-gitlab-event-uuid",
                            "13792a34-cac6-4fda-95a8-c58e00a3954e",
                        ),
                    ],
                    body.to_vec(),
                )
            };
            assert_eq!(
                gl(br#"{"ref":"refs/heads/main","after":"1"}"#)
                    .await
                    .status(),
                StatusCode::ACCEPTED
            );
            assert!(fetch_asked(&h).await);
            assert_eq!(
                gl(br#"{"ref":"refs/heads/main","after":"2"}"#)
                    .await
                    .status(),
                StatusCode::OK
            );
            assert!(!fetch_asked(&h).await);
            assert_eq!(results.count("duplicate"), 3);
            assert_eq!(results.count("accepted"), 2);
        }
    }

    fn key(n: u8) -> Key {
        [n; 32]
    }

    #[test]
    fn the_replay_window_forgets_after_its_time_and_holds_at_most_its_bound() {
        let t0 = Instant::now();
        let mut seen = Seen::default();
        seen.insert(&[key(1), key(2)], t0);
        assert!(seen.contains_any(&[key(9), key(2)], t0));
        assert!(!seen.contains_any(&[key(3)], t0));
        let t1 = t0 + DEDUPE_WINDOW - Duration::from_secs(1);
        assert!(seen.contains_any(&[key(1)], t1));
        seen.insert(&[key(3)], t1);
        let t2 = t0 + DEDUPE_WINDOW;
        assert!(
            !seen.contains_any(&[key(1)], t2),
            "forgotten after the window"
        );
        assert!(seen.contains_any(&[key(3)], t2));
        assert_eq!(seen.len(), 1);

        // Past the bound the oldest keys go first.
        let mut seen = Seen::default();
        for i in 0..(DEDUPE_MAX as u32 + 10) {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            seen.insert(&[k], t0);
        }
        assert_eq!(seen.len(), DEDUPE_MAX);
        assert!(!seen.contains_any(&[[0u8; 32]], t0));
    }

    #[test]
    fn a_duplicate_takes_no_token_and_a_delivery_over_the_rate_is_not_remembered() {
        let hook = Webhook::new(Secret::new("s"), vec!["main".into()]);
        let t0 = Instant::now();
        assert_eq!(hook.admit(&[key(1)], t0), Admission::Admitted);
        for _ in 0..100 {
            assert_eq!(hook.admit(&[key(1)], t0), Admission::Duplicate);
        }
        for i in 2..(BURST as u8 + 1) {
            assert_eq!(hook.admit(&[key(i)], t0), Admission::Admitted, "{i}");
        }
        let over = key(200);
        assert!(matches!(hook.admit(&[over], t0), Admission::RateLimited(_)));
        // Refused for the rate, it is not a duplicate when it comes again.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(hook.admit(&[over], t1), Admission::Admitted);
    }

    #[test]
    fn delivery_keys_are_each_id_header_and_the_body_digest() {
        let with_id = headers(&[("x-github-event", "push"), ("x-github-delivery", "abc")]);
        let other_id = headers(&[("x-github-event", "push"), ("x-github-delivery", "abd")]);
        let no_id = headers(&[("x-github-event", "push")]);
        let a = delivery_keys(&with_id, b"{}");
        let b = delivery_keys(&other_id, b"{}");
        let c = delivery_keys(&no_id, b"{}");
        let d = delivery_keys(&no_id, b"{ }");
        assert_eq!(a.len(), 2);
        assert_eq!(c.len(), 1);
        assert_ne!(a[0], b[0], "ids differ");
        assert_eq!(a[1], b[1], "the same body under another id");
        assert_eq!(a[1], c[0]);
        assert_ne!(c[0], d[0]);
        let ping = delivery_keys(&headers(&[("x-github-event", "ping")]), b"{}");
        assert_ne!(ping[0], c[0], "the event is part of the digest");
    }
}
