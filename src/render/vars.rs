//! `${VAR}` substitution on file text, before YAML parsing, as Flux's post-build substitution
//! does: a value becomes whatever YAML it spells (`replicas: ${REPLICAS}` is a number), and
//! an error can name the line. `$${X}` is the escape for a literal `${X}`. Opt-in, as Flux's:
//! only in the paths tier.yaml's `substitute` lists, and not in an object annotated
//! `gitopsd.io/substitute: disabled`; anywhere else `${...}` is plain text.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::RenderError;
use super::yaml::{YamlLimits, parse_documents, split_documents};

/// The annotation that keeps one object of an opted-in file as written (as Flux's
/// `kustomize.toolkit.fluxcd.io/substitute: disabled`).
pub const SUBSTITUTE_ANNOTATION: &str = "gitopsd.io/substitute";

/// [`substitute`] per YAML document of a manifest file (or kustomize output): a document whose
/// object carries `gitopsd.io/substitute: disabled` is left as written. Only documents that
/// hold both `${` and the annotation's key are parsed first, to read it; one that does not
/// parse before substitution (a reference in flow syntax) is substituted.
pub(crate) fn substitute_objects<'t>(
    text: &'t str,
    vars: &BTreeMap<String, String>,
    file: &str,
    tier_file: &str,
    yaml: &YamlLimits,
) -> Result<Cow<'t, str>, RenderError> {
    if !text.contains("${") {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    // Chunks are slices of `text`; what lies between them (a `...` line) is copied as it is,
    // so lines keep their numbers.
    let mut copied = 0;
    for chunk in split_documents(text) {
        let start = chunk.text.as_ptr() as usize - text.as_ptr() as usize;
        out.push_str(&text[copied..start]);
        copied = start + chunk.text.len();
        // The key's text first: the rest of the documents are parsed once, as before.
        let disabled = chunk.text.contains("${")
            && chunk.text.contains(SUBSTITUTE_ANNOTATION)
            && parse_documents(chunk.text, file, yaml).is_ok_and(|docs| {
                docs.iter().any(|d| {
                    d.value
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(SUBSTITUTE_ANNOTATION))
                        .and_then(|v| v.as_str())
                        == Some("disabled")
                })
            });
        if disabled {
            out.push_str(chunk.text);
        } else {
            out.push_str(&substitute_at(
                chunk.text,
                chunk.first_line,
                vars,
                file,
                tier_file,
            )?);
        }
    }
    out.push_str(&text[copied..]);
    Ok(Cow::Owned(out))
}

pub(crate) fn substitute<'t>(
    text: &'t str,
    vars: &BTreeMap<String, String>,
    file: &str,
    tier_file: &str,
) -> Result<Cow<'t, str>, RenderError> {
    substitute_at(text, 1, vars, file, tier_file)
}

/// `text` starts at line `first_line` of `file`.
fn substitute_at<'t>(
    text: &'t str,
    first_line: usize,
    vars: &BTreeMap<String, String>,
    file: &str,
    tier_file: &str,
) -> Result<Cow<'t, str>, RenderError> {
    // Most manifests hold no `${`; they cost one scan and no copy.
    if !text.contains("${") {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let escaped = i > 0 && rest.as_bytes()[i - 1] == b'$';
        let line = || first_line + text[..text.len() - rest.len() + i].matches('\n').count();
        if escaped {
            // `$${X}`: drop one `$`, keep `${` as text.
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find(['}', '\n'])
            .filter(|&e| after.as_bytes()[e] == b'}');
        let name = end.map(|e| &after[..e]);
        match name {
            Some(name) if is_var_name(name) => match vars.get(name) {
                Some(value) => {
                    out.push_str(value);
                    rest = &after[name.len() + 1..];
                }
                None => {
                    return Err(RenderError::UndefinedVar {
                        file: file.to_owned(),
                        line: line(),
                        name: name.to_owned(),
                        tier_file: tier_file.to_owned(),
                    });
                }
            },
            _ => {
                let shown: String = rest[i..]
                    .chars()
                    .take_while(|&c| c != '\n')
                    .take(40)
                    .collect();
                return Err(RenderError::MalformedVar {
                    file: file.to_owned(),
                    line: line(),
                    text: shown,
                });
            }
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

pub(crate) fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("TAG", "1.4.2"), ("REPLICAS", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn sub(text: &str) -> Result<String, String> {
        substitute(text, &vars(), "base/a.yaml", "tiers/t/tier.yaml")
            .map(|c| c.into_owned())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defined_vars_are_replaced_everywhere_on_a_line() {
        assert_eq!(
            sub("image: api:${TAG} # ${REPLICAS}x\n").unwrap(),
            "image: api:1.4.2 # 3x\n"
        );
    }

    #[test]
    fn a_double_dollar_escapes_to_a_literal_reference() {
        assert_eq!(sub("echo $${HOME} ${TAG}").unwrap(), "echo ${HOME} 1.4.2");
    }

    #[test]
    fn an_undefined_var_names_file_line_and_the_escape() {
        let e = sub("a: 1\nb: ${NOPE}\n").unwrap_err();
        assert_eq!(
            e,
            "base/a.yaml line 2: ${NOPE} is not defined in tiers/t/tier.yaml vars (rule: every ${VAR} must be defined; write $${NOPE} for a literal ${NOPE})"
        );
    }

    #[test]
    fn a_malformed_reference_is_an_error_with_its_line() {
        let e = sub("a\nb\nc: ${not-a-name}\n").unwrap_err();
        assert!(
            e.starts_with("base/a.yaml line 3: malformed variable reference \"${not-a-name}\""),
            "{e}"
        );
        let e = sub("c: ${UNCLOSED\nd: }\n").unwrap_err();
        assert!(e.starts_with("base/a.yaml line 1: malformed"), "{e}");
    }

    #[test]
    fn text_without_references_is_not_copied() {
        assert!(matches!(
            substitute("a: $HOME", &vars(), "f", "t").unwrap(),
            Cow::Borrowed(_)
        ));
    }
}
