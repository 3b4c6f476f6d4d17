//! The apply stage on the real local cluster: server-side apply in phases, conflicts with
//! other field managers, immutable fields, deletes guarded by uid, and cancellation.
//!
//! Each test works in a namespace of its own; the one test that needs cluster-scoped objects
//! (a Namespace, a CRD) names them after that namespace and deletes them when done.

use crate::support;

use std::time::Duration;

use gitopsd::apply::{
    Applier, ApplyItem, Conflict, ObjectResult, Outcome, PruneTarget, SHUTTING_DOWN,
    SHUTTING_DOWN_DELETE,
};
use gitopsd::config::ApplyConfig;
use gitopsd::live::{ApiLive, LiveObjects, ObjectKey};
use kube::Client;
use kube::api::DeleteParams;
use serde_json::{Value, json};
use support::{apply_as, eventually, with_namespace};
use tokio_util::sync::CancellationToken;

const TIER: &str = "apply-test";

fn config_map(ns: &str, name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": {"gitopsd.io/tier": TIER}},
        "data": data,
    })
}

fn deployment(ns: &str, name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    })
}

fn items<'a>(manifests: &'a [Value], previous: &[Option<String>]) -> Vec<ApplyItem<'a>> {
    manifests
        .iter()
        .enumerate()
        .map(|(i, m)| ApplyItem {
            manifest: m,
            previous_resource_version: previous.get(i).cloned().flatten(),
            take_fields: Vec::new(),
        })
        .collect()
}

fn outcomes(results: &[ObjectResult]) -> Vec<Outcome> {
    results.iter().map(|r| r.outcome).collect()
}

fn show(results: &[ObjectResult]) -> String {
    results
        .iter()
        .map(|r| {
            format!(
                "\n  {} {}: {:?} {}",
                r.key.kind,
                r.key.name,
                r.outcome,
                r.message.as_deref().unwrap_or("")
            )
        })
        .collect()
}

/// The live resourceVersion of each manifest's object right now, as the reconcile reads it.
async fn live_versions(live: &ApiLive, manifests: &[Value]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for m in manifests {
        let object = live.get(&ObjectKey::of(m)).await.expect("read live object");
        out.push(object.and_then(|o| {
            o.pointer("/metadata/resourceVersion")?
                .as_str()
                .map(str::to_owned)
        }));
    }
    out
}

fn applier(client: &Client, config: ApplyConfig) -> Applier {
    Applier::new(ApiLive::new(client.clone()), TIER, &config)
}

#[tokio::test]
async fn applies_namespaces_and_crds_first_then_unchanged_then_configured() {
    with_namespace("apply-phases", |client, ns| async move {
        let app_ns = format!("{ns}-app");
        let group = format!("{ns}.apply-test.gitopsd.io");
        let crd_name = format!("widgets.{group}");
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": crd_name},
            "spec": {
                "group": group, "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}],
            },
        });
        let widget = json!({
            "apiVersion": format!("{group}/v1"), "kind": "Widget",
            "metadata": {"name": "w1", "namespace": app_ns}, "spec": {"size": 3},
        });
        // Labelled as render labels every object: a manifest with no field for gitopsd to own
        // leaves no managedFields entry, and the next apply adds one (a new resourceVersion).
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": app_ns, "labels": {"gitopsd.io/tier": TIER}}});
        // Namespaced first and the Namespace and CRD last: the phases must reorder them.
        let mut manifests = vec![
            deployment(&app_ns, "api", "api"),
            widget,
            config_map(&app_ns, "settings", json!({"mode": "a"})),
            crd,
            namespace,
        ];
        let live = ApiLive::new(client.clone());
        let applier = Applier::new(live.clone(), TIER, &ApplyConfig::default());
        let cancel = CancellationToken::new();

        let results = applier.apply(items(&manifests, &[]), &cancel).await;
        let keys: Vec<ObjectKey> = manifests.iter().map(ObjectKey::of).collect();
        let result_keys: Vec<ObjectKey> = results.iter().map(|r| r.key.clone()).collect();
        assert_eq!(result_keys, keys, "results in the input order");
        assert_eq!(outcomes(&results), [Outcome::Created; 5], "{}", show(&results));
        for r in &results {
            let applied = r.applied.as_ref().expect("the applied object's metadata");
            let live = live.get(&r.key).await.expect("read back").expect("it exists");
            assert_eq!(applied.uid.as_deref(), live["metadata"]["uid"].as_str(), "{:?}", r.key);
        }
        // The applier waited for Established before returning the CRD's result.
        let crd_live = live.get(&results[3].key).await.expect("read the CRD").expect("the CRD");
        let established = crd_live["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Established" && c["status"] == "True"));
        assert!(established, "the CRD's live object is the Established one: {crd_live}");

        // The deployment controller's status updates move the resourceVersion: let the rollout
        // settle, then read the versions as a reconcile does, just before applying.
        eventually("the Deployment to be Available", Duration::from_secs(30), || {
            let live = live.clone();
            let key = keys[0].clone();
            async move {
                let d = live.get(&key).await.ok()??;
                let available = d["status"]["conditions"].as_array()?.iter().any(|c| {
                    c["type"] == "Available" && c["status"] == "True"
                });
                (available && d["status"]["observedGeneration"] == d["metadata"]["generation"])
                    .then_some(())
            }
        })
        .await;
        let previous = live_versions(&live, &manifests).await;
        let results = applier.apply(items(&manifests, &previous), &cancel).await;
        assert_eq!(outcomes(&results), [Outcome::Unchanged; 5], "{}", show(&results));

        manifests[2] = config_map(&app_ns, "settings", json!({"mode": "b"}));
        let previous = live_versions(&live, &manifests).await;
        let results = applier.apply(items(&manifests, &previous), &cancel).await;
        assert_eq!(
            outcomes(&results),
            [
                Outcome::Unchanged,
                Outcome::Unchanged,
                Outcome::Configured,
                Outcome::Unchanged,
                Outcome::Unchanged
            ],
            "{}",
            show(&results)
        );
        let mode = live.get(&results[2].key).await.expect("read back").expect("it exists");
        assert_eq!(mode["data"]["mode"], json!("b"));

        // Cluster-scoped leftovers of this test; the namespace goes with with_namespace.
        let crds = live.api_for(&keys[3]).await.expect("discovery");
        let _ = crds.delete(&crd_name, &DeleteParams::background()).await;
        let namespaces = live.api_for(&keys[4]).await.expect("discovery");
        let _ = namespaces.delete(&app_ns, &DeleteParams::background()).await;
    })
    .await;
}

