//! Commits written out as plain files for the render stage: `workdir/revisions/<sha>/`.
//!
//! A revision directory appears whole or not at all (written to a temp dir, then renamed), so
//! a reader never sees half an export, and an existing one is reused as is. Only regular files
//! are written: a symlink to a file inside the tree becomes a copy of that file, a symlink
//! that leaves the tree fails the export, submodules are skipped.

use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{FileMode, ObjectType, Oid, Tree};
use tracing::{debug, info, warn};

use super::{ExportLimit, Source, SourceError};
use crate::escape::escape_line;

/// How many exports (besides those in use) are kept when old ones are pruned.
pub const KEEP_EXPORTS: usize = 3;

/// Symlink chains longer than this are refused rather than followed.
const MAX_LINK_HOPS: usize = 8;

impl Source {
    /// Writes the tree of `commit` to `workdir/revisions/<sha>/` and returns that path.
    pub fn export(&self, commit: Oid) -> Result<PathBuf, SourceError> {
        let sha = commit.to_string();
        let revisions = self.workdir.join("revisions");
        let dest = revisions.join(&sha);
        if dest.is_dir() {
            debug!(commit = %sha, "export exists; reusing it");
            return Ok(dest);
        }
        let read_err = |source| SourceError::Read {
            url: self.url.clone(),
            commit: sha.clone(),
            source,
        };
        let tree = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(read_err)?;
        let io_err = |path: &Path| {
            let path = path.to_owned();
            let url = self.url.clone();
            let commit = sha.clone();
            move |source| SourceError::Export {
                url,
                commit,
                path,
                source,
            }
        };
        // Sized before anything is written: a failed check leaves the disk and the exports
        // of earlier revisions as they were.
        self.check_export_size(&tree, &sha)?;
        std::fs::create_dir_all(&revisions).map_err(io_err(&revisions))?;
        let tmp = tempdir_in(&revisions, &sha).map_err(io_err(&revisions))?;
        let written = (|| {
            let mut files = 0usize;
            self.write_tree(&tree, &tree, "", &tmp, &sha, &mut files)?;
            Ok::<usize, SourceError>(files)
        })();
        let files = match written {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        if let Err(e) = std::fs::rename(&tmp, &dest) {
            let _ = std::fs::remove_dir_all(&tmp);
            // Another export of the same commit won the race: its result is as good.
            if !dest.is_dir() {
                return Err(io_err(&dest)(e));
            }
        }
        info!(commit = %sha, files, path = %dest.display(), "exported revision");
        let mut keep: Vec<Oid> = vec![commit];
        keep.extend(self.followed_commits());
        if let Err(e) = self.prune_exports(&keep) {
            warn!(error = %e, "cannot prune old exports; they stay on disk");
        }
        Ok(dest)
    }

    /// What the export of `tree` would write, against `source.exportLimits`: every entry
    /// the export creates counts (a blob named by many paths, a tree referenced many times,
    /// a symlink copied as its target each count again), sizes read from the object headers,
    /// never the content. The walk stops as soon as a limit is passed, so a tree built to
    /// expand exponentially costs no more than the limit.
    fn check_export_size(&self, root: &Tree<'_>, sha: &str) -> Result<(), SourceError> {
        let limits = self.export_limits;
        let odb = self.repo.odb().map_err(|source| SourceError::Read {
            url: self.url.clone(),
            commit: sha.to_owned(),
            source,
        })?;
        let mut bytes = 0u64;
        let mut files = 0u64;
        let mut stack: Vec<(Tree<'_>, String)> = vec![(root.clone(), String::new())];
        while let Some((tree, prefix)) = stack.pop() {
            for entry in tree.iter() {
                let rel = format!("{prefix}{}", String::from_utf8_lossy(entry.name_bytes()));
                let read_err = |source| SourceError::Read {
                    url: self.url.clone(),
                    commit: sha.to_owned(),
                    source,
                };
                let blob = match entry.filemode() {
                    m if m == i32::from(FileMode::Tree) => {
                        let sub = entry
                            .to_object(&self.repo)
                            .and_then(|o| o.peel_to_tree())
                            .map_err(read_err)?;
                        stack.push((sub, format!("{rel}/")));
                        None
                    }
                    m if m == i32::from(FileMode::Blob)
                        || m == i32::from(FileMode::BlobExecutable) =>
                    {
                        Some(entry.id())
                    }
                    m if m == i32::from(FileMode::Link) => {
                        // Written as a copy of the file it leads to (links that leave the
                        // tree fail the export later, while writing).
                        match self.resolve_link(root, &rel, sha) {
                            Ok(Some(target)) => Some(target),
                            Ok(None) | Err(_) => None,
                        }
                    }
                    _ => continue,
                };
                files += 1;
                if files > limits.max_files {
                    return Err(self.too_large(sha, ExportLimit::Files, files, limits.max_files));
                }
                if let Some(id) = blob {
                    let (size, _) = odb.read_header(id).map_err(read_err)?;
                    bytes = bytes.saturating_add(size as u64);
                    if bytes > limits.max_bytes {
                        return Err(self.too_large(
                            sha,
                            ExportLimit::Bytes,
                            bytes,
                            limits.max_bytes,
                        ));
                    }
                }
            }
        }
        debug!(commit = %sha, files, bytes, "export size checked");
        Ok(())
    }

    fn too_large(&self, sha: &str, limit: ExportLimit, found: u64, max: u64) -> SourceError {
        SourceError::ExportTooLarge {
            url: self.url.clone(),
            commit: sha.to_owned(),
            limit,
            found: format!("at least {found}"),
            max,
        }
    }

    /// Removes exported revisions other than `keep` and the newest [`KEEP_EXPORTS`].
    /// Returns how many were removed.
    pub fn prune_exports(&self, keep: &[Oid]) -> Result<usize, SourceError> {
        let revisions = self.workdir.join("revisions");
        let io_err = |source| SourceError::Export {
            url: self.url.clone(),
            commit: String::new(),
            path: revisions.clone(),
            source,
        };
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(&revisions).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            dirs.push((modified, name, entry.path()));
        }
        dirs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let keep: Vec<String> = keep.iter().map(Oid::to_string).collect();
        let mut removed = 0;
        let mut recent = 0;
        for (_, name, path) in dirs {
            // Temp dirs of an export in progress start with '.'; leave them alone.
            if name.starts_with('.') || keep.contains(&name) {
                continue;
            }
            if recent < KEEP_EXPORTS {
                recent += 1;
                continue;
            }
            std::fs::remove_dir_all(&path).map_err(io_err)?;
            debug!(revision = %name, "pruned old export");
            removed += 1;
        }
        Ok(removed)
    }

    /// The commits the followed refs point to now.
    fn followed_commits(&self) -> Vec<Oid> {
        let Ok(refs) = self
            .repo
            .references_glob(&format!("{}*", super::FOLLOW_PREFIX))
        else {
            return Vec::new();
        };
        refs.flatten()
            .filter_map(|r| r.peel_to_commit().ok().map(|c| c.id()))
            .collect()
    }

    fn write_tree(
        &self,
        root: &Tree<'_>,
        tree: &Tree<'_>,
        prefix: &str,
        dir: &Path,
        sha: &str,
        files: &mut usize,
    ) -> Result<(), SourceError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            let url = self.url.clone();
            let commit = sha.to_owned();
            move |source| SourceError::Export {
                url,
                commit,
                path,
                source,
            }
        };
        for entry in tree.iter() {
            let raw_name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
            let rel = format!("{prefix}{raw_name}");
            // A crafted tree can hold names git itself would never write; any of them could
            // step out of the export directory.
            if raw_name.is_empty()
                || raw_name == "."
                || raw_name == ".."
                || raw_name.contains(['/', '\\', '\0'])
                || entry.name().is_err()
            {
                return Err(SourceError::UnsafePath {
                    url: self.url.clone(),
                    commit: sha.to_owned(),
                    path: rel,
                });
            }
            let path = dir.join(&raw_name);
            let read_err = |source| SourceError::Read {
                url: self.url.clone(),
                commit: sha.to_owned(),
                source,
            };
            match entry.filemode() {
                m if m == i32::from(FileMode::Tree) => {
                    std::fs::create_dir(&path).map_err(io_err(&path))?;
                    let sub = entry
                        .to_object(&self.repo)
                        .and_then(|o| o.peel_to_tree())
                        .map_err(read_err)?;
                    self.write_tree(root, &sub, &format!("{rel}/"), &path, sha, files)?;
                }
                m if m == i32::from(FileMode::Blob) || m == i32::from(FileMode::BlobExecutable) => {
                    let blob = self.repo.find_blob(entry.id()).map_err(read_err)?;
                    write_file(&path, blob.content()).map_err(io_err(&path))?;
                    *files += 1;
                }
                m if m == i32::from(FileMode::Link) => {
                    let Some(target) = self.resolve_link(root, &rel, sha)? else {
                        continue;
                    };
                    let blob = self.repo.find_blob(target).map_err(read_err)?;
                    write_file(&path, blob.content()).map_err(io_err(&path))?;
                    *files += 1;
                }
                _ => {
                    // Submodules (commit entries) have no content in this repository.
                    debug!(path = %escape_line(&rel), "skipping a submodule entry");
                }
            }
        }
        Ok(())
    }

    /// The blob a symlink at `rel` stands for: the file it leads to inside the tree.
    /// `None` for links to directories or to nothing (skipped, with a warning); an error for
    /// links that leave the tree or loop.
    fn resolve_link(
        &self,
        root: &Tree<'_>,
        rel: &str,
        sha: &str,
    ) -> Result<Option<Oid>, SourceError> {
        let read_err = |source| SourceError::Read {
            url: self.url.clone(),
            commit: sha.to_owned(),
            source,
        };
        let mut at = rel.to_owned();
        for _ in 0..MAX_LINK_HOPS {
            let entry = root.get_path(Path::new(&at)).map_err(read_err)?;
            if entry.filemode() != i32::from(FileMode::Link) {
                if entry.kind() != Some(ObjectType::Blob) {
                    warn!(path = %escape_line(rel), target = %escape_line(&at), "skipping a symlink to a directory");
                    return Ok(None);
                }
                return Ok(Some(entry.id()));
            }
            let blob = self.repo.find_blob(entry.id()).map_err(read_err)?;
            let target = String::from_utf8_lossy(blob.content()).into_owned();
            let escapes = || SourceError::SymlinkEscapes {
                url: self.url.clone(),
                commit: sha.to_owned(),
                path: escape_line(rel).into_owned(),
                target: target.clone(),
            };
            let parent = at.rsplit_once('/').map_or("", |(p, _)| p);
            let Some(next) = join_inside(parent, &target) else {
                return Err(escapes());
            };
            if root.get_path(Path::new(&next)).is_err() {
                warn!(path = %escape_line(rel), target = %escape_line(&target), "skipping a symlink to nothing");
                return Ok(None);
            }
            at = next;
        }
        Err(SourceError::SymlinkEscapes {
            url: self.url.clone(),
            commit: sha.to_owned(),
            path: escape_line(rel).into_owned(),
            target: format!("a chain of more than {MAX_LINK_HOPS} symlinks"),
        })
    }
}

