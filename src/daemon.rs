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
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::activity::{Activity, Observers};
use crate::config::Config;
use crate::http::{Secret, SecretFileError, Webhook, WebhookStats};
use crate::leader::{Elector, LeaderView};
use crate::metrics::Metrics;
use crate::reconcile::{Checkouts, TierReconciler};
use crate::source::{FetchReport, Poller, Source, SourceError};
use crate::state::{StateError, StateStore};
use crate::status::StatusHandle;

/// Live changes arriving within this time are handled by one reconcile.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// How long in-flight applies get to finish after SIGTERM before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
/// A ref with no successful fetch for this many poll intervals (plus one fetch timeout) is
/// stale: its tiers turn `Failed` whatever their objects look like, and say so.
pub const STALE_INTERVALS: u32 = 3;

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
}

/// What the HTTP side reads and pokes: the tiers' status and their "sync now" triggers.
#[derive(Clone)]
pub struct Handles {
    pub tiers: Vec<(String, StatusHandle)>,
    pub sync_now: HashMap<String, Arc<Notify>>,
    pub fetch_now: Arc<Notify>,
    pub observers: Observers,
    /// The bearer token of `POST /api/v1/tiers/{tier}/sync` (`http.tokenFile`); without one
    /// the endpoint answers 403.
    pub api_token: Option<Secret>,
    /// The push webhook (`source.webhookSecretFile`); without a secret `/webhook/git` is 404.
    pub webhook: Option<Arc<Webhook>>,
    /// Webhook deliveries per result, for `/metrics`.
    pub webhook_stats: Arc<WebhookStats>,
    pub metrics: Option<Arc<Metrics>>,
    /// Per tier, the switch `?overrideWindow=true` sets before it triggers the sync.
    pub window_override: HashMap<String, Arc<std::sync::atomic::AtomicBool>>,
    /// Who leads (always this replica without leader election): only the leader reconciles,
    /// and `POST .../sync` on another replica answers 503 naming the leader.
    pub leader: watch::Receiver<LeaderView>,
}

#[derive(Clone)]
enum TierEvent {
    Revision(String),
    FetchFailed(String),
}

