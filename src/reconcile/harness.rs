//! A fake cluster for the reconcile's scenario tests: the real [`TierReconciler`] over
//! [`Backends`] kept in memory, a config repo of real files in a temp dir rendered by the real
//! render, and no API server. A scenario runs in milliseconds.
//!
//! The fake keeps what the reconcile's rules depend on: server-side apply by field manager
//! (the manifest merged into the live object, fields gitopsd owned and dropped removed,
//! `managedFields` per manager), create, update and delete with `resourceVersion`,
//! `generation` and `uid`, objects served at every version of their group (what makes an
//! apiVersion change the same object), Deployments ready or not, and faults injected per
//! object (a 409 conflict, a 422 immutable field, an admission webhook's denial) or for every
//! request (the API server down). It logs every state write and every write to the cluster in
//! order, so a scenario can assert what came before what.
//!
//! The reconciler still holds a `kube::Client` for API discovery and Job Events: here it
//! points at a closed port, so a scenario that needed either would fail, not pass by luck;
//! discovery is answered by a seeded [`ScopeCache`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use kube::api::DynamicObject;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Backends, CheckoutError, Checkouts, Outcomes, ReconcileReason, TierReconciler};
use crate::activity::{Activity, Observer, Observers};
use crate::apply::{Apply, ApplyItem, Conflict, ObjectResult, Outcome, PruneTarget};
use crate::config::{Config, TierConfig};
use crate::diff::{FIELD_MANAGER, FieldPath, PathSegment};
use crate::discovery::ScopeCache;
use crate::drift::{DriftError, DryRunCache};
use crate::live::{Cluster, LiveError, LiveWatch, Namespaces, ObjectId, ObjectKey};
use crate::render::{KindScopes, TIER_LABEL};
use crate::revision::Revision;
use crate::state::{StateError, StateStorage, TierState};
use crate::status::{StatusHandle, SyncState, TierStatus};

/// A fault the fake API server answers a write of one object with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 409: another field manager owns `field` (as the server names it, `.spec.replicas`).
    Conflict { manager: String, field: String },
    /// 422: `field` is immutable.
    Immutable { field: String },
    /// An admission webhook denied the request.
    Denied { webhook: String },
}

/// A write the fake saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The tier's state was saved with these inventory keys.
    StateSaved { tier: String, keys: Vec<ObjectKey> },
    /// An apply of the object reached the API server (whatever its answer).
    Applied(ObjectKey),
    /// A delete of the object reached the API server.
    Deleted(ObjectKey),
    /// Foreign fields were removed from the object.
    Removed(ObjectKey),
}

/// Another field manager's fields on one object: (manager, path as map keys).
type Foreign = Vec<(String, Vec<String>)>;

#[derive(Default)]
struct World {
    objects: BTreeMap<ObjectId, Value>,
    foreign: HashMap<ObjectId, Foreign>,
    /// gitopsd's fields per object, as paths of map keys (lists are atomic here).
    owned: HashMap<ObjectId, Vec<Vec<String>>>,
    faults: HashMap<ObjectId, Fault>,
    api_down: bool,
    /// The state store alone cannot be read (the API server answers everything else).
    state_unreadable: bool,
    /// Reads straight from the API server fail (the live cache still answers).
    reads_failing: bool,
    /// SIGTERM mid-apply: the token is cancelled once this many more objects were applied.
    stop_after: Option<(usize, CancellationToken)>,
    /// Deployments report all replicas available.
    ready: bool,
    states: HashMap<String, TierState>,
    log: Vec<Step>,
    next_rv: u64,
    next_uid: u64,
    changes: Option<watch::Sender<u64>>,
}

/// The fake API server with its state store: one shared world, cheap to clone. It is every
/// backend of a [`TierReconciler`] at once ([`FakeCluster::backends`]).
#[derive(Clone)]
pub struct FakeCluster(Arc<Mutex<World>>);

impl Default for FakeCluster {
    fn default() -> Self {
        let (tx, _) = watch::channel(0);
        FakeCluster(Arc::new(Mutex::new(World {
            ready: true,
            changes: Some(tx),
            ..World::default()
        })))
    }
}

