//! The executor's record step: apply results counted and reported, digests moved into the
//! inventory, and the tier's state saved.

use super::super::*;

impl TierReconciler {
    /// Counts results, keeps failures for status, and moves applied digests into the inventory.
    pub(in crate::reconcile) fn note_results(
        &mut self,
        objects: &[&DesiredObject],
        results: &[ObjectResult],
        record: &mut SyncRecord,
        tally: &mut Tally,
    ) {
        for (o, r) in objects.iter().zip(results) {
            tally.add(r.outcome);
            self.report_object(&record.revision, r);
            if r.outcome == Outcome::Failed {
                warn!(object = %o.key, error = r.message.as_deref().unwrap_or("?"), "apply failed");
                if record.failures.len() < LISTED {
                    record.failures.push(r.clone());
                }
            } else {
                if let Some(generation) = r.applied.as_ref().and_then(|a| a.generation) {
                    self.live
                        .applied_generations
                        .insert(r.key.clone(), generation);
                }
                if is_ttl_job(o)
                    && let Some(uid) = r.applied.as_ref().and_then(|a| a.uid.clone())
                {
                    self.jobs.uids.insert(r.key.clone(), uid);
                }
                if let Some(state) = self.state.as_mut() {
                    state
                        .inventory
                        .insert(r.key.clone(), short_digest(&o.digest).to_owned());
                }
            }
        }
    }

    /// Reports an object's outcome, unless nothing changed.
    pub(in crate::reconcile) fn report_object(&self, revision: &Revision, r: &ObjectResult) {
        if r.outcome == Outcome::Unchanged {
            return;
        }
        self.observers.emit(Activity::ObjectApplied {
            tier: self.tier.name.clone(),
            revision: revision.clone(),
            object: r.key.clone(),
            outcome: r.outcome,
            message: r.message.clone(),
        });
    }

    /// Reports the drift items the previous reconcile did not see, and remembers this one's.
    pub(in crate::reconcile) fn report_new_drift(
        &mut self,
        revision: &Revision,
        report: &crate::drift::DriftReport,
    ) {
        let mut seen = HashSet::new();
        let mut new = Vec::new();
        for item in &report.items {
            let key = (item.object_key(), item.field_path.clone());
            if !self.reported.drift.contains(&key) {
                new.push(item.clone());
            }
            seen.insert(key);
        }
        self.reported.drift = seen;
        if !new.is_empty() {
            self.observers.emit(Activity::DriftFound {
                tier: self.tier.name.clone(),
                revision: revision.clone(),
                items: new,
            });
        }
    }

    pub(in crate::reconcile) async fn save_state(&mut self) -> Result<(), ReconcileError> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        if self.saved.as_ref() == Some(state) {
            return Ok(());
        }
        if self.write_guard.as_ref().is_some_and(|t| t.is_cancelled()) {
            return Err(ReconcileError::NotLeading);
        }
        self.backends.store.save(&self.tier.name, state).await?;
        self.saved = Some(state.clone());
        Ok(())
    }
}