/// Runs until `shutdown` is cancelled; then lets every tier finish or stop its apply.
pub async fn run(
    config: Config,
    client: Client,
    options: DaemonOptions,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    // The mirror of the source URL under the workdir, held until the daemon stops: a second
    // daemon on it is refused before it touches anything (the Lease included).
    let source_dir = crate::source::mirror_dir(&options.workdir, &config.source.url);
    let _mirror_lock = crate::source::MirrorLock::acquire(&source_dir, &config.source.url)?;
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
    let stop_elector = CancellationToken::new();
    let (leader_rx, elector_task) = if config.leader_election.enabled || options.leader_elect {
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
        let (tx, rx) = watch::channel(elector.initial_view());
        let task = tokio::spawn(elector.run(tx, stop_elector.clone()));
        (rx, Some(task))
    } else {
        let (tx, rx) = watch::channel(LeaderView::always(&identity));
        // Kept open for the daemon's life: a closed channel would read as "no change".
        std::mem::forget(tx);
        (rx, None)
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
    let mut handles = Handles {
        tiers: Vec::new(),
        sync_now: HashMap::new(),
        fetch_now: fetch_now.clone(),
        observers: observers.clone(),
        api_token,
        webhook,
        webhook_stats: Arc::new(WebhookStats::default()),
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
    stop_elector.cancel();
    if let Some(task) = elector_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
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

/// Why the fetch failed, for the whole repo or for one followed ref.
fn fetch_error(report: &FetchReport) -> Option<String> {
    match &report.result {
        Err(e) => Some(e.to_string()),
        Ok(outcome) => outcome.refs.iter().find_map(|r| {
            r.result
                .as_ref()
                .err()
                .map(|e| format!("{}: {e}", r.git_ref))
        }),
    }
}

fn dispatch(
    report: &FetchReport,
    senders: &[(String, mpsc::Sender<TierEvent>)],
    freshness: &Freshness,
) {
    for (git_ref, tx) in senders {
        let event = match &report.result {
            Ok(outcome) => match outcome.get(git_ref) {
                Some(Ok(update)) => TierEvent::Revision(update.commit.to_string()),
                Some(Err(e)) => TierEvent::FetchFailed(freshness.failure(git_ref, &e.to_string())),
                None => continue,
            },
            Err(e) => TierEvent::FetchFailed(freshness.failure(git_ref, &e.to_string())),
        };
        // A full queue means the tier is busy; the next poll says the same again.
        let _ = tx.try_send(event);
    }
}

/// When each followed ref last fetched well, and what the tiers' status says of it.
///
/// "Synced" must never hide a source that stopped answering: a failed fetch already makes its
/// tiers `Failed` (the reconcile keeps the fetch error), and past `stale_after` without a
/// successful fetch the ref is stale: `source.stale` in the status, `gitopsd_source_stale`,
/// and the tiers' error says how long it has been. The watchdog ([`Freshness::check`]) does
/// that on its own timer, so it holds even when no fetch report comes at all.
struct Freshness {
    url: String,
    stale_after: Duration,
    started: Instant,
    /// Per ref, the last successful fetch.
    last_ok: HashMap<String, (Instant, chrono::DateTime<chrono::Utc>)>,
    /// Per ref, the last fetch error since then.
    last_error: HashMap<String, String>,
}

impl Freshness {
    fn new(url: &str, stale_after: Duration) -> Freshness {
        Freshness {
            url: url.to_owned(),
            stale_after,
            started: Instant::now(),
            last_ok: HashMap::new(),
            last_error: HashMap::new(),
        }
    }

    /// Records a fetch report in the status of each tier it concerns, and reports rewrites.
    fn record(
        &mut self,
        report: &FetchReport,
        tiers: &[(String, String, StatusHandle)],
        observers: &Observers,
    ) {
        let now = chrono::Utc::now();
        for (tier, git_ref, status) in tiers {
            let result = match &report.result {
                Ok(outcome) => match outcome.get(git_ref) {
                    Some(Ok(update)) => Ok(*update),
                    Some(Err(e)) => Err(e.to_string()),
                    None => continue,
                },
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(update) => {
                    self.last_ok.insert(git_ref.clone(), (Instant::now(), now));
                    self.last_error.remove(git_ref);
                    let rewrite = match (update.rewrite, update.previous) {
                        (true, Some(from)) => Some(crate::status::Rewrite {
                            git_ref: git_ref.clone(),
                            from: from.to_string(),
                            to: update.commit.to_string(),
                            at: now,
                        }),
                        _ => None,
                    };
                    if let Some(r) = &rewrite {
                        warn!(tier = %tier, git_ref = %git_ref, from = %r.from, to = %r.to, "the history of the followed ref was rewritten (force-push)");
                        observers.emit(Activity::HistoryRewritten {
                            tier: tier.clone(),
                            git_ref: git_ref.clone(),
                            from: r.from.clone(),
                            to: r.to.clone(),
                        });
                    }
                    status.update(|s| {
                        s.source.last_attempt_at = Some(now);
                        s.source.last_fetch_at = Some(now);
                        s.source.fetch_error = None;
                        s.source.stale = false;
                        if let Some(r) = rewrite {
                            s.source.rewrites += 1;
                            s.source.last_rewrite = Some(r);
                        }
                    });
                }
                Err(e) => {
                    self.last_error.insert(git_ref.clone(), e.clone());
                    let stale = self.stale_for(git_ref).is_some();
                    status.update(|s| {
                        s.source.last_attempt_at = Some(now);
                        s.source.fetch_error = Some(e);
                        s.source.stale = stale;
                    });
                }
            }
        }
    }

    /// How long `git_ref` has gone without a successful fetch, if that is past the limit.
    fn stale_for(&self, git_ref: &str) -> Option<Duration> {
        let since = self
            .last_ok
            .get(git_ref)
            .map_or(self.started, |(at, _)| *at);
        let age = since.elapsed();
        (age > self.stale_after).then_some(age)
    }

    /// The error a tier gets for a failed fetch of `git_ref`: the stale note first when the
    /// ref has gone unanswered for long, so the message does not flip between the two.
    fn failure(&self, git_ref: &str, error: &str) -> String {
        match self.stale_note(git_ref) {
            Some(note) => format!("{note}; the last error: {error}"),
            None => error.to_owned(),
        }
    }

    fn stale_note(&self, git_ref: &str) -> Option<String> {
        let age = self.stale_for(git_ref)?;
        let age = humantime::format_duration(Duration::from_secs(age.as_secs()));
        let since = match self.last_ok.get(git_ref) {
            Some((_, at)) => format!(
                "since {}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => "since the daemon started".to_owned(),
        };
        Some(format!(
            "source stale: no fetch of {git_ref} from {} has succeeded for {age} ({since}; the limit is {STALE_INTERVALS} poll intervals plus source.fetchTimeout); the last good revision stays applied and prune waits",
            self.url
        ))
    }

    /// The watchdog: marks stale refs in their tiers' status and fails those tiers, even if
    /// the poller has reported nothing (a fetch stuck past every deadline).
    fn check(
        &self,
        tiers: &[(String, String, StatusHandle)],
        senders: &[(String, mpsc::Sender<TierEvent>)],
    ) {
        for ((_, git_ref, status), (_, tx)) in tiers.iter().zip(senders) {
            let Some(note) = self.stale_note(git_ref) else {
                continue;
            };
            let error = match self.last_error.get(git_ref) {
                Some(e) => format!("{note}; the last error: {e}"),
                None => format!("{note}; no fetch has finished since"),
            };
            if !status.read(|s| s.source.stale) {
                warn!(git_ref = %git_ref, "{note}");
            }
            status.update(|s| {
                s.source.stale = true;
                if s.source.fetch_error.is_none() {
                    s.source.fetch_error = Some(error.clone());
                }
            });
            let _ = tx.try_send(TierEvent::FetchFailed(error));
        }
    }
}

/// One tier for the daemon's life: on standby while another replica leads (keeping the newest
/// revision it was told of), reconciling while this one leads. Each term of leadership gets a
/// fresh [`TierReconciler`], which reads the tier state again (the previous leader wrote it),
/// and a token cancelled at shutdown or as soon as leadership is lost: the current apply stops
/// between objects, and after a loss no state is written.
async fn tier_task(
    make: impl Fn() -> TierReconciler,
    status: StatusHandle,
    mut events: mpsc::Receiver<TierEvent>,
    trigger: Arc<Notify>,
    interval: Duration,
    shutdown: CancellationToken,
    mut leader: watch::Receiver<LeaderView>,
) {
    let mut latest: Option<TierEvent> = None;
    loop {
        // Standby.
        loop {
            let view = leader.borrow_and_update().clone();
            if view.leading {
                break;
            }
            let note = view.standby_note();
            status.update(|s| s.standby = note);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = leader.changed() => if changed.is_err() { return },
                event = events.recv() => match event {
                    Some(e) => latest = Some(e),
                    None => return,
                },
                // A sync asked of a replica that does not lead does nothing.
                _ = trigger.notified() => {}
            }
        }
        status.update(|s| s.standby = None);
        info!("leading: reconciling this tier");
        let term = shutdown.child_token();
        let lost = CancellationToken::new();
        let watcher = {
            let (mut leader, term, lost) = (leader.clone(), term.clone(), lost.clone());
            tokio::spawn(async move {
                loop {
                    if !leader.borrow_and_update().leading {
                        lost.cancel();
                        term.cancel();
                        return;
                    }
                    if leader.changed().await.is_err() {
                        return;
                    }
                }
            })
        };
        let mut reconciler = make();
        reconciler.set_write_guard(lost.clone());
        tier_loop(
            &mut reconciler,
            &mut events,
            latest.take(),
            &trigger,
            interval,
            &term,
        )
        .await;
        watcher.abort();
        if shutdown.is_cancelled() || !lost.is_cancelled() {
            break;
        }
        warn!("leadership lost: this tier stopped reconciling and writes nothing");
    }
    info!("tier stopped");
}

async fn tier_loop(
    reconciler: &mut TierReconciler,
    events: &mut mpsc::Receiver<TierEvent>,
    mut first: Option<TierEvent>,
    trigger: &Notify,
    interval: Duration,
    cancel: &CancellationToken,
) {
    let mut offered: Option<String> = None;
    let mut wake_at: Option<Instant> = None;
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Subscribed once, not per reconcile: a fresh receiver takes every change made before it
    // as seen, so a live edit during a reconcile waited for the next poll (issue 21). The
    // reconciler subscribed it when its live cache started, so nothing since then is missed.
    let mut changes: Option<watch::Receiver<u64>> = None;
    loop {
        if changes.is_none() {
            changes = reconciler.live_changes();
        }
        let pending = first.take();
        let reason = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            event = async { match pending { Some(e) => Some(e), None => events.recv().await } } => match event {
                None => break,
                Some(TierEvent::FetchFailed(e)) => {
                    warn!(error = %e, "fetch failed; the last good revision stays and prune waits");
                    reconciler.source_failed(&e);
                    continue;
                }
                Some(TierEvent::Revision(rev)) => {
                    if offered.as_deref() == Some(rev.as_str()) {
                        reconciler.source_recovered();
                        continue;
                    }
                    info!(revision = %rev, "new revision");
                    reconciler.offer_revision(&rev).await;
                    offered = Some(rev);
                    "revision"
                }
            },
            _ = trigger.notified() => "trigger",
            _ = ticker.tick() => "interval",
            _ = sleep_until(wake_at) => "deadline",
            _ = changed(&mut changes) => {
                // Coalesce a burst (a rollout writes status many times): what changed during
                // the pause is read by this reconcile, so it is marked seen; a change after
                // this point wakes the next one.
                tokio::time::sleep(DEBOUNCE).await;
                if let Some(rx) = changes.as_mut() {
                    rx.borrow_and_update();
                }
                "live-change"
            }
        };
        let out = reconciler.reconcile(reason, cancel).await;
        wake_at = out.wake_at.map(Instant::from_std);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn changed(rx: &mut Option<watch::Receiver<u64>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::activity::Observer;

    fn oid(c: char) -> git2::Oid {
        git2::Oid::from_str(&c.to_string().repeat(40)).expect("oid")
    }

    fn report(update: Result<crate::source::RefUpdate, ()>) -> FetchReport {
        use crate::source::{FetchOutcome, RefOutcome};
        let result = match update {
            Ok(u) => Ok(FetchOutcome {
                refs: vec![RefOutcome {
                    git_ref: "main".into(),
                    result: Ok(u),
                }],
            }),
            Err(()) => Err(SourceError::TimedOut {
                url: "https://git.example/c.git".into(),
                refs: "main".into(),
                after: Duration::from_secs(3),
            }),
        };
        FetchReport {
            result,
            duration: Duration::from_millis(5),
            next_in: Duration::from_secs(1),
        }
    }

    #[derive(Default)]
    struct Seen(Mutex<Vec<Activity>>);

    impl Observer for Seen {
        fn observe(&self, activity: &Activity) {
            if let Ok(mut s) = self.0.lock() {
                s.push(activity.clone());
            }
        }
    }

    #[tokio::test]
    async fn fetches_are_recorded_in_the_status_and_a_rewrite_is_told_to_the_observers() {
        let status = StatusHandle::new("dev");
        let tiers = vec![("dev".to_owned(), "main".to_owned(), status.clone())];
        let seen = Arc::new(Seen::default());
        let observers = Observers::new(vec![seen.clone()]);
        let mut freshness = Freshness::new("https://git.example/c.git", Duration::from_secs(3600));

        let moved = crate::source::RefUpdate {
            commit: oid('a'),
            previous: Some(oid('b')),
            changed: true,
            rewrite: true,
        };
        freshness.record(&report(Ok(moved)), &tiers, &observers);
        let s = status.snapshot().source;
        assert!(s.last_fetch_at.is_some() && s.fetch_error.is_none() && !s.stale);
        assert_eq!(s.rewrites, 1);
        let r = s.last_rewrite.expect("the rewrite");
        assert_eq!((r.from, r.to), (oid('b').to_string(), oid('a').to_string()));
        let activity = seen.0.lock().unwrap().clone();
        assert!(
            matches!(&activity[..], [Activity::HistoryRewritten { tier, git_ref, .. }] if tier == "dev" && git_ref == "main"),
            "{activity:?}"
        );

        // A failed fetch keeps the last good time and says why; no rewrite is told twice.
        let before = status.snapshot().source.last_fetch_at;
        freshness.record(&report(Err(())), &tiers, &observers);
        let s = status.snapshot().source;
        assert_eq!(s.last_fetch_at, before);
        assert!(
            s.fetch_error
                .expect("the error")
                .contains("source.fetchTimeout")
        );
        assert!(!s.stale, "one failure is not stale");
        assert_eq!(seen.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_source_unanswered_past_the_limit_is_stale_and_fails_its_tiers_even_with_no_report() {
        let status = StatusHandle::new("dev");
        let tiers = vec![("dev".to_owned(), "main".to_owned(), status.clone())];
        let (tx, mut rx) = mpsc::channel(4);
        let senders = vec![("main".to_owned(), tx)];
        let freshness = Freshness::new("https://git.example/c.git", Duration::from_millis(20));
        // Not yet: the watchdog leaves a fresh daemon alone.
        freshness.check(&tiers, &senders);
        assert!(rx.try_recv().is_err());
        assert!(!status.snapshot().source.stale);

        // No fetch report at all (a fetch stuck past every deadline), past the limit.
        tokio::time::sleep(Duration::from_millis(30)).await;
        freshness.check(&tiers, &senders);
        let s = status.snapshot().source;
        assert!(s.stale);
        match rx.try_recv() {
            Ok(TierEvent::FetchFailed(e)) => {
                assert!(
                    e.starts_with("source stale: no fetch of main from https://git.example/c.git"),
                    "{e}"
                );
                assert!(
                    e.contains("since the daemon started") && e.contains("prune waits"),
                    "{e}"
                );
            }
            _ => panic!("the tier is told its source failed"),
        }
        // A fetch error while stale carries the note first, so the message stays put.
        let e = freshness.failure("main", "connection refused");
        assert!(
            e.starts_with("source stale:") && e.ends_with("the last error: connection refused"),
            "{e}"
        );
    }

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