fn api_down_error(what: &str) -> kube::Error {
    kube::Error::Service(Box::new(std::io::Error::new(
        std::io::ErrorKind::ConnectionRefused,
        format!("{what}: connection refused (the fake API server is down)"),
    )))
}

impl FakeCluster {
    fn world(&self) -> MutexGuard<'_, World> {
        // A panicking scenario poisons the lock; the world is still what it was.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every backend of a reconciler, answered by this world.
    pub fn backends(&self) -> Backends {
        Backends {
            cluster: Arc::new(self.clone()),
            applier: Arc::new(self.clone()),
            dry_run: Arc::new(self.clone()),
            store: Arc::new(self.clone()),
        }
    }

    /// The live object named by `key` (served at the key's version), if any.
    pub fn get(&self, key: &ObjectKey) -> Option<Value> {
        let world = self.world();
        world.objects.get(&key.id()).map(|o| at_version(o, key))
    }

    pub fn exists(&self, key: &ObjectKey) -> bool {
        self.get(key).is_some()
    }

    /// Every write so far, in order.
    pub fn log(&self) -> Vec<Step> {
        self.world().log.clone()
    }

    pub fn clear_log(&self) {
        self.world().log.clear();
    }

    pub fn applied(&self) -> Vec<ObjectKey> {
        self.log()
            .into_iter()
            .filter_map(|s| match s {
                Step::Applied(k) => Some(k),
                _ => None,
            })
            .collect()
    }

    pub fn deleted(&self) -> Vec<ObjectKey> {
        self.log()
            .into_iter()
            .filter_map(|s| match s {
                Step::Deleted(k) => Some(k),
                _ => None,
            })
            .collect()
    }

    /// Makes every write of `key` fail with `fault` until [`FakeCluster::heal`].
    pub fn inject(&self, key: &ObjectKey, fault: Fault) {
        self.world().faults.insert(key.id(), fault);
    }

    pub fn heal(&self, key: &ObjectKey) {
        self.world().faults.remove(&key.id());
    }

    /// The API server stops (or starts again) answering: reads, writes and the state store.
    pub fn set_api_down(&self, down: bool) {
        self.world().api_down = down;
    }

    /// The state store alone fails its reads (RBAC lost on the state ConfigMap, say).
    pub fn set_state_unreadable(&self, unreadable: bool) {
        self.world().state_unreadable = unreadable;
    }

    /// Cancels `token` (the daemon's SIGTERM) once `applies` more objects were applied; the
    /// objects of that apply after them are not sent, as [`crate::apply::Applier`] does.
    pub fn stop_after(&self, applies: usize, token: CancellationToken) {
        self.world().stop_after = Some((applies, token));
    }

    /// Reads straight from the API server (prune's last look) fail; writes still work.
    pub fn set_reads_failing(&self, failing: bool) {
        self.world().reads_failing = failing;
    }

    /// Whether Deployments become available (their status says so after each write).
    pub fn set_ready(&self, ready: bool) {
        let mut world = self.world();
        world.ready = ready;
        let ids: Vec<ObjectId> = world.objects.keys().cloned().collect();
        for id in ids {
            if let Some(mut o) = world.objects.remove(&id) {
                set_status(&mut o, ready);
                world.objects.insert(id, o);
            }
        }
        world.notify();
    }

    /// The state of `tier` as last saved.
    pub fn state(&self, tier: &str) -> TierState {
        self.world().states.get(tier).cloned().unwrap_or_default()
    }

    pub fn set_state(&self, tier: &str, state: TierState) {
        self.world().states.insert(tier.to_owned(), state);
    }

    /// Another controller (`manager`, an Update) sets `path` of the object to `value`; the
    /// field becomes that manager's.
    pub fn edit(&self, key: &ObjectKey, manager: &str, path: &[&str], value: Value) {
        let mut world = self.world();
        let id = key.id();
        let Some(mut o) = world.objects.remove(&id) else {
            panic!("edit: {key:?} does not exist");
        };
        let path: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
        set_path(&mut o, &path, value);
        if let Some(owned) = world.owned.get_mut(&id) {
            owned.retain(|p| *p != path);
        }
        let foreign = world.foreign.entry(id.clone()).or_default();
        foreign.retain(|(_, p)| *p != path);
        foreign.push((manager.to_owned(), path));
        world.write(id, o, None);
    }

