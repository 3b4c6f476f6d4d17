//! Multi-document YAML to JSON values, with limits a hostile file cannot get around.
//!
//! The value is built by our own visitor rather than through `serde_yaml::Value`: serde_yaml
//! replays an alias's events each time it is used, so counting nodes in the visitor bounds
//! what an alias bomb can expand to (and the memory it takes) exactly, and counting depth
//! there stops a deeply nested document at our limit, before serde_yaml's own (128).

use std::cell::Cell;
use std::fmt;

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

/// Parses every non-empty document of `text`; `file` only names the file in errors.
pub(crate) fn parse_documents(
    text: &str,
    file: &str,
    limits: &YamlLimits,
) -> Result<Vec<Document>, RenderError> {
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
                nodes: Cell::new(0),
                depth: Cell::new(0),
                limits,
                hit: Cell::new(None),
            };
            let result = ValueSeed { budget: &budget }.deserialize(de);
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
        return RenderError::DocumentTooLarge {
            file: file.to_owned(),
            line,
            document: index,
            limit: limits.max_nodes,
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
}

struct Budget<'a> {
    nodes: Cell<usize>,
    depth: Cell<usize>,
    limits: &'a YamlLimits,
    hit: Cell<Option<Hit>>,
}

impl Budget<'_> {
    fn node<E: de::Error>(&self) -> Result<(), E> {
        let n = self.nodes.get() + 1;
        self.nodes.set(n);
        if n > self.limits.max_nodes {
            self.hit.set(Some(Hit::Nodes));
            return Err(E::custom("document too large"));
        }
        Ok(())
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
        self.budget.node()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.node()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.node()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.node()?;
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} (.inf/.nan) has no JSON form")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.budget.node()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.budget.node()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.budget.node()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.node()?;
        self.budget.enter()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        self.budget.leave();
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.node()?;
        self.budget.enter()?;
        let mut out = Map::new();
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
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            out.insert(key, value);
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
    fn scalar_keys_become_strings() {
        let docs = parse("1: a\ntrue: b\n").unwrap();
        assert_eq!(docs[0].value, serde_json::json!({"1": "a", "true": "b"}));
    }
}
