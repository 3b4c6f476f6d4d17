//! One entry of `tiers`: what a tier follows and may write, its `adopt` list, its
//! ServiceAccount, its prune guard and how it applies.

use super::*;

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
pub(super) struct AdoptFields {
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
pub(super) struct ServiceAccountFields {
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
pub(super) struct PruneFields {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "fifty")]
    max_delete_percent: u8,
    #[serde(default)]
    allow_empty: bool,
    #[serde(default)]
    kinds: Vec<String>,
}

pub(super) fn yes() -> bool {
    true
}

pub(super) fn fifty() -> u8 {
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

pub(super) fn default_concurrency() -> usize {
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