    /// Someone deletes the object.
    pub fn delete_object(&self, key: &ObjectKey) {
        let mut world = self.world();
        world.objects.remove(&key.id());
        world.notify();
    }

    /// Someone creates an object (not through gitopsd).
    pub fn create_object(&self, manager: &str, object: Value) {
        let key = ObjectKey::of(&object);
        let mut world = self.world();
        let id = key.id();
        let paths = leaf_paths(&object);
        world.foreign.insert(
            id.clone(),
            paths.into_iter().map(|p| (manager.to_owned(), p)).collect(),
        );
        world.write(id, object, None);
    }
}

impl World {
    fn notify(&mut self) {
        if let Some(tx) = &self.changes {
            tx.send_modify(|n| *n += 1);
        }
    }

    /// Stores `object` as the new version of `id`: resourceVersion, uid, generation, status
    /// and managedFields as the API server would set them. The outcome of the write.
    fn write(&mut self, id: ObjectId, mut object: Value, applied_version: Option<&str>) -> Outcome {
        let old = self.objects.get(&id).cloned();
        let meta = |o: &Value, p: &str| o.pointer(p).cloned();
        let (uid, generation, version) = match &old {
            Some(old) => {
                let generation = meta(old, "/metadata/generation")
                    .and_then(|g| g.as_i64())
                    .unwrap_or(1);
                let spec_changed = strip(old) != strip(&object);
                (
                    meta(old, "/metadata/uid"),
                    if spec_changed {
                        generation + 1
                    } else {
                        generation
                    },
                    meta(old, "/metadata/resourceVersion"),
                )
            }
            None => {
                self.next_uid += 1;
                (Some(json!(format!("uid-{}", self.next_uid))), 1, None)
            }
        };
        if let Some(v) = applied_version {
            object["apiVersion"] = json!(v);
        }
        let m = object["metadata"].as_object_mut();
        let Some(m) = m else {
            panic!("an object without metadata: {object}");
        };
        m.insert("uid".into(), uid.unwrap_or(Value::Null));
        m.insert("generation".into(), json!(generation));
        if let Some(v) = version {
            m.insert("resourceVersion".into(), v);
        }
        m.remove("managedFields");
        set_status(&mut object, self.ready);
        let unchanged = old.as_ref().is_some_and(|o| {
            let mut o = o.clone();
            if let Some(m) = o["metadata"].as_object_mut() {
                m.remove("managedFields");
            }
            o == object
        });
        let outcome = match (&old, unchanged) {
            (None, _) => Outcome::Created,
            (Some(_), true) => Outcome::Unchanged,
            (Some(_), false) => Outcome::Configured,
        };
        if !unchanged {
            self.next_rv += 1;
            object["metadata"]["resourceVersion"] = json!(self.next_rv.to_string());
        }
        object["metadata"]["managedFields"] = self.managed_fields(&id, &object);
        self.objects.insert(id, object);
        if !unchanged {
            self.notify();
        }
        outcome
    }

    fn managed_fields(&self, id: &ObjectId, object: &Value) -> Value {
        let mut entries = Vec::new();
        if let Some(owned) = self.owned.get(id) {
            entries.push(json!({
                "manager": FIELD_MANAGER,
                "operation": "Apply",
                "apiVersion": object["apiVersion"],
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_v1(owned.iter()),
            }));
        }
        let mut by_manager: BTreeMap<&str, Vec<&Vec<String>>> = BTreeMap::new();
        for (m, p) in self.foreign.get(id).into_iter().flatten() {
            by_manager.entry(m).or_default().push(p);
        }
        for (m, paths) in by_manager {
            entries.push(json!({
                "manager": m,
                "operation": "Update",
                "apiVersion": object["apiVersion"],
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_v1(paths.into_iter()),
            }));
        }
        Value::Array(entries)
    }

