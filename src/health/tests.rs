use serde_json::{Value, json};

use super::*;

fn h(live: Value) -> ObjectHealth {
    assess(&live)
}

fn metadata(name: &str, generation: i64) -> Value {
    json!({
        "name": name,
        "namespace": "shop",
        "uid": "6f1c2a52-3a5d-4b8e-9d1e-0c2b7a9e1f11",
        "resourceVersion": "48213",
        "generation": generation,
        "creationTimestamp": "2026-04-02T09:12:44Z"
    })
}

/// A Deployment of `replicas` with the status counts and the Progressing condition given.
fn deployment(
    replicas: i64,
    total: i64,
    updated: i64,
    available: i64,
    progressing: (&str, &str),
) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata("api", 3),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "api"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "progressDeadlineSeconds": 600,
            "template": {"metadata": {"labels": {"app": "api"}},
                          "spec": {"containers": [{"name": "api", "image": "registry.example/api:1.4.2"}]}}
        },
        "status": {
            "observedGeneration": 3,
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": (replicas - available).max(0),
            "conditions": [
                {"type": "Available", "status": if available >= replicas { "True" } else { "False" },
                 "lastUpdateTime": "2026-04-02T09:13:01Z", "lastTransitionTime": "2026-04-02T09:13:01Z",
                 "reason": if available >= replicas { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                 "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": progressing.0,
                 "lastUpdateTime": "2026-04-02T09:23:01Z", "lastTransitionTime": "2026-04-02T09:12:44Z",
                 "reason": progressing.1,
                 "message": "ReplicaSet \"api-7d9c8b6f5\" has successfully progressed."}
            ]
        }
    })
}

// ---- any kind ----

#[test]
fn deletion_timestamp_is_progressing() {
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata("cfg", 0), "data": {}});
    cm["metadata"]["deletionTimestamp"] = json!("2026-04-02T10:00:00Z");
    cm["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    let r = h(cm);
    assert_eq!(r.health, Health::Progressing);
    assert_eq!(r.message, "being deleted");
}

#[test]
fn generation_not_observed_is_progressing() {
    let mut d = deployment(2, 2, 2, 2, ("True", "NewReplicaSetAvailable"));
    d["metadata"]["generation"] = json!(4);
    let r = h(d);
    assert_eq!(r.health, Health::Progressing);
    assert_eq!(
        r.message,
        "the controller has not observed generation 4 yet"
    );
}

// ---- Deployment ----

#[test]
fn deployment_rolled_out_is_healthy() {
    let r = h(deployment(3, 3, 3, 3, ("True", "NewReplicaSetAvailable")));
    assert_eq!(r.health, Health::Healthy, "{}", r.message);
    assert_eq!(r.message, "3 of 3 available");
}

#[test]
fn deployment_rolling_out_is_progressing() {
    let r = h(deployment(3, 4, 1, 3, ("True", "ReplicaSetUpdated")));
    assert_eq!(r.health, Health::Progressing);
    assert!(
        r.message.starts_with("1 of 3 updated, 3 available"),
        "{}",
        r.message
    );
}

#[test]
fn deployment_old_replicas_still_around_is_progressing() {
    let r = h(deployment(3, 4, 3, 3, ("True", "ReplicaSetUpdated")));
    assert_eq!(r.health, Health::Progressing);
    assert!(
        r.message.contains("1 old replicas to terminate"),
        "{}",
        r.message
    );
}

#[test]
fn deployment_not_available_is_progressing() {
    let r = h(deployment(3, 3, 3, 1, ("True", "NewReplicaSetAvailable")));
    assert_eq!(r.health, Health::Progressing);
    assert!(
        r.message.starts_with("3 of 3 updated, 1 available"),
        "{}",
        r.message
    );
}

#[test]
fn deployment_progress_deadline_exceeded_is_degraded() {
    let mut d = deployment(3, 4, 1, 3, ("False", "ProgressDeadlineExceeded"));
    d["status"]["conditions"][1]["message"] =
        json!("ReplicaSet \"api-5f6d7c8b9\" has timed out progressing.");
    let r = h(d);
    assert_eq!(r.health, Health::Degraded);
    assert!(
        r.message.starts_with("ProgressDeadlineExceeded"),
        "{}",
        r.message
    );
    assert!(r.message.contains("timed out progressing"), "{}", r.message);
}

