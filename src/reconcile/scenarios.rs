//! One scenario per safety rule of the reconcile (the list at the top of `reconcile/mod.rs`,
//! and the rules elsewhere in it), run against the fake cluster of [`super::harness`]: each
//! fails when its rule is broken, and runs in milliseconds. ARCHITECTURE.md ("Invariants")
//! names the scenario that guards each rule.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::harness::{
    FakeCluster, Fault, Harness, Step, TIER, config, configmap, deployment, key, tier_of,
};
use crate::live::ObjectKey;
use crate::state::{NOT_APPLIED, TierState};
use crate::status::SyncState;

fn cm(name: &str) -> ObjectKey {
    key("v1", "ConfigMap", name)
}

fn greeting(h: &Harness, name: &str) -> Option<Value> {
    h.cluster
        .get(&cm(name))
        .and_then(|o| o.pointer("/data/greeting").cloned())
}

fn last_error(h: &Harness) -> String {
    h.status(|s| s.last_error.clone()).unwrap_or_default()
}

/// A revision with ConfigMaps `a` and `b`, deployed: the start of the prune scenarios.
async fn deployed_a_and_b(h: &mut Harness) {
    let a = h.commit(&[
        ("a.yaml", &configmap("a", "hello")),
        ("b.yaml", &configmap("b", "hello")),
    ]);
    h.deploy(&a).await;
    assert!(h.cluster.exists(&cm("a")) && h.cluster.exists(&cm("b")));
    assert_eq!(h.sync(), SyncState::Synced, "{}", last_error(h));
}

#[tokio::test]
async fn a_first_revision_is_applied_and_recorded() {
    let mut h = Harness::new(&[]);
    let a = h.commit(&[("a.yaml", &configmap("a", "hello"))]);
    h.deploy(&a).await;
    assert!(h.cluster.exists(&cm("a")), "{}", last_error(&h));
    assert_eq!(h.sync(), SyncState::Synced);
    let state = h.state();
    assert!(state.inventory.contains_key(&cm("a")));
    assert_eq!(state.last_applied_revision.as_ref(), Some(&a));
}

/// Rule: nothing is applied or pruned until the tier's state (inventory, revisions) is read.
#[tokio::test]
async fn nothing_is_applied_or_pruned_before_the_state_is_read() {
    let mut h = Harness::new(&[]);
    // Left over from a sync before the restart: in the inventory, no longer in git.
    let old = configmap("old", "hello");
    let mut state = TierState::default();
    state.inventory.insert(cm("old"), "0123456789ab".into());
    h.cluster.set_state(TIER, state);
    let mut live: Value = serde_yaml::from_str(&old).expect("yaml");
    live["metadata"]["namespace"] = json!(TIER);
    live["metadata"]["labels"] = json!({(crate::render::TIER_LABEL): TIER});
    h.cluster.create_object(crate::diff::FIELD_MANAGER, live);

    h.cluster.set_state_unreadable(true);
    let a = h.commit(&[("a.yaml", &configmap("a", "hello"))]);
    h.deploy(&a).await;
    h.reconcile().await;
    assert!(
        h.cluster.log().is_empty(),
        "written before the state was read: {:?}",
        h.cluster.log()
    );
    assert_eq!(h.sync(), SyncState::Failed);
    assert!(
        last_error(&h).contains("gitopsd-state-web"),
        "{}",
        last_error(&h)
    );

    // Readable again: the pending revision goes, and the leftover is pruned.
    h.cluster.set_state_unreadable(false);
    h.reconcile().await;
    assert!(h.cluster.exists(&cm("a")), "{}", last_error(&h));
    assert!(!h.cluster.exists(&cm("old")));
}