    /// Server-side apply of `manifest` by gitopsd (forced: faults stand for refusals).
    fn apply(&mut self, manifest: &Value) -> ObjectResult {
        let key = ObjectKey::of(manifest);
        let id = key.id();
        self.log.push(Step::Applied(key.clone()));
        if let Some(r) = self.refuse(&key) {
            return r;
        }
        let mut object = self.objects.get(&id).cloned().unwrap_or_else(|| json!({}));
        // Fields gitopsd applied before and the manifest no longer sets are removed.
        let now = leaf_paths(manifest);
        for old in self.owned.get(&id).cloned().unwrap_or_default() {
            if !now
                .iter()
                .any(|p| p.starts_with(&old) || old.starts_with(p))
            {
                remove_path(&mut object, &old);
            }
        }
        merge(&mut object, manifest);
        if let Some(f) = self.foreign.get_mut(&id) {
            f.retain(|(_, p)| !now.iter().any(|n| n.starts_with(p) || p.starts_with(n)));
        }
        self.owned.insert(id.clone(), now);
        let outcome = self.write(id.clone(), object, Some(&key.api_version));
        let stored = &self.objects[&id];
        ObjectResult {
            key,
            outcome,
            message: None,
            conflicts: Vec::new(),
            applied: Some(crate::apply::AppliedMeta {
                uid: stored
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                resource_version: stored
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                generation: stored
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64),
            }),
        }
    }

    /// The failed result of a write of `key`, when a fault or the API server's absence
    /// refuses it.
    fn refuse(&self, key: &ObjectKey) -> Option<ObjectResult> {
        let name = crate::apply::display_name(key);
        let (message, conflicts) = if self.api_down {
            (format!("{name}: {}", api_down_error("apply")), Vec::new())
        } else {
            match self.faults.get(&key.id())? {
                Fault::Conflict { manager, field } => (
                    format!(
                        "{name}: Apply failed with 1 conflict: conflict with \"{manager}\": {field}"
                    ),
                    vec![Conflict {
                        manager: manager.clone(),
                        field: field.clone(),
                    }],
                ),
                Fault::Immutable { field } => (
                    format!("{name}: {field}: Invalid value: field is immutable"),
                    Vec::new(),
                ),
                Fault::Denied { webhook } => (
                    format!("{name}: admission webhook \"{webhook}\" denied the request"),
                    Vec::new(),
                ),
            }
        };
        Some(ObjectResult {
            key: key.clone(),
            outcome: Outcome::Failed,
            message: Some(message),
            conflicts,
            applied: None,
        })
    }
}

/// The object without what the server owns: a change here is a new generation.
fn strip(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

/// A Deployment's status: every replica updated, available only when `ready`.
fn set_status(o: &mut Value, ready: bool) {
    if o.get("kind").and_then(Value::as_str) != Some("Deployment") {
        return;
    }
    let replicas = o
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let generation = o.pointer("/metadata/generation").cloned();
    o["status"] = json!({
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": if ready { replicas } else { 0 },
        "availableReplicas": if ready { replicas } else { 0 },
    });
}

/// `object` served at `key`'s version of its group.
fn at_version(object: &Value, key: &ObjectKey) -> Value {
    let mut o = object.clone();
    o["apiVersion"] = json!(key.api_version);
    o
}

/// The paths (map keys) of the leaves `manifest` sets, identity fields left out. Lists are
/// leaves: enough for the scenarios, which edit map fields.
fn leaf_paths(manifest: &Value) -> Vec<Vec<String>> {
    fn walk(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    at.push(k.clone());
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => out.push(at.clone()),
        }
    }
    let mut out = Vec::new();
    walk(manifest, &mut Vec::new(), &mut out);
    out.retain(|p| {
        !matches!(
            p.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
            ["apiVersion"] | ["kind"] | ["metadata", "name"] | ["metadata", "namespace"]
        )
    });
    out
}

