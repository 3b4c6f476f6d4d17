//! A revision of the config repo: a commit id, and its two short forms.
//!
//! Two lengths are user-visible today and stay as they are: [`short`] (12 characters) in
//! messages the status API, the logs, `gitopsd promote` and signature errors show, and
//! [`abbrev`] (7, git's `--oneline` length) in Kubernetes Events and the `gitopsd status`
//! table, where width counts.
//!
//! A leaf module: it imports nothing from the crate (a git2 `Oid` converts into a revision).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Characters of [`short`]: unique in any repo a person reviews, short enough for a message.
pub const SHORT_LEN: usize = 12;
/// Characters of [`abbrev`]: what `git log --oneline` shows, for narrow columns and Events.
pub const ABBREV_LEN: usize = 7;

/// A commit id (hex), serialised as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(String);

impl Revision {
    pub fn new(id: impl Into<String>) -> Revision {
        Revision(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first [`SHORT_LEN`] characters, for messages.
    pub fn short(&self) -> &str {
        short(&self.0)
    }

    /// The first [`ABBREV_LEN`] characters, for Events and tables.
    pub fn abbrev(&self) -> &str {
        abbrev(&self.0)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Revision {
    fn from(id: String) -> Revision {
        Revision(id)
    }
}

impl From<&str> for Revision {
    fn from(id: &str) -> Revision {
        Revision(id.to_owned())
    }
}

impl AsRef<str> for Revision {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Comparisons with a plain string, for the edges that read one (a ref name, the status JSON).
impl PartialEq<str> for Revision {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Revision {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// A commit read from git (the source mirror, a signature range): its full hex id.
impl From<git2::Oid> for Revision {
    fn from(oid: git2::Oid) -> Revision {
        Revision(oid.to_string())
    }
}

impl From<Revision> for String {
    fn from(r: Revision) -> String {
        r.0
    }
}

/// The first [`SHORT_LEN`] characters of a revision, or all of it when shorter.
pub fn short(revision: &str) -> &str {
    first_chars(revision, SHORT_LEN)
}

/// The first [`ABBREV_LEN`] characters of a revision, or all of it when shorter.
pub fn abbrev(revision: &str) -> &str {
    first_chars(revision, ABBREV_LEN)
}

/// Cut at a character boundary: a revision read back from outside (the status API's JSON)
/// must not panic if it is not hex.
fn first_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "4f1c2d3e4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d";

    #[test]
    fn short_forms_keep_their_lengths_and_a_shorter_revision_whole() {
        let r = Revision::new(SHA);
        assert_eq!(r.short(), "4f1c2d3e4a5b");
        assert_eq!(r.abbrev(), "4f1c2d3");
        assert_eq!(short("abc"), "abc");
        assert_eq!(abbrev(""), "");
        assert_eq!(r.to_string(), SHA);
    }

    #[test]
    fn a_non_ascii_revision_is_cut_at_a_character_boundary() {
        assert_eq!(abbrev("ééééééééé"), "ééééééé");
        assert_eq!(short("é"), "é");
    }

    #[test]
    fn a_git_oid_is_its_full_hex_id_and_compares_with_a_plain_string() {
        let oid = git2::Oid::from_str(SHA).expect("an oid");
        let r = Revision::from(oid);
        assert_eq!(r, Revision::new(SHA));
        assert!(r == SHA && r == *SHA);
        assert_eq!(String::from(r), SHA);
    }

    #[test]
    fn serialises_as_the_plain_string() {
        let r = Revision::new(SHA);
        assert_eq!(
            serde_json::to_string(&r).expect("serialise"),
            format!("\"{SHA}\"")
        );
    }
}
