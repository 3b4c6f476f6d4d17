//! The `source` section: the config repo's URL, credentials, poll interval and export limits.

use super::*;

/// Where the config repo comes from and how often to look.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SourceConfig {
    pub url: RepoUrl,
    #[serde(default)]
    pub auth: GitAuth,
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// The deadline of one fetch (and push) of the config repo, and of each connect and read
    /// inside it: a server that accepts and then says nothing is given up on after this long,
    /// and the fetch is retried with backoff.
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub fetch_timeout: Duration,
    pub webhook_secret_file: Option<PathBuf>,
    /// Push `refs/gitopsd/healthy/<tier>/<sha>` to the config repo when a tier becomes
    /// healthy at a revision, so daemons in other clusters can check their gates from git.
    /// A failed push is a warning and blocks nothing.
    #[serde(default)]
    pub publish_healthy: bool,
    /// Bounds on what one commit may write to disk when it is exported for rendering.
    #[serde(default)]
    pub export_limits: ExportLimits,
}

pub(super) fn default_interval() -> Duration {
    Duration::from_secs(60)
}

pub fn default_fetch_timeout() -> Duration {
    Duration::from_secs(60)
}

/// A commit is exported as plain files; git stores a blob once however many paths name it, so
/// a small repo can stand for a huge export. Both bounds are checked on the tree (sizes from
/// the object headers) before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExportLimits {
    /// Most bytes of file content one export may write (256 MiB by default).
    #[serde(default = "default_export_max_bytes")]
    pub max_bytes: u64,
    /// Most files and directories one export may create (50,000 by default).
    #[serde(default = "default_export_max_files")]
    pub max_files: u64,
}

pub(super) fn default_export_max_bytes() -> u64 {
    256 * 1024 * 1024
}

pub(super) fn default_export_max_files() -> u64 {
    50_000
}

impl Default for ExportLimits {
    fn default() -> Self {
        ExportLimits {
            max_bytes: default_export_max_bytes(),
            max_files: default_export_max_files(),
        }
    }
}

/// Git credentials: a token for https, or an SSH key with the known_hosts that checks the host.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitAuth {
    pub token_file: Option<PathBuf>,
    pub ssh_key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
}

/// A config repo location: `https://`, `ssh://`, `file://`, scp-like `git@host:path`, or a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    pub kind: RepoUrlKind,
    raw: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoUrlKind {
    Https,
    Ssh,
    File,
}

impl RepoUrl {
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Why a repository URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoUrlError {
    #[error("expected a repository URL (https://, ssh://, file://) or a path")]
    Empty,
    #[error("plain http:// sends credentials in the clear; use https://")]
    PlainHttp,
    #[error("unsupported scheme `{scheme}://`; expected https://, ssh://, file:// or a path")]
    Scheme { scheme: String },
    #[error("the URL carries credentials; put the token in source.auth.tokenFile instead")]
    Credentials,
}

impl FromStr for RepoUrl {
    type Err = RepoUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw = s.trim().to_owned();
        if raw.is_empty() {
            return Err(RepoUrlError::Empty);
        }
        let kind = if let Some((scheme, _)) = raw.split_once("://") {
            match scheme {
                "https" => RepoUrlKind::Https,
                "ssh" => RepoUrlKind::Ssh,
                "file" => RepoUrlKind::File,
                "http" => return Err(RepoUrlError::PlainHttp),
                other => {
                    return Err(RepoUrlError::Scheme {
                        scheme: other.to_owned(),
                    });
                }
            }
        } else if looks_like_scp(&raw) {
            RepoUrlKind::Ssh
        } else {
            RepoUrlKind::File
        };
        if kind == RepoUrlKind::Https && raw.contains('@') {
            let authority = raw["https://".len()..]
                .split('/')
                .next()
                .unwrap_or_default();
            if authority.contains('@') {
                return Err(RepoUrlError::Credentials);
            }
        }
        Ok(RepoUrl { kind, raw })
    }
}

/// `git@example.com:platform/config.git`, as git itself accepts.
pub(super) fn looks_like_scp(s: &str) -> bool {
    match s.split_once(':') {
        Some((host, _)) => !host.contains('/') && host.contains('@'),
        None => false,
    }
}

impl<'de> Deserialize<'de> for RepoUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
