//! Counts the requests a kube client sends, at the client: the proof that a reconcile with no
//! change sends none. A layer on the client's tower stack sees each HTTP request once, so a
//! watch counts once when it (re)connects, never per event it streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::{Method, Request};
use tower::{Layer, Service};

use crate::cluster::ClusterError;

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

/// Requests sent by a client, by verb. Cheap to clone: clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<[AtomicU64; 7]>,
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

    fn record(&self, verb: Verb) {
        self.counts[verb.index()].fetch_add(1, Ordering::Relaxed);
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

impl<S, B> Service<Request<B>> for Counted<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> S::Future {
        self.counter.record(Verb::of(&req));
        self.inner.call(req)
    }
}

/// A client whose every request is counted by the returned counter.
pub fn counted_client(
    config: kube::Config,
) -> Result<(kube::Client, RequestCounter), ClusterError> {
    let server = config.cluster_url.to_string();
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|source| ClusterError::Client { server, source })?;
    let counter = RequestCounter::new();
    let client = builder.with_layer(&counter).build();
    Ok((client, counter))
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
    fn counts_are_shared_between_clones_of_a_counter() {
        let a = RequestCounter::new();
        let b = a.clone();
        a.record(Verb::Patch);
        assert_eq!(b.get(Verb::Patch), 1);
        assert_eq!(b.total(), 1);
    }
}