#[test]
fn deployment_paused_is_healthy() {
    let mut d = deployment(3, 3, 1, 3, ("Unknown", "DeploymentPaused"));
    d["spec"]["paused"] = json!(true);
    d["status"]["conditions"][1]["message"] = json!("Deployment is paused");
    let r = h(d);
    assert_eq!(r.health, Health::Healthy);
    assert_eq!(r.message, "paused");
}

#[test]
fn deployment_without_status_is_progressing() {
    let mut d = deployment(3, 3, 3, 3, ("True", "NewReplicaSetAvailable"));
    d.as_object_mut().map(|o| o.remove("status"));
    assert_eq!(h(d).health, Health::Progressing);
}

#[test]
fn deployment_replicas_default_to_one() {
    let mut d = deployment(1, 0, 0, 0, ("True", "NewReplicaSetCreated"));
    d["spec"].as_object_mut().map(|o| o.remove("replicas"));
    let r = h(d);
    assert_eq!(r.health, Health::Progressing);
    assert!(r.message.starts_with("0 of 1 updated"), "{}", r.message);
}

#[test]
fn deployment_scaled_to_zero_is_healthy() {
    let mut d = deployment(0, 0, 0, 0, ("True", "NewReplicaSetAvailable"));
    d["status"].as_object_mut().map(|o| {
        o.remove("replicas");
        o.remove("updatedReplicas");
        o.remove("readyReplicas");
        o.remove("availableReplicas")
    });
    assert_eq!(h(d).health, Health::Healthy);
}

// ---- StatefulSet ----

fn stateful_set(replicas: i64, ready: i64, updated: i64, current: &str, update: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata("db", 2),
        "spec": {
            "replicas": replicas,
            "serviceName": "db",
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}},
                          "spec": {"containers": [{"name": "postgres", "image": "postgres:17.4"}]}}
        },
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "readyReplicas": ready,
            "currentReplicas": replicas - updated,
            "updatedReplicas": updated,
            "availableReplicas": ready,
            "currentRevision": current,
            "updateRevision": update,
            "collisionCount": 0
        }
    })
}

#[test]
fn stateful_set_ready_and_rolled_out_is_healthy() {
    let r = h(stateful_set(3, 3, 3, "db-6c9f8d7b5", "db-6c9f8d7b5"));
    assert_eq!(r.health, Health::Healthy, "{}", r.message);
}

#[test]
fn stateful_set_not_ready_is_progressing() {
    let r = h(stateful_set(3, 2, 3, "db-6c9f8d7b5", "db-6c9f8d7b5"));
    assert_eq!(r.health, Health::Progressing);
    assert!(r.message.starts_with("2 of 3 ready"), "{}", r.message);
}

#[test]
fn stateful_set_revisions_differ_is_rolling_out() {
    let r = h(stateful_set(3, 3, 1, "db-6c9f8d7b5", "db-74b5d9c8f"));
    assert_eq!(r.health, Health::Progressing);
    assert!(r.message.starts_with("rolling out"), "{}", r.message);
}

