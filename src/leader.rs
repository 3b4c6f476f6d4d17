//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several replicas exactly
//! one reconciles and writes.
//!
//! The rules, as client-go's leader election has them:
//! - a candidate takes the Lease when it does not exist, when its holder is empty (released),
//!   or when its `renewTime` is older than its `leaseDurationSeconds`;
//! - every write is a create or a `replace` carrying the `resourceVersion` that was read, so of
//!   two candidates racing for one Lease the API server lets exactly one win (409 for the
//!   other);
//! - the holder renews every [`RENEW_PERIOD`]; when it has not renewed for [`RENEW_DEADLINE`]
//!   (well inside [`LEASE_DURATION`]), or a renew meets a conflict, it stops leading at once:
//!   the [`LeaderView`] it publishes turns `leading: false` and the tier tasks cancel their
//!   work before anyone else can take the Lease;
//! - on shutdown the holder releases the Lease (holder cleared), so the next candidate takes it
//!   on its next try instead of waiting for it to expire.
//!
//! Expiry compares the Lease's `renewTime` with this machine's clock: replicas need clocks in
//! step to well under the lease duration (NTP), as every Kubernetes node has.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long a Lease stays valid after its holder's last renew.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews.
pub const RENEW_PERIOD: Duration = Duration::from_secs(5);
/// A holder that could not renew for this long stops leading (before the Lease can expire).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often a candidate (or a holder whose renew failed) tries again.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// One request to the API server gets this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);

/// Who leads, as this replica last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderView {
    /// Leader election is on (off: this replica always leads).
    pub enabled: bool,
    /// This replica holds the Lease.
    pub leading: bool,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// The Lease's holder, if any.
    pub holder: Option<String>,
}

impl LeaderView {
    /// The view of a daemon without leader election: it leads.
    pub fn always(identity: &str) -> LeaderView {
        LeaderView {
            enabled: false,
            leading: true,
            identity: identity.to_owned(),
            holder: Some(identity.to_owned()),
        }
    }

    /// "standby, leader is X" for a replica that does not lead; `None` for the leader.
    pub fn standby_note(&self) -> Option<String> {
        (!self.leading).then(|| match &self.holder {
            Some(h) => format!("standby, leader is {h}"),
            None => "standby, no leader yet".to_owned(),
        })
    }
}

