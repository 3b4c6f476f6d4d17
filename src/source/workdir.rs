//! Where the mirror of the config repo lives under the daemon's `--workdir`, and the lock that
//! keeps a second daemon out of it.
//!
//! The mirror of a URL is `workdir/source/<key>/`, the key being 16 hex digits of the sha256
//! of the URL (trailing slashes dropped): a changed `source.url` gets a fresh mirror instead of
//! having the other repository's history reported as a force-push of the old one, and daemons
//! sharing a workdir (the default is one per machine) get a mirror each, unless they follow the
//! same repository: then the second one is refused (two pollers would fight over the mirror's
//! refs and locks) with an error naming the directory and the fix.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::SourceError;
use crate::config::RepoUrl;

/// The lock file in a mirror directory, held (`flock`) for as long as a daemon uses it.
const LOCK_FILE: &str = "gitopsd.lock";

/// The directory of the mirror of `url` (and of its exported revisions) under `workdir`.
pub fn mirror_dir(workdir: &Path, url: &RepoUrl) -> PathBuf {
    let normalised = url.as_str().trim_end_matches('/');
    let digest = Sha256::digest(normalised.as_bytes());
    workdir.join("source").join(&hex::encode(digest)[..16])
}

/// A mirror directory held by this process: released when dropped, or when the process ends
/// however it ends (the kernel drops the lock with the file), so a crash leaves no stale lock.
#[derive(Debug)]
pub struct MirrorLock {
    _file: File,
}

impl MirrorLock {
    /// Takes the mirror directory `dir` of `url`, creating it; refused while another process
    /// holds it.
    pub fn acquire(dir: &Path, url: &RepoUrl) -> Result<MirrorLock, SourceError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |source| SourceError::MirrorLock {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // The holder wrote its pid: said in the error, for the person who finds two.
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(SourceError::MirrorInUse {
                    url: super::redact(url.as_str()),
                    dir: dir.to_owned(),
                    holder: if holder.is_empty() {
                        "another process".to_owned()
                    } else {
                        format!("process {holder}")
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io_err)?;
        Ok(MirrorLock { _file: file })
    }
}
