//! Signed commits: every commit between a tier's deployed revision and a new one must carry a
//! good SSH signature by a key of the tier's allowed-signers file (`requireSignedCommits`).
//! Verification is OpenSSH's own: `ssh-keygen -Y find-principals` names the signer, then
//! `ssh-keygen -Y verify` checks the signature over the commit (namespace `git`, as `git
//! commit -S` with `gpg.format=ssh` signs). GPG signatures are not verified: a GPG-signed
//! commit blocks with that reason.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use git2::{Oid, Repository, Sort};

use crate::revision::Revision;

/// Why the commits of a range could not be listed or do not all carry a good signature; the
/// first commit that fails is named.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{commit} is not a commit id: {source}")]
    NotACommitId {
        commit: Revision,
        #[source]
        source: git2::Error,
    },
    #[error("commit {commit} is not in the mirror: {source}")]
    NotInMirror {
        commit: Revision,
        #[source]
        source: git2::Error,
    },
    /// Walking the mirror's history failed.
    #[error("{0}")]
    Walk(#[source] git2::Error),
    #[error("cannot read the signature of {commit}: {source}")]
    ReadSignature {
        commit: Revision,
        #[source]
        source: git2::Error,
    },
    /// `commit` is `commit <short id> ("<summary>")`.
    #[error("{commit} is not signed")]
    Unsigned { commit: String },
    #[error(
        "{commit} has a signature that is not an SSH signature (GPG signatures are not verified); sign with gpg.format=ssh"
    )]
    NotSsh { commit: String },
    #[error("{commit}: {source}")]
    Rejected {
        commit: String,
        #[source]
        source: VerifyError,
    },
}

/// Why one SSH signature does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot write a temp file: {0}")]
    TempFile(#[source] std::io::Error),
    #[error("cannot run ssh-keygen (install openssh-client): {0}")]
    NoSshKeygen(#[source] std::io::Error),
    #[error("signed by a key not in {} (the allowed signers)", allowed_signers.display())]
    UnknownKey { allowed_signers: PathBuf },
    #[error("cannot run ssh-keygen: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot hand the commit to ssh-keygen: {0}")]
    Stdin(#[source] std::io::Error),
    #[error("ssh-keygen failed: {0}")]
    Wait(#[source] std::io::Error),
    /// `ssh-keygen -Y verify` said no; `reason` is what it printed.
    #[error("the signature of {principal} does not verify: {reason}")]
    DoesNotVerify { principal: String, reason: String },
}

/// One commit of a range, with its signature and the bytes it signs.
#[derive(Debug, Clone)]
pub struct SignedCommit {
    pub id: Revision,
    pub summary: String,
    /// (signature, signed data); `None` when the commit is not signed.
    pub signature: Option<(Vec<u8>, Vec<u8>)>,
}

/// The commits reachable from `to` and not from `from`, oldest first.
pub fn commits_between(
    repo: &Repository,
    from: Option<&Revision>,
    to: &Revision,
) -> Result<Vec<SignedCommit>, SignatureError> {
    let oid = |r: &Revision| {
        Oid::from_str(r.as_str()).map_err(|source| SignatureError::NotACommitId {
            commit: r.clone(),
            source,
        })
    };
    let mut walk = repo.revwalk().map_err(SignatureError::Walk)?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
        .map_err(SignatureError::Walk)?;
    walk.push(oid(to)?)
        .map_err(|source| SignatureError::NotInMirror {
            commit: to.clone(),
            source,
        })?;
    if let Some(from) = from {
        // A `from` the mirror lost (history rewritten) hides nothing: every commit is checked.
        let _ = walk.hide(oid(from)?);
    }
    let mut out = Vec::new();
    for c in walk {
        let c = c.map_err(SignatureError::Walk)?;
        let commit = repo.find_commit(c).map_err(SignatureError::Walk)?;
        let signature = match repo.extract_signature(&c, None) {
            Ok((sig, data)) => Some((sig.to_vec(), data.to_vec())),
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(source) => {
                return Err(SignatureError::ReadSignature {
                    commit: Revision::from(c),
                    source,
                });
            }
        };
        out.push(SignedCommit {
            id: Revision::from(c),
            summary: commit
                .summary()
                .ok()
                .flatten()
                .unwrap_or_default()
                .to_owned(),
            signature,
        });
    }
    Ok(out)
}

/// Checks every commit; the error names the first commit that fails and why.
pub fn check_range(commits: &[SignedCommit], allowed_signers: &Path) -> Result<(), SignatureError> {
    for c in commits {
        let commit = format!("commit {} ({:?})", c.id.short(), c.summary);
        let Some((sig, data)) = &c.signature else {
            return Err(SignatureError::Unsigned { commit });
        };
        if !sig.starts_with(b"-----BEGIN SSH SIGNATURE-----") {
            return Err(SignatureError::NotSsh { commit });
        }
        verify_ssh(sig, data, allowed_signers)
            .map_err(|source| SignatureError::Rejected { commit, source })?;
    }
    Ok(())
}

/// A good signature over `data` by a key in `allowed_signers`, or why not.
pub fn verify_ssh(
    signature: &[u8],
    data: &[u8],
    allowed_signers: &Path,
) -> Result<(), VerifyError> {
    let sig_file = TempFile::new(signature).map_err(VerifyError::TempFile)?;
    let found = Command::new("ssh-keygen")
        .args(["-Y", "find-principals", "-s"])
        .arg(&sig_file.0)
        .arg("-f")
        .arg(allowed_signers)
        .stdin(Stdio::null())
        .output()
        .map_err(VerifyError::NoSshKeygen)?;
    let principal = String::from_utf8_lossy(&found.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if !found.status.success() || principal.is_empty() {
        return Err(VerifyError::UnknownKey {
            allowed_signers: allowed_signers.to_owned(),
        });
    }
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-n", "git", "-f"])
        .arg(allowed_signers)
        .arg("-I")
        .arg(&principal)
        .arg("-s")
        .arg(&sig_file.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(VerifyError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(data).map_err(VerifyError::Stdin)?;
    }
    let out = child.wait_with_output().map_err(VerifyError::Wait)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(VerifyError::DoesNotVerify {
            principal,
            reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// A file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(content: &[u8]) -> std::io::Result<TempFile> {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "gitopsd-sig-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, content)?;
        Ok(TempFile(path))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
