//! What a tier's reconciler keeps between reconciles, besides the tier's lifecycle
//! ([`super::phase::TierPhase`], the active set, the rollout): grouped by what each part is
//! for, so that [`super::TierReconciler`] reads as its stages' inputs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::diff::FieldPath;
use crate::health::Health;
use crate::live::{LiveWatch, ObjectKey};
use crate::render::Limits;
use crate::revision::Revision;

use super::gate::{Clock, HoldKind, system_clock};

/// The tier's live cache and what the reconcile knows of its lag behind the API server.
#[derive(Default)]
pub(super) struct LiveView {
    pub(super) cache: Option<Box<dyn LiveWatch>>,
    /// Subscribed when the cache starts, never marked seen here: the reconciler's
    /// `live_changes` hands out clones, which see every change since the cache started.
    pub(super) changes: Option<tokio::sync::watch::Receiver<u64>>,
    /// The digest of the desired set the cache watches the kinds of.
    pub(super) digest: Option<String>,
    /// `metadata.generation` of objects as this daemon last applied them: until the live
    /// cache shows that generation, its (older) status says nothing about the new spec.
    pub(super) applied_generations: HashMap<ObjectKey, i64>,
    /// The live `resourceVersion` each object had when foreign fields were last removed from
    /// it: until the live cache shows a newer one, it still shows the fields just removed, and
    /// a second guarded patch built from that stale copy would only be refused.
    pub(super) removed_at_version: HashMap<ObjectKey, String>,
}

/// How the tier's ref last fared at the source.
#[derive(Debug, Default)]
pub(super) struct SourceHealth {
    /// The newest fetch of the tier's ref succeeded.
    pub(super) ok: bool,
    /// Why the newest fetch failed, while it does.
    pub(super) error: Option<String>,
    /// The last revision whose render failed, with the error: a render is a pure function of
    /// the commit, so a refused one (a kustomize build stopped at its memory cap, say) is not
    /// run again on every offer until the ref moves.
    pub(super) refused_render: Option<(Revision, String)>,
}

/// What was already reported (Events, logs), so that each thing is reported when it appears,
/// not on every reconcile.
#[derive(Debug, Default)]
pub(super) struct Reported {
    /// The revision whose first complete apply was reported.
    pub(super) applied: Option<Revision>,
    /// Drift seen by the previous reconcile (object, path): only new items are reported.
    pub(super) drift: HashSet<(ObjectKey, Option<FieldPath>)>,
    pub(super) health: Option<Health>,
    /// The hold kinds already reported as `PromotionBlocked` for the revision held now.
    pub(super) blocked: BlockedReported,
    /// The ownership refusals last logged.
    pub(super) refusals: Vec<String>,
    /// (revision, refusal) last reported as `PruneRefused`: once per revision and reason.
    pub(super) prune_refused: Option<(Revision, String)>,
}

/// A change window as this reconciler sees it.
#[derive(Debug, Default)]
pub(super) struct WindowSwitch {
    /// Set by a manual sync that overrides a closed window; taken by the next reconcile.
    pub(super) override_flag: Arc<AtomicBool>,
    /// This reconcile runs with the window overridden.
    pub(super) override_now: bool,
    /// This reconcile left a revision or drift corrections waiting for a window.
    pub(super) held: bool,
}

/// Jobs with `ttlSecondsAfterFinished`, which run once per manifest.
#[derive(Debug, Default)]
pub(super) struct JobWatch {
    /// The uid of each such Job as last applied or seen: its end Event is matched by it.
    pub(super) uids: HashMap<ObjectKey, String>,
    /// Jobs of this sync that finished for their manifest and are gone: neither drift nor
    /// unhealthy.
    pub(super) gone: HashSet<ObjectKey>,
}

/// Settings the daemon gives a reconciler once (config, tests' clock).
pub(super) struct Settings {
    /// The last tier of the promotion chain.
    pub(super) last_tier: bool,
    /// The bounds a render runs within (`render:` in the config).
    pub(super) limits: Limits,
    /// Publish healthy revisions as refs in the config repo (`source.publishHealthy`).
    pub(super) publish_healthy: bool,
    /// "Now" for windows and soak times; the system clock unless a test sets another.
    pub(super) clock: Clock,
}

impl Settings {
    pub(super) fn new(last_tier: bool) -> Settings {
        Settings {
            last_tier,
            limits: Limits::default(),
            publish_healthy: false,
            clock: system_clock(),
        }
    }
}

/// The hold kinds reported for one held revision; a newer revision held starts over.
/// Only the held revision is kept (bug h: a set of every revision held grew without bound
/// within a leadership term).
#[derive(Debug, Default)]
pub(super) struct BlockedReported {
    revision: Option<Revision>,
    kinds: Vec<HoldKind>,
}

impl BlockedReported {
    /// Whether `kind` is new for `revision` (and remembers it).
    pub(super) fn first_time(&mut self, revision: &Revision, kind: HoldKind) -> bool {
        if self.revision.as_ref() != Some(revision) {
            self.revision = Some(revision.clone());
            self.kinds.clear();
        }
        if self.kinds.contains(&kind) {
            return false;
        }
        self.kinds.push(kind);
        true
    }

    /// How many (revision, kind) pairs are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.kinds.len()
    }
}

/// When each revision offered reached this tier (for commit-to-applied and deployment
/// durations); dropped once the revision is healthy or replaced.
pub(super) type Arrived = Option<(Revision, Instant)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_is_reported_once_per_revision_and_kind() {
        let mut b = BlockedReported::default();
        assert!(b.first_time(&"a".into(), HoldKind::Soak));
        assert!(!b.first_time(&"a".into(), HoldKind::Soak));
        assert!(b.first_time(&"a".into(), HoldKind::Window));
        assert!(b.first_time(&"b".into(), HoldKind::Soak));
        assert!(!b.first_time(&"b".into(), HoldKind::Soak));
        assert_eq!(b.len(), 1);
    }
}
