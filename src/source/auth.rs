//! Credentials and host checks for libgit2: a token for https, a key plus known_hosts for ssh.
//!
//! The token and key are read at every fetch, so a rotated secret (a remounted Kubernetes
//! Secret) is picked up without a restart. The token is handed to libgit2 only; it never
//! reaches a log line or an error.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use base64::Engine;
use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};

use super::SourceError;
use crate::config::{GitAuth, RepoUrlKind};

/// The user name sent with a token; what GitHub, Gitea and GitLab accept for tokens.
pub const DEFAULT_TOKEN_USER: &str = "x-access-token";

/// Credentials loaded for one fetch.
#[derive(Clone)]
pub(crate) enum Credentials {
    None,
    Token {
        user: String,
        token: String,
    },
    SshKey {
        key: PathBuf,
        known_hosts: Vec<KnownHost>,
    },
}

impl std::fmt::Debug for Credentials {
    // Never print the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Token { user, .. } => write!(f, "Token {{ user: {user:?} }}"),
            Credentials::SshKey { key, .. } => write!(f, "SshKey {{ key: {key:?} }}"),
        }
    }
}

/// What went wrong inside a callback; libgit2 only returns a generic error, this says why.
#[derive(Debug, Default)]
pub(crate) struct CallbackTrouble {
    pub auth_refused: bool,
    pub host_key: Option<(String, HostKeyRefusal)>,
}

pub(crate) fn load(
    auth: &GitAuth,
    kind: RepoUrlKind,
    token_user: &str,
    url: &str,
) -> Result<Credentials, SourceError> {
    let read = |what: &'static str, path: &Path| {
        std::fs::read_to_string(path).map_err(|source| SourceError::AuthFile {
            url: url.to_owned(),
            what,
            path: path.to_owned(),
            source,
        })
    };
    if let Some(path) = &auth.token_file
        && kind == RepoUrlKind::Https
    {
        let token = read("the token file", path)?.trim().to_owned();
        return Ok(Credentials::Token {
            user: token_user.to_owned(),
            token,
        });
    }
    if let Some(key) = &auth.ssh_key_file
        && kind == RepoUrlKind::Ssh
    {
        let known_hosts = match &auth.known_hosts_file {
            Some(p) => parse_known_hosts(&read("the known_hosts file", p)?),
            None => Vec::new(),
        };
        return Ok(Credentials::SshKey {
            key: key.clone(),
            known_hosts,
        });
    }
    Ok(Credentials::None)
}

/// Callbacks for one connection. `port` is the ssh port of the URL (known_hosts names hosts on
/// other ports as `[host]:port`, and libgit2 passes only the host name).
pub(crate) fn callbacks<'a>(
    creds: &'a Credentials,
    port: Option<u16>,
    trouble: Rc<RefCell<CallbackTrouble>>,
) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let mut tried = false;
    let t = trouble.clone();
    cb.credentials(move |_url, user_from_url, allowed| {
        // libgit2 asks again after a refusal; a second ask means the first was refused,
        // and asking forever would hang the fetch.
        if tried {
            t.borrow_mut().auth_refused = true;
            return Err(git2::Error::from_str("credentials refused"));
        }
        tried = true;
        match creds {
            Credentials::Token { user, token }
                if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
            {
                Cred::userpass_plaintext(user, token)
            }
            Credentials::SshKey { key, .. } if allowed.contains(CredentialType::SSH_KEY) => {
                Cred::ssh_key(user_from_url.unwrap_or("git"), None, key, None)
            }
            Credentials::SshKey { .. } if allowed.contains(CredentialType::USERNAME) => {
                Cred::username(user_from_url.unwrap_or("git"))
            }
            _ => {
                t.borrow_mut().auth_refused = true;
                Err(git2::Error::from_str(
                    "the server asks for credentials that are not configured",
                ))
            }
        }
    });
    cb.certificate_check(move |cert, host| {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: libgit2 has verified the chain and the name against the system store.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let known = match creds {
            Credentials::SshKey { known_hosts, .. } => known_hosts.as_slice(),
            _ => &[],
        };
        let result = match hostkey.hostkey() {
            Some(key) => check_host_key(known, host, port, key),
            None => Err(HostKeyRefusal::NotRaw),
        };
        match result {
            Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
            Err(reason) => {
                trouble.borrow_mut().host_key = Some((host.to_owned(), reason.clone()));
                Err(git2::Error::from_str(&format!(
                    "ssh host key of {host} {reason}"
                )))
            }
        }
    });
    cb
}

/// One line of a known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KnownHost {
    patterns: Vec<String>,
    key: Vec<u8>,
    revoked: bool,
}

