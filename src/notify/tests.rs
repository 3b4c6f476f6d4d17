use std::path::Path;
use std::time::Duration;

use super::*;
use crate::activity::Activity;
use crate::apply::Tally;
use crate::classify::{BuiltinRule, DriftItem, RuleId};
use crate::config::Config;
use crate::live::ObjectKey;

fn config(extra: &str) -> Config {
    let text = format!(
        "source: {{url: /srv/config}}\ntiers:\n  - {{name: dev, ref: main, namespaces: [dev]}}\n  - {{name: prod, ref: main, namespaces: [prod], promoteFrom: dev}}\n{extra}"
    );
    Config::parse(&text, Path::new("gitopsd.yaml")).expect("valid config")
}

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
        .expect("time")
        .with_timezone(&Utc)
}

fn rev(c: char) -> Revision {
    Revision::new(c.to_string().repeat(40))
}

fn sync(tier: &str, revision: Revision, result: SyncState, error: Option<&str>) -> Activity {
    Activity::SyncFinished {
        tier: tier.into(),
        revision,
        reason: "interval".into(),
        result,
        duration: Duration::from_millis(10),
        outcomes: Tally::default(),
        error: error.map(str::to_owned),
        notable: true,
        window_closed: false,
    }
}

fn drift(tier: &str, severities: &[(Severity, Action)]) -> Activity {
    Activity::DriftFound {
        tier: tier.into(),
        revision: rev('a'),
        items: severities
            .iter()
            .enumerate()
            .map(|(i, (severity, action))| DriftItem {
                key: ObjectKey {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    namespace: Some(tier.into()),
                    name: format!("cm-{i}"),
                },
                field_path: None,
                desired: None,
                live: None,
                severity: *severity,
                rule: RuleId::Builtin(BuiltinRule::ObjectDeleted),
                action: *action,
                foreign: None,
                reason: None,
            })
            .collect(),
    }
}

fn blocked(kind: HoldKind) -> Activity {
    Activity::PromotionBlocked {
        tier: "prod".into(),
        revision: rev('b'),
        reason: "held".into(),
        kind,
    }
}

fn events_of(c: &Config, activities: &[Activity]) -> Vec<(NotifyEvent, String)> {
    told_of(c, activities)
        .into_iter()
        .map(|n| (n.event, n.tier))
        .collect()
}

fn told_of(c: &Config, activities: &[Activity]) -> Vec<Notification> {
    let mut events = Events::new(&c.tiers);
    activities
        .iter()
        .filter_map(|a| events.event(a, at()))
        .collect()
}

#[test]
fn a_failing_sync_is_told_once_until_it_succeeds_or_fails_otherwise() {
    let c = config("");
    let fail = |r, e| sync("dev", r, SyncState::Failed, Some(e));
    let told = told_of(
        &c,
        &[
            sync("dev", rev('a'), SyncState::Synced, None),
            fail(rev('a'), "bad yaml"),
            fail(rev('a'), "bad yaml"),
            fail(rev('b'), "bad yaml"),
            sync("dev", rev('c'), SyncState::Synced, None),
            sync("dev", rev('c'), SyncState::OutOfSync, None),
            fail(rev('b'), "bad yaml"),
        ],
    );
    let seen: Vec<(NotifyEvent, &str, bool)> = told
        .iter()
        .map(|n| (n.event, n.revision.as_str(), n.resolved))
        .collect();
    let (a, b, c) = (rev('a'), rev('b'), rev('c'));
    assert_eq!(
        seen,
        vec![
            (NotifyEvent::SyncFailed, a.as_str(), false),
            (NotifyEvent::SyncFailed, b.as_str(), false),
            // Over: told once, so that an alert resolves.
            (NotifyEvent::SyncFailed, c.as_str(), true),
            (NotifyEvent::SyncFailed, b.as_str(), false),
        ]
    );
    assert_eq!(
        told[2].summary,
        "tier dev: syncs again at ccccccc (failed at bbbbbbb)"
    );
}

