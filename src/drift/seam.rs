//! The dry-run confirmation the reconcile keeps across reconciles, as a trait: [`ApiDryRun`]
//! asks the API server and caches its answers; a test harness answers from memory
//! (`reconcile::harness`).

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;

use super::{ApiDryRun, DriftError, DryRun};
use crate::live::ObjectKey;
use crate::render::DesiredObject;

/// A [`DryRun`] with a cache of answers, usable as a trait object.
pub trait DryRunCache: Send + Sync {
    /// As [`DryRun::dry_run`]. The arguments are owned: a future that borrows only `self`
    /// is `Send` for the daemon's spawned tier tasks (one borrowing every argument of a trait
    /// object's method is not shown to be). Only a difference the comparison cannot settle
    /// comes here, so the copies are rare.
    fn confirm(
        &self,
        desired: DesiredObject,
        live: Value,
    ) -> BoxFuture<'_, Result<Value, DriftError>>;

    /// Forgets the answers of objects not in `keep` (those that left the desired set).
    fn retain(&self, keep: &HashSet<ObjectKey>);

    /// How many answers the cache holds.
    fn entries(&self) -> usize;
}

impl DryRunCache for ApiDryRun {
    fn confirm(
        &self,
        desired: DesiredObject,
        live: Value,
    ) -> BoxFuture<'_, Result<Value, DriftError>> {
        Box::pin(async move { DryRun::dry_run(self, &desired, &live).await })
    }

    fn retain(&self, keep: &HashSet<ObjectKey>) {
        ApiDryRun::retain(self, keep)
    }

    fn entries(&self) -> usize {
        ApiDryRun::entries(self)
    }
}

// For every lifetime of the trait object: the future of a spawned task is checked for `Send`
// with its lifetimes erased.
impl<'x> DryRun for Arc<dyn DryRunCache + 'x> {
    fn dry_run(
        &self,
        desired: &DesiredObject,
        live: &Value,
    ) -> impl Future<Output = Result<Value, DriftError>> + Send {
        self.confirm(desired.clone(), live.clone())
    }
}
