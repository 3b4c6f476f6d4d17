//! Desired manifest against live object, field by field, as server-side apply sees it.

use serde_json::{Map, Value};

use super::fields_v1::{OwnedFields, OwnedKey};
use super::merge_keys::{MergeKey, item_key, merge_keys};
use super::quantity::Quantity;
use super::quantity_fields::{group_of, is_quantity_field};
use super::{FieldDiff, FieldPath, PathSegment};

/// gitopsd's field manager name in `metadata.managedFields`.
pub const FIELD_MANAGER: &str = "gitopsd";

/// Top-level fields never compared: the object's identity and what the server reports.
const SKIP_ROOT: &[&str] = &["apiVersion", "kind", "status"];

/// Metadata the server sets; never ours to correct even if a manifest carries it.
const SKIP_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "managedFields",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Annotations tools and controllers write on their own.
const SKIP_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
];

/// IntOrString fields: `8080` and `"8080"` are one value there (`"25%"` and `"http"` stay
/// strings).
const INT_OR_STRING_FIELDS: &[&str] = &[
    "port",
    "targetPort",
    "maxSurge",
    "maxUnavailable",
    "minAvailable",
];

/// The `fieldsV1` of gitopsd's own apply entry in a live object's managedFields, if any.
pub fn applied_fields_v1<'a>(live: &'a Value, manager: &str) -> Option<&'a Value> {
    live.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| {
            e.get("manager").and_then(Value::as_str) == Some(manager)
                && e.get("operation").and_then(Value::as_str) == Some("Apply")
                // A status subresource entry owns status only, which is never compared.
                && e.get("subresource").and_then(Value::as_str).is_none_or(str::is_empty)
        })?
        .get("fieldsV1")
}

/// The fields that differ between a desired manifest and its live object, sorted by path.
///
/// Only fields the manifest sets are compared, plus fields `owned` (gitopsd's `fieldsV1`
/// from an earlier apply) lists that the manifest no longer sets: applying would remove
/// those. Everything else on the live object (server defaults, other managers' fields,
/// status, server-set metadata) is not drift. A malformed `owned` is ignored, with a warning:
/// the comparison then sees only what the manifest sets.
pub fn compare(desired: &Value, live: &Value, owned: Option<&Value>) -> Vec<FieldDiff> {
    let mut owned = owned.and_then(|v| match OwnedFields::parse(v) {
        Ok(o) => Some(o),
        Err(error) => {
            tracing::warn!(%error, "ignoring gitopsd's managedFields entry");
            None
        }
    });
    let folded = fold_string_data(desired, owned.as_mut());
    let kind = Kind::of(desired);
    let mut out = Vec::new();
    walk(
        kind,
        &FieldPath::default(),
        Some(folded.as_ref().unwrap_or(desired)),
        Some(live),
        owned.as_ref(),
        &mut out,
    );
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The GroupKind of the object compared: which fields hold quantities depends on it.
#[derive(Debug, Clone, Copy)]
struct Kind<'a> {
    group: &'a str,
    kind: &'a str,
}

