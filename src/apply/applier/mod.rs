//! The [`Applier`]: server-side apply of a tier's objects in phases, and deletion of the
//! objects prune chose, one result per object.

use std::time::Duration;

use futures::{StreamExt, stream};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::discovery::Scope;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span, info, warn};

mod crds;
mod delete;
mod error;

pub use crds::NotEstablished;
pub use error::ApplyError;

use super::remove::removal_patch;
use super::retry::{Backoff, is_transient, retry};
use super::status;
use super::{AppliedMeta, ApplyItem, Conflict, ObjectResult, Outcome, PruneTarget};
use crate::config::ApplyConfig;
use crate::diff::FIELD_MANAGER;
use crate::live::{ApiLive, LiveError, ObjectKey};
use crds::{CrdState, says_established};
use error::describe_error;

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
    use super::crds::crd_defines;
    use super::error::webhook_hint;
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
