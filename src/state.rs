//! What gitopsd must remember across restarts, per tier, kept in the cluster: the inventory
//! (every object it applied, with the digest it applied), the last applied and last healthy
//! revisions, and a revision it rolled back from (not retried until git moves).

mod configmap;
mod inventory;
mod storage;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::revision::Revision;
pub use configmap::CodecError;
use configmap::{FORMAT, decode, encode};
pub use inventory::{Inventory, NOT_APPLIED};
pub use storage::StateStorage;

/// A tier's remembered state. `Default` is a tier gitopsd never synced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierState {
    /// Object -> the digest of the manifest last applied (`DesiredObject::digest`).
    pub inventory: Inventory,
    pub last_applied_revision: Option<Revision>,
    pub last_healthy_revision: Option<Revision>,
    /// A revision that was rolled back because it did not become healthy in time.
    pub failed_revision: Option<Revision>,
    pub rollbacks: u64,
    /// The revisions this tier recorded healthy, newest last (at most [`HEALTHY_KEPT`]): the
    /// evidence a tier with `promoteFrom` checks. Absent in state written before it existed.
    pub healthy: Vec<HealthyRecord>,
    /// Jobs with `ttlSecondsAfterFinished` that finished for the manifest they were applied
    /// from: once the TTL controller deleted one, it is not drift and is not created again until
    /// git changes it (issue 21 item 6). Absent in state written before it existed.
    pub finished_jobs: Vec<FinishedJob>,
    /// The rollout under way: a revision applied and not yet healthy, and when it was first
    /// applied (wall clock). Its health deadline counts from then across restarts and changes
    /// of leader (issue 15 bug b). Absent in state written before it existed.
    pub rollout: Option<RolloutRecord>,
}

/// When a revision's rollout started: what its health deadline counts from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    pub revision: Revision,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// A Job that ran to its end (complete or failed) for one manifest of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinishedJob {
    pub namespace: String,
    pub name: String,
    /// The short digest ([`short_digest`]) of the manifest it ran from.
    pub digest: String,
    /// The revision that applied it.
    pub revision: Revision,
}

impl TierState {
    /// Whether the Job `namespace/name` finished for the manifest of `digest`.
    pub fn job_finished(&self, namespace: &str, name: &str, digest: &str) -> bool {
        self.finished_jobs
            .iter()
            .any(|j| j.namespace == namespace && j.name == name && j.digest == short_digest(digest))
    }

    /// Records that the Job `namespace/name` finished for the manifest of `digest` (replacing
    /// the record of an earlier manifest of it).
    pub fn record_job_finished(
        &mut self,
        namespace: &str,
        name: &str,
        digest: &str,
        revision: &Revision,
    ) {
        self.finished_jobs
            .retain(|j| !(j.namespace == namespace && j.name == name));
        self.finished_jobs.push(FinishedJob {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            digest: short_digest(digest).to_owned(),
            revision: revision.clone(),
        });
    }
}

/// How many healthy revisions a tier's state keeps.
pub const HEALTHY_KEPT: usize = 20;

/// One revision a tier recorded healthy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthyRecord {
    pub revision: Revision,
    /// When the tier first saw it healthy (a promotion's soak counts from here).
    pub since: chrono::DateTime<chrono::Utc>,
    /// The digest of the revision's `base/` files, for `gate: baseDigest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_digest: Option<String>,
}

impl TierState {
    /// Records `revision` healthy at `since`, once (an earlier record keeps its time).
    pub fn record_healthy(
        &mut self,
        revision: &Revision,
        since: chrono::DateTime<chrono::Utc>,
        base_digest: Option<String>,
    ) {
        self.last_healthy_revision = Some(revision.clone());
        if self.healthy.iter().any(|h| h.revision == *revision) {
            return;
        }
        self.healthy.push(HealthyRecord {
            revision: revision.clone(),
            since,
            base_digest,
        });
        let excess = self.healthy.len().saturating_sub(HEALTHY_KEPT);
        self.healthy.drain(..excess);
    }

    /// The record of `revision`, if the tier saw it healthy. State from before the records
    /// existed knows only the last healthy revision, with no time.
    pub fn healthy_record(&self, revision: &Revision) -> Option<HealthyRecord> {
        self.healthy
            .iter()
            .find(|h| h.revision == *revision)
            .cloned()
    }
}

