use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::classify::{DriftItem, Severity};
use crate::config::Action;
use crate::diff::{FieldPath, PathSegment};
use crate::drift::{DriftReport, SeverityCounts};

fn path(segments: &[&str]) -> FieldPath {
    FieldPath(
        segments
            .iter()
            .map(|s| match s.strip_prefix("name=") {
                Some(n) => PathSegment::Keyed(vec![("name".into(), n.into())]),
                None => PathSegment::Field((*s).into()),
            })
            .collect(),
    )
}

fn item(name: &str, p: Option<FieldPath>, severity: Severity, action: Action) -> DriftItem {
    DriftItem {
        key: crate::object::ObjectKey {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("shop-exp".into()),
            name: name.into(),
        },
        desired: Some(json!(2)),
        live: Some(json!(5)),
        severity,
        rule: if p.is_some() {
            "replicas"
        } else {
            "object-deleted"
        }
        .into(),
        action,
        field_path: p,
        foreign: None,
        reason: None,
    }
}

fn report(items: Vec<DriftItem>) -> DriftReport {
    DriftReport {
        tier: "experimental".into(),
        items,
        in_sync: 0,
        drifted: 1,
        counts: SeverityCounts::default(),
        dismissed_by_dry_run: 0,
    }
}

fn key(name: &str) -> ObjectKey {
    ObjectKey {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: Some("shop-exp".into()),
        name: name.into(),
    }
}

/// A live Deployment whose replicas the HPA-less `scaler` last wrote, after `kubectl`.
fn live_fought() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop-exp", "managedFields": [
            {"manager": "gitopsd", "operation": "Apply", "time": "2026-11-23T10:00:00Z",
             "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"api\"}": {".": {}, "f:image": {}}}}}}}},
            {"manager": "kubectl-edit", "operation": "Update", "time": "2026-11-23T10:01:00Z",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "rogue-scaler", "operation": "Update", "time": "2026-11-23T10:05:00Z",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kube-controller-manager", "operation": "Update", "time": "2026-11-23T10:06:00Z",
             "fieldsV1": {"f:status": {"f:replicas": {}}}}
        ]},
        "spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "api", "image": "shop/api:1.4.2"}]}}}
    })
}

#[test]
fn alert_ignore_and_apply_follow_the_policy() {
    let mut t = FightTracker::default();
    let r = report(vec![
        item(
            "a",
            Some(path(&["spec", "replicas"])),
            Severity::High,
            Action::Alert,
        ),
        item(
            "b",
            Some(path(&["spec", "replicas"])),
            Severity::Low,
            Action::Ignore,
        ),
        item(
            "c",
            Some(path(&["spec", "replicas"])),
            Severity::High,
            Action::Apply,
        ),
        item("d", None, Severity::Critical, Action::Apply),
    ]);
    let d = t.decide(&r, &|_| Some("d1".into()), &|_| None, Instant::now());
    assert_eq!(d.alerts.len(), 1);
    assert_eq!(d.alerts[0].key.name, "a");
    let names: Vec<_> = d
        .corrections
        .iter()
        .map(|c| c.object.name.as_str())
        .collect();
    assert_eq!(names, ["c", "d"]);
    assert_eq!(d.corrections[0].fields, [path(&["spec", "replicas"])]);
    assert!(
        d.corrections[1].fields.is_empty(),
        "a missing object is created whole"
    );
    assert!(d.unconvergeable.is_empty());
}

#[test]
fn an_extra_object_is_left_to_prune() {
    let mut t = FightTracker::default();
    for action in [Action::Apply, Action::Prune, Action::Ignore] {
        let mut extra = item("x", None, Severity::Medium, action);
        extra.rule = "extra-object".into();
        let d = t.decide(&report(vec![extra]), &|_| None, &|_| None, Instant::now());
        assert_eq!(d, Decision::default(), "{action}");
    }
}

#[test]
fn an_extra_object_gitopsd_does_not_delete_is_an_alert() {
    let mut t = FightTracker::default();
    let mut extra = item("x", None, Severity::Medium, Action::Alert);
    extra.rule = "extra-object".into();
    let d = t.decide(
        &report(vec![extra.clone()]),
        &|_| None,
        &|_| None,
        Instant::now(),
    );
    assert_eq!(d.alerts, [extra]);
    assert!(d.corrections.is_empty());
}

