//! Pins what the outside sees of object identities and revisions: the JSON of the status API
//! (`/api/v1/tiers/{tier}`), of the drift report (`gitopsd diff -o json`, `?format=json`), the
//! drift report as text, the audit log's records and the messages naming objects. Built from
//! realistic objects (a Deployment, a cluster-scoped ClusterRole, a custom resource), compared
//! byte for byte with the golden files in `testdata/identity/`: a refactor of the types behind
//! them must leave every byte as it is.
//!
//! To regenerate after a deliberate change of the output: `GITOPSD_UPDATE_GOLDEN=1 cargo test
//! --test it identity::`, then review the diff of the golden files.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use gitopsd::activity::Activity;
use gitopsd::apply::{Conflict, ObjectResult, Outcome, Tally};
use gitopsd::classify::{DriftItem, Foreign, NOT_IN_INVENTORY, Severity};
use gitopsd::config::Action;
use gitopsd::diff::{FieldPath, PathSegment};
use gitopsd::drift::{DriftReport, SeverityCounts};
use gitopsd::health::{Health, ObjectHealth};
use gitopsd::live::ObjectKey;
use gitopsd::policy::{Fought, Unconvergeable};
use gitopsd::reconcile::HoldKind;
use gitopsd::status::{Rewrite, SourceStatus, SyncRecord, SyncState, TierStatus, UnhealthyObject};
use gitopsd::window::WindowState;
use serde_json::{Value, json};

const REV: &str = "4f1c2d3e4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d";
const PREV: &str = "0123456789abcdef0123456789abcdef01234567";

fn at(secs: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 9, 15, secs)
        .single()
        .expect("a valid time")
}

fn deployment() -> ObjectKey {
    ObjectKey {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: Some("shop-prod".into()),
        name: "api".into(),
    }
}

fn cluster_role() -> ObjectKey {
    ObjectKey {
        api_version: "rbac.authorization.k8s.io/v1".into(),
        kind: "ClusterRole".into(),
        namespace: None,
        name: "shop-reader".into(),
    }
}

fn widget() -> ObjectKey {
    ObjectKey {
        api_version: "shop.example.com/v1alpha1".into(),
        kind: "Widget".into(),
        namespace: Some("shop-prod".into()),
        name: "checkout".into(),
    }
}

/// A path in display form as data: dotted field names, `[k=v]` for a list item (enough for
/// the paths below).
fn field_path(text: &str) -> FieldPath {
    let mut segments = Vec::new();
    for part in text.split('.') {
        let (name, keyed) = match part.split_once('[') {
            Some((name, rest)) => (name, Some(rest.trim_end_matches(']'))),
            None => (part, None),
        };
        segments.push(PathSegment::Field(name.to_owned()));
        if let Some(keyed) = keyed {
            let pairs = keyed
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            segments.push(PathSegment::Keyed(pairs));
        }
    }
    FieldPath(segments)
}

#[allow(clippy::too_many_arguments)]
fn item(
    key: &ObjectKey,
    path: Option<&str>,
    desired: Option<Value>,
    live: Option<Value>,
    severity: Severity,
    rule: &str,
    action: Action,
) -> DriftItem {
    DriftItem {
        key: key.clone(),
        desired,
        live,
        severity,
        rule: rule.into(),
        action,
        field_path: path.map(field_path),
        foreign: None,
        reason: None,
    }
}

