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
    /// As [`DryRun::dry_run`].
    fn confirm<'a>(
        &'a self,
        desired: &'a DesiredObject,
        live: &'a Value,
    ) -> BoxFuture<'a, Result<Value, DriftError>>;

    /// Forgets the answers of objects not in `keep` (those that left the desired set).
    fn retain(&self, keep: &HashSet<ObjectKey>);

    /// How many answers the cache holds.
    fn entries(&self) -> usize;
}

impl DryRunCache for ApiDryRun {
    fn confirm<'a>(
        &'a self,
        desired: &'a DesiredObject,
        live: &'a Value,
    ) -> BoxFuture<'a, Result<Value, DriftError>> {
        Box::pin(DryRun::dry_run(self, desired, live))
    }

    fn retain(&self, keep: &HashSet<ObjectKey>) {
        ApiDryRun::retain(self, keep)
    }

    fn entries(&self) -> usize {
        ApiDryRun::entries(self)
    }
}

impl DryRun for Arc<dyn DryRunCache> {
    async fn dry_run(&self, desired: &DesiredObject, live: &Value) -> Result<Value, DriftError> {
        self.confirm(desired, live).await
    }
}
