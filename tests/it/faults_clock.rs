//! Faults of time: the node's wall clock steps a day forward, then back behind where it
//! started (an NTP step, a VM restored from a snapshot). gitopsd's timers run on the monotonic
//! clock, which a step does not move, so polling, drift correction and deploys go on; the wall
//! clock only dates what it reports. The daemon runs under libfaketime (Debian's `faketime`,
//! installed by scripts/install-deps.sh), whose offset the test changes while it runs; the
//! monotonic clock is left alone, as a real step leaves it.

use crate::reconcile_support;
use crate::support;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use reconcile_support::{Fixture, IMAGE_1, TierExtra, base_files, configmap};
use serde_json::{Value, json};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const FIRST_SYNC: Duration = Duration::from_secs(60);
const CHANGE: Duration = Duration::from_secs(60);

fn last_reconcile(s: &Value) -> Option<DateTime<Utc>> {
    s["lastReconcileAt"].as_str()?.parse().ok()
}

/// Sets the daemon's wall-clock offset (libfaketime re-reads the file every second).
fn step_clock(file: &Path, offset: &str) {
    std::fs::write(file, offset).expect("write the faketime offset");
}

/// A live edit of `extra-1`'s data by another field manager.
async fn edit(cms: &Api<ConfigMap>, value: &str) {
    cms.patch(
        "extra-1",
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"data": {"greeting": value}})),
    )
    .await
    .expect("edit extra-1 as kubectl-edit");
}

async fn greeting(cms: &Api<ConfigMap>, name: &str) -> Option<String> {
    cms.get(name).await.ok()?.data?.get("greeting").cloned()
}

/// After the step: a reconcile dated by the stepped clock (so the daemon sees it), a live
/// edit corrected, and a new commit applied.
async fn still_reconciles(
    f: &Fixture,
    cms: &Api<ConfigMap>,
    dated: impl Fn(DateTime<Utc>) -> bool,
    n: usize,
) {
    f.wait_status("a reconcile dated by the stepped clock", CHANGE, |s| {
        last_reconcile(s).filter(|t| dated(*t)).map(|_| ())
    })
    .await;

    edit(cms, &format!("edited-{n}")).await;
    support::eventually("the live edit to be corrected", CHANGE, || async {
        (greeting(cms, "extra-1").await.as_deref() == Some("hello")).then_some(())
    })
    .await;

    let changed =
        configmap("extra-2", &[]).replace("greeting: hello", &format!("greeting: commit-{n}"));
    f.write_files(&vec![("base/extra-2.yaml".into(), changed)]);
    let revision = f.commit(&format!("change {n} after the clock stepped"));
    f.wait_status("the new commit Synced", CHANGE, |s| {
        (s["revision"] == revision.as_str() && s["sync"] == "Synced").then_some(())
    })
    .await;
    assert_eq!(greeting(cms, "extra-2").await, Some(format!("commit-{n}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_step_forward_and_back_stalls_nothing() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: run scripts/install-deps.sh (Debian package faketime)"
    );
    let client = support::client().await;
    let mut f = Fixture::new("clock", base_files(IMAGE_1), TierExtra::default());
    let offset = f.dir.path().join("faketime");
    step_clock(&offset, "+0");
    f.daemon_env = vec![
        ("LD_PRELOAD".into(), LIBFAKETIME.into()),
        (
            "FAKETIME_TIMESTAMP_FILE".into(),
            offset.display().to_string(),
        ),
        ("FAKETIME_CACHE_DURATION".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ];
    let first = f.head();
    f.start();
    f.wait_synced_healthy(&first, FIRST_SYNC).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &f.tier);

    step_clock(&offset, "+1d");
    still_reconciles(
        &f,
        &cms,
        |t| t > Utc::now() + chrono::Duration::hours(20),
        1,
    )
    .await;

    // Back behind where it started: timestamps the daemon took a moment ago now lie in its
    // future.
    step_clock(&offset, "-1h");
    still_reconciles(
        &f,
        &cms,
        |t| t < Utc::now() - chrono::Duration::minutes(30),
        2,
    )
    .await;
}