/// Rule: the keys of objects about to be created are written to the inventory before the
/// apply, so a failed apply (or a daemon killed mid-apply) leaves them recorded.
#[tokio::test]
async fn new_keys_are_in_the_inventory_before_the_apply_and_stay_when_it_fails() {
    let mut h = Harness::new(&[]);
    h.cluster.inject(
        &cm("b"),
        Fault::Denied {
            webhook: "policy.example.com".into(),
        },
    );
    let a = h.commit(&[
        ("a.yaml", &configmap("a", "hello")),
        ("b.yaml", &configmap("b", "hello")),
    ]);
    h.deploy(&a).await;
    let log = h.cluster.log();
    let saved_with_b = log
        .iter()
        .position(|s| matches!(s, Step::StateSaved { keys, .. } if keys.contains(&cm("b"))));
    let applied_b = log.iter().position(|s| *s == Step::Applied(cm("b")));
    assert!(
        saved_with_b.is_some() && saved_with_b < applied_b,
        "the key was not saved before the apply: {log:?}"
    );
    assert_eq!(
        h.state().inventory.get(&cm("b")).map(String::as_str),
        Some(NOT_APPLIED),
        "a failed apply leaves the key recorded, as not applied"
    );
    assert!(!h.cluster.exists(&cm("b")));
    assert_eq!(h.sync(), SyncState::OutOfSync);
    assert!(
        last_error(&h).contains("policy.example.com"),
        "{}",
        last_error(&h)
    );
}

/// Rule: prune runs only when the newest render succeeded. The ref moved twice since the last
/// reconcile: to a revision without `b` (accepted), then to one that does not render (which
/// may well hold `b` again). The accepted set is reconciled, and `b` is not pruned.
#[tokio::test]
async fn a_revision_that_fails_to_render_prunes_nothing() {
    let mut h = Harness::new(&[]);
    deployed_a_and_b(&mut h).await;
    let only_a = h.commit(&[("a.yaml", &configmap("a", "hello"))]);
    let broken = h.commit(&[
        ("a.yaml", &configmap("a", "hello")),
        ("b.yaml", &configmap("b", "hello")),
        (
            "broken.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: [not, a, map\n",
        ),
    ]);
    h.reconciler.offer_revision(&only_a).await;
    h.reconciler.offer_revision(&broken).await;
    h.reconcile().await;
    h.reconcile().await;
    assert!(h.cluster.exists(&cm("b")), "pruned after a failed render");
    assert!(h.cluster.deleted().is_empty());
    assert_eq!(h.sync(), SyncState::Failed);

    // The ref moves on to a revision that renders: now `b` goes.
    let fixed = h.commit(&[("a.yaml", &configmap("a", "hello"))]);
    h.deploy(&fixed).await;
    assert!(!h.cluster.exists(&cm("b")), "{}", last_error(&h));
}

/// Rule: prune runs only when the newest validation succeeded (as above, the ref moved twice).
#[tokio::test]
async fn a_revision_that_fails_validation_prunes_nothing() {
    let mut h = Harness::new(&[]);
    deployed_a_and_b(&mut h).await;
    // An object outside the tier's namespaces blocks the revision.
    let outside = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: elsewhere\ndata:\n  greeting: hello\n";
    let only_a = h.commit(&[("a.yaml", &configmap("a", "hello"))]);
    let blocked = h.commit(&[
        ("a.yaml", &configmap("a", "hello")),
        ("b.yaml", &configmap("b", "hello")),
        ("c.yaml", outside),
    ]);
    h.reconciler.offer_revision(&only_a).await;
    h.reconciler.offer_revision(&blocked).await;
    h.reconcile().await;
    h.reconcile().await;
    assert!(
        h.cluster.exists(&cm("b")),
        "pruned after a failed validation"
    );
    assert!(h.cluster.deleted().is_empty());
    assert_eq!(h.sync(), SyncState::Failed, "{}", last_error(&h));

    let fixed = h.commit(&[("a.yaml", &configmap("a", "hello"))]);
    h.deploy(&fixed).await;
    assert!(!h.cluster.exists(&cm("b")), "{}", last_error(&h));
}

/// Rule: prune runs only when the newest fetch succeeded.
#[tokio::test]
async fn a_failed_fetch_prunes_nothing_until_a_fetch_succeeds() {
    let mut h = Harness::new(&[]);
    deployed_a_and_b(&mut h).await;
    let only_a = h.commit(&[("a.yaml", &configmap("a", "hello"))]);
    h.reconciler.offer_revision(&only_a).await;
    h.reconciler
        .source_failed("fetching refs/heads/main: connection reset");
    h.reconcile().await;
    assert!(h.cluster.exists(&cm("b")), "pruned while the fetch fails");
    assert_eq!(h.sync(), SyncState::Failed);

    h.reconciler.source_recovered();
    h.reconcile().await;
    assert!(!h.cluster.exists(&cm("b")), "{}", last_error(&h));
}