fn fields_v1<'a>(paths: impl Iterator<Item = &'a Vec<String>>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for k in p {
            let next = cur
                .entry(format!("f:{k}"))
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(m) = next else {
                unreachable!("fields_v1 holds maps only")
            };
            cur = m;
        }
    }
    Value::Object(root)
}

fn set_path(o: &mut Value, path: &[String], value: Value) {
    let mut cur = o;
    for k in path {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .map(|m| m.entry(k.clone()).or_insert(Value::Null))
            .unwrap_or_else(|| unreachable!("made a map above"));
    }
    *cur = value;
}

fn remove_path(o: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = o;
    for k in parents {
        match cur.get_mut(k) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// Maps merged key by key, anything else replaced: server-side apply for map fields.
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (into, from) => *into = from.clone(),
    }
}

impl Apply for FakeCluster {
    fn apply<'a>(
        &'a self,
        items: Vec<ApplyItem<'a>>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Vec<ObjectResult>> {
        let mut world = self.world();
        let mut out = Vec::new();
        for item in &items {
            if cancel.is_cancelled() {
                out.push(ObjectResult {
                    key: ObjectKey::of(item.manifest),
                    outcome: Outcome::Failed,
                    message: Some(crate::apply::SHUTTING_DOWN.to_owned()),
                    conflicts: Vec::new(),
                    applied: None,
                });
                continue;
            }
            out.push(world.apply(item.manifest));
            if let Some((left, token)) = world.stop_after.as_mut() {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    token.cancel();
                    world.stop_after = None;
                }
            }
        }
        Box::pin(async move { out })
    }

    fn delete<'a>(
        &'a self,
        targets: Vec<PruneTarget>,
        _cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Vec<ObjectResult>> {
        let mut world = self.world();
        let mut out = Vec::new();
        for t in targets {
            world.log.push(Step::Deleted(t.key.clone()));
            if let Some(r) = world.refuse(&t.key) {
                out.push(r);
                continue;
            }
            if world.objects.remove(&t.key.id()).is_some() {
                world.notify();
            }
            out.push(ObjectResult {
                key: t.key,
                outcome: Outcome::Pruned,
                message: None,
                conflicts: Vec::new(),
                applied: None,
            });
        }
        Box::pin(async move { out })
    }

    fn remove_fields<'a>(
        &'a self,
        key: &'a ObjectKey,
        _live: &'a Value,
        paths: &'a [FieldPath],
        _cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ObjectResult> {
        let mut world = self.world();
        world.log.push(Step::Removed(key.clone()));
        let result = match world.refuse(key) {
            Some(r) => r,
            None => {
                let id = key.id();
                let mut object = world.objects.get(&id).cloned().unwrap_or(Value::Null);
                for p in paths {
                    let keys: Option<Vec<String>> =
                        p.0.iter()
                            .map(|s| match s {
                                PathSegment::Field(f) => Some(f.clone()),
                                _ => None,
                            })
                            .collect();
                    if let Some(keys) = keys {
                        remove_path(&mut object, &keys);
                    }
                }
                let outcome = world.write(id, object, None);
                ObjectResult {
                    key: key.clone(),
                    outcome,
                    message: None,
                    conflicts: Vec::new(),
                    applied: None,
                }
            }
        };
        Box::pin(async move { result })
    }
}

impl DryRunCache for FakeCluster {
    fn confirm(
        &self,
        desired: crate::render::DesiredObject,
        live: Value,
    ) -> BoxFuture<'_, Result<Value, DriftError>> {
        // What the server would store: the manifest merged into the live object.
        let mut object = live;
        merge(&mut object, &desired.manifest);
        Box::pin(async move { Ok(object) })
    }

    fn retain(&self, _keep: &std::collections::HashSet<ObjectKey>) {}

    fn entries(&self) -> usize {
        0
    }
}

impl StateStorage for FakeCluster {
    fn load<'a>(&'a self, tier: &'a str) -> BoxFuture<'a, Result<TierState, StateError>> {
        let world = self.world();
        let r = if world.api_down || world.state_unreadable {
            Err(StateError::Api {
                action: "reading",
                what: format!("ConfigMap gitopsd-state/gitopsd-state-{tier}"),
                source: Box::new(api_down_error("get")),
            })
        } else {
            Ok(world.states.get(tier).cloned().unwrap_or_default())
        };
        Box::pin(async move { r })
    }

