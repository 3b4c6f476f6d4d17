//! What a tier does about drift and promotion: `severity` overrides, `policy`, `gate`,
//! `criticalOutsideWindows`, `requireSignedCommits` and `rollback`.

use super::*;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollbackConfig {
    #[serde(default)]
    pub on_health_failure: bool,
    #[serde(default = "default_health_timeout", with = "humantime_serde")]
    pub health_timeout: Duration,
}

pub(super) fn default_health_timeout() -> Duration {
    Duration::from_secs(5 * 60)
}
