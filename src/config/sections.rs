//! The daemon-wide sections of the config: `render` (the render limits), `leaderElection`,
//! `audit`, `state` and `http`.

use super::*;

/// Bounds on rendering a tier: a hostile config repo must not exhaust the daemon or its node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RenderConfig {
    /// The box `kustomize build` runs in.
    #[serde(default)]
    pub kustomize: KustomizeLimits,
    /// Largest manifest file, in bytes (64 MiB by default): a guard against abuse only.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Largest object as JSON, in bytes (3 MiB by default: the API server's request limit).
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: u64,
    /// Memory a tier's parsed objects may take, in bytes (256 MiB by default).
    #[serde(default = "default_max_tier_bytes")]
    pub max_tier_bytes: u64,
    /// YAML nodes one document may expand to, aliases expanded (250,000 by default).
    #[serde(default = "default_max_document_nodes")]
    pub max_document_nodes: usize,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig {
            kustomize: KustomizeLimits::default(),
            max_file_bytes: default_max_file_bytes(),
            max_object_bytes: default_max_object_bytes(),
            max_tier_bytes: default_max_tier_bytes(),
            max_document_nodes: default_max_document_nodes(),
        }
    }
}

pub(super) fn default_max_file_bytes() -> u64 {
    crate::render::Limits::default().max_file_bytes
}

pub(super) fn default_max_object_bytes() -> u64 {
    crate::render::Limits::default().max_object_bytes
}

pub(super) fn default_max_tier_bytes() -> u64 {
    crate::render::Limits::default().max_tier_bytes
}

pub(super) fn default_max_document_nodes() -> usize {
    crate::render::Limits::default().max_document_nodes
}

/// The caps of a `kustomize build` child process (see `render/sandbox.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KustomizeLimits {
    /// Address space it may map, in bytes (RLIMIT_AS; 2 GiB by default).
    #[serde(default = "default_kustomize_memory")]
    pub memory_bytes: u64,
    /// CPU time over all its threads (RLIMIT_CPU; 30s by default).
    #[serde(default = "default_kustomize_cpu", with = "humantime_serde")]
    pub cpu: Duration,
    /// Wall-clock time (60s by default).
    #[serde(default = "default_kustomize_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest build output, in bytes (64 MiB by default).
    #[serde(default = "default_kustomize_output")]
    pub max_output_bytes: u64,
}

pub(super) fn default_kustomize_memory() -> u64 {
    crate::render::Limits::default().kustomize_memory_bytes
}

pub(super) fn default_kustomize_cpu() -> Duration {
    crate::render::Limits::default().kustomize_cpu
}

pub(super) fn default_kustomize_timeout() -> Duration {
    crate::render::Limits::default().kustomize_timeout
}

pub(super) fn default_kustomize_output() -> u64 {
    crate::render::Limits::default().max_kustomize_output_bytes
}

impl Default for KustomizeLimits {
    fn default() -> Self {
        KustomizeLimits {
            memory_bytes: default_kustomize_memory(),
            cpu: default_kustomize_cpu(),
            timeout: default_kustomize_timeout(),
            max_output_bytes: default_kustomize_output(),
        }
    }
}

impl RenderConfig {
    /// The render limits: the defaults with this section's values.
    pub fn limits(&self) -> crate::render::Limits {
        let k = &self.kustomize;
        crate::render::Limits {
            kustomize_memory_bytes: k.memory_bytes,
            kustomize_cpu: k.cpu,
            kustomize_timeout: k.timeout,
            max_kustomize_output_bytes: k.max_output_bytes,
            max_file_bytes: self.max_file_bytes,
            max_object_bytes: self.max_object_bytes,
            max_tier_bytes: self.max_tier_bytes,
            max_document_nodes: self.max_document_nodes,
            ..crate::render::Limits::default()
        }
    }
}

/// Leader election among replicas (a `coordination.k8s.io/v1` Lease): only the holder
/// reconciles and writes; the others serve health, metrics and status. Off by default, so a
/// single `gitopsd run` on a workstation needs no Lease permission; the manifests in
/// `manifests/` turn it on (two replicas).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeaderElectionConfig {
    #[serde(default)]
    pub enabled: bool,
    /// The Lease's name.
    #[serde(default = "default_lease_name")]
    pub lease_name: String,
    /// The Lease's namespace. Default: the state namespace.
    pub namespace: Option<String>,
}

pub(super) fn default_lease_name() -> String {
    "gitopsd-leader".to_owned()
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            enabled: false,
            lease_name: default_lease_name(),
            namespace: None,
        }
    }
}

/// The audit log (JSON lines chained by sha256; `gitopsd audit verify` checks them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditConfig {
    /// The file to append to. Default: `audit.log` in the directory of the daemon's source
    /// under its `--workdir` (`<workdir>/source/<key>/`, keyed by the source URL).
    pub path: Option<PathBuf>,
}

impl AuditConfig {
    /// The file the daemon appends to, given the directory its source is kept in.
    pub fn path_in(&self, source_dir: &std::path::Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| source_dir.join("audit.log"))
    }
}

/// Where gitopsd keeps what it must remember across restarts (inventory, revisions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StateConfig {
    /// The namespace of the per-tier state ConfigMaps. Default: the daemon's own namespace
    /// in a cluster, `gitopsd` outside one.
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HttpConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    pub token_file: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            token_file: None,
        }
    }
}

pub(super) fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
