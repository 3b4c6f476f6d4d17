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

use crate::revision::short;

/// One commit of a range, with its signature and the bytes it signs.
#[derive(Debug, Clone)]
pub struct SignedCommit {
    pub id: String,
    pub summary: String,
    /// (signature, signed data); `None` when the commit is not signed.
    pub signature: Option<(Vec<u8>, Vec<u8>)>,
}

/// The commits reachable from `to` and not from `from`, oldest first.
pub fn commits_between(
    repo: &Repository,
    from: Option<&str>,
    to: &str,
) -> Result<Vec<SignedCommit>, String> {
    let oid = |s: &str| Oid::from_str(s).map_err(|e| format!("{s} is not a commit id: {e}"));
    let mut walk = repo.revwalk().map_err(|e| e.to_string())?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
        .map_err(|e| e.to_string())?;
    walk.push(oid(to)?)
        .map_err(|e| format!("commit {to} is not in the mirror: {e}"))?;
    if let Some(from) = from {
        // A `from` the mirror lost (history rewritten) hides nothing: every commit is checked.
        let _ = walk.hide(oid(from)?);
    }
    let mut out = Vec::new();
    for c in walk {
        let c = c.map_err(|e| e.to_string())?;
        let commit = repo.find_commit(c).map_err(|e| e.to_string())?;
        let signature = match repo.extract_signature(&c, None) {
            Ok((sig, data)) => Some((sig.to_vec(), data.to_vec())),
            Err(e) if e.code() == git2::ErrorCode::NotFound => None,
            Err(e) => return Err(format!("cannot read the signature of {c}: {e}")),
        };
        out.push(SignedCommit {
            id: c.to_string(),
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
pub fn check_range(commits: &[SignedCommit], allowed_signers: &Path) -> Result<(), String> {
    for c in commits {
        let name = format!("commit {} ({:?})", short(&c.id), c.summary);
        let Some((sig, data)) = &c.signature else {
            return Err(format!("{name} is not signed"));
        };
        if !sig.starts_with(b"-----BEGIN SSH SIGNATURE-----") {
            return Err(format!(
                "{name} has a signature that is not an SSH signature (GPG signatures are not verified); sign with gpg.format=ssh"
            ));
        }
        verify_ssh(sig, data, allowed_signers).map_err(|why| format!("{name}: {why}"))?;
    }
    Ok(())
}

/// A good signature over `data` by a key in `allowed_signers`, or why not.
pub fn verify_ssh(signature: &[u8], data: &[u8], allowed_signers: &Path) -> Result<(), String> {
    let sig_file =
        TempFile::new(signature).map_err(|e| format!("cannot write a temp file: {e}"))?;
    let found = Command::new("ssh-keygen")
        .args(["-Y", "find-principals", "-s"])
        .arg(&sig_file.0)
        .arg("-f")
        .arg(allowed_signers)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ssh-keygen (install openssh-client): {e}"))?;
    let principal = String::from_utf8_lossy(&found.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if !found.status.success() || principal.is_empty() {
        return Err(format!(
            "signed by a key not in {} (the allowed signers)",
            allowed_signers.display()
        ));
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
        .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(data)
            .map_err(|e| format!("cannot hand the commit to ssh-keygen: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("ssh-keygen failed: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "the signature of {principal} does not verify: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
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
