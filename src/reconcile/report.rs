//! What one sync did, as the reconcile reports it: objects counted per outcome (typed), and
//! what outranks the sync's own result in its report (bug f).

use std::collections::BTreeMap;

use crate::apply::Outcome;
use crate::desired::Failure;

/// Objects of one sync per outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tally {
    created: usize,
    configured: usize,
    unchanged: usize,
    pruned: usize,
    failed: usize,
}

impl Tally {
    fn slot(&mut self, outcome: Outcome) -> &mut usize {
        match outcome {
            Outcome::Created => &mut self.created,
            Outcome::Configured => &mut self.configured,
            Outcome::Unchanged => &mut self.unchanged,
            Outcome::Pruned => &mut self.pruned,
            Outcome::Failed => &mut self.failed,
        }
    }

    pub fn add(&mut self, outcome: Outcome) {
        *self.slot(outcome) += 1;
    }

    pub fn get(&self, outcome: Outcome) -> usize {
        let mut copy = *self;
        *copy.slot(outcome)
    }

    /// Something was created, configured, pruned or failed.
    pub fn changed(&self) -> bool {
        self.created + self.configured + self.pruned + self.failed > 0
    }

    pub fn is_empty(&self) -> bool {
        !self.changed() && self.unchanged == 0
    }

    /// As the sync record, the audit log and Events write it: each outcome that happened, by
    /// its name.
    pub fn to_map(self) -> BTreeMap<String, usize> {
        [
            Outcome::Created,
            Outcome::Configured,
            Outcome::Unchanged,
            Outcome::Pruned,
            Outcome::Failed,
        ]
        .into_iter()
        .filter(|o| self.get(*o) > 0)
        .map(|o| (o.as_str().to_owned(), self.get(o)))
        .collect()
    }
}

/// The revision and the reason the tier is not in sync for, other than a failure of the sync
/// itself: the newest revision rejected (render, validation, ownership; named, as it is not
/// the one deployed), a failing fetch, a refused prune. `None` when nothing outranks the sync's
/// own outcome.
pub(super) fn standing_error(
    newest_failure: Option<&Failure>,
    active: Option<&str>,
    source_error: Option<&str>,
    prune_refused: Option<&str>,
) -> Option<(String, String)> {
    if let Some(f) = newest_failure {
        let (Failure::Render { revision, .. } | Failure::Blocked { revision, .. }) = f;
        return Some((revision.clone(), f.to_string()));
    }
    let active = active?;
    source_error
        .or(prune_refused)
        .map(|e| (active.to_owned(), e.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_is_written_as_the_outcomes_that_happened() {
        let mut t = Tally::default();
        assert!(t.is_empty() && !t.changed());
        t.add(Outcome::Unchanged);
        assert!(!t.is_empty() && !t.changed());
        t.add(Outcome::Created);
        t.add(Outcome::Created);
        t.add(Outcome::Failed);
        assert_eq!(t.get(Outcome::Created), 2);
        let map = t.to_map();
        let expected: BTreeMap<String, usize> = [("created", 2), ("failed", 1), ("unchanged", 1)]
            .into_iter()
            .map(|(k, n)| (k.to_owned(), n))
            .collect();
        assert_eq!(map, expected);
    }

    #[test]
    fn a_blocked_newer_revision_is_named_with_its_reason() {
        let failure = Failure::Render {
            revision: "b".repeat(40),
            error: "base/x.yaml: not YAML".into(),
        };
        let (revision, error) =
            standing_error(Some(&failure), Some("a"), None, None).expect("an error");
        assert_eq!(revision, "b".repeat(40));
        assert!(error.contains("did not render") && error.contains("base/x.yaml"));
    }

    #[test]
    fn a_failing_fetch_or_a_refused_prune_is_the_active_revisions_error() {
        assert_eq!(
            standing_error(None, Some("a"), Some("fetch failed"), Some("prune refused")),
            Some(("a".into(), "fetch failed".into()))
        );
        assert_eq!(
            standing_error(None, Some("a"), None, Some("prune refused")),
            Some(("a".into(), "prune refused".into()))
        );
        assert_eq!(standing_error(None, Some("a"), None, None), None);
        assert_eq!(standing_error(None, None, Some("x"), None), None);
    }
}