#[test]
fn stateful_set_partition_is_respected() {
    // Partition 2 of 3: only db-2 is updated; the others keep the old revision on purpose.
    let mut s = stateful_set(3, 3, 1, "db-6c9f8d7b5", "db-74b5d9c8f");
    s["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(2);
    let r = h(s.clone());
    assert_eq!(r.health, Health::Healthy, "{}", r.message);
    // Not even the pods above the partition updated yet.
    s["status"]["updatedReplicas"] = json!(0);
    let r = h(s);
    assert_eq!(r.health, Health::Progressing);
    assert!(r.message.contains("partition 2"), "{}", r.message);
}

#[test]
fn stateful_set_on_delete_only_readiness() {
    let mut s = stateful_set(3, 3, 0, "db-6c9f8d7b5", "db-74b5d9c8f");
    s["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    assert_eq!(h(s.clone()).health, Health::Healthy);
    s["status"]["readyReplicas"] = json!(1);
    assert_eq!(h(s).health, Health::Progressing);
}

// ---- DaemonSet ----

fn daemon_set(desired: i64, updated: i64, available: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata("node-agent", 5),
        "spec": {
            "selector": {"matchLabels": {"app": "node-agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "template": {"metadata": {"labels": {"app": "node-agent"}},
                          "spec": {"containers": [{"name": "agent", "image": "registry.example/agent:2.0"}]}}
        },
        "status": {
            "observedGeneration": 5,
            "currentNumberScheduled": desired,
            "desiredNumberScheduled": desired,
            "numberMisscheduled": 0,
            "numberReady": available,
            "numberAvailable": available,
            "numberUnavailable": desired - available,
            "updatedNumberScheduled": updated
        }
    })
}

#[test]
fn daemon_set_rules() {
    assert_eq!(h(daemon_set(4, 4, 4)).health, Health::Healthy);
    let r = h(daemon_set(4, 2, 4));
    assert_eq!(r.health, Health::Progressing);
    assert!(r.message.starts_with("2 of 4 updated"), "{}", r.message);
    let r = h(daemon_set(4, 4, 3));
    assert_eq!(r.health, Health::Progressing);
    assert!(r.message.starts_with("3 of 4 available"), "{}", r.message);
}

#[test]
fn daemon_set_on_delete_only_availability() {
    let mut d = daemon_set(4, 0, 4);
    d["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
    assert_eq!(h(d.clone()).health, Health::Healthy);
    d["status"]["numberAvailable"] = json!(3);
    assert_eq!(h(d).health, Health::Progressing);
}

// ---- ReplicaSet ----

fn replica_set(replicas: i64, available: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": metadata("api-7d9c8b6f5", 1),
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "api"}}},
        "status": {"replicas": replicas, "fullyLabeledReplicas": replicas, "readyReplicas": available,
                   "availableReplicas": available, "observedGeneration": 1}
    })
}

#[test]
fn replica_set_rules() {
    assert_eq!(h(replica_set(2, 2)).health, Health::Healthy);
    assert_eq!(h(replica_set(2, 1)).health, Health::Progressing);
    let mut rs = replica_set(2, 0);
    rs["status"]["conditions"] = json!([{
        "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
        "lastTransitionTime": "2026-04-02T09:13:01Z",
        "message": "pods \"api-7d9c8b6f5-\" is forbidden: exceeded quota: compute, requested: cpu=500m, used: cpu=4, limited: cpu=4"
    }]);
    let r = h(rs);
    assert_eq!(r.health, Health::Degraded);
    assert!(r.message.contains("FailedCreate"), "{}", r.message);
}

// ---- Job ----

fn job(status: Value) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata("migrate", 1),
        "spec": {
            "backoffLimit": 2, "completions": 1, "parallelism": 1, "suspend": false,
            "template": {"spec": {"restartPolicy": "Never",
                                   "containers": [{"name": "migrate", "image": "registry.example/migrate:7"}]}}
        },
        "status": status
    })
}

#[test]
fn job_complete_is_healthy() {
    let r = h(job(json!({
        "startTime": "2026-04-02T09:12:45Z", "completionTime": "2026-04-02T09:13:20Z",
        "succeeded": 1, "ready": 0, "terminating": 0,
        "uncountedTerminatedPods": {},
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
             "message": "Reached expected number of succeeded pods",
             "lastProbeTime": "2026-04-02T09:13:18Z", "lastTransitionTime": "2026-04-02T09:13:18Z"},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached",
             "message": "Reached expected number of succeeded pods",
             "lastProbeTime": "2026-04-02T09:13:20Z", "lastTransitionTime": "2026-04-02T09:13:20Z"}
        ]
    })));
    assert_eq!(r.health, Health::Healthy);
}

#[test]
fn job_backoff_limit_exceeded_is_degraded() {
    let r = h(job(json!({
        "startTime": "2026-04-02T09:12:45Z", "failed": 3, "ready": 0, "terminating": 0,
        "uncountedTerminatedPods": {},
        "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit",
             "lastProbeTime": "2026-04-02T09:14:02Z", "lastTransitionTime": "2026-04-02T09:14:02Z"},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit",
             "lastProbeTime": "2026-04-02T09:14:03Z", "lastTransitionTime": "2026-04-02T09:14:03Z"}
        ]
    })));
    assert_eq!(r.health, Health::Degraded);
    assert_eq!(
        r.message,
        "failed (BackoffLimitExceeded: Job has reached the specified backoff limit)"
    );
}

