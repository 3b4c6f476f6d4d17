//! The [`Applier`]: server-side apply of a tier's objects in phases, and deletion of the
//! objects prune chose, one result per object.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::discovery::Scope;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span, info, warn};

use super::remove::removal_patch;
use super::retry::{Backoff, is_transient, retry};
use super::status;
use super::{AppliedMeta, ApplyItem, Conflict, ObjectResult, Outcome, PruneTarget};
use crate::config::ApplyConfig;
use crate::diff::FIELD_MANAGER;
use crate::live::{ApiLive, LiveError, ObjectKey};

/// The message of an object not applied because the daemon is stopping.
pub const SHUTTING_DOWN: &str = "not applied: gitopsd is shutting down";
/// The message of an object not deleted because the daemon is stopping.
pub const SHUTTING_DOWN_DELETE: &str = "not deleted: gitopsd is shutting down";
/// The message of an object not sent because the API server kept refusing this sync's
/// writes with 429: sending the rest would only add to the load it is shedding.
pub const THROTTLED: &str = "not applied: the API server is throttling this tier's writes (HTTP 429 Too Many Requests, API priority and fairness); gitopsd stopped this sync's remaining applies and tries again at the next reconcile";

const CRD_KIND: &str = "CustomResourceDefinition";
const CRD_GROUP: &str = "apiextensions.k8s.io";
/// Polling interval of the waits (a CRD to be Established, an object to be gone).
const POLL: Duration = Duration::from_millis(200);
/// Tries at taking drifted fields back from an object that keeps changing meanwhile.
const TAKE_BACK_ATTEMPTS: usize = 5;

/// Why one object could not be applied or deleted. Never returned for a batch: each becomes
/// the [`ObjectResult`] of its object.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{object}: the manifest has no {missing}; it cannot be applied")]
    BadManifest {
        object: String,
        missing: &'static str,
    },
    #[error(
        "{object}: {api_version} {kind} is not served by the API server; apply its CustomResourceDefinition first (in this tier or one synced before it)"
    )]
    NotServed {
        object: String,
        api_version: String,
        kind: String,
    },
    #[error(
        "{object}: not {verb}: {api_version} {kind} is {scope} in the API server, but the object {has}; the namespace is never dropped or guessed (fix metadata.namespace in the manifest)"
    )]
    ScopeMismatch {
        object: String,
        verb: &'static str,
        api_version: String,
        kind: String,
        scope: &'static str,
        has: String,
    },
    #[error("{object}: {source}")]
    Live {
        object: String,
        #[source]
        source: LiveError,
    },
    #[error(
        "{object}: not applied: its CustomResourceDefinition {crd} was not Established within {timeout:?}{detail}; check the CRD's status conditions"
    )]
    CrdNotEstablished {
        object: String,
        crd: String,
        timeout: Duration,
        detail: String,
    },
    #[error(
        "{object}: conflict: {owners}; set apply.forceConflicts: true for tier {tier}, or remove the field from the other manager"
    )]
    Conflict {
        object: String,
        tier: String,
        owners: String,
        conflicts: Vec<Conflict>,
    },
    #[error(
        "{object}: {fields} {verb} immutable; add {kind} to apply.recreateOnImmutable for tier {tier} to allow delete-and-recreate"
    )]
    Immutable {
        object: String,
        kind: String,
        tier: String,
        fields: String,
        verb: &'static str,
    },
    #[error(
        "{object}: deleted to recreate it ({fields} immutable) but still present after {timeout:?}; a finalizer may hold it, and it will be applied again on the next sync"
    )]
    NotGone {
        object: String,
        fields: String,
        timeout: Duration,
    },
    #[error(
        "{object}: not deleted: the object was replaced since it was read (its uid changed), so it is left alone"
    )]
    Replaced { object: String },
    /// A 403: RBAC (of the tier's ServiceAccount, with `serviceAccount` set) or an admission
    /// plugin refused the write.
    #[error("{object}: {what} refused by the API server (403 Forbidden): {why}; {fix}")]
    Forbidden {
        object: String,
        what: &'static str,
        /// Who may not do what, or the server's message where it is not RBAC's.
        why: String,
        fix: String,
        refusal: Option<super::Refusal>,
    },
    #[error("{object}: {what} failed: {detail}")]
    Api {
        object: String,
        what: &'static str,
        detail: String,
    },
}

impl ApplyError {
    fn api(object: &str, what: &'static str, e: &kube::Error) -> ApplyError {
        if let kube::Error::Api(s) = e
            && s.code == 403
        {
            return ApplyError::forbidden(object, what, &s.message);
        }
        ApplyError::Api {
            object: object.to_owned(),
            what,
            detail: describe_error(e),
        }
    }

    fn forbidden(object: &str, what: &'static str, message: &str) -> ApplyError {
        let refusal = super::forbidden::parse(message);
        let (why, fix) = match &refusal {
            Some(r) => (r.to_string(), r.fix()),
            None if message
                .contains("is attempting to grant RBAC permissions not currently held") =>
            {
                // RBAC's escalation check: a Role or binding that grants more than the writer
                // holds. The rules follow the colon, one per line.
                let rules = message
                    .split_once("not currently held:")
                    .map_or("", |(_, r)| r)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                (
                    format!(
                        "RBAC's escalation check: the writer may not grant permissions it does not hold itself ({rules})"
                    ),
                    "a tier may grant only what its serviceAccount holds in that namespace: remove the grant from the config repo, or, if it is meant, give the tier's ServiceAccount those permissions first".to_owned(),
                )
            }
            None => {
                // Not RBAC's wording: an admission plugin, or (server-side apply creating an
                // object) the create check, whose message carries no verb.
                let needs = if what.starts_with("delete") {
                    "`delete`"
                } else {
                    "`patch`, and `create` while the object does not exist"
                };
                let why = if message.trim_end().ends_with("is forbidden:") {
                    format!("{} (no reason given: likely RBAC)", message.trim_end())
                } else {
                    message.trim_end().to_owned()
                };
                (
                    why,
                    format!(
                        "if RBAC refused it, the identity the tier writes as (its serviceAccount) needs {needs} on this object's resource"
                    ),
                )
            }
        };
        ApplyError::Forbidden {
            object: object.to_owned(),
            what,
            why,
            fix,
            refusal,
        }
    }

