//! Reading the API server's failure Status: which field managers a conflicting apply ran into,
//! and which fields were immutable; and masking what a failure of a Secret echoes of its values.

use kube::core::Status;
use serde_json::Value;

use super::Conflict;

/// The conflicts of a 409 from server-side apply: from the causes (`FieldManagerConflict`,
/// message `conflict with "manager"`, field `.spec.replicas`), else from the message.
pub fn conflicts(status: &Status) -> Vec<Conflict> {
    let from_causes: Vec<Conflict> = status
        .details
        .iter()
        .flat_map(|d| &d.causes)
        .filter(|c| c.reason == "FieldManagerConflict")
        .filter_map(|c| {
            Some(Conflict {
                manager: quoted(&c.message)?.to_owned(),
                field: c.field.clone(),
            })
        })
        .collect();
    if !from_causes.is_empty() {
        return from_causes;
    }
    conflicts_in_message(&status.message)
}

/// `Apply failed with 1 conflict: conflict with "m" using apps/v1: .spec.replicas`, or with
/// several: `conflicts with "m" using v1:\n- .data.a\n- .data.b` per manager.
fn conflicts_in_message(message: &str) -> Vec<Conflict> {
    let mut out = Vec::new();
    let mut manager: Option<String> = None;
    for line in message.lines() {
        let line = line.trim();
        if let Some(field) = line.strip_prefix("- ") {
            if let Some(m) = &manager {
                out.push(Conflict {
                    manager: m.clone(),
                    field: field.trim().to_owned(),
                });
            }
            continue;
        }
        let Some(at) = line.find("with \"") else {
            continue;
        };
        let rest = &line[at + "with ".len()..];
        let Some(m) = quoted(rest) else { continue };
        manager = Some(m.to_owned());
        // The single-conflict form names the field on the same line, after the last colon.
        let after = &rest[m.len() + 2..];
        if let Some((_, field)) = after.rsplit_once(": ") {
            let field = field.trim();
            if field.starts_with('.') {
                out.push(Conflict {
                    manager: m.to_owned(),
                    field: field.to_owned(),
                });
            }
        }
    }
    out
}

/// The text between the first pair of double quotes.
fn quoted(s: &str) -> Option<&str> {
    let start = s.find('"')? + 1;
    let len = s[start..].find('"')?;
    Some(&s[start..start + len])
}

/// What a 422's message or cause says when an immutable field would change, lower-cased:
/// built-in kinds say "field is immutable"; CRDs make a field immutable with a CEL transition
/// rule (`x-kubernetes-validations: [{rule: "self == oldSelf", message: ...}]`), whose failure
/// carries the rule's message ("Value is immutable", "immutable field", "<name> is immutable":
/// the wordings the Kubernetes docs and common CRDs use) or, without one, the rule itself
/// ("failed rule: self == oldSelf").
const IMMUTABLE: [&str; 3] = [
    "is immutable",
    "immutable field",
    "failed rule: self == oldself",
];

/// Where `message` says a field is immutable: `(start, end)` byte ranges of each phrase, in
/// order. Lower-casing ASCII keeps byte offsets, so the ranges index `message` itself.
fn immutable_phrases(message: &str) -> Vec<(usize, usize)> {
    let lower = message.to_ascii_lowercase();
    let mut found: Vec<(usize, usize)> = IMMUTABLE
        .iter()
        .flat_map(|p| lower.match_indices(p).map(|(i, m)| (i, i + m.len())))
        .collect();
    found.sort_unstable();
    found
}

fn says_immutable(message: &str) -> bool {
    !immutable_phrases(message).is_empty()
}

/// Whether a failure is a 422 Invalid because an immutable field would change.
pub fn is_immutable(status: &Status) -> bool {
    status.code == 422
        && (says_immutable(&status.message)
            || status
                .details
                .iter()
                .flat_map(|d| &d.causes)
                .any(|c| says_immutable(&c.message)))
}

