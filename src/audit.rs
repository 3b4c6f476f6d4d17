//! The audit log: every notable sync, apply, prune, drift, rollback, blocked promotion, manual
//! sync and health change, one JSON line each, appended to a file and chained by sha256 so that
//! an edited, removed or reordered line shows (`gitopsd audit verify FILE`).
//!
//! A line is `{"seq":N,"time":RFC3339,"event":...,<fields>,"prev":"<hex>"}` where `prev` is the
//! sha256 of the previous line's bytes (without its newline); the first line's `prev` is
//! [`GENESIS`], 64 zeros. The chain shows tampering by someone who edits a line but not by
//! someone who rewrites every line after it: it is evidence of accidents and careless edits,
//! not a signature (ship the file elsewhere for that).
//!
//! Writes: the file is opened with `O_APPEND` and never truncated or rewritten; each line is
//! written whole with one `write_all` under a `std::sync::Mutex` (lines are a few hundred bytes,
//! so the lock is held for one small write to the page cache: microseconds, no thread or queue
//! whose backlog a crash would lose). It is flushed to the OS per line and fsynced when the
//! log is dropped (daemon shutdown); a power loss can lose the lines written since the last
//! fsync, a crash of gitopsd alone loses nothing.
//!
//! Restart: the last line gives the next `seq` and `prev`. A last line without its newline (a
//! write cut short) is kept as it is: gitopsd ends it with a newline and writes a `torn` record
//! whose `prev` is the sha256 of the torn bytes, so the chain goes on through it and `verify`
//! accepts it as acknowledged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::{error, warn};

use crate::activity::{Activity, Observer};
use crate::apply::Outcome;
use crate::live::ObjectKey;