    fn into_result(self, key: ObjectKey) -> ObjectResult {
        self.into_result_of(key, None)
    }

    /// The failed result; for a Secret, with any of its values the message echoes masked
    /// (`manifest`: the values to look for, when known).
    fn into_result_of(self, key: ObjectKey, manifest: Option<&Value>) -> ObjectResult {
        let conflicts = match &self {
            ApplyError::Conflict { conflicts, .. } => conflicts.clone(),
            _ => Vec::new(),
        };
        let message = if key.kind == "Secret" {
            super::status::mask_secret_message(&self.to_string(), manifest)
        } else {
            self.to_string()
        };
        ObjectResult {
            key,
            outcome: Outcome::Failed,
            message: Some(message),
            conflicts,
            applied: None,
        }
    }
}

/// A kube error in a sentence: the API server's message and code, not the Debug dump.
fn describe_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => {
            let hint = match s.code {
                429 => Some("the API server is throttling these writes (API priority and fairness): gitopsd stopped this sync's remaining applies and tries again at the next reconcile; if it lasts, check the FlowSchema and PriorityLevelConfiguration that match the writer (gitopsd, or the tier's serviceAccount)".to_owned()),
                _ => webhook_hint(&s.message),
            }
            .map(|h| format!("; {h}"))
            .unwrap_or_default();
            format!("{} (HTTP {} {}){hint}", s.message, s.code, s.reason)
        }
        other => other.to_string(),
    }
}

/// What to do when an admission webhook stood in the way, from the API server's wording:
/// it either could not reach the webhook (its service is down or hung; a `Fail` policy then
/// refuses every write it matches) or the webhook denied the object.
fn webhook_hint(message: &str) -> Option<String> {
    let quoted = |after: &str| {
        let rest = message.split_once(after)?.1;
        let name = rest.strip_prefix('"')?.split('"').next()?;
        Some(crate::escape::escape_line(name).into_owned())
    };
    if let Some(name) = quoted("failed calling webhook ") {
        return Some(format!(
            "the admission webhook \"{name}\" did not answer: check that the service behind it is running (kubectl get validatingwebhookconfigurations,mutatingwebhookconfigurations -o wide); gitopsd applies the object on a later reconcile and prunes nothing until the whole revision is in"
        ));
    }
    quoted("admission webhook ")
        .filter(|_| message.contains("denied the request"))
        .map(|name| {
            format!(
                "the admission webhook \"{name}\" refused the object: change it in the config repo to satisfy the webhook's policy, or change the policy"
            )
        })
}

/// `Deployment shop-exp/api`, `Namespace shop-exp`: the key's `Display`, kept for callers
/// that name it.
pub fn display_name(key: &ObjectKey) -> String {
    key.to_string()
}

/// The API group of an apiVersion (`""` for the core group).
fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

fn is_crd(key: &ObjectKey) -> bool {
    key.kind == CRD_KIND && group_of(&key.api_version) == CRD_GROUP
}

fn is_namespace(key: &ObjectKey) -> bool {
    key.kind == "Namespace" && key.api_version == "v1"
}

/// (group, kind) a CRD manifest defines.
fn crd_defines(manifest: &Value) -> Option<(String, String)> {
    let group = manifest.pointer("/spec/group")?.as_str()?;
    let kind = manifest.pointer("/spec/names/kind")?.as_str()?;
    Some((group.to_owned(), kind.to_owned()))
}

/// What the CRDs applied in this call tell the later phases.
#[derive(Default)]
struct CrdState {
    /// (group, kind) of CRDs that became Established: discovery may lag behind for a moment.
    established: HashSet<(String, String)>,
    /// (group, kind) of CRDs that did not, with the CRD's name and what its conditions said.
    not_established: HashMap<(String, String), (String, String)>,
    /// Names of CRDs whose apply answer already said Established (an update of a served
    /// CRD): no read is needed to know it.
    established_on_apply: std::sync::Mutex<HashSet<String>>,
}

impl CrdState {
    fn note_established_on_apply(&self, name: &str) {
        if let Ok(mut names) = self.established_on_apply.lock() {
            names.insert(name.to_owned());
        }
    }

    fn was_established_on_apply(&self, name: &str) -> bool {
        self.established_on_apply
            .lock()
            .is_ok_and(|names| names.contains(name))
    }
}

/// Whether a CRD's `status.conditions` say Established, read in place: converting a CRD with
/// a large schema to JSON to look at two fields cost more than the request.
fn says_established(crd: &DynamicObject) -> bool {
    crd.data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        })
}

/// Applies a tier's objects with server-side apply, and deletes the ones prune chose.
pub struct Applier {
    live: ApiLive,
    tier: String,
    config: ApplyConfig,
    backoff: Backoff,
    crd_timeout: Duration,
    gone_timeout: Duration,
}

impl Applier {
    pub fn new(live: ApiLive, tier: &str, config: &ApplyConfig) -> Applier {
        Applier {
            live,
            tier: tier.to_owned(),
            config: config.clone(),
            backoff: Backoff::default(),
            crd_timeout: Duration::from_secs(60),
            gone_timeout: Duration::from_secs(60),
        }
    }

