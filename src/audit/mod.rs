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
//! Writes: the file is opened with `O_APPEND` and never truncated or rewritten, and locked
//! (`flock`) while open: a second writer is refused ([`AuditError::InUse`]). The daemon
//! writes through [`AuditWriter`]: an observer stamps each record with its time and queues it
//! on a bounded channel (waiting for room when full, never dropping one), and a thread of its
//! own gives each its `seq` and `prev` in queue order and appends what is queued with one
//! `write_all` and one flush per batch, so no file I/O runs on the async runtime. The file is
//! fsynced when the writer is dropped (daemon shutdown), after the queue is written. A power
//! loss can lose the lines written since the last fsync; a crash of gitopsd alone loses the
//! records still queued (normally none: the thread writes them within a moment of being
//! observed), never a line already written.
//!
//! Restart: the last line gives the next `seq` and `prev`. A last line without its newline (a
//! write cut short) is kept as it is: gitopsd ends it with a newline and writes a `torn` record
//! whose `prev` is the sha256 of the torn bytes, so the chain goes on through it and `verify`
//! accepts it as acknowledged.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::{error, warn};

use crate::activity::{Activity, Observer};
use crate::apply::Outcome;
use crate::live::ObjectKey;

mod chain;
mod writer;

pub use chain::{RecordError, Verdict, verify, verify_file, verify_lines};
pub use writer::AuditWriter;

