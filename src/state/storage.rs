//! Where tier states are kept, as a trait: [`StateStore`] keeps them in ConfigMaps; a test
//! harness keeps them in memory (`reconcile::harness`).

use futures::future::BoxFuture;

use super::{StateError, StateStore, TierState};

/// Reads and writes the [`TierState`] of a tier by name.
pub trait StateStorage: Send + Sync {
    /// The tier's state; an empty one when none was ever written.
    fn load<'a>(&'a self, tier: &'a str) -> BoxFuture<'a, Result<TierState, StateError>>;

    /// Replaces the tier's state with `state`.
    fn save<'a>(
        &'a self,
        tier: &'a str,
        state: &'a TierState,
    ) -> BoxFuture<'a, Result<(), StateError>>;
}

impl StateStorage for StateStore {
    fn load<'a>(&'a self, tier: &'a str) -> BoxFuture<'a, Result<TierState, StateError>> {
        Box::pin(StateStore::load(self, tier))
    }

    fn save<'a>(
        &'a self,
        tier: &'a str,
        state: &'a TierState,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(StateStore::save(self, tier, state))
    }
}
