//! Secrets read from files at start-up (the API token, the webhook secret), compared in
//! constant time and never printed.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a secret file cannot be used; each message names the config field, the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error(
        "cannot read {field} {}: {source}; create the file with the secret in it, or remove {field} to {off}",
        path.display()
    )]
    Unreadable {
        field: &'static str,
        path: PathBuf,
        off: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{field} {} is empty (or only whitespace); write the secret into it, or remove {field} to {off}",
        path.display()
    )]
    Empty {
        field: &'static str,
        path: PathBuf,
        off: &'static str,
    },
}

/// A secret's bytes. `Debug` shows only that it is there.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Reads `path`, trimming surrounding whitespace (a trailing newline is the usual case).
    /// `field` names the config field (`http.tokenFile`) and `off` what removing it turns off.
    pub fn read(
        path: &Path,
        field: &'static str,
        off: &'static str,
    ) -> Result<Secret, SecretFileError> {
        let raw = std::fs::read(path).map_err(|source| SecretFileError::Unreadable {
            field,
            path: path.to_owned(),
            off,
            source,
        })?;
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() {
            return Err(SecretFileError::Empty {
                field,
                path: path.to_owned(),
                off,
            });
        }
        Ok(Secret(trimmed.to_vec()))
    }

    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether `offered` is the secret, in time that depends on neither's content nor length:
    /// both are hashed with SHA-256 first (hashing a short string takes the same time whatever
    /// it holds), and the digests, always 32 bytes, are compared with `subtle`'s constant-time
    /// equality. Comparing the raw bytes with `ct_eq` would return early on a length mismatch.
    pub fn matches(&self, offered: &[u8]) -> bool {
        let a = Sha256::digest(&self.0);
        let b = Sha256::digest(offered);
        a.as_slice().ct_eq(b.as_slice()).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_trimmed_and_an_empty_or_missing_one_names_the_field_and_the_fix() {
        let dir = tempfile::tempdir().expect("temp dir");
        let good = dir.path().join("token");
        std::fs::write(&good, "  s3cret\n").expect("write");
        let s = Secret::read(&good, "http.tokenFile", "turn it off").expect("read");
        assert_eq!(s.as_bytes(), b"s3cret");
        assert_eq!(format!("{s:?}"), "Secret(..)");

        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n\t\n").expect("write");
        let e = Secret::read(&empty, "http.tokenFile", "turn sync off")
            .expect_err("empty")
            .to_string();
        assert!(e.contains("http.tokenFile") && e.contains("empty"), "{e}");
        assert!(e.contains(&empty.display().to_string()), "{e}");
        assert!(e.contains("remove http.tokenFile to turn sync off"), "{e}");

        let missing = dir.path().join("missing");
        let e = Secret::read(&missing, "source.webhookSecretFile", "x")
            .expect_err("missing")
            .to_string();
        assert!(e.starts_with("cannot read source.webhookSecretFile"), "{e}");
        assert!(e.contains(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn matches_only_the_exact_secret() {
        let s = Secret::new("token-1");
        assert!(s.matches(b"token-1"));
        assert!(!s.matches(b"token-2"));
        assert!(!s.matches(b"token-1 "));
        assert!(!s.matches(b"token"));
        assert!(!s.matches(b""));
    }
}