#[tokio::test]
async fn a_field_of_another_manager_is_a_conflict_unless_forced() {
    with_namespace("apply-conflict", |client, ns| async move {
        let live = ApiLive::new(client.clone());
        let theirs = config_map(&ns, "shared", json!({"key": "theirs"}));
        let key = ObjectKey::of(&theirs);
        apply_as(&live, "kubectl-edit", &key, &theirs).await;

        let ours = [config_map(&ns, "shared", json!({"key": "ours"}))];
        let cancel = CancellationToken::new();
        let previous = live_versions(&live, &ours).await;
        let results = applier(&client, ApplyConfig::default())
            .apply(items(&ours, &previous), &cancel)
            .await;
        let r = &results[0];
        assert_eq!(r.outcome, Outcome::Failed, "{}", show(&results));
        assert_eq!(
            r.conflicts,
            [Conflict {
                manager: "kubectl-edit".into(),
                field: ".data.key".into()
            }]
        );
        let message = r.message.as_deref().unwrap_or_default();
        for part in [
            &format!("ConfigMap {ns}/shared"),
            "\"kubectl-edit\"",
            ".data.key",
            "set apply.forceConflicts: true for tier apply-test, or remove the field from the other manager",
        ] {
            assert!(message.contains(part), "{part:?} not in {message:?}");
        }
        let still = live.get(&key).await.expect("read").expect("exists");
        assert_eq!(still["data"]["key"], "theirs");

        let forced = ApplyConfig {
            force_conflicts: true,
            ..ApplyConfig::default()
        };
        let results = applier(&client, forced)
            .apply(items(&ours, &previous), &cancel)
            .await;
        assert_eq!(outcomes(&results), [Outcome::Configured], "{}", show(&results));
        assert!(results[0].conflicts.is_empty());
        let now = live.get(&key).await.expect("read").expect("exists");
        assert_eq!(now["data"]["key"], "ours");
    })
    .await;
}

#[tokio::test]
async fn an_immutable_field_fails_unless_the_kind_may_be_recreated() {
    with_namespace("apply-immutable", |client, ns| async move {
        let live = ApiLive::new(client.clone());
        let cancel = CancellationToken::new();
        let first = [deployment(&ns, "api", "a")];
        let results = applier(&client, ApplyConfig::default())
            .apply(items(&first, &[]), &cancel)
            .await;
        assert_eq!(outcomes(&results), [Outcome::Created], "{}", show(&results));
        let key = ObjectKey::of(&first[0]);
        let before = live.get(&key).await.expect("read").expect("exists");

        let changed = [deployment(&ns, "api", "b")];
        let previous = live_versions(&live, &changed).await;
        let results = applier(&client, ApplyConfig::default())
            .apply(items(&changed, &previous), &cancel)
            .await;
        assert_eq!(outcomes(&results), [Outcome::Failed], "{}", show(&results));
        let message = results[0].message.as_deref().unwrap_or_default();
        for part in [
            &format!("Deployment {ns}/api"),
            "spec.selector",
            "immutable",
            "add Deployment to apply.recreateOnImmutable for tier apply-test to allow delete-and-recreate",
        ] {
            assert!(message.contains(part), "{part:?} not in {message:?}");
        }

        let recreate = ApplyConfig {
            recreate_on_immutable: vec!["Deployment".into()],
            ..ApplyConfig::default()
        };
        let results = applier(&client, recreate)
            .apply(items(&changed, &previous), &cancel)
            .await;
        assert_eq!(outcomes(&results), [Outcome::Configured], "{}", show(&results));
        let message = results[0].message.as_deref().unwrap_or_default();
        assert!(
            message.starts_with("recreated: spec.selector") && message.contains("immutable"),
            "{message:?}"
        );
        let after = live.get(&key).await.expect("read").expect("recreated");
        assert_eq!(after["spec"]["selector"]["matchLabels"]["app"], "b");
        assert_ne!(after["metadata"]["uid"], before["metadata"]["uid"], "a new object");
    })
    .await;
}

