//! `gitopsd sync TIER`: asks a running daemon to sync a tier now, through
//! `POST /api/v1/tiers/{tier}/sync` (the API token in `http.tokenFile`), as `flux reconcile`
//! and `argocd app sync` do; `--wait` follows the tier's status until a reconcile that began
//! after the request has finished, and says how it went.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::Value;

use super::Report;
use super::status::{self, Answer, Server, StatusError};
use crate::escape::escape_text;

/// The environment variable holding the API token itself (rather than a file naming it).
pub const TOKEN_ENV: &str = "GITOPSD_TOKEN";

/// Exit codes: the sync failed (or the tier is held back), and the daemon cannot be asked.
const EXIT_FAILED: u8 = 1;
const EXIT_ERROR: u8 = 2;

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The tier to sync.
    #[arg(value_name = "TIER")]
    pub tier: String,

    /// The daemon's API (its http.listen); plain http only.
    #[arg(long, value_name = "URL", env = "GITOPSD_SERVER", default_value = status::DEFAULT_SERVER)]
    pub server: String,

    /// A file holding the API token (the daemon's http.tokenFile, or a copy). Without it, the
    /// token is read from the GITOPSD_TOKEN environment variable.
    #[arg(long, value_name = "FILE", env = "GITOPSD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Sync even while the tier's change window is closed (the daemon's audit log records
    /// who asked).
    #[arg(long)]
    pub override_window: bool,

    /// Wait until a reconcile that began after the request has finished, print its result,
    /// and exit 1 when it failed or the revision is held back.
    #[arg(short, long)]
    pub wait: bool,

    /// With --wait: give up after this long (exit 2), e.g. 30s, 5m.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(
        "no API token: pass --token-file FILE (a file holding the token of the daemon's \
         http.tokenFile) or set {TOKEN_ENV}"
    )]
    NoToken,
    #[error("cannot read the token file {path}: {source} (--token-file or GITOPSD_TOKEN_FILE)")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {path} is empty (--token-file or GITOPSD_TOKEN_FILE)")]
    EmptyToken { path: PathBuf },
    #[error(
        "gitopsd at {url} refused the token (401): --token-file or {TOKEN_ENV} must hold the \
         token in the daemon's http.tokenFile"
    )]
    Unauthorized { url: String },
    #[error(
        "gitopsd at {url} does not accept syncs over its API (403: {answer}); set http.tokenFile \
         in the daemon's config"
    )]
    Disabled { url: String, answer: String },
    #[error("gitopsd at {url}: {answer}")]
    UnknownTier { url: String, answer: String },
    #[error(transparent)]
    Ask(#[from] StatusError),
    #[error("tier {tier}: no reconcile finished within {timeout:?} of the request (--timeout)")]
    Timeout { tier: String, timeout: Duration },
}

pub async fn run(args: SyncArgs, report: Report) -> ExitCode {
    let asked = tokio::task::spawn_blocking(move || sync(&args)).await;
    match asked {
        Ok(Ok(Outcome { text, failed })) => {
            // A closed pipe (`| head`) is not an error of the sync.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            if failed {
                ExitCode::from(EXIT_FAILED)
            } else {
                ExitCode::SUCCESS
            }
        }
        Ok(Err(e)) => {
            report.error("the sync request failed", &e);
            ExitCode::from(EXIT_ERROR)
        }
        Err(e) => {
            report.error("the sync request failed", &e);
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// What to print, and whether the command fails.
struct Outcome {
    text: String,
    failed: bool,
}

fn sync(args: &SyncArgs) -> Result<Outcome, SyncError> {
    let server = Server::parse(&args.server)?;
    let token = token(
        args.token_file.as_deref(),
        std::env::var(TOKEN_ENV).ok().as_deref(),
    )?;
    let tier_path = format!("/api/v1/tiers/{}", encode(&args.tier));
    // Before the request: the reconcile --wait waits for is one that finishes after it.
    let before = if args.wait {
        let answer = server.request("GET", &tier_path, &[])?;
        check_tier(&server, &args.tier, &answer)?;
        Some(Before::of(&parse(&server, &answer.body)?))
    } else {
        None
    };
    let mut path = format!("{tier_path}/sync");
    if args.override_window {
        path += "?overrideWindow=true";
    }
    let auth = format!("Bearer {token}");
    let user = whoami();
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(u) = &user {
        headers.push((crate::http::USER_HEADER, u.as_str()));
    }
    let answer = server.request("POST", &path, &headers)?;
    let said = escape_text(answer.body.trim()).into_owned();
    match answer.code {
        200..=299 => {}
        401 => return Err(SyncError::Unauthorized { url: server.url }),
        403 => {
            return Err(SyncError::Disabled {
                url: server.url,
                answer: said,
            });
        }
        404 => {
            return Err(SyncError::UnknownTier {
                url: server.url,
                answer: said,
            });
        }
        code => {
            return Err(StatusError::Answer {
                url: server.url,
                code,
                body: said.chars().take(300).collect(),
            }
            .into());
        }
    }
    let mut text = format!("tier {}: {said}\n", args.tier);
    let Some(before) = before else {
        return Ok(Outcome {
            text,
            failed: false,
        });
    };
    // The daemon's clock when it accepted the request: a reconcile that began before it may
    // not have seen the request (a commit pushed just before, say), so it does not count.
    let requested = answer.date;
    let deadline = Instant::now() + args.timeout;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let answer = server.request("GET", &tier_path, &[])?;
        check_tier(&server, &args.tier, &answer)?;
        let status = parse(&server, &answer.body)?;
        if reconciled_since(&status, before, requested) {
            let (line, failed) = result(&status);
            text += &line;
            return Ok(Outcome { text, failed });
        }
        if Instant::now() >= deadline {
            return Err(SyncError::Timeout {
                tier: args.tier.clone(),
                timeout: args.timeout,
            });
        }
    }
}

/// The API token: the file's content (trimmed: `echo` leaves a newline), else the environment
/// variable's.
fn token(file: Option<&Path>, env: Option<&str>) -> Result<String, SyncError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| SyncError::TokenFile {
            path: path.to_owned(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(SyncError::EmptyToken {
                path: path.to_owned(),
            });
        }
        return Ok(token.to_owned());
    }
    match env.map(str::trim) {
        Some(t) if !t.is_empty() => Ok(t.to_owned()),
        _ => Err(SyncError::NoToken),
    }
}

