//! `GET /metrics` of a real daemon (`gitopsd run` as a child process, the fixture of
//! tests/it/reconcile.rs) that has synced a tier onto the local cluster: the tier's state, the
//! objects it created and the Kubernetes requests it sent are there, and `promtool check
//! metrics` finds nothing to say about the exposition.

use crate::reconcile_support;
use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use reconcile_support::{BASE_OBJECTS, Fixture, IMAGE_1, TierExtra, base_files, http_get};

const FIRST_SYNC: Duration = Duration::from_secs(45);

/// The value of one series, named with its labels as the exposition writes them (labels in
/// name order).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every sample line of the metric `name`.
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .collect()
}

fn promtool_check_metrics(exposition: &str) -> (bool, String) {
    let tool = std::env::var_os("GITOPSD_PROMTOOL").unwrap_or_else(|| "promtool".into());
    let mut child = Command::new(&tool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's prometheus package \
                 (scripts/install-deps.sh does) or set GITOPSD_PROMTOOL"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write the exposition to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synced_tier_shows_on_metrics_and_promtool_finds_nothing_to_lint() {
    let (f, sha) = Fixture::new("metrics", base_files(IMAGE_1), TierExtra::default())
        .started(FIRST_SYNC)
        .await;

    let tier = format!(r#"tier="{}""#, f.tier);
    // The status turns Synced inside the sync; the revision's commit-to-applied duration is
    // observed just after it returns: wait for that, not for the status alone.
    let applied = format!("gitopsd_commit_to_applied_seconds_count{{{tier}}}");
    let text = support::eventually("commit_to_applied observed", FIRST_SYNC, || {
        let applied = applied.clone();
        async move {
            let (code, text) = http_get(f.port, "/metrics").ok()?;
            (code == 200 && value(&text, &applied).is_some_and(|n| n >= 1.0)).then_some(text)
        }
    })
    .await;
    for (series, want) in [
        (format!("gitopsd_tier_synced{{{tier}}}"), 1.0),
        (
            format!(r#"gitopsd_tier_health{{status="Healthy",{tier}}}"#),
            1.0,
        ),
        (
            format!(r#"gitopsd_tier_health{{status="Degraded",{tier}}}"#),
            0.0,
        ),
        (
            format!(r#"gitopsd_tier_info{{revision="{sha}",{tier}}}"#),
            1.0,
        ),
        (
            format!(r#"gitopsd_apply_objects_total{{action="created",{tier}}}"#),
            BASE_OBJECTS as f64,
        ),
        (
            format!(r#"gitopsd_drift_objects{{severity="critical",{tier}}}"#),
            0.0,
        ),
        (format!("gitopsd_change_window_open{{{tier}}}"), 1.0),
        (
            format!(r#"gitopsd_drift_unresolved_objects{{severity="critical",{tier}}}"#),
            0.0,
        ),
        (
            format!(r#"gitopsd_promotion_blocked{{held_by="promotion-gate",{tier}}}"#),
            0.0,
        ),
        (
            format!(r#"gitopsd_promotion_blocked{{held_by="window",{tier}}}"#),
            0.0,
        ),
        (
            format!(
                r#"gitopsd_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ] {
        assert_eq!(value(&text, &series), Some(want), "{series} in:\n{text}");
    }
    // Fetched, synced and applied, with the time of each.
    assert!(
        value(&text, "gitopsd_last_successful_fetch_timestamp_seconds").is_some_and(|t| t > 1e9),
        "{text}"
    );
    assert!(
        value(
            &text,
            &format!("gitopsd_last_sync_timestamp_seconds{{{tier}}}")
        )
        .is_some_and(|t| t > 1e9),
        "{text}"
    );
    assert!(
        value(&text, "process_resident_memory_bytes").is_some_and(|b| b > 0.0),
        "{text}"
    );
    assert!(
        value(
            &text,
            &format!("gitopsd_last_successful_sync_timestamp_seconds{{{tier}}}")
        )
        .is_some_and(|t| t > 1e9),
        "{text}"
    );
    assert!(
        value(
            &text,
            &format!("gitopsd_commit_to_applied_seconds_count{{{tier}}}")
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // The apply went out as server-side-apply patches, answered 200 or 201.
    let requests = samples(&text, "gitopsd_kube_requests_total");
    assert!(
        requests.iter().any(|l| l.contains(r#"verb="patch""#)
            && (l.contains(r#"code="200""#) || l.contains(r#"code="201""#))),
        "no answered patch in {requests:?}"
    );
    assert!(
        requests.iter().any(|l| l.contains(r#"verb="watch""#)),
        "no watch in {requests:?}"
    );

    let (ok, lint) = promtool_check_metrics(&text);
    assert!(
        ok && lint.trim().is_empty(),
        "promtool check metrics (ok: {ok}) says:\n{lint}\non:\n{text}"
    );
}