/// The one sync rule: each action, done or not.
#[test]
fn drift_is_settled_only_when_ignored_or_done() {
    let p = || Some(path(&["spec", "replicas"]));
    let decision = Decision::default();
    let unsettled_of = |i: DriftItem, done: bool| {
        let r = report(vec![i]);
        unsettled(&r, &decision, &|_| done).len()
    };
    assert_eq!(
        unsettled_of(item("a", p(), Severity::Low, Action::Ignore), false),
        0
    );
    assert_eq!(
        unsettled_of(item("a", p(), Severity::Low, Action::Alert), true),
        1
    );
    assert_eq!(
        unsettled_of(item("a", p(), Severity::High, Action::Apply), true),
        0
    );
    assert_eq!(
        unsettled_of(item("a", p(), Severity::High, Action::Apply), false),
        1
    );
    let mut extra = item("x", None, Severity::Medium, Action::Prune);
    extra.rule = "extra-object".into();
    assert_eq!(unsettled_of(extra.clone(), true), 0);
    assert_eq!(unsettled_of(extra.clone(), false), 1);
    extra.action = Action::Alert;
    assert_eq!(
        unsettled_of(extra, true),
        1,
        "an extra object gitopsd keeps"
    );

    // Given up: not settled, though nothing failed.
    let fought = item("api", p(), Severity::High, Action::Apply);
    let decision = Decision {
        unconvergeable: vec![Unconvergeable {
            object: key("api"),
            path: p(),
            severity: Severity::High,
            manager: None,
            corrections: FIGHT_LIMIT,
            fought: Fought::Field,
        }],
        ..Decision::default()
    };
    let r = report(vec![
        fought,
        item("other", p(), Severity::High, Action::Apply),
    ]);
    let left: Vec<&str> = unsettled(&r, &decision, &|_| true)
        .iter()
        .map(|i| i.key.name.as_str())
        .collect();
    assert_eq!(left, ["api"]);
}

#[test]
fn a_field_reverted_after_each_correction_becomes_unconvergeable_naming_the_writer() {
    let mut t = FightTracker::default();
    let p = path(&["spec", "replicas"]);
    let r = report(vec![item(
        "api",
        Some(p.clone()),
        Severity::High,
        Action::Apply,
    )]);
    let start = Instant::now();
    for round in 0..FIGHT_LIMIT {
        let now = start + Duration::from_secs(round as u64 * 30);
        let d = t.decide(&r, &|_| Some("d1".into()), &|_| Some(live_fought()), now);
        assert_eq!(d.corrections.len(), 1, "round {round} still corrects");
        assert!(d.unconvergeable.is_empty());
        t.corrected(&key("api"), &d.corrections[0].fields, "d1", now);
    }
    let now = start + Duration::from_secs(120);
    let d = t.decide(&r, &|_| Some("d1".into()), &|_| Some(live_fought()), now);
    assert!(
        d.corrections.is_empty(),
        "the only drift is held back: no apply"
    );
    assert_eq!(d.unconvergeable.len(), 1);
    let u = &d.unconvergeable[0];
    assert_eq!(u.manager.as_deref(), Some("rogue-scaler"));
    assert_eq!(u.corrections, FIGHT_LIMIT);
    assert!(
        u.to_string().contains("Deployment shop-exp/api spec.replicas: corrected 3 times and changed back each time by rogue-scaler"),
        "{u}"
    );

    // A new desired object (a commit) starts the count over.
    let d = t.decide(&r, &|_| Some("d2".into()), &|_| Some(live_fought()), now);
    assert_eq!(d.corrections.len(), 1);
    assert!(d.unconvergeable.is_empty());
}

#[test]
fn corrections_older_than_the_window_do_not_count() {
    let mut t = FightTracker::default();
    let p = path(&["spec", "replicas"]);
    let r = report(vec![item("api", Some(p), Severity::High, Action::Apply)]);
    let start = Instant::now();
    for round in 0..FIGHT_LIMIT {
        t.corrected(
            &key("api"),
            &[path(&["spec", "replicas"])],
            "d1",
            start + Duration::from_secs(round as u64),
        );
    }
    let later = start + FIGHT_WINDOW + Duration::from_secs(60);
    let d = t.decide(&r, &|_| Some("d1".into()), &|_| None, later);
    assert_eq!(d.corrections.len(), 1, "a fight a day is not a loop");
}