/// Who runs the command, for the daemon's audit line (`X-Gitopsd-User`).
fn whoami() -> Option<String> {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// The tier name as a path segment: anything but unreserved characters percent-encoded, so a
/// name cannot change the request line.
fn encode(tier: &str) -> String {
    let mut out = String::new();
    for b in tier.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

/// A GET of the tier answered: 404 names the tiers there are.
fn check_tier(server: &Server, tier: &str, answer: &Answer) -> Result<(), SyncError> {
    match answer.code {
        200 => Ok(()),
        404 => Err(SyncError::UnknownTier {
            url: server.url.clone(),
            answer: escape_text(answer.body.trim()).into_owned(),
        }),
        code => Err(StatusError::Answer {
            url: server.url.clone(),
            code,
            body: format!(
                "tier {tier}: {}",
                answer.body.trim().chars().take(300).collect::<String>()
            ),
        }
        .into()),
    }
}

fn parse(server: &Server, body: &str) -> Result<Value, SyncError> {
    serde_json::from_str(body).map_err(|e| {
        StatusError::Garbled {
            url: server.url.clone(),
            what: format!("the tier's status is not JSON ({e})"),
        }
        .into()
    })
}

/// The timestamp at `pointer` in a tier's status.
fn timestamp(status: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    status
        .pointer(pointer)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

const RECONCILED: &str = "/lastReconcileAt";
const FETCHED: &str = "/source/lastAttemptAt";

/// Where the tier stood before the request: its last reconcile and last fetch.
#[derive(Debug, Clone, Copy)]
struct Before {
    reconcile: Option<DateTime<Utc>>,
    fetch: Option<DateTime<Utc>>,
}

impl Before {
    fn of(status: &Value) -> Before {
        Before {
            reconcile: timestamp(status, RECONCILED),
            fetch: timestamp(status, FETCHED),
        }
    }
}

/// The sync the request started is done. It starts a reconcile and a fetch at once: done when
/// both happened after the request (each timestamp moved, and is no earlier than the second
/// the daemon accepted the request), and what the fetch found is dealt with: deployed, held
/// back, known bad, or a reconcile began after the fetch reported (the one that offered the
/// new revision; the daemon starts none when the fetch found nothing new).
fn reconciled_since(status: &Value, before: Before, requested: Option<DateTime<Utc>>) -> bool {
    let after = |pointer: &str, was: Option<DateTime<Utc>>| {
        timestamp(status, pointer)
            .filter(|at| was.is_none_or(|b| *at > b) && requested.is_none_or(|r| *at >= r))
    };
    let (Some(reconciled), Some(fetched)) = (
        after(RECONCILED, before.reconcile),
        after(FETCHED, before.fetch),
    ) else {
        return false;
    };
    let newest = &status["sourceRevision"];
    reconciled >= fetched
        || newest.is_null()
        || ["revision", "heldRevision", "failedRevision"]
            .iter()
            .any(|k| status[*k] == *newest)
}

/// The result line of the reconcile `--wait` saw, and whether it failed: `Failed` (nothing
/// applied), `Blocked` (the revision held back), or an error in the reconcile.
fn result(status: &Value) -> (String, bool) {
    let text = |k: &str| status[k].as_str().unwrap_or("-").to_owned();
    let sync = text("sync");
    let revision = status["revision"]
        .as_str()
        .map_or("-", crate::revision::abbrev);
    let mut line = format!(
        "tier {}: {sync}, {} at {revision}\n",
        text("tier"),
        text("health")
    );
    let error = status["lastError"]
        .as_str()
        .filter(|e| !e.trim().is_empty());
    if let Some(e) = error {
        line += &format!("  {}\n", escape_text(e));
    }
    let fetch_error = status["source"]["fetchError"]
        .as_str()
        .filter(|e| !e.trim().is_empty());
    if let Some(e) = fetch_error {
        line += &format!("  fetch failed: {}\n", escape_text(e));
    }
    if sync == "Blocked" && status["heldBy"] == "window" {
        line += "  (the change window is closed: --override-window syncs anyway)\n";
    }
    let failed =
        matches!(sync.as_str(), "Failed" | "Blocked") || error.is_some() || fetch_error.is_some();
    (line, failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> Option<DateTime<Utc>> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_token_comes_from_the_file_trimmed_else_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(token(Some(&file), Some("env")).unwrap(), "s3cret");
        assert_eq!(token(None, Some(" env\n")).unwrap(), "env");
        let e = token(None, None).unwrap_err();
        assert!(e.to_string().contains("--token-file FILE"), "{e}");
        assert!(e.to_string().contains("GITOPSD_TOKEN"), "{e}");
        assert!(matches!(token(None, Some("  ")), Err(SyncError::NoToken)));
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(
            token(Some(&file), None),
            Err(SyncError::EmptyToken { .. })
        ));
        let missing = dir.path().join("missing");
        let e = token(Some(&missing), Some("env")).unwrap_err();
        assert!(
            e.to_string().contains(&missing.display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn a_tier_name_cannot_change_the_request_line() {
        assert_eq!(encode("operational"), "operational");
        assert_eq!(encode("a b/../x\r\n"), "a%20b%2F..%2Fx%0D%0A");
    }

    #[test]
    fn only_a_reconcile_and_a_fetch_begun_after_the_request_count() {
        let s = |reconciled: &str, fetched: &str| {
            json!({"lastReconcileAt": reconciled, "source": {"lastAttemptAt": fetched},
                   "revision": "a", "sourceRevision": "a"})
        };
        let before = Before {
            reconcile: at("2026-11-23T12:00:00Z"),
            fetch: at("2026-11-23T11:59:59Z"),
        };
        let requested = at("2026-11-23T12:00:05Z");
        let done = |s: &Value| reconciled_since(s, before, requested);
        // Nothing moved; the reconcile that ran already; no fetch yet.
        assert!(!done(&s("2026-11-23T12:00:00Z", "2026-11-23T11:59:59Z")));
        assert!(!done(&s("2026-11-23T12:00:03Z", "2026-11-23T12:00:06Z")));
        assert!(!done(&s("2026-11-23T12:00:05.2Z", "2026-11-23T11:59:59Z")));
        // Both after the request, nothing new fetched: done, whichever came first.
        assert!(done(&s("2026-11-23T12:00:05.2Z", "2026-11-23T12:00:05.9Z")));
        // The fetch found a newer revision: only a reconcile begun after the fetch counts,
        // unless the newer one is held back or known bad.
        let mut newer = s("2026-11-23T12:00:05.2Z", "2026-11-23T12:00:05.9Z");
        newer["sourceRevision"] = json!("b");
        assert!(!done(&newer));
        newer["heldRevision"] = json!("b");
        assert!(done(&newer));
        newer["heldRevision"] = Value::Null;
        newer["lastReconcileAt"] = json!("2026-11-23T12:00:06Z");
        assert!(done(&newer));
        // The first reconcile of a tier, and a server without a Date header.
        let first = Before {
            reconcile: None,
            fetch: None,
        };
        assert!(reconciled_since(
            &s("2026-11-23T12:00:06Z", "2026-11-23T12:00:06Z"),
            first,
            requested
        ));
        assert!(reconciled_since(
            &s("2026-11-23T12:00:01Z", "2026-11-23T12:00:01Z"),
            before,
            None
        ));
        assert!(!reconciled_since(
            &json!({"lastReconcileAt": null}),
            first,
            None
        ));
    }

    #[test]
    fn the_result_fails_on_failed_blocked_or_an_error() {
        let s = json!({"tier": "exp", "sync": "Synced", "health": "Healthy",
                       "revision": "0123456789abcdef", "lastError": null});
        assert_eq!(
            result(&s),
            ("tier exp: Synced, Healthy at 0123456\n".to_owned(), false)
        );
        let mut f = s.clone();
        f["sync"] = json!("Failed");
        f["lastError"] = json!("render failed: base/x.yaml line 3");
        let (text, failed) = result(&f);
        assert!(failed);
        assert!(
            text.ends_with("\n  render failed: base/x.yaml line 3\n"),
            "{text}"
        );
        let mut b = s.clone();
        b["sync"] = json!("Blocked");
        b["heldBy"] = json!("window");
        let (text, failed) = result(&b);
        assert!(failed);
        assert!(text.contains("--override-window"), "{text}");
    }
}
