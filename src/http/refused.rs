//! Refused requests, on every route: limited per client and logged within a budget.
//!
//! Anyone who reaches the status port can send requests that are refused (a wrong token, an
//! unknown tier or route, a forged webhook). Each one used to be logged with the caller's URL,
//! so a flood of them grew the log without limit. Here:
//!
//! - each client (an IPv4 address, or an IPv6 /64) has a budget of refusals ([`BURST`], refilled
//!   at [`REFILL_PER_SEC`]); a client that spent it gets 429 with `Retry-After` for every request
//!   (the health probes and `/metrics` excepted) until a token is back, before its request is
//!   looked at: no token comparison, no HMAC, no log line. That also bounds online guessing
//!   of the API token or the webhook secret.
//! - a refusal is logged for the first [`LOGGED_PER_WINDOW`] times per client and reason in a
//!   [`WINDOW`], then only at the 10th, 100th, 1000th..., each line with the count of those not
//!   logged; all clients together log at most [`GLOBAL_LINES_PER_WINDOW`] lines per window, and
//!   [`Refusals::summary`] (once a window, from the server) logs how many were left out.
//! - what the caller wrote (its URL path) is logged escaped and cut at [`PATH_MAX`] characters.
//! - the table of clients holds at most [`MAX_CLIENTS`]; a new client past that evicts the one
//!   seen longest ago (an attacker with many addresses gets many budgets, never unbounded
//!   memory, and the global line budget still holds).
//!
//! Behind a proxy every client has the proxy's address: the budget is then shared by all.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::escape::printable;

/// Refusals a client may have at once before it is limited.
pub const BURST: f64 = 30.0;
/// Refusals given back per second (one every 2 s: 30 a minute).
pub const REFILL_PER_SEC: f64 = 0.5;
/// The period of the log budget.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Lines per client and reason per window before only the powers of ten are logged.
pub const LOGGED_PER_WINDOW: u64 = 3;
/// Lines of all clients together per window.
pub const GLOBAL_LINES_PER_WINDOW: u64 = 40;
/// Clients remembered at most.
pub const MAX_CLIENTS: usize = 4096;
/// Characters of a URL path kept in a log line.
pub const PATH_MAX: usize = 96;
/// Connections one client may hold open at once (a benchmark runs 200 from one address).
pub const CONNECTIONS_PER_CLIENT: usize = 256;
/// Connections open at once in all: file descriptors and tasks stay bounded whatever the
/// number of addresses.
pub const CONNECTIONS_MAX: usize = 4096;

/// Why a request was refused: one log budget per client and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Timeout,
    TooLarge,
    /// The webhook's shared bucket of genuine deliveries is empty.
    RateLimited,
    /// This client spent its budget of refusals.
    OverLimit,
    /// A webhook delivery already received (a replay).
    Duplicate,
    /// A connection over the limit of open connections (the client's or everyone's).
    Connections,
}

impl Reason {
    pub const ALL: [Reason; REASONS] = [
        Reason::BadRequest,
        Reason::Unauthorized,
        Reason::Forbidden,
        Reason::NotFound,
        Reason::MethodNotAllowed,
        Reason::Timeout,
        Reason::TooLarge,
        Reason::RateLimited,
        Reason::OverLimit,
        Reason::Duplicate,
        Reason::Connections,
    ];
}

const REASONS: usize = 11;

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRequest => "bad_request",
            Reason::Unauthorized => "unauthorized",
            Reason::Forbidden => "forbidden",
            Reason::NotFound => "not_found",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::Timeout => "timeout",
            Reason::TooLarge => "too_large",
            Reason::RateLimited => "rate_limited",
            Reason::OverLimit => "over_limit",
            Reason::Duplicate => "duplicate",
            Reason::Connections => "too_many_connections",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The reason of an answer no handler explained (the router's 404 and 405, the body
    /// limit's 413, the timeout's 408); `None` for answers that are no refusal.
    fn of_status(status: StatusCode) -> Option<Reason> {
        Some(match status {
            StatusCode::BAD_REQUEST
            | StatusCode::URI_TOO_LONG
            | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::UNPROCESSABLE_ENTITY => Reason::BadRequest,
            StatusCode::UNAUTHORIZED => Reason::Unauthorized,
            StatusCode::FORBIDDEN => Reason::Forbidden,
            StatusCode::NOT_FOUND => Reason::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Reason::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => Reason::Timeout,
            StatusCode::PAYLOAD_TOO_LARGE => Reason::TooLarge,
            StatusCode::TOO_MANY_REQUESTS => Reason::RateLimited,
            _ => return None,
        })
    }
}

