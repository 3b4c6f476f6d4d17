//! Rollout: a revision applied and not yet healthy, and when it must be.
//!
//! The deadline runs on the monotonic clock while one reconciler follows the rollout (a step of
//! the wall clock does not move it); its start is also kept, by the wall clock, in the tier
//! state ([`RolloutRecord`]), so a restart or a change of leader resumes the deadline instead
//! of starting it again (issue 15 bug b: a daemon restarting more often than
//! `rollback.healthTimeout` never rolled back).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::*;
use crate::classify::BuiltinRule;
use crate::state::RolloutRecord;

/// A revision applied and not yet healthy: when it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rollout {
    pub revision: Revision,
    pub started: Instant,
    pub deadline: Instant,
}

/// The rollout of `revision` as a reconciler that did not follow it so far takes it up (pure):
/// resumed from `persisted` when that records the same revision, else started `now`. Returns
/// the rollout and the record the tier state must hold for it (the persisted one when resumed).
///
/// A persisted start in the future (the wall clock stepped back since) counts as `now`: the
/// deadline is never shortened by a clock step backwards; a step forwards between two daemons
/// can shorten it, which the monotonic clock cannot help across processes.
pub(super) fn take_up(
    persisted: Option<&RolloutRecord>,
    revision: &Revision,
    timeout: Duration,
    wall_now: DateTime<Utc>,
    now: Instant,
) -> (Rollout, RolloutRecord) {
    let record = match persisted {
        Some(r) if r.revision == *revision => r.clone(),
        _ => RolloutRecord {
            revision: revision.clone(),
            started_at: wall_now,
        },
    };
    let elapsed = (wall_now - record.started_at)
        .to_std()
        .unwrap_or(Duration::ZERO);
    let rollout = Rollout {
        revision: revision.clone(),
        started: now.checked_sub(elapsed).unwrap_or(now),
        deadline: now + timeout.saturating_sub(elapsed),
    };
    (rollout, record)
}

