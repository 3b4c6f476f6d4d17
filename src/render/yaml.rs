//! Multi-document YAML to JSON values, with limits a hostile file cannot get around.
//!
//! The value is built by our own visitor rather than through `serde_yaml::Value`: serde_yaml
//! replays an alias's events each time it is used, so counting nodes in the visitor bounds
//! what an alias bomb can expand to (and the memory it takes) exactly, and counting depth
//! there stops a deeply nested document at our limit, before serde_yaml's own (128).
//!
//! Node counting is per document: a real CRD runs at 20-30 bytes of JSON per node
//! (prometheus-operator v0.85.0's CRDs: up to 454 KB as JSON, 16,900 nodes), so the default
//! of 250,000 fits any object the API server's 3 MiB request limit lets through, while an
//! alias expansion is stopped after 250,000 nodes, in milliseconds. (The classic "billion
//! laughs", nested aliases, meets serde_yaml's own guard first: replays over 100 times the
//! document's events.) What all documents of a tier take in memory is bounded by
//! [`TierBytes`], shared by the parser threads, so many small documents that each expand to
//! just under the node limit are stopped too.
//!
//! YAML merge keys (`<<: *base`) are expanded as YAML 1.1 and kubectl do: the mapping's own
//! keys win, then the merged mappings in the order given. serde_yaml 0.9 leaves `<<` as a
//! plain key; we merge in the visitor, after the aliases were replayed (and counted).

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::RenderError;

/// One parsed document of a file.
#[derive(Debug)]
pub(crate) struct Document {
    /// Index among the file's documents, empty ones counted.
    pub index: usize,
    /// 1-based line of the document's first content.
    pub line: usize,
    pub value: Value,
}

pub(crate) struct YamlLimits {
    pub max_depth: usize,
    pub max_nodes: usize,
}

/// The memory a tier's parsed documents take, about (a node's value and entry, plus its
/// text), summed over every file of the tier (the parser threads share it): the bound on a
/// render's memory when each document alone is within its limits. Counted in memory, not
/// as JSON, so alias-expanded tiny nodes (2 bytes of JSON, ~56 of memory) are paid for.
pub(crate) struct TierBytes {
    used: AtomicU64,
    limit: u64,
}

impl TierBytes {
    pub(crate) fn new(limit: u64) -> TierBytes {
        TierBytes {
            used: AtomicU64::new(0),
            limit,
        }
    }

    /// Adds `n`; false once the total is over the limit.
    fn add(&self, n: u64) -> bool {
        self.used.fetch_add(n, Ordering::Relaxed).saturating_add(n) <= self.limit
    }
}

/// A document's bytes are added to the tier's total at least this often, so one huge
/// document is stopped before it is whole.
const FLUSH_BYTES: u64 = 1 << 20;

/// What a node takes in memory besides its text: a `serde_json::Value` (32 bytes) and its
/// share of the map or vector holding it (measured: 3,000 documents of 16,000 alias-expanded
/// nodes were stopped at document 333 of 256 MiB, the process then at 356 MB RSS).
const NODE_BYTES: usize = 56;

/// Parses every non-empty document of `text`; `file` only names the file in errors.
pub(crate) fn parse_documents(
    text: &str,
    file: &str,
    limits: &YamlLimits,
) -> Result<Vec<Document>, RenderError> {
    parse_counted(text, file, limits, None)
}

