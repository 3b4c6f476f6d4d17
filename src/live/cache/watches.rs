//! The watch side of the live cache: discovery of a kind, its label and name watches, and the
//! task per watch that feeds a reflector store and bumps the change generation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, future};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersion};
use kube::discovery::Scope;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use serde_json::Value;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{
    KindCache, KindId, LiveCache, MAX_NAME_WATCHES_PER_NAMESPACE, NameId, Namespaces, WatchedStore,
};
use crate::live::LiveError;
use crate::render::TIER_LABEL;

/// Annotation `kubectl apply` (client-side) writes: a whole copy of the object, which no
/// comparison reads.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the cache keeps of an object: without kubectl's last-applied copy, and each
/// managedFields entry's `fieldsV1` as JSON text (`OwnedFields::parse` reads either form).
/// heaptrack, 10,000 ConfigMaps: the fieldsV1 trees were about half of the cache's heap.
fn slim(object: &mut DynamicObject) {
    if let Some(annotations) = object.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
    for entry in object.metadata.managed_fields.iter_mut().flatten() {
        if let Some(fields) = entry.fields_v1.as_mut()
            && !fields.0.is_string()
        {
            fields.0 = Value::String(fields.0.to_string());
        }
    }
}

/// The first retry of a failed watch, doubled per failure up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(4);

/// `d` +- 25 %, so that the watches of a tier do not all retry at the same instant.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.75 + fastrand::f64() / 2.0)
}