/// Rule: prune runs only when every object of the sync applied (a refused object may be the
/// replacement of one prune would delete).
#[tokio::test]
async fn a_failed_apply_prunes_nothing_until_every_object_applies() {
    let faults = [
        (
            Fault::Conflict {
                manager: "kubectl-edit".into(),
                field: ".data.greeting".into(),
            },
            "kubectl-edit",
        ),
        (
            Fault::Immutable {
                field: "data".into(),
            },
            "immutable",
        ),
        (
            Fault::Denied {
                webhook: "policy.example.com".into(),
            },
            "policy.example.com",
        ),
    ];
    for (fault, named) in faults {
        let mut h = Harness::new(&[]);
        deployed_a_and_b(&mut h).await;
        h.cluster.inject(&cm("c"), fault.clone());
        let b_to_c = h.commit(&[
            ("a.yaml", &configmap("a", "hello")),
            ("c.yaml", &configmap("c", "hello")),
        ]);
        h.deploy(&b_to_c).await;
        h.reconcile().await;
        assert!(
            h.cluster.exists(&cm("b")),
            "{fault:?}: pruned although c failed"
        );
        assert!(h.cluster.deleted().is_empty(), "{fault:?}");
        assert_eq!(h.sync(), SyncState::OutOfSync, "{fault:?}");
        assert!(last_error(&h).contains(named), "{}", last_error(&h));

        h.cluster.heal(&cm("c"));
        h.reconcile().await;
        assert!(h.cluster.exists(&cm("c")), "{fault:?}");
        assert!(!h.cluster.exists(&cm("b")), "{fault:?}: {}", last_error(&h));
    }
}

/// Rule: prune compares objects by identity (group, kind, namespace, name): a manifest moved to
/// another version of its group is the same object, never a prune and a create.
#[tokio::test]
async fn an_api_version_change_is_neither_a_prune_nor_a_create() {
    let hpa = |version: &str| {
        format!(
            "apiVersion: autoscaling/{version}\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: api\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: api}}\n  minReplicas: 1\n  maxReplicas: 3\n"
        )
    };
    let mut h = Harness::new(&[]);
    let v1 = h.commit(&[("hpa.yaml", &hpa("v1"))]);
    h.deploy(&v1).await;
    let before = h
        .cluster
        .get(&key("autoscaling/v1", "HorizontalPodAutoscaler", "api"))
        .unwrap_or_else(|| panic!("not applied: {}", last_error(&h)));
    h.cluster.clear_log();
    let seen = h.activities.all().len();
    let v2 = h.commit(&[("hpa.yaml", &hpa("v2"))]);
    h.deploy(&v2).await;
    h.reconcile().await;
    assert!(h.cluster.deleted().is_empty(), "{:?}", h.cluster.log());
    let after = h
        .cluster
        .get(&key("autoscaling/v2", "HorizontalPodAutoscaler", "api"))
        .expect("the object");
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert!(
        !h.activities.all()[seen..].iter().any(|a| matches!(
            a,
            crate::activity::Activity::ObjectApplied {
                outcome: crate::apply::Outcome::Created | crate::apply::Outcome::Pruned,
                ..
            }
        )),
        "{:?}",
        h.activities.all()
    );
    assert_eq!(h.state().inventory.len(), 2, "{:?}", h.state().inventory);
    assert_eq!(h.sync(), SyncState::Synced, "{}", last_error(&h));
}

/// Rule: a revision rolled back is not deployed again until the tier's ref moves.
#[tokio::test]
async fn a_rolled_back_revision_is_not_deployed_again_until_the_ref_moves() {
    let mut tier = tier_of(&config(
        "",
        &["rollback: {onHealthFailure: true, healthTimeout: 1s}"],
    ));
    // The deadline has passed as soon as a revision is seen unhealthy.
    if let Some(r) = tier.rollback.as_mut() {
        r.health_timeout = Duration::ZERO;
    }
    let mut h = Harness::with_tier(tier, FakeCluster::default());
    let api = key("apps/v1", "Deployment", "api");
    let image = |h: &Harness| {
        h.cluster
            .get(&api)
            .and_then(|d| d.pointer("/spec/template/spec/containers/0/image").cloned())
    };
    let a = h.commit(&[("api.yaml", &deployment("api", "api:1"))]);
    h.deploy(&a).await;
    assert_eq!(image(&h), Some(json!("api:1")), "{}", last_error(&h));
    assert_eq!(
        h.state().last_healthy_revision.as_ref(),
        Some(&a),
        "{}",
        last_error(&h)
    );

    h.cluster.set_ready(false);
    let b = h.commit(&[("api.yaml", &deployment("api", "api:2"))]);
    let out = h.deploy(&b).await;
    assert_eq!(image(&h), Some(json!("api:2")));
    assert!(out.wake_at.is_some(), "a rollback applies at once");
    assert_eq!(h.state().failed_revision.as_ref(), Some(&b));
    h.reconcile().await;
    assert_eq!(image(&h), Some(json!("api:1")), "not rolled back");

    // The ref has not moved: b is offered again, and stays out; after a restart too (the
    // state remembers it).
    for restart in [false, false, true, false] {
        if restart {
            h.restart();
        }
        h.reconciler.offer_revision(&b).await;
        h.reconcile().await;
        assert_eq!(
            image(&h),
            Some(json!("api:1")),
            "the rolled-back revision came back (restarted: {restart})"
        );
    }

    h.cluster.set_ready(true);
    let c = h.commit(&[("api.yaml", &deployment("api", "api:3"))]);
    h.deploy(&c).await;
    assert_eq!(image(&h), Some(json!("api:3")));
    assert_eq!(h.state().failed_revision, None);
}

