//! Which lists merge by key, and by which keys: the one table of list semantics the diff uses.
//!
//! Mirrors the `x-kubernetes-list-type: map` / `patchMergeKey` markers of the Kubernetes API
//! for the lists a manifest commonly sets. A list not in the table is atomic: applying it
//! replaces the whole list, so it is compared as a whole, in order.

use serde_json::{Map, Value};

use super::PathSegment;

/// One merge key field, with the value the server defaults it to when a manifest leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeKey {
    pub field: &'static str,
    pub default: Option<&'static str>,
}

const fn key(field: &'static str) -> MergeKey {
    MergeKey {
        field,
        default: None,
    }
}

const PROTOCOL_TCP: MergeKey = MergeKey {
    field: "protocol",
    default: Some("TCP"),
};

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// (list field, parent fields or `None` for any parent, merge keys).
type ListKeys = (
    &'static str,
    Option<&'static [&'static str]>,
    &'static [MergeKey],
);

/// The table. The parent is the nearest map key above the list, e.g. `containers` for
/// `containers[name=api].ports` and `spec` for a Service's `spec.ports`. First match wins.
const LIST_KEYS: &[ListKeys] = &[
    ("containers", None, &[key("name")]),
    ("initContainers", None, &[key("name")]),
    ("ephemeralContainers", None, &[key("name")]),
    ("env", None, &[key("name")]),
    (
        "ports",
        Some(CONTAINER_LISTS),
        &[key("containerPort"), PROTOCOL_TCP],
    ),
    // A Service's spec.ports; NetworkPolicy ports sit under `ingress`/`egress` and stay atomic.
    ("ports", Some(&["spec"]), &[key("port"), PROTOCOL_TCP]),
    ("volumes", None, &[key("name")]),
    ("volumeMounts", None, &[key("mountPath")]),
    ("imagePullSecrets", None, &[key("name")]),
    ("hostAliases", None, &[key("ip")]),
    (
        "topologySpreadConstraints",
        None,
        &[key("topologyKey"), key("whenUnsatisfiable")],
    ),
    ("conditions", None, &[key("type")]),
    // Admission webhook configurations: `webhooks` is a map list keyed by name.
    ("webhooks", None, &[key("name")]),
];

/// The merge keys of the list at `field` under `parent`, or `None` for an atomic list
/// (tolerations, RBAC rules and subjects, and every list not in the table).
pub fn merge_keys(field: &str, parent: Option<&str>) -> Option<&'static [MergeKey]> {
    LIST_KEYS
        .iter()
        .find(|(f, parents, _)| {
            *f == field
                && match parents {
                    None => true,
                    Some(ps) => parent.is_some_and(|p| ps.contains(&p)),
                }
        })
        .map(|(_, _, keys)| *keys)
}

/// An item's identity in a keyed list: the path segment that names it and the key object as
/// fieldsV1 writes it (`k:{"containerPort":8080,"protocol":"TCP"}`). `None` when the item is
/// not an object or lacks a key that has no default: the list is then compared atomically.
pub fn item_key(item: &Value, keys: &[MergeKey]) -> Option<(PathSegment, Map<String, Value>)> {
    let obj = item.as_object()?;
    let mut pairs = Vec::with_capacity(keys.len());
    let mut key_obj = Map::new();
    for k in keys {
        let v = match obj.get(k.field) {
            Some(v) if !v.is_null() => v.clone(),
            _ => Value::String(k.default?.to_owned()),
        };
        let text = match &v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return None,
        };
        pairs.push((k.field.to_owned(), text));
        key_obj.insert(k.field.to_owned(), v);
    }
    Some((PathSegment::Keyed(pairs), key_obj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ports_are_keyed_by_context() {
        type Case = (
            &'static str,
            Option<&'static str>,
            Option<&'static [&'static str]>,
        );
        let cases: &[Case] = &[
            (
                "ports",
                Some("containers"),
                Some(&["containerPort", "protocol"]),
            ),
            (
                "ports",
                Some("initContainers"),
                Some(&["containerPort", "protocol"]),
            ),
            ("ports", Some("spec"), Some(&["port", "protocol"])),
            ("ports", Some("ingress"), None),
            ("containers", Some("spec"), Some(&["name"])),
            ("tolerations", Some("spec"), None),
            ("rules", None, None),
            ("subjects", None, None),
        ];
        for (field, parent, want) in cases {
            let got =
                merge_keys(field, *parent).map(|ks| ks.iter().map(|k| k.field).collect::<Vec<_>>());
            assert_eq!(got.as_deref(), *want, "{field} under {parent:?}");
        }
    }

    #[test]
    fn a_missing_protocol_keys_as_tcp() {
        let keys = merge_keys("ports", Some("spec")).unwrap();
        let (seg, obj) = item_key(&json!({"port": 80}), keys).unwrap();
        assert_eq!(
            seg,
            PathSegment::Keyed(vec![
                ("port".into(), "80".into()),
                ("protocol".into(), "TCP".into())
            ])
        );
        assert_eq!(Value::Object(obj), json!({"port": 80, "protocol": "TCP"}));
    }

    #[test]
    fn an_item_without_its_key_has_no_identity() {
        let keys = merge_keys("env", None).unwrap();
        assert!(item_key(&json!({"value": "x"}), keys).is_none());
        assert!(item_key(&json!("x"), keys).is_none());
    }
}