#[test]
fn only_gates_not_windows_and_only_the_last_tiers_health_are_events() {
    let c = config("");
    let healthy = |tier: &str| Activity::RevisionHealthy {
        tier: tier.into(),
        revision: rev('c'),
        since_arrival: Duration::from_secs(1),
    };
    let told = events_of(
        &c,
        &[
            blocked(HoldKind::Window),
            blocked(HoldKind::PromotionGate),
            blocked(HoldKind::Signature),
            healthy("dev"),
            healthy("prod"),
            Activity::RolledBack {
                tier: "dev".into(),
                from: rev('d'),
                to: rev('c'),
                reason: "not healthy".into(),
            },
        ],
    );
    let e = |e, t: &str| (e, t.to_owned());
    assert_eq!(
        told,
        vec![
            e(NotifyEvent::PromotionBlocked, "prod"),
            e(NotifyEvent::PromotionBlocked, "prod"),
            e(NotifyEvent::RevisionHealthy, "prod"),
            e(NotifyEvent::RolledBack, "dev"),
        ]
    );
}

#[test]
fn drift_takes_the_highest_severity_of_what_is_not_ignored() {
    let c = config("");
    let mut events = Events::new(&c.tiers);
    let n = events
        .event(
            &drift(
                "dev",
                &[
                    (Severity::Low, Action::Alert),
                    (Severity::Critical, Action::Ignore),
                    (Severity::High, Action::Apply),
                ],
            ),
            at(),
        )
        .expect("drift told");
    assert_eq!(n.severity, Severity::High);
    assert_eq!(n.details.len(), 2, "{:?}", n.details);
    assert!(
        events
            .event(&drift("dev", &[(Severity::Critical, Action::Ignore)]), at())
            .is_none(),
        "only ignored drift: nothing to tell"
    );
}

#[test]
fn routes_match_tier_event_and_drift_threshold_each_sink_once() {
    let c = config(
        "notifications:\n  sinks:\n    - {name: all, slack: {urlFile: /u}}\n    - {name: prod-drift, slack: {urlFile: /u}}\n    - {name: fails, slack: {urlFile: /u}}\n  routes:\n    - {sink: all}\n    - {sink: all, events: [sync-failed]}\n    - {sink: prod-drift, tiers: [prod], events: [drift-found], minSeverity: medium}\n    - {sink: fails, events: [sync-failed, rolled-back]}\n",
    );
    let n = c.notifications.expect("configured");
    let names: Vec<String> = n.sinks.iter().map(|s| s.name.clone()).collect();
    let routes = Routes::new(&n.routes, &names);
    let mut events = Events::new(&c.tiers);
    let mut sinks = |a: &Activity| {
        let n = events.event(a, at()).expect("an event");
        routes.sinks_for(&n)
    };
    assert_eq!(
        sinks(&sync("dev", rev('a'), SyncState::Failed, Some("x"))),
        [0, 2]
    );
    // Default threshold critical: high drift goes nowhere but the medium route's sink.
    assert_eq!(
        sinks(&drift("prod", &[(Severity::High, Action::Alert)])),
        [1]
    );
    assert_eq!(
        sinks(&drift("dev", &[(Severity::High, Action::Alert)])),
        Vec::<usize>::new()
    );
    assert_eq!(
        sinks(&drift("prod", &[(Severity::Critical, Action::Alert)])),
        [0, 1]
    );
    assert_eq!(
        sinks(&drift("prod", &[(Severity::Low, Action::Alert)])),
        Vec::<usize>::new()
    );
    assert_eq!(sinks(&blocked(HoldKind::Soak)), [0]);
}

fn notification() -> Notification {
    Notification {
        event: NotifyEvent::SyncFailed,
        tier: "prod".into(),
        revision: rev('a'),
        severity: Severity::High,
        summary: "tier prod: sync of aaaaaaa failed".into(),
        details: vec!["base/x.yaml: bad".into()],
        at: at(),
        resolved: false,
    }
}