    fn save<'a>(
        &'a self,
        tier: &'a str,
        state: &'a TierState,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let mut world = self.world();
        let r = if world.api_down {
            Err(StateError::Api {
                action: "writing",
                what: format!("ConfigMap gitopsd-state/gitopsd-state-{tier}"),
                source: Box::new(api_down_error("patch")),
            })
        } else {
            world.log.push(Step::StateSaved {
                tier: tier.to_owned(),
                keys: state.inventory.keys().cloned().collect(),
            });
            world.states.insert(tier.to_owned(), state.clone());
            Ok(())
        };
        Box::pin(async move { r })
    }
}

/// The live cache over the fake: it always knows every object (synced, nothing unserved).
struct FakeWatch {
    cluster: FakeCluster,
    tier: String,
}

impl LiveWatch for FakeWatch {
    fn update_kinds<'a>(
        &'a mut self,
        _kinds: &'a [(String, String)],
        _names: &'a [ObjectKey],
    ) -> BoxFuture<'a, Result<(), LiveError>> {
        Box::pin(async { Ok(()) })
    }

    fn wait_synced(&self, _timeout: Duration) -> BoxFuture<'_, Result<(), LiveError>> {
        Box::pin(async { Ok(()) })
    }

    fn not_synced(&self) -> Option<(&(String, String), &str)> {
        None
    }

    fn changes(&self) -> watch::Receiver<u64> {
        match &self.cluster.world().changes {
            Some(tx) => tx.subscribe(),
            None => watch::channel(0).1,
        }
    }

    fn unserved(&self) -> Box<dyn Iterator<Item = &(String, String)> + Send + '_> {
        Box::new(std::iter::empty())
    }

    fn get_object(&self, key: ObjectKey) -> BoxFuture<'_, Result<Option<Value>, LiveError>> {
        let found = self.cluster.get(&key);
        Box::pin(async move { Ok(found) })
    }

    fn labelled_objects(
        &self,
        tier: String,
        kinds: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<Vec<Value>, LiveError>> {
        let r = self.labelled(&tier, &kinds);
        Box::pin(async move { r })
    }

    fn labelled_object_keys(
        &self,
        tier: String,
        kinds: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<Vec<ObjectKey>, LiveError>> {
        let r = self
            .labelled(&tier, &kinds)
            .map(|os| os.iter().map(ObjectKey::of).collect());
        Box::pin(async move { r })
    }

    fn peek_object(
        &self,
        key: &ObjectKey,
        read: &mut dyn FnMut(&DynamicObject),
    ) -> Result<bool, LiveError> {
        let Some(found) = self.cluster.get(key) else {
            return Ok(false);
        };
        let object: DynamicObject =
            serde_json::from_value(found).map_err(|source| LiveError::Encode {
                object: crate::apply::display_name(key),
                source,
            })?;
        read(&object);
        Ok(true)
    }
}

impl FakeWatch {
    fn labelled(&self, tier: &str, kinds: &[(String, String)]) -> Result<Vec<Value>, LiveError> {
        if tier != self.tier {
            return Err(LiveError::OtherTier {
                asked: tier.to_owned(),
                cached: self.tier.clone(),
            });
        }
        let world = self.cluster.world();
        let mut out = Vec::new();
        for (api_version, kind) in kinds {
            let group = crate::config::api_group(api_version);
            for (id, o) in &world.objects {
                let labelled = o
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(TIER_LABEL))
                    .and_then(Value::as_str)
                    == Some(tier);
                if labelled && id.group == group && id.kind == *kind {
                    let key = ObjectKey {
                        api_version: api_version.clone(),
                        kind: kind.clone(),
                        namespace: id.namespace.clone(),
                        name: id.name.clone(),
                    };
                    out.push(at_version(o, &key));
                }
            }
        }
        Ok(out)
    }
}