#[test]
fn job_running_is_progressing() {
    let r = h(job(json!({
        "startTime": "2026-04-02T09:12:45Z", "active": 1, "ready": 1, "terminating": 0,
        "uncountedTerminatedPods": {}
    })));
    assert_eq!(r.health, Health::Progressing);
    assert!(r.message.starts_with("1 active"), "{}", r.message);
}

#[test]
fn job_suspended_is_healthy() {
    let mut j = job(json!({
        "conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended",
                        "message": "Job suspended", "lastProbeTime": "2026-04-02T09:12:45Z",
                        "lastTransitionTime": "2026-04-02T09:12:45Z"}]
    }));
    j["spec"]["suspend"] = json!(true);
    let r = h(j);
    assert_eq!(r.health, Health::Healthy);
    assert_eq!(r.message, "suspended");
}

// ---- Pod ----

fn pod(status: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "api-7d9c8b6f5-x2x9q", "namespace": "shop",
                     "uid": "0b8e0b5e-7f3a-4c51-9a7e-2f1e3d4c5b6a", "resourceVersion": "48300",
                     "creationTimestamp": "2026-04-02T09:12:44Z",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": "api-7d9c8b6f5", "uid": "a1", "controller": true}]},
        "spec": {"containers": [{"name": "api", "image": "registry.example/api:1.4.2"}],
                 "restartPolicy": "Always"},
        "status": status
    })
}

fn pod_conditions(ready: &str) -> Value {
    json!([
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2026-04-02T09:12:47Z"},
        {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-04-02T09:12:44Z"},
        {"type": "Ready", "status": ready, "lastTransitionTime": "2026-04-02T09:12:50Z"},
        {"type": "ContainersReady", "status": ready, "lastTransitionTime": "2026-04-02T09:12:50Z"},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-04-02T09:12:44Z"}
    ])
}

#[test]
fn pod_running_ready_is_healthy() {
    let r = h(pod(json!({
        "phase": "Running", "hostIP": "10.0.0.12", "podIP": "10.244.1.17", "qosClass": "BestEffort",
        "startTime": "2026-04-02T09:12:44Z",
        "conditions": pod_conditions("True"),
        "containerStatuses": [{"name": "api", "ready": true, "started": true, "restartCount": 0,
                               "image": "registry.example/api:1.4.2", "imageID": "registry.example/api@sha256:ab",
                               "containerID": "containerd://1f",
                               "state": {"running": {"startedAt": "2026-04-02T09:12:47Z"}}}]
    })));
    assert_eq!(r.health, Health::Healthy);
}

#[test]
fn pod_running_not_ready_is_progressing() {
    let r = h(pod(json!({
        "phase": "Running", "conditions": pod_conditions("False"),
        "containerStatuses": [{"name": "api", "ready": false, "started": true, "restartCount": 0,
                               "state": {"running": {"startedAt": "2026-04-02T09:12:47Z"}}}]
    })));
    assert_eq!(r.health, Health::Progressing);
    assert_eq!(r.message, "running, not ready");
}

#[test]
fn pod_crash_loop_is_degraded() {
    let r = h(pod(json!({
        "phase": "Running", "conditions": pod_conditions("False"),
        "containerStatuses": [{
            "name": "api", "ready": false, "started": false, "restartCount": 5,
            "image": "registry.example/api:1.4.2",
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                         "startedAt": "2026-04-02T09:15:01Z", "finishedAt": "2026-04-02T09:15:02Z"}},
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                  "message": "back-off 2m40s restarting failed container=api pod=api-7d9c8b6f5-x2x9q_shop(0b8e0b5e)"}}
        }]
    })));
    assert_eq!(r.health, Health::Degraded);
    assert!(
        r.message.starts_with("container api: CrashLoopBackOff"),
        "{}",
        r.message
    );
}

