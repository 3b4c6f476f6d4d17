//! The executor's reads of the live cache: ownership refusals, waiting for the watches to
//! sync, and the resourceVersions apply items carry.

use super::super::*;

impl TierReconciler {
    /// The ownership refusals of `set` (see [`crate::ownership`]), read from the live cache
    /// and the inventory: no request.
    pub(in crate::reconcile) fn refusals(
        &self,
        set: &DesiredSet,
    ) -> Result<Vec<crate::validate::Finding>, ReconcileError> {
        use crate::ownership::{Claim, Live, adopts, claim, finding};
        let cache = self
            .live
            .cache
            .as_ref()
            .ok_or(ReconcileError::CacheNotStarted)?;
        let state = self.state.as_ref().ok_or(ReconcileError::NoState)?;
        let mut out = Vec::new();
        for o in &set.objects {
            let key = &o.key;
            let label = |live: &kube::api::DynamicObject| {
                live.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(crate::render::TIER_LABEL))
                    .cloned()
            };
            let found = match cache.peek(key, label) {
                Ok(found) => found,
                // Not served (its CRD comes in this set): no object of it can exist yet.
                Err(crate::live::LiveError::UnknownKind { .. }) => None,
                Err(source) => {
                    return Err(ReconcileError::Ownership {
                        object: o.key.to_string(),
                        source,
                    });
                }
            };
            let live = match &found {
                None => Live::Absent,
                Some(l) => Live::Present {
                    tier_label: l.as_deref(),
                },
            };
            // The inventory compares identities: another version of the group is the same object.
            let in_inventory = state.inventory.contains_key(key);
            match claim(&self.tier.name, in_inventory, adopts(&self.tier, key), live) {
                Claim::Create | Claim::Own => {}
                Claim::Adopt => {
                    info!(object = %o.key, holder = found.flatten().as_deref().unwrap_or("no tier"), "adopting the object, as the tier's adopt: says")
                }
                Claim::Refuse(r) => {
                    let managers = cache
                        .peek(key, |live| {
                            let mut names: Vec<String> = Vec::new();
                            for m in live.metadata.managed_fields.iter().flatten() {
                                if let Some(m) = &m.manager
                                    && !names.contains(m)
                                {
                                    names.push(m.clone());
                                }
                            }
                            names
                        })
                        .ok()
                        .flatten()
                        .unwrap_or_default();
                    out.push(finding(o, &self.tier, &r, &managers));
                }
            }
        }
        Ok(out)
    }

    /// Waits (at most [`CACHE_RESYNC_WAIT`]) until every watch of the live cache is synced, the
    /// status saying why meanwhile; the error names the watch still listing.
    pub(in crate::reconcile) async fn live_synced(
        &self,
        cancel: &CancellationToken,
    ) -> Result<(), ReconcileError> {
        let cache = self
            .live
            .cache
            .as_ref()
            .ok_or(ReconcileError::CacheNotStarted)?;
        let Some(((api_version, kind), what)) = cache.not_synced() else {
            return Ok(());
        };
        let reason = format!(
            "the live cache is listing {api_version} {kind} ({what}) again after a watch error (API server restarted or unreachable?); drift detection and corrections wait until it has"
        );
        info!(tier = %self.tier.name, "{reason}");
        let shown = reason.clone();
        self.status.update(|s| s.last_error = Some(shown));
        tokio::select! {
            waited = cache.wait_synced(CACHE_RESYNC_WAIT) => waited.map_err(|source| ReconcileError::CacheNotSynced {
                reason,
                waited_secs: CACHE_RESYNC_WAIT.as_secs(),
                source,
            }),
            _ = cancel.cancelled() => Err(ReconcileError::CacheListing { reason }),
        }
    }

    /// Apply items for `(object, manifest to apply)` pairs, with each object's live
    /// resourceVersion from the cache (which tells created, configured and unchanged apart).
    pub(in crate::reconcile) async fn items<'a>(
        &self,
        pairs: impl Iterator<Item = (&DesiredObject, &'a Value)>,
    ) -> Vec<ApplyItem<'a>> {
        let mut items = Vec::new();
        for (o, manifest) in pairs {
            items.push(ApplyItem {
                manifest,
                previous_resource_version: self.resource_version(&o.key).await,
                take_fields: Vec::new(),
            });
        }
        items
    }

    pub(in crate::reconcile) async fn resource_version(&self, key: &ObjectKey) -> Option<String> {
        let cache = self.live.cache.as_ref()?;
        let live = cache.get(key).await.ok()??;
        live.pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}
