//! The inventory: what a tier applied, keyed by object identity, and the version order that
//! decides between two entries of one object.

use std::collections::BTreeMap;

use crate::live::{ObjectId, ObjectKey};

/// What a tier applied: one entry per object, keyed by its identity (group, kind, namespace,
/// name: [`ObjectId`]), not by its API version. A manifest that moves from `autoscaling/v1` to
/// `autoscaling/v2` names the same object, which must be configured, never pruned and created
/// again (issue 21 item 4). Each entry keeps the key it was last applied with (its apiVersion is
/// what prune reads and deletes it by) and the short digest of that manifest.
///
/// The API mirrors a map from [`ObjectKey`]: every lookup takes a key and compares its
/// identity, and `insert` replaces an entry of another version of the same object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory(BTreeMap<ObjectId, (ObjectKey, String)>);

impl Inventory {
    pub fn new() -> Inventory {
        Inventory::default()
    }

    /// The digest recorded for the object `key` names, at whatever version it was applied.
    pub fn get(&self, key: &ObjectKey) -> Option<&String> {
        self.0.get(&key.id()).map(|(_, d)| d)
    }

    /// The key the object was last applied with (its apiVersion may differ from `key`'s).
    pub fn stored_key(&self, key: &ObjectKey) -> Option<&ObjectKey> {
        self.0.get(&key.id()).map(|(k, _)| k)
    }

    pub fn contains_key(&self, key: &ObjectKey) -> bool {
        self.0.contains_key(&key.id())
    }

    pub fn contains_id(&self, id: &ObjectId) -> bool {
        self.0.contains_key(id)
    }

    /// Records `key` with `digest`, replacing the entry of the same object at any version;
    /// returns the digest it replaced.
    pub fn insert(&mut self, key: ObjectKey, digest: String) -> Option<String> {
        self.0.insert(key.id(), (key, digest)).map(|(_, d)| d)
    }

    /// Forgets the object `key` names, at whatever version it was recorded.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<String> {
        self.0.remove(&key.id()).map(|(_, d)| d)
    }

    /// The stored keys, in identity order.
    pub fn keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.0.values().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &String> {
        self.0.values().map(|(_, d)| d)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut String> {
        self.0.values_mut().map(|(_, d)| d)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &String)> {
        self.0.values().map(|(k, d)| (k, d))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds an entry read from a state that may list one object at two versions (written
    /// before the inventory was keyed by identity: a version change recorded the new key before
    /// prune removed the old one, and prune off or refused kept both). One entry stays: one
    /// whose apply finished over one still [`NOT_APPLIED`], else the newer version by
    /// Kubernetes' version order (`v2` over `v1` over `v1beta1`). Either digest only decides
    /// whether the object is applied again, and the next apply records the desired version.
    pub(super) fn merge(&mut self, key: ObjectKey, digest: String) {
        let id = key.id();
        let keep_new = match self.0.get(&id) {
            None => true,
            Some((old_key, old_digest)) => {
                let rank = |d: &str, k: &ObjectKey| {
                    (
                        d != NOT_APPLIED,
                        version_priority(version_of(&k.api_version)),
                    )
                };
                rank(&digest, &key) > rank(old_digest, old_key)
            }
        };
        if keep_new {
            self.0.insert(id, (key, digest));
        }
    }
}

impl std::ops::Index<&ObjectKey> for Inventory {
    type Output = String;

    fn index(&self, key: &ObjectKey) -> &String {
        match self.get(key) {
            Some(d) => d,
            None => panic!("{key:?} is not in the inventory"),
        }
    }
}

impl FromIterator<(ObjectKey, String)> for Inventory {
    fn from_iter<I: IntoIterator<Item = (ObjectKey, String)>>(iter: I) -> Inventory {
        let mut inventory = Inventory::new();
        for (k, d) in iter {
            inventory.insert(k, d);
        }
        inventory
    }
}

impl<const N: usize> From<[(ObjectKey, String); N]> for Inventory {
    fn from(entries: [(ObjectKey, String); N]) -> Inventory {
        entries.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Inventory {
    type Item = (&'a ObjectKey, &'a String);
    type IntoIter = Box<dyn Iterator<Item = (&'a ObjectKey, &'a String)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// The inventory digest of an object recorded before its first apply finished: it matches no
/// manifest digest, so the object is applied again.
pub const NOT_APPLIED: &str = "not-applied";

/// The version part of an apiVersion: `v2` of `autoscaling/v2`, `v1` of `v1`.
fn version_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or(api_version, |(_, v)| v)
}

/// Kubernetes' version priority (as `kubectl` and discovery order versions): GA over beta over
/// alpha, a higher major and then a higher minor first; a version not of that form ranks last.
pub(super) fn version_priority(version: &str) -> (u8, u64, u64) {
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let Ok(major) = rest[..digits].parse::<u64>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits..];
    let (stage, minor) = if tail.is_empty() {
        (3, Some(0))
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse::<u64>().ok())
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse::<u64>().ok())
    } else {
        (0, None)
    };
    let Some(minor) = minor else {
        return (0, 0, 0);
    };
    // Stage first: `v1` ranks over `v2beta1`, as in Kubernetes.
    (stage, major, minor)
}
