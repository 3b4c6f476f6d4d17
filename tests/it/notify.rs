//! Outbound notifications from a real `gitopsd run`: a webhook receiver in the test (the HMAC
//! checked), a real Alertmanager, and receivers that are down or slow, which must not delay
//! the reconcile.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use reconcile_support::{Fixture, IMAGE_1, IMAGE_2, TierExtra, base_files, configmap, deployment};
use serde_json::Value;
use sha2::Sha256;

use crate::git_support::{Server, free_port};
use crate::reconcile_support;
use crate::support;

const FIRST_SYNC: Duration = Duration::from_secs(45);
const CHANGE: Duration = Duration::from_secs(40);
const SECRET: &str = "notify-test-secret";

/// One delivery: its `X-Gitopsd-Signature` and its body.
type Delivery = (Option<String>, Bytes);

/// What the webhook receiver got.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Delivery>>>);

impl Received {
    /// The bodies whose signature is right (HMAC-SHA256 of the body with the secret), as JSON;
    /// and how many were not.
    fn verified(&self) -> (Vec<Value>, usize) {
        let mut good = Vec::new();
        let mut bad = 0;
        for (sig, body) in self.0.lock().expect("lock").iter() {
            let ok = sig
                .as_deref()
                .and_then(|s| s.strip_prefix("sha256="))
                .and_then(|h| hex::decode(h).ok())
                .is_some_and(|sig| {
                    let mut mac =
                        <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("key");
                    mac.update(body);
                    mac.verify_slice(&sig).is_ok()
                });
            match serde_json::from_slice::<Value>(body) {
                Ok(v) if ok => good.push(v),
                _ => bad += 1,
            }
        }
        (good, bad)
    }
}

/// A receiver on loopback that records every POST and answers 200 after `delay`.
async fn receiver(delay: Duration) -> (u16, Received, tokio::task::JoinHandle<()>) {
    let received = Received::default();
    let r = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let r = r.clone();
            async move {
                let sig = headers
                    .get("x-gitopsd-signature")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                r.0.lock().expect("lock").push((sig, body));
                tokio::time::sleep(delay).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind the receiver");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, received, task)
}

/// A real Alertmanager on loopback, with a config of one receiver that sends nowhere.
fn alertmanager(dir: &std::path::Path) -> (u16, Server) {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route: {receiver: none, group_wait: 1s}\nreceivers: [{name: none}]\n",
    )
    .expect("write alertmanager.yml");
    let port = free_port();
    let mut cmd = Command::new(
        std::env::var_os("GITOPSD_ALERTMANAGER")
            .unwrap_or_else(|| "prometheus-alertmanager".into()),
    );
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.join("alertmanager-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn");
    let log: PathBuf = dir.join("alertmanager.log");
    (port, Server::start(cmd, port, log))
}

