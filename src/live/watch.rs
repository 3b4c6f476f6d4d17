//! What the reconcile asks of the cluster it reads, as traits: [`LiveWatch`] is its live cache
//! ([`LiveCache`], fed by watches), [`Cluster`] starts one and reads objects straight from the
//! API server ([`KubeCluster`]). A test harness answers both from memory
//! (`reconcile::harness`).

use std::time::Duration;

use futures::future::BoxFuture;
use kube::api::DynamicObject;
use serde_json::Value;
use tokio::sync::watch;

use super::{ApiLive, LiveCache, LiveError, LiveObjects, Namespaces, ObjectKey};

/// A tier's live objects, kept current: [`LiveCache`]'s questions, usable as a trait object.
/// [`LiveObjects`] is implemented for `Box<dyn LiveWatch>`.
pub trait LiveWatch: Send + Sync {
    /// Follows a new desired set (see [`LiveCache::update_kinds`]).
    fn update_kinds<'a>(
        &'a mut self,
        kinds: &'a [(String, String)],
        names: &'a [ObjectKey],
    ) -> BoxFuture<'a, Result<(), LiveError>>;

    /// Waits until every watch is synced (see [`LiveCache::wait_synced`]).
    fn wait_synced(&self, timeout: Duration) -> BoxFuture<'_, Result<(), LiveError>>;

    /// The first kind (apiVersion, kind) not synced, with what its watch selects.
    fn not_synced(&self) -> Option<(&(String, String), &str)>;

    /// A receiver whose value changes when a watched object changes or a watch lists again.
    fn changes(&self) -> watch::Receiver<u64>;

    /// Wanted kinds the API server did not serve at the last `update_kinds`.
    fn unserved(&self) -> Box<dyn Iterator<Item = &(String, String)> + Send + '_>;

    // The questions of [`LiveObjects`] take their arguments owned: a future that borrows
    // only `self` is `Send` for the daemon's spawned tier tasks, which one borrowing every
    // argument of a trait object's method is not shown to be.

    /// As [`LiveObjects::get`].
    fn get_object(&self, key: ObjectKey) -> BoxFuture<'_, Result<Option<Value>, LiveError>>;

    /// As [`LiveObjects::labelled`].
    fn labelled_objects(
        &self,
        tier: String,
        kinds: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<Vec<Value>, LiveError>>;

    /// As [`LiveObjects::labelled_keys`].
    fn labelled_object_keys(
        &self,
        tier: String,
        kinds: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<Vec<ObjectKey>, LiveError>>;

    /// Calls `read` with the cached object, if there is one (`Ok(false)` when the cache knows
    /// it does not exist); see [`LiveCache::peek`], and `peek` on `dyn LiveWatch`.
    fn peek_object(
        &self,
        key: &ObjectKey,
        read: &mut dyn FnMut(&DynamicObject),
    ) -> Result<bool, LiveError>;
}

impl dyn LiveWatch {
    /// Reads a cached object in place (see [`LiveCache::peek`]).
    pub fn peek<T>(
        &self,
        key: &ObjectKey,
        read: impl FnOnce(&DynamicObject) -> T,
    ) -> Result<Option<T>, LiveError> {
        let mut read = Some(read);
        let mut out = None;
        self.peek_object(key, &mut |o| {
            if let Some(read) = read.take() {
                out = Some(read(o));
            }
        })?;
        Ok(out)
    }
}

impl LiveWatch for LiveCache {
    fn update_kinds<'a>(
        &'a mut self,
        kinds: &'a [(String, String)],
        names: &'a [ObjectKey],
    ) -> BoxFuture<'a, Result<(), LiveError>> {
        Box::pin(LiveCache::update_kinds(self, kinds, names))
    }

    fn wait_synced(&self, timeout: Duration) -> BoxFuture<'_, Result<(), LiveError>> {
        Box::pin(LiveCache::wait_synced(self, timeout))
    }

    fn not_synced(&self) -> Option<(&(String, String), &str)> {
        LiveCache::not_synced(self)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        LiveCache::changes(self)
    }

    fn unserved(&self) -> Box<dyn Iterator<Item = &(String, String)> + Send + '_> {
        Box::new(LiveCache::unserved(self))
    }

    fn get_object(&self, key: ObjectKey) -> BoxFuture<'_, Result<Option<Value>, LiveError>> {
        Box::pin(async move { LiveObjects::get(self, &key).await })
    }

    fn labelled_objects(
        &self,
        tier: String,
        kinds: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<Vec<Value>, LiveError>> {
        Box::pin(async move { LiveObjects::labelled(self, &tier, &kinds).await })
    }

    fn labelled_object_keys(
        &self,
        tier: String,
        kinds: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<Vec<ObjectKey>, LiveError>> {
        Box::pin(async move { LiveObjects::labelled_keys(self, &tier, &kinds).await })
    }

    fn peek_object(
        &self,
        key: &ObjectKey,
        read: &mut dyn FnMut(&DynamicObject),
    ) -> Result<bool, LiveError> {
        LiveCache::peek(self, key, |o| read(o)).map(|found| found.is_some())
    }
}

// For every lifetime of the trait object: the future of a spawned task is checked for `Send`
// with its lifetimes erased.
impl<'x> LiveObjects for Box<dyn LiveWatch + 'x> {
    fn get(
        &self,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<Value>, LiveError>> + Send {
        self.get_object(key.clone())
    }

    fn labelled(
        &self,
        tier: &str,
        kinds: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<Value>, LiveError>> + Send {
        self.labelled_objects(tier.to_owned(), kinds.to_vec())
    }

    fn labelled_keys(
        &self,
        tier: &str,
        kinds: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<ObjectKey>, LiveError>> + Send {
        self.labelled_object_keys(tier.to_owned(), kinds.to_vec())
    }
}

/// The cluster a tier's reconcile reads: it starts the tier's live cache, and reads objects
/// straight from the API server where a cached copy could be stale (prune's last look).
pub trait Cluster: Send + Sync {
    /// Starts a live cache of the tier's objects (see [`LiveCache::start`]).
    fn start_cache<'a>(
        &'a self,
        tier: &'a str,
        namespaces: Namespaces,
        kinds: &'a [(String, String)],
        names: &'a [ObjectKey],
    ) -> BoxFuture<'a, Result<Box<dyn LiveWatch>, LiveError>>;

    /// The live object as the API server has it now, `None` when it does not exist.
    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Option<Value>, LiveError>>;
}

/// The real cluster: the daemon's client.
#[derive(Clone)]
pub struct KubeCluster {
    api: ApiLive,
}

impl KubeCluster {
    pub fn new(api: ApiLive) -> KubeCluster {
        KubeCluster { api }
    }
}

impl Cluster for KubeCluster {
    fn start_cache<'a>(
        &'a self,
        tier: &'a str,
        namespaces: Namespaces,
        kinds: &'a [(String, String)],
        names: &'a [ObjectKey],
    ) -> BoxFuture<'a, Result<Box<dyn LiveWatch>, LiveError>> {
        Box::pin(async move {
            let cache =
                LiveCache::start(self.api.client().clone(), tier, namespaces, kinds, names).await?;
            Ok(Box::new(cache) as Box<dyn LiveWatch>)
        })
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Option<Value>, LiveError>> {
        Box::pin(LiveObjects::get(&self.api, key))
    }
}
