//! The state ConfigMap's layout: its keys, and [`TierState`] encoded into it and decoded from
//! it (the inventory as gzipped lines).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::live::ObjectKey;
use crate::revision::Revision;

use super::{
    FIELD_MANAGER, Inventory, MAX_INVENTORY_GZ_BYTES, StateError, StateStore, TierState,
    short_digest,
};

/// The ConfigMap keys, in one place so save and load cannot disagree.
const KEY_LAST_APPLIED: &str = "lastAppliedRevision";
const KEY_LAST_HEALTHY: &str = "lastHealthyRevision";
const KEY_FAILED: &str = "failedRevision";
const KEY_ROLLBACKS: &str = "rollbacks";
const KEY_HEALTHY: &str = "healthyRevisions";
const KEY_FINISHED_JOBS: &str = "finishedJobs";
const KEY_ROLLOUT: &str = "rollout";
const KEY_COUNT: &str = "inventoryCount";
const KEY_FORMAT: &str = "format";
const KEY_INVENTORY: &str = "inventory.gz";
pub(super) const FORMAT: &str = "1";

/// A decompressed inventory larger than this is not one gitopsd wrote (10,000 objects take about
/// 1 MiB); the limit keeps a damaged or hostile ConfigMap from exhausting memory.
const MAX_INVENTORY_TEXT_BYTES: u64 = 256 * 1024 * 1024;

