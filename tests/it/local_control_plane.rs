//! The local control plane is a real Kubernetes: a real API server, real controllers that roll
//! out Deployments, and kwok nodes on which Pods become Ready.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::{Api, ResourceExt};

#[tokio::test]
async fn the_api_server_runs_the_pinned_kubernetes_version() {
    let client = support::client().await;
    let version = client.apiserver_version().await.expect("server version");
    assert_eq!(version.git_version, support::pinned_kubernetes_version());
}

#[tokio::test]
async fn kwok_nodes_are_registered_and_ready() {
    let client = support::client().await;
    let nodes: Api<Node> = Api::all(client);
    let list = nodes
        .list(&ListParams::default().labels("type=kwok"))
        .await
        .expect("list nodes");
    assert!(!list.items.is_empty(), "no kwok nodes registered");
    for node in list {
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        assert_eq!(ready, Some("True"), "node {} is not Ready", node.name_any());
    }
}

#[tokio::test]
async fn a_server_side_applied_deployment_becomes_available_on_kwok_nodes() {
    support::with_namespace("ssa-deployment-available", |client, ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let desired: Deployment = support::fixture("deployment-api.yaml");
        let applied = deployments
            .patch(
                "api",
                &PatchParams::apply("gitopsd"),
                &Patch::Apply(&desired),
            )
            .await
            .expect("server-side apply the Deployment");
        let manager = applied
            .managed_fields()
            .iter()
            .find(|m| m.manager.as_deref() == Some("gitopsd"))
            .expect("gitopsd owns fields of the applied Deployment");
        assert_eq!(manager.operation.as_deref(), Some("Apply"));

        // Available needs the deployment controller, the replicaset controller, the scheduler
        // and kwok to have done their parts.
        let available = tokio::time::timeout(
            Duration::from_secs(90),
            await_condition(deployments.clone(), "api", is_available),
        )
        .await
        .expect("the Deployment became Available within 90s")
        .expect("watch the Deployment");
        let status = available.and_then(|d| d.status).expect("Deployment status");
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(2));

        let pods: Api<Pod> = Api::namespaced(client, &ns);
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/name=api"))
            .await
            .expect("list pods");
        assert_eq!(list.items.len(), 2);
        for pod in list {
            let spec = pod.spec.as_ref().expect("pod spec");
            let node = spec.node_name.as_deref().unwrap_or_default();
            assert!(
                node.starts_with("kwok-node-"),
                "pod {} on {node:?}",
                pod.name_any()
            );
            let status = pod.status.as_ref().expect("pod status");
            assert_eq!(status.phase.as_deref(), Some("Running"));
            assert!(status.pod_ip.is_some(), "pod {} has no IP", pod.name_any());
        }
    })
    .await;
}

/// The kwok stage for the rollback tests (scripts/kwok-stages/pod-unready.yaml): Pods labelled
/// `gitopsd.io/kwok-unready: "true"` run but never become Ready, while a twin Deployment
/// without the label becomes Available on the same nodes.
#[tokio::test]
async fn pods_labelled_kwok_unready_run_but_never_become_ready() {
    support::with_namespace("kwok-unready", |client, ns| async move {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        let twin = |name: &str, unready: bool| -> Deployment {
            let mut pod_labels = serde_json::json!({"app.kubernetes.io/name": name});
            if unready {
                pod_labels["gitopsd.io/kwok-unready"] = "true".into();
            }
            serde_json::from_value(serde_json::json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                    "template": {
                        "metadata": {"labels": pod_labels},
                        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1"}]},
                    },
                },
            }))
            .expect("a Deployment")
        };
        for (name, unready) in [("stuck", true), ("fine", false)] {
            deployments
                .patch(
                    name,
                    &PatchParams::apply("gitopsd-test"),
                    &Patch::Apply(&twin(name, unready)),
                )
                .await
                .unwrap_or_else(|e| panic!("apply Deployment {name}: {e}"));
        }

        tokio::time::timeout(
            Duration::from_secs(90),
            await_condition(deployments.clone(), "fine", is_available),
        )
        .await
        .expect("the Deployment without the label became Available within 90s")
        .expect("watch the Deployment");

        // Both Pods of the labelled Deployment get Running with Ready False...
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        let running_unready = |p: &Pod| {
            let status = p.status.as_ref();
            let phase = status.and_then(|s| s.phase.as_deref());
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.status.as_str());
            phase == Some("Running") && ready == Some("False")
        };
        support::eventually(
            "both Pods of Deployment stuck to be Running and not Ready (if they became Ready, kwok runs \
             without scripts/kwok-stages/pod-unready.yaml: `scripts/cluster.sh up` restarts kwok \
             with the current stages)",
            Duration::from_secs(60),
            || {
                let pods = pods.clone();
                async move {
                    let list = pods
                        .list(&ListParams::default().labels("app.kubernetes.io/name=stuck"))
                        .await
                        .ok()?;
                    (list.items.len() == 2 && list.items.iter().all(running_unready)).then_some(())
                }
            },
        )
        .await;

        // ...and stay so: no replica of it becomes available for 10 s.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            let d = deployments.get("stuck").await.expect("get Deployment stuck");
            let status = d.status.unwrap_or_default();
            assert_eq!(status.available_replicas.unwrap_or(0), 0, "{status:?}");
            assert_eq!(status.ready_replicas.unwrap_or(0), 0, "{status:?}");
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=stuck"))
                .await
                .expect("list pods");
            for pod in &list.items {
                assert!(running_unready(pod), "pod {} changed: {:?}", pod.name_any(), pod.status);
                let containers = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.clone())
                    .unwrap_or_default();
                assert!(
                    !containers.is_empty() && containers.iter().all(|c| !c.ready),
                    "pod {}: {containers:?}",
                    pod.name_any()
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
}

/// The Deployment's `Available` condition is True and every wanted replica is available.
fn is_available(d: Option<&Deployment>) -> bool {
    let Some(d) = d else { return false };
    let wanted = d.spec.replicas.unwrap_or(1);
    let Some(status) = &d.status else {
        return false;
    };
    let available =
        status.conditions.iter().flatten().any(|c| {
            c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True")
        });
    available && status.available_replicas == Some(wanted)
}
