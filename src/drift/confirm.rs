//! The server's word on a local difference: a server-side-apply dry-run of the desired object.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::{DriftError, DryRun};
use crate::apply::mask_secret_message;
use crate::diff::FIELD_MANAGER;
use crate::live::ApiLive;
use crate::live::ObjectKey;
use crate::render::DesiredObject;

/// [`DryRun`] by the API server, its answer kept per object for the (object digest, live
/// resourceVersion) it was given: the same manifest against the same live object always gets
/// the same answer.
///
/// One answer per object, the latest: a live object that keeps changing (alert-only drift
/// another controller rewrites) replaces its answer instead of adding one per version, which
/// grew the daemon by a whole object copy per write, never released (issue 21: 62 -> 191 MiB
/// after 520 writes to one object). So the cache holds at most one entry per object it was
/// asked about, and [`ApiDryRun::retain`] drops the objects that left the desired set.
pub struct ApiDryRun {
    api: ApiLive,
    answers: Mutex<HashMap<ObjectKey, Answer>>,
    sent: AtomicUsize,
}

/// The server's answer for one object, and what it was the answer to.
struct Answer {
    digest: String,
    resource_version: String,
    object: Value,
}

impl ApiDryRun {
    pub fn new(api: ApiLive) -> ApiDryRun {
        ApiDryRun {
            api,
            answers: Mutex::default(),
            sent: AtomicUsize::new(0),
        }
    }

    /// How many dry-run requests went to the server (cache misses).
    pub fn requests_sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// How many answers the cache holds (one per object at most): `gitopsd_dryrun_cache_entries`.
    pub fn entries(&self) -> usize {
        self.answers.lock().map_or(0, |a| a.len())
    }

    /// Forgets the answers of objects not in `keep` (those that left the desired set).
    pub fn retain(&self, keep: &HashSet<ObjectKey>) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.retain(|k, _| keep.contains(k));
        }
    }

    fn cached(&self, key: &ObjectKey, digest: &str, version: &str) -> Option<Value> {
        let answers = self.answers.lock().ok()?;
        let a = answers.get(key)?;
        (a.digest == digest && a.resource_version == version).then(|| a.object.clone())
    }

    fn remember(&self, key: ObjectKey, digest: &str, version: String, object: &Value) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.insert(
                key,
                Answer {
                    digest: digest.to_owned(),
                    resource_version: version,
                    object: object.clone(),
                },
            );
        }
    }
}

impl DryRun for ApiDryRun {
    async fn dry_run(&self, desired: &DesiredObject, live: &Value) -> Result<Value, DriftError> {
        let version = live
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let key = &desired.key;
        if let Some(answer) = self.cached(key, &desired.digest, &version) {
            return Ok(answer);
        }
        let (resource, _) = self
            .api
            .resource(&key.api_version, &key.kind)
            .await
            .map_err(|source| DriftError::Discovery {
                object: desired.key.to_string(),
                source,
            })?;
        let api = self
            .api
            .api_for(key)
            .await
            .map_err(|source| DriftError::Discovery {
                object: desired.key.to_string(),
                source,
            })?;
        // force: other managers' fields would otherwise make the dry-run a conflict error
        // instead of showing what gitopsd's apply would leave.
        let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
        self.sent.fetch_add(1, Ordering::Relaxed);
        let answer = api
            .patch(&desired.key.name, &params, &Patch::Apply(&desired.manifest))
            .await
            .map_err(|source| DriftError::DryRun {
                object: desired.key.to_string(),
                source: masked_for(desired, source),
            })?;
        let answer = crate::live::api::to_value(answer, &resource);
        self.remember(key.clone(), &desired.digest, version, &answer);
        Ok(answer)
    }
}

/// The API server's answer about a Secret, with what it echoes of the Secret's values masked:
/// the error is logged and may reach the status.
fn masked_for(desired: &DesiredObject, e: kube::Error) -> kube::Error {
    if desired.key.kind != "Secret" {
        return e;
    }
    match e {
        kube::Error::Api(mut status) => {
            let mask = |m: &str| mask_secret_message(m, Some(&desired.manifest));
            status.message = mask(&status.message);
            if let Some(details) = status.details.as_mut() {
                for cause in &mut details.causes {
                    cause.message = mask(&cause.message);
                    cause.field = mask(&cause.field);
                }
            }
            kube::Error::Api(status)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("shop".into()),
            name: name.into(),
        }
    }

    #[tokio::test]
    async fn the_cache_keeps_one_answer_per_object_however_many_versions_it_saw() {
        let config = kube::Config::new("https://127.0.0.1:1".parse().expect("url"));
        let client = kube::Client::try_from(config).expect("client");
        let dry = ApiDryRun::new(ApiLive::new(client));
        let big = Value::String("x".repeat(10_000));
        for version in 0..520 {
            dry.remember(key("cm"), "digest-1", version.to_string(), &big);
        }
        assert_eq!(dry.entries(), 1, "520 live versions of one object");
        assert_eq!(dry.cached(&key("cm"), "digest-1", "519"), Some(big.clone()));
        assert_eq!(dry.cached(&key("cm"), "digest-1", "518"), None);
        assert_eq!(dry.cached(&key("cm"), "digest-2", "519"), None);
        dry.remember(key("other"), "digest-1", "1".into(), &big);
        assert_eq!(dry.entries(), 2);
        dry.retain(&HashSet::from([key("other")]));
        assert_eq!(
            dry.entries(),
            1,
            "the object that left the set is forgotten"
        );
        assert_eq!(dry.cached(&key("cm"), "digest-1", "519"), None);
    }
}
