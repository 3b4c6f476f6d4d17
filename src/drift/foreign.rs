//! Foreign security fields: the pass over [`SECURITY_FIELDS`] that finds security-weakening
//! fields in a live object that its manifest does not set, whoever set them. The diff stage
//! cannot see them: with server-side-apply semantics it compares only the fields the manifest
//! sets or gitopsd owns, so a `kubectl patch` adding `privileged: true` would not be drift.

use serde_json::Value;

use crate::classify::rules::{SECURITY_FIELDS, SecurityField, SecurityScope, Weakens};
use crate::diff::{FieldDiff, FieldPath, PathSegment, item_key, merge_keys};
use crate::podspec::pod_spec_path;

/// The container lists of a pod spec.
const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// One foreign security field: where, and what the table entry says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignField {
    pub entry: &'static SecurityField,
    pub diff: FieldDiff,
}

/// The security-weakening fields `live` has and `manifest` does not set, for an object of
/// `kind`. The diffs have `desired: None` (the manifest leaves the field out) and the live
/// value.
pub fn foreign_security_fields(kind: &str, manifest: &Value, live: &Value) -> Vec<ForeignField> {
    let mut out = Vec::new();
    for entry in SECURITY_FIELDS {
        if filled_by_aggregation(entry, kind, manifest) {
            continue;
        }
        for (base, live_at, manifest_at) in bases(entry.scope, kind, manifest, live) {
            let steps: Vec<&str> = entry.path.split('.').collect();
            walk(entry, &steps, base, live_at, manifest_at, live, &mut out);
        }
    }
    mounts_of_added_volumes(kind, manifest, live, &mut out);
    // A field inside an item already reported whole (a hostPath volume added) is that item.
    let whole: Vec<FieldPath> = out.iter().map(|f| f.diff.path.clone()).collect();
    out.retain(|f| {
        !whole
            .iter()
            .any(|w| w.0.len() < f.diff.path.0.len() && f.diff.path.0.starts_with(&w.0))
    });
    out
}

type Base<'v> = (FieldPath, &'v Value, Option<&'v Value>);

/// The rules of a ClusterRole whose manifest sets an `aggregationRule` are the aggregation
/// controller's to write (it copies in the rules of the ClusterRoles the selectors match, and
/// overwrites any other): they are the manifest's intent, not a grant added behind its back.
/// Kyverno's install has four such roles; reporting their rules as critical drift and removing
/// them started a fight with the controller. A changed `aggregationRule` itself is still drift.
fn filled_by_aggregation(entry: &SecurityField, kind: &str, manifest: &Value) -> bool {
    entry.id == "rbac-rule-added"
        && kind == "ClusterRole"
        && manifest
            .get("aggregationRule")
            .is_some_and(|a| !a.is_null())
}

/// Where an entry's path starts: the object, its pod spec, or each container the manifest
/// also has.
fn bases<'v>(
    scope: SecurityScope,
    kind: &str,
    manifest: &'v Value,
    live: &'v Value,
) -> Vec<Base<'v>> {
    match scope {
        SecurityScope::Kinds(kinds) => {
            if kinds.contains(&kind) {
                vec![(FieldPath::default(), live, Some(manifest))]
            } else {
                Vec::new()
            }
        }
        SecurityScope::PodSpec => pod_spec_base(kind, manifest, live).into_iter().collect(),
        SecurityScope::Container => {
            let Some((spec_path, live_spec, manifest_spec)) = pod_spec_base(kind, manifest, live)
            else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for list in CONTAINER_LISTS {
                let Some(items) = live_spec.get(list).and_then(Value::as_array) else {
                    continue;
                };
                let list_path = spec_path.push(PathSegment::Field(list.to_owned()));
                let manifest_list = manifest_spec.and_then(|s| s.get(list));
                for item in items {
                    let Some((seg, counterpart)) =
                        identify(list, Some("spec"), item, manifest_list)
                    else {
                        continue;
                    };
                    // A container the manifest lacks is reported whole (`containers[]`).
                    if let Some(m) = counterpart {
                        out.push((list_path.push(seg), item, Some(m)));
                    }
                }
            }
            out
        }
    }
}

/// Where a custom resource keeps a pod template, as the workloads do (Argo Rollouts, ...).
const TEMPLATE_POD_SPEC: &[&str] = &["spec", "template", "spec"];

