//! The I/O a tier's reconcile does, behind the traits of the modules that own it: the daemon
//! wires the API server in ([`Backends::kube`]); the scenario tests wire in a fake cluster
//! (`harness`).

use std::sync::Arc;

use crate::apply::{Applier, Apply};
use crate::config::TierConfig;
use crate::drift::{ApiDryRun, DryRunCache};
use crate::live::{ApiLive, Cluster, KubeCluster};
use crate::state::{StateStorage, StateStore};

/// What a [`super::TierReconciler`] reads and writes through.
#[derive(Clone)]
pub struct Backends {
    /// Starts the live cache; prune's reads straight from the API server.
    pub cluster: Arc<dyn Cluster>,
    /// Applies, deletes, removes foreign fields.
    pub applier: Arc<dyn Apply>,
    /// The dry-run confirmation of drift, with its cache of answers.
    pub dry_run: Arc<dyn DryRunCache>,
    /// The tier states (this tier's, and a gate's `promoteFrom` tier's).
    pub store: Arc<dyn StateStorage>,
}

impl Backends {
    /// The API server behind `client`, with the tier's state kept by `store`.
    pub fn kube(client: kube::Client, tier: &TierConfig, store: StateStore) -> Backends {
        let api = ApiLive::new(client);
        Backends {
            cluster: Arc::new(KubeCluster::new(api.clone())),
            applier: Arc::new(Applier::new(api.clone(), &tier.name, &tier.apply)),
            dry_run: Arc::new(ApiDryRun::new(api)),
            store: Arc::new(store),
        }
    }
}
