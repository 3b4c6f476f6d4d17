//! Objects of one sync counted per [`Outcome`]: what the reconcile counts, and what the sync
//! record, the audit log, Events and logs read, as one typed value.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Serialize, Serializer};

use super::Outcome;

/// Objects of one sync per outcome. Written (JSON, logs) as today's map of each outcome that
/// happened, by its name, in name order: `{"configured":2,"created":1}`.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
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

    /// Each outcome that happened, by its name (the written form).
    fn named(&self) -> BTreeMap<&'static str, usize> {
        Outcome::ALL
            .into_iter()
            .filter(|o| self.get(*o) > 0)
            .map(|o| (o.as_str(), self.get(o)))
            .collect()
    }
}

impl FromIterator<(Outcome, usize)> for Tally {
    fn from_iter<I: IntoIterator<Item = (Outcome, usize)>>(iter: I) -> Self {
        let mut t = Tally::default();
        for (o, n) in iter {
            *t.slot(o) += n;
        }
        t
    }
}

impl<const N: usize> From<[(Outcome, usize); N]> for Tally {
    fn from(counts: [(Outcome, usize); N]) -> Self {
        counts.into_iter().collect()
    }
}

impl Serialize for Tally {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.named().serialize(serializer)
    }
}

/// As the map it is written as, so the `sync finished` log line reads as before.
impl fmt::Debug for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.named(), f)
    }
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
        assert_eq!(
            serde_json::to_string(&t).expect("serialises"),
            r#"{"created":2,"failed":1,"unchanged":1}"#
        );
        assert_eq!(
            format!("{t:?}"),
            r#"{"created": 2, "failed": 1, "unchanged": 1}"#
        );
        assert_eq!(
            t,
            Tally::from([
                (Outcome::Unchanged, 1),
                (Outcome::Failed, 1),
                (Outcome::Created, 2)
            ])
        );
        assert_eq!(
            serde_json::to_string(&Tally::default()).expect("serialises"),
            "{}"
        );
    }
}
