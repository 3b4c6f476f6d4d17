//! The live cache the daemon diffs against: kube-runtime watchers feeding reflector stores, so
//! that a reconcile with no change reads memory and sends no request, and a live edit is seen
//! as soon as the API server streams it.
//!
//! Per kind of the desired set:
//! - watches selected by the label `gitopsd.io/tier=<tier>`: every object of the tier, and so
//!   the extra objects too. For a cluster-scoped kind, one cluster-wide watch; for a namespaced
//!   kind, one watch per namespace of the tier ([`Namespaces::Only`], what the daemon uses), or
//!   one cluster-wide watch ([`Namespaces::All`]);
//! - watches for the desired objects by name, since an object gitopsd has not applied yet (or
//!   whose label someone removed) does not match the label. Field selectors have no OR, so a
//!   name costs one watch (`metadata.name=<name>`); to keep the number of connections bounded,
//!   a namespace with more than [`MAX_NAME_WATCHES_PER_NAMESPACE`] desired objects of a kind
//!   gets a single namespace-wide watch instead, whose events are filtered to the desired names
//!   before they reach the store, so memory stays bounded by the desired set.
//!
//! Watching only the tier's namespaces is deliberate (least privilege, issue 8): gitopsd then
//! needs no read of a namespaced kind outside them, so its ServiceAccount cannot list Secrets
//! in other namespaces. Nothing desired is lost, since validation blocks a desired object
//! outside the tier's namespaces (`validate`'s scope stage). What is lost is on purpose: an
//! object labelled for the tier in a namespace that is not the tier's is not seen, so it is
//! never reported as extra nor pruned, it is out of the tier's scope. A tier with no
//! namespaces (`clusterScoped: true` only) may hold no namespaced object at all, and gets no
//! label watch for a namespaced kind.
//!
//! Each watch is one tokio task; stores are plain reflector stores (no channel at all), and the
//! change notification is a `tokio::sync::watch` (one slot, never a queue).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::api::DynamicObject;
use kube::core::ApiResource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tokio::sync::watch;

use super::{LiveError, LiveObjects, ObjectKey};

mod watches;

use watches::AbortOnDrop;

/// Above this many desired objects of one kind in one namespace, one namespace-wide watch
/// replaces the per-name watches (see the module doc).
pub const MAX_NAME_WATCHES_PER_NAMESPACE: usize = 8;

/// Where the label watches of namespaced kinds look for the tier's objects. Cluster-scoped
/// kinds are watched cluster-wide either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// Every namespace: one cluster-wide watch per kind (needs list/watch cluster-wide).
    All,
    /// Only these: one watch per kind and namespace (needs list/watch in each of them only).
    /// Empty: no label watch for a namespaced kind.
    Only(BTreeSet<String>),
}

impl Namespaces {
    /// [`Namespaces::Only`] these namespaces.
    pub fn only<S: Into<String>>(namespaces: impl IntoIterator<Item = S>) -> Namespaces {
        Namespaces::Only(namespaces.into_iter().map(Into::into).collect())
    }
}

/// (apiVersion, kind)
type KindId = (String, String);
/// (namespace, name); the namespace is `None` for cluster-scoped kinds.
type NameId = (Option<String>, String);

/// Live objects of one tier, kept current by watches. Dropping it stops every watch.
pub struct LiveCache {
    client: Client,
    tier: String,
    namespaces: Namespaces,
    kinds: HashMap<KindId, KindCache>,
    /// Wanted kinds the API server does not serve (yet: their CRD is applied in the same
    /// sync). No object of them can exist; [`LiveCache::update_kinds`] tries them again.
    unserved: BTreeSet<KindId>,
    changes: Arc<watch::Sender<u64>>,
}

struct KindCache {
    resource: ApiResource,
    namespaced: bool,
    /// The label watches: one cluster-wide, or one per namespace of the tier (none when the
    /// kind is namespaced and the tier has no namespace).
    labelled: Vec<WatchedStore>,
    /// The desired objects of this kind: for these, "in no store" means "does not exist".
    names: BTreeSet<NameId>,
    named: Vec<WatchedStore>,
}

struct WatchedStore {
    store: Store<DynamicObject>,
    /// True from the end of a (re)list until the watch fails: while false, the store holds the
    /// last list's objects, which may be stale, and an object missing from it is unknown, not
    /// deleted.
    synced: Arc<AtomicBool>,
    /// What the watch selects, for the messages that say which watch is not synced.
    what: String,
    _task: AbortOnDrop,
}

impl LiveCache {
    /// Discovers each kind and starts its watches. Returns at once: call
    /// [`wait_synced`](Self::wait_synced) before trusting answers (until then, `get` and
    /// `labelled` answer [`LiveError::NotSynced`]).
    ///
    /// `kinds` are the kinds of the desired set, `names` its objects; a kind named only by an
    /// object is watched too. `namespaces` is where the tier's objects of namespaced kinds are
    /// looked for (the daemon: the tier's namespaces).
    pub async fn start(
        client: Client,
        tier: &str,
        namespaces: Namespaces,
        kinds: &[(String, String)],
        names: &[ObjectKey],
    ) -> Result<LiveCache, LiveError> {
        let (changes, _) = watch::channel(0);
        let mut cache = LiveCache {
            client,
            tier: tier.to_owned(),
            namespaces,
            kinds: HashMap::new(),
            unserved: BTreeSet::new(),
            changes: Arc::new(changes),
        };
        cache.update_kinds(kinds, names).await?;
        Ok(cache)
    }

