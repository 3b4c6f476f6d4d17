//! Intake: a revision offered to the tier passes the promotion gate, the signature check and
//! the change window (or is held back), is rendered and validated, and becomes the active set;
//! the tier's state is read once before anything is applied, and the last applied or healthy
//! revision is rendered again after a restart.

use super::*;
use crate::validate::ScopeRule;

impl TierReconciler {
    pub(super) fn window_now(&self) -> WindowState {
        window_state(&self.tier.windows, (self.settings.clock)())
    }

    /// Why `revision` may not be deployed now: the promotion gate, the signatures, the
    /// change window, in that order. A revision already deployed passes.
    pub(super) async fn hold_for(&mut self, revision: &Revision) -> Option<Hold> {
        let deployed = self.active.as_ref().map(|a| &a.revision) == Some(revision)
            || self
                .state
                .as_ref()
                .and_then(|s| s.last_applied_revision.as_ref())
                == Some(revision);
        if deployed {
            return None;
        }
        if let Some(from) = self.tier.promote_from.clone() {
            let mut evidence = match self.backends.store.load(&from).await {
                Ok(state) => state.healthy,
                Err(e) => {
                    return Some(Hold {
                        kind: HoldKind::PromotionGate,
                        message: format!(
                            "promotion gate closed: cannot read the state of tier {from}: {e}"
                        ),
                        opens_at: None,
                    });
                }
            };
            let checkouts = self.checkouts.clone();
            let from2 = from.clone();
            let rev = revision.clone();
            let base = self.tier.gate == crate::config::PromotionGate::BaseDigest;
            let (refs, digest) = tokio::task::spawn_blocking(move || {
                let refs = checkouts.healthy_refs(&from2);
                let digest = if base {
                    checkouts
                        .checkout(&rev)
                        .ok()
                        .and_then(|root| base_digest(&root))
                } else {
                    None
                };
                (refs, digest)
            })
            .await
            .unwrap_or_default();
            evidence.extend(refs);
            if let Some(hold) = promotion_gate(
                &self.tier,
                revision,
                digest.as_deref(),
                &evidence,
                (self.settings.clock)(),
            ) {
                return Some(hold);
            }
        }
        if let Some(signed) = self.tier.require_signed_commits.clone() {
            let from = self
                .active
                .as_ref()
                .map(|a| a.revision.clone())
                .or_else(|| self.state.as_ref()?.last_applied_revision.clone());
            let checkouts = self.checkouts.clone();
            let to = revision.clone();
            let checked = tokio::task::spawn_blocking(move || {
                let commits = checkouts
                    .commits_between(from.as_ref(), &to)
                    .map_err(|e| e.to_string())?;
                crate::signature::check_range(&commits, &signed.ssh_allowed_signers)
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("the signature check failed: {e}")));
            if let Err(why) = checked {
                return Some(Hold {
                    kind: HoldKind::Signature,
                    message: format!("signature check failed: {why}"),
                    opens_at: None,
                });
            }
        }
        if !self.window.override_now
            && let Some(hold) = window_hold(&self.window_now())
        {
            return Some(hold);
        }
        None
    }

    /// Holds `revision` back: the last deployed set stays active (rendered again after a
    /// restart), the status says why, and the block is reported once per revision and kind.
    pub(super) async fn hold(&mut self, revision: &Revision, hold: Hold) {
        if self.active.is_none() {
            self.active = self.restore_last_applied().await;
        }
        if self.reported.blocked.first_time(revision, hold.kind) {
            warn!(tier = %self.tier.name, %revision, reason = %hold.message, "revision held back");
            self.observers.emit(Activity::PromotionBlocked {
                tier: self.tier.name.clone(),
                revision: revision.clone(),
                reason: hold.message.clone(),
                kind: hold.kind,
            });
        }
        let message = hold.message.clone();
        let kind = hold.kind;
        let window = (!self.tier.windows.is_empty()).then(|| self.window_now());
        self.pending.fail(SyncState::Blocked, message);
        self.pending.held = Some(Some((revision.clone(), kind)));
        self.pending.window = Some(window);
        self.advance(PhaseEvent::HeldBack {
            revision: revision.clone(),
            hold,
        });
    }

    pub(super) fn advance(&mut self, event: PhaseEvent) {
        let phase = std::mem::replace(&mut self.phase, TierPhase::Settled);
        self.phase = phase::step(phase, event);
    }

