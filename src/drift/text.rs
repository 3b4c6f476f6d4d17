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
        let object = (item.kind.as_str(), &item.namespace, item.name.as_str());
        if previous != Some(object) {
            let name = object_name(item);
            let _ = writeln!(out, "{}", paint(BOLD, &format!("--- live {name}")));
            let _ = writeln!(out, "{}", paint(BOLD, &format!("+++ desired {name}")));
            previous = Some(object);
        }
        let what = if item.paths.is_empty() {
            match (&item.desired, &item.live) {
                (Some(_), None) => "object missing from the cluster".to_owned(),
                _ => "object not in the desired set".to_owned(),
            }
        } else {
            item.paths.join(", ")
        };
        let _ = writeln!(
            out,
            "{}",
            paint(
                CYAN,
                &format!(
                    "@@ {what} @@ {} (rule {}, action {})",
                    item.severity, item.rule, item.action
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

fn object_name(item: &DriftItem) -> String {
    match &item.namespace {
        Some(ns) => format!("{} {} {ns}/{}", item.api_version, item.kind, item.name),
        None => format!("{} {} {}", item.api_version, item.kind, item.name),
    }
}

/// The value as YAML under its last field name (`image: api:1.5`), the whole object for a
/// missing or extra one; nothing when absent on that side.
fn yaml_of(item: &DriftItem, value: Option<&Value>) -> String {
    let Some(value) = value else {
        return String::new();
    };
    let last = item
        .paths
        .first()
        .map(|p| p.rsplit('.').next().unwrap_or(p).to_owned());
    let shown = match last {
        Some(field) => serde_json::json!({ field: value }),
        None => value.clone(),
    };
    serde_yaml::to_string(&shown).unwrap_or_else(|_| format!("{shown}\n"))
}