impl Cluster for FakeCluster {
    fn start_cache<'a>(
        &'a self,
        tier: &'a str,
        _namespaces: Namespaces,
        _kinds: &'a [(String, String)],
        _names: &'a [ObjectKey],
    ) -> BoxFuture<'a, Result<Box<dyn LiveWatch>, LiveError>> {
        let watch = FakeWatch {
            cluster: self.clone(),
            tier: tier.to_owned(),
        };
        Box::pin(async move { Ok(Box::new(watch) as Box<dyn LiveWatch>) })
    }

    fn get<'a>(&'a self, key: &'a ObjectKey) -> BoxFuture<'a, Result<Option<Value>, LiveError>> {
        let failing = {
            let world = self.world();
            world.api_down || world.reads_failing
        };
        let r = if failing {
            Err(LiveError::Api {
                what: crate::apply::display_name(key),
                source: api_down_error("get"),
            })
        } else {
            Ok(FakeCluster::get(self, key))
        };
        Box::pin(async move { r })
    }
}

/// A config repo of real files: each commit is a directory, named by a made-up commit id.
pub struct FakeRepo {
    dir: tempfile::TempDir,
    commits: AtomicU64,
}

impl FakeRepo {
    pub fn new() -> FakeRepo {
        FakeRepo {
            dir: tempfile::tempdir().expect("a temp dir"),
            commits: AtomicU64::new(0),
        }
    }

    /// A new commit holding exactly `files` (path, content); its revision.
    pub fn commit(&self, files: &[(String, String)]) -> Revision {
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        let revision = Revision::new(format!("{n:0>40x}"));
        let root = self.dir.path().join(revision.as_str());
        for (path, content) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&p, content).expect("write a file");
        }
        revision
    }

    fn root(&self, revision: &Revision) -> PathBuf {
        self.dir.path().join(revision.as_str())
    }
}

impl Checkouts for FakeRepo {
    fn checkout(&self, revision: &Revision) -> Result<PathBuf, CheckoutError> {
        let root = self.root(revision);
        if root.is_dir() {
            Ok(root)
        } else {
            Err(CheckoutError::Failed {
                revision: revision.clone(),
                reason: "no such commit".to_owned(),
            })
        }
    }
}

/// Every activity the reconciler reported.
#[derive(Default)]
pub struct Recorder(Mutex<Vec<Activity>>);

impl Observer for Recorder {
    fn observe(&self, activity: &Activity) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(activity.clone());
    }
}

