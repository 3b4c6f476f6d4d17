//! The daemon config (`gitopsd.yaml`): typed, validated once at start-up.
//!
//! Every error names the file, the field (as a path such as `tiers[2].policy.low`) and what was
//! expected there, because an operator reading a crash-looping pod's log has nothing else.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod locate;
mod pattern;
mod validation;

pub use pattern::{PathPattern, PatternError};
pub use validation::{Level, SecurityRule, UnknownSecurityRule, ValidationConfig};

/// What went wrong reading the config, always with the file it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}{location}: {field}: {message}")]
    Parse {
        path: PathBuf,
        /// ` line L column C`, or empty where the parser knows no position.
        location: String,
        field: String,
        message: String,
    },
    #[error("{path}{location}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        /// ` line L column C` of the field's value, or empty when the field is not written
        /// (it took its default).
        location: String,
        field: String,
        message: String,
    },
}

/// The whole daemon config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    pub source: SourceConfig,
    pub tiers: Vec<TierConfig>,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
    #[serde(default)]
    pub render: RenderConfig,
}

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

fn default_max_file_bytes() -> u64 {
    crate::render::Limits::default().max_file_bytes
}

fn default_max_object_bytes() -> u64 {
    crate::render::Limits::default().max_object_bytes
}

fn default_max_tier_bytes() -> u64 {
    crate::render::Limits::default().max_tier_bytes
}

