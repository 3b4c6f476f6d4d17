//! The `fieldsV1` format of `metadata.managedFields`: which fields one field manager owns.
//!
//! A JSON object whose keys are `f:<name>` (a map field), `k:<json object>` (a list item by
//! its merge keys), `v:<json value>` (an item of a set list), `i:<index>` (an item by
//! position) or `.` (the node itself, for items and maps that exist because of this
//! manager); each value is the same kind of object for the owned fields below it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use thiserror::Error;

use super::{FIELD_MANAGER, FieldPath, PathSegment};

/// A step in a fieldsV1 tree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum OwnedKey {
    /// `f:name`
    Field(String),
    /// `k:{"name":"api"}`: the item's merge key values, as canonical JSON text so that keys
    /// order and compare.
    Keyed(String),
    /// `v:"value"`: canonical JSON text of the value.
    Value(String),
    /// `i:0`
    Index(usize),
}

/// The fields one manager owns at one node. An empty node (`{}`) owns the whole value there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedFields {
    /// `.` was present: the manager owns the existence of this map or item.
    pub owns_self: bool,
    pub children: BTreeMap<OwnedKey, OwnedFields>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FieldsV1Error {
    #[error("fieldsV1 at {path}: expected a JSON object")]
    NotAnObject { path: String },
    #[error("fieldsV1 at {path}: unknown key {key:?} (expected f:, k:, v:, i: or .)")]
    UnknownKey { path: String, key: String },
    #[error("fieldsV1 at {path}: key {key:?} does not hold valid JSON: {reason}")]
    BadKeyJson {
        path: String,
        key: String,
        reason: String,
    },
    #[error("fieldsV1 at {path}: key {key:?} is not an index")]
    BadIndex { path: String, key: String },
    #[error("fieldsV1 nested deeper than {max} levels")]
    TooDeep { max: usize },
}

/// Deeper than any Kubernetes object; bounds recursion on a hostile managedFields entry.
const MAX_DEPTH: usize = 128;

impl OwnedFields {
    /// Parses a `fieldsV1` value: the JSON object the API server sends, or that object as
    /// JSON text (how the live cache keeps it: a few hundred bytes instead of a tree of maps).
    pub fn parse(v: &Value) -> Result<OwnedFields, FieldsV1Error> {
        match v {
            Value::String(text) => {
                let tree: Value =
                    serde_json::from_str(text).map_err(|e| FieldsV1Error::BadKeyJson {
                        path: String::new(),
                        key: "(fieldsV1 text)".to_owned(),
                        reason: e.to_string(),
                    })?;
                parse_node(&tree, "", 0)
            }
            _ => parse_node(v, "", 0),
        }
    }

    /// Whether this node owns nothing below it: the manager owns the value here as a whole.
    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }

    pub fn field(&self, name: &str) -> Option<&OwnedFields> {
        self.children.get(&OwnedKey::Field(name.to_owned()))
    }

    /// The owned node of a keyed list item, by its merge key values.
    pub fn keyed(&self, key: &Map<String, Value>) -> Option<&OwnedFields> {
        self.children
            .get(&OwnedKey::Keyed(canonical(&Value::Object(key.clone()))))
    }
}

fn parse_node(v: &Value, path: &str, depth: usize) -> Result<OwnedFields, FieldsV1Error> {
    if depth > MAX_DEPTH {
        return Err(FieldsV1Error::TooDeep { max: MAX_DEPTH });
    }
    let Value::Object(map) = v else {
        return Err(FieldsV1Error::NotAnObject {
            path: path.to_owned(),
        });
    };
    let mut node = OwnedFields::default();
    for (key, child) in map {
        if key == "." {
            node.owns_self = true;
            continue;
        }
        let owned_key = parse_key(key, path)?;
        let child_path = format!("{path}/{key}");
        node.children
            .insert(owned_key, parse_node(child, &child_path, depth + 1)?);
    }
    Ok(node)
}

fn parse_key(key: &str, path: &str) -> Result<OwnedKey, FieldsV1Error> {
    let json = |text: &str| {
        serde_json::from_str::<Value>(text).map_err(|e| FieldsV1Error::BadKeyJson {
            path: path.to_owned(),
            key: key.to_owned(),
            reason: e.to_string(),
        })
    };
    if let Some(name) = key.strip_prefix("f:") {
        Ok(OwnedKey::Field(name.to_owned()))
    } else if let Some(text) = key.strip_prefix("k:") {
        match json(text)? {
            v @ Value::Object(_) => Ok(OwnedKey::Keyed(canonical(&v))),
            _ => Err(FieldsV1Error::BadKeyJson {
                path: path.to_owned(),
                key: key.to_owned(),
                reason: "not a JSON object".to_owned(),
            }),
        }
    } else if let Some(text) = key.strip_prefix("v:") {
        Ok(OwnedKey::Value(canonical(&json(text)?)))
    } else if let Some(text) = key.strip_prefix("i:") {
        text.parse()
            .map(OwnedKey::Index)
            .map_err(|_| FieldsV1Error::BadIndex {
                path: path.to_owned(),
                key: key.to_owned(),
            })
    } else {
        Err(FieldsV1Error::UnknownKey {
            path: path.to_owned(),
            key: key.to_owned(),
        })
    }
}

