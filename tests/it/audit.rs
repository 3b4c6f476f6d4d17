//! The audit log and Kubernetes Events: `gitopsd audit verify` on a log written by the real
//! module, and a real daemon on the local cluster writing both.

use crate::reconcile_support;
use crate::support;

use std::time::Duration;

use gitopsd::activity::{Activity, Observer};
use gitopsd::apply::Outcome;
use gitopsd::live::ObjectKey;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};
use reconcile_support::{
    DaemonExtra, Fixture, IMAGE_1, TierExtra, base_files, http_request, records,
};
use serde_json::Value;
use support::{gitopsd, stderr, stdout};

fn applied(name: &str) -> Activity {
    Activity::ObjectApplied {
        tier: "validation".into(),
        revision: "0123456789abcdef0123456789abcdef01234567".into(),
        object: ObjectKey {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("shop".into()),
            name: name.into(),
        },
        outcome: Outcome::Configured,
        message: None,
    }
}

#[test]
fn audit_verify_accepts_an_intact_log_and_names_the_line_after_an_edited_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    {
        let log = gitopsd::audit::AuditLog::open(&path).unwrap();
        for i in 0..20 {
            log.observe(&applied(&format!("cm-{i}")));
        }
    }
    let file = path.to_str().unwrap();
    let out = gitopsd(&["audit", "verify", file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ok: 20 lines, chain intact\n");

    // Someone changes what line 16 says happened: line 17 no longer chains to it.
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert!(lines[15].contains("\"cm-15\""), "{}", lines[15]);
    lines[15] = lines[15].replace("\"configured\"", "\"unchanged\"");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = gitopsd(&["audit", "verify", file]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "line 17: prev does not match the sha256 of line 16 (edited, removed or reordered line)\n"
    );
}

#[test]
fn audit_verify_exits_2_when_the_file_cannot_be_read() {
    let out = gitopsd(&["audit", "verify", "/nonexistent/gitopsd/audit.log"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/gitopsd/audit.log"),
        "{}",
        stderr(&out)
    );
}

async fn tier_events(client: &Client, f: &Fixture) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), &f.state_ns);
    let regarding = gitopsd::state::StateStore::config_map_name(&f.tier);
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding.as_str())
        })
        .collect()
}

fn brief(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} x{}: {}",
                e.type_.as_deref().unwrap_or("-"),
                e.reason.as_deref().unwrap_or("-"),
                e.series.as_ref().map(|s| s.count).unwrap_or(1),
                e.note.as_deref().unwrap_or("-")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

