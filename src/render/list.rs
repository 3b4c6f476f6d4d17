//! `*List` documents (`v1/List`, `ConfigMapList`, `RoleBindingList`, ...) are expanded into
//! their items, as kubectl does: a document whose kind ends in `List` and that has an `items`
//! key stands for its items, each an object of its own that inherits nothing from the List
//! (not its apiVersion, not its metadata). An empty List (`items: []` or `items: null`)
//! stands for nothing. An item that is itself a List is refused rather than expanded: no
//! tool writes them, and one level keeps every object's location `items[N]` of one document.
//!
//! A kind that ends in `List` without `items` is an ordinary object (a custom resource may be
//! named `AllowList`); only `kind: List` itself must have `items`.

use serde_json::Value;

use super::RenderError;

/// A document's objects: the document itself, or a List's items with their index.
pub(crate) fn expand(
    doc: Value,
    file: &str,
    line: usize,
    document: usize,
) -> Result<Vec<(Value, Option<usize>)>, RenderError> {
    let Value::Object(mut list) = doc else {
        return Ok(vec![(doc, None)]);
    };
    let kind = match list.get("kind").and_then(Value::as_str) {
        Some(k) if k.ends_with("List") => k.to_owned(),
        _ => return Ok(vec![(Value::Object(list), None)]),
    };
    let bad = |why: String| RenderError::BadList {
        file: file.to_owned(),
        line,
        document,
        kind: kind.clone(),
        why,
    };
    let items = match list.remove("items") {
        None if kind == "List" => return Err(bad("`items` is missing".into())),
        None => {
            // An ordinary object whose kind happens to end in `List`.
            return Ok(vec![(Value::Object(list), None)]);
        }
        Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bad("`items` is not a sequence".into())),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        if is_list(&item) {
            let inner = item.get("kind").and_then(Value::as_str).unwrap_or("List");
            return Err(bad(format!("items[{i}] is itself a {inner}")));
        }
        out.push((item, Some(i)));
    }
    Ok(out)
}

/// Whether `v` is a List document as [`expand`] expands it.
fn is_list(v: &Value) -> bool {
    v.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && v.get("items").is_some()
        || v.get("kind").and_then(Value::as_str) == Some("List")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(v: Value) -> Result<Vec<(String, Option<usize>)>, String> {
        expand(v, "f.yaml", 3, 1)
            .map(|items| {
                items
                    .into_iter()
                    .map(|(v, i)| (v["kind"].as_str().unwrap_or("?").to_owned(), i))
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_list_stands_for_its_items_with_their_index() {
        let got = kinds(json!({"apiVersion": "v1", "kind": "List", "metadata": {},
            "items": [{"kind": "Role"}, {"kind": "RoleBinding"}]}));
        assert_eq!(
            got.unwrap(),
            [("Role".into(), Some(0)), ("RoleBinding".into(), Some(1))]
        );
        let got = kinds(json!({"apiVersion": "v1", "kind": "ConfigMapList",
            "items": [{"kind": "ConfigMap"}]}));
        assert_eq!(got.unwrap(), [("ConfigMap".into(), Some(0))]);
    }

    #[test]
    fn an_empty_list_stands_for_nothing() {
        for items in [json!([]), Value::Null] {
            let got =
                kinds(json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}));
            assert_eq!(got.unwrap(), []);
        }
    }

    #[test]
    fn a_kind_ending_in_list_without_items_is_an_object() {
        let got = kinds(json!({"apiVersion": "x.example/v1", "kind": "AllowList", "spec": {}}));
        assert_eq!(got.unwrap(), [("AllowList".into(), None)]);
        let got = kinds(json!({"apiVersion": "v1", "kind": "Secret"}));
        assert_eq!(got.unwrap(), [("Secret".into(), None)]);
    }

    #[test]
    fn malformed_and_nested_lists_are_refused_naming_the_document() {
        let e = kinds(json!({"apiVersion": "v1", "kind": "List", "metadata": {}})).unwrap_err();
        assert!(
            e.starts_with("f.yaml line 3: document 1 is a List whose `items` is missing"),
            "{e}"
        );
        let e = kinds(json!({"apiVersion": "v1", "kind": "List", "items": {"a": 1}})).unwrap_err();
        assert!(e.contains("`items` is not a sequence"), "{e}");
        let e = kinds(json!({"apiVersion": "v1", "kind": "List", "items": [
            {"kind": "ConfigMap"}, {"apiVersion": "v1", "kind": "RoleList", "items": []}]}))
        .unwrap_err();
        assert!(
            e.contains("document 1 is a List whose items[1] is itself a RoleList"),
            "{e}"
        );
        assert!(e.contains("nested Lists are not expanded"), "{e}");
    }
}
