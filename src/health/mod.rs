//! The health stage: whether a live object does what it is for, kind by kind, and whether a
//! tier is healthy (all its objects are).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An object's or a tier's health. Ordered from best to worst: a tier is as healthy as its
/// worst object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Health {
    Healthy,
    /// The state cannot be told (no status reported where one is expected, say).
    Unknown,
    /// Working towards the desired state: rolling out, scheduling, binding.
    Progressing,
    /// Desired but not in the cluster.
    Missing,
    /// Failed, or stuck in a way that needs a person: a crash loop, a deadline exceeded.
    Degraded,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Unknown => "Unknown",
            Health::Progressing => "Progressing",
            Health::Missing => "Missing",
            Health::Degraded => "Degraded",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object's health and why, in words an operator can act on
/// (`0 of 2 replicas available; waiting for the rollout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectHealth {
    pub health: Health,
    pub message: String,
}

impl ObjectHealth {
    fn new(health: Health, message: impl Into<String>) -> Self {
        ObjectHealth {
            health,
            message: message.into(),
        }
    }
}

/// Health of a live object (JSON as the API server returns it). Never panics: the object comes
/// from outside, so every field may be absent or of the wrong type.
pub fn assess(live: &Value) -> ObjectHealth {
    let Some(obj) = live.as_object() else {
        return ObjectHealth::new(Health::Unknown, "not a Kubernetes object");
    };
    let metadata = live.get("metadata");
    if metadata
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|t| !t.is_null())
    {
        return ObjectHealth::new(Health::Progressing, "being deleted");
    }
    // A status that is there but not an object cannot be read; saying Healthy would hide it.
    let status = match obj.get("status") {
        None | Some(Value::Null) => None,
        Some(s @ Value::Object(_)) => Some(s),
        Some(_) => return ObjectHealth::new(Health::Unknown, "status is not an object"),
    };
    // The status describes an older spec until the controller has observed the current one.
    let generation = metadata.and_then(|m| int(m, "generation"));
    let observed = status.and_then(|s| int(s, "observedGeneration"));
    if let (Some(generation), Some(observed)) = (generation, observed)
        && observed < generation
    {
        return ObjectHealth::new(
            Health::Progressing,
            format!("the controller has not observed generation {generation} yet"),
        );
    }

    let kind = str_at(live, &["kind"]).unwrap_or_default();
    let api_version = str_at(live, &["apiVersion"]).unwrap_or_default();
    // The group, so that a custom resource that happens to be called `Deployment` or `Job`
    // gets the generic conditions rule, not the built-in kind's.
    let group = match api_version.split_once('/') {
        Some((group, _)) => group,
        None => "",
    };
    match (group, kind) {
        ("apps" | "extensions", "Deployment") => deployment(live, status),
        ("apps", "StatefulSet") => stateful_set(live, status),
        ("apps" | "extensions", "DaemonSet") => daemon_set(live, status),
        ("apps" | "extensions", "ReplicaSet") => replica_set(live, status),
        ("batch", "Job") => job(live, status),
        ("", "Pod") => pod(status),
        ("", "PersistentVolumeClaim") => pvc(status),
        ("", "Service") => service(live, status),
        ("", "Namespace") => namespace(status),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(status),
        ("apiregistration.k8s.io", "APIService") => api_service(status),
        ("autoscaling", "HorizontalPodAutoscaler") => hpa(status),
        _ => generic(status),
    }
}

/// `None` (the object is not in the cluster) is Missing.
pub fn assess_or_missing(live: Option<&Value>) -> ObjectHealth {
    match live {
        Some(live) => assess(live),
        None => ObjectHealth::new(Health::Missing, "not found in the cluster"),
    }
}

/// A tier is as healthy as its worst object; Healthy when there are no objects.
pub fn worst(items: impl IntoIterator<Item = Health>) -> Health {
    items.into_iter().max().unwrap_or(Health::Healthy)
}

/// Reasons on a Ready/Available=False condition that mean the controller is still at work.
const WORKING_REASONS: &[&str] = &[
    "progressing",
    "reconciling",
    "pending",
    "inprogress",
    "creating",
    "updating",
];

/// Container waiting reasons that will not resolve without a person (or a new image).
const BAD_WAITING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "InvalidImageName",
];

/// Kubelet and controller messages can be long (a whole image reference and back-off text);
/// keep ours to a line.
const MAX_QUOTED: usize = 160;

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key)?.as_i64()
}

fn int_at(v: Option<&Value>, key: &str) -> i64 {
    v.and_then(|v| int(v, key)).unwrap_or(0)
}

/// `spec.replicas`, 1 when absent as the API server defaults it.
fn spec_replicas(live: &Value) -> i64 {
    live.get("spec")
        .and_then(|s| int(s, "replicas"))
        .unwrap_or(1)
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(MAX_QUOTED) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A status condition, its fields read leniently.
struct Condition<'a> {
    status: &'a str,
    reason: &'a str,
    message: &'a str,
}