fn default_max_document_nodes() -> usize {
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

fn default_kustomize_memory() -> u64 {
    crate::render::Limits::default().kustomize_memory_bytes
}

fn default_kustomize_cpu() -> Duration {
    crate::render::Limits::default().kustomize_cpu
}

fn default_kustomize_timeout() -> Duration {
    crate::render::Limits::default().kustomize_timeout
}

fn default_kustomize_output() -> u64 {
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

fn default_lease_name() -> String {
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
    /// The file to append to. Default: `audit.log` in the daemon's `--workdir`.
    pub path: Option<PathBuf>,
}

impl AuditConfig {
    /// The file the daemon appends to, given its work directory.
    pub fn path_in(&self, workdir: &std::path::Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| workdir.join("audit.log"))
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

fn default_interval() -> Duration {
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

fn default_export_max_bytes() -> u64 {
    256 * 1024 * 1024
}

fn default_export_max_files() -> u64 {
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
fn looks_like_scp(s: &str) -> bool {
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

/// One stage of environments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TierConfig {
    pub name: String,
    /// The branch, tag or commit this tier follows.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Namespaces this tier may write to.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Whether the tier may create cluster-scoped objects.
    #[serde(default)]
    pub cluster_scoped: bool,
    /// `true`, `false`, or the prune guard in full (see [`PruneConfig`]).
    #[serde(default)]
    pub prune: PruneConfig,
    /// How objects are applied: conflicts, immutable fields, concurrency.
    #[serde(default)]
    pub apply: ApplyConfig,
    /// The ServiceAccount this tier writes as: every apply, delete and dry-run of the tier
    /// impersonates it, so the API server's RBAC bounds what the tier can change even where
    /// gitopsd's own validation has a hole. Reads, the tier state, Events and the Lease keep
    /// the daemon's identity. Absent: the daemon's own identity writes (not recommended).
    pub service_account: Option<ServiceAccountRef>,
    /// A tier listed before this one: a revision is deployed here only once that tier
    /// recorded it healthy (see [`PromotionGate`]).
    pub promote_from: Option<String>,
    /// How long `promoteFrom` must have been healthy at the revision (`soak: 30m`); none by
    /// default.
    #[serde(default, with = "humantime_serde::option")]
    pub soak: Option<Duration>,
    /// What `promoteFrom` must have recorded healthy: the very revision (default) or a
    /// revision whose rendered base has the same digest.
    #[serde(default)]
    pub gate: PromotionGate,
    #[serde(default)]
    pub windows: Vec<ChangeWindow>,
    /// What happens to critical drift outside the change windows: corrected (`apply`, the
    /// default) or held until a window opens (`hold`).
    #[serde(default)]
    pub critical_outside_windows: OutsideWindows,
    /// Every commit between the deployed revision and a new one must carry a good signature
    /// by one of these keys.
    pub require_signed_commits: Option<SignedCommits>,
    #[serde(default)]
    pub policy: Policy,
    pub rollback: Option<RollbackConfig>,
    /// How the rendered tier is validated: the level (block or warn) of the security rules.
    #[serde(default)]
    pub validation: ValidationConfig,
    /// Severity overrides, checked in order before the default rules.
    #[serde(default)]
    pub severity: Vec<SeverityOverride>,
    /// Existing objects this tier may take over although it did not create them (no gitopsd
    /// tier label, or another tier's): each named in full. Without an entry such an object
    /// is refused (see `crate::ownership`).
    #[serde(default)]
    pub adopt: Vec<AdoptEntry>,
}

/// One object a tier may adopt: `{kind: ConfigMap, namespace: shop-exp, name: legacy}`, or
/// `{kind: Namespace, name: shop-exp}` for a cluster-scoped object (no namespace).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "AdoptFields")]
pub struct AdoptEntry {
    /// `apps/v1`, `v1`: when given, only an object of that API group matches (the version is
    /// not compared: an object keeps its identity across versions).
    pub api_version: Option<String>,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AdoptFields {
    #[serde(default)]
    api_version: Option<String>,
    kind: String,
    #[serde(default)]
    namespace: Option<String>,
    name: String,
}

/// Why an `adopt:` entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdoptError {
    #[error("kind {kind:?} is not a Kubernetes kind name (e.g. `ConfigMap`, `Namespace`)")]
    Kind { kind: String },
    #[error(
        "name {name:?} must be the object's exact name (no wildcards: every object is adopted by name)"
    )]
    Name { name: String },
    #[error("namespace: {0}")]
    Namespace(#[source] NameError),
    #[error("a Namespace is cluster-scoped: give its name only, without namespace")]
    NamespacedNamespace,
}

/// Checked as the entry is read, so the error carries its line.
impl TryFrom<AdoptFields> for AdoptEntry {
    type Error = AdoptError;

    fn try_from(f: AdoptFields) -> Result<Self, AdoptError> {
        if !f.kind.starts_with(|c: char| c.is_ascii_uppercase())
            || !f.kind.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(AdoptError::Kind { kind: f.kind });
        }
        if f.name.is_empty() || f.name.contains(['/', ' ', '*']) {
            return Err(AdoptError::Name { name: f.name });
        }
        if let Some(ns) = &f.namespace {
            check_dns_label(ns).map_err(AdoptError::Namespace)?;
        }
        if f.kind == "Namespace" && f.namespace.is_some() {
            return Err(AdoptError::NamespacedNamespace);
        }
        Ok(AdoptEntry {
            api_version: f.api_version,
            kind: f.kind,
            namespace: f.namespace,
            name: f.name,
        })
    }
}

/// The API group of an apiVersion: `apps` of `apps/v1`, `` (core) of `v1`.
pub fn api_group(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

impl fmt::Display for AdoptEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        if let Some(av) = &self.api_version {
            write!(f, "apiVersion: {av}, ")?;
        }
        write!(f, "kind: {}, ", self.kind)?;
        if let Some(ns) = &self.namespace {
            write!(f, "namespace: {ns}, ")?;
        }
        write!(f, "name: {}}}", self.name)
    }
}

/// A ServiceAccount a tier impersonates: `serviceAccount: gitopsd/tier-dev` or
/// `serviceAccount: {namespace: gitopsd, name: tier-dev}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccountRef {
    /// The user name the API server gives the ServiceAccount (and the impersonated user).
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    fn checked(namespace: String, name: String) -> Result<ServiceAccountRef, ServiceAccountError> {
        check_dns_label(&namespace).map_err(ServiceAccountError::Namespace)?;
        check_dns_subdomain(&name).map_err(ServiceAccountError::Name)?;
        Ok(ServiceAccountRef { namespace, name })
    }
}

/// Why a `serviceAccount:` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceAccountError {
    #[error(
        "expected NAMESPACE/NAME of a ServiceAccount (e.g. \"gitopsd/tier-dev\") or {{namespace, name}}; found {given:?}"
    )]
    Syntax { given: String },
    #[error("namespace: {0}")]
    Namespace(#[source] NameError),
    #[error("name: {0}")]
    Name(#[source] NameError),
    /// A bad part of the one-string spelling, with the whole string.
    #[error("{why} in {given:?}")]
    In {
        #[source]
        why: Box<ServiceAccountError>,
        given: String,
    },
}

impl fmt::Display for ServiceAccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for ServiceAccountRef {
    type Err = ServiceAccountError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The user-name spelling is accepted too, as kubectl's --as takes it.
        let rest = s.strip_prefix("system:serviceaccount:");
        let parts = match rest {
            Some(r) => r.split_once(':'),
            None => s.split_once('/'),
        };
        match parts {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                ServiceAccountRef::checked(ns.to_owned(), name.to_owned()).map_err(|why| {
                    ServiceAccountError::In {
                        why: Box::new(why),
                        given: s.to_owned(),
                    }
                })
            }
            _ => Err(ServiceAccountError::Syntax {
                given: s.to_owned(),
            }),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceAccountFields {
    namespace: String,
    name: String,
}

impl<'de> Deserialize<'de> for ServiceAccountRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ServiceAccountRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("NAMESPACE/NAME of a ServiceAccount, or {namespace, name}")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ServiceAccountRef, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<ServiceAccountRef, A::Error> {
                let f = ServiceAccountFields::deserialize(
                    serde::de::value::MapAccessDeserializer::new(m),
                )?;
                ServiceAccountRef::checked(f.namespace, f.name).map_err(serde::de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Prune: deleting inventory objects that left the desired set, behind guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneConfig {
    pub enabled: bool,
    /// The largest share of the inventory one sync may delete, in percent (default 50).
    pub max_delete_percent: u8,
    /// Whether an empty desired set may prune the whole inventory (default false).
    pub allow_empty: bool,
    /// Kinds that are never pruned unless listed here: `Namespace`,
    /// `CustomResourceDefinition`, `PersistentVolumeClaim`.
    pub kinds: Vec<String>,
}

/// The kinds whose deletion loses data or takes other objects with it.
pub const PROTECTED_KINDS: [&str; 3] = [
    "Namespace",
    "CustomResourceDefinition",
    "PersistentVolumeClaim",
];

impl Default for PruneConfig {
    fn default() -> Self {
        PruneConfig {
            enabled: false,
            max_delete_percent: 50,
            allow_empty: false,
            kinds: Vec::new(),
        }
    }
}

impl PruneConfig {
    /// Whether objects of `kind` may be pruned at all.
    pub fn may_prune_kind(&self, kind: &str) -> bool {
        !PROTECTED_KINDS.contains(&kind) || self.kinds.iter().any(|k| k == kind)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PruneFields {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "fifty")]
    max_delete_percent: u8,
    #[serde(default)]
    allow_empty: bool,
    #[serde(default)]
    kinds: Vec<String>,
}

fn yes() -> bool {
    true
}

fn fifty() -> u8 {
    50
}

/// `prune: true` or `prune: {enabled, maxDeletePercent, allowEmpty, kinds}`.
impl<'de> Deserialize<'de> for PruneConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PruneConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, or {enabled, maxDeletePercent, allowEmpty, kinds}")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<PruneConfig, E> {
                Ok(PruneConfig {
                    enabled: b,
                    ..PruneConfig::default()
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<PruneConfig, A::Error> {
                let f = PruneFields::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
                Ok(PruneConfig {
                    enabled: f.enabled,
                    max_delete_percent: f.max_delete_percent,
                    allow_empty: f.allow_empty,
                    kinds: f.kinds,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// How a tier's objects are applied.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApplyConfig {
    /// Take fields another field manager owns (server-side apply `force`). Off by default:
    /// a conflict is reported with the other manager's name instead.
    #[serde(default)]
    pub force_conflicts: bool,
    /// Kinds (e.g. `Job`) that may be deleted and created again when a change touches an
    /// immutable field. Empty by default: the error is reported instead.
    #[serde(default)]
    pub recreate_on_immutable: Vec<String>,
    /// Apply requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_concurrency() -> usize {
    16
}

impl Default for ApplyConfig {
    fn default() -> Self {
        ApplyConfig {
            force_conflicts: false,
            recreate_on_immutable: Vec::new(),
            concurrency: default_concurrency(),
        }
    }
}

/// One severity override: drifts of `kind` (any kind if absent) at a field path matching
/// `path` get `severity`, or are not drift at all with `ignore`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SeverityOverride {
    pub kind: Option<String>,
    /// Checked when the config is read, so a typo fails at start-up, not at the first drift.
    pub path: PathPattern,
    pub severity: OverrideSeverity,
}

/// A severity, or `ignore`: not drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverrideSeverity {
    Critical,
    High,
    Medium,
    Low,
    Ignore,
}

/// What to do about a drift of each severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "Action::apply")]
    pub critical: Action,
    #[serde(default = "Action::apply")]
    pub high: Action,
    #[serde(default = "Action::apply")]
    pub medium: Action,
    #[serde(default = "Action::apply")]
    pub low: Action,
}

/// Git is the source of truth: with no policy given, every drift is corrected (as Flux does).
impl Default for Policy {
    fn default() -> Self {
        Policy {
            critical: Action::Apply,
            high: Action::Apply,
            medium: Action::Apply,
            low: Action::Apply,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Correct the drift now.
    Apply,
    /// Report it (status, metric, event); leave the cluster alone.
    Alert,
    Ignore,
    /// Not a policy (a config cannot say it): what happens to an extra object that left git
    /// and that prune deletes in this sync (`drift::settle_extras`).
    #[serde(skip_deserializing)]
    Prune,
}

impl Action {
    fn apply() -> Self {
        Action::Apply
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Apply => "apply",
            Action::Alert => "alert",
            Action::Ignore => "ignore",
            Action::Prune => "prune",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a `promoteFrom` gate compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PromotionGate {
    /// The revision itself must be healthy in `promoteFrom`.
    #[default]
    Revision,
    /// A revision of `promoteFrom` whose rendered `base/` has the same digest counts too
    /// (a commit that only changed another tier's overlay needs no new soak).
    BaseDigest,
}

/// Critical drift outside the change windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutsideWindows {
    /// Corrected at once, as inside a window.
    #[default]
    Apply,
    /// Waits for the next window like every other change.
    Hold,
}

/// `requireSignedCommits`: the keys whose signatures are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignedCommits {
    /// An OpenSSH allowed-signers file (`ssh-keygen(1)`, ALLOWED SIGNERS): one
    /// `principal [namespaces="git"] key-type base64-key` per line.
    pub ssh_allowed_signers: PathBuf,
}

/// Whether a window lets changes in or keeps them out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// Changes land only inside an allow window (when the tier has any).
    #[default]
    Allow,
    /// No change lands inside a deny window; deny beats allow.
    Deny,
}

/// A change window: opens at each firing of `schedule` in `timezone`, for `duration`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangeWindow {
    #[serde(default)]
    pub kind: WindowKind,
    pub schedule: CronSchedule,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    #[serde(default = "default_timezone")]
    pub timezone: Timezone,
}

fn default_timezone() -> Timezone {
    Timezone(chrono_tz::Tz::UTC)
}

/// A standard 5-field cron expression (minute hour day-of-month month day-of-week).
#[derive(Debug, Clone, PartialEq)]
pub struct CronSchedule {
    pub expression: String,
    pub schedule: cron::Schedule,
}

impl FromStr for CronSchedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fields = s.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "expected a 5-field cron schedule (minute hour day-of-month month day-of-week, e.g. \"0 8 * * 1-5\"), found {fields} fields in {s:?}"
            ));
        }
        // The cron crate counts seconds as well; windows start on the minute. It also counts
        // days of the week from 1 = Sunday, where standard cron has 0 (or 7) = Sunday and
        // 1-5 = Monday to Friday: the day-of-week field is handed to it as day names.
        let mut parts: Vec<String> = s.split_whitespace().map(str::to_owned).collect();
        if let Some(days) = day_names(&parts[4]) {
            parts[4] = days;
        }
        let schedule =
            cron::Schedule::from_str(&format!("0 {}", parts.join(" "))).map_err(|e| {
                // The cron crate draws a caret under the bad field over several lines; the
                // last line says what is wrong, which is what a one-line log needs.
                let e = e.to_string();
                let why = e.lines().last().unwrap_or_default().trim().to_owned();
                format!("invalid cron schedule {s:?}: {why}")
            })?;
        Ok(CronSchedule {
            expression: s.to_owned(),
            schedule,
        })
    }
}