/// The promotion gate: a revision goes to a tier with `promoteFrom` only once the earlier tier
/// recorded it healthy.
#[tokio::test]
async fn the_promotion_gate_holds_a_revision_until_the_earlier_tier_is_healthy_at_it() {
    let staging = "  - name: staging\n    ref: main\n    namespaces: [staging]\n";
    let tier = tier_of(&config(staging, &["promoteFrom: staging"]));
    let mut h = Harness::with_tier(tier, FakeCluster::default());
    let a = h.commit(&[("a.yaml", &configmap("a", "hello"))]);
    h.deploy(&a).await;
    h.reconcile().await;
    assert!(h.cluster.log().is_empty(), "{:?}", h.cluster.log());
    assert_eq!(h.sync(), SyncState::Blocked);
    assert_eq!(
        h.status(|s| s.held_by),
        Some(super::HoldKind::PromotionGate)
    );

    let mut staging_state = TierState::default();
    staging_state.record_healthy(&a, Utc::now(), None);
    h.cluster.set_state("staging", staging_state);
    h.reconcile().await;
    assert!(h.cluster.exists(&cm("a")), "{}", last_error(&h));
    assert_eq!(h.sync(), SyncState::Synced);

    // A newer revision is held; the set deployed before keeps being reconciled.
    let b = h.commit(&[("a.yaml", &configmap("a", "hello, b"))]);
    h.cluster.edit(
        &cm("a"),
        "kubectl-edit",
        &["data", "greeting"],
        json!("edited"),
    );
    h.deploy(&b).await;
    assert_eq!(
        greeting(&h, "a"),
        Some(json!("hello")),
        "drift left while held"
    );
    assert_eq!(h.sync(), SyncState::Blocked);
    assert_eq!(h.status(|s| s.held_revision.clone()), Some(b.clone()));
}

/// A clock the scenario moves.
fn settable_clock(at: DateTime<Utc>) -> (Arc<Mutex<DateTime<Utc>>>, super::Clock) {
    let now = Arc::new(Mutex::new(at));
    let read = now.clone();
    let clock: super::Clock = Arc::new(move || *read.lock().unwrap_or_else(|p| p.into_inner()));
    (now, clock)
}