/// JSON text with object keys sorted, so two spellings of one key compare equal (whether or
/// not serde_json keeps insertion order in this build).
pub(crate) fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let parts: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical(v)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// The field manager, other than gitopsd, that owns `path` in `live` and wrote last.
pub fn last_writer(live: &Value, path: &FieldPath) -> Option<String> {
    let entries = live.pointer("/metadata/managedFields")?.as_array()?;
    entries
        .iter()
        .filter(|e| e.get("manager").and_then(Value::as_str) != Some(FIELD_MANAGER))
        .filter(|e| {
            e.get("fieldsV1")
                .and_then(|f| OwnedFields::parse(f).ok())
                .is_some_and(|owned| owns(&owned, &path.0))
        })
        // RFC 3339 times in UTC compare as text.
        .max_by_key(|e| e.get("time").and_then(Value::as_str).unwrap_or_default())
        .and_then(|e| e.get("manager").and_then(Value::as_str).map(str::to_owned))
}

/// Whether an owned-fields tree covers the field at `path` (or a whole value above it).
fn owns(node: &OwnedFields, path: &[PathSegment]) -> bool {
    let Some((seg, rest)) = path.split_first() else {
        return true;
    };
    let child = match seg {
        PathSegment::Field(f) => node.field(f),
        PathSegment::Keyed(keys) => {
            let as_json: Map<String, Value> = keys
                .iter()
                .map(|(k, v)| {
                    // Merge key values were written as text; numbers (containerPort) are
                    // numbers in fieldsV1.
                    let parsed = v
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::String(v.clone()));
                    (k.clone(), parsed)
                })
                .collect();
            node.keyed(&as_json)
        }
        PathSegment::Index(i) => node.children.get(&OwnedKey::Index(*i)),
    };
    match child {
        Some(c) if c.is_leaf() => true,
        Some(c) => owns(c, rest),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_key_kind_parses_into_the_tree() {
        let v = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:containers": {
                    "k:{\"name\":\"api\"}": {".": {}, "f:image": {}}
                },
                "f:finalizers": {"v:\"a/b\"": {}},
                "f:args": {"i:0": {}}
            }
        });
        let owned = OwnedFields::parse(&v).unwrap();
        let spec = owned.field("spec").unwrap();
        let mut key = Map::new();
        key.insert("name".into(), json!("api"));
        let api = spec.field("containers").unwrap().keyed(&key).unwrap();
        assert!(api.owns_self);
        assert!(api.field("image").unwrap().is_leaf());
        assert!(
            spec.field("finalizers")
                .unwrap()
                .children
                .contains_key(&OwnedKey::Value("\"a/b\"".into()))
        );
        assert!(
            spec.field("args")
                .unwrap()
                .children
                .contains_key(&OwnedKey::Index(0))
        );
        assert!(
            owned
                .field("metadata")
                .unwrap()
                .field("labels")
                .unwrap()
                .field("app")
                .is_some()
        );
    }

    #[test]
    fn keyed_items_match_whatever_the_order_of_their_keys() {
        let v = json!({"k:{\"protocol\":\"TCP\",\"containerPort\":8080}": {}});
        let owned = OwnedFields::parse(&v).unwrap();
        let mut key = Map::new();
        key.insert("containerPort".into(), json!(8080));
        key.insert("protocol".into(), json!("TCP"));
        assert!(owned.keyed(&key).is_some());
    }

    #[test]
    fn malformed_fields_v1_is_an_error_not_a_panic() {
        let cases = [
            (json!([]), "expected a JSON object"),
            (json!({"x:y": {}}), "unknown key"),
            (json!({"k:{not json": {}}), "does not hold valid JSON"),
            (json!({"k:[1]": {}}), "not a JSON object"),
            (json!({"i:-1": {}}), "not an index"),
            (json!({"f:a": 3}), "expected a JSON object"),
        ];
        for (v, want) in cases {
            let err = OwnedFields::parse(&v).unwrap_err().to_string();
            assert!(err.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn nesting_past_the_depth_bound_is_refused() {
        let mut v = json!({});
        for _ in 0..200 {
            v = json!({ "f:a": v });
        }
        assert_eq!(
            OwnedFields::parse(&v),
            Err(FieldsV1Error::TooDeep { max: MAX_DEPTH })
        );
    }

    #[test]
    fn fields_v1_kept_as_json_text_parses_as_the_tree_does() {
        let live: Value =
            serde_json::from_str(include_str!("testdata/deployment-fresh.json")).unwrap();
        let tree = &live["metadata"]["managedFields"][0]["fieldsV1"];
        let text = Value::String(tree.to_string());
        assert_eq!(OwnedFields::parse(&text), OwnedFields::parse(tree));
        assert!(OwnedFields::parse(&Value::String("{not json".into())).is_err());
    }

    #[test]
    fn a_real_deployment_entry_parses() {
        let live: Value =
            serde_json::from_str(include_str!("testdata/deployment-fresh.json")).unwrap();
        let entry = &live["metadata"]["managedFields"][0];
        assert_eq!(entry["manager"], "gitopsd");
        let owned = OwnedFields::parse(&entry["fieldsV1"]).unwrap();
        assert!(owned.field("spec").unwrap().field("template").is_some());
    }
}