#[test]
fn other_drift_of_a_fought_object_is_applied_with_the_fought_field_held_back() {
    let mut t = FightTracker::default();
    let replicas = path(&["spec", "replicas"]);
    let image = path(&[
        "spec",
        "template",
        "spec",
        "containers",
        "name=api",
        "image",
    ]);
    let now = Instant::now();
    for _ in 0..FIGHT_LIMIT {
        t.corrected(&key("api"), &[path(&["spec", "replicas"])], "d1", now);
    }
    let r = report(vec![
        item("api", Some(replicas.clone()), Severity::High, Action::Apply),
        item(
            "api",
            Some(image.clone()),
            Severity::Critical,
            Action::Apply,
        ),
    ]);
    let d = t.decide(&r, &|_| Some("d1".into()), &|_| Some(live_fought()), now);
    assert_eq!(d.corrections.len(), 1);
    assert_eq!(d.corrections[0].hold_back, vec![replicas.clone()]);
    assert_eq!(d.corrections[0].fields, vec![image.clone()]);

    let manifest = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop-exp"},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "api", "image": "shop/api:1.5.0"}]}}}});
    let applied = hold_back(&manifest, &live_fought(), &d.corrections[0].hold_back);
    assert_eq!(
        applied["spec"]["replicas"], 5,
        "the fought field keeps its live value"
    );
    assert_eq!(
        applied["spec"]["template"]["spec"]["containers"][0]["image"], "shop/api:1.5.0",
        "the rest is applied as desired"
    );
}

#[test]
fn hold_back_removes_a_field_the_live_object_does_not_have_and_finds_list_items_by_key() {
    let live = json!({"spec": {"containers": [{"name": "api", "image": "a:1"}]}});
    let manifest =
        json!({"spec": {"paused": true, "containers": [{"name": "api", "image": "a:2"}]}});
    let out = hold_back(
        &manifest,
        &live,
        &[
            path(&["spec", "paused"]),
            path(&["spec", "containers", "name=api", "image"]),
        ],
    );
    assert_eq!(
        out,
        json!({"spec": {"containers": [{"name": "api", "image": "a:1"}]}})
    );
}

#[test]
fn last_writer_reads_keyed_items_and_ignores_gitopsd() {
    let live = live_fought();
    let image = path(&[
        "spec",
        "template",
        "spec",
        "containers",
        "name=api",
        "image",
    ]);
    assert_eq!(
        last_writer(&live, &image),
        None,
        "only gitopsd owns the image"
    );
    assert_eq!(
        last_writer(&live, &path(&["spec", "replicas"])).as_deref(),
        Some("rogue-scaler")
    );
}

#[test]
fn a_foreign_field_is_corrected_by_removal_alone_and_given_up_when_it_keeps_coming_back() {
    let p = path(&["spec", "template", "spec", "hostNetwork"]);
    let mut foreign = item("api", Some(p.clone()), Severity::Critical, Action::Apply);
    foreign.foreign = Some(crate::classify::Foreign {
        manager: Some("kubectl-patch".into()),
    });
    let r = report(vec![foreign]);
    let mut t = FightTracker::default();
    let now = Instant::now();
    let digest = |_: &ObjectKey| Some("d1".to_owned());
    let live = |_: &ObjectKey| {
        Some(json!({"metadata": {"managedFields": [
            {"manager": "kubectl-patch", "operation": "Update", "time": "2026-11-23T10:01:00Z",
             "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:hostNetwork": {}}}}}}
        ]}}))
    };
    let d = t.decide(&r, &digest, &live, now);
    assert_eq!(d.corrections.len(), 1);
    let c = &d.corrections[0];
    assert_eq!(c.remove, vec![p.clone()]);
    assert!(!c.needs_apply(), "nothing but a removal: no apply");
    for i in 0..FIGHT_LIMIT {
        t.corrected(
            &key("api"),
            &c.fields,
            "d1",
            now + Duration::from_secs(i as u64),
        );
    }
    let d = t.decide(&r, &digest, &live, now + Duration::from_secs(10));
    assert!(d.corrections.is_empty());
    assert_eq!(d.unconvergeable.len(), 1);
    assert_eq!(
        d.unconvergeable[0].manager.as_deref(),
        Some("kubectl-patch")
    );
}

