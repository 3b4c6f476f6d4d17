//! Removing fields another manager added (foreign security fields) in one request: a JSON
//! patch (RFC 6902) whose `test` operations guard each `remove`.
//!
//! Server-side apply cannot do this in one step: leaving a field out of an apply removes it
//! only if gitopsd is its sole owner, and a field another manager added is not gitopsd's.
//! Taking ownership first (a forced apply that includes the field at its live value, then an
//! apply without it) works but costs two writes and leaves a window between them. The JSON
//! patch is one write; its tests (each list item's merge keys, and the removed value itself)
//! make the server refuse the whole patch if the object moved since it was read, so it can
//! never remove the wrong list item. The field's ownership goes with the field.

use serde_json::{Value, json};

use crate::diff::{FieldPath, PathSegment, matches_keys};

/// Why a removal patch could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemovalError {
    #[error("{path}: not in the live object any more (removed already?)")]
    Gone { path: String },
}

/// The JSON patch that removes each of `paths` from `live`: per path, `test` operations on
/// the merge keys of the list items on the way and on the value itself, then `remove`. A path
/// under another one of `paths` is covered by that one. Indexes of atomic-list items refer to
/// `live` as given: removals run from the last item backwards, so earlier indexes stay valid.
pub fn removal_patch(live: &Value, paths: &[FieldPath]) -> Result<Vec<Value>, RemovalError> {
    let mut paths: Vec<&FieldPath> = paths
        .iter()
        .filter(|p| {
            !paths
                .iter()
                .any(|q| q.0.len() < p.0.len() && p.0.starts_with(&q.0))
        })
        .collect();
    paths.sort();
    paths.dedup();
    paths.reverse();
    let mut work = live.clone();
    let mut ops = Vec::new();
    for path in paths {
        let gone = || RemovalError::Gone {
            path: path.to_string(),
        };
        let mut pointer = String::new();
        let mut cur = &work;
        for seg in &path.0 {
            match seg {
                PathSegment::Field(f) => {
                    pointer.push('/');
                    pointer.push_str(&escape(f));
                    cur = cur.get(f).ok_or_else(gone)?;
                }
                PathSegment::Index(i) => {
                    pointer.push_str(&format!("/{i}"));
                    cur = cur.get(*i).ok_or_else(gone)?;
                }
                PathSegment::Keyed(keys) => {
                    let items = cur.as_array().ok_or_else(gone)?;
                    let i = items
                        .iter()
                        .position(|x| matches_keys(x, keys))
                        .ok_or_else(gone)?;
                    pointer.push_str(&format!("/{i}"));
                    cur = &items[i];
                    // The item at that index must still be the one meant.
                    for (k, _) in keys {
                        if let Some(v) = cur.get(k) {
                            ops.push(json!({
                                "op": "test",
                                "path": format!("{pointer}/{}", escape(k)),
                                "value": v,
                            }));
                        }
                    }
                }
            }
        }
        ops.push(json!({"op": "test", "path": pointer, "value": cur}));
        ops.push(json!({"op": "remove", "path": pointer}));
        remove_at(&mut work, &path.0);
    }
    Ok(ops)
}

/// RFC 6901: `~` and `/` inside a key.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn remove_at(root: &mut Value, path: &[PathSegment]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let Some(parent) = parent.iter().try_fold(root, |cur, seg| seg.step_mut(cur)) else {
        return;
    };
    match last {
        PathSegment::Field(f) => {
            if let Some(m) = parent.as_object_mut() {
                m.remove(f);
            }
        }
        PathSegment::Index(i) => {
            if let Some(a) = parent.as_array_mut().filter(|a| *i < a.len()) {
                a.remove(*i);
            }
        }
        PathSegment::Keyed(keys) => {
            if let Some(a) = parent.as_array_mut()
                && let Some(i) = a.iter().position(|x| matches_keys(x, keys))
            {
                a.remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(s: &str) -> PathSegment {
        PathSegment::Field(s.to_owned())
    }

    fn name(n: &str) -> PathSegment {
        PathSegment::Keyed(vec![("name".to_owned(), n.to_owned())])
    }

    #[test]
    fn a_field_in_a_container_is_removed_behind_tests_of_its_name_and_value() {
        let live = json!({"spec": {"containers": [
            {"name": "sidecar"},
            {"name": "api", "securityContext": {"privileged": true, "runAsUser": 10}}
        ]}});
        let path = FieldPath(vec![
            field("spec"),
            field("containers"),
            name("api"),
            field("securityContext"),
            field("privileged"),
        ]);
        let ops = removal_patch(&live, &[path]).unwrap();
        assert_eq!(
            ops,
            vec![
                json!({"op": "test", "path": "/spec/containers/1/name", "value": "api"}),
                json!({"op": "test", "path": "/spec/containers/1/securityContext/privileged", "value": true}),
                json!({"op": "remove", "path": "/spec/containers/1/securityContext/privileged"}),
            ]
        );
        let mut patched = live.clone();
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        json_patch::patch(&mut patched, &patch).unwrap();
        assert_eq!(
            patched["spec"]["containers"][1]["securityContext"],
            json!({"runAsUser": 10})
        );
    }

    #[test]
    fn atomic_list_items_are_removed_last_first_and_a_moved_object_fails_the_patch() {
        let live = json!({"subjects": ["a", "b", "c", "d"], "x": {"y": 1}});
        let paths = [
            FieldPath(vec![field("subjects"), PathSegment::Index(1)]),
            FieldPath(vec![field("subjects"), PathSegment::Index(3)]),
            FieldPath(vec![field("x")]),
            // Under `x`: covered by it.
            FieldPath(vec![field("x"), field("y")]),
        ];
        let ops = removal_patch(&live, &paths).unwrap();
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        let mut patched = live.clone();
        json_patch::patch(&mut patched, &patch).unwrap();
        assert_eq!(patched, json!({"subjects": ["a", "c"]}));
        // Someone inserted a subject in between: the tests fail, nothing is removed.
        let mut moved = json!({"subjects": ["z", "a", "b", "c", "d"], "x": {"y": 1}});
        assert!(json_patch::patch(&mut moved, &patch).is_err());
    }

    #[test]
    fn a_path_no_longer_there_is_refused() {
        let path = FieldPath(vec![field("spec"), field("containers"), name("gone")]);
        let err = removal_patch(&json!({"spec": {"containers": []}}), &[path]).unwrap_err();
        assert!(
            err.to_string().contains("spec.containers[name=gone]"),
            "{err}"
        );
    }
}
