//! `gitopsd run`: the source poller, one reconcile task per tier, and the status endpoint,
//! wired together until SIGTERM.
//!
//! Each tier's task owns its [`TierReconciler`], so reconciles of one tier never overlap; a
//! reconcile starts on a new revision, a change to a watched live object, the poll interval,
//! a health deadline, or a "sync now" trigger.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::activity::{Activity, Observers};
use crate::config::Config;
use crate::http::{AppState, Secret, SecretFileError, Webhook};
use crate::leader::Elector;
use crate::metrics::Metrics;
use crate::reconcile::{Checkouts, TierReconciler};
use crate::source::{FetchReport, Poller, Source, SourceError};
use crate::state::{StateError, StateStore};
use crate::status::StatusHandle;

mod freshness;
mod leadership;
mod tier;

pub use freshness::STALE_INTERVALS;
use freshness::{Freshness, dispatch, fetch_error};
use leadership::Leadership;
use tier::{TierEvent, tier_task};

/// How long in-flight applies get to finish after SIGTERM before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    Secret(#[from] SecretFileError),
    #[error(
        "tier {tier}: cannot build the client that impersonates ServiceAccount {service_account}: {source}"
    )]
    Impersonation {
        tier: String,
        service_account: String,
        #[source]
        source: crate::cluster::ClusterError,
    },
    #[error(
        "tier {tier}: serviceAccount {service_account} is set, but this daemon has no client config to impersonate it with"
    )]
    NoClientConfig {
        tier: String,
        service_account: String,
    },
    #[error(
        "tier {tier} lists namespace {namespace:?}, where the tiers' state ConfigMaps live: a tier that may write there could rewrite another tier's inventory (what it holds, and so what it prunes); keep the state in a namespace no tier lists (state.namespace)"
    )]
    StateNamespaceInTier { tier: String, namespace: String },
    #[error("cannot listen on {addr} for the status endpoint: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Where `gitopsd run` keeps the mirror and exports.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub workdir: PathBuf,
    /// Who records what happens (metrics, Kubernetes Events, the audit log).
    pub observers: Observers,
    /// Served at `GET /metrics` (`None`: answered 404); also one of `observers`.
    pub metrics: Option<Arc<Metrics>>,
    /// `--leader-elect`: elect a leader even when the config's `leaderElection.enabled` is off.
    pub leader_elect: bool,
    /// What the daemon's client was built from: each tier with `serviceAccount` gets a client
    /// from it that impersonates the ServiceAccount. `None`: a tier with `serviceAccount`
    /// is a start-up error (never a silent fall-back to the daemon's identity).
    pub kube_config: Option<kube::Config>,
    /// Counts the tiers' impersonating clients' requests like the daemon's own.
    pub requests: Option<crate::live::RequestCounter>,
    /// The source's directory under `workdir`, already held by the caller (who took it before
    /// opening the audit log kept there, so a second daemon is refused naming the mirror);
    /// `None`: `run` takes it.
    pub mirror_lock: Option<Arc<crate::source::MirrorLock>>,
}