#[test]
fn pod_init_container_image_pull_backoff_is_degraded() {
    let r = h(pod(json!({
        "phase": "Pending",
        "conditions": [{"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized",
                        "message": "containers with incomplete status: [wait-db]"},
                       {"type": "PodScheduled", "status": "True"}],
        "initContainerStatuses": [{
            "name": "wait-db", "ready": false, "restartCount": 0, "image": "busybox:nope",
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"busybox:nope\""}}
        }]
    })));
    assert_eq!(r.health, Health::Degraded);
    assert!(
        r.message.starts_with("container wait-db: ImagePullBackOff"),
        "{}",
        r.message
    );
}

#[test]
fn pod_unschedulable_is_progressing_with_reason() {
    let r = h(pod(json!({
        "phase": "Pending", "qosClass": "Burstable",
        "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "lastProbeTime": null, "lastTransitionTime": "2026-04-02T09:12:44Z",
            "message": "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
        }]
    })));
    assert_eq!(r.health, Health::Progressing);
    assert!(
        r.message.contains("Unschedulable: 0/3 nodes are available"),
        "{}",
        r.message
    );
}

#[test]
fn pod_succeeded_and_failed() {
    assert_eq!(
        h(pod(json!({"phase": "Succeeded"}))).health,
        Health::Healthy
    );
    let r = h(pod(json!({"phase": "Failed", "reason": "Evicted",
                         "message": "The node was low on resource: memory."})));
    assert_eq!(r.health, Health::Degraded);
    assert!(r.message.contains("Evicted"), "{}", r.message);
}

// ---- PersistentVolumeClaim ----

fn pvc(phase: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data-db-0", "namespace": "shop", "uid": "c3"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}},
                 "storageClassName": "standard", "volumeMode": "Filesystem"},
        "status": {"phase": phase}
    })
}

#[test]
fn pvc_rules() {
    assert_eq!(h(pvc("Bound")).health, Health::Healthy);
    assert_eq!(h(pvc("Lost")).health, Health::Degraded);
    assert_eq!(h(pvc("Pending")).health, Health::Progressing);
}

// ---- Service ----

fn service(type_: &str, status: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "uid": "d4"},
        "spec": {"type": type_, "selector": {"app": "web"}, "clusterIP": "10.96.12.4",
                 "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        "status": status
    })
}

#[test]
fn load_balancer_without_address_is_progressing() {
    let r = h(service("LoadBalancer", json!({"loadBalancer": {}})));
    assert_eq!(r.health, Health::Progressing);
    assert_eq!(r.message, "waiting for a load balancer address");
    let r = h(service(
        "LoadBalancer",
        json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10", "ipMode": "VIP"}]}}),
    ));
    assert_eq!(r.health, Health::Healthy);
}

#[test]
fn cluster_ip_service_is_healthy() {
    assert_eq!(
        h(service("ClusterIP", json!({"loadBalancer": {}}))).health,
        Health::Healthy
    );
}

// ---- CustomResourceDefinition ----

fn crd(conditions: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com", "uid": "e5", "generation": 1},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                 "versions": [{"name": "v1", "served": true, "storage": true}]},
        "status": {"acceptedNames": {"kind": "Widget", "plural": "widgets"},
                   "storedVersions": ["v1"], "conditions": conditions}
    })
}

#[test]
fn crd_rules() {
    let established = crd(json!([
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}
    ]));
    assert_eq!(h(established).health, Health::Healthy);

    let not_yet = crd(json!([
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
        {"type": "Established", "status": "False", "reason": "Installing", "message": "the initial names have been accepted"}
    ]));
    let r = h(not_yet);
    assert_eq!(r.health, Health::Progressing);
    assert_eq!(r.message, "waiting to be established");

    let conflict = crd(json!([
        {"type": "NamesAccepted", "status": "False", "reason": "MultipleNamesConflict",
         "message": "\"widgets\" is already in use"},
        {"type": "Established", "status": "False", "reason": "NotAccepted", "message": "not all names are accepted"}
    ]));
    let r = h(conflict);
    assert_eq!(r.health, Health::Degraded);
    assert!(r.message.contains("already in use"), "{}", r.message);
}

// ---- APIService, Namespace, HPA ----

