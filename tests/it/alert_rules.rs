//! The alert rules of `manifests/prometheus-rules.yaml`, checked by promtool: the rules parse
//! (`promtool check rules`), and each alert fires when it should and not when it should not
//! (`promtool test rules` over `manifests/tests/prometheus-rules.test.yaml`).
//!
//! promtool reads plain rule-group files, not the Prometheus Operator's PrometheusRule, so the
//! test writes the rule's `spec` (its `groups`) to a temp file first. promtool comes from
//! Debian's `prometheus` package (scripts/install-deps.sh); `GITOPSD_PROMTOOL` names another.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml::Value;

const RULES: &str = "manifests/prometheus-rules.yaml";
const RULE_TESTS: &str = "manifests/tests/prometheus-rules.test.yaml";
/// The name the test file's `rule_files` gives the extracted groups.
const GROUPS_FILE: &str = "gitopsd-rules.yaml";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read_yaml(path: &str) -> Value {
    let file = repo_file(path);
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// The PrometheusRule's `spec` as a plain rule file: `groups: [...]`.
fn rule_groups(rule: &Value) -> Value {
    assert_eq!(
        rule["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1"),
        "{RULES}: apiVersion"
    );
    assert_eq!(
        rule["kind"].as_str(),
        Some("PrometheusRule"),
        "{RULES}: kind"
    );
    let groups = rule["spec"]["groups"].clone();
    assert!(
        groups.as_sequence().is_some_and(|g| !g.is_empty()),
        "{RULES}: spec.groups is empty"
    );
    let mut file = serde_yaml::Mapping::new();
    file.insert("groups".into(), groups);
    Value::Mapping(file)
}

/// Every rule of the groups, as (alert name, rule).
fn alerts(groups: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for g in groups["groups"].as_sequence().into_iter().flatten() {
        for r in g["rules"].as_sequence().into_iter().flatten() {
            let name = r["alert"]
                .as_str()
                .unwrap_or_else(|| panic!("{RULES}: a rule with no alert name: {r:?}"));
            out.push((name.to_owned(), r.clone()));
        }
    }
    out
}

fn promtool() -> PathBuf {
    let tool = std::env::var_os("GITOPSD_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("promtool"));
    match Command::new(&tool).arg("--version").output() {
        Ok(o) if o.status.success() => tool,
        other => panic!(
            "promtool ({}) cannot run ({other:?}): install Debian's prometheus package \
             (scripts/install-deps.sh does) or set GITOPSD_PROMTOOL",
            tool.display()
        ),
    }
}

fn run_promtool(args: &[&str], dir: &Path) -> Output {
    let tool = promtool();
    Command::new(&tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()))
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A temp dir holding the extracted groups and a copy of the unit tests beside them.
fn prepared() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let groups = rule_groups(&read_yaml(RULES));
    let text = serde_yaml::to_string(&groups).expect("groups as YAML");
    std::fs::write(dir.path().join(GROUPS_FILE), text).expect("write the rule groups");
    std::fs::copy(repo_file(RULE_TESTS), dir.path().join("rules.test.yaml"))
        .expect("copy the rule tests");
    dir
}

#[test]
fn every_alert_has_a_severity_a_summary_and_a_description_naming_what_to_run() {
    let groups = rule_groups(&read_yaml(RULES));
    let alerts = alerts(&groups);
    let names: BTreeSet<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "GitopsdCriticalDrift",
        "GitopsdDriftUnresolved",
        "GitopsdSyncFailing",
        "GitopsdTierDegraded",
        "GitopsdPromotionBlocked",
        "GitopsdChangeWindowHeld",
        "GitopsdStalled",
        "GitopsdSourceStale",
        "GitopsdAbsent",
    ] {
        assert!(
            names.contains(want),
            "{RULES} has no alert {want}: {names:?}"
        );
    }
    for (name, rule) in &alerts {
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("critical" | "warning")),
            "{name}: severity label {severity:?}"
        );
        let summary = rule["annotations"]["summary"].as_str().unwrap_or_default();
        let description = rule["annotations"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(!summary.is_empty(), "{name} has no summary");
        // Alerts about a tier name it, and say what to look at or run.
        let per_tier = rule["expr"]
            .as_str()
            .is_some_and(|e| e.contains("by (tier)"));
        if per_tier {
            assert!(
                summary.contains("{{ $labels.tier }}")
                    && description.contains("{{ $labels.tier }}"),
                "{name} does not name the tier: {summary} / {description}"
            );
        }
        assert!(
            description.contains('`'),
            "{name}'s description names no command or endpoint: {description}"
        );
    }
}

#[test]
fn promtool_accepts_the_rules() {
    let dir = prepared();
    let out = run_promtool(&["check", "rules", GROUPS_FILE], dir.path());
    assert_success("promtool check rules", &out);
}

#[test]
fn every_alert_fires_as_its_promtool_unit_tests_expect() {
    // Each alert has a test case in which it fires.
    let names: BTreeSet<String> = alerts(&rule_groups(&read_yaml(RULES)))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let tests = read_yaml(RULE_TESTS);
    let mut fired = BTreeSet::new();
    for t in tests["tests"].as_sequence().into_iter().flatten() {
        for a in t["alert_rule_test"].as_sequence().into_iter().flatten() {
            let expected = a["exp_alerts"].as_sequence().is_some_and(|e| !e.is_empty());
            if expected && let Some(n) = a["alertname"].as_str() {
                fired.insert(n.to_owned());
            }
        }
    }
    let untested: Vec<&String> = names.difference(&fired).collect();
    assert!(
        untested.is_empty(),
        "{RULE_TESTS} has no case in which these alerts fire: {untested:?}"
    );

    let dir = prepared();
    let out = run_promtool(&["test", "rules", "rules.test.yaml"], dir.path());
    assert_success("promtool test rules", &out);
}
