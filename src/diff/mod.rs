//! The diff stage: desired object against live object, with the semantics of server-side
//! apply. Plain data out: which fields differ, by path, with both values.
//!
//! Only fields the manifest sets (and fields gitopsd's field manager owns) are compared;
//! values compare by meaning; lists by their merge keys. Deciding how much a difference
//! matters is the classify stage's job.

mod compare;
mod fields_v1;
mod merge_keys;
mod quantity;
mod quantity_fields;
#[cfg(test)]
mod tests;

use std::fmt;

pub use compare::{FIELD_MANAGER, applied_fields_v1, compare};
pub use fields_v1::{FieldsV1Error, OwnedFields, OwnedKey, last_writer};
pub use merge_keys::{MergeKey, item_key, merge_keys};
pub use quantity::Quantity;

use serde_json::Value;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathSegment {
    /// A map key: `spec`, `replicas`.
    Field(String),
    /// A list item found by its merge key(s): `containers[name=api]`,
    /// `ports[containerPort=8080,protocol=TCP]`. Pairs in merge-key order.
    Keyed(Vec<(String, String)>),
    /// An item of an atomic list or a list without merge keys, by position.
    Index(usize),
}

impl PathSegment {
    /// The child of `cur` this segment names.
    pub fn step<'v>(&self, cur: &'v Value) -> Option<&'v Value> {
        match self {
            PathSegment::Field(f) => cur.get(f),
            PathSegment::Index(i) => cur.get(*i),
            PathSegment::Keyed(keys) => cur.as_array()?.iter().find(|x| matches_keys(x, keys)),
        }
    }

    /// [`PathSegment::step`], mutably.
    pub fn step_mut<'v>(&self, cur: &'v mut Value) -> Option<&'v mut Value> {
        match self {
            PathSegment::Field(f) => cur.get_mut(f),
            PathSegment::Index(i) => cur.get_mut(*i),
            PathSegment::Keyed(keys) => cur
                .as_array_mut()?
                .iter_mut()
                .find(|x| matches_keys(x, keys)),
        }
    }
}

/// Whether a list item has the merge key values of a [`PathSegment::Keyed`].
pub fn matches_keys(item: &Value, keys: &[(String, String)]) -> bool {
    keys.iter().all(|(k, want)| match item.get(k) {
        Some(Value::String(s)) => s == want,
        Some(Value::Number(n)) => n.to_string() == *want,
        Some(Value::Bool(b)) => b.to_string() == *want,
        // A key left to its default (protocol: TCP) matches.
        None | Some(Value::Null) => true,
        Some(_) => false,
    })
}

/// Where a difference is, e.g. `spec.template.spec.containers[name=api].image`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(pub Vec<PathSegment>);

impl FieldPath {
    pub fn push(&self, segment: PathSegment) -> FieldPath {
        let mut v = self.0.clone();
        v.push(segment);
        FieldPath(v)
    }

    /// The value at this path in `root`, list items found by their merge keys.
    pub fn value_in<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        self.0.iter().try_fold(root, |cur, seg| seg.step(cur))
    }

    /// The path's map keys only, e.g. `["spec", "template", "spec", "containers", "image"]`:
    /// what severity rules match on, whichever list item it is.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|s| match s {
            PathSegment::Field(f) => Some(f.as_str()),
            _ => None,
        })
    }
}

/// Written as its display string, the form the status API, the drift report and the audit log
/// have always shown.
impl serde::Serialize for FieldPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            match s {
                PathSegment::Field(name) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?;
                }
                PathSegment::Keyed(keys) => {
                    let keys: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    write!(f, "[{}]", keys.join(","))?;
                }
                PathSegment::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// One field that differs. `None` means absent (or equal to absent: null, `{}`, `[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDiff {
    pub path: FieldPath,
    pub desired: Option<Value>,
    pub live: Option<Value>,
}

/// How one desired object stands against the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectDiff {
    /// Desired, not in the cluster.
    Missing,
    /// In the cluster with the tier's label, not desired (a prune candidate).
    Extra,
    /// In both; the fields that differ (empty: in sync).
    Changed(Vec<FieldDiff>),
}
