//! CRDs applied in a call: waiting for them to be Established before their custom resources.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kube::api::DynamicObject;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span, warn};

use super::*;

/// (group, kind) a CRD manifest defines.
pub(super) fn crd_defines(manifest: &Value) -> Option<(String, String)> {
    let group = manifest.pointer("/spec/group")?.as_str()?;
    let kind = manifest.pointer("/spec/names/kind")?.as_str()?;
    Some((group.to_owned(), kind.to_owned()))
}

/// Why a CRD applied in this call was not seen Established in time. Displayed as the
/// parenthesised detail that follows "not Established within ..." in a message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotEstablished {
    #[error(" (cannot read it: {0})")]
    Unreadable(String),
    /// Its last read showed no condition that is not True yet.
    #[error("")]
    NoConditions,
    /// What its last read showed: the conditions not True, that it is gone, or why the
    /// read failed.
    #[error(" ({0})")]
    Last(String),
    #[error(" (gitopsd is shutting down)")]
    ShuttingDown,
}

/// What the CRDs applied in this call tell the later phases.
#[derive(Default)]
pub(super) struct CrdState {
    /// (group, kind) of CRDs that became Established: discovery may lag behind for a moment.
    pub(super) established: HashSet<(String, String)>,
    /// (group, kind) of CRDs that did not, with the CRD's name and what its conditions said.
    pub(super) not_established: HashMap<(String, String), (String, NotEstablished)>,
    /// Names of CRDs whose apply answer already said Established (an update of a served
    /// CRD): no read is needed to know it.
    pub(super) established_on_apply: std::sync::Mutex<HashSet<String>>,
}

impl CrdState {
    pub(super) fn note_established_on_apply(&self, name: &str) {
        if let Ok(mut names) = self.established_on_apply.lock() {
            names.insert(name.to_owned());
        }
    }

    pub(super) fn was_established_on_apply(&self, name: &str) -> bool {
        self.established_on_apply
            .lock()
            .is_ok_and(|names| names.contains(name))
    }
}

/// Whether a CRD's `status.conditions` say Established, read in place: converting a CRD with
/// a large schema to JSON to look at two fields cost more than the request.
pub(super) fn says_established(crd: &DynamicObject) -> bool {
    crd.data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        })
}

impl Applier {
    /// Waits for every CRD applied in this call to be Established; records the kinds whose
    /// CRD was not, so that their custom resources fail with the reason. The CRD's result
    /// takes the Established object as its `live` (its status changed after the apply).
    pub(super) async fn await_crds(
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
    pub(super) async fn await_established(
        &self,
        key: &ObjectKey,
        cancel: &CancellationToken,
    ) -> Result<AppliedMeta, NotEstablished> {
        let api = self
            .live
            .api_for(key)
            .await
            .map_err(|e| NotEstablished::Unreadable(e.to_string()))?;
        let deadline = Instant::now() + self.crd_timeout;
        // Polled, not `kube::runtime::wait::await_condition`: that watch fails at its first
        // error (this wait reads through a restarting or throttling API server until the
        // deadline), needs the `watch` verb, and returns nothing to name the conditions with.
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
                    NotEstablished::NoConditions
                } else {
                    NotEstablished::Last(last)
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => return Err(NotEstablished::ShuttingDown),
                _ = tokio::time::sleep(poll) => {}
            }
            poll = (poll * 2).min(Duration::from_secs(1));
        }
    }
}