/// The field manager of every write of gitopsd's own state.
const FIELD_MANAGER: &str = "gitopsd";

/// The gzipped inventory may be at most this large: a ConfigMap (like any object) is limited to
/// 1 MiB in etcd, and the rest of the object (metadata, managedFields, base64 in transit) needs
/// room too.
pub const MAX_INVENTORY_GZ_BYTES: usize = 900 * 1024;

/// How many characters of a digest the inventory keeps.
const SHORT_DIGEST_LEN: usize = 16;

/// The part of a digest the inventory stores: its first 16 characters (64 bits), or all of it
/// when shorter. The inventory digest only detects "this object's manifest changed since gitopsd
/// applied it"; it is no integrity check, and 64 bits make an accidental match between two
/// manifests of one object negligible, while a full 64-hex sha256 would take 10,000 objects well
/// past the room a ConfigMap has. Callers compare `short_digest(new) == short_digest(stored)`;
/// `load` returns exactly what `save` stored, which is already short.
pub fn short_digest(digest: &str) -> &str {
    // `get` rather than slicing: a non-ASCII digest (never written by gitopsd) must not panic.
    digest.get(..SHORT_DIGEST_LEN).unwrap_or(digest)
}

#[derive(Debug, thiserror::Error)]
/// Sources are boxed: a `kube::Error` inline would make every `Result` of this module large.
pub enum StateError {
    #[error(
        "gitopsd may not {verb} the state ConfigMap {namespace}/{name}: gitopsd needs get/create/patch on configmaps in namespace {namespace} (a Role and RoleBinding for its service account): {source}"
    )]
    Forbidden {
        verb: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(
        "namespace {namespace} of the state ConfigMap {name} does not exist: create it (kubectl create namespace {namespace}), let gitopsd create it (it needs create on namespaces), or set state.namespace in the config"
    )]
    NamespaceMissing { namespace: String, name: String },
    #[error(
        "gitopsd may not create namespace {namespace} for its state: create it (kubectl create namespace {namespace}), grant gitopsd get/create/patch on namespaces, or set state.namespace to an existing namespace: {source}"
    )]
    NamespaceForbidden {
        namespace: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{action} {what} failed (is the API server reachable?): {source}")]
    Api {
        action: &'static str,
        /// `ConfigMap ns/name` or `namespace ns`.
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(
        "the state ConfigMap {namespace}/{name} cannot be read: {key}: {source}; deleting the ConfigMap makes gitopsd start over without an inventory (it then prunes nothing it applied before)"
    )]
    Corrupt {
        namespace: String,
        name: String,
        key: &'static str,
        #[source]
        source: Box<CodecError>,
    },
    #[error(
        "the state ConfigMap {namespace}/{name} has format {found:?}, this gitopsd reads format {FORMAT} (was it written by a newer gitopsd?); run a gitopsd that reads it, or delete the ConfigMap to start over without an inventory (it then prunes nothing it applied before)"
    )]
    UnsupportedFormat {
        namespace: String,
        name: String,
        found: String,
    },
    #[error(
        "the inventory of {objects} objects does not fit the state ConfigMap {namespace}/{name}: {bytes} bytes gzipped, the limit is {MAX_INVENTORY_GZ_BYTES}; split the tier into smaller tiers"
    )]
    TooLarge {
        namespace: String,
        name: String,
        objects: usize,
        bytes: usize,
    },
    #[error("the state of tier {tier} cannot be written to {namespace}/{name}: {key}: {source}")]
    Encode {
        tier: String,
        namespace: String,
        name: String,
        key: &'static str,
        #[source]
        source: Box<CodecError>,
    },
}