/// Runs until `shutdown` is cancelled; then lets every tier finish or stop its apply.
pub async fn run(
    config: Config,
    client: Client,
    mut options: DaemonOptions,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    // The mirror of the source URL under the workdir, held until the daemon stops: a second
    // daemon on it is refused before it touches anything (the Lease included).
    let source_dir = crate::source::mirror_dir(&options.workdir, &config.source.url);
    let _mirror_lock = match options.mirror_lock.take() {
        Some(held) => held,
        None => Arc::new(crate::source::MirrorLock::acquire(
            &source_dir,
            &config.source.url,
        )?),
    };
    // Secrets first: a missing file is a start-up error, before anything is touched.
    let api_token = match &config.http.token_file {
        Some(path) => Some(Secret::read(
            path,
            "http.tokenFile",
            "turn sync over the API off",
        )?),
        None => None,
    };
    let webhook_secret = match &config.source.webhook_secret_file {
        Some(path) => Some(Secret::read(
            path,
            "source.webhookSecretFile",
            "turn the push webhook off",
        )?),
        None => None,
    };
    if api_token.is_none() {
        info!("sync over the API is off: http.tokenFile is not set");
    }
    if webhook_secret.is_none() {
        info!("the push webhook is off: source.webhookSecretFile is not set");
    }

    // Each tier's writer, before anything is touched: a tier with `serviceAccount` writes
    // only as that ServiceAccount.
    let mut writers: HashMap<String, Client> = HashMap::new();
    for tier in &config.tiers {
        let Some(sa) = &tier.service_account else {
            warn!(
                tier = %tier.name,
                "no serviceAccount: the tier writes with the daemon's own identity, bounded by gitopsd's validation alone; set tiers[].serviceAccount to have RBAC bound it too"
            );
            continue;
        };
        let Some(kube_config) = &options.kube_config else {
            return Err(DaemonError::NoClientConfig {
                tier: tier.name.clone(),
                service_account: sa.to_string(),
            });
        };
        let writer = crate::cluster::impersonating(kube_config, sa, options.requests.as_ref())
            .map_err(|source| DaemonError::Impersonation {
                tier: tier.name.clone(),
                service_account: sa.to_string(),
                source,
            })?;
        info!(tier = %tier.name, service_account = %sa, "the tier writes as its ServiceAccount (impersonated)");
        // Said once at start-up, not as one 403 per object on every sync.
        if crate::access::may_impersonate(&client, sa).await == Some(false) {
            warn!(
                tier = %tier.name,
                service_account = %sa,
                "the daemon's identity may not impersonate the tier's ServiceAccount: every write of the tier will be refused; grant it the rule {}",
                crate::access::impersonate_rule(sa)
            );
        }
        writers.insert(tier.name.clone(), writer);
    }

    let namespace = StateStore::default_namespace(&config.state);
    // The inventories are what says which objects a tier holds: no tier writes beside them.
    // (config.rs refuses an explicit state.namespace listed by a tier; this also covers the
    // default, the namespace the daemon runs in.)
    if let Some(tier) = config
        .tiers
        .iter()
        .find(|t| t.namespaces.contains(&namespace))
    {
        return Err(DaemonError::StateNamespaceInTier {
            tier: tier.name.clone(),
            namespace,
        });
    }
    let store = StateStore::new(client.clone(), &namespace);
    store.ensure_namespace().await?;
    info!(namespace = %namespace, "tier state is kept in ConfigMaps gitopsd-state-<tier>");

    // Leader election: the elector runs until every tier has stopped (state saved), then
    // releases the Lease.
    let identity = crate::leader::default_identity();
    let (leader_rx, leadership) = if config.leader_election.enabled || options.leader_elect {
        let lease_ns = config
            .leader_election
            .namespace
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| namespace.clone());
        let elector = Elector::new(
            client.clone(),
            &lease_ns,
            &config.leader_election.lease_name,
            &identity,
        );
        Leadership::elected(elector)
    } else {
        Leadership::always(&identity)
    };

    // A fetch cut short by the last stop (SIGKILL, or a hung fetch left behind at SIGTERM)
    // may have left a ref locked; nothing else uses the mirror yet.
    match Source::clear_stale_locks(&source_dir) {
        Ok(removed) if !removed.is_empty() => {
            warn!(files = ?removed, "removed lock files a stopped fetch left in the git mirror")
        }
        Ok(_) => {}
        Err(e) => {
            warn!(error = %e, "cannot clear stale lock files in the git mirror; fetches of a locked ref will fail")
        }
    }
    let source = Source::new(&config.source, source_dir.clone())?;
    let url = source.url().to_owned();
    // Exports read the mirror the poller writes: a second handle, used between fetches.
    let exporter: Arc<dyn Checkouts> =
        Arc::new(Mutex::new(Source::new(&config.source, source_dir.clone())?));
    let mut refs: Vec<String> = config.tiers.iter().map(|t| t.git_ref.clone()).collect();
    refs.sort();
    refs.dedup();
    let webhook = webhook_secret.map(|secret| Arc::new(Webhook::new(secret, refs.clone())));
    let reopen = {
        let source_config = config.source.clone();
        move || Source::new(&source_config, source_dir.clone())
    };
    let poller = Poller::new(source, refs, config.source.interval).reopen_with(reopen);
    let fetch_now = poller.trigger();
    let (fetch_tx, mut fetch_rx) = mpsc::channel::<FetchReport>(4);
    let poll_task = tokio::spawn(async move {
        if let Err(e) = poller.run(fetch_tx).await {
            warn!(error = %e, "the source poller stopped");
        }
    });

    // Each tier's "sync now" trigger, made first: a tier that becomes healthy wakes the tiers
    // promoted from it, so a promotion does not wait for their next interval.
    let triggers: HashMap<String, Arc<Notify>> = config
        .tiers
        .iter()
        .map(|t| (t.name.clone(), Arc::new(Notify::new())))
        .collect();
    let observers = options
        .observers
        .with(Arc::new(PromotionWaker::new(&config, &triggers)));
    let mut handles = AppState {
        tiers: Vec::new(),
        sync_now: HashMap::new(),
        fetch_now: fetch_now.clone(),
        observers: observers.clone(),
        api_token,
        webhook,
        metrics: options.metrics.clone(),
        window_override: HashMap::new(),
        leader: leader_rx.clone(),
    };
    let mut senders: Vec<(String, mpsc::Sender<TierEvent>)> = Vec::new();
    // Each tier's ref and status, for what the daemon itself records of the source.
    let mut sources: Vec<(String, String, StatusHandle)> = Vec::new();
    let mut tasks = Vec::new();
    let last = config.tiers.len().saturating_sub(1);
    // One discovery snapshot for every tier (which kinds are namespaced; see crate::discovery).
    let scopes = Arc::new(crate::discovery::ScopeCache::new(client.clone()));
    for (i, tier) in config.tiers.iter().enumerate() {
        let status = StatusHandle::new(&tier.name);
        let trigger = triggers
            .get(&tier.name)
            .cloned()
            .unwrap_or_else(|| Arc::new(Notify::new()));
        let (tx, rx) = mpsc::channel(16);
        // Shared by every term's reconciler: a sync request sets it, the next reconcile takes it.
        let window_override = Arc::new(std::sync::atomic::AtomicBool::new(false));
        handles
            .window_override
            .insert(tier.name.clone(), window_override.clone());
        let make = {
            let (tier, client, store, exporter, status, observers) = (
                tier.clone(),
                client.clone(),
                store.clone(),
                exporter.clone(),
                status.clone(),
                observers.clone(),
            );
            let publish_healthy = config.source.publish_healthy;
            let writer = writers.get(&tier.name).cloned();
            let limits = config.render.limits();
            let scopes = scopes.clone();
            move || {
                let mut reconciler = TierReconciler::new(
                    tier.clone(),
                    i == last,
                    client.clone(),
                    store.clone(),
                    exporter.clone(),
                    status.clone(),
                    observers.clone(),
                );
                if let Some(writer) = &writer {
                    reconciler.set_write_client(writer.clone());
                }
                reconciler.set_publish_healthy(publish_healthy);
                reconciler.set_limits(limits.clone());
                reconciler.set_window_override(window_override.clone());
                reconciler.set_scope_cache(scopes.clone());
                reconciler
            }
        };
        handles.tiers.push((tier.name.clone(), status.clone()));
        handles.sync_now.insert(tier.name.clone(), trigger.clone());
        senders.push((tier.git_ref.clone(), tx));
        sources.push((tier.name.clone(), tier.git_ref.clone(), status.clone()));
        let span = info_span!("tier", tier = %tier.name);
        tasks.push(tokio::spawn(
            tier_task(
                make,
                status,
                rx,
                trigger,
                config.source.interval,
                shutdown.clone(),
                leader_rx.clone(),
            )
            .instrument(span),
        ));
    }

    let listen = config.http.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(listen);
    info!(address = %format!("http://{addr}"), "status endpoint listening");
    let http = tokio::spawn(crate::http::serve(
        listener,
        handles.clone(),
        shutdown.clone(),
    ));

    // Fetch results go to each tier that follows the ref; a watchdog marks refs stale when
    // no fetch has answered for them in a long time, whether fetches fail or never finish.
    let stale_after = config.source.interval * STALE_INTERVALS + config.source.fetch_timeout;
    let mut freshness = Freshness::new(&url, stale_after);
    let mut watchdog = tokio::time::interval_at(
        Instant::now() + config.source.interval,
        config.source.interval,
    );
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            report = fetch_rx.recv() => {
                let Some(report) = report else { break };
                observers.emit(Activity::Fetched {
                    duration: report.duration,
                    error: fetch_error(&report),
                });
                freshness.record(&report, &sources, &observers);
                dispatch(&report, &senders, &freshness);
            }
            _ = watchdog.tick() => freshness.check(&sources, &senders),
        }
    }
    info!("shutting down: letting each tier finish or stop its apply");
    poll_task.abort();
    let all = futures::future::join_all(tasks);
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        warn!(grace = ?SHUTDOWN_GRACE, "a tier did not stop in time; exiting anyway");
    }
    // Every tier has stopped (and saved its state): the Lease can go to the next replica.
    leadership.stop().await;
    let _ = http.await;
    info!("stopped");
    Ok(())
}

