//! The executor: one sync of the active set carried out (deploy, drift, corrections, prune,
//! state), with the decisions taken by the pure [`super::plan`] functions, and the reconcile's
//! report (sync record, tally, status, `SyncFinished`).
//!
//! `sync` stays one long function: it is one sequence of I/O steps whose order is the safety
//! rules at the top of the reconcile (state read, keys recorded, apply, drift, corrections,
//! prune, state written); its decisions are already in `plan.rs`, its live-cache reads in
//! `execute/live.rs`, the prune step in `execute/prune.rs`, results and state in
//! `execute/record.rs`.

mod live;
mod prune;
mod record;

use super::*;

impl TierReconciler {
    pub(super) async fn reconcile_active(
        &mut self,
        active: Active,
        reason: ReconcileReason,
        cancel: &CancellationToken,
    ) -> Outcomes {
        let started_at = Utc::now();
        let started = Instant::now();
        let mut record = SyncRecord {
            revision: active.revision.clone(),
            reason: reason.to_string(),
            started_at,
            duration_ms: 0,
            outcomes: Tally::default(),
            failures: Vec::new(),
            drift: 0,
            alerts: 0,
            prune_notes: Vec::new(),
            rolled_back_from: None,
            error: None,
        };
        let mut tally = Tally::default();
        let mut report = StatusReport::default();
        let result = self
            .sync(&active, cancel, &mut record, &mut tally, &mut report)
            .await;
        record.outcomes = tally;
        record.duration_ms = started.elapsed().as_millis() as u64;
        let mut outcomes = Outcomes::default();
        match result {
            Ok(o) => outcomes = o,
            Err(e) => {
                let e = e.to_string();
                warn!(error = %e, "sync failed; the cluster keeps what was applied so far");
                record.error = Some(e);
            }
        }
        let sync_error = record.error.clone();
        let changed = tally.changed();
        let fully_applied = record.error.is_none()
            && !self.refused_now
            && tally.get(Outcome::Failed) == 0
            && !cancel.is_cancelled();
        if fully_applied && self.reported.applied.as_ref() != Some(&active.revision) {
            if let Some((_, at)) = self.arrived.as_ref().filter(|(r, _)| *r == active.revision) {
                self.observers.emit(Activity::RevisionApplied {
                    tier: self.tier.name.clone(),
                    revision: active.revision.clone(),
                    since_arrival: at.elapsed(),
                });
            }
            self.reported.applied = Some(active.revision.clone());
        }
        // Applied and healthy both observed: the revision's arrival time has served.
        if self.reported.applied.as_ref() == Some(&active.revision)
            && self
                .last_healthy
                .as_ref()
                .is_some_and(|h| h.revision == active.revision)
        {
            self.arrived.take_if(|(r, _)| *r == active.revision);
        }
        // Quiet reconciles (a watch event or the interval, nothing to do) are not history.
        let notable = changed
            || record.error.is_some()
            || record.rolled_back_from.is_some()
            || reason.always_notable();
        // What outranks this sync's own result is reported as its error, naming the revision
        // it is about (bug f: a revision blocked by validation read as "sync of <previous
        // revision> failed: 0 objects failed to apply", with no error in the audit record; a
        // refused prune read as a clean sync).
        if record.error.is_none()
            && let Some((revision, error)) = self.standing_error()
        {
            record.revision = revision;
            record.error = Some(error);
        }
        if notable {
            info!(
                outcomes = ?record.outcomes,
                drift = record.drift,
                alerts = record.alerts,
                duration_ms = record.duration_ms,
                "sync finished"
            );
        }
        // The status, once, from this reconcile's report; the observers after it, from the
        // same values.
        let (revision, reason, outcomes_map, error) = (
            record.revision.clone(),
            record.reason.clone(),
            record.outcomes,
            record.error.clone(),
        );
        let mut result = SyncState::Synced;
        let intake = std::mem::take(&mut self.pending);
        self.status.update(|s| {
            intake.write(s);
            report.write(s, sync_error);
            s.last_reconcile_at = Some(started_at);
            if notable {
                s.record(record);
            }
            result = s.sync;
        });
        self.observers.emit(Activity::SyncFinished {
            tier: self.tier.name.clone(),
            revision,
            reason,
            result,
            duration: started.elapsed(),
            outcomes: outcomes_map,
            error,
            notable,
            window_closed: self.window.held,
        });
        outcomes
    }

