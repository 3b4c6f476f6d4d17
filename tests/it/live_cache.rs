//! The live cache against the real local control plane: what it answers, how fast it sees a
//! live edit, and that answering sends no request at all.

use crate::support;

use std::time::{Duration, Instant};

use gitopsd::cluster::counted_client;
use gitopsd::live::{LiveCache, LiveObjects, Namespaces, ObjectKey, RequestCounter, Verb};
use gitopsd::render::TIER_LABEL;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

const SYNC: Duration = Duration::from_secs(20);

fn kinds() -> Vec<(String, String)> {
    vec![
        ("v1".to_owned(), "ConfigMap".to_owned()),
        ("apps/v1".to_owned(), "Deployment".to_owned()),
    ]
}

fn key(api_version: &str, kind: &str, ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        namespace: Some(ns.to_owned()),
        name: name.to_owned(),
    }
}

fn config_map(ns: &str, name: &str, tier: Option<&str>) -> Value {
    let labels = tier.map(|t| json!({ TIER_LABEL: t })).unwrap_or(json!({}));
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": ns, "labels": labels },
        "data": { "k": "v" },
    })
}

fn deployment(ns: &str, name: &str, tier: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "namespace": ns, "labels": { TIER_LABEL: tier } },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "app", "image": "nginx:1.27" }] },
            },
        },
    })
}