/// A standard cron day-of-week field (`1-5`, `0,6`, `*/2`, `MON-FRI`, `5-7`) as the list of
/// day names it means (`MON,TUE,WED,THU,FRI`); `None` for `*` and for anything it does not
/// read, which then goes to the cron crate as written (and its error, if any, is reported).
fn day_names(field: &str) -> Option<String> {
    const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    // 0..=7, 7 being Sunday again, as in standard cron.
    let day = |t: &str| -> Option<usize> {
        match t.parse::<usize>() {
            Ok(n) => (n <= 7).then_some(n),
            Err(_) => NAMES
                .iter()
                .position(|n| n.eq_ignore_ascii_case(t))
                .filter(|_| t.len() == 3),
        }
    };
    if field == "*" || field == "?" {
        return None;
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, n)) => (r, n.parse::<usize>().ok().filter(|n| *n > 0)?),
            None => (item, 1),
        };
        let (from, to) = match range.split_once('-') {
            _ if range == "*" => (0, 6),
            Some((a, b)) => (day(a)?, day(b)?),
            // `5/2` means from 5 to the end of the week.
            None if step > 1 => (day(range)?, 6),
            None => (day(range)?, day(range)?),
        };
        if from > to {
            return None;
        }
        for d in (from..=to).step_by(step) {
            days[d % 7] = true;
        }
    }
    let names: Vec<&str> = NAMES
        .iter()
        .zip(days)
        .filter_map(|(n, on)| on.then_some(*n))
        .collect();
    Some(names.join(","))
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IANA timezone such as `Europe/Berlin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timezone(pub chrono_tz::Tz);

impl<'de> Deserialize<'de> for Timezone {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<chrono_tz::Tz>().map(Timezone).map_err(|_| {
            serde::de::Error::custom(format!(
                "unknown timezone {s:?}; expected an IANA name such as \"Europe/Berlin\" or \"UTC\""
            ))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollbackConfig {
    #[serde(default)]
    pub on_health_failure: bool,
    #[serde(default = "default_health_timeout", with = "humantime_serde")]
    pub health_timeout: Duration,
}

fn default_health_timeout() -> Duration {
    Duration::from_secs(5 * 60)
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

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}

/// Durations written as operators write them: `30s`, `1m`, `10h`, `1h 30m`.
mod humantime_serde {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?} ({e}); expected a number with a unit, e.g. \"30s\", \"5m\", \"10h\""
            ))
        })
    }

    /// An optional duration (`soak`).
    pub mod option {
        use std::time::Duration;

        pub fn deserialize<'de, D: serde::Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = match e.path().to_string() {
                p if p == "." => "(top level)".to_owned(),
                // The parser stopped before it knew the field: the YAML itself is broken.
                p if p.contains('?') => "YAML syntax".to_owned(),
                p => p,
            };
            let inner = e.into_inner();
            let location = inner
                .location()
                .map(|l| format!(" line {} column {}", l.line(), l.column()))
                .unwrap_or_default();
            ConfigError::Parse {
                path: path.to_owned(),
                location,
                field,
                message: strip_location(&inner.to_string()),
            }
        })?;
        config.validate(path, text)?;
        Ok(config)
    }

    /// Rules that span fields, which serde cannot check alone. `text` is looked up only to
    /// name the line of the field at fault.
    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let invalid = |field: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            location: locate::location(text, &field),
            field,
            message,
        };
        if self.source.interval < Duration::from_secs(1) {
            return Err(invalid(
                "source.interval".into(),
                "expected at least 1s between polls".into(),
            ));
        }
        if self.source.fetch_timeout < Duration::from_secs(1) {
            return Err(invalid(
                "source.fetchTimeout".into(),
                "expected at least 1s for a fetch (the connect alone may take that)".into(),
            ));
        }
        let k = &self.render.kustomize;
        // Go maps about 1 GiB of address space before it allocates much; with less,
        // kustomize fails to start now and then (render/sandbox.rs).
        if k.memory_bytes < 1024 * 1024 * 1024 {
            return Err(invalid(
                "render.kustomize.memoryBytes".into(),
                "expected at least 1073741824 (1 GiB): kustomize, a Go program, reserves address space before it uses it".into(),
            ));
        }
        for (field, value) in [("cpu", k.cpu), ("timeout", k.timeout)] {
            if value < Duration::from_secs(1) {
                return Err(invalid(
                    format!("render.kustomize.{field}"),
                    "expected at least 1s".into(),
                ));
            }
        }
        let r = &self.render;
        for (field, value) in [
            ("maxFileBytes", r.max_file_bytes),
            ("maxObjectBytes", r.max_object_bytes),
            ("maxTierBytes", r.max_tier_bytes),
            ("maxDocumentNodes", r.max_document_nodes as u64),
        ] {
            if value == 0 {
                return Err(invalid(
                    format!("render.{field}"),
                    "must be more than 0 (it bounds what one render may read or build)".into(),
                ));
            }
        }
        let limits = &self.source.export_limits;
        for (field, value) in [
            ("maxBytes", limits.max_bytes),
            ("maxFiles", limits.max_files),
        ] {
            if value == 0 {
                return Err(invalid(
                    format!("source.exportLimits.{field}"),
                    "must be more than 0 (it bounds what a commit may write to disk)".into(),
                ));
            }
        }
        let auth = &self.source.auth;
        if auth.token_file.is_some() && auth.ssh_key_file.is_some() {
            return Err(invalid(
                "source.auth".into(),
                "expected either tokenFile (https) or sshKeyFile (ssh), not both".into(),
            ));
        }
        if auth.ssh_key_file.is_some() && auth.known_hosts_file.is_none() {
            return Err(invalid(
                "source.auth.knownHostsFile".into(),
                "expected a known_hosts file beside sshKeyFile: gitopsd never connects to an unchecked host".into(),
            ));
        }
        if auth.token_file.is_some() && self.source.url.kind != RepoUrlKind::Https {
            return Err(invalid(
                "source.auth.tokenFile".into(),
                format!(
                    "a token authenticates https:// URLs only, and source.url is {}",
                    self.source.url
                ),
            ));
        }
        if auth.ssh_key_file.is_some() && self.source.url.kind != RepoUrlKind::Ssh {
            return Err(invalid(
                "source.auth.sshKeyFile".into(),
                format!(
                    "an SSH key authenticates ssh:// URLs only, and source.url is {}",
                    self.source.url
                ),
            ));
        }
        if self.tiers.is_empty() {
            return Err(invalid("tiers".into(), "expected at least one tier".into()));
        }
        let mut seen = std::collections::HashMap::new();
        let mut adopted = std::collections::HashMap::new();
        for (i, tier) in self.tiers.iter().enumerate() {
            let at = |field: &str| format!("tiers[{i}].{field}");
            if let Err(why) = check_dns_label(&tier.name) {
                return Err(invalid(at("name"), why.to_string()));
            }
            if let Some(first) = seen.insert(tier.name.as_str(), i) {
                let first_field = format!("tiers[{first}].name");
                return Err(invalid(
                    at("name"),
                    format!(
                        "tier {:?} is defined twice (first as {first_field}{}); tier names must be unique: rename or remove one",
                        tier.name,
                        locate::location(text, &first_field)
                    ),
                ));
            }
            if tier.git_ref.trim().is_empty() {
                return Err(invalid(
                    at("ref"),
                    "expected a branch, tag or commit to follow".into(),
                ));
            }
            for (j, ns) in tier.namespaces.iter().enumerate() {
                if let Err(why) = check_dns_label(ns) {
                    return Err(invalid(at(&format!("namespaces[{j}]")), why.to_string()));
                }
            }
            if tier.namespaces.is_empty() && !tier.cluster_scoped {
                return Err(invalid(
                    at("namespaces"),
                    "expected at least one namespace the tier may write to (or clusterScoped: true)".into(),
                ));
            }
            if let Some(from) = &tier.promote_from {
                // Promotion flows down the list: a tier may only follow one defined before it,
                // which also rules out cycles.
                if !self.tiers[..i].iter().any(|t| &t.name == from) {
                    let known: Vec<&str> = self.tiers.iter().map(|t| t.name.as_str()).collect();
                    return Err(invalid(
                        at("promoteFrom"),
                        format!(
                            "expected the name of a tier listed before {:?}; found {from:?} (tiers: {})",
                            tier.name,
                            known.join(", ")
                        ),
                    ));
                }
            }
            if tier.soak.is_some() && tier.promote_from.is_none() {
                return Err(invalid(
                    at("soak"),
                    "a soak time needs promoteFrom: it is how long that tier must be healthy"
                        .into(),
                ));
            }
            for (j, w) in tier.windows.iter().enumerate() {
                if w.duration < Duration::from_secs(60) {
                    return Err(invalid(
                        at(&format!("windows[{j}].duration")),
                        "expected a window of at least 1m".into(),
                    ));
                }
            }
            let prune = &tier.prune;
            if prune.max_delete_percent == 0 || prune.max_delete_percent > 100 {
                return Err(invalid(
                    at("prune.maxDeletePercent"),
                    format!(
                        "expected a share of the inventory from 1 to 100 (percent); found {}",
                        prune.max_delete_percent
                    ),
                ));
            }
            for (j, k) in prune.kinds.iter().enumerate() {
                if !PROTECTED_KINDS.contains(&k.as_str()) {
                    return Err(invalid(
                        at(&format!("prune.kinds[{j}]")),
                        format!(
                            "expected one of the kinds that are protected from prune ({}); found {k:?} (other kinds are pruned without opting in)",
                            PROTECTED_KINDS.join(", ")
                        ),
                    ));
                }
            }
            if tier.apply.concurrency == 0 || tier.apply.concurrency > 256 {
                return Err(invalid(
                    at("apply.concurrency"),
                    format!(
                        "expected 1 to 256 requests in flight; found {}",
                        tier.apply.concurrency
                    ),
                ));
            }
            // The namespace of the ServiceAccounts the tiers write as is the seat of every
            // tier's identity: a tier that may write there could bind its ServiceAccount more,
            // or delete another tier's.
            for (j, ns) in tier.namespaces.iter().enumerate() {
                if let Some((k, other)) = self.tiers.iter().enumerate().find(|(_, t)| {
                    t.service_account
                        .as_ref()
                        .is_some_and(|sa| &sa.namespace == ns)
                }) {
                    return Err(invalid(
                        at(&format!("namespaces[{j}]")),
                        format!(
                            "namespace {ns:?} holds the ServiceAccount tier {:?} writes as (tiers[{k}].serviceAccount); no tier may write there: keep the tiers' ServiceAccounts in a namespace of their own (e.g. gitopsd's)",
                            other.name
                        ),
                    ));
                }
            }
            // The state ConfigMaps hold each tier's inventory, the proof of what it owns (and
            // so what it prunes): no tier may write beside them.
            if let Some(state_ns) = self.state.namespace.as_deref().map(str::trim)
                && let Some(j) = tier.namespaces.iter().position(|ns| ns == state_ns)
            {
                return Err(invalid(
                    at(&format!("namespaces[{j}]")),
                    format!(
                        "namespace {state_ns:?} holds the tiers' state (state.namespace); no tier may write there: a tier that could would rewrite another tier's inventory"
                    ),
                ));
            }
            if let Some(rb) = &tier.rollback
                && rb.health_timeout < Duration::from_secs(1)
            {
                return Err(invalid(
                    at("rollback.healthTimeout"),
                    "expected at least 1s".into(),
                ));
            }
            self.validate_adopt(i, &mut adopted)
                .map_err(|(field, message)| invalid(at(&field), message))?;
        }
        Ok(())
    }

    /// A tier adopts only inside its own scope, and no object is adopted by two tiers (both
    /// would take it, and each would then refuse it as the other's).
    fn validate_adopt<'a>(
        &'a self,
        i: usize,
        adopted: &mut std::collections::HashMap<(&'a str, Option<&'a str>, &'a str), &'a str>,
    ) -> Result<(), (String, String)> {
        let tier = &self.tiers[i];
        for (j, a) in tier.adopt.iter().enumerate() {
            let field = |f: &str| format!("adopt[{j}]{f}");
            let listed = |ns: &str| tier.namespaces.iter().any(|n| n == ns);
            match &a.namespace {
                Some(ns) if !listed(ns) => {
                    return Err((
                        field(".namespace"),
                        format!(
                            "{ns:?} is not one of tier {:?}'s namespaces ({}); a tier adopts only inside them",
                            tier.name,
                            tier.namespaces.join(", ")
                        ),
                    ));
                }
                None if a.kind == "Namespace" && !listed(&a.name) => {
                    return Err((
                        field(".name"),
                        format!(
                            "Namespace {:?} is not one of tier {:?}'s namespaces ({}); list it under namespaces first",
                            a.name,
                            tier.name,
                            tier.namespaces.join(", ")
                        ),
                    ));
                }
                None if !tier.cluster_scoped => {
                    return Err((
                        field(""),
                        format!(
                            "{a} has no namespace, so it is cluster-scoped, and tier {:?} may not hold cluster-scoped objects (set clusterScoped: true, or give the namespace)",
                            tier.name
                        ),
                    ));
                }
                _ => {}
            }
            let id = (a.kind.as_str(), a.namespace.as_deref(), a.name.as_str());
            if let Some(other) = adopted.insert(id, &tier.name) {
                let why = if other == tier.name {
                    format!("{a} is listed twice")
                } else {
                    format!("{a} is adopted by tier {other:?} too; one object belongs to one tier")
                };
                return Err((field(""), why));
            }
        }
        Ok(())
    }

    /// The files the config names, each read once to prove it can be (`gitopsd run --check`;
    /// the daemon reads them at start-up and would fail there). Contents are never shown; a
    /// token or secret file must not be empty. `path` is the config file, read again only to
    /// name the field's line.
    pub fn check_files(&self, path: &Path) -> Result<(), ConfigError> {
        let auth = &self.source.auth;
        let named = [
            ("source.auth.tokenFile", &auth.token_file, true),
            ("source.auth.sshKeyFile", &auth.ssh_key_file, false),
            ("source.auth.knownHostsFile", &auth.known_hosts_file, false),
            (
                "source.webhookSecretFile",
                &self.source.webhook_secret_file,
                true,
            ),
            ("http.tokenFile", &self.http.token_file, true),
        ];
        let mut files: Vec<(String, &Path, bool)> = named
            .into_iter()
            .filter_map(|(field, file, secret)| Some((field.to_owned(), file.as_deref()?, secret)))
            .collect();
        for (i, tier) in self.tiers.iter().enumerate() {
            if let Some(s) = &tier.require_signed_commits {
                files.push((
                    format!("tiers[{i}].requireSignedCommits.sshAllowedSigners"),
                    s.ssh_allowed_signers.as_path(),
                    false,
                ));
            }
        }
        for (field, file, secret) in files {
            let problem = match std::fs::read(file) {
                Err(e) => format!(
                    "cannot read {}: {e}; create the file, or remove {field}",
                    file.display()
                ),
                Ok(bytes) if secret && bytes.trim_ascii().is_empty() => format!(
                    "{} is empty (or only whitespace); write the secret into it, or remove {field}",
                    file.display()
                ),
                Ok(_) => continue,
            };
            let text = std::fs::read_to_string(path).unwrap_or_default();
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                location: locate::location(&text, &field),
                field,
                message: problem,
            });
        }
        Ok(())
    }

    pub fn tier(&self, name: &str) -> Option<&TierConfig> {
        self.tiers.iter().find(|t| t.name == name)
    }
}

impl TierConfig {
    /// How long an applied revision may take to become healthy.
    pub fn health_timeout(&self) -> Duration {
        self.rollback
            .map(|r| r.health_timeout)
            .unwrap_or_else(default_health_timeout)
    }

    /// Whether a revision that does not become healthy in time is rolled back.
    pub fn rolls_back(&self) -> bool {
        self.rollback.is_some_and(|r| r.on_health_failure)
    }
}

/// serde_yaml wraps its message as "PATH: MESSAGE at line L column C"; the error shows the
/// field and the position once each, so both are cut from the message.
fn strip_location(message: &str) -> String {
    let message = match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    let is_path = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | '_' | '-'))
    };
    match message.split_once(": ") {
        Some((path, rest)) if is_path(path) => rest.to_owned(),
        _ => message.to_owned(),
    }
}

/// A name Kubernetes would refuse where the config puts it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "expected a DNS label (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit); found {0:?}"
    )]
    DnsLabel(String),
    #[error(
        "expected a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253); found {0:?}"
    )]
    DnsSubdomain(String),
}

/// Tier names become label values and namespace names become namespaces: RFC 1123 labels.
fn check_dns_label(s: &str) -> Result<(), NameError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(NameError::DnsLabel(s.to_owned()))
    }
}

/// ServiceAccount names are DNS subdomains: labels joined by '.', at most 253 characters.
fn check_dns_subdomain(s: &str) -> Result<(), NameError> {
    if !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| check_dns_label(l).is_ok()) {
        Ok(())
    } else {
        Err(NameError::DnsSubdomain(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN_EXAMPLE: &str = include_str!("../examples/gitopsd.yaml");

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("gitopsd.yaml"))
    }

    fn error_of(text: &str) -> String {
        parse(text)
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn the_example_config_parses_into_typed_tiers() {
        let c = parse(DESIGN_EXAMPLE).expect("example config is valid");
        assert_eq!(c.source.url.kind, RepoUrlKind::File);
        assert_eq!(c.source.interval, Duration::from_secs(60));
        let names: Vec<_> = c.tiers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["experimental", "validation", "operational"]);
        let op = c.tier("operational").expect("operational tier");
        assert_eq!(op.promote_from.as_deref(), Some("validation"));
        assert_eq!(op.policy.high, Action::Alert);
        assert_eq!(op.policy.low, Action::Ignore);
        assert_eq!(op.windows[0].duration, Duration::from_secs(10 * 3600));
        assert_eq!(op.windows[0].timezone.0, chrono_tz::Europe::Berlin);
        let rb = op.rollback.expect("rollback");
        assert!(rb.on_health_failure);
        assert_eq!(rb.health_timeout, Duration::from_secs(300));
        assert_eq!(c.http.listen, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn defaults_fill_what_the_config_leaves_out() {
        let c = parse(
            "source: {url: /srv/config}\ntiers:\n  - {name: dev, ref: main, namespaces: [dev]}\n",
        )
        .unwrap();
        assert_eq!(c.source.interval, Duration::from_secs(60));
        assert_eq!(c.tiers[0].policy, Policy::default());
        assert!(!c.tiers[0].prune.enabled);
        assert_eq!(c.tiers[0].prune.max_delete_percent, 50);
        assert_eq!(c.tiers[0].apply, ApplyConfig::default());
        assert_eq!(c.http.listen, default_listen());
    }

    #[test]
    fn leader_election_is_off_by_default_and_names_its_lease() {
        let base =
            "source: {url: /srv/config}\ntiers:\n  - {name: dev, ref: main, namespaces: [dev]}\n";
        let c = parse(base).unwrap();
        assert!(!c.leader_election.enabled);
        assert_eq!(c.leader_election.lease_name, "gitopsd-leader");
        let c = parse(&format!(
            "{base}leaderElection:\n  enabled: true\n  leaseName: l\n  namespace: ops\n"
        ))
        .unwrap();
        assert_eq!(
            c.leader_election,
            LeaderElectionConfig {
                enabled: true,
                lease_name: "l".into(),
                namespace: Some("ops".into())
            }
        );
        let err = error_of(&format!("{base}leaderElection:\n  duration: 15s\n"));
        assert!(err.contains("duration"), "{err}");
    }

    #[test]
    fn the_audit_log_defaults_to_the_workdir_and_takes_a_path() {
        let base =
            "source: {url: /srv/config}\ntiers:\n  - {name: dev, ref: main, namespaces: [dev]}\n";
        let c = parse(base).unwrap();
        assert_eq!(
            c.audit.path_in(Path::new("/var/tmp/gitopsd")),
            Path::new("/var/tmp/gitopsd/audit.log")
        );
        let c = parse(&format!(
            "{base}audit:\n  path: /var/log/gitopsd/audit.log\n"
        ))
        .unwrap();
        assert_eq!(
            c.audit.path_in(Path::new("/var/tmp/gitopsd")),
            Path::new("/var/log/gitopsd/audit.log")
        );
        let err = error_of(&format!("{base}audit:\n  file: x\n"));
        assert!(err.contains("audit.file") || err.contains("file"), "{err}");
    }

    #[test]
    fn prune_is_a_switch_or_a_guard() {
        let tier = |prune: &str| {
            parse(&format!(
                "source: {{url: /srv/config}}\ntiers:\n  - {{name: dev, ref: main, namespaces: [dev], prune: {prune}}}\n"
            ))
            .map(|c| c.tiers[0].prune.clone())
        };
        let on = tier("true").unwrap();
        assert!(on.enabled);
        assert_eq!(on.max_delete_percent, 50);
        assert!(!on.may_prune_kind("Namespace"));
        assert!(on.may_prune_kind("ConfigMap"));
        let full =
            tier("{maxDeletePercent: 100, allowEmpty: true, kinds: [PersistentVolumeClaim]}")
                .unwrap();
        assert!(full.enabled, "a guard given in full turns prune on");
        assert_eq!(full.max_delete_percent, 100);
        assert!(full.allow_empty);
        assert!(full.may_prune_kind("PersistentVolumeClaim"));
        assert!(!full.may_prune_kind("CustomResourceDefinition"));
        let e = tier("{maxDeletePercent: 0}").unwrap_err().to_string();
        assert!(
            e.contains(
                "tiers[0].prune.maxDeletePercent: expected a share of the inventory from 1 to 100"
            ),
            "{e}"
        );
        let e = tier("{kinds: [ConfigMap]}").unwrap_err().to_string();
        assert!(
            e.contains("tiers[0].prune.kinds[0]") && e.contains("found \"ConfigMap\""),
            "{e}"
        );
        let e = tier("{maxDelete: 10}").unwrap_err().to_string();
        assert!(
            e.contains("tiers[0].prune.maxDelete: unknown field `maxDelete`"),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_policy_action_names_file_field_line_and_the_choices() {
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - name: dev\n    ref: main\n    namespaces: [dev]\n    policy: {critical: fix}\n",
        );
        assert_eq!(
            e,
            "gitopsd.yaml line 6 column 24: tiers[0].policy.critical: unknown variant `fix`, expected one of `apply`, `alert`, `ignore`"
        );
        // `prune` is what happens to an extra object, not a policy one may choose.
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - name: dev\n    ref: main\n    namespaces: [dev]\n    policy: {medium: prune}\n",
        );
        assert!(e.contains("unknown variant `prune`"), "{e}");
    }

    #[test]
    fn an_unknown_field_is_named_with_the_fields_expected() {
        let e = error_of(
            "source: {url: /srv/config, intervall: 5m}\ntiers: [{name: dev, ref: main, namespaces: [dev]}]\n",
        );
        assert_eq!(
            e,
            "gitopsd.yaml line 1 column 28: source.intervall: unknown field `intervall`, expected one of `url`, `auth`, `interval`, `fetchTimeout`, `webhookSecretFile`, `publishHealthy`, `exportLimits`"
        );
    }

    #[test]
    fn a_bad_duration_says_what_a_duration_looks_like() {
        let e = error_of(
            "source: {url: /srv/config, interval: soon}\ntiers: [{name: dev, ref: main, namespaces: [dev]}]\n",
        );
        assert!(e.contains("source.interval"), "{e}");
        assert!(e.contains("\"30s\""), "{e}");
    }

    #[test]
    fn a_missing_required_field_is_named() {
        let e = error_of("source: {url: /srv/config}\ntiers: [{name: dev, namespaces: [dev]}]\n");
        assert!(e.contains("tiers[0]"), "{e}");
        assert!(e.contains("missing field `ref`"), "{e}");
    }

    #[test]
    fn promote_from_must_name_an_earlier_tier() {
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - {name: a, ref: main, namespaces: [a], promoteFrom: b}\n  - {name: b, ref: main, namespaces: [b]}\n",
        );
        assert_eq!(
            e,
            "gitopsd.yaml line 3 column 56: tiers[0].promoteFrom: expected the name of a tier listed before \"a\"; found \"b\" (tiers: a, b)"
        );
    }

    #[test]
    fn errors_found_after_parsing_name_the_line_of_the_field() {
        let e = error_of(
            "source:\n  url: /srv/config\n  interval: 0s\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert_eq!(
            e,
            "gitopsd.yaml line 3 column 13: source.interval: expected at least 1s between polls"
        );
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - name: a\n    ref: main\n    namespaces: [a]\n    windows: [{schedule: '0 8 * * *', duration: 1s}]\n",
        );
        assert!(
            e.starts_with("gitopsd.yaml line 6 column 49: tiers[0].windows[0].duration:"),
            "{e}"
        );
    }

    #[test]
    fn check_files_names_the_field_its_line_and_the_path_never_the_contents() {
        let dir = std::env::temp_dir().join(format!("gitopsd-check-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "s3cr3t-token\n").unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let missing = dir.join("missing");
        let config_file = dir.join("gitopsd.yaml");
        let write = |source_extra: &str, http: &str| {
            let text = format!(
                "source:\n  url: https://git.example.com/c.git\n  auth: {{tokenFile: {}}}\n{source_extra}tiers: [{{name: a, ref: main, namespaces: [a]}}]\n{http}",
                token.display()
            );
            std::fs::write(&config_file, &text).unwrap();
            Config::parse(&text, &config_file).unwrap()
        };
        let ok = write("", "");
        ok.check_files(&config_file).expect("every file readable");

        let c = write(&format!("  webhookSecretFile: {}\n", missing.display()), "");
        let e = c.check_files(&config_file).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{} line 4 column 22: source.webhookSecretFile: cannot read {}:",
                config_file.display(),
                missing.display()
            )),
            "{e}"
        );
        let c = write("", &format!("http:\n  tokenFile: {}\n", empty.display()));
        let e = c.check_files(&config_file).unwrap_err().to_string();
        assert!(
            e.contains("line 6 column 14: http.tokenFile:") && e.contains("is empty"),
            "{e}"
        );
        std::fs::write(&token, "").unwrap();
        std::fs::remove_file(&token).unwrap();
        let e = ok.check_files(&config_file).unwrap_err().to_string();
        assert!(
            e.contains("line 3 column 21: source.auth.tokenFile: cannot read"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn promotion_and_change_control_fields_parse_with_their_defaults() {
        let c = parse(
            "source: {url: /srv/config, publishHealthy: true}\ntiers:\n  - {name: a, ref: main, namespaces: [a]}\n  - name: b\n    ref: tier/b\n    namespaces: [b]\n    promoteFrom: a\n    soak: 30m\n    gate: baseDigest\n    criticalOutsideWindows: hold\n    requireSignedCommits: {sshAllowedSigners: /etc/gitopsd/allowed_signers}\n    windows:\n      - {schedule: \"0 8 * * 1-5\", duration: 10h, timezone: Europe/Berlin}\n      - {kind: deny, schedule: \"0 16 * * 5\", duration: 64h}\n",
        )
        .expect("valid");
        assert!(c.source.publish_healthy);
        let a = &c.tiers[0];
        assert_eq!(a.soak, None);
        assert_eq!(a.gate, PromotionGate::Revision);
        assert_eq!(a.critical_outside_windows, OutsideWindows::Apply);
        let b = &c.tiers[1];
        assert_eq!(b.soak, Some(Duration::from_secs(1800)));
        assert_eq!(b.gate, PromotionGate::BaseDigest);
        assert_eq!(b.critical_outside_windows, OutsideWindows::Hold);
        assert_eq!(b.windows[0].kind, WindowKind::Allow);
        assert_eq!(b.windows[1].kind, WindowKind::Deny);
        assert_eq!(
            b.require_signed_commits
                .as_ref()
                .map(|s| s.ssh_allowed_signers.clone()),
            Some(PathBuf::from("/etc/gitopsd/allowed_signers"))
        );
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - {name: a, ref: main, namespaces: [a], soak: 5m}\n",
        );
        assert!(
            e.contains("tiers[0].soak: a soak time needs promoteFrom"),
            "{e}"
        );
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - name: a\n    ref: main\n    namespaces: [a]\n    windows: [{kind: maybe, schedule: \"0 8 * * *\", duration: 1h}]\n",
        );
        assert!(
            e.contains("unknown variant `maybe`, expected `allow` or `deny`"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_tier_names_are_rejected() {
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - {name: a, ref: main, namespaces: [a]}\n  - {name: a, ref: x, namespaces: [b]}\n",
        );
        assert_eq!(
            e,
            "gitopsd.yaml line 4 column 12: tiers[1].name: tier \"a\" is defined twice (first as tiers[0].name line 3 column 12); tier names must be unique: rename or remove one"
        );
    }

    #[test]
    fn tier_and_namespace_names_must_be_dns_labels() {
        let e = error_of(
            "source: {url: /srv/config}\ntiers: [{name: Prod, ref: main, namespaces: [x]}]\n",
        );
        assert!(e.contains("tiers[0].name: expected a DNS label"), "{e}");
        let e = error_of(
            "source: {url: /srv/config}\ntiers: [{name: prod, ref: main, namespaces: [ok, Not_OK]}]\n",
        );
        assert!(e.contains("tiers[0].namespaces[1]"), "{e}");
    }

    #[test]
    fn days_of_the_week_count_from_sunday_as_0_as_in_standard_cron() {
        let cases = [
            ("1-5", "MON,TUE,WED,THU,FRI"),
            ("0", "SUN"),
            ("7", "SUN"),
            ("0,6", "SUN,SAT"),
            ("5-7", "SUN,FRI,SAT"),
            ("*/2", "SUN,TUE,THU,SAT"),
            ("1-5/2", "MON,WED,FRI"),
            ("mon-fri", "MON,TUE,WED,THU,FRI"),
        ];
        for (field, want) in cases {
            assert_eq!(day_names(field).as_deref(), Some(want), "{field}");
        }
        assert_eq!(day_names("*"), None);
        assert_eq!(day_names("1-9"), None, "left to the cron crate to report");
        // 2026-11-27 is a Friday: "1-5" fires on it, and not on Sunday the 29th.
        let s: CronSchedule = "0 8 * * 1-5".parse().expect("valid");
        let next = s
            .schedule
            .after(&chrono::DateTime::parse_from_rfc3339("2026-11-27T00:00:00Z").expect("time"))
            .take(2)
            .map(|t| t.to_rfc3339())
            .collect::<Vec<_>>();
        assert_eq!(
            next,
            ["2026-11-27T08:00:00+00:00", "2026-11-30T08:00:00+00:00"]
        );
    }

    #[test]
    fn a_cron_schedule_needs_five_fields_and_a_known_timezone() {
        let base = "source: {url: /srv/config}\ntiers:\n  - name: p\n    ref: main\n    namespaces: [p]\n    windows:\n";
        let e = error_of(&format!(
            "{base}      - {{schedule: \"0 8 * *\", duration: 1h}}\n"
        ));
        assert!(e.contains("tiers[0].windows[0].schedule"), "{e}");
        assert!(e.contains("found 4 fields"), "{e}");
        let e = error_of(&format!(
            "{base}      - {{schedule: \"0 8 * * 1-5\", duration: 1h, timezone: Mars/Olympus}}\n"
        ));
        assert!(e.contains("tiers[0].windows[0].timezone"), "{e}");
        assert!(e.contains("IANA"), "{e}");
        let e = error_of(&format!(
            "{base}      - {{schedule: \"0 8 * * 1-9\", duration: 1h}}\n"
        ));
        assert!(
            e.ends_with(
                "tiers[0].windows[0].schedule: invalid cron schedule \"0 8 * * 1-9\": Invalid range for Days of Week: 1-9"
            ),
            "{e}"
        );
    }

    #[test]
    fn ssh_keys_require_known_hosts_and_tokens_require_https() {
        let e = error_of(
            "source: {url: \"ssh://git@example.com/c.git\", auth: {sshKeyFile: /k}}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert!(e.contains("source.auth.knownHostsFile"), "{e}");
        let e = error_of(
            "source: {url: /srv/config, exportLimits: {maxFiles: 0}}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert!(e.contains("source.exportLimits.maxFiles"), "{e}");
        let e = error_of(
            "source: {url: /srv/config, exportLimits: {maxByte: 10}}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert!(e.contains("unknown field `maxByte`"), "{e}");
        let e = error_of(
            "source: {url: /srv/config}\nrender: {kustomize: {memoryBytes: 1000}}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert!(e.contains("render.kustomize.memoryBytes"), "{e}");
        let e = error_of(
            "source: {url: /srv/config}\nrender: {maxObjectBytes: 0}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert!(
            e.contains("render.maxObjectBytes: must be more than 0"),
            "{e}"
        );
        let c = Config::parse(
            "source: {url: /srv/config}\nrender: {kustomize: {memoryBytes: 1073741824, cpu: 10s}}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
            Path::new("gitopsd.yaml"),
        )
        .expect("valid");
        let l = c.render.limits();
        assert_eq!(l.max_object_bytes, 3 << 20);
        assert_eq!(l.max_file_bytes, 64 << 20);
        assert_eq!(l.kustomize_memory_bytes, 1 << 30);
        assert_eq!(l.kustomize_cpu, Duration::from_secs(10));
        assert_eq!(l.kustomize_timeout, Duration::from_secs(60));
        let e = error_of(
            "source: {url: \"git@example.com:c.git\", auth: {tokenFile: /t}}\ntiers: [{name: a, ref: main, namespaces: [a]}]\n",
        );
        assert!(e.contains("source.auth.tokenFile"), "{e}");
    }

    #[test]
    fn repo_urls_are_classified_and_unsafe_ones_refused() {
        let kind = |s: &str| s.parse::<RepoUrl>().map(|u| u.kind);
        assert_eq!(
            kind("https://git.example.com/c.git"),
            Ok(RepoUrlKind::Https)
        );
        assert_eq!(kind("ssh://git@example.com/c.git"), Ok(RepoUrlKind::Ssh));
        assert_eq!(kind("git@example.com:platform/c.git"), Ok(RepoUrlKind::Ssh));
        assert_eq!(kind("file:///srv/c"), Ok(RepoUrlKind::File));
        assert_eq!(kind("./config"), Ok(RepoUrlKind::File));
        assert!(
            kind("http://example.com/c.git")
                .unwrap_err().to_string()
                .contains("https://")
        );
        assert!(
            kind("ftp://example.com/c.git")
                .unwrap_err().to_string()
                .contains("`ftp://`")
        );
        assert!(
            kind("https://user:secret@example.com/c.git")
                .unwrap_err().to_string()
                .contains("tokenFile")
        );
    }

    #[test]
    fn yaml_syntax_errors_carry_the_position() {
        let e = error_of("source: {url: /srv/config\ntiers: [\n");
        assert!(
            e.starts_with(
                "gitopsd.yaml line 2 column 6: YAML syntax: did not find expected ',' or '}'"
            ),
            "{e}"
        );
    }

    #[test]
    fn severity_overrides_parse_with_kind_path_and_severity_or_ignore() {
        let c = parse(
            "source: {url: /srv/config}\ntiers:\n  - name: dev\n    ref: main\n    namespaces: [dev]\n    severity:\n      - {kind: Deployment, path: spec.replicas, severity: low}\n      - {path: 'metadata.annotations.**', severity: ignore}\n",
        )
        .expect("overrides are valid");
        let o = &c.tiers[0].severity;
        assert_eq!(o[0].kind.as_deref(), Some("Deployment"));
        assert_eq!(o[0].path.as_str(), "spec.replicas");
        assert_eq!(o[0].severity, OverrideSeverity::Low);
        assert_eq!(o[1].kind, None);
        assert_eq!(o[1].severity, OverrideSeverity::Ignore);
    }

    #[test]
    fn an_invalid_severity_pattern_names_the_override_and_why() {
        let base = "source: {url: /srv/config}\ntiers:\n  - name: dev\n    ref: main\n    namespaces: [dev]\n    severity:\n      - {path: spec.replicas, severity: low}\n";
        let e = error_of(&format!(
            "{base}      - {{path: 'spec.rep*', severity: low}}\n"
        ));
        assert!(e.starts_with("gitopsd.yaml line 8 column "), "{e}");
        assert!(
            e.contains(": tiers[0].severity[1].path: invalid path pattern: field \"rep*\""),
            "{e}"
        );
        let e = error_of(&format!(
            "{base}      - {{path: spec.replicas, severity: urgent}}\n"
        ));
        assert!(e.contains("tiers[0].severity[1].severity: unknown variant `urgent`, expected one of `critical`, `high`, `medium`, `low`, `ignore`"), "{e}");
        let e = error_of(&format!(
            "{base}      - {{path: spec.replicas, level: low}}\n"
        ));
        assert!(
            e.contains("tiers[0].severity[1].level: unknown field `level`"),
            "{e}"
        );
    }

    #[test]
    fn adopt_entries_are_parsed_strictly_and_stay_inside_the_tiers_scope() {
        let base = "source: {url: /srv/config}\ntiers:\n  - name: a\n    ref: main\n    namespaces: [a]\n    clusterScoped: true\n";
        let c = parse(&format!(
            "{base}    adopt:\n      - {{kind: Namespace, name: a}}\n      - {{apiVersion: apps/v1, kind: Deployment, namespace: a, name: api}}\n"
        ))
        .expect("valid adopt");
        let adopt = &c.tiers[0].adopt;
        assert_eq!(adopt[0].to_string(), "{kind: Namespace, name: a}");
        assert_eq!(
            adopt[1].to_string(),
            "{apiVersion: apps/v1, kind: Deployment, namespace: a, name: api}"
        );
        // Errors read while parsing carry the line.
        let e = error_of(&format!(
            "{base}    adopt:\n      - {{kind: ConfigMap, nmae: x}}\n"
        ));
        assert!(
            e.starts_with("gitopsd.yaml line 8 column ") && e.contains("unknown field `nmae`"),
            "{e}"
        );
        let e = error_of(&format!(
            "{base}    adopt:\n      - {{kind: configmap, name: x, namespace: a}}\n"
        ));
        assert!(
            e.starts_with("gitopsd.yaml line 8 column ")
                && e.contains(
                    "tiers[0].adopt[0]: kind \"configmap\" is not a Kubernetes kind name"
                ),
            "{e}"
        );
        let e = error_of(&format!(
            "{base}    adopt:\n      - {{kind: ConfigMap, name: '*', namespace: a}}\n"
        ));
        assert!(e.contains("no wildcards"), "{e}");
        let e = error_of(&format!(
            "{base}    adopt:\n      - {{kind: Namespace, name: a, namespace: a}}\n"
        ));
        assert!(e.contains("a Namespace is cluster-scoped"), "{e}");
        // Scope, checked across fields.
        let e = error_of(&format!(
            "{base}    adopt:\n      - {{kind: ConfigMap, namespace: kube-system, name: x}}\n"
        ));
        assert_eq!(
            e,
            "gitopsd.yaml line 8 column 38: tiers[0].adopt[0].namespace: \"kube-system\" is not one of tier \"a\"'s namespaces (a); a tier adopts only inside them"
        );
        let e = error_of(&format!(
            "{base}    adopt:\n      - {{kind: Namespace, name: kube-system}}\n"
        ));
        assert!(
            e.contains("tiers[0].adopt[0].name: Namespace \"kube-system\" is not one of tier \"a\"'s namespaces (a)"),
            "{e}"
        );
        let e = error_of(
            "source: {url: /srv/config}\ntiers:\n  - {name: a, ref: main, namespaces: [a], adopt: [{kind: ClusterRole, name: view}]}\n",
        );
        assert!(
            e.contains("tiers[0].adopt[0]: {kind: ClusterRole, name: view} has no namespace, so it is cluster-scoped, and tier \"a\" may not hold cluster-scoped objects"),
            "{e}"
        );
        let e = error_of(&format!(
            "{base}    adopt: [{{kind: ClusterRole, name: view}}]\n  - {{name: b, ref: main, namespaces: [b], clusterScoped: true, adopt: [{{kind: ClusterRole, name: view}}]}}\n"
        ));
        assert!(
            e.contains("tiers[1].adopt[0]: {kind: ClusterRole, name: view} is adopted by tier \"a\" too; one object belongs to one tier"),
            "{e}"
        );
        let e = error_of(&format!(
            "{base}    adopt: [{{kind: Namespace, name: a}}, {{kind: Namespace, name: a}}]\n"
        ));
        assert!(
            e.contains("tiers[0].adopt[1]: {kind: Namespace, name: a} is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn no_tier_may_list_the_state_namespace() {
        let e = error_of(
            "source: {url: /srv/repo}\nstate: {namespace: ops}\ntiers:\n  - {name: t, ref: main, namespaces: [shop, ops]}\n",
        );
        assert!(
            e.contains("tiers[0].namespaces[1]") && e.contains("holds the tiers' state"),
            "{e}"
        );
    }

    #[test]
    fn a_service_account_is_namespace_slash_name_or_a_map_and_named_on_error() {
        let tier = |sa: &str| {
            parse(&format!(
                "source: {{url: /srv/config}}\ntiers:\n  - name: dev\n    ref: main\n    namespaces: [dev]\n    serviceAccount: {sa}\n"
            ))
            .map(|c| c.tiers[0].service_account.clone())
        };
        let want = Some(ServiceAccountRef {
            namespace: "gitopsd".into(),
            name: "tier-dev".into(),
        });
        assert_eq!(tier("gitopsd/tier-dev").unwrap(), want);
        assert_eq!(tier("{namespace: gitopsd, name: tier-dev}").unwrap(), want);
        assert_eq!(
            tier("system:serviceaccount:gitopsd:tier-dev").unwrap(),
            want
        );
        assert_eq!(
            want.as_ref().map(ServiceAccountRef::username).as_deref(),
            Some("system:serviceaccount:gitopsd:tier-dev")
        );
        let none = parse(
            "source: {url: /srv/config}\ntiers:\n  - {name: dev, ref: main, namespaces: [dev]}\n",
        )
        .unwrap();
        assert_eq!(none.tiers[0].service_account, None);

        // No tier may write where the ServiceAccounts live.
        let e = parse(
            "source: {url: /srv/config}\ntiers:\n  - {name: a, ref: main, namespaces: [a], serviceAccount: b/tier-a}\n  - {name: b, ref: main, namespaces: [b]}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("tiers[1].namespaces[0]: namespace \"b\" holds the ServiceAccount tier \"a\" writes as (tiers[0].serviceAccount); no tier may write there"),
            "{e}"
        );
        let e = tier("tier-dev").unwrap_err().to_string();
        assert!(e.starts_with("gitopsd.yaml line 6 column "), "{e}");
        assert!(
            e.contains("tiers[0].serviceAccount: expected NAMESPACE/NAME"),
            "{e}"
        );
        let e = tier("Gitopsd/tier-dev").unwrap_err().to_string();
        assert!(
            e.contains("line 6") && e.contains("namespace: expected a DNS label"),
            "{e}"
        );
        let e = tier("gitopsd/Tier_Dev").unwrap_err().to_string();
        assert!(e.contains("name: expected a DNS subdomain"), "{e}");
        let e = tier("{namespace: gitopsd}").unwrap_err().to_string();
        assert!(e.contains("missing field `name`"), "{e}");
        let e = tier("{namespace: gitopsd, name: a, groups: [x]}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `groups`"), "{e}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = Config::load(Path::new("/nonexistent/gitopsd.yaml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read config file /nonexistent/gitopsd.yaml")
        );
    }
}