/// The immutable fields a 422 names (`spec.selector`), from its causes, else its message.
pub fn immutable_fields(status: &Status) -> Vec<String> {
    let mut fields: Vec<String> = status
        .details
        .iter()
        .flat_map(|d| &d.causes)
        .filter(|c| says_immutable(&c.message) && !c.field.is_empty())
        .map(|c| c.field.clone())
        .collect();
    if fields.is_empty() {
        // `Job.batch "x" is invalid: spec.template: Invalid value: ...: field is immutable`:
        // the field is the word before the last ": Invalid value: " ahead of each phrase.
        let message = status.message.as_str();
        let mut from = 0;
        for (start, end) in immutable_phrases(message) {
            if start < from {
                continue;
            }
            let segment = &message[from..start];
            from = end;
            let Some(at) = segment.rfind(": Invalid value: ") else {
                continue;
            };
            let before = &segment[..at];
            let start = before.rfind([' ', '[']).map_or(0, |i| i + 1);
            let field = before[start..].trim();
            if !field.is_empty() {
                fields.push(field.to_owned());
            }
        }
    }
    fields.dedup();
    fields
}

/// What replaces a Secret value in an error message.
const MASKED: &str = "<masked>";

/// Shorter values are not searched for by content (a one-letter value would mask every
/// occurrence of that letter); the path rule below still masks them where the server names
/// the field.
const MIN_KNOWN_VALUE: usize = 3;

/// `message` about a Secret with every value masked, so that an API error (apply, dry-run,
/// delete) cannot carry a Secret's value into the status API, the dashboard, the audit log or
/// the log. Two rules: any value of `manifest`'s `data` / `stringData` (and the decoded form
/// of `data`) is replaced wherever it appears, and whatever follows a field path under
/// `data` / `stringData` (`.stringData.password: expected string, got 12345`,
/// `data[password]: Invalid value: "..."`) is masked to the end of that clause. Keys stay:
/// they are names, not secrets, and say what to fix.
pub fn mask_secret_message(message: &str, manifest: Option<&Value>) -> String {
    let mut known: Vec<String> = Vec::new();
    if let Some(m) = manifest {
        for field in ["data", "stringData"] {
            let Some(map) = m.get(field).and_then(Value::as_object) else {
                continue;
            };
            for v in map.values() {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if field == "data"
                    && let Some(decoded) = decode_base64(&text)
                {
                    known.push(decoded);
                }
                known.push(text);
            }
        }
    }
    // Longest first, so a value that contains another is masked whole.
    known.sort_by_key(|k| std::cmp::Reverse(k.len()));
    let mut out = message.to_owned();
    for k in known
        .iter()
        .filter(|k| k.chars().count() >= MIN_KNOWN_VALUE)
    {
        out = out.replace(k.as_str(), MASKED);
    }
    mask_after_value_paths(&out)
}

fn decode_base64(text: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?;
    String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
}