/// [`parse_documents`], adding what each document takes to the tier's `total`.
pub(crate) fn parse_counted(
    text: &str,
    file: &str,
    limits: &YamlLimits,
    total: Option<&TierBytes>,
) -> Result<Vec<Document>, RenderError> {
    // A byte order mark is allowed at the start of a YAML stream (editors on Windows write
    // one); libyaml, given a `&str`, would take it for content.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut docs = Vec::new();
    let mut index = 0;
    for chunk in split_documents(text) {
        let Some(line) = chunk.content_line else {
            // Only comments, blank lines or markers: an empty document.
            index += 1;
            continue;
        };
        // A chunk normally holds one document; should our split miss a boundary, the
        // iterator still yields each document, each counted.
        for de in serde_yaml::Deserializer::from_str(chunk.text) {
            let budget = Budget {
                text: chunk.text,
                nodes: Cell::new(0),
                depth: Cell::new(0),
                bytes: Cell::new(0),
                limits,
                total,
                hit: Cell::new(None),
            };
            let result = ValueSeed { budget: &budget }
                .deserialize(de)
                .and_then(|v| budget.flush().map(|()| v));
            let value = match result {
                Ok(v) => v,
                Err(e) => {
                    let at = e
                        .location()
                        .map(|l| chunk.first_line + l.line() - 1)
                        .unwrap_or(line);
                    return Err(match budget.hit.get() {
                        Some(Hit::Nodes) => RenderError::DocumentTooLarge {
                            file: file.to_owned(),
                            line,
                            document: index,
                            limit: limits.max_nodes,
                        },
                        Some(Hit::Depth) => RenderError::TooDeep {
                            file: file.to_owned(),
                            line: at,
                            limit: limits.max_depth,
                        },
                        Some(Hit::TierBytes) => RenderError::TierTooLarge {
                            file: file.to_owned(),
                            line,
                            document: index,
                            limit: total.map_or(0, |t| t.limit),
                        },
                        None => yaml_error(e, file, at, line, index, limits),
                    });
                }
            };
            if !value.is_null() {
                docs.push(Document { index, line, value });
            }
            index += 1;
        }
    }
    Ok(docs)
}

/// serde_yaml's own guards, reported as ours.
fn yaml_error(
    e: serde_yaml::Error,
    file: &str,
    at: usize,
    line: usize,
    index: usize,
    limits: &YamlLimits,
) -> RenderError {
    let message = e.to_string();
    if message.contains("repetition limit exceeded") {
        return RenderError::AliasRepetition {
            file: file.to_owned(),
            line,
            document: index,
        };
    }
    if message.contains("recursion limit exceeded") {
        return RenderError::TooDeep {
            file: file.to_owned(),
            line: at,
            limit: limits.max_depth,
        };
    }
    // serde_yaml appends " at line L column C" relative to our chunk; we give the file's line.
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    };
    RenderError::Yaml {
        file: file.to_owned(),
        line: at,
        message,
    }
}

pub(crate) struct Chunk<'a> {
    pub(crate) text: &'a str,
    /// 1-based line where `text` starts in the file.
    pub(crate) first_line: usize,
    /// 1-based line of the first content, if the chunk has any.
    content_line: Option<usize>,
}

/// Splits at `---` and `...` marker lines. YAML forbids these at the start of a line inside
/// any scalar, so a line-based split finds exactly the document boundaries and lets us
/// report the line each document starts on.
pub(crate) fn split_documents(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut first_line = 1;
    let mut content_line = None;
    let mut offset = 0;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end_matches(['\n', '\r']);
        let is_start = is_marker(line, "---");
        let is_end = is_marker(line, "...");
        if (is_start || is_end) && offset > start {
            chunks.push(Chunk {
                text: &text[start..offset],
                first_line,
                content_line,
            });
            start = offset;
            first_line = line_no;
            content_line = None;
        }
        if is_end {
            // The `...` line itself belongs to no document.
            start = offset + raw.len();
            first_line = line_no + 1;
        } else if content_line.is_none() && has_content(line, is_start) {
            content_line = Some(line_no);
        }
        offset += raw.len();
    }
    if offset > start {
        chunks.push(Chunk {
            text: &text[start..],
            first_line,
            content_line,
        });
    }
    chunks
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

fn has_content(line: &str, is_start: bool) -> bool {
    let body = if is_start { &line[3..] } else { line };
    let body = body.trim_start();
    // Directives (`%YAML`) belong to the document that follows; they are not content.
    !(body.is_empty() || body.starts_with('#') || (!is_start && line.starts_with('%')))
}

#[derive(Clone, Copy)]
enum Hit {
    Nodes,
    Depth,
    TierBytes,
}

struct Budget<'a> {
    /// The text being parsed: a borrowed scalar is found in it to learn whether it was quoted.
    text: &'a str,
    nodes: Cell<usize>,
    depth: Cell<usize>,
    /// This document's memory (about) not yet added to `total`.
    bytes: Cell<u64>,
    limits: &'a YamlLimits,
    total: Option<&'a TierBytes>,
    hit: Cell<Option<Hit>>,
}