    /// Applies `items` in phases (Namespaces and CRDs; other cluster-scoped objects; namespaced
    /// objects), waiting for this call's CRDs to be Established before the later phases. One
    /// result per item, in the input order.
    pub async fn apply(
        &self,
        items: Vec<ApplyItem<'_>>,
        cancel: &CancellationToken,
    ) -> Vec<ObjectResult> {
        let keys: Vec<ObjectKey> = items.iter().map(|i| ObjectKey::of(i.manifest)).collect();
        let mut phases: [Vec<usize>; 3] = Default::default();
        for (i, (item, key)) in items.iter().zip(&keys).enumerate() {
            let phase = if is_namespace(key) || is_crd(key) {
                0
            } else if item.manifest.pointer("/metadata/namespace").is_none() {
                1
            } else {
                2
            };
            phases[phase].push(i);
        }
        debug!(
            tier = %self.tier,
            first = phases[0].len(),
            cluster = phases[1].len(),
            namespaced = phases[2].len(),
            "applying"
        );

        let mut results: Vec<Option<ObjectResult>> = vec![None; items.len()];
        let mut crds = CrdState::default();
        // Milliseconds of each phase, and of the wait for CRDs to be Established.
        let mut took = [0u64; 3];
        let mut crd_wait = 0u64;
        // Cancelled when an apply is still refused with 429 after its retries: the server is
        // shedding load, so the rest of this sync is not sent (it is retried as a whole at
        // the next reconcile) instead of every object retrying its way through the storm.
        let throttled = cancel.child_token();
        for (n, phase) in phases.iter().enumerate() {
            let phase_started = Instant::now();
            let done: Vec<(usize, ObjectResult)> = stream::iter(phase.iter().copied())
                .map(|i| {
                    let crds = &crds;
                    let key = keys[i].clone();
                    let item = &items[i];
                    let throttled = &throttled;
                    async move {
                        let r = self.apply_one(key, item, crds, throttled).await;
                        let r = match r.message.as_deref() {
                            Some(SHUTTING_DOWN) if !cancel.is_cancelled() => {
                                shutting_down(r.key, THROTTLED)
                            }
                            _ => r,
                        };
                        (i, r)
                    }
                })
                .buffer_unordered(self.config.concurrency.max(1))
                .collect()
                .await;
            for (i, r) in done {
                results[i] = Some(r);
            }
            took[n] = phase_started.elapsed().as_millis() as u64;
            if n == 0 {
                let wait_started = Instant::now();
                self.await_crds(&items, &keys, &mut results, &mut crds, cancel)
                    .await;
                crd_wait = wait_started.elapsed().as_millis() as u64;
            }
        }
        if !items.is_empty() {
            info!(
                tier = %self.tier,
                objects = items.len(),
                namespaces_and_crds_ms = took[0],
                crds_established_ms = crd_wait,
                cluster_scoped_ms = took[1],
                namespaced_ms = took[2],
                "apply phases"
            );
        }
        results
            .into_iter()
            .zip(keys)
            .map(|(r, key)| {
                // Every index is in exactly one phase; this is only a safety net.
                r.unwrap_or_else(|| shutting_down(key, SHUTTING_DOWN))
            })
            .collect()
    }