/// Masks what follows `data.KEY: ` / `stringData[KEY]: ` up to the end of the clause.
fn mask_after_value_paths(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(path_end) = next_value_path(rest) {
        out.push_str(&rest[..path_end]);
        let after = &rest[path_end..];
        // The clause ends at a line end or where the server starts the next field's error
        // (`, data[b]: ...`, `; ...`); without one, at the end of the message.
        let end = clause_end(after);
        let clause = &after[..end];
        // What kind of problem it is, without the value: `expected string`, `Invalid value`.
        let kept = [
            "expected ",
            "Invalid value",
            "Required value",
            "Unsupported value",
        ]
        .iter()
        .find_map(|p| {
            clause.strip_prefix(p).map(|tail| {
                let word_end = tail.find([',', ':']).unwrap_or(tail.len());
                &clause[..p.len() + word_end]
            })
        });
        match kept {
            Some(k) => {
                out.push_str(k);
                out.push_str(": ");
                out.push_str(MASKED);
            }
            None => out.push_str(MASKED),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Where the next `data`/`stringData` field path followed by `: ` ends (just after the `: `).
fn next_value_path(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = s[from..].find("ata").map(|i| i + from) {
        from = at + 3;
        // `data` or `stringData`, as a word: preceded by nothing, `.`, a space, `[` or quote.
        let start = if at >= 1 && &s[at - 1..at] == "d" {
            at - 1
        } else if at >= 7 && &s[at - 7..at] == "stringD" {
            at - 7
        } else {
            continue;
        };
        if start > 0 && !s[..start].ends_with(['.', ' ', '[', '"', '(', '\n']) {
            continue;
        }
        let tail = &s[at + 3..];
        if !tail.starts_with(['.', '[']) {
            continue;
        }
        // The key runs to the `: ` that ends the path (keys hold no spaces).
        let Some(key_len) = tail.find(|c: char| c.is_whitespace() || c == ',' || c == ';') else {
            continue;
        };
        if !tail[..key_len].ends_with(':') {
            continue;
        }
        return Some(at + 3 + key_len + 1);
    }
    None
}

fn clause_end(s: &str) -> usize {
    let mut end = s.find('\n').unwrap_or(s.len());
    for sep in [
        ", data",
        ", stringData",
        ", .data",
        ", .stringData",
        "; ",
        ", metadata",
        ", type",
    ] {
        if let Some(i) = s[..end].find(sep) {
            end = i;
        }
    }
    // A trailing `]` closes a list of errors the server wrapped the clause in.
    if s[..end].ends_with(']') {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use kube::core::response::{StatusCause, StatusDetails};

    use super::*;

    fn status(code: u16, message: &str, causes: Vec<StatusCause>) -> Status {
        Status::failure(message, "")
            .with_code(code)
            .with_details(StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes,
                retry_after_seconds: 0,
            })
    }

    fn cause(reason: &str, message: &str, field: &str) -> StatusCause {
        StatusCause {
            reason: reason.into(),
            message: message.into(),
            field: field.into(),
        }
    }

    fn c(manager: &str, field: &str) -> Conflict {
        Conflict {
            manager: manager.into(),
            field: field.into(),
        }
    }

    #[test]
    fn conflicts_from_causes() {
        let s = status(
            409,
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas",
            vec![cause(
                "FieldManagerConflict",
                "conflict with \"kubectl-edit\" using apps/v1",
                ".spec.replicas",
            )],
        );
        assert_eq!(conflicts(&s), [c("kubectl-edit", ".spec.replicas")]);
    }

    #[test]
    fn one_conflict_from_the_message() {
        let s = status(
            409,
            "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas",
            vec![],
        );
        assert_eq!(conflicts(&s), [c("kubectl-edit", ".spec.replicas")]);
    }

    #[test]
    fn several_conflicts_and_managers_from_the_message() {
        let s = status(
            409,
            "Apply failed with 3 conflicts: conflicts with \"a\" using v1:\n- .data.x\n- .data.y\nconflict with \"b\": .data.z",
            vec![],
        );
        assert_eq!(
            conflicts(&s),
            [c("a", ".data.x"), c("a", ".data.y"), c("b", ".data.z")]
        );
    }

    #[test]
    fn immutable_from_causes_and_message() {
        let msg = "Deployment.apps \"api\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"b\"}}: field is immutable";
        let s = status(
            422,
            msg,
            vec![cause(
                "FieldValueInvalid",
                "Invalid value: ...: field is immutable",
                "spec.selector",
            )],
        );
        assert!(is_immutable(&s));
        assert_eq!(immutable_fields(&s), ["spec.selector"]);
        let s = status(422, msg, vec![]);
        assert_eq!(immutable_fields(&s), ["spec.selector"]);
        let s = status(
            422,
            "Job.batch \"j\" is invalid: [spec.template: Invalid value: x: field is immutable, spec.completions: Invalid value: 2: field is immutable]",
            vec![],
        );
        assert_eq!(immutable_fields(&s), ["spec.template", "spec.completions"]);
    }

    #[test]
    fn cel_immutability_errors_are_immutable() {
        // The body kube-apiserver 1.37 returned for a server-side apply that changed four
        // fields of a CR whose CRD guards them with `self == oldSelf` transition rules
        // (messages "Value is immutable", "immutable field", none, and a rule on `spec`).
        let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Widget.leafprobe.example.com \"w\" is invalid: [spec: Invalid value: \"object\": no such key: mode evaluating rule: mode is immutable, spec.color: Invalid value: \"b\": immutable field, spec.shape: Invalid value: \"b\": failed rule: self == oldSelf, spec.size: Invalid value: \"b\": Value is immutable]","reason":"Invalid","details":{"name":"w","group":"leafprobe.example.com","kind":"Widget","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"object\": no such key: mode evaluating rule: mode is immutable","field":"spec"},{"reason":"FieldValueInvalid","message":"Invalid value: \"b\": immutable field","field":"spec.color"},{"reason":"FieldValueInvalid","message":"Invalid value: \"b\": failed rule: self == oldSelf","field":"spec.shape"},{"reason":"FieldValueInvalid","message":"Invalid value: \"b\": Value is immutable","field":"spec.size"}]},"code":422}"#;
        let s: Status = serde_json::from_str(body).expect("a Status");
        assert!(is_immutable(&s));
        assert_eq!(
            immutable_fields(&s),
            ["spec", "spec.color", "spec.shape", "spec.size"]
        );
        // Each message alone, without causes: found in the message.
        for (clause, field) in [
            (
                "spec.size: Invalid value: \"b\": Value is immutable",
                "spec.size",
            ),
            (
                "spec.color: Invalid value: \"b\": immutable field",
                "spec.color",
            ),
            (
                "spec.shape: Invalid value: \"b\": failed rule: self == oldSelf",
                "spec.shape",
            ),
        ] {
            let s = status(
                422,
                &format!("Widget.leafprobe.example.com \"w\" is invalid: {clause}"),
                vec![],
            );
            assert!(is_immutable(&s), "{clause}");
            assert_eq!(immutable_fields(&s), [field], "{clause}");
        }
    }

    #[test]
    fn other_invalid_is_not_immutable() {
        let s = status(
            422,
            "spec.replicas: Invalid value: -1: must be >= 0",
            vec![],
        );
        assert!(!is_immutable(&s));
        let s = status(409, "field is immutable", vec![]);
        assert!(!is_immutable(&s));
    }

    #[test]
    fn secret_values_in_api_errors_are_masked() {
        let manifest = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "stringData": {"password": 12345, "user": "admin-user"},
            "data": {"token": "czNjcjN0LXRva2Vu"}
        });
        let cases = [
            "failed to create typed patch object (/v1, Kind=Secret): .stringData.password: expected string, got &value.valueUnstructured{Value:12345}",
            "Secret \"db\" is invalid: [data[token]: Invalid value: \"s3cr3t-token\": bad, stringData.user: Invalid value: \"admin-user\"]",
            "stringData.password: 12345",
            "the server echoed s3cr3t-token and czNjcjN0LXRva2Vu and admin-user",
        ];
        for msg in cases {
            let masked = mask_secret_message(msg, Some(&manifest));
            for secret in ["12345", "s3cr3t-token", "czNjcjN0LXRva2Vu", "admin-user"] {
                assert!(!masked.contains(secret), "{secret} in {masked}");
            }
            assert!(masked.contains(MASKED), "{masked}");
        }
        // Without the manifest (a delete), the path rule alone.
        let masked = mask_secret_message("stringData.password: 12345, other", None);
        assert!(!masked.contains("12345"), "{masked}");
        let m = mask_secret_message(cases[0], Some(&manifest));
        assert!(
            m.contains(".stringData.password: expected string: <masked>"),
            "{m}"
        );
        // Nothing to mask: unchanged.
        let plain = "Secret \"db\" is forbidden: User cannot patch";
        assert_eq!(mask_secret_message(plain, Some(&manifest)), plain);
    }
}
