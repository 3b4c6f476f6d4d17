//! Secret values never leave the classify stage: each is replaced by a marker with a short,
//! salted hash, so a person can tell whether two values are equal without seeing either.

use std::hash::{BuildHasher, RandomState};
use std::sync::LazyLock;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::DriftItem;

/// The fields of a Secret that hold values.
const SECRET_VALUE_FIELDS: [&str; 2] = ["data", "stringData"];

/// A per-process salt: without it, 32 bits of an unsalted sha256 would give away short or
/// guessable secrets to a dictionary. Markers therefore compare within one daemon run.
static SALT: LazyLock<[u8; 16]> = LazyLock::new(|| {
    // RandomState draws its keys from the OS's random source; two of them make 128 bits.
    let a = RandomState::new().hash_one(0u8).to_le_bytes();
    let b = RandomState::new().hash_one(1u8).to_le_bytes();
    let mut salt = [0u8; 16];
    salt[..8].copy_from_slice(&a);
    salt[8..].copy_from_slice(&b);
    salt
});

/// `<masked sha256:1a2b3c4d>` for `value`.
pub fn marker(value: &Value) -> String {
    let mut h = Sha256::new();
    h.update(SALT.as_slice());
    h.update(value.to_string().as_bytes());
    let digest = h.finalize();
    format!("<masked sha256:{}>", hex::encode(&digest[..4]))
}

/// Replaces every Secret value in `item`'s desired and live values by its marker; items of
/// other kinds are left alone. Idempotent: a marker is never masked again.
pub fn mask_secret_values(item: &mut DriftItem) {
    if item.key.kind != "Secret" {
        return;
    }
    // An item without a path stands for the whole object.
    let path = item
        .field_path
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    for value in [&mut item.desired, &mut item.live].into_iter().flatten() {
        mask_value(&path, value);
    }
}

/// kubectl's client-side apply keeps a whole copy of the object, `data` and `stringData` in
/// plain text, in this annotation.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `path` is the display form of where `value` sits in the object.
fn mask_value(path: &str, value: &mut Value) {
    mask_last_applied(path, value);
    // Keys under data/stringData may hold dots; only the first field is unambiguous.
    let first = path.split(['.', '[']).next().unwrap_or_default();
    match first {
        // The whole object: mask inside its value fields.
        "" => {
            if let Some(obj) = value.as_object_mut() {
                for field in SECRET_VALUE_FIELDS {
                    if let Some(v) = obj.get_mut(field) {
                        mask_entries(v);
                    }
                }
            }
        }
        f if SECRET_VALUE_FIELDS.contains(&f) => {
            if path == f {
                // The whole map: keys are names, not secrets; mask each value.
                mask_entries(value);
            } else {
                mask_one(value);
            }
        }
        // metadata, type, immutable: no values of the secret there.
        _ => {}
    }
}

/// Masks the last-applied copy wherever `value` (at `path`) holds it: the whole object, its
/// metadata, its annotations, or the annotation itself.
fn mask_last_applied(path: &str, value: &mut Value) {
    if path.contains(LAST_APPLIED) {
        mask_one(value);
        return;
    }
    let annotations = match path {
        "" => value.pointer_mut("/metadata/annotations"),
        "metadata" => value.pointer_mut("/annotations"),
        "metadata.annotations" => Some(value),
        _ => None,
    };
    if let Some(v) = annotations.and_then(|a| a.get_mut(LAST_APPLIED)) {
        mask_one(v);
    }
}

fn mask_entries(map: &mut Value) {
    match map.as_object_mut() {
        Some(obj) => obj.values_mut().for_each(mask_one),
        // Not a map (a broken manifest): mask it whole rather than guess.
        None => mask_one(map),
    }
}

fn mask_one(value: &mut Value) {
    if is_marker(value) {
        return;
    }
    *value = Value::String(marker(value));
}

fn is_marker(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.starts_with("<masked sha256:") && s.ends_with('>') && s.len() == 24)
}