    async fn apply_one(
        &self,
        key: ObjectKey,
        item: &ApplyItem<'_>,
        crds: &CrdState,
        cancel: &CancellationToken,
    ) -> ObjectResult {
        let object = display_name(&key);
        let span = debug_span!("apply_object", object = %object);
        async {
            if cancel.is_cancelled() {
                debug!("not started: cancelled");
                return shutting_down(key, SHUTTING_DOWN);
            }
            match self.try_apply(&key, &object, item, crds, cancel).await {
                Ok(r) => {
                    debug!(outcome = r.outcome.as_str(), "applied");
                    r
                }
                Err(e) => {
                    let r = e.into_result_of(key, Some(item.manifest));
                    debug!(
                        error = r.message.as_deref().unwrap_or_default(),
                        "apply failed"
                    );
                    r
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn try_apply(
        &self,
        key: &ObjectKey,
        object: &str,
        item: &ApplyItem<'_>,
        crds: &CrdState,
        cancel: &CancellationToken,
    ) -> Result<ObjectResult, ApplyError> {
        for (value, missing) in [
            (&key.api_version, "apiVersion"),
            (&key.kind, "kind"),
            (&key.name, "metadata.name"),
        ] {
            if value.is_empty() {
                return Err(ApplyError::BadManifest {
                    object: object.to_owned(),
                    missing,
                });
            }
        }
        let group_kind = (group_of(&key.api_version).to_owned(), key.kind.clone());
        if let Some((crd, detail)) = crds.not_established.get(&group_kind) {
            return Err(ApplyError::CrdNotEstablished {
                object: object.to_owned(),
                crd: crd.clone(),
                timeout: self.crd_timeout,
                detail: detail.clone(),
            });
        }
        let fresh_kind = crds.established.contains(&group_kind);
        let api = self.api_for(key, object, fresh_kind, cancel).await?;
        self.check_scope(key, object, "applied").await?;

        let first = self.patch(&api, key, item.manifest, false, cancel).await;
        let e = match first {
            Ok(applied) => {
                if is_crd(key) && says_established(&applied) {
                    crds.note_established_on_apply(&key.name);
                }
                return Ok(self.applied(key, item, applied, None));
            }
            Err(e) => e,
        };
        let kube::Error::Api(s) = &e else {
            return Err(ApplyError::api(object, "apply", &e));
        };
        if s.code == 409 {
            let conflicts = status::conflicts(s);
            if conflicts.is_empty() {
                return Err(ApplyError::api(object, "apply", &e));
            }
            // Drift the policy corrects: those fields are taken back, and only those.
            if !item.take_fields.is_empty()
                && conflicts
                    .iter()
                    .all(|c| covered(&c.field, &item.take_fields))
            {
                return self
                    .take_back(&api, key, object, item, conflicts, cancel)
                    .await;
            }
            return Err(ApplyError::Conflict {
                object: object.to_owned(),
                tier: self.tier.clone(),
                owners: describe_conflicts(&conflicts),
                conflicts,
            });
        }
        if !status::is_immutable(s) {
            return Err(ApplyError::api(object, "apply", &e));
        }
        let fields = status::immutable_fields(s);
        let (fields, verb) = match fields.len() {
            0 => ("a field".to_owned(), "is"),
            1 => (fields.join(", "), "is"),
            _ => (fields.join(", "), "are"),
        };
        if !self.config.recreate_on_immutable.contains(&key.kind) {
            return Err(ApplyError::Immutable {
                object: object.to_owned(),
                kind: key.kind.clone(),
                tier: self.tier.clone(),
                fields,
                verb,
            });
        }
        debug!(%fields, "immutable field changed: deleting to recreate");
        self.delete_and_wait(&api, key, object, &fields, cancel)
            .await?;
        let applied = self
            .patch(&api, key, item.manifest, false, cancel)
            .await
            .map_err(|e| ApplyError::api(object, "apply after delete (recreate)", &e))?;
        let mut r = self.applied(
            key,
            item,
            applied,
            Some(format!("recreated: {fields} {verb} immutable")),
        );
        r.outcome = Outcome::Configured;
        Ok(r)
    }

    /// The API handle for `key`. Discovery failures that may pass are retried; so is "not
    /// served" for a kind whose CRD was Established in this call, as discovery can lag.
    async fn api_for(
        &self,
        key: &ObjectKey,
        object: &str,
        fresh_kind: bool,
        cancel: &CancellationToken,
    ) -> Result<Api<DynamicObject>, ApplyError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = retry(&self.backoff, cancel, transient_live, || {
                self.live.api_for(key)
            })
            .await;
            match found {
                Ok(api) => return Ok(api),
                Err(LiveError::UnknownKind { .. })
                    if fresh_kind && Instant::now() < deadline && !cancel.is_cancelled() =>
                {
                    debug!("kind not yet in discovery after its CRD was Established; retrying");
                    tokio::time::sleep(POLL).await;
                }
                Err(LiveError::UnknownKind { api_version, kind }) => {
                    return Err(ApplyError::NotServed {
                        object: object.to_owned(),
                        api_version,
                        kind,
                    });
                }
                Err(source) => {
                    return Err(ApplyError::Live {
                        object: object.to_owned(),
                        source,
                    });
                }
            }
        }
    }

    /// Defence in depth behind validation: an object whose namespace disagrees with the
    /// scope discovery gives its kind is refused. (kube's handle for a cluster-scoped kind
    /// ignores the namespace, so a stamped ClusterRoleBinding would be created cluster-wide;
    /// a namespaced kind without one would land in the client's default namespace.)
    async fn check_scope(
        &self,
        key: &ObjectKey,
        object: &str,
        verb: &'static str,
    ) -> Result<(), ApplyError> {
        // Discovery answered for this kind in `api_for`: this is the cached answer.
        let (_, scope) = self
            .live
            .resource(&key.api_version, &key.kind)
            .await
            .map_err(|source| ApplyError::Live {
                object: object.to_owned(),
                source,
            })?;
        let (scope, has) = match (scope, key.namespace.as_deref()) {
            (Scope::Cluster, Some(ns)) => ("cluster-scoped", format!("names namespace {ns:?}")),
            (Scope::Namespaced, None) => ("namespaced", "names no namespace".to_owned()),
            _ => return Ok(()),
        };
        warn!(tier = %self.tier, object, scope, "refused: the namespace disagrees with the kind's scope");
        Err(ApplyError::ScopeMismatch {
            object: object.to_owned(),
            verb,
            api_version: key.api_version.clone(),
            kind: key.kind.clone(),
            scope,
            has,
        })
    }

    async fn patch(
        &self,
        api: &Api<DynamicObject>,
        key: &ObjectKey,
        manifest: &Value,
        force: bool,
        cancel: &CancellationToken,
    ) -> Result<DynamicObject, kube::Error> {
        let mut params = PatchParams::apply(FIELD_MANAGER);
        if force || self.config.force_conflicts {
            params = params.force();
        }
        let patch = Patch::Apply(manifest);
        let result = retry(&self.backoff, cancel, is_transient, || {
            api.patch(&key.name, &params, &patch)
        })
        .await;
        if let Err(kube::Error::Api(s)) = &result
            && s.code == 429
        {
            // `cancel` is the call's throttle token (see `apply`): the daemon's own token
            // is its parent and stays as it is.
            cancel.cancel();
        }
        result
    }

    /// [`Applier::patch`] only if the object is still at `version`: a resourceVersion in a
    /// server-side apply is a precondition (409 "the object has been modified" otherwise).
    async fn patch_at(
        &self,
        api: &Api<DynamicObject>,
        key: &ObjectKey,
        manifest: &Value,
        version: &str,
        force: bool,
        cancel: &CancellationToken,
    ) -> Result<DynamicObject, kube::Error> {
        let mut at = manifest.clone();
        if let Some(meta) = at.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(version.to_owned()));
        }
        self.patch(api, key, &at, force, cancel).await
    }