/// A handler's word that it refused the request, and why (in words fit for the log: fixed
/// text, or text the handler made safe). Put in the response's extensions.
#[derive(Debug, Clone)]
pub struct Refused {
    pub reason: Reason,
    pub detail: Cow<'static, str>,
}

impl Refused {
    pub fn new(reason: Reason, detail: impl Into<Cow<'static, str>>) -> Refused {
        Refused {
            reason,
            detail: detail.into(),
        }
    }
}

/// Whom a budget belongs to: an IPv4 address, or the /64 of an IPv6 one (a single host
/// commonly has a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    pub fn of(ip: IpAddr) -> Client {
        match ip {
            IpAddr::V4(_) => Client(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    Client(IpAddr::V6(bits.into()))
                }
            },
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// What to do about one refusal's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLine {
    /// Log it: it is the `nth` refusal of its client and reason in this window, and
    /// `not_logged` of them were left out since the last line logged for them.
    Log {
        nth: u64,
        not_logged: u64,
    },
    Skip,
}

#[derive(Debug)]
struct Budget {
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Default, Clone, Copy)]
struct ReasonLog {
    window_start: Option<Instant>,
    count: u64,
    not_logged: u64,
}

#[derive(Debug)]
struct Entry {
    budget: Budget,
    logs: [ReasonLog; REASONS],
    last_seen: Instant,
}

#[derive(Debug)]
struct Table {
    clients: HashMap<Client, Entry>,
    global_window: Instant,
    global_lines: u64,
    /// Refusals not logged since the last summary.
    unlogged: u64,
}

/// The per-client refusal budgets and log budgets of one server.
#[derive(Debug)]
pub struct Refusals {
    table: Mutex<Table>,
    /// `gitopsd_http_refused_total{reason}`, when metrics are on: every refusal is counted
    /// there, logged or not.
    counter: std::sync::OnceLock<prometheus::IntCounterVec>,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals::new(Instant::now())
    }
}

impl Refusals {
    pub fn new(now: Instant) -> Refusals {
        Refusals {
            table: Mutex::new(Table {
                clients: HashMap::new(),
                global_window: now,
                global_lines: 0,
                unlogged: 0,
            }),
            counter: std::sync::OnceLock::new(),
        }
    }