/// Reads and writes each tier's [`TierState`] in a ConfigMap `gitopsd-state-<tier>`.
///
/// Layout (format "1"): labels `app.kubernetes.io/managed-by: gitopsd`,
/// `app.kubernetes.io/component: state`, `gitopsd.io/state-of: <tier>` (never `gitopsd.io/tier`:
/// that label marks a tier's managed objects, and the state would show up as an extra object of
/// the tier); `data` with the revisions, `rollbacks`, `inventoryCount` and `format`;
/// `binaryData["inventory.gz"]`, the gzip of one sorted line per object,
/// `digest<TAB>apiVersion<TAB>kind<TAB>namespace-or-empty<TAB>name`, the digest shortened by
/// [`short_digest`].
#[derive(Clone)]
pub struct StateStore {
    client: kube::Client,
    namespace: String,
}

impl StateStore {
    pub fn new(client: kube::Client, namespace: &str) -> StateStore {
        StateStore {
            client,
            namespace: namespace.to_owned(),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn config_map_name(tier: &str) -> String {
        format!("gitopsd-state-{tier}")
    }

    /// The namespace from config, else the in-cluster service account's namespace, else
    /// `gitopsd` (outside a cluster).
    pub fn default_namespace(config: &crate::config::StateConfig) -> String {
        if let Some(ns) = config.namespace.as_deref().filter(|s| !s.trim().is_empty()) {
            return ns.trim().to_owned();
        }
        std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "gitopsd".to_owned())
    }

    /// Creates the namespace if it does not exist. A namespace that exists is left alone (no
    /// write, so gitopsd needs no namespace permission once it is there).
    pub async fn ensure_namespace(&self) -> Result<(), StateError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = &self.namespace;
        match api.get_opt(ns).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            // Without get on namespaces, creating is the only way to find out.
            Err(kube::Error::Api(s)) if s.is_forbidden() => {}
            Err(source) => {
                return Err(StateError::Api {
                    action: "reading",
                    what: format!("namespace {ns}"),
                    source: Box::new(source),
                });
            }
        }
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": ns,
                "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
            },
        });
        match api
            .patch(
                ns,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&manifest),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_forbidden() => Err(StateError::NamespaceForbidden {
                namespace: ns.clone(),
                source: Box::new(kube::Error::Api(s)),
            }),
            Err(source) => Err(StateError::Api {
                action: "creating",
                what: format!("namespace {ns}"),
                source: Box::new(source),
            }),
        }
    }

    /// The tier's state; the default (never synced) when its ConfigMap does not exist.
    pub async fn load(&self, tier: &str) -> Result<TierState, StateError> {
        let name = Self::config_map_name(tier);
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.get_opt(&name).await {
            Ok(Some(cm)) => decode(&self.namespace, &cm),
            Ok(None) => Ok(TierState::default()),
            Err(e) => Err(self.api_error("get", "reading", &name, e)),
        }
    }

    /// Writes the whole state in one server-side apply (forced: the state ConfigMap is only
    /// gitopsd's, and a stale field owner must not block it).
    pub async fn save(&self, tier: &str, state: &TierState) -> Result<(), StateError> {
        let name = Self::config_map_name(tier);
        let cm = encode(tier, &self.namespace, state)?;
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&cm),
        )
        .await
        .map(|_| ())
        .map_err(|e| self.api_error("patch", "writing", &name, e))
    }

    fn api_error(
        &self,
        verb: &'static str,
        action: &'static str,
        name: &str,
        e: kube::Error,
    ) -> StateError {
        match e {
            kube::Error::Api(s) if s.is_forbidden() => StateError::Forbidden {
                verb,
                namespace: self.namespace.clone(),
                name: name.to_owned(),
                source: Box::new(kube::Error::Api(s)),
            },
            // A write into a namespace that does not exist answers 404 naming the namespace.
            kube::Error::Api(s) if s.is_not_found() && verb != "get" => {
                StateError::NamespaceMissing {
                    namespace: self.namespace.clone(),
                    name: name.to_owned(),
                }
            }
            source => StateError::Api {
                action,
                what: format!("ConfigMap {}/{name}", self.namespace),
                source: Box::new(source),
            },
        }
    }
}

