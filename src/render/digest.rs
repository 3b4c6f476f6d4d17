//! Canonical JSON and sha256 digests, so "nothing changed" is one string compare.
//!
//! Keys are sorted here explicitly rather than relying on serde_json's map order: any crate
//! in the build may turn on serde_json's `preserve_order`, which would change every digest.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Keys sorted, no whitespace, strings and numbers as serde_json writes them.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(k, out);
                out.push(':');
                write(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(v, out);
            }
            out.push(']');
        }
        Value::String(s) => write_str(s, out),
        // Scalars other than strings have one JSON spelling in serde_json.
        other => out.push_str(&other.to_string()),
    }
}

fn write_str(s: &str, out: &mut String) {
    // Serializing a &str to JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The set digest: sha256 over the objects' hex digests, each followed by a newline.
pub(crate) fn set_digest<'a>(digests: impl Iterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for d in digests {
        h.update(d.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level_and_has_no_whitespace() {
        let v = json!({"b": {"z": 1, "a": [ {"y": "q\"", "x": null} ]}, "a": true});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":true,"b":{"a":[{"x":null,"y":"q\""}],"z":1}}"#
        );
    }
}