    /// Counts every refusal into `counter` (by its `reason` label) from now on; each reason's
    /// series exists from the start, at 0.
    pub fn count_into(&self, counter: prometheus::IntCounterVec) {
        for r in Reason::ALL {
            counter.with_label_values(&[r.as_str()]);
        }
        let _ = self.counter.set(counter);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `client` may be heard now; `Err(wait)` until its next refusal token, when it
    /// spent its budget. Takes nothing: only a refusal does.
    pub fn admit(&self, client: Client, now: Instant) -> Result<(), Duration> {
        let mut t = self.lock();
        let Some(e) = t.clients.get_mut(&client) else {
            return Ok(());
        };
        e.budget.refill(now);
        if e.budget.tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - e.budget.tokens) / REFILL_PER_SEC,
            ))
        }
    }

    /// Counts a refusal of `client` for `reason`: takes one of its tokens (not for
    /// [`Reason::OverLimit`], which is the answer to an empty budget), and says whether to log it.
    pub fn refused(&self, client: Client, reason: Reason, now: Instant) -> LogLine {
        if let Some(c) = self.counter.get() {
            c.with_label_values(&[reason.as_str()]).inc();
        }
        let mut guard = self.lock();
        let t = &mut *guard;
        if t.clients.len() >= MAX_CLIENTS && !t.clients.contains_key(&client) {
            // The client seen longest ago makes room. A scan of a few thousand entries, only
            // when the table is full and a new address is refused.
            let oldest = t
                .clients
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(c, _)| *c);
            if let Some(c) = oldest {
                t.clients.remove(&c);
            }
        }
        let e = t.clients.entry(client).or_insert_with(|| Entry {
            budget: Budget {
                tokens: BURST,
                last: now,
            },
            logs: [ReasonLog::default(); REASONS],
            last_seen: now,
        });
        e.last_seen = e.last_seen.max(now);
        if reason != Reason::OverLimit {
            e.budget.refill(now);
            e.budget.tokens = (e.budget.tokens - 1.0).max(0.0);
        }
        let log = &mut e.logs[reason.index()];
        if log
            .window_start
            .is_none_or(|s| now.saturating_duration_since(s) >= WINDOW)
        {
            log.window_start = Some(now);
            log.count = 0;
        }
        log.count += 1;
        let nth = log.count;
        if now.saturating_duration_since(t.global_window) >= WINDOW {
            t.global_window = now;
            t.global_lines = 0;
        }
        let wanted = nth <= LOGGED_PER_WINDOW || is_power_of_ten(nth);
        // Over the global budget, a wanted line is left out too, and counted for this
        // client's next line.
        if !wanted || t.global_lines >= GLOBAL_LINES_PER_WINDOW {
            log.not_logged += 1;
            t.unlogged += 1;
            return LogLine::Skip;
        }
        t.global_lines += 1;
        LogLine::Log {
            nth,
            not_logged: std::mem::take(&mut log.not_logged),
        }
    }

    /// Refusals not logged since the last call (and resets the count): the server logs it
    /// once a window, so a flood that stopped still shows its size.
    pub fn take_unlogged(&self) -> u64 {
        std::mem::take(&mut self.lock().unlogged)
    }

    /// Clients remembered now.
    pub fn clients(&self) -> usize {
        self.lock().clients.len()
    }

    /// Logs how many refusals were not logged since the last summary, if any.
    pub fn summary(&self) {
        let n = self.take_unlogged();
        if n > 0 {
            warn!(
                not_logged = n,
                "refused requests not logged since the last summary (rate-limited log lines)"
            );
        }
    }
}

/// Open connections per client, and in all.
#[derive(Debug, Default)]
pub struct Connections {
    open: Mutex<(HashMap<Client, usize>, usize)>,
}

/// One open connection; dropping it closes its slot.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    client: Client,
}