fn drift_items() -> Vec<DriftItem> {
    let image = item(
        &deployment(),
        Some("spec.template.spec.containers[name=api].image"),
        Some(json!("registry.example.com/shop/api:1.4.2")),
        Some(json!("registry.example.com/shop/api:1.4.1")),
        Severity::High,
        "container-image",
        Action::Apply,
    );
    let mut privileged = item(
        &deployment(),
        Some("spec.template.spec.containers[name=api].securityContext.privileged"),
        None,
        Some(json!(true)),
        Severity::Critical,
        "foreign-security-field",
        Action::Apply,
    );
    privileged.foreign = Some(Foreign {
        manager: Some("kubectl-edit".into()),
    });
    let mut extra = item(
        &cluster_role(),
        None,
        None,
        Some(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "shop-reader", "labels": {"gitopsd.io/tier": "prod"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        })),
        Severity::Medium,
        "extra-object",
        Action::Alert,
    );
    extra.reason = Some(NOT_IN_INVENTORY.into());
    let missing = item(
        &widget(),
        None,
        Some(json!({
            "apiVersion": "shop.example.com/v1alpha1",
            "kind": "Widget",
            "metadata": {"name": "checkout", "namespace": "shop-prod"},
            "spec": {"size": 3},
        })),
        None,
        Severity::Critical,
        "object-deleted",
        Action::Apply,
    );
    let size = item(
        &widget(),
        Some("spec.size"),
        Some(json!(3)),
        Some(json!(5)),
        Severity::Medium,
        "override:Widget:spec.size",
        Action::Alert,
    );
    vec![image, privileged, extra, missing, size]
}

fn drift_report() -> DriftReport {
    DriftReport {
        tier: "prod".into(),
        items: drift_items(),
        in_sync: 12,
        drifted: 3,
        counts: SeverityCounts {
            critical: 2,
            high: 1,
            medium: 2,
            low: 0,
        },
        dismissed_by_dry_run: 4,
    }
}

fn unconvergeable() -> Vec<Unconvergeable> {
    vec![
        Unconvergeable {
            object: deployment(),
            path: Some(field_path("spec.replicas")),
            severity: Severity::Medium,
            manager: Some("scaler".into()),
            corrections: 3,
            fought: Fought::Field,
        },
        Unconvergeable {
            object: cluster_role(),
            // A deletion fought: no field path, written as `policy::DELETED`, as at run time.
            path: None,
            severity: Severity::Critical,
            manager: None,
            corrections: 3,
            fought: Fought::Deletion,
        },
    ]
}

fn sync_record() -> SyncRecord {
    SyncRecord {
        revision: REV.into(),
        reason: "revision".into(),
        started_at: at(1),
        duration_ms: 1234,
        outcomes: Tally::from([
            (Outcome::Configured, 2),
            (Outcome::Created, 1),
            (Outcome::Failed, 1),
            (Outcome::Unchanged, 14),
        ]),
        failures: vec![ObjectResult {
            key: widget(),
            outcome: Outcome::Failed,
            message: Some("Widget.shop.example.com \"checkout\" is invalid: spec.size: Invalid value: 500: must be at most 10".into()),
            conflicts: vec![Conflict {
                manager: "widget-operator".into(),
                field: ".spec.size".into(),
            }],
            applied: None,
        }],
        drift: 5,
        alerts: 2,
        prune_notes: vec!["kept ConfigMap shop-prod/legacy: annotated gitopsd.io/prune=false".into()],
        rolled_back_from: None,
        error: None,
    }
}

fn tier_status() -> TierStatus {
    let mut status = TierStatus::new("prod");
    status.revision = Some(REV.into());
    status.source_revision = Some(REV.into());
    status.sync = SyncState::OutOfSync;
    status.health = Health::Progressing;
    status.unhealthy = vec![UnhealthyObject {
        object: deployment(),
        health: ObjectHealth {
            health: Health::Progressing,
            message: "1 of 3 replicas updated; waiting for the rollout".into(),
        },
    }];
    status.objects = 17;
    status.drift = Some(drift_report());
    status.alerts = drift_items()
        .into_iter()
        .filter(|i| i.action == Action::Alert)
        .collect();
    status.unconvergeable = unconvergeable();
    status.prune_refused = Some("3 of 17 objects left git (18%), more than prune.maxDeletePercent (10%): set it higher for this revision, or restore them".into());
    let mut older = sync_record();
    older.revision = PREV.into();
    older.reason = "rollback".into();
    older.rolled_back_from = Some(REV.into());
    older.error = Some("revision 4f1c2d3e4a5b unhealthy for 5m: rolled back".into());
    status.record(older);
    status.record(sync_record());
    status.last_reconcile_at = Some(at(30));
    status.last_error = Some("1 object failed to apply".into());
    status.last_healthy_revision = Some(PREV.into());
    status.failed_revision = Some(REV.into());
    status.rollbacks = 1;
    status.held_revision = Some("89abcdef0123456789abcdef0123456789abcdef".into());
    status.held_by = Some(HoldKind::Window);
    status.window = Some(WindowState {
        open: false,
        next_change: Some(at(45)),
    });
    status.source = SourceStatus {
        last_fetch_at: Some(at(20)),
        last_attempt_at: Some(at(25)),
        fetch_error: Some("connection refused".into()),
        stale: false,
        rewrites: 1,
        last_rewrite: Some(Rewrite {
            git_ref: "refs/heads/prod".into(),
            from: PREV.into(),
            to: REV.into(),
            at: at(10),
        }),
    };
    status
}