/// The `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The event name of the record that acknowledges a torn line.
pub const TORN: &str = "torn";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit log {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the audit log {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the audit log {path} cannot be continued: its last complete line (line {line}) {reason}; move the file aside to start a new chain"
    )]
    LastLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("cannot write the audit log {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The hex sha256 of a line's bytes (without its newline).
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// The audit log file, appended to by [`AuditLog::append`]; also an [`Observer`].
pub struct AuditLog {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    /// The seq of the next line.
    next_seq: u64,
    prev: String,
    /// A write failed part-way: what is on disk is unknown, so read the tail again first.
    resync: bool,
}

/// Where the chain goes on, read from the end of an existing file.
#[derive(Debug, PartialEq, Eq)]
struct Tail {
    next_seq: u64,
    prev: String,
    /// A last line with no newline: (its line number, its bytes).
    torn: Option<(usize, Vec<u8>)>,
    /// The last line parses and chains but lacked only its newline.
    missing_newline: bool,
}

impl AuditLog {
    /// Opens (or creates) the log at `path` for appending and reads where its chain ends.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| AuditError::Open {
                path: path.to_owned(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(|source| AuditError::Open {
                path: path.to_owned(),
                source,
            })?;
        let log = AuditLog {
            path: path.to_owned(),
            inner: Mutex::new(Inner {
                file,
                next_seq: 1,
                prev: GENESIS.to_owned(),
                resync: true,
            }),
        };
        log.catch_up(&mut log.lock())?;
        Ok(log)
    }

    /// Reads where the chain ends from the file itself (at open, and after a failed write):
    /// a record missing only its newline gets it; a torn last line is kept, ended, and
    /// acknowledged by a `torn` record whose `prev` is the sha256 of its bytes.
    fn catch_up(&self, g: &mut Inner) -> Result<(), AuditError> {
        let tail = read_tail(&mut g.file, &self.path)?;
        g.next_seq = tail.next_seq;
        g.prev = tail.prev;
        if tail.missing_newline {
            warn!(path = %self.path.display(), "the audit log's last record had no newline (a write cut short at its end); added it");
            self.write_bytes(g, b"\n")?;
        } else if let Some((line, bytes)) = tail.torn {
            warn!(
                path = %self.path.display(),
                line,
                bytes = bytes.len(),
                "the audit log's last line is torn (no newline: a write was cut short, e.g. by a crash); it is kept as it is and the chain goes on after it with a `torn` record"
            );
            g.prev = line_hash(&bytes);
            let fields = vec![
                ("line", json!(line)),
                ("bytes", json!(bytes.len())),
                (
                    "note",
                    json!("the previous line was cut short; prev is the sha256 of its bytes"),
                ),
            ];
            // The newline that ends the torn line and the record, in one write.
            self.write_record(g, "\n", TORN, &fields)?;
        }
        g.resync = false;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves `resync` to repair the state; go on.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes and flushes; on failure, what reached the file is unknown: catch up first next time.
    fn write_bytes(&self, g: &mut Inner, bytes: &[u8]) -> Result<(), AuditError> {
        if let Err(source) = g.file.write_all(bytes).and_then(|_| g.file.flush()) {
            g.resync = true;
            return Err(AuditError::Write {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }

    /// Writes one record after `before`, and moves the chain on.
    fn write_record(
        &self,
        g: &mut Inner,
        before: &str,
        event: &str,
        fields: &[(&str, Value)],
    ) -> Result<(), AuditError> {
        let line = format_line(g.next_seq, &now_rfc3339(), event, fields, &g.prev);
        let bytes = format!("{before}{line}\n");
        self.write_bytes(g, bytes.as_bytes())?;
        g.next_seq += 1;
        g.prev = line_hash(line.as_bytes());
        Ok(())
    }

    /// Appends one record: `seq`, `time`, `event`, `fields` in order, then `prev`.
    pub fn append(&self, event: &str, fields: Vec<(&str, Value)>) -> Result<(), AuditError> {
        let mut g = self.lock();
        if g.resync {
            self.catch_up(&mut g)?;
        }
        self.write_record(&mut g, "", event, &fields)
    }

    /// Forces what was written to disk (called on drop, i.e. at shutdown).
    pub fn sync(&self) -> std::io::Result<()> {
        self.lock().file.sync_all()
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            warn!(path = %self.path.display(), error = %e, "cannot fsync the audit log");
        }
    }
}

impl Observer for AuditLog {
    fn observe(&self, activity: &Activity) {
        let Some((event, fields)) = record(activity) else {
            return;
        };
        if let Err(e) = self.append(event, fields) {
            error!(error = %e, event, "an audit record was not written");
        }
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One line, without its newline. Keys in a fixed order, so a person reads seq first.
fn format_line(seq: u64, time: &str, event: &str, fields: &[(&str, Value)], prev: &str) -> String {
    let mut s = format!(
        "{{\"seq\":{seq},\"time\":{},\"event\":{}",
        Value::from(time),
        Value::from(event)
    );
    for (k, v) in fields {
        s.push(',');
        s.push_str(&Value::from(*k).to_string());
        s.push(':');
        s.push_str(&v.to_string());
    }
    s.push_str(&format!(",\"prev\":\"{prev}\"}}"));
    s
}

fn object(key: &ObjectKey) -> Value {
    json!({
        "apiVersion": key.api_version,
        "kind": key.kind,
        "namespace": key.namespace,
        "name": key.name,
    })
}

/// What the audit log records of an activity, if anything.
pub fn record(activity: &Activity) -> Option<(&'static str, Vec<(&'static str, Value)>)> {
    let r = match activity {
        Activity::Fetched { .. }
        | Activity::RevisionApplied { .. }
        | Activity::WebhookDelivery { .. } => return None,
        Activity::SyncFinished {
            tier,
            revision,
            reason,
            result,
            duration,
            outcomes,
            error,
            notable,
            ..
        } => {
            if !notable {
                return None;
            }
            (
                "sync",
                vec![
                    ("tier", json!(tier)),
                    ("revision", json!(revision)),
                    ("reason", json!(reason)),
                    ("result", json!(result)),
                    ("outcomes", json!(outcomes)),
                    ("durationMs", json!(duration.as_millis() as u64)),
                    ("error", json!(error)),
                ],
            )
        }
        Activity::ObjectApplied {
            tier,
            revision,
            object: key,
            outcome,
            message,
        } => (
            if *outcome == Outcome::Pruned {
                "prune"
            } else {
                "apply"
            },
            vec![
                ("tier", json!(tier)),
                ("revision", json!(revision)),
                ("object", object(key)),
                ("outcome", json!(outcome.as_str())),
                ("message", json!(message)),
            ],
        ),
        Activity::DriftFound {
            tier,
            revision,
            items,
        } => (
            "drift",
            vec![
                ("tier", json!(tier)),
                ("revision", json!(revision)),
                (
                    "items",
                    Value::Array(
                        items
                            .iter()
                            .map(|i| {
                                json!({
                                    "object": object(&i.object_key()),
                                    "paths": i.paths,
                                    "severity": i.severity.as_str(),
                                    "rule": i.rule.as_str(),
                                    "action": i.action.as_str(),
                                })
                            })
                            .collect(),
                    ),
                ),
            ],
        ),
        Activity::RevisionHealthy {
            tier,
            revision,
            since_arrival,
        } => (
            "health",
            vec![
                ("tier", json!(tier)),
                ("revision", json!(revision)),
                ("to", json!("Healthy")),
                ("firstForRevision", json!(true)),
                ("sinceArrivalMs", json!(since_arrival.as_millis() as u64)),
            ],
        ),
        Activity::HealthChanged {
            tier,
            revision,
            from,
            to,
        } => (
            "health",
            vec![
                ("tier", json!(tier)),
                ("revision", json!(revision)),
                ("from", json!(from)),
                ("to", json!(to)),
            ],
        ),
        Activity::RolledBack {
            tier,
            from,
            to,
            reason,
        } => (
            "rollback",
            vec![
                ("tier", json!(tier)),
                ("from", json!(from)),
                ("to", json!(to)),
                ("reason", json!(reason)),
            ],
        ),
        Activity::PromotionBlocked {
            tier,
            revision,
            reason,
        } => (
            "promotion-blocked",
            vec![
                ("tier", json!(tier)),
                ("revision", json!(revision)),
                ("reason", json!(reason)),
            ],
        ),
        Activity::PruneRefused {
            tier,
            revision,
            objects,
            reason,
        } => (
            "prune-refused",
            vec![
                ("tier", json!(tier)),
                ("revision", json!(revision)),
                ("objects", json!(objects)),
                ("reason", json!(reason)),
            ],
        ),
        Activity::HistoryRewritten {
            tier,
            git_ref,
            from,
            to,
        } => (
            "history-rewritten",
            vec![
                ("tier", json!(tier)),
                ("ref", json!(git_ref)),
                ("from", json!(from)),
                ("to", json!(to)),
            ],
        ),
        Activity::ManualSync {
            tier,
            who,
            override_window,
        } => {
            let mut fields = vec![("tier", json!(tier)), ("who", json!(who))];
            if *override_window {
                fields.push(("overrideWindow", json!(true)));
            }
            ("manual-sync", fields)
        }
    };
    Some(r)
}

/// Reads backwards from the end until the last complete line (and a torn tail after it, if
/// any) is in hand: only the end of a long log is read.
fn read_tail(file: &mut File, path: &Path) -> Result<Tail, AuditError> {
    let read_err = |source| AuditError::Read {
        path: path.to_owned(),
        source,
    };
    let len = file.seek(SeekFrom::End(0)).map_err(read_err)?;
    if len == 0 {
        return Ok(Tail {
            next_seq: 1,
            prev: GENESIS.to_owned(),
            torn: None,
            missing_newline: false,
        });
    }
    // Grow the window from the end until it holds the whole last complete line.
    let mut window: u64 = 8 * 1024;
    let buf = loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start)).map_err(read_err)?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        Read::by_ref(file)
            .take(len - start)
            .read_to_end(&mut buf)
            .map_err(read_err)?;
        // Enough: the window starts at the file's start, or holds the newline that ends the
        // last complete line and the one before it.
        let newlines = buf.iter().filter(|b| **b == b'\n').count();
        if start == 0 || newlines >= 2 {
            break buf;
        }
        window *= 4;
    };
    let ends_with_newline = buf.last() == Some(&b'\n');
    let body = if ends_with_newline {
        &buf[..buf.len() - 1]
    } else {
        &buf[..]
    };
    let (complete, torn): (Option<&[u8]>, Option<&[u8]>) = if ends_with_newline {
        let last = match body.iter().rposition(|b| *b == b'\n') {
            Some(i) => &body[i + 1..],
            None => body,
        };
        (Some(last), None)
    } else {
        match body.iter().rposition(|b| *b == b'\n') {
            Some(i) => {
                let before = &body[..i];
                let last = match before.iter().rposition(|b| *b == b'\n') {
                    Some(j) => &before[j + 1..],
                    None => before,
                };
                (Some(last), Some(&body[i + 1..]))
            }
            None => (None, Some(body)),
        }
    };
    let (mut next_seq, mut prev) = (1, GENESIS.to_owned());
    if let Some(last) = complete {
        match parse_record(last) {
            Ok(r) => {
                next_seq = r.seq + 1;
                prev = line_hash(last);
            }
            Err(reason) => {
                return Err(AuditError::LastLine {
                    path: path.to_owned(),
                    line: line_count(file, path)?,
                    reason,
                });
            }
        }
    }
    let Some(torn) = torn else {
        return Ok(Tail {
            next_seq,
            prev,
            torn: None,
            missing_newline: false,
        });
    };
    // A tail that is a whole record chained to the line before lacks only its newline.
    if let Ok(r) = parse_record(torn)
        && r.seq == next_seq
        && r.prev == prev
    {
        return Ok(Tail {
            next_seq: r.seq + 1,
            prev: line_hash(torn),
            torn: None,
            missing_newline: true,
        });
    }
    let line = line_count(file, path)? + 1;
    Ok(Tail {
        next_seq,
        prev,
        torn: Some((line, torn.to_vec())),
        missing_newline: false,
    })
}

/// How many newlines the file holds. Reads the whole file: only for a line number in a message.
fn line_count(file: &mut File, path: &Path) -> Result<usize, AuditError> {
    let read_err = |source| AuditError::Read {
        path: path.to_owned(),
        source,
    };
    file.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let mut all = Vec::new();
    file.read_to_end(&mut all).map_err(read_err)?;
    Ok(all.iter().filter(|b| **b == b'\n').count())
}

/// The chain fields of a line.
struct Record {
    seq: u64,
    prev: String,
    event: String,
    /// For a `torn` record: the line it acknowledges.
    torn_line: Option<u64>,
}

fn parse_record(line: &[u8]) -> Result<Record, String> {
    let v: Value =
        serde_json::from_slice(line).map_err(|e| format!("is not a JSON object ({e})"))?;
    let seq = v
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or("has no numeric \"seq\"")?;
    let prev = v
        .get("prev")
        .and_then(Value::as_str)
        .filter(|p| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("has no \"prev\" of 64 hex digits")?
        .to_owned();
    let event = v
        .get("event")
        .and_then(Value::as_str)
        .ok_or("has no \"event\"")?
        .to_owned();
    if v.get("time").and_then(Value::as_str).is_none() {
        return Err("has no \"time\"".to_owned());
    }
    let torn_line = v.get("line").and_then(Value::as_u64);
    Ok(Record {
        seq,
        prev,
        event,
        torn_line,
    })
}

/// What `verify` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every line chains; `torn` lists torn lines gitopsd acknowledged after a restart.
    Intact { lines: usize, torn: Vec<usize> },
    /// The first broken line (1-based) and why.
    Broken { line: usize, reason: String },
}

/// Checks the chain of a whole log: every line parses, `seq` goes up by one, `prev` is the
/// sha256 of the line before (the first: [`GENESIS`]). A line that does not parse is accepted
/// only when the next line is the `torn` record that acknowledges it.
pub fn verify(bytes: &[u8]) -> Verdict {
    if bytes.is_empty() {
        return Verdict::Intact {
            lines: 0,
            torn: Vec::new(),
        };
    }
    let ends_with_newline = bytes.last() == Some(&b'\n');
    let body = if ends_with_newline {
        &bytes[..bytes.len() - 1]
    } else {
        bytes
    };
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    let mut prev_seq: Option<u64> = None;
    let mut torn = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        let is_last = i + 1 == lines.len();
        let record = match parse_record(line) {
            Ok(r) => r,
            Err(why) => {
                if is_last && !ends_with_newline {
                    return Verdict::Broken {
                        line: n,
                        reason: format!(
                            "torn last line (no newline at the end of the file: a write was cut short, e.g. by a crash; gitopsd acknowledges it with a `torn` record on its next start); {why}"
                        ),
                    };
                }
                // Acknowledged by the next line?
                let acknowledged = lines
                    .get(i + 1)
                    .and_then(|l| parse_record(l).ok())
                    .is_some_and(|next| {
                        next.event == TORN
                            && next.torn_line == Some(n as u64)
                            && next.prev == line_hash(line)
                    });
                if acknowledged {
                    torn.push(n);
                    continue;
                }
                return Verdict::Broken {
                    line: n,
                    reason: format!("the line {why}"),
                };
            }
        };
        let expected_prev = if i == 0 {
            GENESIS.to_owned()
        } else {
            line_hash(lines[i - 1])
        };
        if i == 0 {
            if record.prev != GENESIS {
                return Verdict::Broken {
                    line: n,
                    reason: format!(
                        "the first line's prev is not {GENESIS} (lines before it removed?)"
                    ),
                };
            }
        } else if record.prev != expected_prev {
            return Verdict::Broken {
                line: n,
                reason: format!(
                    "prev does not match the sha256 of line {} (edited, removed or reordered line)",
                    n - 1
                ),
            };
        }
        if let Some(p) = prev_seq
            && record.seq != p + 1
        {
            return Verdict::Broken {
                line: n,
                reason: format!(
                    "seq is {}, expected {} (removed or reordered line)",
                    record.seq,
                    p + 1
                ),
            };
        }
        prev_seq = Some(record.seq);
    }
    if !ends_with_newline {
        return Verdict::Broken {
            line: lines.len(),
            reason: "no newline at the end of the file (a write cut short)".to_owned(),
        };
    }
    Verdict::Intact {
        lines: lines.len(),
        torn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn sync(tier: &str) -> Activity {
        Activity::SyncFinished {
            tier: tier.into(),
            revision: "abc".into(),
            reason: "revision".into(),
            result: crate::status::SyncState::Synced,
            duration: Duration::from_millis(12),
            outcomes: BTreeMap::from([("created".to_owned(), 2)]),
            error: None,
            notable: true,
            window_closed: false,
        }
    }

    fn applied(name: &str, outcome: Outcome) -> Activity {
        Activity::ObjectApplied {
            tier: "t".into(),
            revision: "abc".into(),
            object: ObjectKey {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("t".into()),
                name: name.into(),
            },
            outcome,
            message: None,
        }
    }

    fn write_log(path: &Path, n: usize) {
        let log = AuditLog::open(path).unwrap();
        for i in 0..n {
            log.observe(&applied(&format!("cm-{i}"), Outcome::Created));
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn check(path: &Path) -> Verdict {
        verify(&std::fs::read(path).unwrap())
    }

    #[test]
    fn lines_are_chained_from_the_genesis_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        log.observe(&sync("t"));
        log.observe(&applied("a", Outcome::Created));
        log.observe(&applied("b", Outcome::Pruned));
        drop(log);
        let ls = lines(&path);
        assert_eq!(ls.len(), 3);
        let v: Vec<Value> = ls
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(ls[0].starts_with("{\"seq\":1,\"time\":\""), "{}", ls[0]);
        assert!(
            ls[0].ends_with(&format!(",\"prev\":\"{GENESIS}\"}}")),
            "{}",
            ls[0]
        );
        assert_eq!(v[0]["event"], "sync");
        assert_eq!(v[0]["outcomes"]["created"], 2);
        assert_eq!(v[1]["event"], "apply");
        assert_eq!(v[1]["object"]["name"], "a");
        assert_eq!(v[2]["event"], "prune");
        assert_eq!(v[2]["seq"], 3);
        assert_eq!(v[1]["prev"], line_hash(ls[0].as_bytes()));
        assert_eq!(v[2]["prev"], line_hash(ls[1].as_bytes()));
        assert_eq!(
            check(&path),
            Verdict::Intact {
                lines: 3,
                torn: vec![]
            }
        );
    }

    #[test]
    fn a_refused_prune_is_recorded_with_its_count_and_reason() {
        let (event, fields) = record(&Activity::PruneRefused {
            tier: "t".into(),
            revision: "abc".into(),
            objects: 6,
            reason: "would delete 6 of 8 objects (75%)".into(),
        })
        .expect("recorded");
        assert_eq!(event, "prune-refused");
        let fields: std::collections::HashMap<_, _> = fields.into_iter().collect();
        assert_eq!(fields["objects"], 6);
        assert_eq!(fields["reason"], "would delete 6 of 8 objects (75%)");
    }

    #[test]
    fn a_history_rewrite_is_logged_with_the_ref_and_both_commits() {
        let (event, fields) = record(&Activity::HistoryRewritten {
            tier: "t".into(),
            git_ref: "main".into(),
            from: "b".repeat(40),
            to: "a".repeat(40),
        })
        .expect("recorded");
        assert_eq!(event, "history-rewritten");
        let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("tier"), Some(json!("t")));
        assert_eq!(get("ref"), Some(json!("main")));
        assert_eq!(get("from"), Some(json!("b".repeat(40))));
        assert_eq!(get("to"), Some(json!("a".repeat(40))));
    }

    #[test]
    fn quiet_syncs_and_fetches_are_not_logged() {
        let mut quiet = sync("t");
        if let Activity::SyncFinished { notable, .. } = &mut quiet {
            *notable = false;
        }
        assert!(record(&quiet).is_none());
        assert!(
            record(&Activity::Fetched {
                duration: Duration::ZERO,
                error: None
            })
            .is_none()
        );
        let (event, fields) = record(&Activity::ManualSync {
            tier: "t".into(),
            who: "ci-token".into(),
            override_window: true,
        })
        .unwrap();
        assert_eq!(event, "manual-sync");
        assert!(fields.contains(&("who", json!("ci-token"))));
        assert!(fields.contains(&("overrideWindow", json!(true))));
    }

    #[test]
    fn a_reopened_log_continues_seq_and_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 3);
        write_log(&path, 2);
        let ls = lines(&path);
        assert_eq!(ls.len(), 5);
        let fourth: Value = serde_json::from_str(&ls[3]).unwrap();
        assert_eq!(fourth["seq"], 4);
        assert_eq!(fourth["prev"], line_hash(ls[2].as_bytes()));
        assert_eq!(
            check(&path),
            Verdict::Intact {
                lines: 5,
                torn: vec![]
            }
        );
    }

    #[test]
    fn a_long_log_is_continued_from_its_tail() {
        // Lines longer than the first read window (8 KiB) and many of them.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..50 {
            log.append("apply", vec![("pad", json!("x".repeat(3000 + i)))])
                .unwrap();
        }
        drop(log);
        write_log(&path, 1);
        assert_eq!(
            check(&path),
            Verdict::Intact {
                lines: 51,
                torn: vec![]
            }
        );
    }

    #[test]
    fn an_edited_line_breaks_the_chain_at_the_next_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 5);
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = text.replacen("cm-2", "cm-X", 1);
        let Verdict::Broken { line, reason } = verify(edited.as_bytes()) else {
            panic!("an edited line must break the chain");
        };
        // Line 3 holds cm-2; line 4's prev no longer matches it.
        assert_eq!(line, 4);
        assert!(
            reason.contains("prev does not match the sha256 of line 3"),
            "{reason}"
        );
    }

    #[test]
    fn a_removed_line_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 5);
        let mut ls = lines(&path);
        ls.remove(2);
        let text = ls.join("\n") + "\n";
        assert!(matches!(
            verify(text.as_bytes()),
            Verdict::Broken { line: 3, .. }
        ));
        // The first line removed: the new first line's prev is not the genesis.
        let ls = lines(&path);
        let text = ls[1..].join("\n") + "\n";
        let Verdict::Broken { line, reason } = verify(text.as_bytes()) else {
            panic!("a removed first line must show");
        };
        assert_eq!(line, 1);
        assert!(reason.contains("first line"), "{reason}");
    }

    #[test]
    fn reordered_lines_break_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 5);
        let mut ls = lines(&path);
        ls.swap(1, 2);
        let text = ls.join("\n") + "\n";
        let Verdict::Broken { line, reason } = verify(text.as_bytes()) else {
            panic!("reordered lines must break the chain");
        };
        assert_eq!(line, 2);
        assert!(reason.contains("reordered"), "{reason}");
    }

    #[test]
    fn a_torn_last_line_is_reported_kept_and_acknowledged_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 3);
        let before = std::fs::read(&path).unwrap();
        // A crash mid-write: half a record, no newline.
        let torn = b"{\"seq\":4,\"time\":\"2026-01-01T00:00:00Z\",\"ev";
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(torn)
            .unwrap();
        let Verdict::Broken { line, reason } = check(&path) else {
            panic!("a torn last line must be reported");
        };
        assert_eq!(line, 4);
        assert!(reason.contains("torn last line"), "{reason}");

        write_log(&path, 2);
        let after = std::fs::read(&path).unwrap();
        // Nothing before was rewritten or truncated: the torn bytes are still there.
        assert!(after.starts_with(&before));
        assert_eq!(&after[before.len()..before.len() + torn.len()], torn);
        let ls = lines(&path);
        assert_eq!(ls.len(), 7);
        let ack: Value = serde_json::from_str(&ls[4]).unwrap();
        assert_eq!(ack["event"], TORN);
        assert_eq!(ack["seq"], 4);
        assert_eq!(ack["line"], 4);
        assert_eq!(ack["prev"], line_hash(torn));
        let last: Value = serde_json::from_str(&ls[6]).unwrap();
        assert_eq!(last["seq"], 6);
        assert_eq!(
            check(&path),
            Verdict::Intact {
                lines: 7,
                torn: vec![4]
            }
        );
    }

    #[test]
    fn a_last_record_missing_only_its_newline_is_completed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 2);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.pop();
        std::fs::write(&path, &bytes).unwrap();
        write_log(&path, 1);
        assert_eq!(
            check(&path),
            Verdict::Intact {
                lines: 3,
                torn: vec![]
            }
        );
    }

    #[test]
    fn a_log_whose_last_line_is_not_a_record_is_not_continued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 2);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"garbage\n")
            .unwrap();
        let err = AuditLog::open(&path)
            .err()
            .expect("must refuse")
            .to_string();
        assert!(err.contains("line 3"), "{err}");
    }
}
