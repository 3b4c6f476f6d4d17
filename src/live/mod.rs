//! Live state: the objects in the cluster that the diff stage compares the desired set with.
//!
//! Two sources answer the same questions: the API server directly (one-shot commands such as
//! `gitopsd diff`), and a cache fed by watches (the daemon, so that a reconcile with no change
//! sends no request at all).

pub(crate) mod api;
mod cache;
mod counter;
mod watch;

use std::future::Future;

use serde_json::Value;

pub use api::ApiLive;
pub use cache::{LiveCache, MAX_NAME_WATCHES_PER_NAMESPACE, Namespaces};
pub use counter::{Counted, RequestCounter, Verb};
pub use watch::{Cluster, KubeCluster, LiveWatch};

pub use crate::object::{ObjectId, ObjectKey};

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The API server does not serve this kind (a CRD missing?).
    #[error("{api_version} {kind}: not served by the API server")]
    UnknownKind { api_version: String, kind: String },
    #[error("reading {what} from the API server failed: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The watch cache has not listed this kind yet; the answer would be a guess.
    #[error("{api_version} {kind}: the live cache has not synced yet")]
    NotSynced { api_version: String, kind: String },
    /// The watch cache was not started for this kind: it cannot answer for it.
    #[error("{api_version} {kind}: the live cache does not watch this kind")]
    NotWatched { api_version: String, kind: String },
    /// The object is neither labelled for the cache's tier nor in its desired set, so no watch
    /// covers it and its absence from the cache proves nothing.
    #[error(
        "{object}: neither labelled for the tier nor desired, so the live cache does not watch it"
    )]
    NotCached { object: String },
    /// A cache holds one tier; asking it about another would answer with nothing, wrongly.
    #[error("the live cache holds tier {cached}, not tier {asked}")]
    OtherTier { asked: String, cached: String },
    #[error("{object}: cannot encode the cached object as JSON: {source}")]
    Encode {
        object: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Where live objects come from.
pub trait LiveObjects {
    /// The live object (as JSON, with managedFields), or `None` when it does not exist.
    fn get(&self, key: &ObjectKey)
    -> impl Future<Output = Result<Option<Value>, LiveError>> + Send;

    /// Every live object of the given kinds (apiVersion, kind) that carries the label
    /// `gitopsd.io/tier=<tier>`: with the desired set, this finds extra objects.
    fn labelled(
        &self,
        tier: &str,
        kinds: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<Value>, LiveError>> + Send;

    /// The identities of [`LiveObjects::labelled`]'s objects, in the same order: what finding
    /// extra objects needs, without turning every live object into JSON on every reconcile.
    fn labelled_keys(
        &self,
        tier: &str,
        kinds: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<ObjectKey>, LiveError>> + Send;
}
