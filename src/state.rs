//! What gitopsd must remember across restarts, per tier, kept in the cluster: the inventory
//! (every object it applied, with the digest it applied), the last applied and last healthy
//! revisions, and a revision it rolled back from (not retried until git moves).

use std::collections::BTreeMap;

use crate::live::ObjectKey;

/// A tier's remembered state. `Default` is a tier gitopsd never synced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierState {
    /// Object -> the digest of the manifest last applied (`DesiredObject::digest`).
    pub inventory: BTreeMap<ObjectKey, String>,
    pub last_applied_revision: Option<String>,
    pub last_healthy_revision: Option<String>,
    /// A revision that was rolled back because it did not become healthy in time.
    pub failed_revision: Option<String>,
    pub rollbacks: u64,
}
