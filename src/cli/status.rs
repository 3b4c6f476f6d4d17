//! `gitopsd status`: a running daemon's tiers as a table (or the API's JSON), read from its
//! status endpoint.
//!
//! The request is a blocking HTTP/1.0 GET over `std::net::TcpStream`: one request to a server
//! we wrote, on plain http (the endpoint serves no TLS), so a client stack (hyper-util's pool,
//! connectors, body types) would add code and features for nothing. HTTP/1.0 means the answer
//! is never chunked: the body is everything after the headers.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Report, StatusArgs, StatusFormat};

/// Where `gitopsd status` looks without `--server`: the port of the default `http.listen`
/// (`0.0.0.0:8080`), on this machine.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// `gitopsd status` exit code when the daemon cannot be asked, as `gitopsd diff` has it.
const EXIT_ERROR: u8 = 2;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// An answer larger than this is not a status (20 syncs of history per tier stay far below).
const MAX_RESPONSE: u64 = 64 << 20;
/// Characters of the MESSAGE column; a longer last error wraps onto further lines, whole.
const MESSAGE_WIDTH: usize = 60;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(
        "--server {url}: https is not supported; the status endpoint serves plain http on \
         http.listen (use http://HOST:PORT, e.g. through kubectl port-forward)"
    )]
    Https { url: String },
    #[error("--server {url}: not an http URL (expected http://HOST:PORT)")]
    BadUrl { url: String },
    #[error(
        "cannot reach gitopsd at {url}: {cause}. Is `gitopsd run` running, and is --server \
         (or GITOPSD_SERVER) the address of its http.listen?"
    )]
    Unreachable { url: String, cause: std::io::Error },
    #[error("gitopsd at {url} answered {code}: {body}")]
    Answer {
        url: String,
        code: u16,
        body: String,
    },
    #[error("{url} did not answer as gitopsd does: {what}")]
    Garbled { url: String, what: String },
}

/// A parsed `--server`: `http://HOST[:PORT][/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// As given, without a trailing `/`: for messages.
    pub url: String,
    /// `HOST:PORT` (port 80 when none is given), for the connection and the Host header.
    pub authority: String,
    /// A path the endpoint is served under (behind a proxy), without a trailing `/`.
    pub prefix: String,
}

impl Server {
    pub fn parse(url: &str) -> Result<Server, StatusError> {
        let trimmed = url.trim().trim_end_matches('/');
        let lower = trimmed.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(StatusError::Https {
                url: url.to_owned(),
            });
        }
        let rest = match lower.strip_prefix("http://") {
            Some(_) => &trimmed["http://".len()..],
            None if !trimmed.contains("://") => trimmed,
            None => {
                return Err(StatusError::BadUrl {
                    url: url.to_owned(),
                });
            }
        };
        let (host_port, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if host_port.is_empty() || host_port.contains(['@', '?', '#', ' ']) {
            return Err(StatusError::BadUrl {
                url: url.to_owned(),
            });
        }
        // A port is there when the text after the last ':' is digits and, for an IPv6
        // literal, that ':' comes after its ']'.
        let has_port = host_port.rsplit_once(':').is_some_and(|(h, p)| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (!h.starts_with('[') || h.ends_with(']'))
        });
        let authority = if has_port {
            host_port.to_owned()
        } else {
            format!("{host_port}:80")
        };
        let url = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("http://{trimmed}")
        };
        Ok(Server {
            url,
            authority,
            prefix: prefix.to_owned(),
        })
    }

    /// GET `path`: the status code and the body. Blocking.
    pub fn get(&self, path: &str) -> Result<(u16, String), StatusError> {
        self.request("GET", path, &[]).map(|a| (a.code, a.body))
    }

    /// `method` on `path` with extra request headers (no body): the answer. Blocking.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, StatusError> {
        let unreachable = |cause: std::io::Error| StatusError::Unreachable {
            url: self.url.clone(),
            cause,
        };
        let garbled = |what: String| StatusError::Garbled {
            url: self.url.clone(),
            what,
        };
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        let mut stream = None;
        for addr in self.authority.to_socket_addrs().map_err(unreachable)? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let mut stream = stream.ok_or_else(|| unreachable(last))?;
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(READ_TIMEOUT))
            .map_err(unreachable)?;
        let mut request = format!(
            "{method} {}{path} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: gitopsd/{}\r\n",
            self.prefix,
            self.authority,
            env!("CARGO_PKG_VERSION")
        );
        for (name, value) in headers {
            let _ = write!(request, "{name}: {value}\r\n");
        }
        if method != "GET" {
            request += "Content-Length: 0\r\n";
        }
        request += "\r\n";
        stream.write_all(request.as_bytes()).map_err(unreachable)?;
        let mut raw = Vec::new();
        stream
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .map_err(unreachable)?;
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| garbled("no HTTP response".to_owned()))?;
        let head = String::from_utf8_lossy(&raw[..end]);
        let code = head
            .lines()
            .next()
            .filter(|l| l.starts_with("HTTP/"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| garbled(format!("no HTTP status line in {head:?}")))?;
        // The server's clock, for "after the request" in the daemon's own time.
        let date = head.lines().skip(1).find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("date")
                .then(|| DateTime::parse_from_rfc2822(value.trim()).ok())
                .flatten()
                .map(|d| d.with_timezone(&Utc))
        });
        let body = String::from_utf8(raw[end + 4..].to_vec())
            .map_err(|_| garbled("the body is not UTF-8".to_owned()))?;
        Ok(Answer { code, date, body })
    }
}