    /// Follows a new desired set: stops the watches of kinds no longer wanted, starts those of
    /// new kinds, and restarts only the by-name watches of kinds whose objects changed (the
    /// label watch of a kept kind keeps running and stays synced).
    pub async fn update_kinds(
        &mut self,
        kinds: &[(String, String)],
        names: &[ObjectKey],
    ) -> Result<(), LiveError> {
        let mut wanted: BTreeMap<KindId, BTreeSet<NameId>> =
            kinds.iter().map(|k| (k.clone(), BTreeSet::new())).collect();
        for key in names {
            wanted
                .entry((key.api_version.clone(), key.kind.clone()))
                .or_default()
                .insert((key.namespace.clone(), key.name.clone()));
        }
        self.kinds.retain(|id, _| wanted.contains_key(id));
        self.unserved.clear();
        for (id, names) in wanted {
            match self.kinds.remove(&id) {
                Some(mut kind) => {
                    let names = kind.normalise(names);
                    if kind.names != names {
                        kind.named = self.watch_names(&id, &kind.resource, &names);
                        kind.names = names;
                    }
                    self.kinds.insert(id, kind);
                }
                None => match self.start_kind(&id, names).await {
                    Ok(kind) => {
                        self.kinds.insert(id, kind);
                    }
                    Err(LiveError::UnknownKind { .. }) => {
                        self.unserved.insert(id);
                    }
                    Err(e) => return Err(e),
                },
            }
        }
        Ok(())
    }

    /// Waits until every watch is synced: it has listed its objects, and has not failed since
    /// (a watch that failed lists again, see [`spawn_watch`](Self::spawn_watch)).
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), LiveError> {
        let mut changes = self.changes.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            // Checked after subscribing, so a list that ends meanwhile wakes the loop.
            while self.not_synced().is_some() {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        match (waited, self.not_synced()) {
            (_, None) => Ok(()),
            (_, Some((id, _))) => Err(LiveError::NotSynced {
                api_version: id.0.clone(),
                kind: id.1.clone(),
            }),
        }
    }

    /// The first watch that is not synced (listing, or failed and listing again), with what it
    /// selects; `None` when every watch is synced.
    pub fn not_synced(&self) -> Option<(&KindId, &str)> {
        self.kinds.iter().find_map(|(id, kind)| {
            kind.watches()
                .find(|w| !w.synced.load(Ordering::Acquire))
                .map(|w| (id, w.what.as_str()))
        })
    }

    /// A receiver whose value (a generation number) changes whenever a watched object is
    /// added, changed or deleted, or a watch (re)lists: `changed().await` wakes a reconcile.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// How many watches run: per kind, those for the label (one, or one per namespace), plus
    /// those by name.
    pub fn watches(&self) -> usize {
        self.kinds.values().map(|k| k.stores().count()).sum()
    }

    pub fn tier(&self) -> &str {
        &self.tier
    }

    /// Where the label watches of namespaced kinds look.
    pub fn namespaces(&self) -> &Namespaces {
        &self.namespaces
    }

    /// Wanted kinds the API server did not serve at the last [`update_kinds`](Self::update_kinds).
    pub fn unserved(&self) -> impl Iterator<Item = &(String, String)> {
        self.unserved.iter()
    }

    fn kind(&self, api_version: &str, kind: &str) -> Result<&KindCache, LiveError> {
        let id = (api_version.to_owned(), kind.to_owned());
        if self.unserved.contains(&id) {
            return Err(LiveError::UnknownKind {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            });
        }
        let found = self.kinds.get(&id).ok_or_else(|| LiveError::NotWatched {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        })?;
        found.synced(&id)?;
        Ok(found)
    }
}

impl KindCache {
    fn watches(&self) -> impl Iterator<Item = &WatchedStore> {
        self.labelled.iter().chain(&self.named)
    }

    fn stores(&self) -> impl Iterator<Item = &Store<DynamicObject>> {
        self.watches().map(|w| &w.store)
    }

    /// Every watch of the kind has listed and not failed since: otherwise its answers would
    /// be guesses (a missing object may only not be listed again yet).
    fn synced(&self, (api_version, kind): &KindId) -> Result<(), LiveError> {
        if self.watches().all(|w| w.synced.load(Ordering::Acquire)) {
            Ok(())
        } else {
            Err(LiveError::NotSynced {
                api_version: api_version.clone(),
                kind: kind.clone(),
            })
        }
    }