impl super::TierReconciler {
    /// The tier's health from the live cache; marks a revision healthy, or rolls it back when
    /// its health timeout has passed.
    pub(super) async fn assess_health(
        &mut self,
        active: &Active,
        report: &crate::drift::DriftReport,
        record: &mut SyncRecord,
        status: &mut StatusReport,
    ) -> Outcomes {
        let Some(cache) = self.live.cache.as_ref() else {
            return Outcomes::default();
        };
        let missing: HashSet<ObjectId> = report
            .items
            .iter()
            .filter(|i| i.rule == BuiltinRule::ObjectDeleted)
            .map(|i| i.key.id())
            .collect();
        let mut unhealthy = Vec::new();
        let mut worst = Health::Healthy;
        for o in &active.set.objects {
            if self.jobs.gone.contains(&o.key) {
                continue;
            }
            let h = if missing.contains(&o.key.id()) {
                health::assess_or_missing(None)
            } else if !has_health(&o.key.kind) {
                continue;
            } else {
                let key = &o.key;
                match cache.get(key).await {
                    Ok(live) => {
                        let seen = live
                            .as_ref()
                            .and_then(|l| l.pointer("/metadata/generation"))
                            .and_then(Value::as_i64);
                        match (self.live.applied_generations.get(key), seen) {
                            (Some(applied), Some(seen)) if seen < *applied => ObjectHealth {
                                health: Health::Progressing,
                                message: format!(
                                    "generation {applied} applied; the watch still shows {seen}"
                                ),
                            },
                            _ => health::assess_or_missing(live.as_ref()),
                        }
                    }
                    Err(_) => continue,
                }
            };
            worst = worst.max(h.health);
            if h.health != Health::Healthy && unhealthy.len() < LISTED {
                unhealthy.push(UnhealthyObject {
                    object: o.key.clone(),
                    health: h,
                });
            }
        }
        let now = Instant::now();
        let mut out = Outcomes::default();
        let last_healthy = self
            .state
            .as_ref()
            .and_then(|s| s.last_healthy_revision.clone());
        if worst == Health::Healthy {
            let recorded = self
                .state
                .as_ref()
                .is_some_and(|s| s.healthy_record(&active.revision).is_some());
            if last_healthy.as_ref() != Some(&active.revision) || !recorded {
                if let Some(r) = &self.rollout {
                    info!(after = ?r.started.elapsed(), "revision healthy");
                }
                // Not taken: the same sync may have made the revision healthy before its
                // commit-to-applied time was observed (after the sync returns).
                let arrived = self.arrived.clone().filter(|(r, _)| *r == active.revision);
                let checkouts = self.checkouts.clone();
                let rev = active.revision.clone();
                let base = tokio::task::spawn_blocking(move || {
                    checkouts
                        .checkout(&rev)
                        .ok()
                        .and_then(|root| base_digest(&root))
                })
                .await
                .ok()
                .flatten();
                let since = (self.settings.clock)();
                if let Some(state) = self.state.as_mut() {
                    state.record_healthy(&active.revision, since, base);
                    state.rollout = None;
                }
                if let Err(e) = self.save_state().await {
                    warn!(error = %e, "cannot record the healthy revision");
                }
                // After the save: an observer may wake a tier whose gate reads this record.
                if let Some((_, at)) = arrived {
                    self.observers.emit(Activity::RevisionHealthy {
                        tier: self.tier.name.clone(),
                        revision: active.revision.clone(),
                        since_arrival: at.elapsed(),
                    });
                }
                self.publish(&active.revision).await;
            }
            self.last_healthy = Some(active.clone());
            self.rollout = None;
            if let Some(state) = self.state.as_mut()
                && state.rollout.take().is_some()
                && let Err(e) = self.save_state().await
            {
                warn!(error = %e, "cannot clear the finished rollout from the tier state");
            }
        } else if last_healthy.as_ref() != Some(&active.revision) {
            let timeout = self.tier.health_timeout();
            let rollout = match &self.rollout {
                Some(r) if r.revision == active.revision => r.clone(),
                _ => {
                    // Resumed from the tier state when a daemon before this one started it.
                    let persisted = self.state.as_ref().and_then(|s| s.rollout.as_ref());
                    let (r, record) = rollout::take_up(
                        persisted,
                        &active.revision,
                        timeout,
                        (self.settings.clock)(),
                        now,
                    );
                    if let Some(state) = self.state.as_mut() {
                        state.rollout = Some(record);
                    }
                    if let Err(e) = self.save_state().await {
                        warn!(error = %e, "cannot record the start of the rollout; a restart starts its health deadline again");
                    }
                    self.rollout = Some(r.clone());
                    r
                }
            };
            if now < rollout.deadline {
                out.wake_at = Some(rollout.deadline);
            } else {
                out = self
                    .health_deadline_passed(active, &unhealthy, record)
                    .await;
            }
        }
        let stored = self
            .state
            .as_ref()
            .map(StoredOutcomes::of)
            .unwrap_or_default();
        if self.reported.health != Some(worst) {
            if let Some(from) = self.reported.health {
                self.observers.emit(Activity::HealthChanged {
                    tier: self.tier.name.clone(),
                    revision: active.revision.clone(),
                    from,
                    to: worst,
                });
            }
            self.reported.health = Some(worst);
        }
        status.health = Some(HealthStatus {
            health: worst,
            unhealthy,
            stored,
        });
        out
    }

    /// Pushes the healthy ref of `revision` when the tier publishes them; a failure is a
    /// warning only.
    pub(super) async fn publish(&self, revision: &Revision) {
        if !self.settings.publish_healthy {
            return;
        }
        let Some(record) = self.state.as_ref().and_then(|s| s.healthy_record(revision)) else {
            return;
        };
        let checkouts = self.checkouts.clone();
        let tier = self.tier.name.clone();
        let pushed =
            tokio::task::spawn_blocking(move || checkouts.publish_healthy(&tier, &record)).await;
        match pushed {
            Ok(Ok(())) => {
                info!(%revision, "healthy ref published to the config repo")
            }
            Ok(Err(e)) => {
                warn!(%revision, error = %e, "cannot publish the healthy ref; the gate in this cluster is unaffected")
            }
            Err(e) => warn!(%revision, error = %e, "the publish task failed"),
        }
    }