impl Condition<'_> {
    fn is_true(&self) -> bool {
        self.status == "True"
    }

    fn is_false(&self) -> bool {
        self.status == "False"
    }

    /// `Reason: message`, or whichever of the two is there.
    fn describe(&self) -> String {
        match (self.reason.is_empty(), self.message.is_empty()) {
            (false, false) => format!("{}: {}", self.reason, truncate(self.message)),
            (false, true) => self.reason.to_owned(),
            (true, false) => truncate(self.message).to_owned(),
            (true, true) => String::new(),
        }
    }
}

fn condition<'a>(status: Option<&'a Value>, type_: &str) -> Option<Condition<'a>> {
    let c = status?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))?;
    let field = |k| c.get(k).and_then(Value::as_str).unwrap_or_default();
    Some(Condition {
        // An absent status is as good as "Unknown".
        status: c.get("status").and_then(Value::as_str).unwrap_or("Unknown"),
        reason: field("reason"),
        message: field("message"),
    })
}

/// `what` followed by the condition's reason and message, if it has any.
fn with_detail(what: &str, c: &Condition<'_>) -> String {
    let detail = c.describe();
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what} ({detail})")
    }
}

fn no_status() -> ObjectHealth {
    // The workload controllers always write a status; none means they have not seen it yet.
    ObjectHealth::new(
        Health::Progressing,
        "no status yet; waiting for the controller",
    )
}

