//! The connection to the Kubernetes API server: in-cluster config, `--kubeconfig`, or the
//! `KUBECONFIG` / `~/.kube/config` that kubectl would use.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::config::ServiceAccountRef;
use crate::live::RequestCounter;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no Kubernetes connection configured: not running in a cluster, and no kubeconfig found ({source}); pass --kubeconfig FILE or set KUBECONFIG"
    )]
    NoConfig {
        #[source]
        source: kube::config::InferConfigError,
    },
    #[error("cannot build a Kubernetes client for {server}: {source}")]
    Client {
        server: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the Kubernetes API server at {server} did not answer: {source}; check that it is running and that the kubeconfig points at it"
    )]
    Unreachable {
        server: String,
        #[source]
        source: kube::Error,
    },
}

/// A client and what the server said about itself.
pub struct Connection {
    pub client: kube::Client,
    /// What the client was built from: the daemon builds each tier's impersonating client
    /// from it ([`impersonating`]).
    pub config: kube::Config,
    pub server: String,
    pub version: k8s_openapi::apimachinery::pkg::version::Info,
}

/// Loads the client config: an explicit kubeconfig file, or what kube infers (in-cluster first).
pub async fn client_config(kubeconfig: Option<&Path>) -> Result<kube::Config, ClusterError> {
    match kubeconfig {
        Some(path) => {
            let err = |source| ClusterError::Kubeconfig {
                path: path.to_owned(),
                source,
            };
            let kc = Kubeconfig::read_from(path).map_err(err)?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(err)
        }
        None => kube::Config::infer()
            .await
            .map_err(|source| ClusterError::NoConfig { source }),
    }
}

/// Connects and asks the server for its version, so a wrong address fails at start-up.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Connection, ClusterError> {
    connect_counted(kubeconfig, None).await
}

/// [`connect`], with every request of the client counted by `counter` (by verb, and its answer
/// by code: the daemon's `gitopsd_kube_requests_total`).
pub async fn connect_counted(
    kubeconfig: Option<&Path>,
    counter: Option<&RequestCounter>,
) -> Result<Connection, ClusterError> {
    let config = client_config(kubeconfig).await?;
    let server = config.cluster_url.to_string();
    let client = build(config.clone(), counter)?;
    let version = client
        .apiserver_version()
        .await
        .map_err(|source| ClusterError::Unreachable {
            server: server.clone(),
            source,
        })?;
    Ok(Connection {
        client,
        config,
        server,
        version,
    })
}

fn build(
    config: kube::Config,
    counter: Option<&RequestCounter>,
) -> Result<kube::Client, ClusterError> {
    let server = config.cluster_url.to_string();
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|source| ClusterError::Client { server, source })?;
    Ok(match counter {
        Some(c) => builder.with_layer(c).build(),
        None => builder.build(),
    })
}

/// The config of a client that acts as `sa`: every request carries `Impersonate-User:
/// system:serviceaccount:<ns>:<name>`, so the API server authorizes it with the
/// ServiceAccount's RBAC (and needs `impersonate` on that ServiceAccount from the daemon's
/// identity). No groups are sent: the server then gives the ServiceAccount its own groups
/// (`system:serviceaccounts`, `system:serviceaccounts:<ns>`, `system:authenticated`), and
/// the daemon needs no right to impersonate groups.
pub fn impersonating_config(config: &kube::Config, sa: &ServiceAccountRef) -> kube::Config {
    let mut config = config.clone();
    config.auth_info.impersonate = Some(sa.username());
    config.auth_info.impersonate_groups = None;
    config.auth_info.impersonate_uid = None;
    config.auth_info.impersonate_user_extra = None;
    config
}

/// A client from `config` that acts as `sa` ([`impersonating_config`]), its requests counted
/// by `counter` like the daemon's own.
pub fn impersonating(
    config: &kube::Config,
    sa: &ServiceAccountRef,
    counter: Option<&RequestCounter>,
) -> Result<kube::Client, ClusterError> {
    build(impersonating_config(config, sa), counter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_impersonating_config_names_the_service_account_and_no_groups() {
        let mut base = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        base.auth_info.impersonate = Some("someone".into());
        base.auth_info.impersonate_groups = Some(vec!["system:masters".into()]);
        let sa = ServiceAccountRef {
            namespace: "gitopsd".into(),
            name: "tier-dev".into(),
        };
        let c = impersonating_config(&base, &sa);
        assert_eq!(
            c.auth_info.impersonate.as_deref(),
            Some("system:serviceaccount:gitopsd:tier-dev")
        );
        assert_eq!(c.auth_info.impersonate_groups, None);
        assert_eq!(c.cluster_url, base.cluster_url);
    }
}
