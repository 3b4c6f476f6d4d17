//! What the reconcile asks of the apply stage, as a trait: [`Applier`] talks to the API
//! server; a test harness answers from memory (`reconcile::harness`).

use futures::future::BoxFuture;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Applier, ApplyItem, ObjectResult, PruneTarget};
use crate::diff::FieldPath;
use crate::live::ObjectKey;

/// The writes of a tier: server-side apply, prune's deletions, the removal of foreign fields.
/// Each answers per object (an [`ObjectResult`]); none fails as a whole.
pub trait Apply: Send + Sync {
    /// Applies `items` (see [`Applier::apply`]); one result per item, in the input order.
    fn apply<'a>(
        &'a self,
        items: Vec<ApplyItem<'a>>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Vec<ObjectResult>>;

    /// Deletes `targets` (see [`Applier::delete`]); one result per target, in the input order.
    fn delete<'a>(
        &'a self,
        targets: Vec<PruneTarget>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Vec<ObjectResult>>;

    /// Removes `paths` from the object as `live` holds them (see [`Applier::remove_fields`]).
    fn remove_fields<'a>(
        &'a self,
        key: &'a ObjectKey,
        live: &'a Value,
        paths: &'a [FieldPath],
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ObjectResult>;
}

impl Apply for Applier {
    fn apply<'a>(
        &'a self,
        items: Vec<ApplyItem<'a>>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Vec<ObjectResult>> {
        Box::pin(Applier::apply(self, items, cancel))
    }

    fn delete<'a>(
        &'a self,
        targets: Vec<PruneTarget>,
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, Vec<ObjectResult>> {
        Box::pin(Applier::delete(self, targets, cancel))
    }

    fn remove_fields<'a>(
        &'a self,
        key: &'a ObjectKey,
        live: &'a Value,
        paths: &'a [FieldPath],
        cancel: &'a CancellationToken,
    ) -> BoxFuture<'a, ObjectResult> {
        Box::pin(Applier::remove_fields(self, key, live, paths, cancel))
    }
}