/// What the daemon answered a request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: u16,
    /// The `Date` header: the daemon's clock when it answered (second resolution).
    pub date: Option<DateTime<Utc>>,
    pub body: String,
}

pub async fn run(args: StatusArgs, report: Report) -> ExitCode {
    let error = ExitCode::from(EXIT_ERROR);
    let server = match Server::parse(&args.server) {
        Ok(s) => s,
        Err(e) => {
            report.error("bad --server", &e);
            return error;
        }
    };
    if args.watch {
        return watch(server, args.output, args.interval, report).await;
    }
    let (body, tiers) = match fetch(server).await {
        Ok(v) => v,
        Err(e) => {
            report.error("cannot read the daemon's status", &e);
            return error;
        }
    };
    let text = match args.output {
        StatusFormat::Json => body.trim_end().to_owned() + "\n",
        StatusFormat::Table => table(&tiers, Utc::now()),
    };
    if let Err(e) = std::io::stdout().lock().write_all(text.as_bytes()) {
        report.error("cannot print the status", &e);
        return error;
    }
    ExitCode::SUCCESS
}

/// GET /api/v1/tiers: the body, and the tiers in it.
async fn fetch(server: Server) -> Result<(String, Vec<Value>), StatusError> {
    let url = server.url.clone();
    let asked = tokio::task::spawn_blocking(move || {
        let (code, body) = server.get("/api/v1/tiers")?;
        if code != 200 {
            return Err(StatusError::Answer {
                url: server.url.clone(),
                code,
                body: body.trim().chars().take(300).collect(),
            });
        }
        let tiers: Vec<Value> = serde_json::from_str(&body).map_err(|e| StatusError::Garbled {
            url: server.url.clone(),
            what: format!("the tiers are not a JSON list ({e})"),
        })?;
        Ok((body, tiers))
    })
    .await;
    asked.unwrap_or_else(|e| {
        Err(StatusError::Unreachable {
            url,
            cause: std::io::Error::other(e),
        })
    })
}

/// `gitopsd status --watch`: the table, then each row again when it changes, as `kubectl get
/// -w` does (JSON: the whole answer again, one line, when it changes). Runs until Ctrl-C or
/// until stdout is closed (`| head`), both a normal end; a daemon that cannot be asked is said
/// once on stderr, and watched on.
async fn watch(
    server: Server,
    format: StatusFormat,
    interval: Duration,
    report: Report,
) -> ExitCode {
    let mut watcher = Watcher::default();
    let mut last_error: Option<String> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One listener for the whole watch: a Ctrl-C while a table is printed is not missed.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let asked = tokio::select! {
            _ = &mut ctrl_c => return ExitCode::SUCCESS,
            _ = ticker.tick() => tokio::select! {
                _ = &mut ctrl_c => return ExitCode::SUCCESS,
                asked = fetch(server.clone()) => asked,
            },
        };
        let text = match asked {
            Ok((body, tiers)) => {
                last_error = None;
                match format {
                    StatusFormat::Table => watcher.changes(&tiers, Utc::now()),
                    StatusFormat::Json => watcher.changed_body(&body),
                }
            }
            Err(e) => {
                let said = e.to_string();
                if last_error.as_ref() != Some(&said) {
                    report.error("cannot read the daemon's status (still watching)", &e);
                    last_error = Some(said);
                }
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
            Err(e) => {
                report.error("cannot print the status", &e);
                return ExitCode::from(EXIT_ERROR);
            }
        }
    }
}