/// What is wrong with one key of a state ConfigMap, written or read: the [`StateError`] that
/// carries it names the ConfigMap (and so the tier) and the key.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(
        "inventory entry {key:?} holds a tab or newline, which the inventory format cannot store"
    )]
    UnstorableEntry { key: ObjectKey },
    #[error("inventory entry {key:?} (digest {digest:?}) has an empty field")]
    EmptyEntry { key: ObjectKey, digest: String },
    #[error("gzip: {0}")]
    Gzip(#[source] std::io::Error),
    #[error("not a gzip of UTF-8 text: {0}")]
    NotGzip(#[source] std::io::Error),
    #[error(
        "over {limit} bytes once decompressed, more than gitopsd ever writes (a damaged or foreign ConfigMap)"
    )]
    TooLarge { limit: u64 },
    #[error(
        "line {line}: {fields} tab-separated fields, expected 5 (digest, apiVersion, kind, namespace, name): {text:?}"
    )]
    Fields {
        line: usize,
        fields: usize,
        text: String,
    },
    #[error("line {line}: an empty field: {text:?}")]
    EmptyField { line: usize, text: String },
    #[error("line {line}: the object is listed twice: {text:?}")]
    Duplicate { line: usize, text: String },
    #[error("missing from {0}")]
    Missing(&'static str),
    #[error("{value:?} is not a count: {source}")]
    NotACount {
        value: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("holds {lines} objects, {KEY_COUNT} says {count}")]
    CountMismatch { lines: usize, count: usize },
    #[error("as JSON: {0}")]
    ToJson(#[source] serde_json::Error),
    #[error("not {expected}: {source}")]
    FromJson {
        expected: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The state ConfigMap of `tier` in `namespace`, as save applies it.
pub(super) fn encode(
    tier: &str,
    namespace: &str,
    state: &TierState,
) -> Result<ConfigMap, StateError> {
    let name = StateStore::config_map_name(tier);
    let encode_error = |key: &'static str, source: CodecError| StateError::Encode {
        tier: tier.to_owned(),
        namespace: namespace.to_owned(),
        name: name.clone(),
        key,
        source: Box::new(source),
    };
    let gz = encode_inventory(&state.inventory).map_err(|e| encode_error(KEY_INVENTORY, e))?;
    if gz.len() > MAX_INVENTORY_GZ_BYTES {
        return Err(StateError::TooLarge {
            namespace: namespace.to_owned(),
            name,
            objects: state.inventory.len(),
            bytes: gz.len(),
        });
    }
    let mut data = BTreeMap::new();
    let mut put = |k: &str, v: Option<&Revision>| {
        if let Some(v) = v {
            data.insert(k.to_owned(), v.to_string());
        }
    };
    put(KEY_LAST_APPLIED, state.last_applied_revision.as_ref());
    put(KEY_LAST_HEALTHY, state.last_healthy_revision.as_ref());
    put(KEY_FAILED, state.failed_revision.as_ref());
    data.insert(KEY_ROLLBACKS.to_owned(), state.rollbacks.to_string());
    if !state.healthy.is_empty() {
        let json = to_json(&state.healthy).map_err(|e| encode_error(KEY_HEALTHY, e))?;
        data.insert(KEY_HEALTHY.to_owned(), json);
    }
    if !state.finished_jobs.is_empty() {
        let json = to_json(&state.finished_jobs).map_err(|e| encode_error(KEY_FINISHED_JOBS, e))?;
        data.insert(KEY_FINISHED_JOBS.to_owned(), json);
    }
    if let Some(rollout) = &state.rollout {
        let json = to_json(rollout).map_err(|e| encode_error(KEY_ROLLOUT, e))?;
        data.insert(KEY_ROLLOUT.to_owned(), json);
    }
    data.insert(KEY_COUNT.to_owned(), state.inventory.len().to_string());
    data.insert(KEY_FORMAT.to_owned(), FORMAT.to_owned());

    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            FIELD_MANAGER.to_owned(),
        ),
        ("app.kubernetes.io/component".to_owned(), "state".to_owned()),
        ("gitopsd.io/state-of".to_owned(), tier.to_owned()),
    ]);
    Ok(ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        data: Some(data),
        binary_data: Some(BTreeMap::from([(KEY_INVENTORY.to_owned(), ByteString(gz))])),
        ..ConfigMap::default()
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, CodecError> {
    serde_json::to_string(value).map_err(CodecError::ToJson)
}

/// The value of a JSON key, or why it is not `expected`.
fn from_json<T: serde::de::DeserializeOwned>(
    text: &str,
    expected: &'static str,
) -> Result<T, CodecError> {
    serde_json::from_str(text).map_err(|source| CodecError::FromJson { expected, source })
}

/// The state a ConfigMap written by [`encode`] holds.
pub(super) fn decode(namespace: &str, cm: &ConfigMap) -> Result<TierState, StateError> {
    let name = cm.metadata.name.clone().unwrap_or_default();
    let corrupt = |key: &'static str, source: CodecError| StateError::Corrupt {
        namespace: namespace.to_owned(),
        name: name.clone(),
        key,
        source: Box::new(source),
    };
    let empty = BTreeMap::new();
    let data = cm.data.as_ref().unwrap_or(&empty);
    match data.get(KEY_FORMAT).map(String::as_str) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(StateError::UnsupportedFormat {
                namespace: namespace.to_owned(),
                name,
                found: other.to_owned(),
            });
        }
        None => return Err(corrupt(KEY_FORMAT, CodecError::Missing("data"))),
    }
    let rollbacks = match data.get(KEY_ROLLBACKS) {
        Some(v) => v.parse::<u64>().map_err(|source| {
            corrupt(
                KEY_ROLLBACKS,
                CodecError::NotACount {
                    value: v.clone(),
                    source,
                },
            )
        })?,
        None => 0,
    };
    let (inventory, lines) = match cm.binary_data.as_ref().and_then(|b| b.get(KEY_INVENTORY)) {
        Some(gz) => decode_inventory(&gz.0).map_err(|r| corrupt(KEY_INVENTORY, r))?,
        None => return Err(corrupt(KEY_INVENTORY, CodecError::Missing("binaryData"))),
    };
    // The count is written beside the inventory so a truncated inventory cannot pass as a
    // smaller one (which would make gitopsd forget objects it must prune).
    if let Some(count) = data.get(KEY_COUNT) {
        let count: usize = count.parse().map_err(|source| {
            corrupt(
                KEY_COUNT,
                CodecError::NotACount {
                    value: count.clone(),
                    source,
                },
            )
        })?;
        // Lines, not entries: two lines for one object at two versions are merged.
        if count != lines {
            return Err(corrupt(
                KEY_INVENTORY,
                CodecError::CountMismatch { lines, count },
            ));
        }
    }
    let healthy = match data.get(KEY_HEALTHY) {
        Some(v) => {
            from_json(v, "a list of healthy revisions").map_err(|e| corrupt(KEY_HEALTHY, e))?
        }
        None => Vec::new(),
    };
    let finished_jobs = match data.get(KEY_FINISHED_JOBS) {
        Some(v) => {
            from_json(v, "a list of finished Jobs").map_err(|e| corrupt(KEY_FINISHED_JOBS, e))?
        }
        None => Vec::new(),
    };
    let rollout = match data.get(KEY_ROLLOUT) {
        Some(v) => Some(
            from_json(v, "a rollout (revision, startedAt)").map_err(|e| corrupt(KEY_ROLLOUT, e))?,
        ),
        None => None,
    };
    Ok(TierState {
        inventory,
        last_applied_revision: data.get(KEY_LAST_APPLIED).cloned().map(Revision::from),
        last_healthy_revision: data.get(KEY_LAST_HEALTHY).cloned().map(Revision::from),
        failed_revision: data.get(KEY_FAILED).cloned().map(Revision::from),
        rollbacks,
        healthy,
        finished_jobs,
        rollout,
    })
}

