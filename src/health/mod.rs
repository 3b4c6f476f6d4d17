//! The health stage: whether a live object does what it is for, kind by kind, and whether a
//! tier is healthy (all its objects are).

use serde::{Deserialize, Serialize};

/// An object's or a tier's health. Ordered from best to worst: a tier is as healthy as its
/// worst object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Health {
    Healthy,
    /// The state cannot be told (no status reported where one is expected, say).
    Unknown,
    /// Working towards the desired state: rolling out, scheduling, binding.
    Progressing,
    /// Desired but not in the cluster.
    Missing,
    /// Failed, or stuck in a way that needs a person: a crash loop, a deadline exceeded.
    Degraded,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Unknown => "Unknown",
            Health::Progressing => "Progressing",
            Health::Missing => "Missing",
            Health::Degraded => "Degraded",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object's health and why, in words an operator can act on
/// (`0 of 2 replicas available; waiting for the rollout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectHealth {
    pub health: Health,
    pub message: String,
}