/// Change windows: outside them a new revision waits, and so do non-critical corrections.
#[tokio::test]
async fn a_closed_change_window_holds_revisions_and_corrections() {
    let tier = tier_of(&config(
        "",
        &[r#"windows: [{kind: allow, schedule: "0 9 * * *", duration: 1h, timezone: UTC}]"#],
    ));
    let mut h = Harness::with_tier(tier, FakeCluster::default());
    let closed = Utc
        .with_ymd_and_hms(2026, 3, 4, 12, 0, 0)
        .single()
        .expect("time");
    let open = Utc
        .with_ymd_and_hms(2026, 3, 5, 9, 30, 0)
        .single()
        .expect("time");
    let (now, clock) = settable_clock(closed);
    h.reconciler.set_clock(clock);
    let a = h.commit(&[("a.yaml", &configmap("a", "hello"))]);
    h.deploy(&a).await;
    assert!(h.cluster.log().is_empty(), "{:?}", h.cluster.log());
    assert_eq!(h.sync(), SyncState::Blocked);
    assert_eq!(h.status(|s| s.held_by), Some(super::HoldKind::Window));

    *now.lock().expect("clock") = open;
    h.reconcile().await;
    assert!(h.cluster.exists(&cm("a")), "{}", last_error(&h));

    *now.lock().expect("clock") = closed + chrono::TimeDelta::days(1);
    h.cluster.edit(
        &cm("a"),
        "kubectl-edit",
        &["data", "greeting"],
        json!("edited"),
    );
    h.reconcile().await;
    h.reconcile().await;
    assert_eq!(
        greeting(&h, "a"),
        Some(json!("edited")),
        "corrected while closed"
    );
    assert_eq!(h.sync(), SyncState::Blocked, "{}", last_error(&h));

    *now.lock().expect("clock") = open + chrono::TimeDelta::days(1);
    h.reconcile().await;
    assert_eq!(greeting(&h, "a"), Some(json!("hello")));
}

/// The sync rule (docs/DESIGN.md, "Sync state"): drift leaves the tier OutOfSync unless each
/// item is ignored, or was corrected or pruned in this reconcile.
#[tokio::test]
async fn drift_left_alone_is_out_of_sync_and_ignored_drift_is_not() {
    let alert = "policy: {critical: alert, high: alert, medium: alert, low: alert}";
    let ignore = "policy: {critical: ignore, high: ignore, medium: ignore, low: ignore}";
    for (policy, expected) in [
        (alert, SyncState::OutOfSync),
        (ignore, SyncState::Synced),
        ("policy: {}", SyncState::Synced),
    ] {
        let mut h = Harness::new(&[policy]);
        let a = h.commit(&[("a.yaml", &configmap("a", "hello"))]);
        h.deploy(&a).await;
        h.cluster.edit(
            &cm("a"),
            "kubectl-edit",
            &["data", "greeting"],
            json!("edited"),
        );
        h.reconcile().await;
        assert_eq!(h.sync(), expected, "{policy}: {}", last_error(&h));
        let corrected = policy == "policy: {}";
        let value = if corrected { "hello" } else { "edited" };
        assert_eq!(greeting(&h, "a"), Some(json!(value)), "{policy}");
    }
}

/// The fight guard: a field changed back after each of FIGHT_LIMIT corrections is held back and
/// reported unconvergeable, naming the manager that writes it.
#[tokio::test]
async fn a_fight_stops_after_the_limit_and_names_the_other_manager() {
    let mut h = Harness::new(&[]);
    let a = h.commit(&[("a.yaml", &configmap("a", "hello"))]);
    h.deploy(&a).await;
    for round in 0..crate::policy::FIGHT_LIMIT {
        h.cluster.edit(
            &cm("a"),
            "rival-controller",
            &["data", "greeting"],
            json!("mine"),
        );
        h.reconcile().await;
        assert_eq!(greeting(&h, "a"), Some(json!("hello")), "round {round}");
    }
    h.cluster.clear_log();
    h.cluster.edit(
        &cm("a"),
        "rival-controller",
        &["data", "greeting"],
        json!("mine"),
    );
    h.reconcile().await;
    h.reconcile().await;
    assert_eq!(greeting(&h, "a"), Some(json!("mine")), "still fighting");
    assert!(h.cluster.applied().is_empty(), "{:?}", h.cluster.log());
    let unconvergeable = h.status(|s| s.unconvergeable.clone());
    assert_eq!(unconvergeable.len(), 1, "{unconvergeable:?}");
    assert_eq!(
        unconvergeable[0].manager.as_deref(),
        Some("rival-controller")
    );
    assert_eq!(h.sync(), SyncState::OutOfSync);
}

/// The prune guard: a prune of most of the inventory is refused whole, and the tier is not
/// Synced while objects that left git stay.
#[tokio::test]
async fn a_refused_prune_deletes_nothing_and_is_not_synced() {
    let mut h = Harness::new(&[]);
    let names = ["a", "b", "c", "d"];
    let all: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("{n}.yaml"), configmap(n, "hello")))
        .collect();
    let files: Vec<(&str, &str)> = all.iter().map(|(f, c)| (f.as_str(), c.as_str())).collect();
    let a = h.commit(&files);
    h.deploy(&a).await;
    assert_eq!(h.sync(), SyncState::Synced, "{}", last_error(&h));
    let only_a = h.commit(&files[..1]);
    h.deploy(&only_a).await;
    for round in 0..2 {
        assert!(h.cluster.deleted().is_empty(), "round {round}");
        assert_eq!(h.sync(), SyncState::OutOfSync, "round {round}");
        assert!(h.status(|s| s.prune_refused.is_some()), "round {round}");
        h.reconcile().await;
    }
}

