//! Live objects read straight from the API server: one request per question. For one-shot
//! commands (`gitopsd diff`), where a watch cache would cost more than it saves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::discovery::Scope;
use kube::{Api, Client};
use serde_json::Value;
use tracing::{Instrument, debug_span};

use super::{LiveError, LiveObjects, ObjectKey};
use crate::render::TIER_LABEL;

/// (apiVersion, kind) -> the resource serving it and its scope.
type KindCache = HashMap<(String, String), (ApiResource, Scope)>;

/// [`LiveObjects`] answered by the API server. Cloning shares the discovery cache.
#[derive(Clone)]
pub struct ApiLive {
    client: Client,
    /// Discovery costs a request per kind, and the
    /// answer does not change within one command.
    kinds: Arc<Mutex<KindCache>>,
}

impl ApiLive {
    pub fn new(client: Client) -> ApiLive {
        ApiLive {
            client,
            kinds: Arc::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The resource serving `api_version`/`kind` and whether it is namespaced, from discovery.
    pub async fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, Scope), LiveError> {
        let cache_key = (api_version.to_owned(), kind.to_owned());
        if let Some(found) = self.cached(&cache_key) {
            return Ok(found);
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| match e {
                // Discovery answers 404 for an unknown group/version, and a Discovery error
                // for an unknown kind in a known one: both mean "not served".
                kube::Error::Api(ref s) if s.code == 404 => LiveError::UnknownKind {
                    api_version: api_version.to_owned(),
                    kind: kind.to_owned(),
                },
                kube::Error::Discovery(_) => LiveError::UnknownKind {
                    api_version: api_version.to_owned(),
                    kind: kind.to_owned(),
                },
                source => LiveError::Api {
                    what: format!("discovery of {api_version} {kind}"),
                    source,
                },
            })?;
        let found = (resource, caps.scope);
        if let Ok(mut kinds) = self.kinds.lock() {
            kinds.insert(cache_key, found.clone());
        }
        Ok(found)
    }

    fn cached(&self, key: &(String, String)) -> Option<(ApiResource, Scope)> {
        self.kinds.lock().ok()?.get(key).cloned()
    }

    /// An API handle for the object `key` names (namespaced or not, as discovery says).
    pub async fn api_for(&self, key: &ObjectKey) -> Result<Api<DynamicObject>, LiveError> {
        let (resource, scope) = self.resource(&key.api_version, &key.kind).await?;
        Ok(match (scope, key.namespace.as_deref()) {
            (Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(self.client.clone(), ns, &resource)
            }
            (Scope::Namespaced, None) => {
                Api::default_namespaced_with(self.client.clone(), &resource)
            }
            (Scope::Cluster, _) => Api::all_with(self.client.clone(), &resource),
        })
    }
}

/// A DynamicObject as plain JSON, with apiVersion and kind set (list items come without).
pub(crate) fn to_value(object: DynamicObject, resource: &ApiResource) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            Value::String(resource.api_version.clone()),
        );
        map.insert("kind".into(), Value::String(resource.kind.clone()));
    }
    value
}

fn describe(key: &ObjectKey) -> String {
    key.to_string()
}

impl LiveObjects for ApiLive {
    async fn get(&self, key: &ObjectKey) -> Result<Option<Value>, LiveError> {
        let span = debug_span!("live_get", object = %describe(key));
        async {
            let (resource, _) = self.resource(&key.api_version, &key.kind).await?;
            let api = self.api_for(key).await?;
            let found = api
                .get_opt(&key.name)
                .await
                .map_err(|source| LiveError::Api {
                    what: describe(key),
                    source,
                })?;
            Ok(found.map(|o| to_value(o, &resource)))
        }
        .instrument(span)
        .await
    }

    async fn labelled(
        &self,
        tier: &str,
        kinds: &[(String, String)],
    ) -> Result<Vec<Value>, LiveError> {
        let span = debug_span!("live_labelled", tier);
        async {
            let params = ListParams::default().labels(&format!("{TIER_LABEL}={tier}"));
            let mut out = Vec::new();
            for (api_version, kind) in kinds {
                let resource = match self.resource(api_version, kind).await {
                    Ok((r, _)) => r,
                    // Nothing of a kind the server does not serve can be live.
                    Err(LiveError::UnknownKind { .. }) => continue,
                    Err(e) => return Err(e),
                };
                let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
                let list = api.list(&params).await.map_err(|source| LiveError::Api {
                    what: format!("{kind} objects labelled {TIER_LABEL}={tier}"),
                    source,
                })?;
                out.extend(list.items.into_iter().map(|o| to_value(o, &resource)));
            }
            Ok(out)
        }
        .instrument(span)
        .await
    }

    async fn labelled_keys(
        &self,
        tier: &str,
        kinds: &[(String, String)],
    ) -> Result<Vec<ObjectKey>, LiveError> {
        // One list per kind either way: the API server sends whole objects.
        let objects = self.labelled(tier, kinds).await?;
        Ok(objects.iter().map(ObjectKey::of).collect())
    }
}