const TOKEN: &str = "audit-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_records_its_story_as_events_and_a_chained_audit_log() {
    let client = support::client().await;
    // Syncs over the API need the bearer token; who asked is recorded.
    let secrets = tempfile::tempdir().expect("temp dir");
    let token_file = secrets.path().join("api-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write the token");
    let mut f = Fixture::with_daemon(
        "audit",
        base_files(IMAGE_1),
        TierExtra::default(),
        DaemonExtra {
            http: vec![format!("tokenFile: {}", token_file.display())],
            ..DaemonExtra::default()
        },
    );
    let sha = f.head();
    f.start();
    f.wait_synced_healthy(&sha, Duration::from_secs(45)).await;

    // Events about the tier's state ConfigMap: the sync and a summary of what it created.
    let events = support::eventually(
        "SyncSucceeded and Applied events",
        Duration::from_secs(20),
        || async {
            let events = tier_events(&client, &f).await;
            let has = |reason: &str| events.iter().any(|e| e.reason.as_deref() == Some(reason));
            (has("SyncSucceeded") && has("Applied")).then_some(events)
        },
    )
    .await;
    let applied: Vec<&Event> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Applied"))
        .collect();
    assert_eq!(
        applied.len(),
        1,
        "one summary, not one per object:\n{}",
        brief(&events)
    );
    let note = applied[0].note.as_deref().unwrap_or_default();
    assert!(
        note.starts_with(&format!("{}: 8 created: ", &sha[..7])),
        "{note}"
    );
    for e in &events {
        let r = e.regarding.as_ref().expect("regarding");
        assert_eq!(r.kind.as_deref(), Some("ConfigMap"));
        assert_eq!(r.namespace.as_deref(), Some(f.state_ns.as_str()));
        assert_eq!(e.reporting_controller.as_deref(), Some("gitopsd"));
        assert_eq!(e.type_.as_deref(), Some("Normal"), "{}", brief(&events));
    }

    // Three syncs asked for through the API, one after the other: one Event with a series.
    for n in 1..=3 {
        let (code, body) = http_request(
            f.port,
            "POST",
            &format!("/api/v1/tiers/{}/sync", f.tier),
            &[
                ("Authorization", &format!("Bearer {TOKEN}")),
                ("X-Gitopsd-User", "audit-test"),
            ],
            b"",
        )
        .expect("POST sync");
        assert_eq!(code, 202, "{body}");
        f.wait_status(&format!("trigger sync {n}"), Duration::from_secs(30), |s| {
            let triggers = records(s)
                .iter()
                .filter(|r| r["reason"] == "trigger")
                .count();
            (triggers >= n).then_some(())
        })
        .await;
    }
    let events = support::eventually(
        "the trigger syncs in one Event series",
        Duration::from_secs(20),
        || async {
            let events = tier_events(&client, &f).await;
            let triggered: Vec<Event> = events
                .iter()
                .filter(|e| e.note.as_deref().is_some_and(|n| n.contains("(trigger)")))
                .cloned()
                .collect();
            let count = triggered
                .first()
                .and_then(|e| e.series.as_ref())
                .map(|s| s.count)
                .unwrap_or(1);
            (triggered.len() > 1 || count >= 3).then_some(events)
        },
    )
    .await;
    let triggered: Vec<&Event> = events
        .iter()
        .filter(|e| e.note.as_deref().is_some_and(|n| n.contains("(trigger)")))
        .collect();
    assert_eq!(
        triggered.len(),
        1,
        "identical events are aggregated:\n{}",
        brief(&events)
    );
    assert_eq!(triggered[0].reason.as_deref(), Some("SyncSucceeded"));
    assert_eq!(triggered[0].series.as_ref().map(|s| s.count), Some(3));

    // The audit log: the first sync and each object it created, chained.
    let path = support::audit_log_in(&f.dir.path().join("workdir"));
    let lines = audit_lines(&path);
    let sync_lines = lines.iter().filter(|l| l["event"] == "sync").count();
    let applies: Vec<&Value> = lines.iter().filter(|l| l["event"] == "apply").collect();
    assert!(sync_lines >= 4, "first sync and three triggers: {lines:#?}");
    let manual: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "manual-sync")
        .collect();
    assert_eq!(manual.len(), 3, "who asked for each sync: {lines:#?}");
    assert!(
        manual.iter().all(|l| l.to_string().contains("audit-test")),
        "{manual:#?}"
    );
    assert_eq!(applies.len(), 8, "{lines:#?}");
    assert!(
        applies
            .iter()
            .all(|l| l["outcome"] == "created" && l["revision"] == sha.as_str())
    );
    let out = gitopsd(&["audit", "verify", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    // A restart continues the chain: seq goes on, and verify still passes.
    let before = lines.len();
    f.terminate(Duration::from_secs(30)).expect("SIGTERM");
    f.start();
    f.wait_status("a sync after the restart", Duration::from_secs(45), |s| {
        (s["sync"] == "Synced").then_some(())
    })
    .await;
    let lines = support::eventually(
        "an audit line after the restart",
        Duration::from_secs(20),
        || {
            let lines = audit_lines(&path);
            async move { (lines.len() > before).then_some(lines) }
        },
    )
    .await;
    assert_eq!(
        lines[before]["seq"],
        before as u64 + 1,
        "{:#?}",
        lines[before]
    );
    let out = gitopsd(&["audit", "verify", path.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).starts_with("ok: "), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_may_regard_a_state_configmap_that_does_not_exist_yet() {
    use gitopsd::events::{EventType, Note, Publisher};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::PostParams;

    support::with_namespace("events-regarding", |client, ns| async move {
        let mut publisher = Publisher::new(client.clone(), &ns);
        let note = |message: &str| Note {
            tier: "later".into(),
            type_: EventType::Normal,
            reason: "SyncSucceeded",
            action: "Sync",
            message: message.into(),
        };
        // The API server takes an Event about an object that does not exist (yet).
        publisher
            .publish(&note("before the state"))
            .await
            .expect("an Event about a missing ConfigMap is accepted");
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("gitopsd-state-later".into());
        let cm = cms
            .create(&PostParams::default(), &cm)
            .await
            .expect("create");
        for _ in 0..2 {
            publisher
                .publish(&note("after the state"))
                .await
                .expect("publish");
        }
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        let list = events
            .list(&ListParams::default())
            .await
            .expect("list")
            .items;
        assert_eq!(list.len(), 2, "{}", brief(&list));
        let before = list
            .iter()
            .find(|e| e.note.as_deref() == Some("before the state"))
            .expect("the first Event");
        let r = before.regarding.as_ref().expect("regarding");
        assert_eq!(r.name.as_deref(), Some("gitopsd-state-later"));
        assert_eq!(r.uid, None);
        assert!(before.series.is_none());
        let after = list
            .iter()
            .find(|e| e.note.as_deref() == Some("after the state"))
            .expect("the second Event");
        // Once the ConfigMap exists its uid is in the reference (kubectl describe finds it),
        // and the repeat is counted in the Event's series.
        assert_eq!(
            after.regarding.as_ref().and_then(|r| r.uid.clone()),
            cm.metadata.uid
        );
        assert_eq!(after.series.as_ref().map(|s| s.count), Some(2));
    })
    .await;
}
