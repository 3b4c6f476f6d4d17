//! Reading the checked-out repo without trusting it: every path is checked to stay inside the
//! repo root (symlinks included), only regular files are opened (a FIFO would block us
//! forever), sizes are bounded before and while reading, and the text must be UTF-8.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::RenderError;

/// The gitopsd.yaml field of the limit `read_text` is given.
const MAX_FILE_BYTES: &str = "render.maxFileBytes";

/// The repo root, canonical, with the helpers that keep reads inside it.
pub(crate) struct Repo {
    root: PathBuf,
}

impl Repo {
    pub(crate) fn open(root: &Path) -> Result<Repo, RenderError> {
        let root = root.canonicalize().map_err(|source| RenderError::Io {
            file: root.display().to_string(),
            source,
        })?;
        Ok(Repo { root })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `rel` as the repo shows it in messages: `base/app.yaml`. Control characters in a
    /// file name are escaped here, where every message of the render stage gets its names.
    pub(crate) fn display(&self, path: &Path) -> String {
        crate::escape::escape_line(&self.relative(path).display().to_string()).into_owned()
    }

    /// `path` relative to the root, unescaped: for passing on to a child process.
    pub(crate) fn relative<'p>(&self, path: &'p Path) -> &'p Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }

    /// Resolves `path` (symlinks followed) and refuses it when it lands outside the root.
    /// Returns `None` when nothing exists there.
    pub(crate) fn resolve(&self, path: &Path) -> Result<Option<PathBuf>, RenderError> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RenderError::Io {
                    file: self.display(path),
                    source,
                });
            }
            Ok(_) => {}
        }
        let real = path.canonicalize().map_err(|source| RenderError::Io {
            file: self.display(path),
            source,
        })?;
        if !real.starts_with(&self.root) {
            return Err(RenderError::SymlinkEscapes {
                file: self.display(path),
                target: real,
            });
        }
        Ok(Some(real))
    }

    /// Reads a whole file as UTF-8, refusing symlinks out of the repo, non-regular files and
    /// files over `limit` bytes.
    pub(crate) fn read_text(&self, path: &Path, limit: u64) -> Result<String, RenderError> {
        let file = self.display(path);
        let Some(real) = self.resolve(path)? else {
            return Err(RenderError::Io {
                file,
                source: std::io::ErrorKind::NotFound.into(),
            });
        };
        let meta = std::fs::metadata(&real).map_err(|source| RenderError::Io {
            file: file.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(RenderError::NotARegularFile { file });
        }
        if meta.len() > limit {
            return Err(RenderError::FileTooLarge {
                file,
                size: meta.len(),
                limit,
                setting: MAX_FILE_BYTES,
            });
        }
        let f = std::fs::File::open(&real).map_err(|source| RenderError::Io {
            file: file.clone(),
            source,
        })?;
        // The file may grow between the size check and the read: read at most one byte more
        // than the limit.
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        f.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| RenderError::Io {
                file: file.clone(),
                source,
            })?;
        if bytes.len() as u64 > limit {
            return Err(RenderError::FileTooLarge {
                file,
                size: bytes.len() as u64,
                limit,
                setting: MAX_FILE_BYTES,
            });
        }
        utf8(bytes, file)
    }
}

/// UTF-8 text, or an error naming the line of the first bad byte.
pub(crate) fn utf8(bytes: Vec<u8>, file: String) -> Result<String, RenderError> {
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..good].iter().filter(|&&b| b == b'\n').count();
        RenderError::NotUtf8 { file, line }
    })
}
