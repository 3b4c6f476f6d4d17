//! `POST /webhook/git`: a push webhook from GitHub or GitLab makes the poller fetch at once
//! instead of at the next interval.
//!
//! The order of the checks is the order of their cost: the route is off (404) without
//! `source.webhookSecretFile`; a token bucket refuses floods (429) before the body is even
//! read; the body is read up to [`MAX_BODY`] (413 past it); then the signature (GitHub:
//! HMAC-SHA256 of the raw body) or token (GitLab) is checked in constant time (401); only then
//! is the JSON parsed. A push to a ref some tier follows wakes the poller (202); any other
//! authentic delivery is answered 200 and changes nothing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tracing::{debug, info, warn};

use super::secret::Secret;
use crate::daemon::Handles;

/// The largest delivery read. GitHub caps payloads at 25 MB, but a push payload lists up to
/// 2048 commits with their messages and changed paths; a big merge runs to a few MB. 5 MiB
/// lets those through while keeping what one request can make us buffer and hash small.
pub const MAX_BODY: usize = 5 * 1024 * 1024;
/// Deliveries let through per second, on average. A forge sends one per push; since every
/// accepted delivery only wakes the poller (whose `Notify` keeps at most one pending fetch),
/// more would add nothing but HMAC work over bodies of up to 5 MiB.
const RATE_PER_SEC: f64 = 10.0;
/// Deliveries let through at once: a push of many branches and tags, or a manual redelivery
/// of a batch, arrives together.
const BURST: f64 = 20.0;

/// What the webhook needs: the secret, the refs the tiers follow, and the rate limit.
/// One bucket for all senders: GitHub delivers from many addresses, so a per-address limit
/// would let a spread-out flood through. A flood can delay a genuine delivery, but never by
/// more than the poll interval, which keeps fetching.
pub struct Webhook {
    secret: Secret,
    refs: Vec<String>,
    bucket: Mutex<TokenBucket>,
}

impl Webhook {
    /// `refs`: each tier's `ref` as written in the config (`main`, `refs/heads/main`, a tag, a
    /// commit sha).
    pub fn new(secret: Secret, refs: Vec<String>) -> Webhook {
        Webhook {
            secret,
            refs,
            bucket: Mutex::new(TokenBucket::new(RATE_PER_SEC, BURST, Instant::now())),
        }
    }

    fn follows(&self, pushed: &str) -> bool {
        self.refs.iter().any(|r| follows(r, pushed))
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("refs", &self.refs).finish()
    }
}

/// Deliveries per result, for `gitopsd_webhook_requests_total{result}`.
#[derive(Debug, Default)]
pub struct WebhookStats {
    accepted: AtomicU64,
    ignored: AtomicU64,
    unauthorized: AtomicU64,
    rate_limited: AtomicU64,
    bad_request: AtomicU64,
}

/// How a delivery ended; `label()` is the metric's `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    /// A push to a followed ref: a fetch was started.
    Accepted,
    /// Authentic, but nothing to do: another ref, a ping, another event.
    Ignored,
    /// A missing or wrong signature or token.
    Unauthorized,
    /// Over the rate limit; not read further.
    RateLimited,
    /// Not a GitHub or GitLab delivery, too large, or a body that is not a push's JSON.
    BadRequest,
}

impl WebhookResult {
    pub fn label(self) -> &'static str {
        match self {
            WebhookResult::Accepted => "accepted",
            WebhookResult::Ignored => "ignored",
            WebhookResult::Unauthorized => "unauthorized",
            WebhookResult::RateLimited => "rate_limited",
            WebhookResult::BadRequest => "bad_request",
        }
    }
}

