//! Counts the requests a kube client sends, at the client: the proof that a reconcile with no
//! change sends none. A layer on the client's tower stack sees each HTTP request once, so a
//! watch counts once when it (re)connects, never per event it streams.
//!
//! It also counts the answers by verb and response code (`gitopsd_kube_requests_total`): the
//! layer is the outermost one, so a request kube's own retry sent again counts once, with the
//! code its caller finally saw.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower::{Layer, Service};

/// The verbs requests are counted by: few, fixed, so they are fit for metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// A GET: a get or a list (the path alone does not always tell them apart).
    Read,
    /// A GET with `watch=true`: one per watch connection.
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    Other,
}

impl Verb {
    pub const ALL: [Verb; 7] = [
        Verb::Read,
        Verb::Watch,
        Verb::Create,
        Verb::Update,
        Verb::Patch,
        Verb::Delete,
        Verb::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Read => "read",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::Other => "other",
        }
    }

    fn of<B>(req: &Request<B>) -> Verb {
        match *req.method() {
            Method::GET => {
                let watch = req
                    .uri()
                    .query()
                    .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true"));
                if watch { Verb::Watch } else { Verb::Read }
            }
            Method::POST => Verb::Create,
            Method::PUT => Verb::Update,
            Method::PATCH => Verb::Patch,
            Method::DELETE => Verb::Delete,
            _ => Verb::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The values of the `code` label: the codes a controller acts on by name, every other code by
/// its class, and `error` when no answer came (connection refused, timed out). A fixed, small
/// set, so the metric's cardinality is bounded whatever the server answers.
pub const CODES: [&str; 21] = [
    "200", "201", "202", "204", "304", "400", "401", "403", "404", "405", "409", "410", "415",
    "422", "429", "1xx", "2xx", "3xx", "4xx", "5xx", "error",
];

/// The `code` label of an answer (`None`: no answer); always one of [`CODES`].
pub fn code_label(status: Option<u16>) -> &'static str {
    let Some(status) = status else {
        return "error";
    };
    let exact = status.to_string();
    // Server errors are told apart by the log, not the metric: one series for all of them.
    if status < 500
        && let Some(c) = CODES.iter().find(|c| **c == exact)
    {
        return c;
    }
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "error",
    }
}

/// Requests sent by a client, by verb, and their answers by verb and code. Cheap to clone:
/// clones share the counts.
#[derive(Debug, Clone)]
pub struct RequestCounter {
    counts: Arc<[AtomicU64; 7]>,
    /// `Verb::ALL.len() * CODES.len()` counters, verb-major.
    answers: Arc<Vec<AtomicU64>>,
}

impl Default for RequestCounter {
    fn default() -> Self {
        RequestCounter {
            counts: Arc::default(),
            answers: Arc::new(
                (0..Verb::ALL.len() * CODES.len())
                    .map(|_| AtomicU64::new(0))
                    .collect(),
            ),
        }
    }
}

impl RequestCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every request sent so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Requests sent so far with this verb.
    pub fn get(&self, verb: Verb) -> u64 {
        self.counts[verb.index()].load(Ordering::Relaxed)
    }

    /// (verb, count) for every verb, in a fixed order.
    pub fn by_verb(&self) -> Vec<(&'static str, u64)> {
        Verb::ALL
            .iter()
            .map(|v| (v.as_str(), self.get(*v)))
            .collect()
    }

    /// (verb, code, count) for every pair answered at least once, in a fixed order.
    pub fn by_verb_and_code(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for verb in Verb::ALL {
            for (i, code) in CODES.iter().enumerate() {
                let n = self.answers[verb.index() * CODES.len() + i].load(Ordering::Relaxed);
                if n > 0 {
                    out.push((verb.as_str(), *code, n));
                }
            }
        }
        out
    }

    fn record(&self, verb: Verb) {
        self.counts[verb.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_answer(&self, verb: Verb, status: Option<u16>) {
        let code = code_label(status);
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            self.answers[verb.index() * CODES.len() + i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<S> Layer<S> for RequestCounter {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counter: self.clone(),
        }
    }
}

/// The service the [`RequestCounter`] layer wraps around the client's stack.
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    counter: RequestCounter,
}

impl<S, B, RB> Service<Request<B>> for Counted<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CountedAnswer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let verb = Verb::of(&req);
        self.counter.record(verb);
        CountedAnswer {
            inner: self.inner.call(req),
            verb,
            counter: self.counter.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request in flight: counts its answer by code when it arrives.
    pub struct CountedAnswer<F> {
        #[pin]
        inner: F,
        verb: Verb,
        counter: RequestCounter,
    }
}

impl<F, RB, E> Future for CountedAnswer<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        let status = out.as_ref().ok().map(|r| r.status().as_u16());
        this.counter.record_answer(*this.verb, status);
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_with_watch_true_counts_as_a_watch_and_a_plain_get_as_a_read() {
        let watch = Request::get("/api/v1/pods?watch=true&resourceVersion=1")
            .body(())
            .expect("request");
        let list = Request::get("/api/v1/pods?labelSelector=a")
            .body(())
            .expect("request");
        assert_eq!(Verb::of(&watch), Verb::Watch);
        assert_eq!(Verb::of(&list), Verb::Read);
    }

    #[test]
    fn answer_codes_are_a_small_fixed_set() {
        assert_eq!(code_label(Some(200)), "200");
        assert_eq!(code_label(Some(409)), "409");
        assert_eq!(code_label(Some(429)), "429");
        assert_eq!(code_label(Some(418)), "4xx");
        assert_eq!(code_label(Some(503)), "5xx");
        assert_eq!(code_label(Some(500)), "5xx");
        assert_eq!(code_label(Some(207)), "2xx");
        assert_eq!(code_label(None), "error");
        for status in 0..1000 {
            assert!(CODES.contains(&code_label(Some(status))), "{status}");
        }
    }

    #[tokio::test]
    async fn the_layer_counts_each_answer_by_verb_and_code() {
        /// Answers a PATCH with 409 Conflict, anything else with 200.
        struct Server;
        impl Service<Request<()>> for Server {
            type Response = Response<()>;
            type Error = std::convert::Infallible;
            type Future = std::future::Ready<Result<Response<()>, Self::Error>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, req: Request<()>) -> Self::Future {
                let status = if req.method() == Method::PATCH {
                    409
                } else {
                    200
                };
                std::future::ready(Ok(Response::builder()
                    .status(status)
                    .body(())
                    .expect("response")))
            }
        }
        let counter = RequestCounter::new();
        let mut svc = counter.layer(Server);
        for req in [
            Request::get("/api/v1/pods").body(()).expect("request"),
            Request::patch("/api/v1/pods/a").body(()).expect("request"),
            Request::get("/api/v1/pods?watch=true")
                .body(())
                .expect("request"),
        ] {
            futures::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .expect("ready");
            svc.call(req).await.expect("answer");
        }
        assert_eq!(
            counter.by_verb_and_code(),
            vec![("read", "200", 1), ("watch", "200", 1), ("patch", "409", 1)]
        );
        assert_eq!(counter.total(), 3);
    }

    #[test]
    fn counts_are_shared_between_clones_of_a_counter() {
        let a = RequestCounter::new();
        let b = a.clone();
        a.record(Verb::Patch);
        assert_eq!(b.get(Verb::Patch), 1);
        assert_eq!(b.total(), 1);
    }
}