const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};

    use flate2::Compression;
    use flate2::read::GzDecoder;
    use flate2::write::GzEncoder;
    use k8s_openapi::ByteString;

    use super::inventory::version_priority;
    use super::*;
    use crate::live::ObjectKey;

    const NS: &str = "gitopsd";

    fn key(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    fn sample() -> TierState {
        TierState {
            inventory: Inventory::from([
                (
                    key("v1", "ConfigMap", Some("shop"), "a"),
                    "0123456789abcdef".to_owned(),
                ),
                (
                    key(
                        "rbac.authorization.k8s.io/v1",
                        "ClusterRole",
                        None,
                        "reader",
                    ),
                    "fedcba9876543210".to_owned(),
                ),
            ]),
            last_applied_revision: Some("abc123".into()),
            last_healthy_revision: Some("abc000".into()),
            failed_revision: Some("bad999".into()),
            rollbacks: 3,
            healthy: vec![HealthyRecord {
                revision: "abc000".into(),
                since: chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("a time"),
                base_digest: Some("b45e".to_owned()),
            }],
            finished_jobs: vec![FinishedJob {
                namespace: "shop".to_owned(),
                name: "migrate".to_owned(),
                digest: "0123456789abcdef".to_owned(),
                revision: "abc123".into(),
            }],
            rollout: Some(RolloutRecord {
                revision: "def456".into(),
                started_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
            }),
        }
    }

    #[test]
    fn short_digest_keeps_16_characters_or_a_shorter_digest_whole() {
        let long = "a".repeat(64);
        assert_eq!(short_digest(&long), &long[..16]);
        assert_eq!(short_digest("abc"), "abc");
        assert_eq!(short_digest(""), "");
        // Idempotent: what save stored compares equal to a new digest shortened again.
        assert_eq!(short_digest(short_digest(&long)), short_digest(&long));
        // Never panics on a multi-byte character at the cut.
        let odd = format!("{}é", "a".repeat(15));
        assert_eq!(short_digest(&odd), odd);
    }

    #[test]
    fn encode_decode_round_trip() {
        let state = sample();
        let cm = encode("prod", NS, &state).expect("encode");
        assert_eq!(cm.metadata.name.as_deref(), Some("gitopsd-state-prod"));
        let labels = cm.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("gitopsd.io/state-of").map(String::as_str),
            Some("prod")
        );
        assert!(!labels.contains_key("gitopsd.io/tier"), "{labels:?}");
        let data = cm.data.clone().unwrap_or_default();
        assert_eq!(data.get("inventoryCount").map(String::as_str), Some("2"));
        assert_eq!(data.get("format").map(String::as_str), Some("1"));
        assert_eq!(decode(NS, &cm).expect("decode"), state);
    }

    #[test]
    fn the_rollout_start_is_kept_and_state_without_it_still_loads() {
        let state = sample();
        let cm = encode("prod", NS, &state).expect("encode");
        let data = cm.data.clone().unwrap_or_default();
        assert_eq!(
            data.get("rollout").map(String::as_str),
            Some(r#"{"revision":"def456","startedAt":"2027-01-15T08:00:00Z"}"#)
        );
        assert_eq!(decode(NS, &cm).expect("decode").rollout, state.rollout);
        // State written before the rollout was kept: no rollout under way.
        let mut old = cm.clone();
        if let Some(d) = old.data.as_mut() {
            d.remove("rollout");
        }
        assert_eq!(decode(NS, &old).expect("decode").rollout, None);
    }

    #[test]
    fn default_state_round_trips_and_omits_missing_revisions() {
        let cm = encode("t", NS, &TierState::default()).expect("encode");
        let data = cm.data.clone().unwrap_or_default();
        assert!(!data.contains_key("failedRevision"));
        assert!(!data.contains_key("lastAppliedRevision"));
        assert_eq!(decode(NS, &cm).expect("decode"), TierState::default());
    }

    #[test]
    fn long_digests_are_stored_short_and_lines_are_sorted() {
        let mut state = TierState::default();
        let full = "0123456789abcdef".repeat(4);
        state
            .inventory
            .insert(key("v1", "Service", Some("b"), "x"), full.clone());
        state
            .inventory
            .insert(key("apps/v1", "Deployment", Some("a"), "y"), full.clone());
        let cm = encode("t", NS, &state).expect("encode");
        let gz = &cm.binary_data.as_ref().expect("binaryData")["inventory.gz"].0;
        let mut text = String::new();
        GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .expect("gunzip");
        assert_eq!(
            text,
            "0123456789abcdef\tapps/v1\tDeployment\ta\ty\n0123456789abcdef\tv1\tService\tb\tx\n"
        );
        let back = decode(NS, &cm).expect("decode");
        assert!(back.inventory.values().all(|d| d == short_digest(&full)));
    }

    #[test]
    fn corrupt_gzip_names_the_config_map_the_key_and_the_way_out() {
        let mut cm = encode("prod", NS, &sample()).expect("encode");
        cm.binary_data = Some(BTreeMap::from([(
            "inventory.gz".to_owned(),
            ByteString(b"not gzip".to_vec()),
        )]));
        let err = decode(NS, &cm).expect_err("corrupt").to_string();
        assert!(err.contains("gitopsd/gitopsd-state-prod"), "{err}");
        assert!(err.contains("inventory.gz"), "{err}");
        assert!(err.contains("not a gzip"), "{err}");
        assert!(err.contains("deleting the ConfigMap"), "{err}");
        assert!(err.contains("without an inventory"), "{err}");
    }

    fn with_inventory_text(text: &str) -> ConfigMap {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(text.as_bytes()).expect("gzip");
        let mut cm = encode("prod", NS, &TierState::default()).expect("encode");
        cm.binary_data = Some(BTreeMap::from([(
            "inventory.gz".to_owned(),
            ByteString(gz.finish().expect("gzip")),
        )]));
        if let Some(data) = cm.data.as_mut() {
            data.remove("inventoryCount");
        }
        cm
    }

    #[test]
    fn a_bad_line_names_its_number_and_content() {
        let cm = with_inventory_text("abc\tv1\tConfigMap\tns\tok\nabc\tv1\tConfigMap\n");
        let err = decode(NS, &cm).expect_err("bad line").to_string();
        assert!(err.contains("inventory.gz"), "{err}");
        assert!(
            err.contains("line 2: 3 tab-separated fields, expected 5"),
            "{err}"
        );
        assert!(err.contains("gitopsd-state-prod"), "{err}");

        let cm = with_inventory_text("\tv1\tConfigMap\tns\tname\n");
        let err = decode(NS, &cm).expect_err("empty digest").to_string();
        assert!(err.contains("line 1: an empty field"), "{err}");
    }

    #[test]
    fn the_inventory_is_keyed_by_identity_not_version() {
        let mut inv = Inventory::new();
        let v1 = key(
            "autoscaling/v1",
            "HorizontalPodAutoscaler",
            Some("shop"),
            "api",
        );
        let v2 = key(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            Some("shop"),
            "api",
        );
        inv.insert(v1.clone(), "d1".to_owned());
        assert_eq!(inv.get(&v2).map(String::as_str), Some("d1"));
        assert!(inv.contains_key(&v2));
        assert_eq!(
            inv.insert(v2.clone(), "d2".to_owned()).as_deref(),
            Some("d1")
        );
        assert_eq!(inv.len(), 1);
        assert_eq!(
            inv.keys().collect::<Vec<_>>(),
            [&v2],
            "the key last applied"
        );
        // Another group is another object.
        let other = key(
            "example.com/v1",
            "HorizontalPodAutoscaler",
            Some("shop"),
            "api",
        );
        assert!(!inv.contains_key(&other));
        assert_eq!(inv.remove(&v1).as_deref(), Some("d2"));
        assert!(inv.is_empty());
    }

    #[test]
    fn versions_rank_as_kubernetes_ranks_them() {
        let mut versions = [
            "v1alpha1", "v2beta1", "v1", "v1beta2", "foo", "v2", "v1beta1",
        ];
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(
            versions,
            [
                "v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"
            ]
        );
    }

    /// A state ConfigMap written by the gitopsd before the inventory was keyed by identity:
    /// an HPA moved from autoscaling/v1 to autoscaling/v2 with prune off left both lines, and a
    /// CR moved from v1alpha1 to v1 was recorded before its apply finished.
    #[test]
    fn an_old_state_with_one_object_at_two_versions_loads_as_one_entry() {
        let cm = with_inventory_text(concat!(
            "1111111111111111\tautoscaling/v1\tHorizontalPodAutoscaler\tshop\tapi\n",
            "2222222222222222\tautoscaling/v2\tHorizontalPodAutoscaler\tshop\tapi\n",
            "3333333333333333\texample.com/v1alpha1\tWidget\tshop\tw\n",
            "not-applied\texample.com/v1\tWidget\tshop\tw\n",
            "4444444444444444\tv1\tConfigMap\tshop\tc\n",
        ));
        let mut cm = cm;
        if let Some(data) = cm.data.as_mut() {
            data.insert("inventoryCount".to_owned(), "5".to_owned());
        }
        let state = decode(NS, &cm).expect("an old state loads");
        assert_eq!(state.inventory.len(), 3);
        let hpa = key(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            Some("shop"),
            "api",
        );
        assert_eq!(
            state.inventory.stored_key(&hpa),
            Some(&hpa),
            "the newer version"
        );
        assert_eq!(state.inventory[&hpa], "2222222222222222");
        let widget = key("example.com/v1", "Widget", Some("shop"), "w");
        assert_eq!(
            state
                .inventory
                .stored_key(&widget)
                .map(|k| k.api_version.as_str()),
            Some("example.com/v1alpha1"),
            "an applied entry wins over one not applied yet"
        );
        assert_eq!(state.inventory[&widget], "3333333333333333");
        // Saved again: one line per object, the count matching.
        let again = encode("prod", NS, &state).expect("encode");
        let data = again.data.clone().unwrap_or_default();
        assert_eq!(data.get("inventoryCount").map(String::as_str), Some("3"));
        assert_eq!(decode(NS, &again).expect("decode"), state);
    }

    #[test]
    fn a_count_that_disagrees_with_the_inventory_is_corrupt() {
        let mut cm = encode("prod", NS, &sample()).expect("encode");
        if let Some(data) = cm.data.as_mut() {
            data.insert("inventoryCount".to_owned(), "5".to_owned());
        }
        let err = decode(NS, &cm).expect_err("count").to_string();
        assert!(
            err.contains("holds 2 objects, inventoryCount says 5"),
            "{err}"
        );
    }

    #[test]
    fn bad_rollbacks_and_unknown_format_are_errors() {
        let mut cm = encode("prod", NS, &sample()).expect("encode");
        if let Some(data) = cm.data.as_mut() {
            data.insert("rollbacks".to_owned(), "many".to_owned());
        }
        let err = decode(NS, &cm).expect_err("rollbacks").to_string();
        assert!(err.contains("rollbacks: \"many\" is not a count"), "{err}");

        let mut cm = encode("prod", NS, &sample()).expect("encode");
        if let Some(data) = cm.data.as_mut() {
            data.insert("format".to_owned(), "2".to_owned());
        }
        let err = decode(NS, &cm).expect_err("format").to_string();
        assert!(err.contains("format \"2\""), "{err}");
        assert!(err.contains("delete the ConfigMap"), "{err}");
    }

    #[test]
    fn a_key_with_a_tab_cannot_be_stored() {
        let mut state = TierState::default();
        state
            .inventory
            .insert(key("v1", "ConfigMap", Some("ns"), "a\tb"), "d".to_owned());
        let err = encode("prod", NS, &state).expect_err("tab").to_string();
        assert!(err.contains("tab or newline"), "{err}");
        assert!(err.contains("gitopsd/gitopsd-state-prod"), "{err}");
    }

    #[test]
    fn an_inventory_over_the_limit_names_the_object_count() {
        // Random-looking digests and names do not compress: a few tens of thousands exceed it.
        let mut state = TierState::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..60_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let name = format!("obj-{x:016x}-{i}");
            state.inventory.insert(
                key("v1", "ConfigMap", Some("ns"), &name),
                format!("{x:016x}"),
            );
        }
        let err = encode("big", NS, &state)
            .expect_err("too large")
            .to_string();
        assert!(err.contains("inventory of 60000 objects"), "{err}");
        assert!(err.contains("split the tier"), "{err}");
    }

    #[test]
    fn the_configured_namespace_wins() {
        let config = crate::config::StateConfig {
            namespace: Some("ops".to_owned()),
        };
        assert_eq!(StateStore::default_namespace(&config), "ops");
        assert_eq!(StateStore::config_map_name("prod"), "gitopsd-state-prod");
    }
}
