//! The desired state a tier acts on: the newest revision that rendered and passed validation.
//!
//! A broken render or a blocking finding never replaces it: the tier keeps its last good
//! desired set, and the failure is kept beside it for status and events. Later stages read
//! only [`TierDesired::current`], so nothing downstream (diff, apply, prune) can act on a set
//! that failed.

use std::sync::Arc;

use crate::config::TierConfig;
use crate::render::{DesiredSet, RenderError};
use crate::revision::Revision;
use crate::validate::{self, Finding, Level};

/// A desired set that passed: the revision, the set, and the warnings it passed with.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub revision: Revision,
    pub set: Arc<DesiredSet>,
    pub warnings: Vec<Finding>,
}

/// Why the newest revision was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Render {
        revision: Revision,
        error: String,
    },
    Blocked {
        revision: Revision,
        findings: Vec<Finding>,
    },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Render { revision, error } => {
                write!(f, "revision {revision} did not render: {error}")
            }
            Failure::Blocked { revision, findings } => {
                let blocking: Vec<_> = findings
                    .iter()
                    .filter(|x| x.level == Level::Block)
                    .collect();
                write!(
                    f,
                    "revision {revision} is blocked by {} finding(s)",
                    blocking.len()
                )?;
                if let Some(first) = blocking.first() {
                    write!(f, "; first: {first}")?;
                }
                Ok(())
            }
        }
    }
}

impl Failure {
    /// Whether every blocking finding is an ownership refusal (found at sync, not at offer).
    fn is_refusal(&self) -> bool {
        match self {
            Failure::Render { .. } => false,
            Failure::Blocked { findings, .. } => findings
                .iter()
                .filter(|f| f.level == Level::Block)
                .all(|f| f.stage() == validate::Stage::Ownership),
        }
    }
}

/// What offering a new render did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The set replaced the current one.
    Accepted,
    /// The set has the digest of the current one: nothing to do.
    Unchanged,
    /// The render failed or was blocked; the current set stays.
    Rejected,
}

#[derive(Debug, Default)]
pub struct TierDesired {
    current: Option<Accepted>,
    failure: Option<Failure>,
}

impl TierDesired {
    /// Takes the render of `revision` if it rendered and nothing in it blocks.
    pub fn offer(
        &mut self,
        revision: &Revision,
        rendered: Result<DesiredSet, RenderError>,
        tier: &TierConfig,
        last_tier: bool,
    ) -> Offer {
        let set = match rendered {
            Ok(set) => set,
            Err(e) => {
                self.failure = Some(Failure::Render {
                    revision: revision.clone(),
                    error: e.to_string(),
                });
                return Offer::Rejected;
            }
        };
        let findings = validate::validate(&set, tier, last_tier);
        if validate::blocks(&findings) {
            self.failure = Some(Failure::Blocked {
                revision: revision.clone(),
                findings,
            });
            return Offer::Rejected;
        }
        self.failure = None;
        if let Some(current) = &mut self.current
            && current.set.digest == set.digest
        {
            current.revision = revision.clone();
            current.warnings = findings;
            return Offer::Unchanged;
        }
        self.current = Some(Accepted {
            revision: revision.clone(),
            set: Arc::new(set),
            warnings: findings,
        });
        Offer::Accepted
    }

    /// The current set may not be applied: the cluster holds objects of it that the tier may
    /// not take (`crate::ownership`). Kept as the failure, so that nothing is pruned and the
    /// status says why, unless a newer revision's failure is there already (that one is what
    /// to fix next; the refusal is found again once it is gone).
    pub fn refuse(&mut self, revision: &Revision, findings: Vec<Finding>) {
        if self.failure.as_ref().is_some_and(|f| !f.is_refusal()) {
            return;
        }
        self.failure = Some(Failure::Blocked {
            revision: revision.clone(),
            findings,
        });
    }

    /// The current set passed the ownership check: a refusal kept by [`refuse`](Self::refuse)
    /// is gone (any other failure stays).
    pub fn clear_refusal(&mut self) {
        if self.failure.as_ref().is_some_and(Failure::is_refusal) {
            self.failure = None;
        }
    }

    /// The last good desired set, if any revision has passed yet.
    pub fn current(&self) -> Option<&Accepted> {
        self.current.as_ref()
    }

    /// Why the newest revision offered was not taken, until a later one is.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{KindScopes, Limits, render_tier};

    fn tier() -> TierConfig {
        serde_yaml::from_str("{name: exp, ref: main, namespaces: [exp]}").unwrap()
    }