/// The mounts of volumes found above (an added hostPath or Secret volume) in containers the
/// manifest has: they are the volume's use, and removing the volume alone would leave the pod
/// spec invalid, so the attack would stay.
fn mounts_of_added_volumes(
    kind: &str,
    manifest: &Value,
    live: &Value,
    out: &mut Vec<ForeignField>,
) {
    let Some((spec_path, live_spec, manifest_spec)) = pod_spec_base(kind, manifest, live) else {
        return;
    };
    let volumes_path = spec_path.push(PathSegment::Field("volumes".to_owned()));
    let added: Vec<(String, &'static SecurityField)> = out
        .iter()
        .filter_map(|f| match f.diff.path.0.split_last() {
            Some((PathSegment::Keyed(keys), parent)) if parent == volumes_path.0.as_slice() => keys
                .iter()
                .find(|(k, _)| k == "name")
                .map(|(_, name)| (name.clone(), f.entry)),
            _ => None,
        })
        .collect();
    for (volume, entry) in added {
        for list in CONTAINER_LISTS {
            let Some(containers) = live_spec.get(list).and_then(Value::as_array) else {
                continue;
            };
            let manifest_list = manifest_spec.and_then(|s| s.get(list));
            for c in containers {
                let Some((seg, Some(counterpart))) = identify(list, Some("spec"), c, manifest_list)
                else {
                    continue;
                };
                let container_path = spec_path
                    .push(PathSegment::Field(list.to_owned()))
                    .push(seg);
                let mounts_path =
                    container_path.push(PathSegment::Field("volumeMounts".to_owned()));
                let manifest_mounts = counterpart.get("volumeMounts");
                for m in c
                    .get("volumeMounts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|m| m.get("name").and_then(Value::as_str) == Some(volume.as_str()))
                {
                    if let Some((mseg, None)) =
                        identify("volumeMounts", Some(list), m, manifest_mounts)
                    {
                        out.push(found(entry, mounts_path.push(mseg), m));
                    }
                }
            }
        }
    }
}

fn pod_spec_base<'v>(kind: &str, manifest: &'v Value, live: &'v Value) -> Option<Base<'v>> {
    let fields = pod_spec_path(kind).or_else(|| {
        let embedded = TEMPLATE_POD_SPEC
            .iter()
            .try_fold(live, |v, f| v.get(f))
            .and_then(|spec| spec.get("containers"))
            .is_some_and(Value::is_array);
        embedded.then_some(TEMPLATE_POD_SPEC)
    })?;
    let mut path = FieldPath::default();
    let mut l = live;
    let mut m = Some(manifest);
    for f in fields {
        l = l.get(f)?;
        m = m.and_then(|m| m.get(f));
        path = path.push(PathSegment::Field((*f).to_owned()));
    }
    Some((path, l, m))
}

/// A live list item's path segment and the manifest's item it stands for: by merge key in a
/// keyed list, by equal value in an atomic one.
fn identify<'v>(
    list: &str,
    parent: Option<&str>,
    item: &Value,
    manifest_list: Option<&'v Value>,
) -> Option<(PathSegment, Option<&'v Value>)> {
    let manifest_items = manifest_list.and_then(Value::as_array);
    match merge_keys(list, parent) {
        Some(keys) => {
            let (seg, _) = item_key(item, keys)?;
            let counterpart = manifest_items.and_then(|ms| {
                ms.iter()
                    .find(|m| item_key(m, keys).is_some_and(|(mseg, _)| mseg == seg))
            });
            Some((seg, counterpart))
        }
        None => {
            let counterpart = manifest_items.and_then(|ms| ms.iter().find(|m| *m == item));
            // The index is the item's place in the live list: what a removal needs.
            Some((PathSegment::Index(0), counterpart))
        }
    }
}

fn walk(
    entry: &'static SecurityField,
    steps: &[&str],
    path: FieldPath,
    live: &Value,
    manifest: Option<&Value>,
    root: &Value,
    out: &mut Vec<ForeignField>,
) {
    let Some((step, rest)) = steps.split_first() else {
        return;
    };
    if let Some(list) = step.strip_suffix("[]") {
        let Some(items) = live.get(list).and_then(Value::as_array) else {
            return;
        };
        let parent = path.fields().last().map(str::to_owned);
        let list_path = path.push(PathSegment::Field(list.to_owned()));
        let manifest_list = manifest.and_then(|m| m.get(list));
        // An atomic list the manifest sets is compared whole by the diff stage, server
        // defaults inside its items confirmed by the dry-run: an added item is drift there.
        let atomic = merge_keys(list, parent.as_deref()).is_none();
        if atomic && manifest_list.is_some_and(|m| !is_empty(m)) {
            return;
        }
        for (i, item) in items.iter().enumerate() {
            let Some((seg, counterpart)) = identify(list, parent.as_deref(), item, manifest_list)
            else {
                continue;
            };
            let seg = match seg {
                PathSegment::Index(_) => PathSegment::Index(i),
                s => s,
            };
            let item_path = list_path.push(seg);
            if rest.is_empty() {
                let added = counterpart.is_none()
                    && match entry.weakens {
                        Weakens::ItemAdded => true,
                        Weakens::ItemAddedWith(key) => item.get(key).is_some_and(|v| !is_empty(v)),
                        _ => false,
                    };
                if added {
                    out.push(found(entry, item_path, item));
                }
            } else {
                walk(entry, rest, item_path, item, counterpart, root, out);
            }
        }
        return;
    }
    let Some(live_value) = live.get(*step) else {
        return;
    };
    if let (true, Weakens::KeyIs(key, text)) = (rest.is_empty(), entry.weakens) {
        let manifest_sets = manifest
            .and_then(|m| m.get(*step))
            .and_then(|m| m.get(key))
            .is_some_and(|v| !v.is_null());
        let value = live_value.get(key);
        let weak = serde_json::from_str::<Value>(text).is_ok_and(|v| value == Some(&v));
        if weak && !manifest_sets {
            let at = path
                .push(PathSegment::Field((*step).to_owned()))
                .push(PathSegment::Field(key.to_owned()));
            out.push(found(entry, at, value.unwrap_or(&Value::Null)));
        }
        return;
    }
    let manifest_value = manifest.and_then(|m| m.get(*step)).filter(|v| !v.is_null());
    let here = path.push(PathSegment::Field((*step).to_owned()));
    if !rest.is_empty() {
        walk(entry, rest, here, live_value, manifest_value, root, out);
        return;
    }
    // A field the manifest sets is the diff stage's: ordinary drift, not reported twice.
    if manifest_value.is_some() || is_empty(live_value) {
        return;
    }
    let weakens = match entry.weakens {
        Weakens::AnyValue => true,
        Weakens::Is(text) => serde_json::from_str::<Value>(text).is_ok_and(|v| v == *live_value),
        Weakens::IsNot(text) => serde_json::from_str::<Value>(text).is_ok_and(|v| v != *live_value),
        Weakens::ItemAdded | Weakens::ItemAddedWith(_) | Weakens::KeyIs(..) => false,
        Weakens::OtherServiceAccount => {
            // `manifest` is the pod spec here: the account it means, whichever field names it.
            let meant = manifest
                .and_then(|m| {
                    m.get("serviceAccountName")
                        .or_else(|| m.get("serviceAccount"))
                })
                .and_then(Value::as_str)
                .unwrap_or("default");
            live_value.as_str() != Some(meant)
        }
        Weakens::HostPort => {
            // Under hostNetwork the server defaults hostPort to the containerPort; a
            // hostNetwork the manifest does not set is reported by its own entry.
            let defaulted = pod_host_network(root) && live.get("containerPort") == Some(live_value);
            !defaulted
        }
    };
    if weakens {
        out.push(found(entry, here, live_value));
    }
}

fn found(entry: &'static SecurityField, path: FieldPath, live: &Value) -> ForeignField {
    ForeignField {
        entry,
        diff: FieldDiff {
            path,
            desired: None,
            live: Some(live.clone()),
        },
    }
}

fn pod_host_network(root: &Value) -> bool {
    let kind = root.get("kind").and_then(Value::as_str).unwrap_or_default();
    crate::podspec::pod_spec(kind, root)
        .and_then(|s| s.get("hostNetwork"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Absent, null, `{}`, `[]` and `""` are no value, as in the diff stage.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