    /// What outranks this sync's own result in its report ([`report::standing_error`]).
    pub(super) fn standing_error(&self) -> Option<(Revision, String)> {
        report::standing_error(
            self.desired.failure(),
            self.active.as_ref().map(|a| &a.revision),
            self.source.error.as_deref(),
            self.prune_refused.as_deref(),
        )
    }

    pub(super) async fn sync(
        &mut self,
        active: &Active,
        cancel: &CancellationToken,
        record: &mut SyncRecord,
        tally: &mut Tally,
        status: &mut StatusReport,
    ) -> Result<Outcomes, ReconcileError> {
        let mut laps = timing::Laps::start();
        if !self.ensure_state().await {
            return Err(ReconcileError::StateUnreadable);
        }
        laps.lap("state-load");
        let set = active.set.clone();
        self.follow_set(&set).await?;
        laps.lap("live-cache");
        // A watch that failed is listing again: until it is done, an object the cache lacks
        // may exist (issue 21: a relist read as 1,178 deletions), so nothing is decided.
        self.live_synced(cancel).await?;

        // Ownership, before anything is written: an existing object the tier did not create
        // (no tier label, another tier's, or this tier's label without an inventory entry) is
        // taken only when `adopt:` names it. One refusal blocks the whole revision, as a
        // blocking validation finding does: applying the rest would deploy a revision the
        // tier knows to be wrong about what it owns (a Deployment without the ConfigMap it
        // was written against), and a partial apply could prune what the refused object was
        // meant to replace. So nothing new or changed is applied, nothing enters the
        // inventory, nothing is pruned (the refusal is the newest failure), drift is corrected
        // only on objects this revision leaves as they were last applied, and the status names
        // each refused object, its holder and the fix. The check reads the live cache, which
        // follows every desired object by name: when the holder lets go (or `adopt:` is set
        // and the daemon restarted), the next reconcile passes.
        let refusals = self.refusals(&set)?;
        self.refused_now = !refusals.is_empty();
        if self.refused_now {
            let lines: Vec<String> = refusals.iter().map(ToString::to_string).collect();
            if lines != self.reported.refusals {
                for f in &refusals {
                    warn!(object = %crate::escape::escape_line(&f.object), finding = %crate::escape::escape_line(&f.to_string()), "refused: the tier may not take this object; nothing of the revision is applied");
                }
                self.reported.refusals = lines;
            }
            self.desired.refuse(&active.revision, refusals);
        } else {
            self.reported.refusals.clear();
            self.desired.clear_refusal();
        }
        let refused = self.refused_now;
        laps.lap("ownership");

        // Deploy: objects new or changed since they were last applied.
        let state = self.state.as_mut().ok_or(ReconcileError::NoState)?;
        let plan::DeployPlan {
            deploy,
            remember,
            held,
        } = plan::plan_deploy(&set, &state.inventory, refused);
        let new_keys = !remember.is_empty();
        for key in remember {
            // Remembered before it exists, so a crash mid-apply cannot orphan it.
            state.inventory.insert(key, NOT_APPLIED.to_owned());
        }
        if new_keys {
            self.save_state().await?;
            laps.lap("inventory-write");
        }
        // Left out of drift: objects just applied, and those held back by a refusal (their
        // correction would apply the refused revision piecemeal).
        let mut applied_keys = held;
        if !deploy.is_empty() {
            let items = self.items(deploy.iter().map(|o| (*o, &o.manifest))).await;
            let results = self.backends.applier.apply(items, cancel).await;
            laps.lap("apply");
            self.note_results(&deploy, &results, record, tally);
            applied_keys.extend(results.iter().map(|r| r.key.clone()));
            // Kinds whose CRD this apply created can be watched now.
            let any_unserved = self
                .live
                .cache
                .as_ref()
                .is_some_and(|c| c.unserved().next().is_some());
            if any_unserved {
                self.live.digest = None;
                self.follow_set(&set).await?;
                laps.lap("live-cache-new-kinds");
            }
        }
        if cancel.is_cancelled() {
            // Stopping (SIGTERM) between objects: what was applied goes into the state, so the
            // next leader applies only the rest (no state is written after leadership is lost).
            self.save_state().await?;
            return Ok(Outcomes::default());
        }

        // Drift of the objects not just applied, and what the policy does about it. The apply
        // may have outlived a watch (an API server restart mid-apply).
        self.live_synced(cancel).await?;
        let cache = self
            .live
            .cache
            .as_ref()
            .ok_or(ReconcileError::CacheNotStarted)?;
        let detected = detect_except(
            &set,
            &self.tier,
            cache,
            &self.backends.dry_run,
            &applied_keys,
        )
        .await?;
        let mut report = detected.report;
        // A Job with ttlSecondsAfterFinished that finished for its manifest and was deleted by
        // the TTL controller is not drift: it runs once per manifest (issue 21 item 6).
        let mut jobs_gone: HashSet<ObjectKey> = HashSet::new();
        for o in set.objects.iter().filter(|o| is_ttl_job(o)) {
            let key = &o.key;
            let Some(state) = self.state.as_mut() else {
                break;
            };
            let namespace = o.key.namespace.clone().unwrap_or_default();
            let applied_here =
                state.inventory.get(key).map(String::as_str) == Some(short_digest(&o.digest));
            let live = cache.get(key).await.ok().flatten();
            if let Some(live) = &live {
                if let Some(uid) = live.pointer("/metadata/uid").and_then(Value::as_str) {
                    self.jobs.uids.insert(key.clone(), uid.to_owned());
                }
                if applied_here
                    && job_finished(live)
                    && !state.job_finished(&namespace, &o.key.name, &o.digest)
                {
                    info!(object = %o.key, "job finished for this revision: it is not created again until git changes it");
                    state.record_job_finished(&namespace, &o.key.name, &o.digest, &active.revision);
                }
                continue;
            }
            if state.job_finished(&namespace, &o.key.name, &o.digest) {
                jobs_gone.insert(key.clone());
                continue;
            }
            if !applied_here {
                continue;
            }
            // Gone before a reconcile saw it finish (ttlSecondsAfterFinished: 0): the Job
            // controller's Event says whether the Job gitopsd created ran to its end.
            let uid = self.jobs.uids.get(key).cloned();
            match job_end_event(&self.client, &namespace, &o.key.name, uid.as_deref()).await {
                Ok(true) => {
                    info!(object = %o.key, "job finished for this revision (its Event says so) and was deleted: it is not created again until git changes it");
                    state.record_job_finished(&namespace, &o.key.name, &o.digest, &active.revision);
                    jobs_gone.insert(key.clone());
                }
                Ok(false) => {}
                Err(e) => {
                    debug!(object = %o.key, error = %e, "cannot read the Job's Events")
                }
            }
        }
        if let Some(state) = self.state.as_mut() {
            state.finished_jobs.retain(|j| {
                set.objects.iter().any(|o| {
                    is_ttl_job(o)
                        && o.key.name == j.name
                        && o.key.namespace.as_deref() == Some(j.namespace.as_str())
                })
            });
        }
        if !jobs_gone.is_empty() {
            report.drop_items(|i| i.field_path.is_none() && jobs_gone.contains(&i.object_key()));
        }
        self.jobs.gone = jobs_gone;
        if let Some(state) = &self.state {
            // By identity: the inventory compares group, kind, namespace and name.
            crate::drift::settle_extras(&mut report, &self.tier, &|k| {
                state.inventory.contains_key(k)
            });
        }
        laps.lap("drift");
        let by_key = plan::by_key(&set);
        // Who deletes the objects gitopsd had to create again, while their live copy tells.
        for key in self.fights.recreated_objects() {
            if let Some(o) = by_key.get(&key) {
                let live = cache.get(&key).await.ok().flatten();
                self.fights
                    .note_deleter(&key, policy::deletion_hint(&o.manifest, live.as_ref()));
            }
        }
        // The copies the drift was seen on: a fought field's manager is named from them.
        let lives = detected.lives;
        let now = Instant::now();
        // Outside the change windows only critical drift is corrected (unless the tier holds
        // that too, or a manual sync overrode the window); the rest waits.
        let window = self.window_now();
        let closed = !window.open && !self.window.override_now;
        let critical_too = self.tier.critical_outside_windows == OutsideWindows::Hold;
        let (policy_report, waiting) = plan::outside_window(&report, closed, critical_too);
        if waiting > 0 {
            self.window.held = true;
        }
        let decision = self.fights.decide(
            &policy_report,
            &|k| by_key.get(k).map(|o| o.digest.clone()),
            &|k| lives.get(k).cloned(),
            now,
        );
        record.drift = report.items.len();
        record.alerts = decision.alerts.len();
        self.report_new_drift(&active.revision, &report);
        for u in &decision.unconvergeable {
            warn!(object = %u.object, path = %u.shown_path(), manager = u.manager.as_deref().unwrap_or("?"), "unconvergeable drift: {u}");
        }
        let all_corrections: Vec<_> = decision
            .corrections
            .iter()
            .filter_map(|c| by_key.get(&c.object).map(|o| (c, *o)))
            .collect();
        // Foreign security fields are removed by a guarded JSON patch, one request per object
        // (an apply cannot remove a field gitopsd does not own); the rest is applied.
        let mut removed: Vec<ObjectResult> = Vec::new();
        let mut removed_from: Vec<&DesiredObject> = Vec::new();
        for (c, o) in all_corrections.iter().filter(|(c, _)| !c.remove.is_empty()) {
            let Some(live) = lives.get(&c.object) else {
                continue;
            };
            let version = live
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if version.is_some() && self.live.removed_at_version.get(&c.object) == version.as_ref()
            {
                debug!(object = %o.key, "the live cache has not seen the last removal yet");
                continue;
            }
            let r = self
                .backends
                .applier
                .remove_fields(&c.object, live, &c.remove, cancel)
                .await;
            if r.outcome != Outcome::Failed {
                if let Some(v) = version {
                    self.live.removed_at_version.insert(c.object.clone(), v);
                }
                self.fights.corrected(&c.object, &c.remove, &o.digest, now);
                let fields: Vec<String> = c.remove.iter().map(ToString::to_string).collect();
                info!(object = %o.key, fields = ?fields, "foreign security fields removed");
            }
            removed.push(r);
            removed_from.push(*o);
        }
        if !removed.is_empty() {
            self.note_results(&removed_from, &removed, record, tally);
        }
        let corrections: Vec<_> = all_corrections
            .into_iter()
            .filter(|(c, _)| c.needs_apply())
            .collect();
        if !corrections.is_empty() {
            let objects: Vec<&DesiredObject> = corrections.iter().map(|(_, o)| *o).collect();
            // A correction changes exactly the fields the policy corrects: every other
            // difference (alerted, ignored, held back, HPA-owned) is applied at its live value.
            let manifests: Vec<Value> = corrections
                .iter()
                .map(|(c, o)| plan::correction_manifest(c, &o.manifest, lives.get(&c.object)))
                .collect();
            let mut items = self
                .items(objects.iter().copied().zip(manifests.iter()))
                .await;
            for (item, (c, _)) in items.iter_mut().zip(&corrections) {
                item.take_fields = c.fields.iter().map(ToString::to_string).collect();
                // The version the drift and the held-back fields were read at: a take-back
                // forces nothing unless the object is still there (`Applier::take_back`).
                if let Some(v) = lives
                    .get(&c.object)
                    .and_then(|l| l.pointer("/metadata/resourceVersion"))
                    .and_then(Value::as_str)
                {
                    item.previous_resource_version = Some(v.to_owned());
                }
            }
            let results = self.backends.applier.apply(items, cancel).await;
            self.note_results(&objects, &results, record, tally);
            for ((c, o), r) in corrections.iter().zip(&results) {
                if r.outcome != Outcome::Failed {
                    // Foreign fields were counted when they were removed.
                    let applied: Vec<crate::diff::FieldPath> = c
                        .fields
                        .iter()
                        .filter(|f| !c.remove.contains(f))
                        .cloned()
                        .collect();
                    self.fights.corrected(&c.object, &applied, &o.digest, now);
                    // A missing object created again: deletions count in the fight guard.
                    if c.fields.is_empty() && r.outcome == Outcome::Created {
                        self.fights.recreated(&c.object, &o.digest, now);
                    }
                    let fields: Vec<String> = c.fields.iter().map(ToString::to_string).collect();
                    info!(object = %o.key, fields = ?fields, "drift corrected");
                }
            }
        }
        laps.lap("corrections");
        let desired_keys: HashSet<ObjectKey> = by_key.keys().map(|&k| k.clone()).collect();
        // What leaves the inventory is compared by identity: a manifest moved to another
        // version of its group is the same object (issue 21 item 4).
        let desired_ids: HashSet<ObjectId> = desired_keys.iter().map(ObjectKey::id).collect();
        self.fights.retain(|k| desired_keys.contains(k));
        self.live
            .applied_generations
            .retain(|k, _| desired_keys.contains(k));
        self.live
            .removed_at_version
            .retain(|k, _| desired_keys.contains(k));
        self.backends.dry_run.retain(&desired_keys);

        // Prune: only when the newest revision fetched, rendered and validated, and every
        // object of this sync was applied: an object refused (RBAC, a conflict) may be the
        // replacement of one prune would delete.
        let newest_ok =
            self.source.ok && self.desired.failure().is_none() && !cancel.is_cancelled();
        let apply_failed = tally.get(Outcome::Failed) > 0;
        let leftovers = self
            .state
            .as_ref()
            .is_some_and(|s| s.inventory.keys().any(|k| !desired_ids.contains(&k.id())));
        match plan::prune_step(newest_ok, apply_failed, leftovers) {
            plan::PruneStep::Run => self.prune(&desired_keys, cancel, record, tally).await,
            plan::PruneStep::Skip(note) => record.prune_notes.extend(note.map(str::to_owned)),
        }

        if let Some(state) = self.state.as_mut()
            && !refused
        {
            state.last_applied_revision = Some(active.revision.clone());
        }
        laps.lap("prune");
        self.save_state().await?;
        laps.lap("state-write");

        let unconvergeable = !decision.unconvergeable.is_empty();
        let failed = tally.get(Outcome::Failed) > 0;
        // The one rule (docs/DESIGN.md, "Sync state"): drift leaves the tier OutOfSync unless
        // each item is ignored, or was corrected or pruned in this reconcile.
        let failed_keys: HashSet<&ObjectKey> = record.failures.iter().map(|r| &r.key).collect();
        let unsettled = crate::policy::unsettled(&report, &decision, &|item| {
            let key = item.object_key();
            match item.action {
                // Pruned (or found gone): out of the inventory, which compares identities.
                Action::Prune => self
                    .state
                    .as_ref()
                    .is_some_and(|s| !s.inventory.contains_key(&key)),
                _ => !failed_keys.contains(&key),
            }
        })
        .len();
        // A refused revision was not applied: it starts no rollout and is never recorded
        // healthy (a later tier's promotion gate reads that record).
        let outcomes = if refused {
            Outcomes::default()
        } else {
            self.assess_health(active, &report, record, status).await
        };
        laps.lap("health");
        // Every sync that wrote something says where its time went; quiet ones only at debug.
        if tally.is_empty() {
            debug!(phases = %laps, total_ms = laps.total().as_millis() as u64, "sync timings");
        } else {
            info!(phases = %laps, total_ms = laps.total().as_millis() as u64, "sync timings");
        }
        // A refused prune leaves objects git no longer has: not in sync, whatever drift says.
        let prune_refused = self.prune_refused.clone();
        let revision = if refused {
            self.state
                .as_ref()
                .and_then(|s| s.last_applied_revision.clone())
        } else {
            Some(active.revision.clone())
        };
        let objects = set.objects.len();
        // The newest revision's failure outranks what this sync of the last good set did.
        let (sync, error) = plan::sync_state(&plan::SyncFacts {
            failed,
            unconvergeable,
            unsettled,
            prune_refused: prune_refused.as_deref(),
            newest_failure: self.desired.failure().map(ToString::to_string),
            source_error: self.source.error.as_deref(),
            held: self.phase.held().map(|(_, h)| h.message.as_str()),
            window_waiting: waiting,
            window_next: window.next_change,
            health_note: self.health_note.as_deref(),
            first_failure: record.failures.first().and_then(|r| r.message.as_deref()),
        });
        status.sync = Some(SyncStatus {
            window: (!self.tier.windows.is_empty()).then_some(window),
            revision,
            sync,
            objects,
            alerts: decision.alerts,
            unconvergeable: decision.unconvergeable,
            prune_refused,
            drift: report,
            last_error: error,
            dry_run_cache_entries: self.backends.dry_run.entries(),
        });
        Ok(outcomes)
    }
}