fn api(client: &Client, ns: &str, object: &Value) -> Api<DynamicObject> {
    let gvk = match object["apiVersion"].as_str() {
        Some("apps/v1") => GroupVersionKind::gvk("apps", "v1", "Deployment"),
        _ => GroupVersionKind::gvk("", "v1", "ConfigMap"),
    };
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

/// Server-side applies as the test applier: a client other than the cache's.
async fn apply(client: &Client, ns: &str, object: &Value) {
    let name = object["metadata"]["name"]
        .as_str()
        .expect("fixture has a name");
    api(client, ns, object)
        .patch(
            name,
            &PatchParams::apply("test-applier").force(),
            &Patch::Apply(object),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

/// The fixture every test starts from: two labelled ConfigMaps, a labelled Deployment, and an
/// unlabelled ConfigMap that is desired by name. The tier is the namespace, so tests running
/// side by side never see each other's objects, even through a cluster-wide label watch.
async fn fixture(client: &Client, ns: &str) -> Vec<ObjectKey> {
    let tier = ns;
    apply(client, ns, &config_map(ns, "cm-a", Some(tier))).await;
    apply(client, ns, &config_map(ns, "cm-b", Some(tier))).await;
    apply(client, ns, &config_map(ns, "cm-plain", None)).await;
    apply(client, ns, &deployment(ns, "web", tier)).await;
    vec![
        key("v1", "ConfigMap", ns, "cm-a"),
        key("v1", "ConfigMap", ns, "cm-b"),
        key("v1", "ConfigMap", ns, "cm-plain"),
        key("apps/v1", "Deployment", ns, "web"),
    ]
}

/// A synced cache of tier `ns` whose only namespace is `ns` (as the daemon starts it), on a
/// client of its own, whose requests are counted.
async fn synced_cache(ns: &str, names: &[ObjectKey]) -> (LiveCache, RequestCounter) {
    synced_cache_in(ns, Namespaces::only([ns]), names).await
}

async fn synced_cache_in(
    tier: &str,
    namespaces: Namespaces,
    names: &[ObjectKey],
) -> (LiveCache, RequestCounter) {
    let config = gitopsd::cluster::client_config(Some(support::kubeconfig()))
        .await
        .expect("load kubeconfig");
    let (client, counter) = counted_client(config).expect("build counted client");
    let cache = LiveCache::start(client, tier, namespaces, &kinds(), names)
        .await
        .expect("start the live cache");
    cache.wait_synced(SYNC).await.expect("the live cache syncs");
    // A watch connects right after its list: wait for every one, so later counts are quiet.
    let watches = cache.watches() as u64;
    support::eventually("every watch connected", SYNC, || {
        let connected = counter.get(Verb::Watch) >= watches;
        async move { connected.then_some(()) }
    })
    .await;
    (cache, counter)
}

fn labels(object: &Value) -> &Value {
    &object["metadata"]["labels"]
}

#[tokio::test]
async fn a_synced_cache_answers_for_labelled_and_desired_unlabelled_objects_with_managed_fields() {
    support::with_namespace("cache answers", |client, ns| async move {
        let names = fixture(&client, &ns).await;
        let (cache, _) = synced_cache(&ns, &names).await;

        for key in &names {
            let live = cache
                .get(key)
                .await
                .expect("get")
                .unwrap_or_else(|| panic!("{key:?} is cached"));
            assert_eq!(live["metadata"]["name"], key.name.as_str());
            assert_eq!(live["kind"], key.kind.as_str());
            let managers = live["metadata"]["managedFields"]
                .as_array()
                .expect("managedFields");
            assert!(
                managers.iter().any(|m| m["manager"] == "test-applier"),
                "{key:?}: managedFields name the applier: {managers:?}"
            );
        }
        let missing = key("v1", "ConfigMap", &ns, "not-applied-yet");
        let cache = {
            let mut cache = cache;
            let mut with_missing = names.clone();
            with_missing.push(missing.clone());
            cache
                .update_kinds(&kinds(), &with_missing)
                .await
                .expect("update");
            cache.wait_synced(SYNC).await.expect("resync");
            cache
        };
        assert_eq!(cache.get(&missing).await.expect("get"), None);

        let labelled = cache.labelled(&ns, &kinds()).await.expect("labelled");
        let mut found: Vec<&str> = labelled
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect();
        found.sort_unstable();
        assert_eq!(
            found,
            ["cm-a", "cm-b", "web"],
            "the unlabelled object is not labelled"
        );
    })
    .await;
}

#[tokio::test]
async fn a_live_edit_by_another_client_is_visible_and_notified_within_a_second() {
    support::with_namespace("cache sees edit", |client, ns| async move {
        let names = fixture(&client, &ns).await;
        let (cache, _) = synced_cache(&ns, &names).await;
        let mut changes = cache.changes();

        let edits = [
            (
                names[0].clone(),
                json!({ "metadata": { "labels": { "edited": "by-hand" } } }),
            ),
            (
                names[3].clone(),
                json!({ "spec": { "template": { "spec": { "containers": [
                    { "name": "app", "image": "nginx:1.28" }
                ] } } } }),
            ),
        ];
        for (key, patch) in edits {
            let object = cache.get(&key).await.expect("get").expect("cached");
            changes.borrow_and_update();
            let started = Instant::now();
            api(&client, &ns, &object)
                .patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap_or_else(|e| panic!("edit {}: {e}", key.name));

            let seen = tokio::time::timeout(Duration::from_secs(1), async {
                let mut notified = None;
                loop {
                    changes.changed().await.expect("the cache is alive");
                    notified.get_or_insert_with(|| started.elapsed());
                    let live = cache.get(&key).await.expect("get").expect("cached");
                    let visible = if key.kind == "ConfigMap" {
                        labels(&live)["edited"] == "by-hand"
                    } else {
                        live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
                    };
                    if visible {
                        return (notified, started.elapsed());
                    }
                }
            })
            .await;
            let (notified, visible) = seen
                .unwrap_or_else(|_| panic!("the edit of {} was not visible within 1 s", key.name));
            eprintln!(
                "edit of {} {}: notified after {:?}, visible after {visible:?}",
                key.kind,
                key.name,
                notified.unwrap_or_default()
            );
        }
    })
    .await;
}

#[tokio::test]
async fn answering_every_object_of_a_synced_cache_a_hundred_times_sends_no_request() {
    support::with_namespace("cache zero requests", |client, ns| async move {
        let names = fixture(&client, &ns).await;
        let (cache, counter) = synced_cache(&ns, &names).await;
        let before = counter.by_verb();
        eprintln!("requests to start and sync the cache: {before:?}");

        let mut answers = 0;
        for _ in 0..100 {
            for key in &names {
                assert!(cache.get(key).await.expect("get").is_some());
                answers += 1;
            }
            let labelled = cache.labelled(&ns, &kinds()).await.expect("labelled");
            assert_eq!(labelled.len(), 3);
            answers += 1;
        }

        assert_eq!(counter.by_verb(), before, "{answers} answers sent requests");
    })
    .await;
}

#[tokio::test]
async fn a_deleted_object_disappears_from_the_cache() {
    support::with_namespace("cache sees delete", |client, ns| async move {
        let names = fixture(&client, &ns).await;
        let (cache, _) = synced_cache(&ns, &names).await;
        let gone = &names[1];
        let object = cache
            .get(gone)
            .await
            .expect("get")
            .expect("cached before the delete");

        api(&client, &ns, &object)
            .delete(&gone.name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {}: {e}", gone.name));

        support::eventually(
            "the deleted object to leave the cache",
            Duration::from_secs(5),
            || async {
                let absent = cache.get(gone).await.expect("get").is_none();
                let labelled = cache.labelled(&ns, &kinds()).await.expect("labelled");
                let listed = labelled
                    .iter()
                    .any(|o| o["metadata"]["name"] == gone.name.as_str());
                (absent && !listed).then_some(())
            },
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn many_desired_objects_in_a_namespace_share_one_watch_that_keeps_only_the_desired_names() {
    support::with_namespace("cache many names", |client, ns| async move {
        let count = gitopsd::live::MAX_NAME_WATCHES_PER_NAMESPACE + 2;
        let mut names = Vec::new();
        for i in 0..count {
            let name = format!("plain-{i}");
            apply(&client, &ns, &config_map(&ns, &name, None)).await;
            names.push(key("v1", "ConfigMap", &ns, &name));
        }
        apply(&client, &ns, &config_map(&ns, "not-desired", None)).await;
        let (cache, _) = synced_cache(&ns, &names).await;

        assert_eq!(
            cache.watches(),
            2 + 1,
            "two label watches, one namespace-wide watch"
        );
        for key in &names {
            assert!(
                cache.get(key).await.expect("get").is_some(),
                "{key:?} is cached"
            );
        }
        let stranger = key("v1", "ConfigMap", &ns, "not-desired");
        let err = cache
            .get(&stranger)
            .await
            .expect_err("not desired, not labelled");
        assert!(
            err.to_string().contains("not-desired"),
            "the error names the object: {err}"
        );
        let other_kind = ObjectKey {
            kind: "Secret".to_owned(),
            ..stranger
        };
        assert!(
            cache.get(&other_kind).await.is_err(),
            "an unwatched kind is an error"
        );
        assert!(cache.labelled("another-tier", &kinds()).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn objects_labelled_for_the_tier_outside_its_namespaces_are_not_watched() {
    support::with_namespace("cache tier ns", |client, ns| async move {
        support::with_namespace("cache other ns", move |_, other| async move {
            let tier = ns.as_str();
            apply(&client, &ns, &config_map(&ns, "inside", Some(tier))).await;
            apply(&client, &other, &config_map(&other, "outside", Some(tier))).await;
            let found = |labelled: Vec<Value>| -> Vec<String> {
                let mut names: Vec<String> = labelled
                    .iter()
                    .map(|o| {
                        format!(
                            "{}/{}",
                            o["metadata"]["namespace"].as_str().unwrap_or("-"),
                            o["metadata"]["name"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                names.sort_unstable();
                names
            };

            // The daemon's scope: the tier's namespaces, one label watch per kind and namespace.
            let (cache, _) = synced_cache_in(tier, Namespaces::only([tier]), &[]).await;
            assert_eq!(cache.watches(), kinds().len(), "one label watch per kind");
            let labelled = cache.labelled(tier, &kinds()).await.expect("labelled");
            assert_eq!(found(labelled), [format!("{ns}/inside")]);
            let keys = cache.labelled_keys(tier, &kinds()).await.expect("keys");
            assert_eq!(keys, [key("v1", "ConfigMap", &ns, "inside")]);
            drop(cache);

            // Both namespaces: a watch each, and both objects.
            let both = Namespaces::only([ns.as_str(), other.as_str()]);
            let (cache, _) = synced_cache_in(tier, both, &[]).await;
            assert_eq!(cache.watches(), 2 * kinds().len());
            let labelled = cache.labelled(tier, &kinds()).await.expect("labelled");
            let mut want = [format!("{ns}/inside"), format!("{other}/outside")];
            want.sort_unstable();
            assert_eq!(found(labelled), want);
            let outside = key("v1", "ConfigMap", &other, "outside");
            assert!(cache.get(&outside).await.expect("get").is_some());
            drop(cache);

            // Cluster-wide: one watch per kind, and both objects again.
            let (cache, _) = synced_cache_in(tier, Namespaces::All, &[]).await;
            assert_eq!(cache.watches(), kinds().len());
            let labelled = cache.labelled(tier, &kinds()).await.expect("labelled");
            assert_eq!(found(labelled), want);
        })
        .await;
    })
    .await;
}
