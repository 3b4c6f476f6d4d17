//! A custom resource whose CRD makes a field immutable with a CEL rule, seen end to end (issue
//! 15 d): the real `gitopsd run` binary on a config repo it follows, against the local cluster.
//!
//! Each test has its own tier and namespaces (random suffix) and its own CRD group; the CRD is
//! deleted however the test ends.

use std::time::Duration;

use crate::reconcile_support::{Fixture, TierExtra, random_suffix};
use crate::support::{self, ClusterScoped, apply_as, eventually};
use gitopsd::live::{ApiLive, LiveObjects, ObjectKey};
use serde_json::{Value, json};

/// A first sync on the local cluster, and a later one.
const SYNC: Duration = Duration::from_secs(60);

/// A CRD whose `spec.size` may not change: the CEL transition rule `self == oldSelf`, with
/// the message the Kubernetes docs use, as CRDs do instead of the built-in "field is
/// immutable".
fn gadget_crd(group: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gadgets.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "properties": {
                            "size": {
                                "type": "string",
                                "x-kubernetes-validations": [
                                    {"rule": "self == oldSelf", "message": "Value is immutable"}
                                ],
                            },
                            "color": {"type": "string"},
                        },
                    }},
                }},
            }],
        },
    })
}

fn gadget(group: &str, size: &str) -> String {
    format!(
        "apiVersion: {group}/v1\nkind: Gadget\nmetadata:\n  name: g\nspec:\n  size: {size}\n  color: blue\n"
    )
}

async fn established(live: &ApiLive, key: &ObjectKey) {
    eventually("the CRD to be Established", SYNC, || async {
        let crd = live.get(key).await.ok()??;
        crd.pointer("/status/conditions")?
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_custom_resource_whose_cel_immutable_field_changes_is_recreated_when_its_kind_may_be() {
    let group = format!("leaf-{}.example.com", random_suffix());
    let crd = gadget_crd(&group);
    let crd_key = ObjectKey::of(&crd);
    let _crd_guard = ClusterScoped(vec![crd_key.clone()]);
    let live = ApiLive::new(support::client().await);
    apply_as(&live, "leaf-test", &crd_key, &crd).await;
    established(&live, &crd_key).await;

    let mut f = Fixture::new(
        "cel-recreate",
        vec![("base/gadget.yaml".to_owned(), gadget(&group, "small"))],
        TierExtra(vec!["apply: {recreateOnImmutable: [Gadget]}".into()]),
    );
    let key = ObjectKey {
        api_version: format!("{group}/v1"),
        kind: "Gadget".into(),
        namespace: Some(f.tier.clone()),
        name: "g".into(),
    };
    let first = f.head();
    f.start();
    f.wait_status(&format!("Synced at {first}"), SYNC, |s| {
        (s["revision"] == first.as_str() && s["sync"] == "Synced").then_some(())
    })
    .await;
    let before = live.get(&key).await.expect("read").expect("the Gadget");
    assert_eq!(before["spec"]["size"], "small");

    f.write_files(&vec![(
        "base/gadget.yaml".to_owned(),
        gadget(&group, "large"),
    )]);
    let second = f.commit("make the gadget large (an immutable field)");
    f.wait_status(&format!("Synced at {second}"), SYNC, |s| {
        (s["revision"] == second.as_str() && s["sync"] == "Synced").then_some(())
    })
    .await;
    let after = live.get(&key).await.expect("read").expect("the Gadget");
    assert_eq!(after["spec"]["size"], "large", "{after}");
    assert_ne!(
        after["metadata"]["uid"], before["metadata"]["uid"],
        "deleted and created again"
    );
}