    /// Takes back drifted fields another manager owns (`conflicts`, each [`covered`] by
    /// `item.take_fields`): a forced apply, made only at a version whose conflicts were
    /// checked, so that it forces nothing the check did not see. When the object moved since,
    /// it is read again: if only its status changed (a controller's status write), the
    /// conflicts still hold at the new version; otherwise they are asked for again there (an
    /// apply without force, which succeeds if none are left) and checked again.
    ///
    /// For an atomic map or struct (a NetworkPolicy's `podSelector`, a Service's `selector`, a
    /// `secretKeyRef`) the server names the whole value: taking it gives it the manifest's
    /// value, which is what the drifted fields inside it are corrected to.
    async fn take_back(
        &self,
        api: &Api<DynamicObject>,
        key: &ObjectKey,
        object: &str,
        item: &ApplyItem<'_>,
        mut conflicts: Vec<Conflict>,
        cancel: &CancellationToken,
    ) -> Result<ObjectResult, ApplyError> {
        const WHAT: &str = "apply (taking drifted fields back)";
        // The version whose conflicts were checked, and the object at it when it was read.
        // First the version the drift was found at (the live cache's).
        let mut checked: Option<(String, Option<Value>)> =
            item.previous_resource_version.clone().map(|v| (v, None));
        for _ in 0..TAKE_BACK_ATTEMPTS {
            if let Some((version, _)) = &checked {
                match self
                    .patch_at(api, key, item.manifest, version, true, cancel)
                    .await
                {
                    Ok(applied) => {
                        let note = format!("took back from {}", describe_conflicts(&conflicts));
                        debug!(%note, "drifted fields taken back");
                        return Ok(self.applied(key, item, applied, Some(note)));
                    }
                    Err(kube::Error::Api(s)) if is_modified(&s) => {
                        debug!(version, "changed since its conflicts were checked");
                    }
                    Err(e) => return Err(ApplyError::api(object, WHAT, &e)),
                }
            }
            let now = retry(&self.backoff, cancel, is_transient, || {
                api.get_opt(&key.name)
            })
            .await
            .map_err(|e| ApplyError::api(object, WHAT, &e))?;
            let Some((now, version)) = now.and_then(|o| {
                let version = o.metadata.resource_version.clone()?;
                Some((apart_from_status(o), version))
            }) else {
                return Err(ApplyError::Api {
                    object: object.to_owned(),
                    what: WHAT,
                    detail: "the object was deleted meanwhile; it is applied again on the next reconcile".to_owned(),
                });
            };
            if let Some((_, Some(before))) = &checked
                && *before == now
            {
                checked = Some((version, Some(now)));
                continue;
            }
            match self
                .patch_at(api, key, item.manifest, &version, false, cancel)
                .await
            {
                // Nothing of it conflicts any more.
                Ok(applied) => return Ok(self.applied(key, item, applied, None)),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let found = status::conflicts(&s);
                    if found.is_empty() {
                        // Moved again before the check: read it again.
                        checked = None;
                        continue;
                    }
                    if !found.iter().all(|c| covered(&c.field, &item.take_fields)) {
                        return Err(ApplyError::Conflict {
                            object: object.to_owned(),
                            tier: self.tier.clone(),
                            owners: describe_conflicts(&found),
                            conflicts: found,
                        });
                    }
                    conflicts = found;
                    checked = Some((version, Some(now)));
                }
                Err(e) => return Err(ApplyError::api(object, WHAT, &e)),
            }
        }
        Err(ApplyError::Api {
            object: object.to_owned(),
            what: WHAT,
            detail: format!(
                "the object changed each time between checking its conflicts and taking the fields ({TAKE_BACK_ATTEMPTS} tries); tried again on the next reconcile"
            ),
        })
    }

    fn applied(
        &self,
        key: &ObjectKey,
        item: &ApplyItem<'_>,
        applied: DynamicObject,
        message: Option<String>,
    ) -> ObjectResult {
        let rv = applied.metadata.resource_version.clone();
        let outcome = match (&item.previous_resource_version, rv) {
            (None, _) => Outcome::Created,
            (Some(before), Some(after)) if *before == after => Outcome::Unchanged,
            _ => Outcome::Configured,
        };
        ObjectResult {
            key: key.clone(),
            outcome,
            message,
            conflicts: Vec::new(),
            applied: Some(AppliedMeta::of(&applied.metadata)),
        }
    }

    /// Deletes the object (Background: its dependents go later, and no controller needs to
    /// act for it to be gone) and waits until it is gone or replaced by a new uid.
    async fn delete_and_wait(
        &self,
        api: &Api<DynamicObject>,
        key: &ObjectKey,
        object: &str,
        fields: &str,
        cancel: &CancellationToken,
    ) -> Result<(), ApplyError> {
        let before = retry(&self.backoff, cancel, is_transient, || {
            api.get_opt(&key.name)
        })
        .await
        .map_err(|e| ApplyError::api(object, "read before recreate", &e))?;
        let Some(before) = before else {
            return Ok(());
        };
        let uid = before.metadata.uid.clone();
        let mut params = DeleteParams::background();
        if let Some(uid) = &uid {
            params = params.preconditions(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            });
        }
        match retry(&self.backoff, cancel, is_transient, || {
            api.delete(&key.name, &params)
        })
        .await
        {
            Ok(_) => {}
            // Gone already, or replaced by someone else: either way the old one is gone.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(ApplyError::api(object, "delete (to recreate)", &e)),
        }
        let deadline = Instant::now() + self.gone_timeout;
        loop {
            match api.get_opt(&key.name).await {
                Ok(None) => return Ok(()),
                Ok(Some(o)) if o.metadata.uid != uid => return Ok(()),
                Ok(Some(_)) => {}
                Err(e) => debug!(error = %e, "reading the object being deleted failed"),
            }
            if Instant::now() >= deadline {
                return Err(ApplyError::NotGone {
                    object: object.to_owned(),
                    fields: fields.to_owned(),
                    timeout: self.gone_timeout,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for every CRD applied in this call to be Established; records the kinds whose
    /// CRD was not, so that their custom resources fail with the reason. The CRD's result
    /// takes the Established object as its `live` (its status changed after the apply).
    async fn await_crds(
        &self,
        items: &[ApplyItem<'_>],
        keys: &[ObjectKey],
        results: &mut [Option<ObjectResult>],
        crds: &mut CrdState,
        cancel: &CancellationToken,
    ) {
        // Only the kinds that objects of this call are made of are waited for (kubectl waits
        // for none): a repo of 93 CRDs and no custom resource waited a minute for nothing.
        // Whether the others become Established is the health stage's to report.
        let used: HashSet<(String, String)> = keys
            .iter()
            .filter(|k| !is_crd(k) && !is_namespace(k))
            .map(|k| (group_of(&k.api_version).to_owned(), k.kind.clone()))
            .collect();
        let mut waiting: Vec<(usize, (String, String))> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let applied = results[i]
                .as_ref()
                .is_some_and(|r| r.outcome != Outcome::Failed);
            if !is_crd(key) || !applied {
                continue;
            }
            let Some(group_kind) = crd_defines(items[i].manifest) else {
                continue;
            };
            if !used.contains(&group_kind) {
                continue;
            }
            if crds.was_established_on_apply(&key.name) {
                crds.established.insert(group_kind);
                continue;
            }
            waiting.push((i, group_kind));
        }
        if waiting.is_empty() {
            return;
        }
        let waits = waiting.iter().map(|(i, _)| {
            let key = &keys[*i];
            let span = debug_span!("await_crd", object = %display_name(key));
            self.await_established(key, cancel).instrument(span)
        });
        let outcomes = futures::future::join_all(waits).await;
        for ((i, group_kind), outcome) in waiting.into_iter().zip(outcomes) {
            match outcome {
                Ok(crd) => {
                    if let Some(r) = results[i].as_mut() {
                        r.applied = Some(crd);
                    }
                    crds.established.insert(group_kind);
                }
                // Shutting down: the CRD was applied; the later phases start nothing anyway.
                Err(_) if cancel.is_cancelled() => {}
                Err(detail) => {
                    let key = &keys[i];
                    warn!(object = %display_name(key), %detail, "CRD not Established");
                    if let Some(r) = results[i].as_mut() {
                        r.outcome = Outcome::Failed;
                        r.applied = None;
                        r.message = Some(format!(
                            "{}: applied, but not Established within {:?}{detail}; its custom resources in this sync were not applied; check the CRD's status conditions",
                            display_name(key),
                            self.crd_timeout
                        ));
                    }
                    crds.not_established
                        .insert(group_kind, (key.name.clone(), detail));
                }
            }
        }
    }

    /// The CRD once its Established condition is True; else what its conditions said.
    async fn await_established(
        &self,
        key: &ObjectKey,
        cancel: &CancellationToken,
    ) -> Result<AppliedMeta, String> {
        let api = self
            .live
            .api_for(key)
            .await
            .map_err(|e| format!(" (cannot read it: {e})"))?;
        let deadline = Instant::now() + self.crd_timeout;
        // A new CRD is usually Established within a second; a busy API server (many large
        // schemas at once) takes longer, and each read returns the whole schema: the reads
        // thin out, from 100 ms up to 1 s apart.
        let mut poll = POLL / 2;
        loop {
            let last = match api.get_opt(&key.name).await {
                Ok(Some(crd)) => {
                    if says_established(&crd) {
                        debug!("Established");
                        return Ok(AppliedMeta::of(&crd.metadata));
                    }
                    let no_conditions = Vec::new();
                    let conditions = crd
                        .data
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .unwrap_or(&no_conditions);
                    conditions
                        .iter()
                        .filter(|c| c["status"] != "True")
                        .map(|c| {
                            format!(
                                "{}={}: {}",
                                c["type"].as_str().unwrap_or("?"),
                                c["status"].as_str().unwrap_or("?"),
                                c["message"].as_str().unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                }
                Ok(None) => "it does not exist".to_owned(),
                Err(e) => format!("reading it failed: {}", describe_error(&e)),
            };
            if Instant::now() >= deadline {
                return Err(if last.is_empty() {
                    String::new()
                } else {
                    format!(" ({last})")
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(" (gitopsd is shutting down)".to_owned()),
                _ = tokio::time::sleep(poll) => {}
            }
            poll = (poll * 2).min(Duration::from_secs(1));
        }
    }

    /// Deletes `targets` (Background propagation, guarded by the uid when known): namespaced
    /// objects first, then cluster-scoped ones, then CRDs and Namespaces, whose deletion takes
    /// the rest with them. One result per target, in the input order.
    pub async fn delete(
        &self,
        targets: Vec<PruneTarget>,
        cancel: &CancellationToken,
    ) -> Vec<ObjectResult> {
        let mut phases: [Vec<usize>; 3] = Default::default();
        for (i, t) in targets.iter().enumerate() {
            let phase = if is_crd(&t.key) || is_namespace(&t.key) {
                2
            } else if t.key.namespace.is_none() {
                1
            } else {
                0
            };
            phases[phase].push(i);
        }
        let mut results: Vec<Option<ObjectResult>> = vec![None; targets.len()];
        for phase in &phases {
            let done: Vec<(usize, ObjectResult)> = stream::iter(phase.iter().copied())
                .map(|i| {
                    let target = &targets[i];
                    async move { (i, self.delete_one(target, cancel).await) }
                })
                .buffer_unordered(self.config.concurrency.max(1))
                .collect()
                .await;
            for (i, r) in done {
                results[i] = Some(r);
            }
        }
        results
            .into_iter()
            .zip(targets)
            .map(|(r, t)| r.unwrap_or_else(|| shutting_down(t.key, SHUTTING_DOWN_DELETE)))
            .collect()
    }

    /// Removes `paths` (fields another manager added, which a server-side apply cannot take
    /// away) from the object, as `live` holds them: one JSON patch whose `test` operations
    /// make the server refuse it if the object moved since it was read ([`removal_patch`]).
    pub async fn remove_fields(
        &self,
        key: &ObjectKey,
        live: &Value,
        paths: &[crate::diff::FieldPath],
        cancel: &CancellationToken,
    ) -> ObjectResult {
        let object = display_name(key);
        let span = debug_span!("remove_fields", object = %object);
        async {
            if cancel.is_cancelled() {
                return shutting_down(key.clone(), SHUTTING_DOWN);
            }
            let shown: Vec<String> = paths.iter().map(ToString::to_string).collect();
            let failed = |detail: String| {
                ApplyError::Api {
                    object: object.clone(),
                    what: "removing foreign fields",
                    detail,
                }
                .into_result(key.clone())
            };
            let ops = match removal_patch(live, paths) {
                Ok(ops) => ops,
                Err(e) => return failed(e.to_string()),
            };
            let api = match self.api_for(key, &object, false, cancel).await {
                Ok(api) => api,
                Err(e) => return e.into_result(key.clone()),
            };
            let body = match serde_json::to_vec(&ops) {
                Ok(b) => b,
                Err(e) => return failed(e.to_string()),
            };
            let url = format!(
                "{}/{}?fieldManager={FIELD_MANAGER}",
                api.resource_url(),
                key.name
            );
            let client = api.into_client();
            let patched = retry(&self.backoff, cancel, is_transient, || {
                let request = http::Request::patch(url.as_str())
                    .header(http::header::CONTENT_TYPE, "application/json-patch+json")
                    .body(body.clone());
                let client = client.clone();
                async move {
                    let request = request.map_err(|e| {
                        kube::Error::BuildRequest(kube::core::request::Error::BuildRequest(e))
                    })?;
                    client.request::<DynamicObject>(request).await
                }
            })
            .await;
            match patched {
                Ok(applied) => {
                    debug!(fields = ?shown, "foreign fields removed");
                    ObjectResult {
                        key: key.clone(),
                        outcome: Outcome::Configured,
                        message: Some(format!("removed {} (set outside the manifest)", shown.join(", "))),
                        conflicts: Vec::new(),
                        applied: Some(AppliedMeta::of(&applied.metadata)),
                    }
                }
                Err(e) => {
                    debug!(error = %e, "removing foreign fields failed");
                    let detail = match &e {
                        // A failed `test`: the object changed since it was read.
                        kube::Error::Api(s) if s.code == 422 && s.message.contains("test") => format!(
                            "{}: the object changed since it was read; tried again on the next reconcile",
                            describe_error(&e)
                        ),
                        _ => describe_error(&e),
                    };
                    failed(format!("{} ({detail})", shown.join(", ")))
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn delete_one(&self, target: &PruneTarget, cancel: &CancellationToken) -> ObjectResult {
        let key = &target.key;
        let object = display_name(key);
        let span = debug_span!("delete_object", object = %object);
        async {
            if cancel.is_cancelled() {
                return shutting_down(key.clone(), SHUTTING_DOWN_DELETE);
            }
            let pruned = |message: Option<String>| ObjectResult {
                key: key.clone(),
                outcome: Outcome::Pruned,
                message,
                conflicts: Vec::new(),
                applied: None,
            };
            let api = match retry(&self.backoff, cancel, transient_live, || {
                self.live.api_for(key)
            })
            .await
            {
                Ok(api) => api,
                // Nothing of a kind the server no longer serves can exist.
                Err(LiveError::UnknownKind { .. }) => {
                    debug!("kind not served: already gone");
                    return pruned(Some(format!(
                        "already gone: {} {} is no longer served",
                        key.api_version, key.kind
                    )));
                }
                Err(source) => {
                    return ApplyError::Live { object, source }.into_result(key.clone());
                }
            };
            // Never delete a cluster-wide object by a key that named a namespace.
            if let Err(e) = self.check_scope(key, &object, "deleted").await {
                return e.into_result(key.clone());
            }
            let mut params = DeleteParams::background();
            if let Some(uid) = &target.uid {
                params = params.preconditions(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                });
            }
            let deleted = retry(&self.backoff, cancel, is_transient, || {
                api.delete(&key.name, &params)
            })
            .await;
            match deleted {
                Ok(_) => {
                    debug!("deleted");
                    pruned(None)
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    debug!("already gone");
                    pruned(Some("already gone".to_owned()))
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    debug!(message = %s.message, "uid precondition failed");
                    ApplyError::Replaced { object }.into_result(key.clone())
                }
                Err(e) => {
                    let r = ApplyError::api(&object, "delete", &e).into_result(key.clone());
                    debug!(
                        error = r.message.as_deref().unwrap_or_default(),
                        "delete failed"
                    );
                    r
                }
            }
        }
        .instrument(span)
        .await
    }
}

fn transient_live(e: &LiveError) -> bool {
    matches!(e, LiveError::Api { source, .. } if is_transient(source))
}

fn shutting_down(key: ObjectKey, message: &str) -> ObjectResult {
    ObjectResult {
        key,
        outcome: Outcome::Failed,
        message: Some(message.to_owned()),
        conflicts: Vec::new(),
        applied: None,
    }
}

/// `"kubectl-edit" owns .data.key, .data.b; "hpa" owns .spec.replicas`
fn describe_conflicts(conflicts: &[Conflict]) -> String {
    let mut by_manager: Vec<(&str, Vec<&str>)> = Vec::new();
    for c in conflicts {
        match by_manager.iter_mut().find(|(m, _)| *m == c.manager) {
            Some((_, fields)) => fields.push(&c.field),
            None => by_manager.push((&c.manager, vec![&c.field])),
        }
    }
    by_manager
        .iter()
        .map(|(m, fields)| format!("field manager \"{m}\" owns {}", fields.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(m: &str, f: &str) -> Conflict {
        Conflict {
            manager: m.into(),
            field: f.into(),
        }
    }

    #[test]
    fn a_webhook_that_did_not_answer_or_denied_is_named_with_the_fix() {
        let hung = r#"Internal error occurred: failed calling webhook "validate.nginx.ingress.kubernetes.io": failed to call webhook: Post "https://ingress-nginx-controller-admission.ingress-nginx.svc:443/networking/v1/ingresses?timeout=10s": context deadline exceeded"#;
        let hint = webhook_hint(hung).expect("a hint");
        assert!(hint.contains("\"validate.nginx.ingress.kubernetes.io\" did not answer"));
        assert!(hint.contains("prunes nothing"));
        let denied = r#"admission webhook "validation.gatekeeper.sh" denied the request: [must-have-owner] you must provide labels: {"owner"}"#;
        let hint = webhook_hint(denied).expect("a hint");
        assert!(hint.contains("\"validation.gatekeeper.sh\" refused the object"));
        assert_eq!(webhook_hint("the object has been modified"), None);
        // A name with control characters is shown escaped.
        let hint = webhook_hint("failed calling webhook \"a\u{1b}[2Jb\": x").expect("a hint");
        assert!(hint.contains("a\\x1b[2Jb"), "{hint}");
    }

    #[test]
    fn conflicts_grouped_by_manager() {
        assert_eq!(
            describe_conflicts(&[c("a", ".x"), c("b", ".y"), c("a", ".z")]),
            "field manager \"a\" owns .x, .z; field manager \"b\" owns .y"
        );
    }

    #[test]
    fn display_names() {
        let mut k = ObjectKey {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("shop-exp".into()),
            name: "api".into(),
        };
        assert_eq!(display_name(&k), "Deployment shop-exp/api");
        k.namespace = None;
        assert_eq!(display_name(&k), "Deployment api");
    }

    #[test]
    fn groups_and_crd_kinds() {
        assert_eq!(group_of("v1"), "");
        assert_eq!(group_of("apiextensions.k8s.io/v1"), CRD_GROUP);
        let crd = serde_json::json!({"spec": {"group": "g.io", "names": {"kind": "Widget"}}});
        assert_eq!(crd_defines(&crd), Some(("g.io".into(), "Widget".into())));
    }
}

/// Whether the API server's name of a conflicting field (`.spec.template.spec.containers[name="api"].image`)
/// is one of `fields` (in the diff stage's form, `spec.template.spec.containers[name=api].image`),
/// lies below one, or lies above one. Above: the server names an atomic map or struct whole
/// (`.spec.selector` for a drifted `spec.selector.app`), as a conflict is always a field of
/// gitopsd's own applied set; and an atomic value is one field, which the apply sets to the
/// manifest's value.
fn covered(conflict: &str, fields: &[String]) -> bool {
    let conflict: String = conflict.trim_start_matches('.').replace('"', "");
    let below = |path: &str, parent: &str| {
        path.strip_prefix(parent)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    };
    fields
        .iter()
        .any(|f| conflict == *f || below(&conflict, f) || below(f, &conflict))
}

/// The object as far as field conflicts go: without its status, resourceVersion and the
/// managedFields entries of status writes, which a controller changes all the time.
fn apart_from_status(object: DynamicObject) -> Value {
    let mut v = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(map) = v.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        if let Some(Value::Array(entries)) = meta.get_mut("managedFields") {
            entries.retain(|e| e.get("subresource").and_then(Value::as_str) != Some("status"));
        }
    }
    v
}

/// A 409 for a failed resourceVersion precondition, not a field conflict.
fn is_modified(s: &kube::core::Status) -> bool {
    s.code == 409 && status::conflicts(s).is_empty()
}

#[cfg(test)]
mod covered_tests {
    use super::covered;

    #[test]
    fn conflict_fields_match_the_diff_paths_they_name() {
        let fields = vec![
            "spec.template.spec.containers[name=api].image".to_owned(),
            "spec.template.spec.containers[name=api].ports[containerPort=8080,protocol=TCP]"
                .to_owned(),
        ];
        assert!(covered(
            ".spec.template.spec.containers[name=\"api\"].image",
            &fields
        ));
        assert!(covered(
            ".spec.template.spec.containers[name=\"api\"].ports[containerPort=8080,protocol=\"TCP\"].name",
            &fields
        ));
        assert!(!covered(".spec.replicas", &fields));
        assert!(!covered(
            ".spec.template.spec.containers[name=\"api\"].imagePullPolicy",
            &fields
        ));
    }

    #[test]
    fn an_atomic_parent_the_server_names_covers_the_drift_inside_it() {
        let fields = vec![
            "spec.podSelector.matchLabels.app".to_owned(),
            "spec.selector.app".to_owned(),
            "spec.template.spec.containers[name=api].env[name=PASSWORD].valueFrom.secretKeyRef.name"
                .to_owned(),
        ];
        assert!(covered(".spec.podSelector", &fields));
        assert!(covered(".spec.selector", &fields));
        assert!(covered(
            ".spec.template.spec.containers[name=\"api\"].env[name=\"PASSWORD\"].valueFrom.secretKeyRef",
            &fields
        ));
        // A sibling, or a name that merely starts the same, is not covered.
        assert!(!covered(".spec.selectorX", &fields));
        assert!(!covered(".spec.policyTypes", &fields));
        assert!(!covered(
            ".spec.template.spec.containers[name=\"api\"].env[name=\"OTHER\"].valueFrom.secretKeyRef",
            &fields
        ));
        assert!(!covered(".spec.sel", &fields));
    }
}