#[test]
fn api_service_rules() {
    let svc = |status: &str, reason: &str| {
        json!({
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {"group": "metrics.k8s.io", "version": "v1beta1",
                     "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443}},
            "status": {"conditions": [{"type": "Available", "status": status, "reason": reason,
                                       "lastTransitionTime": "2026-04-02T09:12:44Z"}]}
        })
    };
    assert_eq!(h(svc("True", "Passed")).health, Health::Healthy);
    let r = h(svc("False", "MissingEndpoints"));
    assert_eq!(r.health, Health::Progressing);
    assert!(r.message.contains("MissingEndpoints"), "{}", r.message);
}

#[test]
fn namespace_terminating_is_progressing() {
    let ns = |phase: &str| {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"},
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": phase}})
    };
    assert_eq!(h(ns("Active")).health, Health::Healthy);
    assert_eq!(h(ns("Terminating")).health, Health::Progressing);
}

#[test]
fn hpa_without_metrics_server_is_healthy() {
    let hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "api", "namespace": "shop", "uid": "f6"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
                 "minReplicas": 2, "maxReplicas": 10,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                              "target": {"type": "Utilization", "averageUtilization": 70}}}]},
        "status": {
            "currentReplicas": 2, "desiredReplicas": 2,
            "currentMetrics": null,
            "conditions": [
                {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale",
                 "message": "the HPA controller was able to get the target's current scale",
                 "lastTransitionTime": "2026-04-02T09:13:00Z"},
                {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric",
                 "message": "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from resource metrics API: the server could not find the requested resource (get pods.metrics.k8s.io)",
                 "lastTransitionTime": "2026-04-02T09:13:00Z"}
            ]
        }
    });
    let r = h(hpa);
    assert_eq!(r.health, Health::Healthy, "{}", r.message);
    assert!(
        r.message.contains("FailedGetResourceMetric"),
        "{}",
        r.message
    );
}

// ---- generic ----

fn widget(conditions: Value) -> Value {
    json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": metadata("blue", 2),
        "spec": {"size": 3},
        "status": {"observedGeneration": 2, "conditions": conditions}
    })
}

#[test]
fn custom_resource_ready_false_is_degraded() {
    let r = h(widget(
        json!([{"type": "Ready", "status": "False", "reason": "ConfigInvalid",
                             "message": "spec.size must be odd", "observedGeneration": 2,
                             "lastTransitionTime": "2026-04-02T09:13:00Z"}]),
    ));
    assert_eq!(r.health, Health::Degraded);
    assert!(
        r.message.contains("ConfigInvalid: spec.size must be odd"),
        "{}",
        r.message
    );
}

#[test]
fn custom_resource_ready_false_but_working_is_progressing() {
    for reason in [
        "Progressing",
        "ReconciliationInProgress",
        "Pending",
        "Creating",
        "Updating",
    ] {
        let r = h(widget(
            json!([{"type": "Ready", "status": "False", "reason": reason}]),
        ));
        assert_eq!(r.health, Health::Progressing, "{reason}");
    }
}

#[test]
fn custom_resource_conditions() {
    let ready = h(widget(
        json!([{"type": "Ready", "status": "True", "reason": "Succeeded"}]),
    ));
    assert_eq!(ready.health, Health::Healthy);
    let available = h(widget(json!([{"type": "Available", "status": "True"}])));
    assert_eq!(available.health, Health::Healthy);
    let unknown = h(widget(
        json!([{"type": "Ready", "status": "Unknown", "reason": "Checking"}]),
    ));
    assert_eq!(unknown.health, Health::Progressing);
    // Flux: a HelmRelease that gave up.
    let stalled = h(widget(json!([
        {"type": "Ready", "status": "False", "reason": "InstallFailed"},
        {"type": "Stalled", "status": "True", "reason": "RetriesExceeded", "message": "Failed to install after 3 attempt(s)"}
    ])));
    assert_eq!(stalled.health, Health::Degraded);
    assert!(
        stalled.message.contains("RetriesExceeded"),
        "{}",
        stalled.message
    );
    let reconciling = h(widget(json!([
        {"type": "Reconciling", "status": "True", "reason": "Progressing", "message": "Fulfilling prerequisites"},
        {"type": "Ready", "status": "Unknown", "reason": "Progressing"}
    ])));
    assert_eq!(reconciling.health, Health::Progressing);
}