/// Ownership: an existing object the tier did not create is not taken (unless `adopt:` names
/// it), and the whole revision waits: nothing of it is applied.
#[tokio::test]
async fn an_object_the_tier_did_not_create_blocks_the_revision() {
    let mut h = Harness::new(&[]);
    let mut theirs: Value = serde_yaml::from_str(&configmap("a", "theirs")).expect("yaml");
    theirs["metadata"]["namespace"] = json!(TIER);
    h.cluster.create_object("kubectl-create", theirs);
    h.cluster.clear_log();
    let a = h.commit(&[
        ("a.yaml", &configmap("a", "hello")),
        ("b.yaml", &configmap("b", "hello")),
    ]);
    h.deploy(&a).await;
    h.reconcile().await;
    assert!(h.cluster.applied().is_empty(), "{:?}", h.cluster.log());
    assert_eq!(greeting(&h, "a"), Some(json!("theirs")));
    assert!(!h.state().inventory.contains_key(&cm("b")));
    assert_eq!(h.sync(), SyncState::Failed, "{}", last_error(&h));
    // A refused revision was not applied: it is never recorded healthy.
    assert_eq!(h.state().last_healthy_revision, None);
}

/// Prune deletes nothing on a guess: when it cannot read a candidate from the API server, it
/// skips this time, says why, and prunes once it can.
#[tokio::test]
async fn prune_skips_what_it_cannot_read_and_says_so() {
    let mut h = Harness::new(&[]);
    deployed_a_and_b(&mut h).await;
    h.cluster.set_reads_failing(true);
    let only_a = h.commit(&[("a.yaml", &configmap("a", "hello"))]);
    h.deploy(&only_a).await;
    assert!(h.cluster.exists(&cm("b")), "pruned without reading it");
    let notes = h.status(|s| s.last_sync.as_ref().map(|r| r.prune_notes.clone()));
    assert!(
        notes
            .iter()
            .flatten()
            .any(|n| n.contains("prune skipped: cannot read")),
        "{notes:?}"
    );
    h.reconcile().await;
    assert!(h.cluster.exists(&cm("b")), "pruned without reading it");
    assert!(h.cluster.deleted().is_empty());

    h.cluster.set_reads_failing(false);
    h.reconcile().await;
    assert!(!h.cluster.exists(&cm("b")), "{}", last_error(&h));
}

/// Leadership: once this replica stops leading, it writes no tier state, and so creates no
/// object whose key it could not record first.
#[tokio::test]
async fn a_replica_that_stopped_leading_writes_no_state_and_creates_nothing() {
    let mut h = Harness::new(&[]);
    let lost = tokio_util::sync::CancellationToken::new();
    h.reconciler.set_write_guard(lost.clone());
    deployed_a_and_b(&mut h).await;
    lost.cancel();
    h.cluster.clear_log();
    let with_c = h.commit(&[
        ("a.yaml", &configmap("a", "hello")),
        ("b.yaml", &configmap("b", "hello")),
        ("c.yaml", &configmap("c", "hello")),
    ]);
    h.deploy(&with_c).await;
    assert!(
        !h.cluster
            .log()
            .iter()
            .any(|s| matches!(s, Step::StateSaved { .. } | Step::Applied(_))),
        "{:?}",
        h.cluster.log()
    );
    assert!(!h.cluster.exists(&cm("c")));
    assert_eq!(h.sync(), SyncState::Failed);
}

