//! `gitopsd diff` as a person reads it: a unified diff of live against desired per object,
//! restricted to the fields that differ, with severity, rule and action beside each hunk.

use std::fmt::Write as _;

use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use super::DriftReport;
use crate::classify::DriftItem;

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// The report as text; ANSI colours when `colour` (stdout is a terminal). Values come from
/// the drift items only, which classify has already masked for Secrets.
pub fn render_text(report: &DriftReport, colour: bool) -> String {
    let paint = |code: &str, text: &str| {
        if colour {
            format!("{code}{text}{RESET}")
        } else {
            text.to_owned()
        }
    };
    let mut out = String::new();
    let mut previous: Option<(&str, &Option<String>, &str)> = None;
    for item in &report.items {
        let object = (
            item.key.kind.as_str(),
            &item.key.namespace,
            item.key.name.as_str(),
        );
        if previous != Some(object) {
            let name = object_name(item);
            let _ = writeln!(out, "{}", paint(BOLD, &format!("--- live {name}")));
            let _ = writeln!(out, "{}", paint(BOLD, &format!("+++ desired {name}")));
            previous = Some(object);
        }
        let what = match &item.field_path {
            None => match (&item.desired, &item.live) {
                (Some(_), None) => "object missing from the cluster".to_owned(),
                _ => "object not in the desired set".to_owned(),
            },
            Some(path) => path.to_string(),
        };
        let _ = writeln!(
            out,
            "{}",
            paint(
                CYAN,
                &format!(
                    "@@ {what} @@ {} (rule {}, action {}){}{}",
                    item.severity,
                    item.rule,
                    item.action,
                    foreign_note(item),
                    item.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                )
            )
        );
        let live = yaml_of(item, item.live.as_ref());
        let desired = yaml_of(item, item.desired.as_ref());
        let diff = TextDiff::from_lines(&live, &desired);
        for change in diff.iter_all_changes() {
            let line = change.value().trim_end_matches('\n');
            let _ = match change.tag() {
                ChangeTag::Delete => writeln!(out, "{}", paint(RED, &format!("-{line}"))),
                ChangeTag::Insert => writeln!(out, "{}", paint(GREEN, &format!("+{line}"))),
                ChangeTag::Equal => writeln!(out, " {line}"),
            };
        }
    }
    let c = &report.counts;
    for (severity, n) in [
        ("critical", c.critical),
        ("high", c.high),
        ("medium", c.medium),
        ("low", c.low),
    ] {
        let _ = writeln!(out, "{severity}: {n}");
    }
    let _ = writeln!(
        out,
        "tier {}: {} objects drifted, {} in sync",
        report.tier, report.drifted, report.in_sync
    );
    out
}

/// Who set a foreign security field the manifest does not set.
fn foreign_note(item: &DriftItem) -> String {
    match &item.foreign {
        Some(f) => format!(
            ", set by {} outside the manifest",
            f.manager.as_deref().unwrap_or("another field manager")
        ),
        None => String::new(),
    }
}

/// `apps/v1 Deployment shop/api`: the version too, since a diff is about one version's fields.
fn object_name(item: &DriftItem) -> String {
    format!("{} {}", item.key.api_version, item.object_name())
}

/// The value as YAML under its full path (label keys hold dots, so a last segment cut at a
/// dot would be wrong), the whole object for a missing or extra one; nothing when absent.
fn yaml_of(item: &DriftItem, value: Option<&Value>) -> String {
    let Some(value) = value else {
        return String::new();
    };
    let shown = match &item.field_path {
        Some(path) => serde_json::json!({ path.to_string(): value }),
        None => value.clone(),
    };
    serde_yaml::to_string(&shown).unwrap_or_else(|_| format!("{shown}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Severity;
    use crate::config::Action;
    use crate::diff::{FieldPath, PathSegment};
    use crate::drift::SeverityCounts;

    fn report() -> DriftReport {
        DriftReport {
            tier: "experimental".into(),
            items: vec![DriftItem {
                key: crate::object::ObjectKey {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    namespace: Some("shop-exp".into()),
                    name: "shop-config".into(),
                },
                desired: Some(Value::from("shop")),
                live: Some(Value::from("other")),
                severity: Severity::Low,
                rule: "labels".into(),
                action: Action::Alert,
                field_path: Some(FieldPath(
                    ["metadata", "labels", "app.kubernetes.io/part-of"]
                        .map(|f| PathSegment::Field(f.into()))
                        .to_vec(),
                )),
                foreign: None,
                reason: None,
            }],
            in_sync: 3,
            drifted: 1,
            counts: SeverityCounts {
                low: 1,
                ..Default::default()
            },
            dismissed_by_dry_run: 0,
        }
    }

    #[test]
    fn an_extra_object_says_why_it_is_only_reported() {
        let mut report = report();
        let item = &mut report.items[0];
        item.field_path = None;
        item.desired = None;
        item.rule = "extra-object".into();
        item.reason = Some(crate::classify::NOT_IN_INVENTORY.into());
        let text = render_text(&report, false);
        assert!(
            text.contains("(rule extra-object, action alert): not in this tier's inventory"),
            "{text}"
        );
    }

    #[test]
    fn each_hunk_names_its_path_severity_rule_and_action() {
        let text = render_text(&report(), false);
        assert!(
            text.contains("--- live v1 ConfigMap shop-exp/shop-config\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "@@ metadata.labels.app.kubernetes.io/part-of @@ low (rule labels, action alert)"
            ),
            "{text}"
        );
        assert!(
            text.contains("-metadata.labels.app.kubernetes.io/part-of: other\n"),
            "{text}"
        );
        assert!(
            text.contains("+metadata.labels.app.kubernetes.io/part-of: shop\n"),
            "{text}"
        );
        assert!(
            text.contains("critical: 0\nhigh: 0\nmedium: 0\nlow: 1\n"),
            "{text}"
        );
        assert!(
            text.contains("tier experimental: 1 objects drifted, 3 in sync"),
            "{text}"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        assert!(!render_text(&report(), false).contains('\x1b'));
        assert!(render_text(&report(), true).contains(RED));
    }
}