use chain::read_tail;
use writer::Pending;

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
        reason: RecordError,
    },
    #[error(
        "the audit log {path} is held by another running gitopsd (each daemon locks its audit log while it runs, so two chains never interleave in one file): give this daemon its own `audit.path` (or its own --workdir)"
    )]
    InUse { path: PathBuf },
    #[error("cannot write the audit log {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the writer thread of the audit log {path}: {source}")]
    Thread {
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
        // Held (`flock`) as long as the file is open: a second writer would continue the chain
        // from a `seq` and `prev` of its own. Released by the kernel however the process ends.
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(AuditError::InUse {
                    path: path.to_owned(),
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(AuditError::Open {
                    path: path.to_owned(),
                    source,
                });
            }
        }
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

    /// Appends records in order with one write (and one flush), each stamped with the time it
    /// was observed: what the writer thread of [`AuditWriter`] does with what it dequeued.
    fn append_all(&self, records: &[Pending]) -> Result<(), AuditError> {
        let mut g = self.lock();
        if g.resync {
            self.catch_up(&mut g)?;
        }
        let (mut seq, mut prev) = (g.next_seq, g.prev.clone());
        let mut bytes = String::new();
        for r in records {
            let line = format_line(seq, &r.time, r.event, &r.fields, &prev);
            prev = line_hash(line.as_bytes());
            seq += 1;
            bytes.push_str(&line);
            bytes.push('\n');
        }
        self.write_bytes(&mut g, bytes.as_bytes())?;
        g.next_seq = seq;
        g.prev = prev;
        Ok(())
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
                                    "paths": i.field_path.as_slice(),
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
            ..
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

#[cfg(test)]
mod tests {
    use super::chain::READ_BLOCK;
    use super::*;
    use std::io::{BufReader, Read};
    use std::time::Duration;

    fn sync(tier: &str) -> Activity {
        Activity::SyncFinished {
            tier: tier.into(),
            revision: "abc".into(),
            reason: "revision".into(),
            result: crate::status::SyncState::Synced,
            duration: Duration::from_millis(12),
            outcomes: crate::apply::Tally::from([(crate::apply::Outcome::Created, 2)]),
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
            from: "b".repeat(40).into(),
            to: "a".repeat(40).into(),
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

    /// Two writers of one file would each continue the chain from their own `seq` and `prev`:
    /// the second is refused while the first has it open, and takes it once it is closed.
    #[test]
    fn a_second_writer_of_one_log_is_refused_until_the_first_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let first = AuditWriter::start(&path).unwrap();
        first.observe(&applied("a", Outcome::Created));
        let Err(err) = AuditWriter::start(&path) else {
            panic!("a second writer of {} was let in", path.display());
        };
        assert!(
            matches!(&err, AuditError::InUse { path: p } if p == &path),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("is held by another running gitopsd"),
            "{err}"
        );
        drop(first);
        let again = AuditWriter::start(&path).unwrap();
        again.observe(&applied("b", Outcome::Created));
        drop(again);
        assert_eq!(
            check(&path),
            Verdict::Intact {
                lines: 2,
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

    /// A chained log made line by line as it is read, never whole in memory; records the
    /// largest read asked of it. `tamper`: the line (1-based) whose content is changed after
    /// its successor was chained to the original.
    struct GeneratedLog {
        lines: usize,
        made: usize,
        prev: String,
        tamper: Option<usize>,
        current: Vec<u8>,
        pos: usize,
        largest_read: usize,
        total: u64,
    }

    impl GeneratedLog {
        fn new(lines: usize, tamper: Option<usize>) -> GeneratedLog {
            GeneratedLog {
                lines,
                made: 0,
                prev: GENESIS.to_owned(),
                tamper,
                current: Vec::new(),
                pos: 0,
                largest_read: 0,
                total: 0,
            }
        }
    }

    impl Read for GeneratedLog {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.largest_read = self.largest_read.max(out.len());
            if self.pos == self.current.len() {
                if self.made == self.lines {
                    return Ok(0);
                }
                self.made += 1;
                let fields = vec![("object", json!(format!("cm-{}", self.made)))];
                let line = format_line(
                    self.made as u64,
                    "2026-12-02T08:00:00.000Z",
                    "apply",
                    &fields,
                    &self.prev,
                );
                self.prev = line_hash(line.as_bytes());
                let line = if self.tamper == Some(self.made) {
                    line.replace("\"apply\"", "\"prune\"")
                } else {
                    line
                };
                self.current = format!("{line}\n").into_bytes();
                self.pos = 0;
            }
            let n = out.len().min(self.current.len() - self.pos);
            out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
            self.pos += n;
            self.total += n as u64;
            Ok(n)
        }
    }

    #[test]
    fn verify_streams_a_log_larger_than_its_read_block_line_by_line() {
        // About 2 MiB, thirty times the block verify reads at a time; the log never exists
        // whole, so verify can only have taken it line by line.
        let lines = 15_000;
        let mut generated = GeneratedLog::new(lines, None);
        let verdict =
            verify_lines(BufReader::with_capacity(READ_BLOCK, &mut generated)).expect("reads");
        assert_eq!(
            verdict,
            Verdict::Intact {
                lines,
                torn: vec![]
            }
        );
        assert!(
            generated.total > 30 * READ_BLOCK as u64,
            "{}",
            generated.total
        );
        assert!(
            generated.largest_read <= READ_BLOCK,
            "asked {} bytes at once",
            generated.largest_read
        );

        // A changed line deep in it is found, with its line number: the next line's prev no
        // longer matches it.
        let mut tampered = GeneratedLog::new(lines, Some(9_337));
        let verdict =
            verify_lines(BufReader::with_capacity(READ_BLOCK, &mut tampered)).expect("reads");
        assert_eq!(
            verdict,
            Verdict::Broken {
                line: 9_338,
                reason: "prev does not match the sha256 of line 9337 (edited, removed or reordered line)".into()
            }
        );
        // It stopped there, without reading the rest.
        assert!(tampered.made < lines, "read {} lines", tampered.made);
    }

    #[test]
    fn verify_file_finds_a_tampered_line_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write_log(&path, 30);
        assert_eq!(
            verify_file(&path).unwrap(),
            Verdict::Intact {
                lines: 30,
                torn: vec![]
            }
        );
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"cm-11\"", "\"cm-XX\"", 1)).unwrap();
        let Verdict::Broken { line, reason } = verify_file(&path).unwrap() else {
            panic!("a tampered line must break the chain");
        };
        // cm-11 is on line 12; line 13's prev no longer matches it.
        assert_eq!(line, 13, "{reason}");
        assert!(verify_file(&dir.path().join("missing.log")).is_err());
    }

    #[test]
    fn records_written_from_many_threads_through_the_writer_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let (threads, each) = (8, 200);
        {
            let writer = std::sync::Arc::new(AuditWriter::start(&path).unwrap());
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let writer = writer.clone();
                    std::thread::spawn(move || {
                        for i in 0..each {
                            writer.observe(&applied(&format!("t{t}-{i}"), Outcome::Created));
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            // Dropping the last handle writes what is queued and fsyncs.
        }
        assert_eq!(
            verify_file(&path).unwrap(),
            Verdict::Intact {
                lines: threads * each,
                torn: vec![]
            }
        );
        // Each thread's records in the order it observed them.
        let lines = lines(&path);
        for t in 0..threads {
            let order: Vec<usize> = lines
                .iter()
                .filter_map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap();
                    let name = v["object"]["name"].as_str()?.to_owned();
                    name.strip_prefix(&format!("t{t}-"))?.parse().ok()
                })
                .collect();
            assert_eq!(order, (0..each).collect::<Vec<_>>(), "thread {t}");
        }
        // A writer opened again continues the chain.
        {
            let writer = AuditWriter::start(&path).unwrap();
            writer.observe(&applied("again", Outcome::Configured));
        }
        assert_eq!(
            verify_file(&path).unwrap(),
            Verdict::Intact {
                lines: threads * each + 1,
                torn: vec![]
            }
        );
    }
}
