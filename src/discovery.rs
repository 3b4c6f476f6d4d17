//! Which kinds the API server serves, and whether each is namespaced: the [`KindScopes`]
//! snapshot the render stamps namespaces and validation judges scope by.
//!
//! A hard-coded list of cluster-scoped kinds lags every Kubernetes release and knows no CRD
//! installed in the cluster; a kind it misses gets the tier namespace stamped and is created
//! cluster-wide. So the daemon and the CLI ask the API server (aggregated discovery: two
//! requests), keep the answer, and ask again every [`REFRESH_EVERY`] and when a render meets a
//! kind the snapshot does not know (a CRD installed since), at most every [`MISS_REFRESH_AFTER`].

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::discovery::{Discovery, Scope};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::render::{KindScope, KindScopes};

/// How long a snapshot is used before it is refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// The shortest time between two refreshes for a kind the snapshot did not know, so a repo
/// with a kind no server serves does not turn every render into a discovery.
pub const MISS_REFRESH_AFTER: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
#[error("API discovery failed: {source}")]
pub struct DiscoveryError {
    #[source]
    source: kube::Error,
}

/// Every (apiVersion, kind) the API server serves, at every served version, with its scope.
pub async fn discover(client: &Client) -> Result<KindScopes, DiscoveryError> {
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => d,
        // A server without aggregated discovery (before 1.26): one request per group.
        Err(e) => {
            debug!(error = %e, "aggregated discovery failed; asking each group");
            Discovery::new(client.clone())
                .run()
                .await
                .map_err(|source| DiscoveryError { source })?
        }
    };
    let mut kinds = Vec::new();
    for group in discovery.groups() {
        for version in group.versions() {
            for (resource, caps) in group.versioned_resources(version) {
                let scope = match caps.scope {
                    Scope::Namespaced => KindScope::Namespaced,
                    Scope::Cluster => KindScope::Cluster,
                };
                kinds.push((resource.api_version, resource.kind, scope));
            }
        }
    }
    Ok(KindScopes::discovered(kinds))
}

struct Cached {
    scopes: Arc<KindScopes>,
    at: Instant,
    /// Counts the snapshots whose content differed from the one before.
    generation: u64,
}

impl Cached {
    /// Takes a fresh answer; the generation moves only when the answer changed.
    fn replace(slot: &mut Option<Cached>, scopes: KindScopes) -> Arc<KindScopes> {
        let generation = match slot.as_ref() {
            Some(c) if *c.scopes == scopes => c.generation,
            Some(c) => c.generation + 1,
            None => 0,
        };
        let scopes = Arc::new(scopes);
        *slot = Some(Cached {
            scopes: scopes.clone(),
            at: Instant::now(),
            generation,
        });
        scopes
    }
}

/// The snapshot a daemon renders with, shared by its renders and refreshed as said above.
pub struct ScopeCache {
    client: Client,
    cached: Mutex<Option<Cached>>,
}

impl ScopeCache {
    pub fn new(client: Client) -> ScopeCache {
        ScopeCache {
            client,
            cached: Mutex::new(None),
        }
    }

    /// A cache that already holds `scopes` (tests: renders that need no API discovery).
    #[cfg(test)]
    pub fn seeded(client: Client, scopes: KindScopes) -> ScopeCache {
        let mut cached = None;
        Cached::replace(&mut cached, scopes);
        ScopeCache {
            client,
            cached: Mutex::new(cached),
        }
    }

    /// The snapshot to render with: discovered now when there is none or it is older than
    /// [`REFRESH_EVERY`]. A failed refresh keeps the old snapshot (kinds rarely change scope:
    /// never, in fact); with no snapshot at all it is an error, and the caller renders nothing.
    pub async fn current(&self) -> Result<Arc<KindScopes>, DiscoveryError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.at.elapsed() < REFRESH_EVERY
        {
            return Ok(c.scopes.clone());
        }
        match discover(&self.client).await {
            Ok(scopes) => {
                let scopes = Cached::replace(&mut cached, scopes);
                debug!(kinds = scopes.len(), "API discovery refreshed");
                Ok(scopes)
            }
            Err(e) => match cached.as_mut() {
                Some(c) => {
                    warn!(error = %e, "API discovery failed; the previous answer is kept");
                    // Not asked again at once: the next try is after the usual interval.
                    c.at = Instant::now();
                    Ok(c.scopes.clone())
                }
                None => Err(e),
            },
        }
    }

    /// Moves each time discovery answers differently from before (a CRD installed or
    /// removed): a revision refused for a kind of unknown scope is worth rendering again.
    pub async fn generation(&self) -> u64 {
        self.cached
            .lock()
            .await
            .as_ref()
            .map_or(0, |c| c.generation)
    }

    /// A render met a kind the snapshot does not know: a new snapshot if the one held is older
    /// than [`MISS_REFRESH_AFTER`] and discovery answers; `None` otherwise (render with what
    /// there is: the unknown kind blocks).
    pub async fn refresh_on_miss(&self) -> Option<Arc<KindScopes>> {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| c.at.elapsed() < MISS_REFRESH_AFTER)
        {
            return None;
        }
        match discover(&self.client).await {
            Ok(scopes) => {
                let scopes = Cached::replace(&mut cached, scopes);
                info!(
                    kinds = scopes.len(),
                    "API discovery refreshed for a kind it did not know"
                );
                Some(scopes)
            }
            Err(e) => {
                warn!(error = %e, "API discovery failed");
                if let Some(c) = cached.as_mut() {
                    c.at = Instant::now();
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(kinds: &[(&str, &str, KindScope)]) -> KindScopes {
        KindScopes::discovered(
            kinds
                .iter()
                .map(|(av, k, s)| ((*av).to_owned(), (*k).to_owned(), *s)),
        )
    }

    #[tokio::test]
    async fn the_generation_moves_only_when_discovery_answers_differently() {
        let mut slot = None;
        let cm = ("v1", "ConfigMap", KindScope::Namespaced);
        let probe = ("example.com/v1", "Probe", KindScope::Cluster);
        Cached::replace(&mut slot, scopes(&[cm]));
        assert_eq!(slot.as_ref().map(|c| c.generation), Some(0));
        Cached::replace(&mut slot, scopes(&[cm]));
        assert_eq!(slot.as_ref().map(|c| c.generation), Some(0));
        let now = Cached::replace(&mut slot, scopes(&[cm, probe]));
        assert_eq!(slot.as_ref().map(|c| c.generation), Some(1));
        assert_eq!(now.get("example.com/v1", "Probe"), Some(KindScope::Cluster));
    }
}