#[test]
fn objects_without_status_are_healthy() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                    "data": {"LOG_LEVEL": "info"}});
    assert_eq!(h(cm).health, Health::Healthy);
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                      "metadata": {"name": "reader"},
                      "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
    assert_eq!(h(role).health, Health::Healthy);
    assert_eq!(h(widget(json!([]))).health, Health::Healthy);
}

#[test]
fn a_custom_kind_named_deployment_gets_the_generic_rule() {
    let d = json!({"apiVersion": "example.com/v1", "kind": "Deployment", "metadata": {"name": "x"},
                   "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    assert_eq!(h(d).health, Health::Healthy);
}

// ---- missing, worst ----

#[test]
fn missing_object() {
    let r = assess_or_missing(None);
    assert_eq!(r.health, Health::Missing);
    assert_eq!(r.message, "not found in the cluster");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}});
    assert_eq!(assess_or_missing(Some(&cm)).health, Health::Healthy);
}

#[test]
fn worst_ordering() {
    use Health::*;
    assert_eq!(worst([]), Healthy);
    assert_eq!(worst([Healthy, Healthy]), Healthy);
    assert_eq!(worst([Healthy, Unknown]), Unknown);
    assert_eq!(worst([Unknown, Progressing, Healthy]), Progressing);
    assert_eq!(worst([Progressing, Missing, Unknown]), Missing);
    assert_eq!(worst([Missing, Degraded, Progressing]), Degraded);
    assert!(
        Degraded > Missing && Missing > Progressing && Progressing > Unknown && Unknown > Healthy
    );
}

// ---- garbage ----

#[test]
fn garbage_does_not_panic() {
    assert_eq!(h(json!("Deployment")).health, Health::Unknown);
    assert_eq!(h(json!(null)).health, Health::Unknown);
    assert_eq!(h(json!([1, 2])).health, Health::Unknown);
    let bad_status = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "status": 5});
    assert_eq!(h(bad_status).health, Health::Unknown);
    // Every kind with every field of the wrong type.
    let kinds = [
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("apps/v1", "ReplicaSet"),
        ("batch/v1", "Job"),
        ("v1", "Pod"),
        ("v1", "PersistentVolumeClaim"),
        ("v1", "Service"),
        ("v1", "Namespace"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("apiregistration.k8s.io/v1", "APIService"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("example.com/v1", "Widget"),
        ("", ""),
    ];
    let weird_statuses = [
        json!({}),
        json!({"conditions": 7, "replicas": "three", "phase": 1, "containerStatuses": {"a": 1},
               "loadBalancer": {"ingress": "x"}, "observedGeneration": "2"}),
        json!({"conditions": [null, 3, {"type": 5}, {"type": "Ready"}, {"type": "Stalled", "status": true}],
               "initContainerStatuses": [null, {"state": {"waiting": 3}}, {"state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
               "updatedReplicas": -5, "replicas": i64::MAX, "availableReplicas": i64::MIN}),
    ];
    for (api_version, kind) in kinds {
        for status in &weird_statuses {
            for spec in [
                json!(5),
                json!({"replicas": i64::MIN, "paused": "yes", "type": 3,
                                          "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": i64::MIN}}}),
            ] {
                let live = json!({"apiVersion": api_version, "kind": kind,
                                  "metadata": {"generation": "x", "deletionTimestamp": null},
                                  "spec": spec, "status": status});
                let _ = assess(&live);
            }
        }
        let _ = assess(&json!({"apiVersion": api_version, "kind": kind, "metadata": 5}));
        let _ = assess(&json!({"apiVersion": 3, "kind": [kind]}));
    }
}

#[test]
fn long_messages_are_truncated_on_a_char_boundary() {
    let long = "é".repeat(500);
    let r = h(widget(
        json!([{"type": "Ready", "status": "False", "reason": "Broken", "message": long}]),
    ));
    assert_eq!(r.health, Health::Degraded);
    assert!(r.message.chars().count() < 200, "{}", r.message.len());
}