    pub(super) async fn health_deadline_passed(
        &mut self,
        active: &Active,
        unhealthy: &[UnhealthyObject],
        record: &mut SyncRecord,
    ) -> Outcomes {
        let timeout = self.tier.health_timeout();
        let first = unhealthy
            .first()
            .map(|u| {
                format!(
                    "; first: {} {} ({})",
                    u.object, u.health.health, u.health.message
                )
            })
            .unwrap_or_default();
        let message = format!(
            "revision {} did not become healthy within {}{first}",
            active.revision.short(),
            humantime::format_duration(timeout)
        );
        self.rollout = None;
        // Over: with rollback off (or nothing to roll back to) the next reconcile starts
        // another deadline, as it did before the start was kept.
        if let Some(state) = self.state.as_mut() {
            state.rollout = None;
        }
        if !self.tier.rolls_back() {
            if let Err(e) = self.save_state().await {
                warn!(error = %e, "cannot clear the rollout from the tier state");
            }
            warn!("{message}; rollback is off for this tier");
            self.health_note = Some(format!("{message}; rollback is off for this tier"));
            return Outcomes::default();
        }
        let Some(target) = self.restore_last_healthy().await else {
            if let Err(e) = self.save_state().await {
                warn!(error = %e, "cannot clear the rollout from the tier state");
            }
            warn!("{message}; no healthy revision to roll back to");
            // Kept as the health note: the status of this sync says it (it was written to the
            // status and overwritten by the end of the same sync before).
            self.health_note = Some(format!("{message}; no healthy revision to roll back to"));
            return Outcomes::default();
        };
        if target.revision == active.revision {
            return Outcomes::default();
        }
        warn!(to = %target.revision.short(), "{message}; rolling back");
        if let Some(state) = self.state.as_mut() {
            state.failed_revision = Some(active.revision.clone());
            state.rollbacks += 1;
            state.rollout = None;
        }
        if let Err(e) = self.save_state().await {
            warn!(error = %e, "cannot record the rollback; it is retried");
        }
        record.rolled_back_from = Some(active.revision.clone());
        let target_revision = target.revision.clone();
        self.observers.emit(Activity::RolledBack {
            tier: self.tier.name.clone(),
            from: active.revision.clone(),
            to: target_revision.clone(),
            reason: message.clone(),
        });
        self.active = Some(target);
        self.health_note = Some(format!(
            "{message}; rolled back to {}; waiting for a new commit on {}",
            target_revision.short(),
            self.tier.git_ref
        ));
        // Apply the healthy set at once.
        Outcomes {
            wake_at: Some(Instant::now()),
        }
    }
}

/// Kinds whose health is more than "it exists": the rest are healthy when present.
pub(super) fn has_health(kind: &str) -> bool {
    !matches!(
        kind,
        "ConfigMap"
            | "Secret"
            | "ServiceAccount"
            | "Role"
            | "RoleBinding"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "NetworkPolicy"
            | "PriorityClass"
            | "HorizontalPodAutoscaler"
            | "PodDisruptionBudget"
            | "ResourceQuota"
            | "LimitRange"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time")
    }

    fn record(revision: &str, started: i64) -> RolloutRecord {
        RolloutRecord {
            revision: revision.into(),
            started_at: at(started),
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(60);

    #[test]
    fn a_new_rollout_starts_now_and_is_recorded() {
        let now = Instant::now();
        let (r, rec) = take_up(None, &"b".into(), TIMEOUT, at(100), now);
        assert_eq!(r.deadline, now + TIMEOUT);
        assert_eq!(r.started, now);
        assert_eq!(rec, record("b", 100));
    }

    #[test]
    fn a_recorded_rollout_resumes_its_deadline_after_a_restart() {
        let now = Instant::now();
        let (r, rec) = take_up(Some(&record("b", 50)), &"b".into(), TIMEOUT, at(100), now);
        assert_eq!(r.deadline, now + Duration::from_secs(10));
        assert_eq!(rec, record("b", 50), "the first start is kept");
        // Past it: the deadline is now, and the reconcile rolls back.
        let (r, _) = take_up(Some(&record("b", 0)), &"b".into(), TIMEOUT, at(100), now);
        assert_eq!(r.deadline, now);
    }

    #[test]
    fn the_record_of_another_revision_starts_over() {
        let now = Instant::now();
        let (r, rec) = take_up(Some(&record("a", 0)), &"b".into(), TIMEOUT, at(100), now);
        assert_eq!(r.deadline, now + TIMEOUT);
        assert_eq!(rec, record("b", 100));
    }

    #[test]
    fn a_start_in_the_future_counts_as_now() {
        let now = Instant::now();
        let (r, rec) = take_up(Some(&record("b", 500)), &"b".into(), TIMEOUT, at(100), now);
        assert_eq!(r.deadline, now + TIMEOUT);
        assert_eq!(rec, record("b", 500));
    }
}
