//! `tiers/<tier>/tier.yaml`: the tier's namespace, labels, vars (and where they are
//! substituted) and patches.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::RenderError;
use super::vars::{is_var_name, substitute};
use super::yaml::{YamlLimits, parse_documents};

/// A tier's overlay, as written in tier.yaml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Overlay {
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Read in a first pass (see [`load`]); kept here so deny_unknown_fields accepts the key.
    #[serde(default, rename = "vars")]
    _vars: Value,
    #[serde(default)]
    pub patches: Vec<Patch>,
    /// Where `${VAR}` is substituted: paths relative to the repo root (`base`,
    /// `tiers/dev/app.yaml`), each a directory (everything below it) or a file. Opt-in: a
    /// manifest outside them is read as written, `${...}` and all. Required with `vars`, so
    /// a tier.yaml written before substitution was opt-in fails with the fix rather than
    /// deploying `${TAG}` as text.
    pub substitute: Option<Vec<String>>,
}

impl Overlay {
    /// Whether `${VAR}` is substituted in the input at `rel` (relative to the repo root).
    pub fn substitutes(&self, rel: &std::path::Path) -> bool {
        self.substitute
            .iter()
            .flatten()
            .any(|p| rel.starts_with(p.as_str()))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Patch {
    pub target: Target,
    /// RFC 7386 merge patch.
    pub merge: Option<Value>,
    /// RFC 6902 JSON patch.
    pub json: Option<json_patch::Patch>,
    /// 1-based line of this patch in tier.yaml (set by [`load`]), for messages.
    #[serde(skip)]
    pub line: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Target {
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = crate::object::ObjectName {
            kind: &self.kind,
            namespace: self.namespace.as_deref(),
            name: &self.name,
        };
        write!(f, "{name}")
    }
}

/// Parses tier.yaml text: vars first (they are substituted into the rest of the file too, so a
/// patch can say `worker:${TAG}`), then the whole overlay.
pub(crate) fn load(
    text: &str,
    file: &str,
    limits: &YamlLimits,
) -> Result<(Overlay, BTreeMap<String, String>), RenderError> {
    let invalid = |field: &str, message: String| RenderError::InvalidOverlay {
        file: file.to_owned(),
        field: field.to_owned(),
        message,
    };
    let first = single_document(text, file, limits)?;
    let mut vars = BTreeMap::new();
    match first.get("vars") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                let field = format!("vars.{name}");
                if !is_var_name(name) {
                    return Err(invalid(
                        &field,
                        "a var name is letters, digits and '_', not starting with a digit".into(),
                    ));
                }
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(invalid(
                            &field,
                            "expected a string, number or boolean".into(),
                        ));
                    }
                };
                // Vars are not expanded recursively; a reference in a value would be read
                // one way here and another way in the substituted text.
                if value.contains("${") {
                    return Err(invalid(&field, "a var value may not contain ${...}".into()));
                }
                vars.insert(name.clone(), value);
            }
        }
        Some(_) => return Err(invalid("vars", "expected a mapping of NAME: value".into())),
    }
    let lines = patch_lines(text);
    let text = substitute(text, &vars, file, file)?;
    let value = single_document(&text, file, limits)?;
    let mut overlay: Overlay = serde_path_to_error::deserialize(value).map_err(|e| {
        let field = match e.path().to_string() {
            p if p == "." => "(top level)".to_owned(),
            p => p,
        };
        invalid(&field, e.into_inner().to_string())
    })?;
    if let Some(ns) = &overlay.namespace
        && !is_dns_label(ns)
    {
        return Err(invalid(
            "namespace",
            format!("expected a DNS label (lowercase letters, digits and '-'); found {ns:?}"),
        ));
    }
    // Lines are read from the file as written (a var's value could add lines); should the
    // scan not find one item per patch, every patch is placed at the `patches:` key.
    let key_line = lines.first().copied().unwrap_or(1);
    let exact = lines.len() == overlay.patches.len() + 1;
    for (i, p) in overlay.patches.iter_mut().enumerate() {
        p.line = if exact { lines[i + 1] } else { key_line };
    }
    if let Some(paths) = &mut overlay.substitute {
        for (i, p) in paths.iter_mut().enumerate() {
            let trimmed = p.trim_end_matches('/');
            let normal = !trimmed.is_empty()
                && std::path::Path::new(trimmed)
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !normal {
                return Err(invalid(
                    &format!("substitute[{i}]"),
                    format!(
                        "expected a path relative to the repo root without `.` or `..` (`base`, `tiers/<tier>/app.yaml`); found {p:?}"
                    ),
                ));
            }
            *p = trimmed.to_owned();
        }
    } else if !vars.is_empty() {
        let dir = file.rsplit_once('/').map_or("tiers/<tier>", |(d, _)| d);
        return Err(invalid(
            "substitute",
            format!(
                "vars are declared but no `substitute:` says where ${{VAR}} is replaced; substitution is opt-in: add `substitute: [base, {dir}]` to replace it in every manifest as before, list only the directories or files that use vars, or `substitute: []` to use them in tier.yaml alone"
            ),
        ));
    }
    for (i, p) in overlay.patches.iter().enumerate() {
        if p.merge.is_some() == p.json.is_some() {
            return Err(invalid(
                &format!("patches[{i}]"),
                "expected exactly one of `merge` (RFC 7386) or `json` (RFC 6902)".into(),
            ));
        }
    }
    Ok((overlay, vars))
}

/// The line of the top-level `patches:` key, then the line of each item of its block sequence
/// (1-based); empty when there is no such key. A plain scan of the text: tier.yaml is one small
/// mapping, and the parsed values carry no positions.
fn patch_lines(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut item_indent: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let content = line.trim_start();
        let indent = line.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if out.is_empty() {
            let is_key = indent == 0
                && content
                    .strip_prefix("patches")
                    .is_some_and(|r| r.trim_start().starts_with(':'));
            if is_key {
                out.push(n + 1);
            }
            continue;
        }
        let dash = content == "-" || content.starts_with("- ");
        match item_indent {
            None if dash => item_indent = Some(indent),
            None => break,
            Some(i) if dash && indent == i => {}
            Some(i) if indent > i => continue,
            Some(_) => break,
        }
        out.push(n + 1);
    }
    out
}

fn single_document(text: &str, file: &str, limits: &YamlLimits) -> Result<Value, RenderError> {
    let mut docs = parse_documents(text, file, limits)?;
    match docs.len() {
        0 => Ok(Value::Object(Default::default())),
        1 => Ok(docs.remove(0).value),
        _ => Err(RenderError::InvalidOverlay {
            file: file.to_owned(),
            field: "(top level)".into(),
            message: format!("expected one YAML document, found {}", docs.len()),
        }),
    }
}

pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::patch_lines;

    #[test]
    fn patch_lines_finds_each_item_of_the_block_sequence() {
        let text = "# tier\nnamespace: a\npatches:\n  # first\n  - target: {kind: A, name: a}\n    merge:\n      data: {x: '- y'}\n\n  - target: {kind: B, name: b}\n    json:\n    - {op: remove, path: /x}\nlabels: {a: b}\n";
        assert_eq!(patch_lines(text), [3, 5, 9]);
        // Items at the key's own indentation are a sequence too.
        assert_eq!(
            patch_lines("patches:\n- target: {}\n- target: {}\n"),
            [1, 2, 3]
        );
        // A flow sequence has no item lines: only the key's.
        assert_eq!(patch_lines("patches: [{target: {}}]\n"), [1]);
        assert_eq!(patch_lines("namespace: a\n"), Vec::<usize>::new());
    }
}