/// The alerts Alertmanager holds now.
async fn alerts(port: u16) -> Result<Vec<Value>, String> {
    let (code, body) =
        tokio::task::spawn_blocking(move || reconcile_support::http_get(port, "/api/v2/alerts"))
            .await
            .map_err(|e| e.to_string())??;
    if code != 200 {
        return Err(format!("GET /api/v2/alerts answered {code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
}

/// Alertmanager's alerts named `name` for `tier`.
async fn tier_alerts(port: u16, tier: &str, name: &str) -> Result<Vec<Value>, String> {
    Ok(alerts(port)
        .await?
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == name && a["labels"]["tier"] == tier)
        .collect())
}

/// Appends a `notifications:` section to the fixture's gitopsd.yaml (before it starts).
fn add_notifications(f: &Fixture, section: &str) {
    let mut text = std::fs::read_to_string(&f.config).expect("read gitopsd.yaml");
    text.push_str(section);
    std::fs::write(&f.config, text).expect("write gitopsd.yaml");
}

/// The events the receiver got for `tier`, in order.
fn events_for(r: &Received, tier: &str) -> (Vec<Value>, usize) {
    let (good, bad) = r.verified();
    (
        good.into_iter().filter(|v| v["tier"] == tier).collect(),
        bad,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sync_and_a_rollback_reach_the_webhook_signed_and_alertmanager() {
    let (hook_port, received, _hook) = receiver(Duration::ZERO).await;
    let extra = TierExtra(vec![
        "rollback: {onHealthFailure: true, healthTimeout: 10s}".into(),
    ]);
    let mut f = Fixture::new("notify", base_files(IMAGE_1), extra);
    let (am_port, _am) = alertmanager(f.dir.path());
    let secret = f.dir.path().join("hook-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("write the secret");
    add_notifications(
        &f,
        &format!(
            "notifications:\n  sinks:\n    - name: hook\n      webhook: {{url: 'http://127.0.0.1:{hook_port}/hook', secretFile: {}}}\n    - name: am\n      alertmanager: {{url: 'http://127.0.0.1:{am_port}'}}\n  routes:\n    - {{sink: hook}}\n    - {{sink: am, events: [sync-failed, rolled-back]}}\n",
            secret.display()
        ),
    );
    let first = f.head();
    f.start();
    f.wait_synced_healthy(&first, FIRST_SYNC).await;

    // A broken commit: the sync fails.
    f.write_files(&vec![(
        "base/extra-3.yaml".to_owned(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra-3\ndata: [unclosed\n".to_owned(),
    )]);
    let broken = f.commit("broken yaml");
    let failed = support::eventually("the webhook to get sync-failed", CHANGE, || {
        let (events, bad) = events_for(&received, &f.tier);
        assert_eq!(bad, 0, "deliveries with a wrong or missing signature");
        async move { events.into_iter().find(|v| v["event"] == "sync-failed") }
    })
    .await;
    println!("sync-failed: {failed}");
    assert!(
        failed["details"][0]
            .as_str()
            .is_some_and(|d| d.contains("base/extra-3.yaml")),
        "the notification names the broken file: {failed}"
    );
    assert_eq!(failed["severity"], "high");
    let tier = f.tier.clone();
    let alert = support::eventually_or(
        "Alertmanager to hold GitopsdSyncFailed for the tier",
        CHANGE,
        || {
            let tier = tier.clone();
            async move {
                let held = tier_alerts(am_port, &tier, "GitopsdSyncFailed").await?;
                held.into_iter()
                    .next()
                    .ok_or_else(|| "no GitopsdSyncFailed alert yet".to_owned())
            }
        },
    )
    .await;
    println!("alert: {alert}");
    assert_eq!(alert["labels"]["severity"], "high");
    assert_eq!(alert["status"]["state"], "active");
    assert!(alert["endsAt"].as_str().is_some_and(|e| !e.is_empty()));

    // Fixed, but the new Deployment never becomes ready: rolled back past 10 s.
    f.write_files(&vec![
        ("base/extra-3.yaml".to_owned(), configmap("extra-3", &[])),
        ("base/deployment.yaml".to_owned(), deployment(IMAGE_2, true)),
    ]);
    let bad = f.commit("api 1.4.3, never ready");
    let rolled = support::eventually(
        "the webhook to get rolled-back",
        Duration::from_secs(60),
        || {
            let (events, bad_sigs) = events_for(&received, &f.tier);
            assert_eq!(bad_sigs, 0, "deliveries with a wrong or missing signature");
            async move { events.into_iter().find(|v| v["event"] == "rolled-back") }
        },
    )
    .await;
    println!("rolled-back: {rolled}");
    assert_eq!(rolled["revision"], bad.as_str());
    let tier = f.tier.clone();
    support::eventually_or(
        "Alertmanager to hold GitopsdRolledBack for the tier",
        CHANGE,
        || {
            let tier = tier.clone();
            async move {
                let held = tier_alerts(am_port, &tier, "GitopsdRolledBack").await?;
                (!held.is_empty())
                    .then_some(())
                    .ok_or_else(|| "no GitopsdRolledBack alert yet".to_owned())
            }
        },
    )
    .await;

    // The fix synced: the failure's alert is resolved at once, not at its endsAt an hour on.
    let tier = f.tier.clone();
    support::eventually_or(
        "Alertmanager to resolve GitopsdSyncFailed for the tier",
        CHANGE,
        || {
            let tier = tier.clone();
            async move {
                let left = tier_alerts(am_port, &tier, "GitopsdSyncFailed").await?;
                left.is_empty()
                    .then_some(())
                    .ok_or_else(|| format!("still active: {left:?}"))
            }
        },
    )
    .await;

    // The failing sync was told once, not at every reconcile of the broken revision; and its
    // end was told.
    let (events, _) = events_for(&received, &f.tier);
    for v in &events {
        println!(
            "webhook: {} {} resolved={} {}",
            v["event"], v["revision"], v["resolved"], v["summary"]
        );
    }
    let failures = events
        .iter()
        .filter(|v| {
            v["event"] == "sync-failed"
                && v["revision"] == broken.as_str()
                && v["resolved"] == false
        })
        .count();
    assert_eq!(
        failures, 1,
        "the broken revision's failure told {failures} times"
    );
    assert!(
        events
            .iter()
            .any(|v| v["event"] == "sync-failed" && v["resolved"] == true),
        "the end of the failure was told"
    );
    let m = f.metrics();
    let sent = m
        .get(r#"gitopsd_notifications_total{result="sent",sink="hook"}"#)
        .copied()
        .unwrap_or(0.0);
    assert!(sent >= 2.0, "hook sent {sent}: {m:?}");
}

/// Runs the same two commits (a broken one, then a fix) on `f`, returning how long each took
/// from the commit to the status showing it.
async fn fail_then_fix(f: &Fixture) -> (Duration, Duration) {
    f.write_files(&vec![(
        "base/extra-3.yaml".to_owned(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra-3\ndata: [unclosed\n".to_owned(),
    )]);
    let started = Instant::now();
    let broken = f.commit("broken yaml");
    f.wait_status("the broken revision to fail", CHANGE, |s| {
        (s["sourceRevision"] == broken.as_str() && s["sync"] == "Failed").then_some(())
    })
    .await;
    let to_failed = started.elapsed();
    f.write_files(&vec![(
        "base/extra-3.yaml".to_owned(),
        configmap("extra-3", &[]),
    )]);
    let started = Instant::now();
    let fixed = f.commit("fixed");
    f.wait_synced_healthy(&fixed, CHANGE).await;
    (to_failed, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_or_slow_does_not_delay_the_reconcile() {
    // Answers after 10 s, past the sinks' 2 s timeout.
    let (slow_port, slow, _slow) = receiver(Duration::from_secs(10)).await;
    let down_port = free_port();
    let mut plain = Fixture::new("nplain", base_files(IMAGE_1), TierExtra::default());
    let mut f = Fixture::new("nslow", base_files(IMAGE_1), TierExtra::default());
    let secret = f.dir.path().join("hook-secret");
    std::fs::write(&secret, SECRET).expect("write the secret");
    add_notifications(
        &f,
        &format!(
            "notifications:\n  timeout: 2s\n  attempts: 2\n  sinks:\n    - name: slow\n      webhook: {{url: 'http://127.0.0.1:{slow_port}/hook', secretFile: {s}}}\n    - name: down\n      webhook: {{url: 'http://127.0.0.1:{down_port}/hook', secretFile: {s}}}\n  routes:\n    - {{sink: slow}}\n    - {{sink: down}}\n",
            s = secret.display()
        ),
    );
    let (first_plain, first) = (plain.head(), f.head());
    plain.start();
    f.start();
    plain.wait_synced_healthy(&first_plain, FIRST_SYNC).await;
    f.wait_synced_healthy(&first, FIRST_SYNC).await;

    let (plain_fail, plain_fix) = fail_then_fix(&plain).await;
    let (fail, fix) = fail_then_fix(&f).await;
    println!(
        "commit to Failed / fix to Synced: without notifications {plain_fail:?} / {plain_fix:?}; with a down and a 10 s receiver {fail:?} / {fix:?}"
    );

    // The reconciles finished (above); the deliveries were tried and counted failed.
    let counted = support::eventually(
        "both sinks to count a failed delivery",
        Duration::from_secs(60),
        || {
            let m = f.metrics();
            let get = |sink: &str| {
                m.get(&format!(
                    r#"gitopsd_notifications_total{{result="failed",sink="{sink}"}}"#
                ))
                .copied()
                .unwrap_or(0.0)
            };
            let (s, d) = (get("slow"), get("down"));
            async move { (s >= 1.0 && d >= 1.0).then_some((s, d)) }
        },
    )
    .await;
    println!("failed deliveries (slow, down): {counted:?}");
    assert!(
        !slow.0.lock().expect("lock").is_empty(),
        "the slow receiver was reached"
    );
}
