//! The line of a field in the config text, for errors found after parsing (cross-field rules,
//! files the config names): the same ` line L column C` serde gives the errors it finds itself.
//!
//! The text is walked again along the field's path (`tiers[1].promoteFrom`); at the field, the
//! walk stops with an error, and serde_yaml marks that error with the position of the value it
//! was reading, as it marks every error raised while deserializing.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// ` line L column C` of the value at `field` in `text`, or empty when the path is not found
/// (a field that was left out and took its default has no line).
pub(crate) fn location(text: &str, field: &str) -> String {
    let Some(path) = steps(field) else {
        return String::new();
    };
    let de = serde_yaml::Deserializer::from_str(text);
    match (Seek { path: &path }).deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => e
            .location()
            .map(|l| format!(" line {} column {}", l.line(), l.column()))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// `tiers[1].windows[0].duration` as steps; `None` for anything else (`(top level)`).
fn steps(field: &str) -> Option<Vec<Step>> {
    let mut out = Vec::new();
    for part in field.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        out.push(Step::Key(key.to_owned()));
        while let Some(r) = rest.strip_prefix('[') {
            let (n, after) = r.split_once(']')?;
            out.push(Step::Index(n.parse().ok()?));
            rest = after;
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

const FOUND: &str = "gitopsd: field found";

/// Walks to `path`; at its end, fails with [`FOUND`] so the parser marks the position.
struct Seek<'p> {
    path: &'p [Step],
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            let matches =
                matches!((first, &key), (Step::Key(k), serde_yaml::Value::String(s)) if k == s);
            if matches {
                return map.next_value_seed(Seek { path: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        let mut i = 0;
        loop {
            if matches!(first, Step::Index(n) if *n == i) {
                return seq.next_element_seed(Seek { path: rest }).map(|_| ());
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    // A scalar: found when the path ends here; a path that goes on has nothing below it.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged value (`!tag x`): its position is the tag's.
        if self.path.is_empty() {
            return Err(de::Error::custom(FOUND));
        }
        let (IgnoredAny, v) = data.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant::<IgnoredAny>(v).map(|_| ())
    }
}

impl Seek<'_> {
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "source: {url: /srv/config, interval: 0s}\ntiers:\n  - name: a\n    ref: main\n  - {name: b, ref: x, windows: [{schedule: '* * * * *'}, {duration: 1s}]}\n";

    #[test]
    fn a_field_is_found_at_its_value() {
        assert_eq!(location(TEXT, "source.interval"), " line 1 column 38");
        assert_eq!(location(TEXT, "tiers[0].name"), " line 3 column 11");
        assert_eq!(location(TEXT, "tiers[1].ref"), " line 5 column 20");
        assert_eq!(
            location(TEXT, "tiers[1].windows[1].duration"),
            " line 5 column 69"
        );
        assert_eq!(location(TEXT, "tiers[1]"), " line 5 column 5");
    }

    #[test]
    fn a_missing_field_or_an_odd_path_has_no_location() {
        assert_eq!(location(TEXT, "tiers[0].promoteFrom"), "");
        assert_eq!(location(TEXT, "tiers[7].name"), "");
        assert_eq!(location(TEXT, "(top level)"), "");
    }
}
