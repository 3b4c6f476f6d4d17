//! The executor's prune step: inventory objects no longer desired, deleted under the prune
//! rules.

use super::super::*;

impl TierReconciler {
    pub(in crate::reconcile) async fn prune(
        &mut self,
        desired: &HashSet<ObjectKey>,
        cancel: &CancellationToken,
        record: &mut SyncRecord,
        tally: &mut Tally,
    ) {
        let Some(state) = self.state.as_ref() else {
            return;
        };
        let inventory: Vec<ObjectKey> = state.inventory.keys().cloned().collect();
        let desired_ids: HashSet<ObjectId> = desired.iter().map(ObjectKey::id).collect();
        let candidates: Vec<&ObjectKey> = inventory
            .iter()
            .filter(|k| !desired_ids.contains(&k.id()))
            .collect();
        self.prune_refused = None;
        if candidates.is_empty() {
            return;
        }
        let mut live: HashMap<ObjectKey, Value> = HashMap::new();
        for key in &candidates {
            match self.backends.cluster.get(key).await {
                Ok(Some(v)) => {
                    live.insert((*key).clone(), v);
                }
                Ok(None) | Err(crate::live::LiveError::UnknownKind { .. }) => {}
                Err(e) => {
                    // Unknown state: do not prune on a guess.
                    record
                        .prune_notes
                        .push(format!("prune skipped: cannot read {}: {e}", key));
                    return;
                }
            }
        }
        let plan = plan_prune(
            &self.tier.name,
            &self.tier.prune,
            &inventory,
            desired,
            &|k| live.get(k).cloned(),
        );
        let Some(state) = self.state.as_mut() else {
            return;
        };
        for key in &plan.gone {
            state.inventory.remove(key);
        }
        if let Some(refused) = &plan.refused {
            warn!(reason = %refused, "prune refused");
            record.prune_notes.push(refused.clone());
            // The objects the guard kept: neither gone nor skipped for a reason of their own.
            let kept = candidates
                .len()
                .saturating_sub(plan.gone.len() + plan.skipped.len());
            let message = format!(
                "prune refused: {kept} objects that left git stay in the cluster: {refused} (or put them back in git)"
            );
            let report = (record.revision.clone(), refused.clone());
            if self.reported.prune_refused.as_ref() != Some(&report) {
                self.observers.emit(Activity::PruneRefused {
                    tier: self.tier.name.clone(),
                    revision: record.revision.clone(),
                    objects: kept,
                    reason: refused.clone(),
                });
                self.reported.prune_refused = Some(report);
            }
            self.prune_refused = Some(message);
            return;
        }
        for (key, why) in &plan.skipped {
            record.prune_notes.push(format!("{key} kept: {why}"));
            // Another tier or a person took it over: no longer this tier's to prune.
            let taken = live
                .get(key)
                .and_then(|l| {
                    l.pointer(&format!(
                        "/metadata/labels/{}",
                        crate::render::TIER_LABEL.replace('/', "~1")
                    ))
                })
                .and_then(Value::as_str)
                != Some(self.tier.name.as_str());
            if taken {
                state.inventory.remove(key);
            }
        }
        if plan.delete.is_empty() {
            return;
        }
        let targets: Vec<PruneTarget> = plan.delete.clone();
        let results = self.backends.applier.delete(targets, cancel).await;
        for r in &results {
            self.report_object(&record.revision, r);
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        for r in &results {
            tally.add(r.outcome);
            if r.outcome == Outcome::Pruned {
                info!(object = %r.key, "pruned");
                state.inventory.remove(&r.key);
            } else if record.failures.len() < LISTED {
                record.failures.push(r.clone());
            }
        }
    }
}
