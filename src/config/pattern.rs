//! Field path patterns (`spec.replicas`, `**.containers.image`), as written in the config's
//! `severity[].path` and in the built-in severity rules of `crate::classify`.
//!
//! A pattern matches a [`FieldPath`](crate::diff::FieldPath)'s field names (list items
//! dropped), so `**.containers.image` matches `spec.template.spec.containers[name=api].image`.

use std::fmt;
use std::str::FromStr;

/// Why a path pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("expected a dotted field path such as `spec.replicas` or `**.containers.image`")]
    Empty,
    #[error("field {position} of {pattern:?} is empty; fields are separated by single dots")]
    EmptyField { pattern: String, position: usize },
    #[error(
        "field {field:?} of {pattern:?}: `*` (one field) and `**` (any number of fields) stand for whole fields only"
    )]
    PartialWildcard { pattern: String, field: String },
    #[error(
        "field {field:?} of {pattern:?}: list items are matched through their list's name (`containers.image`), without brackets"
    )]
    Brackets { pattern: String, field: String },
    #[error("field {field:?} of {pattern:?} contains whitespace")]
    Whitespace { pattern: String, field: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Field(String),
    /// `*`: exactly one field.
    One,
    /// `**`: any number of fields, none included.
    Any,
}

/// A field path pattern: dot-separated field names, `*` for one field, `**` for any number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    raw: String,
    segments: Vec<Segment>,
}

impl PathPattern {
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether the whole of `fields` matches the whole pattern.
    pub fn matches(&self, fields: &[&str]) -> bool {
        // A table over (pattern suffix, path suffix) keeps the worst case at
        // pattern length x path length, whatever number of `**` an operator writes.
        let (p, n) = (self.segments.len(), fields.len());
        let width = n + 1;
        let mut table = vec![false; (p + 1) * width];
        table[p * width + n] = true;
        for i in (0..p).rev() {
            for j in (0..=n).rev() {
                let next = |di: usize, dj: usize| table[(i + di) * width + j + dj];
                table[i * width + j] = match &self.segments[i] {
                    Segment::Any => next(1, 0) || (j < n && table[i * width + j + 1]),
                    Segment::One => j < n && next(1, 1),
                    Segment::Field(f) => j < n && fields[j] == f && next(1, 1),
                };
            }
        }
        table[0]
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for PathPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(PatternError::Empty);
        }
        let mut segments = Vec::new();
        for (i, field) in s.split('.').enumerate() {
            let err_field = || (s.to_owned(), field.to_owned());
            let segment = match field {
                "" => {
                    return Err(PatternError::EmptyField {
                        pattern: s.to_owned(),
                        position: i + 1,
                    });
                }
                "*" => Segment::One,
                "**" => Segment::Any,
                f if f.contains('*') => {
                    let (pattern, field) = err_field();
                    return Err(PatternError::PartialWildcard { pattern, field });
                }
                f if f.contains(['[', ']']) => {
                    let (pattern, field) = err_field();
                    return Err(PatternError::Brackets { pattern, field });
                }
                f if f.contains(char::is_whitespace) => {
                    let (pattern, field) = err_field();
                    return Err(PatternError::Whitespace { pattern, field });
                }
                f => Segment::Field(f.to_owned()),
            };
            segments.push(segment);
        }
        Ok(PathPattern {
            raw: s.to_owned(),
            segments,
        })
    }
}

impl<'de> serde::Deserialize<'de> for PathPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|e: PatternError| {
            serde::de::Error::custom(format!("invalid path pattern: {e}"))
        })
    }
}