impl Budget<'_> {
    /// One node, with `text` bytes of its own (a string's, a key's).
    fn node<E: de::Error>(&self, text: usize) -> Result<(), E> {
        let n = self.nodes.get() + 1;
        self.nodes.set(n);
        if n > self.limits.max_nodes {
            self.hit.set(Some(Hit::Nodes));
            return Err(E::custom("document too large"));
        }
        let b = self.bytes.get() + (NODE_BYTES + text) as u64;
        self.bytes.set(b);
        if b >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Adds the document's bytes counted so far to the tier's total.
    fn flush<E: de::Error>(&self) -> Result<(), E> {
        let b = self.bytes.replace(0);
        match self.total {
            Some(total) if !total.add(b) => {
                self.hit.set(Some(Hit::TierBytes));
                Err(E::custom("the tier's objects are too large"))
            }
            _ => Ok(()),
        }
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        let d = self.depth.get() + 1;
        self.depth.set(d);
        if d > self.limits.max_depth {
            self.hit.set(Some(Hit::Depth));
            return Err(E::custom("nesting too deep"));
        }
        Ok(())
    }

    fn leave(&self) {
        self.depth.set(self.depth.get().saturating_sub(1));
    }
}

#[derive(Clone, Copy)]
struct ValueSeed<'b, 'a> {
    budget: &'b Budget<'a>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.budget.node(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.node(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.node(0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.node(0)?;
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} (.inf/.nan) has no JSON form")))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Value, E> {
        // YAML 1.1, which kubectl reads, takes a plain `0644` for octal 420 (file modes:
        // `defaultMode: 0644`); serde_yaml (YAML 1.2) makes it the string "0644", which the
        // API server refuses for an integer field. Quoted, it stays a string.
        if let Some(n) = yaml11_octal(v)
            && !quoted(self.budget.text, v)
        {
            return self.visit_i64(n);
        }
        self.visit_str(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.budget.node(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.budget.node(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.budget.node(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.node(0)?;
        self.budget.enter()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        self.budget.leave();
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.node(0)?;
        self.budget.enter()?;
        let mut out = Map::new();
        // The mappings `<<` merges in, in the order given (earlier ones win).
        let mut merged: Option<Vec<Map<String, Value>>> = None;
        while let Some(key) = map.next_key_seed(self)? {
            // JSON keys are strings; Kubernetes' YAML reader turns scalar keys into strings too.
            let key = match key {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => "null".to_owned(),
                _ => return Err(de::Error::custom("a mapping key must be a scalar")),
            };
            let value = map.next_value_seed(self)?;
            if key == MERGE_KEY {
                if merged.is_some() {
                    return Err(de::Error::custom("duplicate key `<<`"));
                }
                merged = Some(merge_sources(value)?);
                continue;
            }
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            out.insert(key, value);
        }
        for source in merged.into_iter().flatten() {
            for (k, v) in source {
                out.entry(k).or_insert(v);
            }
        }
        self.budget.leave();
        Ok(Value::Object(out))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "custom YAML tags (`!tag`) have no meaning in a Kubernetes manifest",
        ))
    }
}

/// `0644` as YAML 1.1 reads a plain scalar: a `0` and octal digits, optionally signed.
fn yaml11_octal(v: &str) -> Option<i64> {
    let (negative, digits) = match v.as_bytes().first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let octal = digits.strip_prefix('0')?;
    if octal.is_empty() || !octal.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let n = i64::from_str_radix(octal, 8).ok()?;
    Some(if negative { -n } else { n })
}

/// Whether `scalar`, a slice of `text` handed out by the parser, stands between quotes there.
/// serde_yaml gives a plain and a quoted scalar to the same visitor method; the text around
/// it tells them apart (a plain scalar never starts or ends at a quote).
fn quoted(text: &str, scalar: &str) -> bool {
    let start = (scalar.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let end = start.wrapping_add(scalar.len());
    if start == 0 || end >= text.len() {
        return false;
    }
    let bytes = text.as_bytes();
    matches!(
        (bytes[start - 1], bytes[end]),
        (b'\'', b'\'') | (b'"', b'"')
    )
}

/// The YAML 1.1 merge key. A quoted `"<<"` is merged too (the visitor cannot tell them
/// apart); no Kubernetes field or label key can be named `<<`.
const MERGE_KEY: &str = "<<";

/// What a `<<` key merges in: one mapping or a list of mappings (aliases, usually).
fn merge_sources<E: de::Error>(value: Value) -> Result<Vec<Map<String, Value>>, E> {
    let wrong = || E::custom("the merge key `<<` takes a mapping or a list of mappings");
    match value {
        Value::Object(m) => Ok(vec![m]),
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::Object(m) => Ok(m),
                _ => Err(wrong()),
            })
            .collect(),
        _ => Err(wrong()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: YamlLimits = YamlLimits {
        max_depth: 64,
        max_nodes: 10_000,
    };

    fn parse(text: &str) -> Result<Vec<Document>, RenderError> {
        parse_documents(text, "f.yaml", &LIMITS)
    }

    #[test]
    fn documents_carry_their_index_and_first_content_line() {
        let docs = parse("# head\na: 1\n---\n\n# c\nb: 2\n--- {c: 3}\n---\n...\n").unwrap();
        let got: Vec<_> = docs.iter().map(|d| (d.index, d.line)).collect();
        assert_eq!(got, [(0, 2), (1, 6), (2, 7)]);
        assert_eq!(docs[2].value, serde_json::json!({"c": 3}));
    }

    #[test]
    fn a_triple_dash_inside_a_longer_line_is_not_a_boundary() {
        let docs = parse("a: |\n  ---x\n  y\nb: ---\n").unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].value["a"], "---x\ny\n");
    }

    #[test]
    fn syntax_errors_report_the_line_in_the_file_not_in_the_document() {
        let e = parse("a: 1\n---\nb: 2\nc: [\n").unwrap_err().to_string();
        assert!(e.starts_with("f.yaml line "), "{e}");
        assert!(!e.contains("line 1:"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let e = parse("a: 1\na: 2\n").unwrap_err().to_string();
        assert!(e.contains("duplicate key `a`"), "{e}");
    }

    #[test]
    fn merge_keys_are_expanded_own_keys_first_then_in_order() {
        let docs = parse(
            "base: &base {a: 1, b: 1, c: 1}\nmore: &more {c: 2, d: 2}\n\
             one:\n  <<: *base\n  b: 3\n\
             many:\n  b: 4\n  <<: [*more, *base]\n",
        )
        .unwrap();
        let v = &docs[0].value;
        assert_eq!(v["one"], serde_json::json!({"a": 1, "b": 3, "c": 1}));
        assert_eq!(
            v["many"],
            serde_json::json!({"a": 1, "b": 4, "c": 2, "d": 2})
        );
    }

    #[test]
    fn merge_keys_in_a_real_manifest_shape() {
        // The shape install manifests use: shared container settings merged into each one.
        let text = [
            "apiVersion: apps/v1",
            "kind: Deployment",
            "metadata: {name: d}",
            "x-common: &common",
            "  imagePullPolicy: IfNotPresent",
            "  resources: {limits: {cpu: 100m}}",
            "spec:",
            "  template:",
            "    spec:",
            "      containers:",
            "      - <<: *common",
            "        name: a",
            "        image: a:1",
            "      - <<: *common",
            "        name: b",
            "        image: b:1",
            "        imagePullPolicy: Always",
        ]
        .join("\n");
        let docs = parse(&text).unwrap();
        let c = &docs[0].value["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c[0]["resources"]["limits"]["cpu"], "100m");
        assert_eq!(c[1]["imagePullPolicy"], "Always");
        assert!(c[0].get("<<").is_none());
    }

    #[test]
    fn merge_keys_take_only_mappings_and_appear_once() {
        let e = parse("a: {<<: 3}\n").unwrap_err().to_string();
        assert!(
            e.contains("the merge key `<<` takes a mapping or a list of mappings"),
            "{e}"
        );
        let e = parse("x: &x {a: 1}\na: {<<: *x, <<: *x}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate key `<<`"), "{e}");
        // Own keys may still not repeat.
        let e = parse("x: &x {a: 1}\na: {<<: *x, b: 1, b: 2}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate key `b`"), "{e}");
    }

    #[test]
    fn a_merge_key_alias_bomb_is_still_bounded_by_nodes() {
        let mut bomb = String::from("l0: &l0 {a: lol, b: lol}\n");
        for i in 1..=12 {
            let p = i - 1;
            bomb.push_str(&format!(
                "l{i}: &l{i} {{x: *l{p}, y: *l{p}, z: *l{p}, <<: *l{p}}}\n"
            ));
        }
        let e = parse(&bomb).unwrap_err().to_string();
        assert!(e.contains("expands to more than 10000 nodes"), "{e}");
    }

    #[test]
    fn serde_yamls_alias_guard_is_reported_as_what_it_is() {
        // Few nodes per alias but many aliases: serde_yaml stops replaying first.
        let mut bomb = String::from("l0: &l0 [a]\n");
        for i in 1..=12 {
            let p = i - 1;
            bomb.push_str(&format!("l{i}: &l{i} [*l{p}, *l{p}]\n"));
        }
        let e = parse_documents(
            &bomb,
            "f.yaml",
            &YamlLimits {
                max_depth: 64,
                max_nodes: 1 << 30,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("document 0 replays its aliases more than 100 times its own length"),
            "{e}"
        );
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_not_content() {
        let docs = parse("\u{feff}a: 1\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(
            (docs[0].line, &docs[0].value),
            (1, &serde_json::json!({"a": 1}))
        );
        let docs = parse("\u{feff}---\na: 1\n").unwrap();
        assert_eq!(
            (docs[0].line, &docs[0].value),
            (2, &serde_json::json!({"a": 1}))
        );
    }

    #[test]
    fn what_real_files_carry_parses() {
        // Only comments, bare markers, null documents: no objects, indexes still counted.
        assert!(parse("# only\n# comments\n").unwrap().is_empty());
        assert!(parse("---\n---\n--- # c\n...\n").unwrap().is_empty());
        let docs = parse("---\nnull\n---\n~\n---\na: 1\n").unwrap();
        assert_eq!((docs.len(), docs[0].index, docs[0].line), (1, 2, 6));
        // CRLF line ends, tabs inside block scalars, a very long line.
        let docs = parse("a: 1\r\nb: |\r\n  x\ty\r\n  \tz\r\n---\r\nc: 2\r\n").unwrap();
        assert_eq!(
            docs[0].value,
            serde_json::json!({"a": 1, "b": "x\ty\n\tz\n"})
        );
        assert_eq!((docs[1].index, docs[1].line), (1, 6));
        let long = "x".repeat(4 << 20);
        let docs = parse(&format!("a: {long}\n")).unwrap();
        assert_eq!(docs[0].value["a"].as_str().map(str::len), Some(4 << 20));
    }

    #[test]
    fn the_tier_total_stops_many_documents_each_within_the_node_limit() {
        // Each document expands to ~4,400 nodes (under the node limit) from a few hundred
        // bytes; together they pass the tier's budget and the parse stops there.
        let mut doc = String::from("---\nl0: &l0 [lol, lol, lol]\n");
        for i in 1..=6 {
            let p = i - 1;
            doc.push_str(&format!("l{i}: &l{i} [*l{p}, *l{p}, *l{p}]\n"));
        }
        let text = doc.repeat(200);
        let total = TierBytes::new(10 << 20);
        let e = parse_counted(&text, "f.yaml", &LIMITS, Some(&total))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("takes the tier's parsed objects past 10485760 bytes of memory (rule: max_tier_bytes"),
            "{e}"
        );
        // Without the budget (tier.yaml, kustomize's inputs) the same text parses.
        assert_eq!(parse(&text).unwrap().len(), 200);
    }

    #[test]
    fn plain_octal_numbers_read_as_kubectl_reads_them_and_quoted_ones_stay_text() {
        let docs = parse(
            "defaultMode: 0644\nmode: 0755\nneg: -010\nquoted: '0644'\ndq: \"0755\"\n\
             zero: 0\ndec: 420\nnot: 0844\nflow: [0600, '0600']\nkey: {data: {x: '0777'}}\n",
        )
        .unwrap();
        assert_eq!(
            docs[0].value,
            serde_json::json!({"defaultMode": 420, "mode": 493, "neg": -8, "quoted": "0644",
                "dq": "0755", "zero": 0, "dec": 420, "not": "0844", "flow": [384, "0600"],
                "key": {"data": {"x": "0777"}}})
        );
    }

    #[test]
    fn scalar_keys_become_strings() {
        let docs = parse("1: a\ntrue: b\n").unwrap();
        assert_eq!(docs[0].value, serde_json::json!({"1": "a", "true": "b"}));
    }
}
