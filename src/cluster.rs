//! The connection to the Kubernetes API server: in-cluster config, `--kubeconfig`, or the
//! `KUBECONFIG` / `~/.kube/config` that kubectl would use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

use crate::config::ServiceAccountRef;
use crate::live::RequestCounter;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `reason` never holds the file's content: a token file passed by mistake would print
    /// the token (see [`kubeconfig_reason`]).
    #[error("cannot use kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    /// `reason` never holds a kubeconfig's content (see [`infer_reason`]).
    #[error(
        "no Kubernetes connection configured: not running in a cluster, and no kubeconfig found ({reason}); pass --kubeconfig FILE or set KUBECONFIG"
    )]
    NoConfig { reason: String },
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

/// How long a connection to the API server may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a response may go without a byte (counted from the request, not from when a pooled
/// connection went idle). Above the 290 s after which the API server ends a watch (kube's
/// watcher asks for that, and gives up itself 5 s later), so that a quiet watch is ended by
/// the server, normally, never by this; a hung GET, PATCH or list still ends within it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// Loads the client config: an explicit kubeconfig file, or what kube infers (in-cluster first),
/// with deadlines on every request ([`CONNECT_TIMEOUT`], [`READ_TIMEOUT`]; kube's default has
/// no read timeout, so an API server that accepts a request and never answers held it forever).
pub async fn client_config(kubeconfig: Option<&Path>) -> Result<kube::Config, ClusterError> {
    let mut config = load_config(kubeconfig).await?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.reset_reader_on_write = true;
    Ok(config)
}

async fn load_config(kubeconfig: Option<&Path>) -> Result<kube::Config, ClusterError> {
    match kubeconfig {
        Some(path) => {
            let err = |source| ClusterError::Kubeconfig {
                path: path.to_owned(),
                reason: kubeconfig_reason(&source),
            };
            let kc = Kubeconfig::read_from(path).map_err(err)?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(err)
        }
        None => kube::Config::infer()
            .await
            .map_err(|source| ClusterError::NoConfig {
                reason: infer_reason(&source),
            }),
    }
}

/// Why a kubeconfig could not be used, without any of its content: the YAML parser's message
/// quotes the text it stumbled on, which for a token or key file given by mistake is the
/// secret itself.
fn kubeconfig_reason(e: &KubeconfigError) -> String {
    match e {
        KubeconfigError::Parse(_) => "it is not a kubeconfig (a YAML file with clusters, contexts and users); its content is not shown, as it may hold credentials; pass the path of a kubeconfig file".to_owned(),
        KubeconfigError::ReadConfig(source, _) => format!("cannot read it: {source}"),
        other => crate::escape::escape_line(&other.to_string()).into_owned(),
    }
}

/// Why neither in-cluster config nor a kubeconfig could be used: kube's own message embeds the
/// kubeconfig parser's, which quotes the file (`KUBECONFIG` pointed at a token file prints the
/// token), so the kubeconfig part is replaced by [`kubeconfig_reason`].
fn infer_reason(e: &kube::config::InferConfigError) -> String {
    let shown = e.to_string();
    let in_cluster = shown.split(", kubeconfig: (").next().unwrap_or_default();
    let kubeconfig = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<KubeconfigError>())
        .map_or_else(|| "unusable".to_owned(), kubeconfig_reason);
    format!(
        "{}, kubeconfig: ({kubeconfig})",
        crate::escape::escape_line(in_cluster)
    )
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
    let mut config = config;
    // kube's own retry layer retries 429/503/504 up to 15 times with a backoff that grows to
    // minutes, out of sight of cancellation and of the request counter: under a 429 storm one
    // apply then stalled a sync for minutes with nothing reported. gitopsd retries where it
    // writes (`apply::retry`, bounded and cancellable) and reconciles again otherwise.
    config.default_retry = false;
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|source| ClusterError::Client { server, source })?;
    Ok(match counter {
        Some(c) => builder.with_layer(c).build(),
        None => builder.build(),
    })
}

/// A client whose every request is counted by the returned counter (tests that count what a
/// read or a watch costs). Here, not in `live`, since building clients is this module's job.
pub fn counted_client(
    config: kube::Config,
) -> Result<(kube::Client, RequestCounter), ClusterError> {
    let server = config.cluster_url.to_string();
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|source| ClusterError::Client { server, source })?;
    let counter = RequestCounter::new();
    let client = builder.with_layer(&counter).build();
    Ok((client, counter))
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

    #[tokio::test]
    async fn every_request_has_a_connect_and_a_read_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:6443\"}}]\n\
             users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
        )
        .expect("write");
        let c = client_config(Some(&path)).await.expect("config");
        assert_eq!(c.connect_timeout, Some(CONNECT_TIMEOUT));
        assert_eq!(c.read_timeout, Some(READ_TIMEOUT));
        assert!(c.reset_reader_on_write);
        assert!(c.write_timeout.is_some());
    }

    #[tokio::test]
    async fn a_token_file_given_as_kubeconfig_is_not_printed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLXZhbHVl.sig";
        for content in [
            token.to_owned(),
            format!("token: [{token}"),
            format!("- {token}\n"),
        ] {
            let path = dir.path().join("token");
            std::fs::write(&path, &content).expect("write");
            let err = match client_config(Some(&path)).await {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{content:?} was taken for a kubeconfig"),
            };
            assert!(!err.contains("c2VjcmV0"), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(
                err.contains("not a kubeconfig") || err.contains("context"),
                "{err}"
            );
        }
    }
}
