//! Which kinds are namespaced and which cluster-scoped, and the order objects are applied in.
//!
//! The render never guesses a kind's scope: the caller hands it a [`KindScopes`] snapshot,
//! from the API server's discovery in the daemon and in the CLI when a cluster answers, or the
//! table of Kubernetes' own kinds (`validate --offline`). The CRDs of the set being rendered
//! add their kinds. A kind known to neither has an unknown scope, and validation blocks it:
//! stamping the tier namespace on a cluster-scoped kind the render did not know is exactly how
//! a tier without `clusterScoped` could create cluster-wide objects.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde_json::Value;

use super::builtin_kinds::{BUILTIN_KINDS, KUBERNETES};
use super::{RenderError, SourceLocation};

/// Whether a kind's objects live in a namespace, as the API server serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KindScope {
    Namespaced,
    Cluster,
}

impl KindScope {
    pub fn as_str(self) -> &'static str {
        match self {
            KindScope::Namespaced => "namespaced",
            KindScope::Cluster => "cluster-scoped",
        }
    }
}

/// The scope of one rendered object's kind, as the render knew it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectScope {
    Namespaced,
    Cluster,
    /// Neither the snapshot nor a CRD in the set knows the kind. `offline`: the snapshot was
    /// the built-in table, not the API server's discovery.
    Unknown {
        offline: bool,
    },
}

impl From<KindScope> for ObjectScope {
    fn from(s: KindScope) -> ObjectScope {
        match s {
            KindScope::Namespaced => ObjectScope::Namespaced,
            KindScope::Cluster => ObjectScope::Cluster,
        }
    }
}

/// What a render knows about kinds before it reads the repo: (apiVersion, kind) -> scope.
/// Plain data, built by the caller (see `crate::discovery` for the API server's answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindScopes {
    kinds: HashMap<(String, String), KindScope>,
    offline: bool,
}

impl KindScopes {
    /// Kubernetes' own kinds at the pinned version (alpha and beta APIs included), for when no
    /// API server is asked: a custom resource then has a known scope only if its CRD is in the
    /// set rendered.
    pub fn builtin() -> KindScopes {
        KindScopes {
            kinds: BUILTIN_KINDS
                .iter()
                .map(|(av, k, s)| (((*av).to_owned(), (*k).to_owned()), *s))
                .collect(),
            offline: true,
        }
    }

    /// What an API server's discovery said: every (apiVersion, kind) it serves.
    pub fn discovered(kinds: impl IntoIterator<Item = (String, String, KindScope)>) -> KindScopes {
        KindScopes {
            kinds: kinds.into_iter().map(|(av, k, s)| ((av, k), s)).collect(),
            offline: false,
        }
    }

    /// This snapshot with one more kind (tests; a caller that knows a kind another way).
    pub fn with(mut self, api_version: &str, kind: &str, scope: KindScope) -> KindScopes {
        self.kinds
            .insert((api_version.to_owned(), kind.to_owned()), scope);
        self
    }

    /// The scope of `kind` at `api_version`, exactly as spelt; `None` when not known.
    pub fn get(&self, api_version: &str, kind: &str) -> Option<KindScope> {
        self.kinds
            .get(&(api_version.to_owned(), kind.to_owned()))
            .copied()
    }

    /// Built from the built-in table rather than an API server.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Every (apiVersion, kind, scope) known, sorted.
    pub fn entries(&self) -> Vec<(&str, &str, KindScope)> {
        let mut out: Vec<_> = self
            .kinds
            .iter()
            .map(|((av, k), s)| (av.as_str(), k.as_str(), *s))
            .collect();
        out.sort();
        out
    }

    pub fn len(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}

/// The Kubernetes version the built-in table describes (`1.37`).
pub fn builtin_kubernetes_version() -> &'static str {
    KUBERNETES
}

/// The API group of an apiVersion: `apps/v1` -> `apps`, `v1` -> "".
pub(crate) fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// A snapshot plus the kinds the CRDs of one set declare.
pub(crate) struct SetScopes<'a> {
    known: &'a KindScopes,
    from_crds: HashMap<(String, String), KindScope>,
}

impl<'a> SetScopes<'a> {
    /// Learns the kinds the CRDs among `objects` declare (their served versions). A CRD that
    /// declares a kind the snapshot knows with another scope is an error: scope is immutable
    /// in the API server, and the server's answer is what an apply meets.
    pub(crate) fn new<'v>(
        known: &'a KindScopes,
        objects: impl Iterator<Item = (&'v Value, &'v SourceLocation)>,
    ) -> Result<SetScopes<'a>, RenderError> {
        let mut from_crds: HashMap<(String, String), KindScope> = HashMap::new();
        for (m, source) in objects {
            if m["kind"] != "CustomResourceDefinition"
                || group(m["apiVersion"].as_str().unwrap_or("")) != "apiextensions.k8s.io"
            {
                continue;
            }
            let spec = &m["spec"];
            let scope = match spec["scope"].as_str() {
                Some("Cluster") => KindScope::Cluster,
                Some("Namespaced") => KindScope::Namespaced,
                // The API server refuses such a CRD; its kinds stay unknown.
                _ => continue,
            };
            let (Some(g), Some(k)) = (spec["group"].as_str(), spec["names"]["kind"].as_str())
            else {
                continue;
            };
            let versions = spec["versions"].as_array().into_iter().flatten();
            for v in versions.filter(|v| v["served"] != false) {
                let Some(version) = v["name"].as_str() else {
                    continue;
                };
                let key = (format!("{g}/{version}"), k.to_owned());
                let other = known
                    .get(&key.0, &key.1)
                    .or_else(|| from_crds.get(&key).copied());
                if let Some(other) = other
                    && other != scope
                {
                    return Err(RenderError::CrdScopeConflict {
                        file: source.file.display().to_string(),
                        line: source.line,
                        crd: m["metadata"]["name"].as_str().unwrap_or("?").to_owned(),
                        kind: format!("{} in {}", key.1, key.0),
                        declared: scope.as_str(),
                        served: other.as_str(),
                    });
                }
                from_crds.insert(key, scope);
            }
        }
        Ok(SetScopes { known, from_crds })
    }

    pub(crate) fn get(&self, api_version: &str, kind: &str) -> ObjectScope {
        self.known
            .get(api_version, kind)
            .or_else(|| {
                self.from_crds
                    .get(&(api_version.to_owned(), kind.to_owned()))
                    .copied()
            })
            .map_or(
                ObjectScope::Unknown {
                    offline: self.known.is_offline(),
                },
                ObjectScope::from,
            )
    }
}

/// Apply order: Namespaces, then CRDs (what later objects live in or are), then other
/// cluster-scoped objects, then namespaced ones (and those of an unknown scope, which
/// validation blocks anyway).
pub(crate) fn rank(api_version: &str, kind: &str, scope: ObjectScope) -> u8 {
    match (group(api_version), kind) {
        ("", "Namespace") => 0,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => 1,
        _ if scope == ObjectScope::Cluster => 2,
        _ => 3,
    }
}

/// The sort key: rank, kind, namespace, name, then group so the order is total.
pub(crate) fn compare(
    a: &super::DesiredObject,
    b: &super::DesiredObject,
    a_rank: u8,
    b_rank: u8,
) -> Ordering {
    a_rank
        .cmp(&b_rank)
        .then_with(|| a.key.kind.cmp(&b.key.kind))
        .then_with(|| a.key.namespace.cmp(&b.key.namespace))
        .then_with(|| a.key.name.cmp(&b.key.name))
        .then_with(|| group(&a.key.api_version).cmp(group(&b.key.api_version)))
}
