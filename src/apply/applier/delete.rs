//! Deletes: pruned objects, objects recreated for an immutable field, and fields removed
//! with a JSON patch.

use futures::{StreamExt, stream};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, Preconditions};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span};

use super::*;

impl Applier {
    /// Deletes the object (Background: its dependents go later, and no controller needs to
    /// act for it to be gone) and waits until it is gone or replaced by a new uid.
    pub(super) async fn delete_and_wait(
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
        // Polled, not `await_condition(.., conditions::is_deleted(uid))`: that watch fails at
        // its first error (a failed read here is logged and read again until the deadline) and
        // needs the `watch` verb on every kind recreated.
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

    pub(super) async fn delete_one(
        &self,
        target: &PruneTarget,
        cancel: &CancellationToken,
    ) -> ObjectResult {
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
