//! What can go wrong in the source stage. Every variant names the repository URL (never with
//! credentials: the config rejects them in URLs and tokens only ever go to libgit2's
//! credential callback), and the ref or commit where there is one.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "the mirror of {url} in {dir} is in use by {holder} (another gitopsd following the same repository with the same --workdir); give each daemon its own --workdir (or GITOPSD_WORKDIR)"
    )]
    MirrorInUse {
        url: String,
        dir: PathBuf,
        /// `process 1234`, from the lock file.
        holder: String,
    },
    #[error("cannot lock the mirror directory with {path}: {source}")]
    MirrorLock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the mirror of {url} at {path}: {source}")]
    Mirror {
        url: String,
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("cannot read {what} {path} for {url}: {source}")]
    AuthFile {
        url: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{url} refused the credentials while fetching {refs}: {source}")]
    AuthRefused {
        url: String,
        refs: String,
        #[source]
        source: git2::Error,
    },
    #[error("ssh host key of {host} ({url}) {reason}; fetch of {refs} refused")]
    HostKey {
        url: String,
        host: String,
        reason: super::auth::HostKeyRefusal,
        refs: String,
    },
    #[error("fetch of {refs} from {url} failed: {source}")]
    Fetch {
        url: String,
        refs: String,
        #[source]
        source: git2::Error,
    },
    #[error("ref {git_ref:?} not found in {url} (neither a branch nor a tag there)")]
    RefNotFound { url: String, git_ref: String },
    #[error(
        "commit {commit} is not reachable from any branch or tag of {url} (or the server refused it)"
    )]
    CommitNotReachable { url: String, commit: String },
    #[error("ref {git_ref:?} in {url} does not lead to a commit: {source}")]
    NotACommit {
        url: String,
        git_ref: String,
        #[source]
        source: git2::Error,
    },
    #[error("cannot read commit {commit} from the mirror of {url}: {source}")]
    Read {
        url: String,
        commit: String,
        #[source]
        source: git2::Error,
    },
    #[error(
        "commit {commit} of {url}: symlink {path} points outside the repository (to {target:?})"
    )]
    SymlinkEscapes {
        url: String,
        commit: String,
        path: String,
        target: String,
    },
    #[error("commit {commit} of {url}: refusing the unsafe path {path:?}")]
    UnsafePath {
        url: String,
        commit: String,
        path: String,
    },
    #[error("cannot export commit {commit} of {url} to {path}: {source}")]
    Export {
        url: String,
        commit: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "commit {commit} of {url}: its export would write {found} {limit}, over source.exportLimits.{} = {max}; nothing was written and the last good revision stays. Remove what the repository does not need (one blob named by many paths counts each time), or raise source.exportLimits.{} if it really is that large",
        limit.field(),
        limit.field()
    )]
    ExportTooLarge {
        url: String,
        commit: String,
        limit: ExportLimit,
        /// At least this much: the walk stops once over the limit.
        found: String,
        max: u64,
    },
    #[error("push of {refs} to {url} failed: {reason}")]
    Push {
        url: String,
        refs: String,
        reason: String,
    },
    #[error(
        "fetch of {refs} from {url} did not finish within source.fetchTimeout ({}): the server stopped answering or is too slow; the fetch was abandoned, the last good commits stay, and it is retried with backoff. Check the git server and the network to it, or raise source.fetchTimeout if the repository is that large",
        humantime::format_duration(*after)
    )]
    TimedOut {
        url: String,
        refs: String,
        after: std::time::Duration,
    },
    #[error("fetch of {refs} from {url} was cancelled (abandoned at its deadline or at shutdown)")]
    Cancelled { url: String, refs: String },
    #[error("the fetch task for {url} stopped: {reason}")]
    Task { url: String, reason: String },
}

/// Which bound of `source.exportLimits` an export ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportLimit {
    Bytes,
    Files,
}

impl ExportLimit {
    /// The config field under `source.exportLimits`.
    pub fn field(self) -> &'static str {
        match self {
            ExportLimit::Bytes => "maxBytes",
            ExportLimit::Files => "maxFiles",
        }
    }
}

impl std::fmt::Display for ExportLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExportLimit::Bytes => "bytes",
            ExportLimit::Files => "files and directories",
        })
    }
}

impl SourceError {
    /// A copy of a fetch error, for each of several refs that failed by the same fetch
    /// (`git2::Error` is not `Clone`). Other variants (a fetch never returns them) become a
    /// [`SourceError::Fetch`] of `url` with the same message.
    pub(crate) fn duplicate(&self, url: &str) -> SourceError {
        let copy = |e: &git2::Error| git2::Error::new(e.code(), e.class(), e.message());
        match self {
            SourceError::AuthRefused { url, refs, source } => SourceError::AuthRefused {
                url: url.clone(),
                refs: refs.clone(),
                source: copy(source),
            },
            SourceError::HostKey {
                url,
                host,
                reason,
                refs,
            } => SourceError::HostKey {
                url: url.clone(),
                host: host.clone(),
                reason: reason.clone(),
                refs: refs.clone(),
            },
            SourceError::Fetch { url, refs, source } => SourceError::Fetch {
                url: url.clone(),
                refs: refs.clone(),
                source: copy(source),
            },
            other => SourceError::Fetch {
                url: url.to_owned(),
                refs: String::new(),
                source: git2::Error::from_str(&other.to_string()),
            },
        }
    }
}