/// SIGTERM mid-apply: what was applied goes into the state, nothing is pruned, and the next
/// leader applies only the rest, then prunes exactly what left git.
#[tokio::test]
async fn a_sync_stopped_mid_apply_records_what_was_applied_and_the_next_leader_finishes_it() {
    let mut h = Harness::new(&[]);
    deployed_a_and_b(&mut h).await;
    let names = ["c", "d", "e", "f"];
    let mut files: Vec<(String, String)> = names
        .iter()
        .map(|n| (format!("{n}.yaml"), configmap(n, "hello")))
        .collect();
    files.push(("a.yaml".into(), configmap("a", "hello")));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(f, c)| (f.as_str(), c.as_str()))
        .collect();
    let b_to_cdef = h.commit(&refs);
    h.cluster.stop_after(2, h.cancel.clone());
    h.cluster.clear_log();
    h.deploy(&b_to_cdef).await;
    let applied = h.cluster.applied();
    assert_eq!(applied.len(), 2, "{:?}", h.cluster.log());
    assert!(h.cluster.deleted().is_empty(), "pruned while stopping");
    let state = h.state();
    for n in names {
        let recorded = state.inventory.get(&cm(n)).map(String::as_str);
        if applied.contains(&cm(n)) {
            assert!(
                recorded.is_some_and(|d| d != NOT_APPLIED),
                "{n}: {recorded:?}"
            );
        } else {
            assert_eq!(recorded, Some(NOT_APPLIED), "{n}");
        }
    }

    h.restart();
    h.cluster.clear_log();
    h.deploy(&b_to_cdef).await;
    let mut rest = h.cluster.applied();
    rest.sort();
    let mut expected: Vec<ObjectKey> = names
        .iter()
        .map(|n| cm(n))
        .filter(|k| !applied.contains(k))
        .collect();
    expected.sort();
    assert_eq!(rest, expected, "the next leader applies only the rest");
    assert_eq!(h.cluster.deleted(), vec![cm("b")]);
    assert_eq!(h.sync(), SyncState::Synced, "{}", last_error(&h));
}

/// The API server down for everything: the sync fails, nothing is pruned, and once it is back
/// the tier converges; an object deleted meanwhile is created again (policy `apply`).
#[tokio::test]
async fn an_api_server_that_is_down_changes_nothing_and_the_tier_converges_after() {
    let mut h = Harness::new(&[]);
    deployed_a_and_b(&mut h).await;
    h.cluster.set_api_down(true);
    let only_a = h.commit(&[("a.yaml", &configmap("a", "hello, again"))]);
    h.deploy(&only_a).await;
    h.reconcile().await;
    assert!(h.cluster.exists(&cm("b")));
    assert!(h.cluster.deleted().is_empty());
    assert_ne!(h.sync(), SyncState::Synced);
    assert_eq!(greeting(&h, "a"), Some(json!("hello")));

    h.cluster.set_api_down(false);
    h.cluster.delete_object(&cm("a"));
    h.reconcile().await;
    h.reconcile().await;
    assert_eq!(greeting(&h, "a"), Some(json!("hello, again")));
    assert!(!h.cluster.exists(&cm("b")));
    assert_eq!(h.sync(), SyncState::Synced, "{}", last_error(&h));
}

/// A Job with `ttlSecondsAfterFinished` runs once per manifest: once it finished and the TTL
/// controller deleted it, it is neither drift nor created again until git changes it.
#[tokio::test]
async fn a_finished_ttl_job_is_not_created_again_until_git_changes_it() {
    let job_manifest = |image: &str| {
        format!(
            r#"apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  ttlSecondsAfterFinished: 60
  template:
    spec:
      restartPolicy: Never
      securityContext: {{runAsNonRoot: true, runAsUser: 10001}}
      containers:
        - name: migrate
          image: {image}
"#
        )
    };
    let job = key("batch/v1", "Job", "migrate");
    let mut h = Harness::new(&[]);
    let a = h.commit(&[("job.yaml", &job_manifest("migrate:1"))]);
    h.deploy(&a).await;
    assert!(h.cluster.exists(&job), "{}", last_error(&h));
    // The Job controller marks it complete; a reconcile sees it finished.
    h.cluster.edit(
        &job,
        "kube-controller-manager",
        &["status"],
        json!({"conditions": [{"type": "Complete", "status": "True"}]}),
    );
    h.reconcile().await;
    assert_eq!(h.state().finished_jobs.len(), 1, "{}", last_error(&h));

    // The TTL controller deletes it.
    h.cluster.delete_object(&job);
    h.cluster.clear_log();
    h.reconcile().await;
    h.reconcile().await;
    assert!(!h.cluster.exists(&job), "created again");
    assert!(h.cluster.applied().is_empty(), "{:?}", h.cluster.log());
    assert_eq!(h.sync(), SyncState::Synced, "{}", last_error(&h));

    let b = h.commit(&[("job.yaml", &job_manifest("migrate:2"))]);
    h.deploy(&b).await;
    assert!(h.cluster.exists(&job), "a changed Job runs again");
}