impl<'a> Kind<'a> {
    fn of(object: &'a Value) -> Kind<'a> {
        let text = |f: &str| object.get(f).and_then(Value::as_str).unwrap_or_default();
        Kind {
            group: group_of(text("apiVersion")),
            kind: text("kind"),
        }
    }
}

/// A Secret's `stringData` is write-only: the server merges it into `data` (base64, over
/// `data`'s keys) and never returns it. Fold it the same way, in the manifest and in what
/// gitopsd owns, so it compares against the live `data`. `None` when there is nothing to fold.
fn fold_string_data(desired: &Value, owned: Option<&mut OwnedFields>) -> Option<Value> {
    use base64::Engine as _;
    let is_secret = desired.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && desired.get("kind").and_then(Value::as_str) == Some("Secret");
    if !is_secret {
        return None;
    }
    if let Some(owned) = owned
        && let Some(string_data) = owned.children.remove(&OwnedKey::Field("stringData".into()))
    {
        owned
            .children
            .entry(OwnedKey::Field("data".into()))
            .or_default()
            .children
            .extend(string_data.children);
    }
    let string_data = desired.get("stringData")?.as_object()?;
    let mut folded = desired.clone();
    let obj = folded.as_object_mut()?;
    let mut data = match obj.remove("data") {
        Some(Value::Object(d)) => d,
        _ => Map::new(),
    };
    for (key, v) in string_data {
        // A non-string value is invalid for the API; leave it out rather than guess.
        if let Some(text) = v.as_str() {
            let encoded = base64::engine::general_purpose::STANDARD.encode(text);
            data.insert(key.clone(), Value::String(encoded));
        }
    }
    obj.remove("stringData");
    obj.insert("data".into(), Value::Object(data));
    Some(folded)
}

/// Null, `{}`, `[]` and absent all mean "not set".
fn is_unset(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

/// Whether `key` under `parent` is out of the comparison altogether.
fn skipped(parent: &FieldPath, key: &str) -> bool {
    // Matched on the segments in place: this runs for every key of every object compared.
    let field = |s: &PathSegment, name: &str| matches!(s, PathSegment::Field(f) if f == name);
    match parent.0.as_slice() {
        [] => SKIP_ROOT.contains(&key),
        [m] => field(m, "metadata") && SKIP_METADATA.contains(&key),
        [m, a] => {
            field(m, "metadata") && field(a, "annotations") && SKIP_ANNOTATIONS.contains(&key)
        }
        _ => false,
    }
}

/// The last two map keys of a path: the field and the field above it.
fn field_and_parent(path: &FieldPath) -> (Option<&str>, Option<&str>) {
    let mut it = path.0.iter().rev().filter_map(|s| match s {
        PathSegment::Field(f) => Some(f.as_str()),
        _ => None,
    });
    let field = it.next();
    (field, it.next())
}

fn push(out: &mut Vec<FieldDiff>, path: &FieldPath, desired: Option<&Value>, live: Option<&Value>) {
    out.push(FieldDiff {
        path: path.clone(),
        desired: desired.filter(|v| !is_unset(Some(v))).cloned(),
        live: live.filter(|v| !is_unset(Some(v))).cloned(),
    });
}

fn walk(
    kind: Kind<'_>,
    path: &FieldPath,
    desired: Option<&Value>,
    live: Option<&Value>,
    owned: Option<&OwnedFields>,
    out: &mut Vec<FieldDiff>,
) {
    if is_unset(desired) {
        if let Some(owned) = owned
            && let Some(live) = live.filter(|l| !is_unset(Some(l)))
        {
            removed_owned(kind, path, live, owned, out);
        }
        return;
    }
    match desired {
        Some(Value::Object(d)) => match live {
            Some(Value::Object(l)) => walk_map(kind, path, d, l, owned, out),
            // A map the live object lacks is reported leaf by leaf, so that classification
            // sees `securityContext.privileged`, not only `securityContext`.
            None | Some(Value::Null) => walk_map(kind, path, d, &Map::new(), owned, out),
            _ => push(out, path, desired, live),
        },
        Some(Value::Array(d)) => walk_list(kind, path, d, live, owned, out),
        Some(d) if !scalar_equal(kind, path, d, live, owned.is_some()) => {
            push(out, path, desired, live)
        }
        _ => {}
    }
}

fn walk_map(
    kind: Kind<'_>,
    path: &FieldPath,
    desired: &Map<String, Value>,
    live: &Map<String, Value>,
    owned: Option<&OwnedFields>,
    out: &mut Vec<FieldDiff>,
) {
    for (key, d) in desired {
        if skipped(path, key) {
            continue;
        }
        let child = path.push(PathSegment::Field(key.clone()));
        walk(
            kind,
            &child,
            Some(d),
            live.get(key),
            owned.and_then(|o| o.field(key)),
            out,
        );
    }
    // Fields the manifest dropped but gitopsd applied before: apply would remove them.
    for (key, l) in live {
        if desired.contains_key(key) || skipped(path, key) {
            continue;
        }
        if let Some(o) = owned.and_then(|o| o.field(key)) {
            let child = path.push(PathSegment::Field(key.clone()));
            walk(kind, &child, None, Some(l), Some(o), out);
        }
    }
}

fn walk_list(
    kind: Kind<'_>,
    path: &FieldPath,
    desired: &[Value],
    live: Option<&Value>,
    owned: Option<&OwnedFields>,
    out: &mut Vec<FieldDiff>,
) {
    let (field, parent) = field_and_parent(path);
    let keys = field.and_then(|f| merge_keys(f, parent));
    let live_items: &[Value] = match live {
        Some(Value::Array(l)) => l,
        None | Some(Value::Null) => &[],
        Some(_) => {
            push(out, path, Some(&Value::Array(desired.to_vec())), live);
            return;
        }
    };
    if let Some(keys) = keys
        && walk_keyed_list(kind, path, keys, desired, live_items, owned, out)
    {
        return;
    }
    // Atomic: same length and every item matches in order. Inside an item only what the
    // manifest sets counts, since the server defaults fields of items of atomic lists too
    // (a NetworkPolicy port's protocol).
    let same = desired.len() == live_items.len()
        && desired
            .iter()
            .zip(live_items)
            .enumerate()
            .all(|(i, (d, l))| {
                let mut item_diffs = Vec::new();
                walk(
                    kind,
                    &path.push(PathSegment::Index(i)),
                    Some(d),
                    Some(l),
                    None,
                    &mut item_diffs,
                );
                item_diffs.is_empty()
            });
    if !same {
        push(out, path, Some(&Value::Array(desired.to_vec())), live);
    }
}

/// Compares a list by merge keys; false (and nothing recorded) when some item has no key,
/// so the caller compares it atomically instead.
fn walk_keyed_list(
    kind: Kind<'_>,
    path: &FieldPath,
    keys: &[MergeKey],
    desired: &[Value],
    live: &[Value],
    owned: Option<&OwnedFields>,
    out: &mut Vec<FieldDiff>,
) -> bool {
    let Some(desired_keyed) = desired
        .iter()
        .map(|d| item_key(d, keys).map(|k| (k, d)))
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let Some(live_keyed) = live
        .iter()
        .map(|l| item_key(l, keys).map(|k| (k, l)))
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    for ((segment, key_obj), d) in &desired_keyed {
        let item_path = path.push(segment.clone());
        let item_owned = owned.and_then(|o| o.keyed(key_obj));
        match live_keyed.iter().find(|((s, _), _)| s == segment) {
            Some((_, l)) => walk(kind, &item_path, Some(d), Some(l), item_owned, out),
            None => push(out, &item_path, Some(d), None),
        }
    }
    // Items only the live object has are another manager's unless gitopsd applied them.
    for ((segment, key_obj), l) in &live_keyed {
        if desired_keyed.iter().any(|((s, _), _)| s == segment) {
            continue;
        }
        if owned.and_then(|o| o.keyed(key_obj)).is_some() {
            push(out, &path.push(segment.clone()), None, Some(l));
        }
    }
    true
}

/// The manifest no longer sets `live`, which gitopsd owned (in part): report what applying
/// would remove, leaf by leaf where the ownership says which leaves.
fn removed_owned(
    kind: Kind<'_>,
    path: &FieldPath,
    live: &Value,
    owned: &OwnedFields,
    out: &mut Vec<FieldDiff>,
) {
    if owned.is_leaf() {
        push(out, path, None, Some(live));
        return;
    }
    match live {
        Value::Object(l) => {
            for (key, v) in l {
                if skipped(path, key) {
                    continue;
                }
                if let Some(o) = owned.field(key) {
                    let child = path.push(PathSegment::Field(key.clone()));
                    walk(kind, &child, None, Some(v), Some(o), out);
                }
            }
        }
        Value::Array(items) => {
            let (field, parent) = field_and_parent(path);
            let keys = field.and_then(|f| merge_keys(f, parent));
            let keyed: Option<Vec<_>> = keys.and_then(|keys| {
                items
                    .iter()
                    .map(|i| item_key(i, keys).map(|k| (k, i)))
                    .collect()
            });
            match keyed {
                Some(keyed) => {
                    for ((segment, key_obj), item) in keyed {
                        if owned.keyed(&key_obj).is_some() {
                            push(out, &path.push(segment), None, Some(item));
                        }
                    }
                }
                None => push(out, path, None, Some(live)),
            }
        }
        _ => push(out, path, None, Some(live)),
    }
}

/// Scalars by meaning: quantities by value where the kind's field is a quantity, IntOrString
/// fields across their two spellings, numbers by value (`1 == 1.0`).
fn scalar_equal(
    kind: Kind<'_>,
    path: &FieldPath,
    desired: &Value,
    live: Option<&Value>,
    applied: bool,
) -> bool {
    let Some(live) = live else {
        // Go's omitempty drops zero values (PriorityClass `globalDefault: false`): a zero
        // value gitopsd applied (it owns the field) and the live object lacks was dropped so.
        // Not applied, a zero value may be a pointer field that is really unset
        // (`runAsUser: 0`), so it is reported and left to the server-side dry-run.
        return applied && is_zero(desired);
    };
    if desired == live {
        return true;
    }
    let (field, _) = field_and_parent(path);
    // By kind and path, never by field name alone: `storage` in a ConfigMap is text.
    let is_quantity = || {
        let fields: Vec<&str> = path.fields().collect();
        is_quantity_field(kind.group, kind.kind, &fields)
    };
    if is_quantity()
        && let (Some(d), Some(l)) = (Quantity::from_json(desired), Quantity::from_json(live))
    {
        return d == l;
    }
    match (desired, live) {
        (Value::Number(_), Value::Number(_)) => {
            Quantity::from_json(desired).is_some()
                && Quantity::from_json(desired) == Quantity::from_json(live)
        }
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n))
            if field.is_some_and(|f| INT_OR_STRING_FIELDS.contains(&f)) =>
        {
            n.as_i64().is_some_and(|n| s.parse::<i64>() == Ok(n))
        }
        _ => false,
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::Number(_) => Quantity::from_json(v) == Quantity::parse("0"),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}
