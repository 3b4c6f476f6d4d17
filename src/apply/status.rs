//! Reading the API server's failure Status: which field managers a conflicting apply ran into,
//! and which fields were immutable.

use kube::core::Status;

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

const IMMUTABLE: &str = "field is immutable";

/// Whether a failure is a 422 Invalid because an immutable field would change.
pub fn is_immutable(status: &Status) -> bool {
    status.code == 422
        && (status.message.contains(IMMUTABLE)
            || status
                .details
                .iter()
                .flat_map(|d| &d.causes)
                .any(|c| c.message.contains(IMMUTABLE)))
}

/// The immutable fields a 422 names (`spec.selector`), from its causes, else its message.
pub fn immutable_fields(status: &Status) -> Vec<String> {
    let mut fields: Vec<String> = status
        .details
        .iter()
        .flat_map(|d| &d.causes)
        .filter(|c| c.message.contains(IMMUTABLE) && !c.field.is_empty())
        .map(|c| c.field.clone())
        .collect();
    if fields.is_empty() {
        // `Job.batch "x" is invalid: spec.template: Invalid value: ...: field is immutable`
        for segment in status.message.split(IMMUTABLE).filter(|s| !s.is_empty()) {
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
}