#[test]
fn an_object_deleted_after_each_recreation_is_given_up_naming_the_deleter() {
    let mut t = FightTracker::default();
    let r = report(vec![item("api", None, Severity::Critical, Action::Apply)]);
    let start = Instant::now();
    for round in 0..FIGHT_LIMIT {
        let now = start + Duration::from_secs(round as u64 * 5);
        let d = t.decide(&r, &|_| Some("d1".into()), &|_| None, now);
        assert_eq!(d.corrections.len(), 1, "round {round} creates it again");
        assert!(d.unconvergeable.is_empty());
        t.recreated(&key("api"), "d1", now);
        // Seen live in between, last written by the reaper.
        t.note_deleter(
            &key("api"),
            deletion_hint(&json!({"kind": "Deployment"}), Some(&live_fought())),
        );
    }
    assert_eq!(t.recreated_objects(), [key("api")]);
    let now = start + Duration::from_secs(60);
    let d = t.decide(&r, &|_| Some("d1".into()), &|_| None, now);
    assert!(d.corrections.is_empty(), "not created a fourth time");
    assert_eq!(d.unconvergeable.len(), 1);
    let u = &d.unconvergeable[0];
    assert_eq!((u.fought, u.corrections), (Fought::Deletion, FIGHT_LIMIT));
    assert!(
        u.to_string().starts_with(
            "Deployment shop-exp/api: created again 3 times and deleted again each time, by rogue-scaler"
        ),
        "{u}"
    );
    // A changed desired object is created again.
    let d = t.decide(&r, &|_| Some("d2".into()), &|_| None, now);
    assert_eq!(d.corrections.len(), 1);
}

#[test]
fn a_deletion_hint_names_the_ttl_controller_an_owner_or_the_last_writer() {
    let job = json!({"kind": "Job", "spec": {"ttlSecondsAfterFinished": 0}});
    assert_eq!(
        deletion_hint(&job, None).as_deref(),
        Some("the TTL-after-finished controller (ttlSecondsAfterFinished: 0)")
    );
    let cm = json!({"kind": "ConfigMap"});
    assert_eq!(deletion_hint(&cm, None), None);
    let owned = json!({"metadata": {"ownerReferences": [{"kind": "Widget", "name": "w"}]}});
    assert!(
        deletion_hint(&cm, Some(&owned))
            .unwrap_or_default()
            .starts_with("its owner Widget w")
    );
    let only_ours = json!({"metadata": {"managedFields": [{"manager": "gitopsd"}]}});
    assert_eq!(deletion_hint(&cm, Some(&only_ours)), None);
}

#[test]
fn a_controllers_status_writes_do_not_make_it_the_deleter() {
    let cm = json!({"kind": "ConfigMap"});
    let live = json!({"metadata": {"managedFields": [
        {"manager": "reaper", "time": "2026-11-23T10:00:00Z",
         "fieldsV1": "{\"f:metadata\":{\"f:annotations\":{}}}"},
        {"manager": "kube-controller-manager", "time": "2026-11-23T10:06:00Z",
         "subresource": "status", "fieldsV1": {"f:status": {}}}
    ]}});
    assert!(
        deletion_hint(&cm, Some(&live))
            .unwrap_or_default()
            .starts_with("reaper ")
    );
}

#[test]
fn field_paths_keep_their_json_shape() {
    // A field: its display string, in the drift item's `paths` list and the given-up `path`.
    let p = FieldPath(vec![
        PathSegment::Field("spec".into()),
        PathSegment::Field("containers".into()),
        PathSegment::Keyed(vec![("name".into(), "api".into())]),
        PathSegment::Field("image".into()),
    ]);
    let field = item("api", Some(p.clone()), Severity::High, Action::Apply);
    let json = serde_json::to_value(&field).expect("a drift item serializes");
    assert_eq!(json["paths"], json!(["spec.containers[name=api].image"]));
    let fought = Unconvergeable {
        object: key("api"),
        path: Some(p),
        severity: Severity::High,
        manager: None,
        corrections: FIGHT_LIMIT,
        fought: Fought::Field,
    };
    let json = serde_json::to_value(&fought).expect("serializes");
    assert_eq!(json["path"], json!("spec.containers[name=api].image"));

    // The whole object: no paths, and a deletion shown as `(the object)`.
    let object = item("api", None, Severity::High, Action::Apply);
    let json = serde_json::to_value(&object).expect("a drift item serializes");
    assert_eq!(json["paths"], json!([]));
    let deleted = Unconvergeable {
        path: None,
        fought: Fought::Deletion,
        ..fought
    };
    let json = serde_json::to_value(&deleted).expect("serializes");
    assert_eq!(json["path"], json!(DELETED));
    assert!(deleted.to_string().contains("created again"), "{deleted}");
}