    /// Renders the revision last applied (after a restart, to keep reconciling it while a
    /// newer one is held back).
    pub(super) async fn restore_last_applied(&mut self) -> Option<Active> {
        let revision = self.state.as_ref()?.last_applied_revision.clone()?;
        match self.render(&revision).await {
            Ok(set) => Some(Active {
                revision,
                set: Arc::new(set),
            }),
            Err(e) => {
                warn!(tier = %self.tier.name, error = %e, "cannot render the last applied revision");
                None
            }
        }
    }

    /// Takes the newest commit of the tier's ref: renders and validates it, and makes it the
    /// active set when it passes (unless it is the revision rolled back). What it changes in
    /// the status is written in one update at its end.
    pub async fn offer_revision(&mut self, revision: &Revision) {
        self.take_revision(revision).await;
        self.write_pending_status();
    }

    /// Writes what intake changed in the status since the last write, in one update.
    pub(super) fn write_pending_status(&mut self) {
        let delta = std::mem::take(&mut self.pending);
        if !delta.is_empty() {
            self.status.update(|s| delta.write(s));
        }
    }

    async fn take_revision(&mut self, revision: &Revision) {
        self.source_recovered();
        if self.arrived.as_ref().is_none_or(|(r, _)| r != revision) {
            self.arrived = Some((revision.clone(), Instant::now()));
        }
        self.pending.source_revision = Some(revision.clone());
        if !self.ensure_state().await {
            self.advance(PhaseEvent::StateUnreadable {
                revision: revision.clone(),
            });
            return;
        }
        let Some(state) = self.state.as_mut() else {
            return;
        };
        match state.failed_revision.as_ref() {
            Some(failed) if failed == revision => {
                // Rolled back: hold the healthy set until git moves.
                if self.active.is_none() {
                    self.active = self.restore_last_healthy().await;
                }
                let message = format!(
                    "revision {} was rolled back after it did not become healthy; waiting for a new commit on {}",
                    revision.short(),
                    self.tier.git_ref
                );
                self.health_note = Some(message.clone());
                self.pending.last_error = Some(Some(message));
                return;
            }
            Some(_) => {
                info!(tier = %self.tier.name, %revision, "the ref moved past the rolled-back revision");
                state.failed_revision = None;
            }
            None => {}
        }
        if let Some(hold) = self.hold_for(revision).await {
            self.hold(revision, hold).await;
            return;
        }
        if self.phase.held().is_some() {
            self.pending.held = Some(None);
        }
        self.advance(PhaseEvent::Passed);
        let render_started = Instant::now();
        let rendered = match &self.source.refused_render {
            Some((r, message)) if r == revision => Err(crate::render::RenderError::Refused {
                revision: revision.clone(),
                message: message.clone(),
            }),
            _ => self.render(revision).await,
        };
        let render_time = render_started.elapsed();
        match &rendered {
            // A render is remembered as refused only when the commit alone decides it: a
            // checkout can fail for a passing reason (disk, lock), and what discovery says
            // (scopes unknown while the API server is away, a CRD's scope against the
            // server's) changes without a commit, so those are tried again next time.
            Err(
                crate::render::RenderError::Checkout { .. }
                | crate::render::RenderError::Refused { .. }
                | crate::render::RenderError::ScopesUnavailable { .. }
                | crate::render::RenderError::CrdScopeConflict { .. },
            )
            | Ok(_) => {}
            Err(e) => self.source.refused_render = Some((revision.clone(), e.to_string())),
        }
        let objects = rendered.as_ref().map_or(0, |s| s.objects.len());
        let validate_started = Instant::now();
        let offer = self
            .desired
            .offer(revision, rendered, &self.tier, self.settings.last_tier);
        info!(
            tier = %self.tier.name,
            %revision,
            objects,
            render_ms = render_time.as_millis() as u64,
            validate_ms = validate_started.elapsed().as_millis() as u64,
            "revision rendered and validated"
        );
        match offer {
            Offer::Accepted | Offer::Unchanged => {
                self.health_note = None;
                if let Some(current) = self.desired.current() {
                    self.active = Some(Active {
                        revision: current.revision.clone(),
                        set: current.set.clone(),
                    });
                    for w in &current.warnings {
                        warn!(tier = %self.tier.name, %revision, finding = %w, "validation warning");
                    }
                }
                self.pending.last_error = Some(None);
            }
            Offer::Rejected => {
                let unknown = matches!(
                    self.desired.failure(),
                    Some(Failure::Blocked { findings, .. })
                        if findings.iter().any(|f| f.is(ScopeRule::UnknownKind))
                );
                if unknown {
                    let generation = self.scopes.generation().await;
                    self.advance(PhaseEvent::RejectedForUnknownKinds {
                        revision: revision.clone(),
                        generation,
                    });
                }
                let failure = self
                    .desired
                    .failure()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| format!("revision {revision} was rejected"));
                warn!(tier = %self.tier.name, %revision, error = %failure, "the revision is not applied; the last good one stays");
                self.pending.fail(SyncState::Failed, failure);
            }
        }
    }

    /// Renders `revision` with the discovery snapshot; when the set has a kind the snapshot
    /// does not know (a CRD installed since?), once more with a fresh one. Without any snapshot
    /// the render fails: the last good set stays and nothing is pruned.
    pub(super) async fn render(
        &self,
        revision: &Revision,
    ) -> Result<DesiredSet, crate::render::RenderError> {
        let scopes = self.scopes.current().await.map_err(|e| {
            crate::render::RenderError::ScopesUnavailable {
                reason: e.to_string(),
            }
        })?;
        let set = self.render_with(revision, scopes).await?;
        let unknown = set
            .objects
            .iter()
            .any(|o| matches!(o.scope, ObjectScope::Unknown { .. }));
        if unknown && let Some(fresh) = self.scopes.refresh_on_miss().await {
            return self.render_with(revision, fresh).await;
        }
        Ok(set)
    }

    pub(super) async fn render_with(
        &self,
        revision: &Revision,
        scopes: Arc<KindScopes>,
    ) -> Result<DesiredSet, crate::render::RenderError> {
        let checkouts = self.checkouts.clone();
        let tier = self.tier.name.clone();
        let task_revision = revision.clone();
        let limits = self.settings.limits.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let root = checkouts.checkout(&task_revision).map_err(|e| {
                crate::render::RenderError::checkout(&task_revision, &e.to_string())
            })?;
            crate::render::render_tier(&root, &tier, &limits, &scopes)
        })
        .await;
        match joined {
            Ok(r) => r,
            Err(e) => Err(crate::render::RenderError::checkout(
                revision,
                &format!("the render task failed: {e}"),
            )),
        }
    }

    /// Renders the last healthy revision again (after a restart, to roll back to it).
    pub(super) async fn restore_last_healthy(&mut self) -> Option<Active> {
        if let Some(h) = &self.last_healthy {
            return Some(h.clone());
        }
        let revision = self.state.as_ref()?.last_healthy_revision.clone()?;
        match self.render(&revision).await {
            Ok(set) => {
                let active = Active {
                    revision,
                    set: Arc::new(set),
                };
                self.last_healthy = Some(active.clone());
                Some(active)
            }
            Err(e) => {
                let message = format!(
                    "cannot render the last healthy revision {} to roll back to: {e}",
                    revision.short()
                );
                warn!(tier = %self.tier.name, error = %message, "nothing is applied");
                self.pending.fail(SyncState::Failed, message);
                None
            }
        }
    }

    /// Reads the tier's state from the cluster once. `false` (with the error in status) when
    /// it cannot be read: then nothing may be applied or pruned.
    pub(super) async fn ensure_state(&mut self) -> bool {
        if self.state.is_some() {
            return true;
        }
        match self.backends.store.load(&self.tier.name).await {
            Ok(state) => {
                info!(
                    tier = %self.tier.name,
                    objects = state.inventory.len(),
                    last_applied = state.last_applied_revision.as_ref().map_or("-", Revision::as_str),
                    last_healthy = state.last_healthy_revision.as_ref().map_or("-", Revision::as_str),
                    "tier state read"
                );
                self.pending.stored = Some(StoredOutcomes::of(&state));
                self.saved = Some(state.clone());
                self.state = Some(state);
                true
            }
            Err(e) => {
                let message = e.to_string();
                warn!(tier = %self.tier.name, error = %message, "cannot read the tier state; nothing is applied until it can");
                self.pending.fail(SyncState::Failed, message);
                false
            }
        }
    }
}
