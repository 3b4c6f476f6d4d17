use serde_json::json;

use super::*;
use crate::diff::{FieldPath, PathSegment};

fn path(text: &[PathSegment]) -> FieldPath {
    FieldPath(text.to_vec())
}

fn field(f: &str) -> PathSegment {
    PathSegment::Field(f.to_owned())
}

#[test]
fn a_difference_the_dry_run_reproduces_is_a_default_not_drift() {
    let live = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "nodePort": 30001}]}});
    let dry_run = live.clone();
    let local = vec![FieldDiff {
        path: path(&[
            field("spec"),
            field("ports"),
            PathSegment::Keyed(vec![
                ("port".into(), "80".into()),
                ("protocol".into(), "TCP".into()),
            ]),
            field("nodePort"),
        ]),
        desired: None,
        live: Some(json!(30001)),
    }];
    assert!(confirmed_diffs(local, &dry_run, &live).is_empty());
}

#[test]
fn a_difference_the_dry_run_would_correct_is_drift() {
    let live = json!({"spec": {"containers": [{"name": "api", "image": "evil:1"}]}});
    let dry_run = json!({"spec": {"containers": [{"name": "api", "image": "api:2"}]}});
    let local = vec![FieldDiff {
        path: path(&[
            field("spec"),
            field("containers"),
            PathSegment::Keyed(vec![("name".into(), "api".into())]),
            field("image"),
        ]),
        desired: Some(json!("api:2")),
        live: Some(json!("evil:1")),
    }];
    assert_eq!(confirmed_diffs(local, &dry_run, &live).len(), 1);
}

#[test]
fn absent_null_and_empty_are_one_value_when_confirming() {
    assert!(same(None, Some(&json!({}))));
    assert!(same(Some(&Value::Null), Some(&json!([]))));
    assert!(!same(None, Some(&json!(0))));
}
