//! A tier's `validation:` section: the level (block or warn) of each security rule. The
//! vocabulary lives with the config that names it; `crate::validate` applies it.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Whether a finding stops the tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Block,
    Warn,
}

/// The security rules, each blocking or warning as the tier's config says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecurityRule {
    PrivilegedContainer,
    RunAsNonRoot,
    HostPath,
    HostNamespaces,
    PlaintextSecret,
    ImageTag,
    RbacGrant,
}

impl SecurityRule {
    pub const ALL: [SecurityRule; 7] = [
        SecurityRule::PrivilegedContainer,
        SecurityRule::RunAsNonRoot,
        SecurityRule::HostPath,
        SecurityRule::HostNamespaces,
        SecurityRule::PlaintextSecret,
        SecurityRule::ImageTag,
        SecurityRule::RbacGrant,
    ];

    pub fn id(self) -> &'static str {
        match self {
            SecurityRule::PrivilegedContainer => "privileged-container",
            SecurityRule::RunAsNonRoot => "run-as-non-root",
            SecurityRule::HostPath => "host-path",
            SecurityRule::HostNamespaces => "host-namespaces",
            SecurityRule::PlaintextSecret => "plaintext-secret",
            SecurityRule::ImageTag => "image-tag",
            SecurityRule::RbacGrant => "rbac-grant",
        }
    }
}

/// A `validation.rules` key that names no security rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown security rule {given:?}; expected one of {}", SecurityRule::ALL.map(SecurityRule::id).join(", "))]
pub struct UnknownSecurityRule {
    pub given: String,
}

impl std::str::FromStr for SecurityRule {
    type Err = UnknownSecurityRule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecurityRule::ALL
            .into_iter()
            .find(|r| r.id() == s)
            .ok_or_else(|| UnknownSecurityRule {
                given: s.to_owned(),
            })
    }
}

impl<'de> Deserialize<'de> for SecurityRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A tier's `validation:` config: the level of every security rule, and overrides per rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ValidationConfig {
    /// The level of every security rule; by default `block` for the last tier of the config
    /// (the one closest to production) and `warn` for the others.
    pub security: Option<Level>,
    /// Per-rule overrides, e.g. `{image-tag: warn}`.
    #[serde(default)]
    pub rules: BTreeMap<SecurityRule, Level>,
}

impl ValidationConfig {
    /// The level of `rule` in this tier; `last_tier` picks the default (see [`Self::security`]).
    pub fn level(&self, rule: SecurityRule, last_tier: bool) -> Level {
        self.rules.get(&rule).copied().unwrap_or_else(|| {
            self.security
                .unwrap_or(if last_tier { Level::Block } else { Level::Warn })
        })
    }
}