    /// Cluster-scoped objects have no namespace, whatever the key says.
    fn normalise(&self, names: BTreeSet<NameId>) -> BTreeSet<NameId> {
        if self.namespaced {
            names
        } else {
            names.into_iter().map(|(_, name)| (None, name)).collect()
        }
    }

    fn to_json(&self, object: &DynamicObject) -> Result<Value, LiveError> {
        // Serialized from the store's object as it is (no clone: this runs for every object
        // of every reconcile); list responses may leave apiVersion and kind out of their
        // items, so they are filled in on the JSON.
        let mut value = serde_json::to_value(object).map_err(|source| LiveError::Encode {
            object: format!(
                "{} {} {}/{}",
                self.resource.api_version,
                self.resource.kind,
                object.namespace().unwrap_or_default(),
                object.name_any()
            ),
            source,
        })?;
        if object.types.is_none()
            && let Some(map) = value.as_object_mut()
        {
            map.insert(
                "apiVersion".to_owned(),
                Value::String(self.resource.api_version.clone()),
            );
            map.insert("kind".to_owned(), Value::String(self.resource.kind.clone()));
        }
        Ok(value)
    }
}

/// A watched kind and its tier-labelled objects, sorted by namespace and name.
type LabelledStore<'a> = (&'a KindCache, Vec<Arc<DynamicObject>>);

impl LiveCache {
    /// Each asked kind with its tier-labelled objects, sorted by namespace and name: the one
    /// walk of the label watches behind `labelled` and `labelled_keys`.
    fn labelled_stores(
        &self,
        tier: &str,
        kinds: &[(String, String)],
    ) -> Result<Vec<LabelledStore<'_>>, LiveError> {
        if tier != self.tier {
            return Err(LiveError::OtherTier {
                asked: tier.to_owned(),
                cached: self.tier.clone(),
            });
        }
        kinds
            .iter()
            // No object of a kind the server does not serve can exist.
            .filter(|id| !self.unserved.contains(*id))
            .map(|(api_version, kind_name)| {
                let kind = self.kind(api_version, kind_name)?;
                let mut objects: Vec<_> =
                    kind.labelled.iter().flat_map(|w| w.store.state()).collect();
                objects.sort_by_key(|o| (o.namespace(), o.name_any()));
                Ok((kind, objects))
            })
            .collect()
    }
}

impl LiveCache {
    /// Reads a cached object in place, without turning it into JSON (the ownership check
    /// reads the label of every desired object on every sync). Answers as `get` does.
    pub fn peek<T>(
        &self,
        key: &ObjectKey,
        read: impl FnOnce(&DynamicObject) -> T,
    ) -> Result<Option<T>, LiveError> {
        let (_, found) = self.find(key)?;
        Ok(found.map(|o| read(&o)))
    }

    /// The kind's cache and the object, `None` when the cache knows it does not exist.
    fn find(&self, key: &ObjectKey) -> Result<(&KindCache, Option<Arc<DynamicObject>>), LiveError> {
        let kind = self.kind(&key.api_version, &key.kind)?;
        let namespace = key.namespace.as_deref().filter(|_| kind.namespaced);
        let mut oref = ObjectRef::new_with(&key.name, kind.resource.clone());
        if let Some(ns) = namespace {
            oref = oref.within(ns);
        }
        if let Some(found) = kind.stores().find_map(|s| s.get(&oref)) {
            return Ok((kind, Some(found)));
        }
        let id = (namespace.map(str::to_owned), key.name.clone());
        if kind.names.contains(&id) {
            Ok((kind, None))
        } else {
            // Neither labelled nor desired: no watch covers it, so absence proves nothing.
            Err(LiveError::NotCached {
                object: format!(
                    "{} {} {}/{}",
                    key.api_version,
                    key.kind,
                    namespace.unwrap_or_default(),
                    key.name
                ),
            })
        }
    }
}

impl LiveObjects for LiveCache {
    async fn get(&self, key: &ObjectKey) -> Result<Option<Value>, LiveError> {
        match self.find(key)? {
            (kind, Some(found)) => kind.to_json(&found).map(Some),
            (_, None) => Ok(None),
        }
    }

    async fn labelled(
        &self,
        tier: &str,
        kinds: &[(String, String)],
    ) -> Result<Vec<Value>, LiveError> {
        let mut out = Vec::new();
        for (kind, objects) in self.labelled_stores(tier, kinds)? {
            for o in objects {
                out.push(kind.to_json(&o)?);
            }
        }
        Ok(out)
    }

    async fn labelled_keys(
        &self,
        tier: &str,
        kinds: &[(String, String)],
    ) -> Result<Vec<ObjectKey>, LiveError> {
        let mut out = Vec::new();
        for ((api_version, kind_name), (kind, objects)) in kinds
            .iter()
            .filter(|id| !self.unserved.contains(*id))
            .zip(self.labelled_stores(tier, kinds)?)
        {
            out.extend(objects.iter().map(|o| ObjectKey {
                api_version: api_version.clone(),
                kind: kind_name.clone(),
                namespace: o.namespace().filter(|_| kind.namespaced),
                name: o.name_any(),
            }));
        }
        Ok(out)
    }
}