/// The plain `host[,host...] type base64` lines, and `@revoked` ones. Hashed host names
/// (`|1|...`) and `@cert-authority` lines are skipped: see the module's limits in mod.rs.
pub(crate) fn parse_known_hosts(text: &str) -> Vec<KnownHost> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let mut revoked = false;
        if first.starts_with('@') {
            if first != "@revoked" {
                continue;
            }
            revoked = true;
            first = fields.next().unwrap_or_default();
        }
        let (Some(_kind), Some(b64)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(key) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            continue;
        };
        let patterns = first
            .split(',')
            .filter(|p| !p.starts_with('|'))
            .map(str::to_owned)
            .collect::<Vec<_>>();
        if !patterns.is_empty() {
            out.push(KnownHost {
                patterns,
                key,
                revoked,
            });
        }
    }
    out
}

/// Why the host key an ssh server offered is refused; says what follows "ssh host key of
/// <host>" (`name` is the known_hosts name: `host`, or `[host]:port` off port 22).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostKeyRefusal {
    #[error("({name}) is marked @revoked in known_hosts")]
    Revoked { name: String },
    #[error("({name}) does not match known_hosts: the server offers a different key")]
    Mismatch { name: String },
    #[error("({name}) is unknown: no entry for it in known_hosts")]
    Unknown { name: String },
    #[error("was not offered by libgit2 in raw form")]
    NotRaw,
}

/// Ok when known_hosts holds exactly this key for the host; the error says why not.
pub(crate) fn check_host_key(
    known: &[KnownHost],
    host: &str,
    port: Option<u16>,
    key: &[u8],
) -> Result<(), HostKeyRefusal> {
    let name = match port {
        Some(p) if p != 22 => format!("[{host}]:{p}"),
        _ => host.to_owned(),
    };
    let entries: Vec<&KnownHost> = known
        .iter()
        .filter(|k| k.patterns.iter().any(|p| p.eq_ignore_ascii_case(&name)))
        .collect();
    if entries.iter().any(|k| k.revoked && k.key == key) {
        return Err(HostKeyRefusal::Revoked { name });
    }
    if entries.iter().any(|k| !k.revoked && k.key == key) {
        return Ok(());
    }
    if entries.iter().any(|k| !k.revoked) {
        Err(HostKeyRefusal::Mismatch { name })
    } else {
        Err(HostKeyRefusal::Unknown { name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIG5vdGEgcmVhbCBrZXkgYnV0IDMyIGJ5dGVzIQ==";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIHNvbWUgb3RoZXIga2V5IG9mIDMyIGJ5dGVzIQ==";

    fn key(b64: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("test key is base64")
    }

    #[test]
    fn known_hosts_matches_host_and_port_and_names_the_host_when_it_does_not() {
        let file = format!(
            "# comment\n[127.0.0.1]:2222 ssh-ed25519 {KEY_A}\ngit.example.com,10.0.0.1 ssh-ed25519 {KEY_B}\n|1|c2FsdA==|aGFzaA== ssh-ed25519 {KEY_B}\n@cert-authority *.example.com ssh-ed25519 {KEY_A}\n"
        );
        let known = parse_known_hosts(&file);
        assert_eq!(known.len(), 2, "{known:?}");
        assert_eq!(
            check_host_key(&known, "127.0.0.1", Some(2222), &key(KEY_A)),
            Ok(())
        );
        assert_eq!(
            check_host_key(&known, "git.example.com", None, &key(KEY_B)),
            Ok(())
        );
        assert_eq!(
            check_host_key(&known, "10.0.0.1", Some(22), &key(KEY_B)),
            Ok(())
        );
        let mismatch = check_host_key(&known, "127.0.0.1", Some(2222), &key(KEY_B));
        assert_eq!(
            mismatch.map_err(|e| e.to_string()),
            Err(
                "([127.0.0.1]:2222) does not match known_hosts: the server offers a different key"
                    .into()
            )
        );
        // The same host on another port is another entry.
        let unknown = check_host_key(&known, "127.0.0.1", Some(2223), &key(KEY_A));
        assert_eq!(
            unknown.map_err(|e| e.to_string()),
            Err("([127.0.0.1]:2223) is unknown: no entry for it in known_hosts".into())
        );
    }

    #[test]
    fn a_revoked_key_is_refused_even_beside_a_matching_line() {
        let file = format!(
            "@revoked git.example.com ssh-ed25519 {KEY_A}\ngit.example.com ssh-ed25519 {KEY_A}\n"
        );
        let known = parse_known_hosts(&file);
        let err = check_host_key(&known, "git.example.com", None, &key(KEY_A));
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("(git.example.com) is marked @revoked in known_hosts".into())
        );
    }

    #[test]
    fn debug_output_of_credentials_hides_the_token() {
        let c = Credentials::Token {
            user: "x-access-token".into(),
            token: "s3cr3t-token".into(),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("x-access-token"), "{shown}");
    }
}