    fn render(files: &[(&str, &str)]) -> Result<DesiredSet, RenderError> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        render_tier(
            dir.path(),
            "exp",
            &Limits::default(),
            &KindScopes::builtin(),
        )
    }

    const TIER: (&str, &str) = ("tiers/exp/tier.yaml", "namespace: exp\n");

    fn config_map(level: &str) -> (&'static str, String) {
        (
            "base/cm.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {{level: {level}}}\n"
            ),
        )
    }

    fn files<'a>(extra: &'a (&'static str, String)) -> Vec<(&'static str, &'a str)> {
        vec![TIER, (extra.0, extra.1.as_str())]
    }

    #[test]
    fn a_good_render_is_taken_and_the_same_digest_is_unchanged() {
        let mut d = TierDesired::default();
        let cm = config_map("info");
        assert_eq!(
            d.offer(&"r1".into(), render(&files(&cm)), &tier(), false),
            Offer::Accepted
        );
        assert_eq!(
            d.offer(&"r2".into(), render(&files(&cm)), &tier(), false),
            Offer::Unchanged
        );
        let current = d.current().unwrap();
        assert_eq!(current.revision, "r2");
        assert_eq!(current.set.objects.len(), 1);
        assert!(d.failure().is_none());
    }

    #[test]
    fn a_broken_render_keeps_the_last_good_set_and_says_why() {
        let mut d = TierDesired::default();
        let good = config_map("info");
        d.offer(&"r1".into(), render(&files(&good)), &tier(), false);
        let digest = d.current().unwrap().set.digest.clone();
        let broken = config_map("[unclosed");
        assert_eq!(
            d.offer(&"r2".into(), render(&files(&broken)), &tier(), false),
            Offer::Rejected
        );
        assert_eq!(d.current().unwrap().revision, "r1");
        assert_eq!(d.current().unwrap().set.digest, digest);
        let why = d.failure().unwrap().to_string();
        assert!(
            why.starts_with("revision r2 did not render: base/cm.yaml"),
            "{why}"
        );
    }

    #[test]
    fn a_blocking_finding_keeps_the_last_good_set_until_a_good_revision_comes() {
        let mut d = TierDesired::default();
        let good = config_map("info");
        d.offer(&"r1".into(), render(&files(&good)), &tier(), true);
        let outside = (
            "base/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: kube-system}\n"
                .to_owned(),
        );
        assert_eq!(
            d.offer(&"r2".into(), render(&files(&outside)), &tier(), true),
            Offer::Rejected
        );
        assert_eq!(d.current().unwrap().revision, "r1");
        let why = d.failure().unwrap().to_string();
        assert!(
            why.starts_with("revision r2 is blocked by 1 finding(s); first: error: base/cm.yaml line 1: ConfigMap kube-system/c: namespace \"kube-system\" is outside"),
            "{why}"
        );
        let fixed = config_map("debug");
        assert_eq!(
            d.offer(&"r3".into(), render(&files(&fixed)), &tier(), true),
            Offer::Accepted
        );
        assert_eq!(d.current().unwrap().revision, "r3");
        assert!(d.failure().is_none());
    }

    fn refusal(revision: &str) -> Vec<Finding> {
        vec![Finding {
            level: Level::Block,
            rule: validate::Rule::Ownership(validate::OwnershipRule::NotOwned),
            location: "base/cm.yaml line 1".into(),
            object: "ConfigMap exp/c".into(),
            message: format!("refused at {revision}"),
        }]
    }

    #[test]
    fn an_ownership_refusal_is_the_failure_until_cleared_and_never_hides_a_newer_failure() {
        let mut d = TierDesired::default();
        let good = config_map("info");
        d.offer(&"r1".into(), render(&files(&good)), &tier(), false);
        d.refuse(&"r1".into(), refusal("r1"));
        let why = d.failure().unwrap().to_string();
        assert!(
            why.starts_with("revision r1 is blocked by 1 finding(s); first: error: base/cm.yaml line 1: ConfigMap exp/c: refused at r1 [ownership/not-owned]"),
            "{why}"
        );
        d.clear_refusal();
        assert!(d.failure().is_none());
        // A newer revision that does not render outranks the refusal of the current set,
        // and clearing the refusal leaves it.
        d.refuse(&"r1".into(), refusal("r1"));
        let broken = config_map("[unclosed");
        d.offer(&"r2".into(), render(&files(&broken)), &tier(), false);
        d.refuse(&"r1".into(), refusal("r1"));
        assert!(matches!(d.failure(), Some(Failure::Render { revision, .. }) if revision == "r2"));
        d.clear_refusal();
        assert!(matches!(d.failure(), Some(Failure::Render { revision, .. }) if revision == "r2"));
    }

    #[test]
    fn nothing_is_current_before_the_first_good_render() {
        let mut d = TierDesired::default();
        let no_api_version = render(&[
            TIER,
            ("base/x.yaml", "kind: ConfigMap\nmetadata: {name: x}\n"),
        ]);
        assert_eq!(
            d.offer(&"r1".into(), no_api_version, &tier(), false),
            Offer::Rejected
        );
        assert!(d.current().is_none());
        assert!(matches!(d.failure(), Some(Failure::Render { revision, .. }) if revision == "r1"));
    }
}
