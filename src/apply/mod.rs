//! The apply stage: server-side apply of desired objects (field manager `gitopsd`), in order
//! (Namespaces and CRDs, then cluster-scoped, then namespaced objects), and the deletion of
//! objects prune chose.

mod applier;
mod forbidden;
mod prune;
mod remove;
mod retry;
mod seam;
mod status;
mod tally;

use serde::Serialize;
use serde_json::Value;

use crate::live::ObjectKey;

pub use applier::{
    Applier, ApplyError, NotEstablished, SHUTTING_DOWN, SHUTTING_DOWN_DELETE, display_name,
};
pub use forbidden::Refusal;
pub use prune::{PRUNE_ANNOTATION, PrunePlan, kept_reason, plan_prune};
pub use remove::{RemovalError, removal_patch};
pub use retry::{Backoff, is_transient, retry};
pub use seam::Apply;
pub use status::mask_secret_message;
pub use tally::Tally;

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    Pruned,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Created,
        Outcome::Configured,
        Outcome::Unchanged,
        Outcome::Pruned,
        Outcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::Pruned => "pruned",
            Outcome::Failed => "failed",
        }
    }
}

/// A field another field manager owns, which an apply without `force` would have taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub manager: String,
    /// As the API server names it, e.g. `.spec.replicas`.
    pub field: String,
}

/// The result for one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectResult {
    pub key: ObjectKey,
    pub outcome: Outcome,
    /// Why it failed, or a note on what was done (`recreated: spec.selector is immutable`).
    pub message: Option<String>,
    /// Fields other managers own that blocked the apply (empty unless it failed on them).
    pub conflicts: Vec<Conflict>,
    /// What the server stored (not for pruned or failed objects). Only its identity and
    /// versions: holding whole objects for a 10,000-object sync cost ~60 MB of heap.
    #[serde(skip)]
    pub applied: Option<AppliedMeta>,
}

/// The metadata of an object as the server stored it after an apply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppliedMeta {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub generation: Option<i64>,
}

impl AppliedMeta {
    pub fn of(meta: &kube::api::ObjectMeta) -> AppliedMeta {
        AppliedMeta {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            generation: meta.generation,
        }
    }
}

/// One object to apply.
#[derive(Debug, Clone)]
pub struct ApplyItem<'a> {
    pub manifest: &'a Value,
    /// The live object's resourceVersion before the apply (`None`: it does not exist), which
    /// tells `created`, `configured` and `unchanged` apart without another request.
    pub previous_resource_version: Option<String>,
    /// Fields (diff-stage form, `spec.replicas`) whose drift the tier's policy corrects: a
    /// conflict with another manager on these alone (or on the atomic map or struct holding
    /// one, which the server names whole) is resolved by taking them back: a forced apply,
    /// made only while the object is still at `previous_resource_version` (the version the
    /// drift was read at), so nothing else is forced. Any other conflict is reported, unless
    /// `apply.forceConflicts` is set.
    pub take_fields: Vec<String>,
}

/// An object prune chose to delete; the uid guards against deleting an object that was
/// deleted and created again by someone else since it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneTarget {
    pub key: ObjectKey,
    pub uid: Option<String>,
}