fn deployment(live: &Value, status: Option<&Value>) -> ObjectHealth {
    let Some(st) = status else {
        return no_status();
    };
    let spec = live.get("spec");
    // Argo CD users expect a deliberately paused rollout not to hold up (or fail) a sync.
    if spec
        .and_then(|s| s.get("paused"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return ObjectHealth::new(Health::Healthy, "paused");
    }
    if let Some(c) = condition(status, "Progressing")
        && c.reason == "ProgressDeadlineExceeded"
    {
        return ObjectHealth::new(Health::Degraded, c.describe());
    }
    let replicas = spec_replicas(live);
    let updated = int_at(Some(st), "updatedReplicas");
    let available = int_at(Some(st), "availableReplicas");
    // status.replicas counts the pods of every ReplicaSet, old ones included.
    let total = int_at(Some(st), "replicas");
    let counts = format!("{updated} of {replicas} updated, {available} available");
    if updated < replicas {
        ObjectHealth::new(
            Health::Progressing,
            format!("{counts}; waiting for the rollout"),
        )
    } else if total > updated {
        ObjectHealth::new(
            Health::Progressing,
            format!(
                "{counts}; waiting for {} old replicas to terminate",
                total.saturating_sub(updated)
            ),
        )
    } else if available < replicas {
        ObjectHealth::new(
            Health::Progressing,
            format!("{counts}; waiting for replicas to become available"),
        )
    } else {
        ObjectHealth::new(
            Health::Healthy,
            format!("{available} of {replicas} available"),
        )
    }
}

fn stateful_set(live: &Value, status: Option<&Value>) -> ObjectHealth {
    let Some(st) = status else {
        return no_status();
    };
    let replicas = spec_replicas(live);
    let ready = int_at(Some(st), "readyReplicas");
    if ready < replicas {
        return ObjectHealth::new(
            Health::Progressing,
            format!("{ready} of {replicas} ready; waiting for replicas to become ready"),
        );
    }
    let strategy = live.get("spec").and_then(|s| s.get("updateStrategy"));
    let strategy_type = strategy
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("RollingUpdate");
    // OnDelete: pods are replaced only when someone deletes them, so there is no rollout to
    // wait for.
    if strategy_type == "OnDelete" {
        return ObjectHealth::new(Health::Healthy, format!("{ready} of {replicas} ready"));
    }
    let partition = strategy
        .and_then(|s| s.get("rollingUpdate"))
        .and_then(|r| int(r, "partition"));
    let updated = int_at(Some(st), "updatedReplicas");
    if let Some(partition) = partition {
        // Pods below the partition keep the old revision on purpose: the revisions never
        // match, so count the updated pods above it instead.
        let expected = replicas.saturating_sub(partition.max(0)).max(0);
        if updated < expected {
            return ObjectHealth::new(
                Health::Progressing,
                format!("rolling out: {updated} of {expected} updated (partition {partition})"),
            );
        }
    } else {
        let current = str_at(st, &["currentRevision"]);
        let update = str_at(st, &["updateRevision"]);
        if update.is_some() && current != update {
            return ObjectHealth::new(
                Health::Progressing,
                format!("rolling out: {updated} of {replicas} updated"),
            );
        }
    }
    ObjectHealth::new(Health::Healthy, format!("{ready} of {replicas} ready"))
}

fn daemon_set(live: &Value, status: Option<&Value>) -> ObjectHealth {
    let Some(st) = status else {
        return no_status();
    };
    let desired = int_at(Some(st), "desiredNumberScheduled");
    let available = int_at(Some(st), "numberAvailable");
    let updated = int_at(Some(st), "updatedNumberScheduled");
    let on_delete = str_at(live, &["spec", "updateStrategy", "type"]) == Some("OnDelete");
    if !on_delete && updated < desired {
        return ObjectHealth::new(
            Health::Progressing,
            format!(
                "{updated} of {desired} updated, {available} available; waiting for the rollout"
            ),
        );
    }
    if available < desired {
        return ObjectHealth::new(
            Health::Progressing,
            format!("{available} of {desired} available; waiting for pods to become available"),
        );
    }
    ObjectHealth::new(
        Health::Healthy,
        format!("{available} of {desired} available"),
    )
}

fn replica_set(live: &Value, status: Option<&Value>) -> ObjectHealth {
    if let Some(c) = condition(status, "ReplicaFailure")
        && c.is_true()
    {
        return ObjectHealth::new(Health::Degraded, with_detail("replica failure", &c));
    }
    let Some(st) = status else {
        return no_status();
    };
    let replicas = spec_replicas(live);
    let available = int_at(Some(st), "availableReplicas");
    if available < replicas {
        return ObjectHealth::new(
            Health::Progressing,
            format!(
                "{available} of {replicas} available; waiting for replicas to become available"
            ),
        );
    }
    ObjectHealth::new(
        Health::Healthy,
        format!("{available} of {replicas} available"),
    )
}

fn job(live: &Value, status: Option<&Value>) -> ObjectHealth {
    // FailureTarget (v1.31+) is set as soon as the Job is doomed, before its pods are gone and
    // Failed is added: no point waiting for it.
    for failed in ["Failed", "FailureTarget"] {
        if let Some(c) = condition(status, failed)
            && c.is_true()
        {
            return ObjectHealth::new(Health::Degraded, with_detail("failed", &c));
        }
    }
    for done in ["Complete", "SuccessCriteriaMet"] {
        if condition(status, done).is_some_and(|c| c.is_true()) {
            return ObjectHealth::new(Health::Healthy, "complete");
        }
    }
    if live
        .get("spec")
        .and_then(|s| s.get("suspend"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        return ObjectHealth::new(Health::Healthy, "suspended");
    }
    let active = int_at(status, "active");
    ObjectHealth::new(
        Health::Progressing,
        format!("{active} active; waiting for completion"),
    )
}

fn pod(status: Option<&Value>) -> ObjectHealth {
    let phase = status
        .and_then(|s| s.get("phase"))
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    match phase {
        "Succeeded" => return ObjectHealth::new(Health::Healthy, "succeeded"),
        "Failed" => {
            let c = Condition {
                status: "",
                reason: status
                    .and_then(|s| str_at(s, &["reason"]))
                    .unwrap_or_default(),
                message: status
                    .and_then(|s| str_at(s, &["message"]))
                    .unwrap_or_default(),
            };
            return ObjectHealth::new(Health::Degraded, with_detail("failed", &c));
        }
        _ => {}
    }
    // A crash loop or a bad image leaves the pod Running or Pending for ever; look at the
    // containers before the phase.
    for key in ["initContainerStatuses", "containerStatuses"] {
        let containers = status
            .and_then(|s| s.get(key))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for c in containers {
            let Some(reason) = str_at(c, &["state", "waiting", "reason"]) else {
                continue;
            };
            if BAD_WAITING_REASONS.contains(&reason) {
                let name = str_at(c, &["name"]).unwrap_or("?");
                let mut message = format!("container {name}: {reason}");
                if let Some(m) = str_at(c, &["state", "waiting", "message"])
                    && !m.is_empty()
                {
                    message.push_str(&format!(" ({})", truncate(m)));
                }
                return ObjectHealth::new(Health::Degraded, message);
            }
        }
    }
    match phase {
        "Running" => {
            if condition(status, "Ready").is_some_and(|c| c.is_true()) {
                ObjectHealth::new(Health::Healthy, "running, ready")
            } else {
                ObjectHealth::new(Health::Progressing, "running, not ready")
            }
        }
        "Pending" => match condition(status, "PodScheduled") {
            Some(c) if c.is_false() => ObjectHealth::new(
                Health::Progressing,
                with_detail("pending, not scheduled", &c),
            ),
            _ => ObjectHealth::new(
                Health::Progressing,
                "pending; waiting for containers to start",
            ),
        },
        // "Unknown": the node stopped reporting.
        other => ObjectHealth::new(Health::Unknown, format!("phase {other}")),
    }
}

fn pvc(status: Option<&Value>) -> ObjectHealth {
    match status.and_then(|s| str_at(s, &["phase"])) {
        Some("Bound") => ObjectHealth::new(Health::Healthy, "bound"),
        Some("Lost") => ObjectHealth::new(Health::Degraded, "lost its volume"),
        // Pending also covers WaitForFirstConsumer: bound once a pod uses the claim.
        Some(phase) => ObjectHealth::new(
            Health::Progressing,
            format!("{phase}; waiting for a volume"),
        ),
        None => ObjectHealth::new(Health::Progressing, "waiting for a volume"),
    }
}

fn service(live: &Value, status: Option<&Value>) -> ObjectHealth {
    if str_at(live, &["spec", "type"]) != Some("LoadBalancer") {
        return ObjectHealth::new(Health::Healthy, "");
    }
    let has_address = status
        .and_then(|s| s.get("loadBalancer"))
        .and_then(|lb| lb.get("ingress"))
        .and_then(Value::as_array)
        .is_some_and(|i| !i.is_empty());
    if has_address {
        ObjectHealth::new(Health::Healthy, "load balancer address assigned")
    } else {
        ObjectHealth::new(Health::Progressing, "waiting for a load balancer address")
    }
}

fn namespace(status: Option<&Value>) -> ObjectHealth {
    if status.and_then(|s| str_at(s, &["phase"])) == Some("Terminating") {
        ObjectHealth::new(Health::Progressing, "terminating")
    } else {
        ObjectHealth::new(Health::Healthy, "active")
    }
}

fn crd(status: Option<&Value>) -> ObjectHealth {
    // Names in conflict with another CRD: it will never be established without a change.
    if let Some(c) = condition(status, "NamesAccepted")
        && c.is_false()
    {
        return ObjectHealth::new(Health::Degraded, with_detail("names not accepted", &c));
    }
    if condition(status, "Established").is_some_and(|c| c.is_true()) {
        ObjectHealth::new(Health::Healthy, "established")
    } else {
        ObjectHealth::new(Health::Progressing, "waiting to be established")
    }
}

fn api_service(status: Option<&Value>) -> ObjectHealth {
    match condition(status, "Available") {
        Some(c) if c.is_true() => ObjectHealth::new(Health::Healthy, "available"),
        // Usually the backing Service has no endpoints yet (MissingEndpoints) because its
        // Deployment is rolling out in the same sync: wait rather than fail.
        Some(c) => ObjectHealth::new(
            Health::Progressing,
            with_detail("waiting to become available", &c),
        ),
        None => ObjectHealth::new(Health::Progressing, "waiting to become available"),
    }
}

fn hpa(status: Option<&Value>) -> ObjectHealth {
    // An HPA that cannot read metrics (no metrics-server, a metric not yet reported) still
    // leaves its target at its current size: that is no reason to fail or roll back a sync.
    // Say so, but stay Healthy.
    match condition(status, "ScalingActive") {
        Some(c) if c.is_false() => {
            ObjectHealth::new(Health::Healthy, with_detail("scaling inactive", &c))
        }
        _ => ObjectHealth::new(Health::Healthy, ""),
    }
}

/// Every other kind, custom resources included: the kstatus conventions (Reconciling,
/// Stalled) and the common Ready/Available conditions.
fn generic(status: Option<&Value>) -> ObjectHealth {
    // kstatus order: a controller that says it is still reconciling is not stalled yet.
    if let Some(c) = condition(status, "Reconciling")
        && c.is_true()
    {
        return ObjectHealth::new(Health::Progressing, with_detail("reconciling", &c));
    }
    if let Some(c) = condition(status, "Stalled")
        && c.is_true()
    {
        return ObjectHealth::new(Health::Degraded, with_detail("stalled", &c));
    }
    let Some((type_, c)) = ["Ready", "Available"]
        .into_iter()
        .find_map(|t| condition(status, t).map(|c| (t, c)))
    else {
        // ConfigMap, Secret, Role, a custom resource without conditions: nothing to wait for.
        return ObjectHealth::new(Health::Healthy, "");
    };
    match c.status {
        "True" => ObjectHealth::new(Health::Healthy, with_detail(type_, &c)),
        "False" => {
            let reason = c.reason.to_ascii_lowercase();
            if WORKING_REASONS.iter().any(|w| reason.contains(w)) {
                ObjectHealth::new(
                    Health::Progressing,
                    with_detail(&format!("not {type_} yet"), &c),
                )
            } else {
                ObjectHealth::new(Health::Degraded, with_detail(&format!("not {type_}"), &c))
            }
        }
        _ => ObjectHealth::new(
            Health::Progressing,
            with_detail(&format!("{type_} unknown"), &c),
        ),
    }
}

#[cfg(test)]
mod tests;
