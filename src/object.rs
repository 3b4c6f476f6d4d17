//! Object identity, one type per idea: [`ObjectKey`] names an object as a manifest does
//! (apiVersion, kind, namespace, name), [`ObjectId`] names it as the API server stores it
//! (group, kind, namespace, name: the same object at every version of its group).
//!
//! A leaf module: it imports nothing from the crate, so every stage can use it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An object's identity, as a manifest names it. Displays the way messages name an object:
/// `Deployment shop-exp/api`, `Namespace shop-exp`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectKey {
    pub api_version: String,
    pub kind: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
}

/// An object's identity without its API version: group, kind, namespace, name. Two keys that
/// differ only in the version of their group (`autoscaling/v1` and `autoscaling/v2`) name one
/// object in the API server, which serves it at every version of the group: what the inventory,
/// prune and the extra-object check compare by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// The group of an `apiVersion`: `apps` of `apps/v1`, `""` (core) of `v1`.
pub fn api_group(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

impl ObjectKey {
    /// The identity of the object this key names, whatever the version.
    pub fn id(&self) -> ObjectId {
        ObjectId {
            group: api_group(&self.api_version).to_owned(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The identity of an object as JSON (`apiVersion`, `kind`, `metadata`); what is absent
    /// or not a string is empty (the name) or `None` (the namespace).
    pub fn of(object: &serde_json::Value) -> ObjectKey {
        let at = |p: &str| object.pointer(p).and_then(serde_json::Value::as_str);
        ObjectKey {
            api_version: at("/apiVersion").unwrap_or_default().to_owned(),
            kind: at("/kind").unwrap_or_default().to_owned(),
            namespace: at("/metadata/namespace").map(str::to_owned),
            name: at("/metadata/name").unwrap_or_default().to_owned(),
        }
    }
}

/// `Kind ns/name`, or `Kind name` for a cluster-scoped object.
fn write_name(
    f: &mut fmt::Formatter<'_>,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> fmt::Result {
    match namespace {
        Some(ns) => write!(f, "{kind} {ns}/{name}"),
        None => write!(f, "{kind} {name}"),
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(f, &self.kind, self.namespace.as_deref(), &self.name)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(f, &self.kind, self.namespace.as_deref(), &self.name)
    }
}

/// An object named by borrowed parts, displayed as [`ObjectKey`] is: for messages about an
/// object whose key is not built yet (a manifest being read).
#[derive(Debug, Clone, Copy)]
pub struct ObjectName<'a> {
    pub kind: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

impl fmt::Display for ObjectName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(f, self.kind, self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(api_version: &str, namespace: Option<&str>) -> ObjectKey {
        ObjectKey {
            api_version: api_version.into(),
            kind: "HorizontalPodAutoscaler".into(),
            namespace: namespace.map(str::to_owned),
            name: "api".into(),
        }
    }

    #[test]
    fn display_names_namespaced_and_cluster_scoped_objects() {
        assert_eq!(
            key("autoscaling/v2", Some("shop")).to_string(),
            "HorizontalPodAutoscaler shop/api"
        );
        assert_eq!(
            key("autoscaling/v2", None).to_string(),
            "HorizontalPodAutoscaler api"
        );
        assert_eq!(
            key("autoscaling/v2", Some("shop")).id().to_string(),
            "HorizontalPodAutoscaler shop/api"
        );
    }

    #[test]
    fn the_id_drops_the_version_and_keeps_the_group() {
        assert_eq!(
            key("autoscaling/v1", Some("shop")).id(),
            key("autoscaling/v2", Some("shop")).id()
        );
        assert_ne!(
            key("autoscaling/v1", Some("shop")).id(),
            key("example.com/v1", Some("shop")).id()
        );
        assert_eq!(key("v1", None).id().group, "");
    }

    #[test]
    fn of_reads_the_identity_of_json_and_tolerates_what_is_missing() {
        let k = ObjectKey::of(&serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"namespace": "shop", "name": "api"},
        }));
        assert_eq!(k.to_string(), "Deployment shop/api");
        let k = ObjectKey::of(&serde_json::json!({"kind": 3}));
        assert_eq!(
            (k.kind.as_str(), k.namespace, k.name.as_str()),
            ("", None, "")
        );
    }
}