/// Gzip of the inventory lines, sorted (the `BTreeMap` order is the key order; lines are sorted
/// again by their text so the bytes depend only on the content).
fn encode_inventory(inventory: &Inventory) -> Result<Vec<u8>, CodecError> {
    let mut lines = Vec::with_capacity(inventory.len());
    for (key, digest) in inventory {
        let fields = [
            short_digest(digest),
            &key.api_version,
            &key.kind,
            key.namespace.as_deref().unwrap_or(""),
            &key.name,
        ];
        // Kubernetes names, kinds and hex digests never hold these; a key that does would
        // shift the columns and read back as another object.
        if fields.iter().any(|f| f.contains(['\t', '\n', '\r'])) {
            return Err(CodecError::UnstorableEntry { key: key.clone() });
        }
        if digest.is_empty()
            || key.api_version.is_empty()
            || key.kind.is_empty()
            || key.name.is_empty()
        {
            return Err(CodecError::EmptyEntry {
                key: key.clone(),
                digest: digest.clone(),
            });
        }
        lines.push(fields.join("\t"));
    }
    lines.sort_unstable();
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    for line in &lines {
        gz.write_all(line.as_bytes())
            .and_then(|()| gz.write_all(b"\n"))
            .map_err(CodecError::Gzip)?;
    }
    gz.finish().map_err(CodecError::Gzip)
}

/// The inventory of the lines; two lines for one object at two versions (a state written
/// before the inventory was keyed by identity) become one entry ([`Inventory::merge`]).
fn decode_inventory(gz: &[u8]) -> Result<(Inventory, usize), CodecError> {
    decode_inventory_within(gz, MAX_INVENTORY_TEXT_BYTES)
}

/// [`decode_inventory`] with at most `limit` bytes of text: more is an error, never a silently
/// cut (and so shorter) inventory.
fn decode_inventory_within(gz: &[u8], limit: u64) -> Result<(Inventory, usize), CodecError> {
    let mut text = String::new();
    GzDecoder::new(gz)
        .take(limit.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(CodecError::NotGzip)?;
    if text.len() as u64 > limit {
        return Err(CodecError::TooLarge { limit });
    }
    let mut inventory = Inventory::new();
    let mut lines_seen = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [digest, api_version, kind, namespace, name] = fields[..] else {
            return Err(CodecError::Fields {
                line: i + 1,
                fields: fields.len(),
                text: line.to_owned(),
            });
        };
        if digest.is_empty() || api_version.is_empty() || kind.is_empty() || name.is_empty() {
            return Err(CodecError::EmptyField {
                line: i + 1,
                text: line.to_owned(),
            });
        }
        let key = ObjectKey {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
            name: name.to_owned(),
        };
        if !lines_seen.insert(key.clone()) {
            return Err(CodecError::Duplicate {
                line: i + 1,
                text: line.to_owned(),
            });
        }
        inventory.merge(key, digest.to_owned());
    }
    Ok((inventory, lines_seen.len()))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(text: &str) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(text.as_bytes()).expect("gzip");
        gz.finish().expect("gzip")
    }

    /// Cut at the limit, the text would end at a line boundary and read as a shorter
    /// inventory: the objects past the cut would be forgotten, never pruned.
    #[test]
    fn an_inventory_over_the_size_limit_is_refused_not_cut() {
        let line = "0123456789abcdef\tv1\tConfigMap\tshop\tc\n";
        let two = format!("{line}{}", line.replace("\tc\n", "\td\n"));
        let gz = gzip(&two);
        let (inventory, lines) =
            decode_inventory_within(&gz, two.len() as u64).expect("at the limit");
        assert_eq!((inventory.len(), lines), (2, 2));
        let err = decode_inventory_within(&gz, line.len() as u64).expect_err("over the limit");
        assert!(
            matches!(err, CodecError::TooLarge { limit } if limit == line.len() as u64),
            "{err}"
        );
    }

    #[test]
    fn an_entry_the_format_cannot_hold_names_the_tier_config_map_and_key() {
        let mut state = TierState::default();
        state.inventory.insert(
            ObjectKey {
                api_version: "v1".to_owned(),
                kind: "ConfigMap".to_owned(),
                namespace: Some("shop".to_owned()),
                name: "a\tb".to_owned(),
            },
            "0123456789abcdef".to_owned(),
        );
        let err = encode("prod", "gitopsd", &state).expect_err("a tab in a name");
        assert!(
            matches!(
                &err,
                StateError::Encode { tier, key: KEY_INVENTORY, source, .. }
                    if tier == "prod" && matches!(**source, CodecError::UnstorableEntry { .. })
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with(
                "the state of tier prod cannot be written to gitopsd/gitopsd-state-prod: inventory.gz: inventory entry"
            ),
            "{text}"
        );
    }
}
