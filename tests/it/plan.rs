//! Issue 15, bugs b and f, against the real daemon (`gitopsd run`) on the local cluster: a
//! rollout's health deadline survives restarts, a revision blocked by validation is reported
//! as itself with the reason, and a refused prune is not reported as a clean sync.
//!
//! Each test has its own repo, tier, namespaces and daemon (tests/reconcile_support).

use crate::reconcile_support;
use crate::support;

use std::time::Duration;

use reconcile_support::{
    Fixture, IMAGE_1, IMAGE_2, TierExtra, base_files, brief_status, deployment, records,
};

const FIRST_SYNC: Duration = Duration::from_secs(60);
const CHANGE: Duration = Duration::from_secs(45);

/// The notes of the Events regarding the tier's state ConfigMap with `reason`.
async fn events(client: &kube::Client, f: &Fixture, reason: &str) -> Vec<String> {
    f.state_events(client, reason)
        .await
        .into_iter()
        .map(|e| e.note.unwrap_or_default())
        .collect()
}

/// Bug b: the health deadline of a rollout is kept in the tier state, so a daemon restarted
/// more often than `rollback.healthTimeout` still rolls an unhealthy revision back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_deadline_survives_restarts() {
    let extra = TierExtra(vec![
        "rollback: {onHealthFailure: true, healthTimeout: 12s}".into(),
    ]);
    let (mut f, first) = Fixture::new("deadline", base_files(IMAGE_1), extra)
        .started(FIRST_SYNC)
        .await;

    f.write_files(&vec![(
        "base/deployment.yaml".to_owned(),
        deployment(IMAGE_2, true),
    )]);
    let bad = f.commit("api 1.4.3, never ready");
    f.wait_status("the bad revision applied", CHANGE, |s| {
        (s["revision"] == bad.as_str()).then_some(())
    })
    .await;
    // Restart the daemon every time it has reconciled the bad revision again after a restart,
    // which is well within the 12 s timeout; the deadline counted from the first apply passes
    // anyway, and some daemon must roll back.
    let mut restarts = 0;
    loop {
        let s = f.status();
        if s["rollbacks"] == 1 {
            break;
        }
        assert!(
            restarts < 12,
            "no rollback after {restarts} restarts: {}",
            brief_status(&s)
        );
        // Let this daemon reconcile once (its status shows a revision), then restart it.
        f.wait_status("a reconcile after the restart", CHANGE, |s| {
            (!s["revision"].is_null() || s["rollbacks"] == 1).then_some(())
        })
        .await;
        if f.status()["rollbacks"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        f.kill();
        f.start();
        restarts += 1;
    }
    let s = f.wait_synced_healthy(&first, CHANGE).await;
    assert_eq!(s["failedRevision"], bad.as_str(), "{}", brief_status(&s));
    assert!(
        restarts >= 2,
        "the test restarted the daemon {restarts} times"
    );
}

/// Bug f: a revision blocked by validation is reported (Event, history record, audit) as the
/// blocked revision with the reason, not as a sync of the previous one that "failed" with
/// "0 objects failed to apply".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_revision_is_reported_as_itself_with_the_reason() {
    let client = support::client().await;
    let (f, first) = Fixture::new("blocked", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;

    // A Namespace the tier does not list: a blocking finding (`namespace-object`).
    f.write_files(&vec![(
        "base/other.yaml".to_owned(),
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: not-{}\n",
            f.tier
        ),
    )]);
    let blocked = f.commit("a namespace the tier does not own");
    let s = f
        .wait_status("the blocked revision", CHANGE, |s| {
            (s["sourceRevision"] == blocked.as_str() && s["sync"] == "Failed").then(|| s.clone())
        })
        .await;
    assert_eq!(s["revision"], first.as_str(), "{}", brief_status(&s));

    let short = &blocked[..7];
    let notes = support::eventually(
        "a SyncFailed Event naming the blocked revision",
        CHANGE,
        || {
            let client = client.clone();
            let f = &f;
            async move {
                let notes = events(&client, f, "SyncFailed").await;
                (!notes.is_empty()).then_some(notes)
            }
        },
    )
    .await;
    for note in &notes {
        assert!(
            !note.contains("0 objects failed to apply"),
            "a blocked revision is not an apply failure: {note}"
        );
        assert!(
            note.contains(short),
            "names the blocked revision {short}: {note}"
        );
        assert!(note.contains("namespace"), "says why: {note}");
    }
    let s = f.status();
    let record = records(&s)
        .into_iter()
        .find(|r| r["revision"] == blocked.as_str())
        .unwrap_or_else(|| panic!("a history record of {blocked}: {}", brief_status(&s)));
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("blocked")),
        "{record}"
    );
}
