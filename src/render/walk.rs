//! Which files of `base/` and of a tier's directory are its manifests: every `*.yaml`, `*.yml`
//! and `*.json` file, in subdirectories too, as `kubectl apply -R -f DIR` reads them, in one
//! defined order: depth-first, the entries of each directory in bytewise order of their names
//! (so `base/a.yaml`, `base/b/c.yaml`, `base/b/d/e.yaml`, `base/c.yaml`). A subdirectory that
//! holds a kustomization is one input, built by kustomize; nothing below it is read as a file.
//!
//! The walk is as careful as reading a file: dotfiles and dot-directories are skipped (`.git`,
//! editor swap files), every entry is resolved inside the repo (a symlink out of it is refused),
//! a directory reached twice through symlinks is read once, and the number of files and the
//! depth are bounded. A file whose name spells a manifest suffix in another case
//! (`app.YAML`) is refused rather than skipped: a rename must never make objects vanish, and
//! so be pruned, without a word.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::RenderError;
use super::files::Repo;
use super::kustomize::kustomization_in;

/// The suffixes read as manifests (JSON is YAML; kubectl reads all three).
const SUFFIXES: &[&str] = &[".yaml", ".yml", ".json"];

/// One input of a directory, in walk order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// A manifest file.
    File(PathBuf),
    /// A subdirectory with a kustomization (`kfile`), built by kustomize.
    Kustomize { dir: PathBuf, kfile: PathBuf },
}

/// Bounds on one walk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalkLimits {
    /// Most manifest files (and kustomize directories) one directory tree may hold.
    pub max_files: usize,
    /// Deepest subdirectory below the walked directory (1 = its direct subdirectories).
    pub max_depth: usize,
}

/// The inputs under `dir`, which has no kustomization of its own (the caller builds such a
/// directory whole). `skip` names files of `dir` itself that are not manifests (`tier.yaml`).
pub(crate) fn walk(
    repo: &Repo,
    dir: &Path,
    skip: &[&str],
    limits: WalkLimits,
) -> Result<Vec<Input>, RenderError> {
    let mut w = Walk {
        repo,
        limits,
        seen: HashSet::new(),
        out: Vec::new(),
        top: dir,
    };
    if let Some(real) = repo.resolve(dir)? {
        w.seen.insert(real);
    }
    w.dir(dir, skip, 0)?;
    Ok(w.out)
}

struct Walk<'a> {
    repo: &'a Repo,
    limits: WalkLimits,
    /// Directories read, as resolved: a symlink to one of them (or a loop) is not read again.
    seen: HashSet<PathBuf>,
    out: Vec<Input>,
    top: &'a Path,
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path, skip: &[&str], depth: usize) -> Result<(), RenderError> {
        let io = |source| RenderError::Io {
            file: self.repo.display(dir),
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            // Names that are not UTF-8 cannot end in `.yaml` as we compare it.
            let Some(name) = name.to_str() else {
                continue;
            };
            if name.starts_with('.') || skip.contains(&name) {
                continue;
            }
            names.push(name.to_owned());
        }
        // Sorted before anything is resolved, so the same repo fails on the same file.
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let manifest = SUFFIXES.iter().any(|s| name.ends_with(s));
            // Only what will be read is resolved (and so confined): a manifest, or a
            // directory (a symlink to one followed). A symlink named README.md that points
            // out of the repo is never read, so it is no error.
            if !manifest && !std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                if let Some(s) = SUFFIXES
                    .iter()
                    .find(|s| name.to_ascii_lowercase().ends_with(*s))
                {
                    return Err(RenderError::ManifestSuffixCase {
                        file: self.repo.display(&path),
                        suffix: s,
                    });
                }
                continue;
            }
            let Some(real) = self.repo.resolve(&path)? else {
                continue;
            };
            if real.is_dir() {
                if !self.seen.insert(real) {
                    continue;
                }
                if depth + 1 > self.limits.max_depth {
                    return Err(RenderError::DirectoryTooDeep {
                        dir: self.repo.display(&path),
                        top: self.repo.display(self.top),
                        limit: self.limits.max_depth,
                    });
                }
                if let Some(kfile) = kustomization_in(self.repo, &path)? {
                    self.push(Input::Kustomize { dir: path, kfile })?;
                } else {
                    self.dir(&path, &[], depth + 1)?;
                }
                continue;
            }
            // A manifest that is not a regular file (FIFO, device, socket) is refused when
            // read.
            self.push(Input::File(path))?;
        }
        Ok(())
    }

    fn push(&mut self, input: Input) -> Result<(), RenderError> {
        if self.out.len() >= self.limits.max_files {
            return Err(RenderError::TooManyFiles {
                dir: self.repo.display(self.top),
                limit: self.limits.max_files,
            });
        }
        self.out.push(input);
        Ok(())
    }
}