/// `target` taken relative to the directory `parent`, normalised; `None` when it is absolute
/// or climbs above the root of the tree.
fn join_inside(parent: &str, target: &str) -> Option<String> {
    if target.starts_with('/') || target.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = parent.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return None; // the root itself is a directory, never a file
    }
    Some(parts.join("/"))
}

fn write_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(content)
}

/// A fresh, hidden directory beside the final one, so the rename stays on one filesystem.
fn tempdir_in(dir: &Path, sha: &str) -> std::io::Result<PathBuf> {
    for _ in 0..16 {
        let p = dir.join(format!(".tmp-{sha}-{:08x}", fastrand::u32(..)));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "no free temporary directory name",
    ))
}

#[cfg(test)]
mod tests {
    use super::join_inside;

    #[test]
    fn symlink_targets_are_resolved_inside_the_tree_or_refused() {
        assert_eq!(
            join_inside("base", "x.yaml").as_deref(),
            Some("base/x.yaml")
        );
        assert_eq!(
            join_inside("tiers/exp", "../../base/./x.yaml").as_deref(),
            Some("base/x.yaml")
        );
        assert_eq!(join_inside("base", "../../etc/passwd"), None);
        assert_eq!(join_inside("", "/etc/passwd"), None);
        assert_eq!(join_inside("base", ".."), None);
    }
}