impl Recorder {
    pub fn all(&self) -> Vec<Activity> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The tier every scenario deploys, and its namespace.
pub const TIER: &str = "web";

/// A gitopsd.yaml with the tier `web` (namespace `web`, prune on) and `extra` YAML lines
/// under it (indented by four spaces), after the tiers in `before` (whole list items).
pub fn config(before: &str, extra: &[&str]) -> Config {
    let mut text = String::from("source:\n  url: /nonexistent/config-repo\ntiers:\n");
    text += before;
    text += &format!(
        "  - name: {TIER}\n    ref: main\n    namespaces: [{TIER}]\n    clusterScoped: true\n    prune: true\n"
    );
    for l in extra {
        text += &format!("    {l}\n");
    }
    text += "state:\n  namespace: gitopsd-state\n";
    Config::parse(&text, Path::new("gitopsd.yaml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// One tier's reconciler over a fake cluster and a repo of real files.
pub struct Harness {
    tier: TierConfig,
    pub cluster: FakeCluster,
    pub repo: Arc<FakeRepo>,
    pub status: StatusHandle,
    pub activities: Arc<Recorder>,
    pub reconciler: TierReconciler,
    pub cancel: CancellationToken,
}

impl Harness {
    /// The tier `web` with `extra` settings (see [`config`]), on an empty cluster.
    pub fn new(extra: &[&str]) -> Harness {
        Harness::with_tier(tier_of(&config("", extra)), FakeCluster::default())
    }

    pub fn with_tier(tier: TierConfig, cluster: FakeCluster) -> Harness {
        let repo = Arc::new(FakeRepo::new());
        let status = StatusHandle::new(&tier.name);
        let activities = Arc::new(Recorder::default());
        let observers = Observers::new(vec![activities.clone()]);
        let reconciler = reconciler(&tier, &cluster, repo.clone(), status.clone(), observers);
        Harness {
            tier,
            cluster,
            repo,
            status,
            activities,
            reconciler,
            cancel: CancellationToken::new(),
        }
    }

    /// The daemon restarts (or another replica takes over): a new reconciler, with nothing in
    /// memory, over the same cluster and repo.
    pub fn restart(&mut self) {
        self.status = StatusHandle::new(&self.tier.name);
        self.activities = Arc::new(Recorder::default());
        let observers = Observers::new(vec![self.activities.clone()]);
        self.reconciler = reconciler(
            &self.tier,
            &self.cluster,
            self.repo.clone(),
            self.status.clone(),
            observers,
        );
        self.cancel = CancellationToken::new();
    }

    /// A commit of the tier's files (tier.yaml, the Namespace) and `files` under `base/`
    /// (name, YAML).
    pub fn commit(&self, files: &[(&str, &str)]) -> Revision {
        let mut all = vec![
            (
                format!("tiers/{TIER}/tier.yaml"),
                format!("namespace: {TIER}\n"),
            ),
            (
                format!("tiers/{TIER}/namespace.yaml"),
                format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {TIER}\n"),
            ),
        ];
        all.extend(
            files
                .iter()
                .map(|(name, content)| (format!("base/{name}"), (*content).to_owned())),
        );
        self.repo.commit(&all)
    }

    /// The tier's ref moved to `revision`, and the tier reconciles.
    pub async fn deploy(&mut self, revision: &Revision) -> Outcomes {
        self.reconciler.offer_revision(revision).await;
        self.reconciler
            .reconcile(ReconcileReason::Revision, &self.cancel)
            .await
    }

    /// A reconcile with nothing new from git (the interval, a live change).
    pub async fn reconcile(&mut self) -> Outcomes {
        self.reconciler
            .reconcile(ReconcileReason::Interval, &self.cancel)
            .await
    }

    pub fn status<T>(&self, f: impl FnOnce(&TierStatus) -> T) -> T {
        self.status.read(f)
    }

    pub fn sync(&self) -> SyncState {
        self.status(|s| s.sync)
    }

    /// The tier's state as last saved.
    pub fn state(&self) -> TierState {
        self.cluster.state(TIER)
    }
}

fn reconciler(
    tier: &TierConfig,
    cluster: &FakeCluster,
    repo: Arc<FakeRepo>,
    status: StatusHandle,
    observers: Observers,
) -> TierReconciler {
    let client = no_api_server();
    let mut reconciler = TierReconciler::with_backends(
        tier.clone(),
        true,
        client.clone(),
        cluster.backends(),
        repo,
        status,
        observers,
    );
    reconciler.set_scope_cache(Arc::new(ScopeCache::seeded(client, KindScopes::builtin())));
    reconciler
}

/// A client whose every request fails at once: the harness answers everything the scenarios
/// need, so one that reached the API server would fail rather than pass by luck.
fn no_api_server() -> kube::Client {
    let refuse = tower::service_fn(|_: http::Request<kube::client::Body>| async {
        Err::<http::Response<kube::client::Body>, _>(std::io::Error::other(
            "the reconcile harness has no API server",
        ))
    });
    kube::Client::new(refuse, "default")
}

/// The tier `web` of `config`.
pub fn tier_of(config: &Config) -> TierConfig {
    config
        .tiers
        .iter()
        .find(|t| t.name == TIER)
        .cloned()
        .expect("the tier web")
}

/// The key of an object of the tier's namespace.
pub fn key(api_version: &str, kind: &str, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        namespace: Some(TIER.to_owned()),
        name: name.to_owned(),
    }
}

pub fn configmap(name: &str, greeting: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  greeting: {greeting}\n"
    )
}

pub fn deployment(name: &str, image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      securityContext: {{runAsNonRoot: true, runAsUser: 10001}}
      containers:
        - name: {name}
          image: {image}
"#
    )
}
