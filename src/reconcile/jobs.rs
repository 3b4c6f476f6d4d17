//! Jobs with `ttlSecondsAfterFinished`: they run once per manifest, and once the TTL controller
//! deleted one that finished, its absence is neither drift nor unhealthy (issue 21 item 6).

use super::*;

/// A Job the TTL-after-finished controller deletes once it finished.
pub(super) fn is_ttl_job(o: &DesiredObject) -> bool {
    o.key.kind == "Job"
        && crate::config::api_group(&o.key.api_version) == "batch"
        && o.manifest
            .pointer("/spec/ttlSecondsAfterFinished")
            .is_some_and(|t| !t.is_null())
}

/// Drops from `report` the absence of each Job with `ttlSecondsAfterFinished` that the tier
/// state records finished for its manifest: no drift, as the daemon sees it (`gitopsd diff`
/// reads the same state).
pub fn drop_finished_jobs(
    report: &mut crate::drift::DriftReport,
    set: &DesiredSet,
    state: &TierState,
) {
    let done: HashSet<ObjectKey> = set
        .objects
        .iter()
        .filter(|o| {
            is_ttl_job(o)
                && state.job_finished(
                    o.key.namespace.as_deref().unwrap_or(""),
                    &o.key.name,
                    &o.digest,
                )
        })
        .map(|o| o.key.clone())
        .collect();
    if !done.is_empty() {
        report.drop_items(|i| i.field_path.is_none() && done.contains(&i.object_key()));
    }
}

/// Whether a live Job ran to its end: its `Complete` or `Failed` condition is true.
pub(super) fn job_finished(live: &Value) -> bool {
    live.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                matches!(
                    c.get("type").and_then(Value::as_str),
                    Some("Complete" | "Failed")
                ) && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The reasons of the Events the Job controller records when a Job ends.
pub(super) const JOB_END_REASONS: &[&str] = &[
    "Completed",
    "BackoffLimitExceeded",
    "DeadlineExceeded",
    "PodFailurePolicy",
    "MaxFailedIndexesExceeded",
    "FailedIndexes",
];

/// Whether the Job controller recorded the end of the Job `namespace/name` (of `uid`, when
/// known; after a restart gitopsd does not know it, and any end of a Job of that name counts).
pub(super) async fn job_end_event(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<bool, kube::Error> {
    let api: kube::Api<k8s_openapi::api::core::v1::Event> =
        kube::Api::namespaced(client.clone(), namespace);
    let params = kube::api::ListParams::default().fields(&format!(
        "involvedObject.kind=Job,involvedObject.name={name}"
    ));
    let events = api.list(&params).await?;
    Ok(events.items.iter().any(|e| {
        JOB_END_REASONS.contains(&e.reason.as_deref().unwrap_or_default())
            && uid.is_none_or(|u| e.involved_object.uid.as_deref() == Some(u))
    }))
}