/// Stops a watch task with the cache that owns it.
pub(super) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LiveCache {
    pub(super) async fn start_kind(
        &self,
        id: &KindId,
        names: BTreeSet<NameId>,
    ) -> Result<KindCache, LiveError> {
        let (api_version, kind) = id;
        let unknown = || LiveError::UnknownKind {
            api_version: api_version.clone(),
            kind: kind.clone(),
        };
        let gvk = api_version
            .parse::<GroupVersion>()
            .map_err(|_| unknown())?
            .with_kind(kind);
        let (resource, caps) = match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok(found) => found,
            Err(kube::Error::Discovery(_)) => return Err(unknown()),
            Err(kube::Error::Api(status)) if status.code == 404 => return Err(unknown()),
            Err(source) => {
                return Err(LiveError::Api {
                    what: format!("discovery of {api_version} {kind}"),
                    source,
                });
            }
        };
        let namespaced = matches!(caps.scope, Scope::Namespaced);
        let labelled = self.watch_labelled(id, &resource, namespaced);
        let mut kind = KindCache {
            resource,
            namespaced,
            labelled,
            names: BTreeSet::new(),
            named: Vec::new(),
        };
        kind.names = kind.normalise(names);
        kind.named = self.watch_names(id, &kind.resource, &kind.names);
        Ok(kind)
    }

    /// The label watches of one kind: per namespace of the tier for a namespaced kind (unless
    /// [`Namespaces::All`]), else one cluster-wide.
    fn watch_labelled(
        &self,
        id: &KindId,
        resource: &ApiResource,
        namespaced: bool,
    ) -> Vec<WatchedStore> {
        let selector = format!("{TIER_LABEL}={}", self.tier);
        let config = || watcher::Config::default().labels(&selector);
        match &self.namespaces {
            Namespaces::Only(namespaces) if namespaced => namespaces
                .iter()
                .map(|ns| {
                    self.spawn_watch(
                        id,
                        Api::namespaced_with(self.client.clone(), ns, resource),
                        resource,
                        config(),
                        None,
                        &format!("{selector} in namespace {ns}"),
                    )
                })
                .collect(),
            _ => vec![self.spawn_watch(
                id,
                Api::all_with(self.client.clone(), resource),
                resource,
                config(),
                None,
                &selector,
            )],
        }
    }

    pub(super) fn watch_names(
        &self,
        id: &KindId,
        resource: &ApiResource,
        names: &BTreeSet<NameId>,
    ) -> Vec<WatchedStore> {
        let mut by_namespace: BTreeMap<Option<&str>, BTreeSet<&str>> = BTreeMap::new();
        for (ns, name) in names {
            by_namespace
                .entry(ns.as_deref())
                .or_default()
                .insert(name.as_str());
        }
        let mut stores = Vec::new();
        for (ns, names) in by_namespace {
            let api = match ns {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, resource),
                None => Api::all_with(self.client.clone(), resource),
            };
            if names.len() <= MAX_NAME_WATCHES_PER_NAMESPACE {
                for name in names {
                    let selector = format!("metadata.name={name}");
                    let config = watcher::Config::default().fields(&selector);
                    stores.push(self.spawn_watch(
                        id,
                        api.clone(),
                        resource,
                        config,
                        None,
                        &selector,
                    ));
                }
            } else {
                let only = names.iter().map(|n| (*n).to_owned()).collect();
                let what = format!("{} names in namespace {}", names.len(), ns.unwrap_or("*"));
                let config = watcher::Config::default();
                stores.push(self.spawn_watch(id, api, resource, config, Some(only), &what));
            }
        }
        stores
    }

    /// One watch, one task: events go into the store, then bump the change generation (the
    /// store is updated first, so a woken reader sees the change).
    ///
    /// A failed watch is not resumed where it stopped: it lists again (kube's watcher would
    /// resume from its last resourceVersion when it can, and then nothing would say when it is
    /// current again). Until that list ends, the store keeps the previous list's objects (the
    /// writer swaps the new list in whole at its end) and the watch counts as not synced, so
    /// nothing reads an object's absence as a deletion. Retries back off from 250 ms to 4 s
    /// (jittered), reset by a successful list: kube's default backoff grows to 30 s, which
    /// left an API server that came back unwatched for up to a minute (issue 21).
    fn spawn_watch(
        &self,
        (api_version, kind): &KindId,
        api: Api<DynamicObject>,
        resource: &ApiResource,
        config: watcher::Config,
        only: Option<BTreeSet<String>>,
        selector: &str,
    ) -> WatchedStore {
        let mut writer = Writer::new(resource.clone());
        let store = writer.as_reader();
        let synced = Arc::new(AtomicBool::new(false));
        let changes = self.changes.clone();
        let tier = self.tier.clone();
        let span = tracing::info_span!(
            "live watch",
            tier = %self.tier,
            api_version = %api_version,
            kind = %kind,
            selector = %selector,
        );
        let flag = synced.clone();
        let task = tokio::spawn(
            async move {
                let bump = || changes.send_modify(|g| *g = g.wrapping_add(1));
                let mut retry = RETRY_FIRST;
                loop {
                    let only = only.clone();
                    let tier = tier.clone();
                    let events = watcher::watcher(api.clone(), config.clone())
                        .try_filter(move |event| {
                            future::ready(wanted(event, only.as_ref(), &tier))
                        })
                        .modify(slim);
                    let mut events = std::pin::pin!(events);
                    while let Some(event) = events.next().await {
                        match event {
                            Ok(event) => {
                                writer.apply_watcher_event(&event);
                                match event {
                                    Event::InitDone => {
                                        flag.store(true, Ordering::Release);
                                        retry = RETRY_FIRST;
                                        bump();
                                    }
                                    Event::Apply(_) | Event::Delete(_) => bump(),
                                    Event::Init | Event::InitApply(_) => {}
                                }
                            }
                            Err(error) => {
                                let was_synced = flag.swap(false, Ordering::AcqRel);
                                tracing::warn!(%error, retry_in_ms = retry.as_millis() as u64, "watch failed; listing again");
                                if was_synced {
                                    bump();
                                }
                                break;
                            }
                        }
                    }
                    tokio::time::sleep(jittered(retry)).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
            .instrument(span),
        );
        WatchedStore {
            store,
            synced,
            what: selector.to_owned(),
            _task: AbortOnDrop(task),
        }
    }
}

/// Keeps every event of a selected watch; of a namespace-wide one, only the desired names, and
/// of those only objects without the tier's label: the label watch holds the labelled ones,
/// and holding every object twice doubled the daemon's memory (BENCHMARKS.md). Deletions always
/// pass, so an object stored while unlabelled leaves the store with it.
fn wanted(event: &Event<DynamicObject>, only: Option<&BTreeSet<String>>, tier: &str) -> bool {
    let Some(only) = only else { return true };
    let labelled = |o: &DynamicObject| {
        o.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(TIER_LABEL))
            .is_some_and(|t| t == tier)
    };
    match event {
        Event::Delete(o) => only.contains(&o.name_any()),
        Event::Apply(o) | Event::InitApply(o) => only.contains(&o.name_any()) && !labelled(o),
        Event::Init | Event::InitDone => true,
    }
}
