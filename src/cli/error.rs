//! What a one-shot command (`render`, `validate`, `diff`, `promote`) failed on. Each message
//! is the one the command prints after `error:`.

use crate::config::RepoUrlError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("give --repo PATH_OR_URL, or --config FILE to use its source.url")]
    NoRepo,
    #[error("--repo {url}: {source}")]
    RepoUrl {
        url: String,
        #[source]
        source: RepoUrlError,
    },
    #[error("{0}")]
    Source(#[from] crate::source::SourceError),
    #[error("{url}: the fetch returned nothing for ref {git_ref}")]
    NothingFetched { url: String, git_ref: String },
    #[error("{0}")]
    Render(#[from] crate::render::RenderError),
    /// A blocking task (git, file reads) panicked or was cancelled.
    #[error("the {task} task failed: {source}")]
    Task {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("{0}")]
    Connect(#[from] crate::cluster::ClusterError),
    #[error("{server}: {source}")]
    Discovery {
        server: String,
        #[source]
        source: crate::discovery::DiscoveryError,
    },
    #[error("{0}")]
    Live(#[from] crate::live::LiveError),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("{0}")]
    Write(#[from] std::io::Error),
}