/// Wakes the tiers promoted from a tier when it records a revision healthy: their gate may
/// have just opened.
struct PromotionWaker {
    /// Tier name -> the triggers of the tiers with `promoteFrom` naming it.
    dependents: HashMap<String, Vec<Arc<Notify>>>,
}

impl PromotionWaker {
    fn new(config: &Config, triggers: &HashMap<String, Arc<Notify>>) -> PromotionWaker {
        let mut dependents: HashMap<String, Vec<Arc<Notify>>> = HashMap::new();
        for t in &config.tiers {
            if let (Some(from), Some(trigger)) = (&t.promote_from, triggers.get(&t.name)) {
                dependents
                    .entry(from.clone())
                    .or_default()
                    .push(trigger.clone());
            }
        }
        PromotionWaker { dependents }
    }
}

impl crate::activity::Observer for PromotionWaker {
    fn observe(&self, activity: &Activity) {
        if let Activity::RevisionHealthy { tier, .. } = activity {
            for trigger in self.dependents.get(tier).into_iter().flatten() {
                trigger.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::activity::Observer;

    #[tokio::test]
    async fn a_healthy_tier_wakes_the_tiers_promoted_from_it_and_no_other() {
        let config = Config::parse(
            "source: {url: /tmp/repo}\n\
             tiers:\n\
             \x20 - {name: experimental, ref: main, namespaces: [a]}\n\
             \x20 - {name: validation, ref: main, namespaces: [b], promoteFrom: experimental}\n\
             \x20 - {name: operational, ref: main, namespaces: [c], promoteFrom: validation}\n",
            Path::new("gitopsd.yaml"),
        )
        .expect("config");
        let triggers: HashMap<String, Arc<Notify>> = config
            .tiers
            .iter()
            .map(|t| (t.name.clone(), Arc::new(Notify::new())))
            .collect();
        let waker = PromotionWaker::new(&config, &triggers);
        waker.observe(&Activity::RevisionHealthy {
            tier: "experimental".into(),
            revision: "abc".into(),
            since_arrival: Duration::from_secs(1),
        });
        let woken = |name: &str| {
            let notified = triggers[name].notified();
            futures::FutureExt::now_or_never(notified).is_some()
        };
        assert!(
            woken("validation"),
            "validation is promoted from experimental"
        );
        assert!(!woken("operational"), "operational waits for validation");
        assert!(!woken("experimental"));
    }
}