impl Connections {
    /// A slot for a new connection of `client`, or `None` over either limit.
    pub fn open(self: &Arc<Self>, client: Client) -> Option<Slot> {
        let mut guard = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (per_client, total) = &mut *guard;
        let mine = per_client.get(&client).copied().unwrap_or(0);
        if *total >= CONNECTIONS_MAX || mine >= CONNECTIONS_PER_CLIENT {
            return None;
        }
        per_client.insert(client, mine + 1);
        *total += 1;
        Some(Slot {
            connections: self.clone(),
            client,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    pub fn total(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut guard = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (per_client, total) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(n) = per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

/// Logs (within the budget) a connection closed at once for being over the limits.
pub fn connection_refused(refusals: &Refusals, client: Client) {
    if let LogLine::Log { nth, not_logged } =
        refusals.refused(client, Reason::Connections, Instant::now())
    {
        warn!(%client, reason = Reason::Connections.as_str(), nth, not_logged,
            per_client = CONNECTIONS_PER_CLIENT, total = CONNECTIONS_MAX,
            "connection refused: too many open connections");
    }
}

impl Budget {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * REFILL_PER_SEC).min(BURST);
        self.last = self.last.max(now);
    }
}

pub fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}

/// Requests never limited: the kubelet's probes and Prometheus' scrape, which are never
/// refused themselves but may share an address with someone who is (a node's address).
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The client of a request, from the peer address the server recorded (all requests without
/// one, as in router tests, are one client).
pub fn client_of(request: &Request) -> Client {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    Client::of(ip)
}

/// The middleware around every route: limits clients that spent their refusal budget, and
/// counts and logs (within the budget) every refused answer.
pub async fn guard(
    State(refusals): State<Arc<Refusals>>,
    request: Request,
    next: Next,
) -> Response {
    let client = client_of(&request);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if !exempt(&path)
        && let Err(wait) = refusals.admit(client, Instant::now())
    {
        let refused = Refused::new(
            Reason::OverLimit,
            "too many refused requests from this client",
        );
        log(&refusals, client, &method, &path, 429, &refused);
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            "too many refused requests from this address; retry later\n",
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let status = response.status();
    let refused = response
        .extensions_mut()
        .remove::<Refused>()
        .or_else(|| Reason::of_status(status).map(|r| Refused::new(r, "")));
    if let Some(refused) = refused {
        log(&refusals, client, &method, &path, status.as_u16(), &refused);
    }
    response
}

fn log(
    refusals: &Refusals,
    client: Client,
    method: &axum::http::Method,
    path: &str,
    status: u16,
    refused: &Refused,
) {
    let LogLine::Log { nth, not_logged } = refusals.refused(client, refused.reason, Instant::now())
    else {
        return;
    };
    let path = printable(path, PATH_MAX);
    let detail = printable(&refused.detail, PATH_MAX);
    let reason = refused.reason.as_str();
    if refused.reason == Reason::Duplicate {
        info!(%client, %method, %path, status, reason, detail = %detail, nth, not_logged, "request refused");
    } else {
        warn!(%client, %method, %path, status, reason, detail = %detail, nth, not_logged, "request refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(last: u8) -> Client {
        Client::of(IpAddr::from([192, 0, 2, last]))
    }

    fn logged(r: &Refusals, c: Client, reason: Reason, n: u64, now: Instant) -> Vec<LogLine> {
        (0..n)
            .map(|_| r.refused(c, reason, now))
            .filter(|l| *l != LogLine::Skip)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_is_limited_after_its_burst_and_heard_again_after_the_refill() {
        let t0 = Instant::now();
        let r = Refusals::new(t0);
        let (a, b) = (client(1), client(2));
        assert_eq!(r.admit(a, t0), Ok(()), "an unknown client is heard");
        for _ in 0..BURST as usize {
            assert_eq!(r.admit(a, t0), Ok(()));
            r.refused(a, Reason::Unauthorized, t0);
        }
        let wait = r.admit(a, t0).expect_err("the budget is spent");
        assert_eq!(wait, Duration::from_secs(2));
        // Another client is not concerned.
        assert_eq!(r.admit(b, t0), Ok(()));
        // Answers to a limited client take nothing.
        r.refused(a, Reason::OverLimit, t0);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(r.admit(a, t1), Ok(()));
        r.refused(a, Reason::NotFound, t1);
        assert!(r.admit(a, t1).is_err());
        // A long quiet time refills the whole burst, never more.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..BURST as usize {
            assert_eq!(r.admit(a, t2), Ok(()));
            r.refused(a, Reason::Unauthorized, t2);
        }
        assert!(r.admit(a, t2).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn log_lines_are_the_first_few_then_powers_of_ten_with_the_count_left_out() {
        let t0 = Instant::now();
        let r = Refusals::new(t0);
        let a = client(1);
        let lines = logged(&r, a, Reason::Unauthorized, 1000, t0);
        assert_eq!(
            lines,
            vec![
                LogLine::Log {
                    nth: 1,
                    not_logged: 0
                },
                LogLine::Log {
                    nth: 2,
                    not_logged: 0
                },
                LogLine::Log {
                    nth: 3,
                    not_logged: 0
                },
                LogLine::Log {
                    nth: 10,
                    not_logged: 6
                },
                LogLine::Log {
                    nth: 100,
                    not_logged: 89
                },
                LogLine::Log {
                    nth: 1000,
                    not_logged: 899
                },
            ]
        );
        // Another reason has a budget of its own.
        assert_eq!(logged(&r, a, Reason::NotFound, 5, t0).len(), 3);
        assert_eq!(r.take_unlogged(), 994 + 2);
        assert_eq!(r.take_unlogged(), 0);
        // A new window starts over, its first line carrying what the last one left out.
        r.refused(a, Reason::Unauthorized, t0);
        let t1 = t0 + WINDOW;
        assert_eq!(
            r.refused(a, Reason::Unauthorized, t1),
            LogLine::Log {
                nth: 1,
                not_logged: 1
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn many_clients_share_one_global_line_budget() {
        let t0 = Instant::now();
        let r = Refusals::new(t0);
        let mut lines = 0;
        for i in 0..200u32 {
            let c = Client::of(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
            lines += logged(&r, c, Reason::NotFound, 3, t0).len() as u64;
        }
        assert_eq!(lines, GLOBAL_LINES_PER_WINDOW);
        assert_eq!(r.take_unlogged(), 600 - GLOBAL_LINES_PER_WINDOW);
        let t1 = t0 + WINDOW;
        let c = Client::of(IpAddr::from([10, 0, 0, 0]));
        assert_eq!(
            r.refused(c, Reason::NotFound, t1),
            LogLine::Log {
                nth: 1,
                not_logged: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_is_bounded_and_evicts_the_client_seen_longest_ago() {
        let t0 = Instant::now();
        let r = Refusals::new(t0);
        let first = Client::of(IpAddr::from([10, 0, 0, 0]));
        for _ in 0..BURST as usize {
            r.refused(first, Reason::Unauthorized, t0);
        }
        assert!(r.admit(first, t0).is_err());
        for i in 1..(MAX_CLIENTS as u32 + 100) {
            let c = Client::of(IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
            r.refused(
                c,
                Reason::NotFound,
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert_eq!(r.clients(), MAX_CLIENTS);
        // The first client was evicted first: it is heard again (its memory is gone).
        assert_eq!(r.admit(first, t0 + Duration::from_secs(5)), Ok(()));
    }

    /// A log sink for one test: JSON lines into a buffer.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    mod router {
        use super::*;
        use crate::activity::Observers;
        use crate::http::sync::test_handles;
        use axum::body::Body;
        use tower::ServiceExt;

        async fn send(app: &axum::Router, from: [u8; 4], method: &str, path: &str) -> Response {
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", "Bearer nope")
                .body(Body::empty())
                .expect("request");
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from((from, 40000))));
            app.clone().oneshot(req).await.expect("infallible")
        }

        #[tokio::test(start_paused = true)]
        async fn a_flooding_client_gets_429_its_log_is_bounded_and_escaped_and_others_are_served() {
            let sink = Sink::default();
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_writer({
                    let sink = sink.clone();
                    move || sink.clone()
                })
                .finish();
            let _guard = tracing::subscriber::set_default(subscriber);
            let refusals = Arc::new(Refusals::default());
            let app = crate::http::router_with(
                test_handles(Some("t0ken"), None, Observers::default()),
                refusals.clone(),
            );
            let attacker = [203, 0, 113, 9];
            let evil = format!("/api/v1/tiers/%1b%5b2J{}%1b/sync", "A".repeat(5000));
            let mut statuses = Vec::new();
            for _ in 0..1000 {
                statuses.push(send(&app, attacker, "POST", &evil).await.status().as_u16());
            }
            assert!(statuses[..30].iter().all(|s| *s == 401), "{statuses:?}");
            assert!(statuses[30..].iter().all(|s| *s == 429), "{statuses:?}");
            let r = send(&app, attacker, "POST", "/api/v1/tiers/a/sync").await;
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(r.headers()[header::RETRY_AFTER], "2");
            // Probes and scrapes are never limited.
            let r = send(&app, attacker, "GET", "/healthz").await;
            assert_eq!(r.status(), StatusCode::OK);
            // Another client, with the token, is served.
            let mut req = Request::post("/api/v1/tiers/a/sync")
                .header("authorization", "Bearer t0ken")
                .body(Body::empty())
                .expect("request");
            req.extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 1))));
            let r = app.clone().oneshot(req).await.expect("infallible");
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            // Unknown routes and methods are refusals too.
            let other = [198, 51, 100, 1];
            assert_eq!(
                send(&app, other, "GET", "/nope").await.status(),
                StatusCode::NOT_FOUND
            );
            assert_eq!(
                send(&app, other, "DELETE", "/api/v1/tiers").await.status(),
                StatusCode::METHOD_NOT_ALLOWED
            );
            // The attacker's budget refills: one token every 2 s.
            tokio::time::advance(Duration::from_secs(2)).await;
            assert_eq!(
                send(&app, attacker, "POST", "/api/v1/tiers/a/sync")
                    .await
                    .status(),
                StatusCode::UNAUTHORIZED
            );

            let log = String::from_utf8(sink.0.lock().unwrap().clone()).expect("UTF-8 log");
            let lines: Vec<&str> = log.lines().collect();
            // 401: the 1st to 3rd and the 10th (the 31st, after the refill, is not logged);
            // 429: the 1st to 3rd, the 10th and the 100th; the other client's 404 and 405; the
            // accepted sync's own line.
            assert!(lines.len() <= 12, "{} lines:\n{log}", lines.len());
            assert!(
                log.contains(r#""reason":"over_limit""#) && log.contains(r#""nth":100"#),
                "{log}"
            );
            assert!(log.contains(r#""not_logged":89"#), "{log}");
            assert!(log.contains(r#""reason":"method_not_allowed""#), "{log}");
            assert!(!log.contains('\u{1b}') && !log.contains("\\u001b"), "{log}");
            assert!(
                !log.contains(&"A".repeat(PATH_MAX)),
                "the path is cut: {log}"
            );
            assert!(log.contains("more bytes)"), "{log}");
        }
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_a_mapped_ipv4_is_the_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Client::of(a), Client::of(b));
        assert_ne!(Client::of(a), Client::of(c));
        assert_eq!(Client::of(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(Client::of(mapped), client(1));
        assert_eq!(client(1).to_string(), "192.0.2.1");
    }

    #[test]
    fn connections_are_bounded_per_client_and_in_all() {
        let c = Arc::new(Connections::default());
        let a = client(1);
        let mut slots: Vec<Slot> = (0..CONNECTIONS_PER_CLIENT)
            .map(|_| c.open(a).expect("under the limit"))
            .collect();
        assert!(c.open(a).is_none(), "over the client's limit");
        assert!(
            c.open(client(2)).is_some(),
            "another client is not concerned"
        );
        slots.pop();
        assert!(c.open(a).is_some(), "a closed connection frees its slot");
        drop(slots);
        assert_eq!(c.total(), 0);
        let many: Vec<Slot> = (0..CONNECTIONS_MAX as u32)
            .map(|i| {
                c.open(Client::of(IpAddr::from((0x0a00_0000 + i).to_be_bytes())))
                    .expect("under the total")
            })
            .collect();
        assert!(c.open(client(3)).is_none(), "over the total");
        drop(many);
        assert!(c.open(client(3)).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn every_refusal_is_counted_by_reason_logged_or_not() {
        let counter = prometheus::IntCounterVec::new(
            prometheus::Opts::new("gitopsd_http_refused_total", "test"),
            &["reason"],
        )
        .expect("counter");
        let r = Refusals::default();
        r.count_into(counter.clone());
        assert_eq!(counter.with_label_values(&["over_limit"]).get(), 0);
        let now = Instant::now();
        for _ in 0..500 {
            r.refused(client(1), Reason::OverLimit, now);
        }
        r.refused(client(1), Reason::Duplicate, now);
        assert_eq!(counter.with_label_values(&["over_limit"]).get(), 500);
        assert_eq!(counter.with_label_values(&["duplicate"]).get(), 1);
        assert_eq!(counter.with_label_values(&["unauthorized"]).get(), 0);
    }

    #[test]
    fn powers_of_ten() {
        let p: Vec<u64> = (1..=10_000).filter(|n| is_power_of_ten(*n)).collect();
        assert_eq!(p, vec![1, 10, 100, 1000, 10_000]);
        assert!(!is_power_of_ten(0));
    }
}
