//! The per-tier state on the real local cluster: each test in a namespace of its own.

use crate::support;

use gitopsd::live::ObjectKey;
use gitopsd::state::{StateStore, TierState, short_digest};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::DeleteParams;
use sha2::{Digest, Sha256};
use support::with_namespace;

fn key(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
    }
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[tokio::test]
async fn loading_a_state_never_saved_gives_the_default() {
    with_namespace("state-load-missing", |client, ns| async move {
        let store = StateStore::new(client, &ns);
        let state = store.load("never-synced").await.expect("load");
        assert_eq!(state, TierState::default());
    })
    .await;
}

#[tokio::test]
async fn save_then_load_round_trips_every_field() {
    with_namespace("state-round-trip", |client, ns| async move {
        let store = StateStore::new(client.clone(), &ns);
        let digest = sha256_hex("manifest");
        let state = TierState {
            inventory: gitopsd::state::Inventory::from([
                (
                    key("v1", "ConfigMap", Some("shop"), "settings"),
                    digest.clone(),
                ),
                (
                    key("apps/v1", "Deployment", Some("shop"), "api"),
                    sha256_hex("deployment"),
                ),
                (
                    key(
                        "rbac.authorization.k8s.io/v1",
                        "ClusterRole",
                        None,
                        "reader",
                    ),
                    sha256_hex("role"),
                ),
            ]),
            last_applied_revision: Some("1111111111111111111111111111111111111111".into()),
            last_healthy_revision: Some("2222222222222222222222222222222222222222".into()),
            failed_revision: Some("3333333333333333333333333333333333333333".into()),
            rollbacks: 2,
            healthy: Vec::new(),
            finished_jobs: Vec::new(),
            rollout: None,
        };
        store.save("prod", &state).await.expect("save");
        let back = store.load("prod").await.expect("load");

        // What comes back is what was stored: the digests shortened, the rest as saved.
        let mut expected = state.clone();
        for d in expected.inventory.values_mut() {
            *d = short_digest(d).to_owned();
        }
        assert_eq!(back, expected);
        assert_eq!(
            back.inventory[&key("v1", "ConfigMap", Some("shop"), "settings")],
            short_digest(&digest)
        );

        let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
        let cm = cms.get("gitopsd-state-prod").await.expect("get state");
        let labels = cm.metadata.labels.unwrap_or_default();
        assert_eq!(labels["gitopsd.io/state-of"], "prod");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "gitopsd");
        assert_eq!(labels["app.kubernetes.io/component"], "state");
        assert!(!labels.contains_key("gitopsd.io/tier"), "{labels:?}");
        let data = cm.data.unwrap_or_default();
        assert_eq!(data["inventoryCount"], "3");
        assert_eq!(data["rollbacks"], "2");
        assert_eq!(data["format"], "1");

        // A second save without a failed revision removes the key (the apply owns the data).
        let mut healed = expected.clone();
        healed.failed_revision = None;
        store.save("prod", &healed).await.expect("save again");
        assert_eq!(store.load("prod").await.expect("load again"), healed);
    })
    .await;
}

#[tokio::test]
async fn ten_thousand_objects_fit_well_under_the_object_limit() {
    with_namespace("state-10k", |client, ns| async move {
        let store = StateStore::new(client.clone(), &ns);
        let mut state = TierState {
            last_applied_revision: Some("a".repeat(40).into()),
            ..TierState::default()
        };
        for i in 0..10_000 {
            let name = format!("cm-{i:05}");
            let digest = sha256_hex(&name);
            state
                .inventory
                .insert(key("v1", "ConfigMap", Some("bench-ns"), &name), digest);
        }
        store
            .save("bench", &state)
            .await
            .expect("save 10,000 entries");
        let back = store.load("bench").await.expect("load 10,000 entries");
        assert_eq!(back.inventory.len(), 10_000);
        for (k, d) in &state.inventory {
            assert_eq!(
                back.inventory.get(k).map(String::as_str),
                Some(short_digest(d))
            );
        }

        let cms: Api<ConfigMap> = Api::namespaced(client, &ns);
        let cm = cms.get("gitopsd-state-bench").await.expect("get state");
        let gz = cm
            .binary_data
            .as_ref()
            .and_then(|b| b.get("inventory.gz"))
            .map(|b| b.0.len())
            .expect("inventory.gz");
        // The object as the API server returns it (JSON, binaryData in base64, managedFields):
        // larger than what etcd stores (protobuf, raw bytes), so a bound on it is conservative.
        let stored = serde_json::to_vec(&cm).expect("serialize").len();
        eprintln!(
            "10,000-entry state ConfigMap: inventory.gz {gz} bytes, object {stored} bytes as JSON"
        );
        assert!(
            stored < 1024 * 1024 / 2,
            "{stored} bytes: not well under 1 MiB"
        );
    })
    .await;
}

#[tokio::test]
async fn ensure_namespace_creates_a_missing_namespace_and_leaves_one_alone() {
    with_namespace("state-ensure-ns", |client, ns| async move {
        // The test's own namespace exists: nothing to do.
        let store = StateStore::new(client.clone(), &ns);
        store.ensure_namespace().await.expect("existing namespace");

        let missing = format!("{ns}-state");
        let namespaces: Api<Namespace> = Api::all(client.clone());
        assert!(namespaces.get_opt(&missing).await.expect("get").is_none());
        let store = StateStore::new(client.clone(), &missing);
        store.ensure_namespace().await.expect("create namespace");
        let created = namespaces
            .get(&missing)
            .await
            .expect("the namespace exists");
        let managers: Vec<_> = created
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.manager)
            .collect();
        assert!(managers.iter().any(|m| m == "gitopsd"), "{managers:?}");
        store
            .ensure_namespace()
            .await
            .expect("second call is a no-op");
        store
            .save("t", &TierState::default())
            .await
            .expect("save into the new namespace");
        let _ = namespaces
            .delete(&missing, &DeleteParams::background())
            .await;
    })
    .await;
}

#[tokio::test]
async fn saving_into_a_missing_namespace_says_so() {
    with_namespace("state-missing-ns", |client, ns| async move {
        let store = StateStore::new(client, &format!("{ns}-absent"));
        let err = store
            .save("t", &TierState::default())
            .await
            .expect_err("no namespace")
            .to_string();
        assert!(err.contains(&format!("{ns}-absent")), "{err}");
        assert!(err.contains("does not exist"), "{err}");
    })
    .await;
}