/// This process's identity: the pod's name (`POD_NAME`, from the downward API), or
/// `<hostname>-<pid>` outside a pod.
pub fn default_identity() -> String {
    if let Ok(name) = std::env::var("POD_NAME")
        && !name.trim().is_empty()
    {
        return name.trim().to_owned();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gitopsd".to_owned());
    format!("{host}-{}", std::process::id())
}

/// What one try found.
#[derive(Debug, PartialEq)]
enum Attempt {
    /// This replica holds the Lease (acquired or renewed).
    Leading,
    /// Another replica holds it, valid for `expires_in` more.
    Following {
        holder: Option<String>,
        expires_in: Option<Duration>,
    },
    /// The holder's renew met a conflict: someone else wrote the Lease.
    Lost(String),
}

/// Takes and keeps the Lease `namespace/name` for `identity`.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    namespace: String,
    identity: String,
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
        }
    }

    /// The view before the first try: a candidate that does not lead.
    pub fn initial_view(&self) -> LeaderView {
        LeaderView {
            enabled: true,
            leading: false,
            identity: self.identity.clone(),
            holder: None,
        }
    }

    /// Tries to take or renew the Lease until `stop`; publishes every change of who leads on
    /// `tx`. On `stop`, releases the Lease if it holds it.
    pub async fn run(self, tx: watch::Sender<LeaderView>, stop: CancellationToken) {
        info!(
            lease = %format!("{}/{}", self.namespace, self.name),
            identity = %self.identity,
            duration = ?LEASE_DURATION,
            "leader election: candidate"
        );
        let mut renewed: Option<Instant> = None;
        loop {
            let leading = tx.borrow().leading;
            // A holder's try may not outlast its renew deadline.
            let limit = match renewed.filter(|_| leading) {
                Some(at) => ATTEMPT_TIMEOUT
                    .min((at + RENEW_DEADLINE).saturating_duration_since(Instant::now())),
                None => ATTEMPT_TIMEOUT,
            };
            let attempt = tokio::select! {
                _ = stop.cancelled() => break,
                r = tokio::time::timeout(limit, self.try_once()) => match r {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("no answer within {limit:?}")),
                },
            };
            let wait = match attempt {
                Ok(Attempt::Leading) => {
                    renewed = Some(Instant::now());
                    if !leading {
                        info!(identity = %self.identity, "leader election: this replica leads now");
                    }
                    self.publish(&tx, true, Some(self.identity.clone()));
                    RENEW_PERIOD
                }
                Ok(Attempt::Following { holder, expires_in }) => {
                    if leading {
                        warn!(
                            holder = holder.as_deref().unwrap_or("-"),
                            "leader election: the Lease has another holder; writes stop now"
                        );
                    } else if tx.borrow().holder != holder {
                        info!(
                            holder = holder.as_deref().unwrap_or("-"),
                            "leader election: standby"
                        );
                    }
                    renewed = None;
                    self.publish(&tx, false, holder);
                    // Try again when the holder's Lease would expire, if that comes sooner.
                    expires_in
                        .map(|d| (d + Duration::from_millis(50)).min(RETRY_PERIOD))
                        .unwrap_or(RETRY_PERIOD)
                }
                Ok(Attempt::Lost(why)) => {
                    warn!(reason = %why, "leader election: leadership lost; writes stop now");
                    renewed = None;
                    self.publish(&tx, false, None);
                    RETRY_PERIOD
                }
                Err(e) => {
                    let expired = renewed.is_some_and(|at| at.elapsed() >= RENEW_DEADLINE);
                    if leading && expired {
                        warn!(error = %e, deadline = ?RENEW_DEADLINE, "leader election: could not renew the Lease in time; leadership lost, writes stop now");
                        renewed = None;
                        self.publish(&tx, false, None);
                    } else {
                        warn!(error = %e, "leader election: cannot read or write the Lease; trying again");
                    }
                    RETRY_PERIOD
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if tx.borrow().leading {
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.release()).await {
                Ok(Ok(true)) => info!("leader election: Lease released"),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    warn!(error = %e, "leader election: cannot release the Lease; the next leader waits for it to expire")
                }
                Err(_) => warn!(
                    "leader election: releasing the Lease took too long; the next leader waits for it to expire"
                ),
            }
        }
        self.publish(&tx, false, None);
    }

    fn publish(&self, tx: &watch::Sender<LeaderView>, leading: bool, holder: Option<String>) {
        tx.send_if_modified(|v| {
            let changed = v.leading != leading || v.holder != holder;
            v.leading = leading;
            v.holder = holder;
            changed
        });
    }

    async fn try_once(&self) -> Result<Attempt, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    labels: Some(
                        [("app.kubernetes.io/name".to_owned(), "gitopsd".to_owned())].into(),
                    ),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following {
                    holder: None,
                    expires_in: None,
                }),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.identity.as_str());
        let duration_ms = i64::from(
            spec.lease_duration_seconds
                .unwrap_or(LEASE_DURATION.as_secs() as i32)
                .max(1),
        ) * 1000;
        let left_ms = spec.renew_time.as_ref().map_or(0, |t| {
            t.0.as_millisecond() + duration_ms - now.as_millisecond()
        });
        if !mine && holder.is_some() && left_ms > 0 {
            return Ok(Attempt::Following {
                holder,
                expires_in: Some(Duration::from_millis(left_ms as u64)),
            });
        }
        if !mine {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
        // `lease` carries the resourceVersion read above: a replace after anyone else's write
        // is refused with 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(if mine {
                Attempt::Lost("the Lease was written by someone else (conflict)".to_owned())
            } else {
                Attempt::Following {
                    holder,
                    expires_in: None,
                }
            }),
            Err(e) => Err(e),
        }
    }

    /// Clears the holder (if it is still this replica), so the next candidate takes the Lease
    /// at once. `Ok(false)`: someone else holds it.
    async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        let now = Timestamp::now();
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(now));
        spec.acquire_time = Some(MicroTime(now));
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_renewed_well_inside_its_duration() {
        assert!(RENEW_PERIOD * 2 <= RENEW_DEADLINE);
        assert!(RENEW_DEADLINE + RETRY_PERIOD < LEASE_DURATION);
        assert!(ATTEMPT_TIMEOUT < RENEW_DEADLINE);
    }

    #[test]
    fn a_follower_says_who_leads() {
        let mut v = LeaderView::always("a");
        assert_eq!(v.standby_note(), None);
        v.leading = false;
        v.holder = Some("gitopsd-7c9-x".into());
        assert_eq!(
            v.standby_note().as_deref(),
            Some("standby, leader is gitopsd-7c9-x")
        );
        v.holder = None;
        assert_eq!(v.standby_note().as_deref(), Some("standby, no leader yet"));
    }
}