#[test]
fn the_webhook_body_is_the_notification_and_its_signature_is_hmac_sha256() {
    let body = webhook_body(&notification());
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["event"], "sync-failed");
    assert_eq!(v["tier"], "prod");
    assert_eq!(v["revision"], "a".repeat(40));
    assert_eq!(v["severity"], "high");
    assert_eq!(v["details"][0], "base/x.yaml: bad");
    assert_eq!(v["at"], "2026-01-02T03:04:05Z");
    assert_eq!(v["resolved"], false);
    // RFC 4231 test case 2.
    assert_eq!(
        signature(b"Jefe", b"what do ya want for nothing?").as_deref(),
        Some("sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    );
}

#[test]
fn slack_gets_text_and_alertmanager_an_alert_that_resolves() {
    let slack: serde_json::Value =
        serde_json::from_slice(&slack_body(&notification())).expect("json");
    assert_eq!(
        slack["text"],
        "*sync-failed* [high] tier prod: sync of aaaaaaa failed\nbase/x.yaml: bad"
    );
    let am: serde_json::Value = serde_json::from_slice(&alertmanager_body(
        &notification(),
        Duration::from_secs(600),
    ))
    .expect("json");
    let alert = &am[0];
    assert_eq!(alert["labels"]["alertname"], "GitopsdSyncFailed");
    assert_eq!(alert["labels"]["tier"], "prod");
    assert_eq!(alert["labels"]["severity"], "high");
    assert_eq!(alert["annotations"]["description"], "base/x.yaml: bad");
    assert_eq!(alert["startsAt"], "2026-01-02T03:04:05+00:00");
    assert_eq!(alert["endsAt"], "2026-01-02T03:14:05+00:00");
    let over = Notification {
        resolved: true,
        ..notification()
    };
    let am: serde_json::Value =
        serde_json::from_slice(&alertmanager_body(&over, Duration::from_secs(600))).expect("json");
    assert_eq!(
        am[0]["endsAt"], "2026-01-02T03:04:05+00:00",
        "resolved at once"
    );
    assert_eq!(am[0]["labels"], alert["labels"], "the same alert");
    let slack: serde_json::Value = serde_json::from_slice(&slack_body(&over)).expect("json");
    assert!(
        slack["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("*sync-failed resolved* "))
    );
}

#[test]
fn the_webhook_request_carries_the_signature_of_its_body() {
    let target = SinkTarget::Webhook {
        url: "http://127.0.0.1:1/hook".into(),
        secret: b"s3cret".to_vec(),
    };
    let req = target.request(&notification()).expect("request");
    let body = webhook_body(&notification());
    assert_eq!(
        req.headers()["x-gitopsd-signature"]
            .to_str()
            .expect("ascii"),
        signature(b"s3cret", &body).expect("signed")
    );
    assert_eq!(req.headers()["content-type"], "application/json");
}

#[test]
fn transient_delivery_errors_are_retried_refusals_are_not() {
    assert!(DeliveryError::Timeout(Duration::from_secs(1)).transient());
    assert!(
        DeliveryError::Status {
            status: 503,
            body: String::new()
        }
        .transient()
    );
    assert!(
        DeliveryError::Status {
            status: 429,
            body: String::new()
        }
        .transient()
    );
    assert!(
        !DeliveryError::Status {
            status: 400,
            body: String::new()
        }
        .transient()
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_waiting() {
    let c = config(
        "notifications:\n  queue: 1\n  sinks:\n    - {name: am, alertmanager: {url: 'http://127.0.0.1:9'}}\n  routes:\n    - {sink: am}\n",
    );
    let counter =
        prometheus::IntCounterVec::new(prometheus::Opts::new("n", "n"), &["sink", "result"])
            .expect("counter");
    let shutdown = CancellationToken::new();
    let (notifier, tasks) = Notifier::start(
        c.notifications.as_ref().expect("configured"),
        &c.tiers,
        Some(counter.clone()),
        shutdown.clone(),
    )
    .expect("start");
    let started = std::time::Instant::now();
    for i in 0..20 {
        let r = Revision::new(format!("{i:040}"));
        notifier.observe(&sync("dev", r, SyncState::Failed, Some("x")));
    }
    println!("20 notifications observed in {:?}", started.elapsed());
    let dropped = counter.with_label_values(&["am", "dropped"]).get();
    assert!(dropped >= 18, "dropped {dropped}");
    shutdown.cancel();
    drop(notifier);
    for t in tasks {
        let _ = t.await;
    }
    let failed = counter.with_label_values(&["am", "failed"]).get();
    assert_eq!(dropped + failed, 20);
}