#[tokio::test]
async fn deletes_guarded_by_uid() {
    with_namespace("apply-delete", |client, ns| async move {
        let live = ApiLive::new(client.clone());
        let cancel = CancellationToken::new();
        let manifests = [
            config_map(&ns, "old", json!({"k": "v"})),
            config_map(&ns, "replaced", json!({"k": "v"})),
        ];
        let applier = applier(&client, ApplyConfig::default());
        let results = applier.apply(items(&manifests, &[]), &cancel).await;
        assert_eq!(
            outcomes(&results),
            [Outcome::Created; 2],
            "{}",
            show(&results)
        );
        let uid = |r: &ObjectResult| r.applied.as_ref().and_then(|a| a.uid.clone());
        let old = ObjectKey::of(&manifests[0]);
        let replaced = ObjectKey::of(&manifests[1]);
        let missing = ObjectKey {
            name: "never-was".into(),
            ..old.clone()
        };
        let targets = vec![
            PruneTarget {
                key: old.clone(),
                uid: uid(&results[0]),
            },
            PruneTarget {
                key: missing.clone(),
                uid: None,
            },
            PruneTarget {
                key: replaced.clone(),
                uid: Some("00000000-0000-0000-0000-000000000000".into()),
            },
        ];
        let deleted = applier.delete(targets, &cancel).await;
        assert_eq!(
            outcomes(&deleted),
            [Outcome::Pruned, Outcome::Pruned, Outcome::Failed],
            "{}",
            show(&deleted)
        );
        assert_eq!(deleted[1].key, missing);
        assert_eq!(deleted[1].message.as_deref(), Some("already gone"));
        let message = deleted[2].message.as_deref().unwrap_or_default();
        assert!(
            message.contains(&format!("ConfigMap {ns}/replaced"))
                && message.contains("replaced since it was read")
                && message.contains("left alone"),
            "{message:?}"
        );
        assert!(live.get(&old).await.expect("read").is_none(), "old is gone");
        assert!(
            live.get(&replaced).await.expect("read").is_some(),
            "replaced is left"
        );
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_token_applies_and_deletes_nothing() {
    with_namespace("apply-cancel", |client, ns| async move {
        let live = ApiLive::new(client.clone());
        let manifests = [
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("{ns}-never")}}),
            config_map(&ns, "never", json!({"k": "v"})),
        ];
        let cancel = CancellationToken::new();
        cancel.cancel();
        let applier = applier(&client, ApplyConfig::default());
        let results = applier.apply(items(&manifests, &[]), &cancel).await;
        assert_eq!(outcomes(&results), [Outcome::Failed; 2], "{}", show(&results));
        for r in &results {
            assert_eq!(r.message.as_deref(), Some(SHUTTING_DOWN));
            assert!(live.get(&r.key).await.expect("read").is_none(), "{:?} created", r.key);
        }

        let existing = [config_map(&ns, "kept", json!({"k": "v"}))];
        let created = applier
            .apply(items(&existing, &[]), &CancellationToken::new())
            .await;
        assert_eq!(outcomes(&created), [Outcome::Created], "{}", show(&created));
        let key = ObjectKey::of(&existing[0]);
        let deleted = applier
            .delete(vec![PruneTarget { key: key.clone(), uid: None }], &cancel)
            .await;
        assert_eq!(outcomes(&deleted), [Outcome::Failed]);
        assert_eq!(deleted[0].message.as_deref(), Some(SHUTTING_DOWN_DELETE));
        assert!(live.get(&key).await.expect("read").is_some());
    })
    .await;
}

#[tokio::test]
async fn a_kind_nobody_serves_fails_naming_the_fix() {
    with_namespace("apply-unknown", |client, ns| async move {
        let manifests = [json!({
            "apiVersion": "nothing.apply-test.gitopsd.io/v1", "kind": "Gadget",
            "metadata": {"name": "g", "namespace": ns},
        })];
        let results = applier(&client, ApplyConfig::default())
            .apply(items(&manifests, &[]), &CancellationToken::new())
            .await;
        assert_eq!(outcomes(&results), [Outcome::Failed], "{}", show(&results));
        let message = results[0].message.as_deref().unwrap_or_default();
        assert!(
            message.contains(&format!("Gadget {ns}/g"))
                && message.contains("not served")
                && message.contains("apply its CustomResourceDefinition first"),
            "{message:?}"
        );
    })
    .await;
}