/// The audit records of activities naming the three objects, as `event` then the fields in the
/// order the log writes them (the log adds `seq`, `time` and `prev` around them).
fn audit_lines() -> String {
    let activities = vec![
        Activity::ObjectApplied {
            tier: "prod".into(),
            revision: REV.into(),
            object: deployment(),
            outcome: Outcome::Configured,
            message: None,
        },
        Activity::ObjectApplied {
            tier: "prod".into(),
            revision: REV.into(),
            object: cluster_role(),
            outcome: Outcome::Pruned,
            message: None,
        },
        Activity::ObjectApplied {
            tier: "prod".into(),
            revision: REV.into(),
            object: widget(),
            outcome: Outcome::Failed,
            message: Some("spec.size: Invalid value: 500: must be at most 10".into()),
        },
        Activity::DriftFound {
            tier: "prod".into(),
            revision: REV.into(),
            items: drift_items(),
        },
        Activity::SyncFinished {
            tier: "prod".into(),
            revision: REV.into(),
            reason: "revision".into(),
            result: SyncState::OutOfSync,
            duration: Duration::from_millis(1234),
            outcomes: Tally::from([(Outcome::Configured, 2), (Outcome::Failed, 1)]),
            error: Some("1 object failed to apply".into()),
            notable: true,
            window_closed: false,
        },
    ];
    let mut out = String::new();
    for a in &activities {
        let (event, fields) = gitopsd::audit::record(a).expect("an audited activity");
        out.push_str(&format!("{{\"event\":{}", Value::from(event)));
        for (k, v) in fields {
            out.push_str(&format!(",{}:{v}", Value::from(k)));
        }
        out.push_str("}\n");
    }
    out
}

/// Messages that name objects: a drift item and an unconvergeable field as logs and Events
/// show them.
fn messages() -> String {
    let mut out = String::new();
    for i in drift_items() {
        out.push_str(&format!("{i}\n"));
    }
    for u in unconvergeable() {
        out.push_str(&format!("{u}\n"));
    }
    for k in [deployment(), cluster_role(), widget()] {
        out.push_str(&format!("{}\n", gitopsd::apply::display_name(&k)));
    }
    out
}

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/identity")
        .join(name);
    if std::env::var_os("GITOPSD_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create testdata");
        std::fs::write(&path, actual).expect("write the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (GITOPSD_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name} changed; expected:\n{expected}\nactual:\n{actual}"
    );
}

#[test]
fn status_api_json_is_pinned() {
    // What axum's `Json` sends (compact) and a person reads (pretty) alike.
    let status = tier_status();
    check(
        "status.json",
        &(serde_json::to_string_pretty(&status).expect("serialise") + "\n"),
    );
    check(
        "status.compact.json",
        &(serde_json::to_string(&vec![status]).expect("serialise") + "\n"),
    );
}

#[test]
fn drift_report_json_and_text_are_pinned() {
    let report = drift_report();
    // `gitopsd diff -o json` prints it pretty with a newline; the API sends it compact.
    check(
        "drift.json",
        &(serde_json::to_string_pretty(&report).expect("serialise") + "\n"),
    );
    check("drift.txt", &gitopsd::drift::render_text(&report, false));
}

#[test]
fn audit_records_are_pinned() {
    check("audit.jsonl", &audit_lines());
}

#[test]
fn messages_naming_objects_are_pinned() {
    check("messages.txt", &messages());
}
