//! The server's word on a local difference: a server-side-apply dry-run of the desired object.

use std::collections::HashMap;
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

/// [`DryRun`] by the API server, each answer kept per (object digest, live resourceVersion):
/// the same manifest against the same live object always gets the same answer.
pub struct ApiDryRun {
    api: ApiLive,
    answers: Mutex<HashMap<(String, String), Value>>,
    sent: AtomicUsize,
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
}

impl DryRun for ApiDryRun {
    async fn dry_run(&self, desired: &DesiredObject, live: &Value) -> Result<Value, DriftError> {
        let version = live
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let cache_key = (desired.digest.clone(), version);
        if let Some(answer) = self
            .answers
            .lock()
            .ok()
            .and_then(|a| a.get(&cache_key).cloned())
        {
            return Ok(answer);
        }
        let key = ObjectKey::from(desired);
        let (resource, _) = self
            .api
            .resource(&key.api_version, &key.kind)
            .await
            .map_err(|source| DriftError::Discovery {
                object: desired.display_name(),
                source,
            })?;
        let api = self
            .api
            .api_for(&key)
            .await
            .map_err(|source| DriftError::Discovery {
                object: desired.display_name(),
                source,
            })?;
        // force: other managers' fields would otherwise make the dry-run a conflict error
        // instead of showing what gitopsd's apply would leave.
        let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
        self.sent.fetch_add(1, Ordering::Relaxed);
        let answer = api
            .patch(&desired.name, &params, &Patch::Apply(&desired.manifest))
            .await
            .map_err(|source| DriftError::DryRun {
                object: desired.display_name(),
                source: masked_for(desired, source),
            })?;
        let answer = crate::live::api::to_value(answer, &resource);
        if let Ok(mut answers) = self.answers.lock() {
            answers.insert(cache_key, answer.clone());
        }
        Ok(answer)
    }
}

/// The API server's answer about a Secret, with what it echoes of the Secret's values masked:
/// the error is logged and may reach the status.
fn masked_for(desired: &DesiredObject, e: kube::Error) -> kube::Error {
    if desired.kind != "Secret" {
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