/// What `--watch` printed last: each tier's row as it compares (the last sync as a time, not
/// an age, so a row does not change by getting older), and the JSON answer.
#[derive(Debug, Default)]
pub struct Watcher {
    rows: Option<Vec<(String, [String; 7])>>,
    body: Option<String>,
}

impl Watcher {
    /// The table the first time; then the rows that changed (a new tier included), aligned as
    /// a table of all rows is; empty when nothing changed.
    pub fn changes(&mut self, tiers: &[Value], now: DateTime<Utc>) -> String {
        let rows = rows(tiers, now);
        let keys: Vec<(String, [String; 7])> = rows
            .iter()
            .map(|r| {
                let mut key = r.cells.clone();
                key[5] = r.last_at.clone().unwrap_or_default();
                key[6] = r.message.join("\n");
                (r.cells[0].clone(), key)
            })
            .collect();
        let lines = lines(&rows);
        let text = match &self.rows {
            None => lines.concat(),
            Some(before) => keys
                .iter()
                .zip(&lines[1..])
                .filter(|(key, _)| !before.contains(key))
                .map(|(_, line)| line.as_str())
                .collect(),
        };
        self.rows = Some(keys);
        text
    }

    /// The answer on one line when it changed; empty when not.
    pub fn changed_body(&mut self, body: &str) -> String {
        let body = body.trim_end();
        if self.body.as_deref() == Some(body) {
            return String::new();
        }
        self.body = Some(body.to_owned());
        body.replace('\n', " ") + "\n"
    }
}

/// One tier's row: its cells (MESSAGE: the first line), the message's lines, the last sync's
/// time as the API gave it.
struct Row {
    cells: [String; 7],
    message: Vec<String>,
    last_at: Option<String>,
}

fn rows(tiers: &[Value], now: DateTime<Utc>) -> Vec<Row> {
    tiers
        .iter()
        .map(|t| {
            let text = |key: &str| t[key].as_str().unwrap_or("-").to_owned();
            let last = t["lastReconcileAt"]
                .as_str()
                .or_else(|| t["lastSync"]["startedAt"].as_str());
            let message = message(t["lastError"].as_str());
            Row {
                cells: [
                    text("tier"),
                    short_revision(t["revision"].as_str()),
                    text("sync"),
                    text("health"),
                    drift_counts(&t["drift"]),
                    last.map_or_else(|| "-".to_owned(), |at| age(at, now)),
                    message.first().cloned().unwrap_or_default(),
                ],
                message,
                last_at: last.map(str::to_owned),
            }
        })
        .collect()
}

/// The header's line, then each row's lines (the message's further lines under its column),
/// columns as wide as their widest cell.
fn lines(rows: &[Row]) -> Vec<String> {
    let header = [
        "TIER",
        "REVISION",
        "SYNC",
        "HEALTH",
        "DRIFT",
        "LAST SYNC",
        "MESSAGE",
    ]
    .map(str::to_owned);
    let mut widths = [0usize; 7];
    for cells in std::iter::once(&header).chain(rows.iter().map(|r| &r.cells)) {
        for (w, cell) in widths.iter_mut().zip(cells) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let indent: usize = widths[..6].iter().map(|w| w + 3).sum();
    let line = |cells: &[String; 7]| {
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let _ = write!(line, "{cell:<width$}   ", width = widths[i]);
        }
        line.trim_end().to_owned() + "\n"
    };
    let mut out = vec![line(&header)];
    for row in rows {
        let mut text = line(&row.cells);
        // The message's further lines: the key fact of a message (when a window opens, which
        // object to fix) is often at its end, so it is wrapped, never cut.
        for m in row.message.iter().skip(1) {
            let _ = writeln!(text, "{:indent$}{m}", "");
        }
        out.push(text);
    }
    out
}

/// The tiers as `flux get kustomizations` shows its objects: one row each, aligned columns.
pub fn table(tiers: &[Value], now: DateTime<Utc>) -> String {
    lines(&rows(tiers, now)).concat()
}

fn short_revision(revision: Option<&str>) -> String {
    match revision {
        Some(r) if !r.is_empty() => crate::revision::abbrev(r).to_owned(),
        _ => "-".to_owned(),
    }
}