impl WebhookStats {
    pub fn record(&self, result: WebhookResult) {
        let counter = match result {
            WebhookResult::Accepted => &self.accepted,
            WebhookResult::Ignored => &self.ignored,
            WebhookResult::Unauthorized => &self.unauthorized,
            WebhookResult::RateLimited => &self.rate_limited,
            WebhookResult::BadRequest => &self.bad_request,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Every result's label and count so far, always all five (a counter at 0 included).
    pub fn counts(&self) -> [(&'static str, u64); 5] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("accepted", get(&self.accepted)),
            ("ignored", get(&self.ignored)),
            ("unauthorized", get(&self.unauthorized)),
            ("rate_limited", get(&self.rate_limited)),
            ("bad_request", get(&self.bad_request)),
        ]
    }
}

pub async fn receive(State(h): State<Handles>, request: Request) -> Response {
    let Some(hook) = h.webhook.clone() else {
        return (
            StatusCode::NOT_FOUND,
            "the push webhook is off: set source.webhookSecretFile\n",
        )
            .into_response();
    };
    let remote = super::sync::remote_addr(&request);
    let result = handle(&hook, &h, request, &remote).await;
    h.webhook_stats.record(result.0);
    result.1
}

async fn handle(
    hook: &Webhook,
    h: &Handles,
    request: Request,
    remote: &str,
) -> (WebhookResult, Response) {
    let limited = hook
        .bucket
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(Instant::now());
    if let Err(wait) = limited {
        // Debug only: a flood must not become a flood of log lines.
        debug!(remote = %remote, "webhook delivery over the rate limit");
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        return (
            WebhookResult::RateLimited,
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                "too many webhook deliveries; retry later\n",
            )
                .into_response(),
        );
    }
    let headers = request.headers().clone();
    // Honours the route's DefaultBodyLimit: 413 past MAX_BODY.
    let body = match Bytes::from_request(request, &()).await {
        Ok(b) => b,
        Err(rejection) => {
            warn!(remote = %remote, error = %rejection.body_text(), "webhook body refused");
            return (WebhookResult::BadRequest, rejection.into_response());
        }
    };
    let delivery = match verify(&headers, &body, &hook.secret) {
        Ok(d) => d,
        Err(Refused::Unauthorized(why)) => {
            warn!(remote = %remote, reason = why, "webhook delivery refused");
            return (
                WebhookResult::Unauthorized,
                (StatusCode::UNAUTHORIZED, format!("unauthorized: {why}\n")).into_response(),
            );
        }
        Err(Refused::BadRequest(why)) => {
            warn!(remote = %remote, reason = %why, "webhook delivery refused");
            return (
                WebhookResult::BadRequest,
                (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
            );
        }
    };
    match delivery {
        Delivery::Ping => {
            info!(remote = %remote, "webhook ping");
            (
                WebhookResult::Ignored,
                (StatusCode::OK, "pong\n").into_response(),
            )
        }
        Delivery::Other(event) => {
            info!(remote = %remote, event = %event, "webhook event ignored: not a push");
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
            Err(why) => {
                warn!(remote = %remote, reason = %why, "webhook push refused");
                (
                    WebhookResult::BadRequest,
                    (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
                )
            }
            Ok(pushed) if hook.follows(&pushed) => {
                info!(remote = %remote, git_ref = %pushed, "webhook push to a followed ref: fetching now");
                // A tokio Notify keeps at most one permit: a flood of pushes leaves one pending
                // fetch, never a queue of them (the poller answers it after the fetch in
                // progress, if any).
                h.fetch_now.notify_one();
                (
                    WebhookResult::Accepted,
                    (
                        StatusCode::ACCEPTED,
                        format!("fetching: ref {pushed} is followed\n"),
                    )
                        .into_response(),
                )
            }
            Ok(pushed) => {
                info!(remote = %remote, git_ref = %pushed, "webhook push ignored: ref not followed");
                (
                    WebhookResult::Ignored,
                    (
                        StatusCode::OK,
                        format!("ignored: ref {pushed} is not followed\n"),
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
enum Refused {
    Unauthorized(&'static str),
    BadRequest(String),
}

/// Checks a delivery's signature (GitHub) or token (GitLab) against `secret`, in constant time,
/// and says what it is.
fn verify(headers: &HeaderMap, body: &[u8], secret: &Secret) -> Result<Delivery, Refused> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(event) = text("x-github-event") {
        let signature = text("x-hub-signature-256")
            .ok_or(Refused::Unauthorized("no X-Hub-Signature-256 header"))?;
        let hex_sig = signature
            .strip_prefix("sha256=")
            .ok_or(Refused::Unauthorized(
                "X-Hub-Signature-256 is not sha256=<hex>",
            ))?;
        let sig = hex::decode(hex_sig)
            .map_err(|_| Refused::Unauthorized("X-Hub-Signature-256 is not sha256=<hex>"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|_| Refused::Unauthorized("unusable secret"))?;
        mac.update(body);
        // verify_slice compares in constant time.
        mac.verify_slice(&sig)
            .map_err(|_| Refused::Unauthorized("X-Hub-Signature-256 does not match"))?;
        return Ok(match event {
            "push" => Delivery::Push,
            "ping" => Delivery::Ping,
            other => Delivery::Other(bounded(other)),
        });
    }
    if let Some(event) = text("x-gitlab-event") {
        let token =
            text("x-gitlab-token").ok_or(Refused::Unauthorized("no X-Gitlab-Token header"))?;
        if !secret.matches(token.as_bytes()) {
            return Err(Refused::Unauthorized("X-Gitlab-Token does not match"));
        }
        return Ok(match event {
            "Push Hook" | "Tag Push Hook" => Delivery::Push,
            other => Delivery::Other(bounded(other)),
        });
    }
    Err(Refused::BadRequest(
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

/// The `ref` of a push event's JSON body (GitHub and GitLab both send it).
fn pushed_ref(body: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Push {
        #[serde(rename = "ref")]
        git_ref: String,
    }
    if body.starts_with(b"payload=") {
        return Err(
            "the body is form-encoded: set the webhook's content type to application/json".into(),
        );
    }
    match serde_json::from_slice::<Push>(body) {
        Ok(p) if p.git_ref.len() <= 1024 => Ok(p.git_ref),
        Ok(_) => Err("the push's ref is longer than 1024 bytes".into()),
        Err(e) => Err(format!(
            "the body is not a push event's JSON with a \"ref\": {e}"
        )),
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
                Err(Refused::Unauthorized(_))
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
            Err(Refused::Unauthorized(_))
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
                    Err(Refused::Unauthorized(_))
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
            Err(Refused::BadRequest(_))
        ));
    }

    #[test]
    fn the_pushed_ref_is_read_from_the_json_body() {
        assert_eq!(
            pushed_ref(br#"{"ref":"refs/heads/main","after":"abc"}"#),
            Ok("refs/heads/main".into())
        );
        assert!(pushed_ref(b"{}").is_err());
        assert!(pushed_ref(b"not json").is_err());
        let form = pushed_ref(b"payload=%7B%7D").expect_err("form-encoded");
        assert!(form.contains("application/json"), "{form}");
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

        fn handles(secret: Option<&str>) -> Handles {
            let hook = secret.map(|s| Webhook::new(Secret::new(s), vec!["main".into()]));
            test_handles(None, hook, Observers::default())
        }

        fn sign(body: &[u8]) -> String {
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }

        async fn deliver(h: &Handles, headers: &[(&str, &str)], body: Vec<u8>) -> Response {
            let mut req = Request::post("/webhook/git");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            crate::http::router(h.clone())
                .oneshot(req.body(Body::from(body)).expect("request"))
                .await
                .expect("infallible")
        }

        async fn github_push(h: &Handles, git_ref: &str) -> Response {
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
        async fn fetch_asked(h: &Handles) -> bool {
            tokio::time::timeout(Duration::from_millis(20), h.fetch_now.notified())
                .await
                .is_ok()
        }

        fn count(h: &Handles, label: &str) -> u64 {
            h.webhook_stats
                .counts()
                .iter()
                .find(|(l, _)| *l == label)
                .map_or(0, |(_, n)| *n)
        }

        #[tokio::test]
        async fn the_webhook_is_404_without_a_secret() {
            let h = handles(None);
            let r = github_push(&h, "refs/heads/main").await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND);
            assert!(!fetch_asked(&h).await);
        }

        #[tokio::test]
        async fn a_signed_push_to_a_followed_ref_fetches_and_others_do_not() {
            let h = handles(Some(SECRET));
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
                h.webhook_stats.counts(),
                [
                    ("accepted", 2),
                    ("ignored", 2),
                    ("unauthorized", 1),
                    ("rate_limited", 0),
                    ("bad_request", 1),
                ]
            );
        }

        #[tokio::test]
        async fn the_webhook_takes_bodies_up_to_5_mib_and_refuses_larger_with_413() {
            let h = handles(Some(SECRET));
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
            assert_eq!(count(&h, "bad_request"), 1);
        }

        #[tokio::test(start_paused = true)]
        async fn a_body_that_never_ends_is_cut_off_with_408_after_the_request_timeout() {
            let h = handles(Some(SECRET));
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
        async fn a_flood_is_refused_with_429_and_retry_after_before_the_signature_is_checked() {
            let h = handles(Some(SECRET));
            let mut statuses = Vec::new();
            let mut retry_after = None;
            for _ in 0..25 {
                // Unsigned: the first ones are 401, the ones over the limit never get that far.
                let r = deliver(&h, &[("x-github-event", "push")], b"{}".to_vec()).await;
                if r.status() == StatusCode::TOO_MANY_REQUESTS {
                    retry_after = r.headers().get(header::RETRY_AFTER).cloned();
                }
                statuses.push(r.status().as_u16());
            }
            assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
            assert!(statuses[20..].contains(&429), "{statuses:?}");
            assert_eq!(retry_after.expect("Retry-After"), "1");
            assert!(count(&h, "rate_limited") >= 1);
        }
    }

    #[test]
    fn counts_name_every_result() {
        let s = WebhookStats::default();
        s.record(WebhookResult::Accepted);
        s.record(WebhookResult::Unauthorized);
        s.record(WebhookResult::Unauthorized);
        assert_eq!(
            s.counts(),
            [
                ("accepted", 1),
                ("ignored", 0),
                ("unauthorized", 2),
                ("rate_limited", 0),
                ("bad_request", 0),
            ]
        );
        for r in [
            WebhookResult::Accepted,
            WebhookResult::Ignored,
            WebhookResult::Unauthorized,
            WebhookResult::RateLimited,
            WebhookResult::BadRequest,
        ] {
            assert!(s.counts().iter().any(|(l, _)| *l == r.label()));
        }
    }
}