/// `1 critical, 2 low`; `-` with no drift or no report yet.
fn drift_counts(drift: &Value) -> String {
    let parts: Vec<String> = ["critical", "high", "medium", "low"]
        .iter()
        .filter_map(|s| {
            let n = drift["counts"][*s].as_u64().unwrap_or(0);
            (n > 0).then(|| format!("{n} {s}"))
        })
        .collect();
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago`, as kubectl rounds ages.
fn age(at: &str, now: DateTime<Utc>) -> String {
    let Ok(at) = DateTime::parse_from_rfc3339(at) else {
        return "-".to_owned();
    };
    let s = (now - at.with_timezone(&Utc)).num_seconds().max(0);
    let text = match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    };
    text + " ago"
}

/// The last error on lines of at most [`MESSAGE_WIDTH`] characters, broken between words (a
/// word longer than a line is broken inside), whitespace and newlines folded; `-` for none.
fn message(error: Option<&str>) -> Vec<String> {
    let Some(error) = error.filter(|e| !e.trim().is_empty()) else {
        return vec!["-".to_owned()];
    };
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in error.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = line.chars().count();
            let room = if used == 0 {
                MESSAGE_WIDTH
            } else {
                MESSAGE_WIDTH.saturating_sub(used + 1)
            };
            if word.len() <= room {
                if used > 0 {
                    line.push(' ');
                }
                line.extend(word.iter());
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            let rest = word.split_off(MESSAGE_WIDTH);
            lines.push(word.into_iter().collect());
            word = rest;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-23T12:00:00Z".parse().unwrap()
    }

    fn tier(name: &str) -> Value {
        json!({
            "tier": name,
            "revision": "0123456789abcdef0123456789abcdef01234567",
            "sync": "Synced",
            "health": "Healthy",
            "drift": {"counts": {"critical": 0, "high": 0, "medium": 0, "low": 0}},
            "lastReconcileAt": "2026-11-23T11:59:48Z",
            "lastError": null,
        })
    }

    #[test]
    fn the_table_has_one_aligned_row_per_tier() {
        let mut ops = tier("operational");
        ops["sync"] = json!("OutOfSync");
        ops["drift"]["counts"]["critical"] = json!(1);
        ops["drift"]["counts"]["low"] = json!(2);
        ops["lastReconcileAt"] = json!("2026-11-23T09:00:00Z");
        let text = table(&[tier("experimental"), ops], now());
        assert_eq!(
            text,
            "\
TIER           REVISION   SYNC        HEALTH    DRIFT               LAST SYNC   MESSAGE
experimental   0123456    Synced      Healthy   -                   12s ago     -
operational    0123456    OutOfSync   Healthy   1 critical, 2 low   3h ago      -
"
        );
    }

    #[test]
    fn watch_prints_the_table_then_only_rows_that_changed() {
        let mut w = Watcher::default();
        let tiers = [tier("experimental"), tier("operational")];
        let first = w.changes(&tiers, now());
        assert_eq!(first, table(&tiers, now()));
        // Later: the rows only age, nothing to print.
        let later = now() + chrono::Duration::seconds(30);
        assert_eq!(w.changes(&tiers, later), "");
        // One tier reconciled again (a new last sync) and went out of sync: its row alone.
        let mut ops = tier("operational");
        ops["sync"] = json!("OutOfSync");
        ops["lastReconcileAt"] = json!("2026-11-23T12:00:20Z");
        let text = w.changes(&[tier("experimental"), ops.clone()], later);
        assert_eq!(
            text,
            "operational    0123456    OutOfSync   Healthy   -       10s ago     -\n"
        );
        // A message that wraps comes with its further lines.
        ops["lastError"] = json!(format!("apply failed: {}", "y".repeat(70)));
        let text = w.changes(&[tier("experimental"), ops], later);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.starts_with("operational "), "{text}");
    }

    #[test]
    fn watch_json_prints_the_answer_on_one_line_when_it_changes() {
        let mut w = Watcher::default();
        assert_eq!(w.changed_body("[{\"a\":\n1}]\n"), "[{\"a\": 1}]\n");
        assert_eq!(w.changed_body("[{\"a\":\n1}]"), "");
        assert_eq!(w.changed_body("[]"), "[]\n");
    }

    #[test]
    fn a_tier_that_has_not_synced_shows_dashes() {
        let t = json!({"tier": "validation", "revision": null, "sync": "Unknown",
                       "health": "Unknown", "drift": null, "lastSync": null,
                       "lastReconcileAt": null, "lastError": null});
        let text = table(&[t], now());
        let row = text.lines().nth(1).unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["validation", "-", "Unknown", "Unknown", "-", "-", "-"]
        );
    }

    #[test]
    fn the_last_sync_falls_back_to_the_last_recorded_sync() {
        let mut t = tier("experimental");
        t["lastReconcileAt"] = Value::Null;
        t["lastSync"] = json!({"startedAt": "2026-11-23T11:55:00Z"});
        assert!(table(&[t], now()).contains(" 5m ago "));
    }

    #[test]
    fn a_long_error_wraps_whole_between_words() {
        let long = format!("render failed:\n  {}", "x".repeat(130));
        let m = message(Some(&long));
        assert_eq!(
            m,
            [
                "render failed:".to_owned(),
                "x".repeat(60),
                "x".repeat(60),
                "x".repeat(10)
            ]
        );
        let held = "held by the change window weekdays-9-17 (Mon-Fri 09:00-17:00 UTC); it opens at 2026-11-24T09:00:00Z";
        let m = message(Some(held));
        assert!(
            m.iter().all(|l| l.chars().count() <= MESSAGE_WIDTH),
            "{m:?}"
        );
        assert_eq!(m.join(" "), held, "nothing cut");
        assert_eq!(message(Some("short")), ["short"]);
        assert_eq!(message(None), ["-"]);
    }

    #[test]
    fn a_wrapped_message_continues_under_its_column() {
        let mut ops = tier("operational");
        ops["sync"] = json!("Blocked");
        ops["lastError"] = json!(
            "held by the change window weekdays (Mon-Fri 09:00-17:00 UTC); it opens at 2026-11-24T09:00:00Z"
        );
        let text = table(&[ops, tier("experimental")], now());
        assert_eq!(
            text,
            "\
TIER           REVISION   SYNC      HEALTH    DRIFT   LAST SYNC   MESSAGE
operational    0123456    Blocked   Healthy   -       12s ago     held by the change window weekdays (Mon-Fri 09:00-17:00
                                                                  UTC); it opens at 2026-11-24T09:00:00Z
experimental   0123456    Synced    Healthy   -       12s ago     -
"
        );
    }

    #[test]
    fn ages_round_as_kubectl_does() {
        let at = |secs: i64| (now() - chrono::Duration::seconds(secs)).to_rfc3339();
        assert_eq!(age(&at(0), now()), "0s ago");
        assert_eq!(age(&at(119), now()), "119s ago");
        assert_eq!(age(&at(120), now()), "2m ago");
        assert_eq!(age(&at(7_200), now()), "2h ago");
        assert_eq!(age(&at(3 * 86_400), now()), "3d ago");
        // A clock behind the daemon's does not show a negative age.
        assert_eq!(age(&at(-30), now()), "0s ago");
        assert_eq!(age("not a time", now()), "-");
    }

    #[test]
    fn server_urls_parse_to_an_authority_and_a_prefix() {
        let s = Server::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (s.authority.as_str(), s.prefix.as_str()),
            ("127.0.0.1:8080", "")
        );
        assert_eq!(s.url, "http://127.0.0.1:8080");
        let s = Server::parse("http://gitopsd.example/proxy/gitopsd").unwrap();
        assert_eq!(s.authority, "gitopsd.example:80");
        assert_eq!(s.prefix, "/proxy/gitopsd");
        let s = Server::parse("[::1]:9000").unwrap();
        assert_eq!(
            (s.authority.as_str(), s.url.as_str()),
            ("[::1]:9000", "http://[::1]:9000")
        );
        assert_eq!(Server::parse("http://[::1]").unwrap().authority, "[::1]:80");
    }

    #[test]
    fn https_and_other_schemes_are_refused_with_the_reason() {
        let e = Server::parse("https://gitopsd.example:8443").unwrap_err();
        assert!(e.to_string().contains("https is not supported"), "{e}");
        let e = Server::parse("ftp://gitopsd.example").unwrap_err();
        assert!(e.to_string().contains("expected http://HOST:PORT"), "{e}");
    }

    #[test]
    fn the_default_server_is_the_default_listen_port_on_this_machine() {
        let listen = crate::config::HttpConfig::default().listen;
        assert_eq!(
            Server::parse(DEFAULT_SERVER).unwrap().authority,
            format!("127.0.0.1:{}", listen.port())
        );
    }
}
