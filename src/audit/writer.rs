//! The daemon's audit log: records queued for a writer thread of their own.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use serde_json::Value;
use tracing::{error, warn};

use super::{AuditError, AuditLog, now_rfc3339, record};
use crate::activity::{Activity, Observer};

/// Records that may wait for the writer thread. A record is a few hundred bytes and the thread
/// writes them in batches, so the queue stays near empty; when it is full (a stalled disk), the
/// observer waits for room rather than drop a record.
const QUEUE: usize = 1024;

/// Records written with one write at most.
const BATCH: usize = 256;

/// A record observed and not yet written: its chain fields are given by the writer.
pub(super) struct Pending {
    pub(super) time: String,
    pub(super) event: &'static str,
    pub(super) fields: Vec<(&'static str, Value)>,
}

/// The daemon's audit log: an [`Observer`] that hands each record over a bounded channel to a
/// thread of its own, which appends them to an [`AuditLog`] in the order observed (one write
/// and one flush per batch), so that no file I/O runs on the async runtime's threads. Dropping
/// it writes what is queued, then fsyncs (daemon shutdown).
pub struct AuditWriter {
    path: PathBuf,
    tx: Option<SyncSender<Pending>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AuditWriter {
    /// Opens (or creates) the log at `path`, as [`AuditLog::open`], and starts its writer.
    pub fn start(path: &Path) -> Result<AuditWriter, AuditError> {
        let log = AuditLog::open(path)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Pending>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || write_queued(&log, &rx))
            .map_err(|source| AuditError::Thread {
                path: path.to_owned(),
                source,
            })?;
        Ok(AuditWriter {
            path: path.to_owned(),
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The writer thread: until every sender is gone, takes what is queued (up to [`BATCH`]) and
/// appends it; the log is fsynced when it is dropped at the end.
fn write_queued(log: &AuditLog, rx: &Receiver<Pending>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH
            && let Ok(next) = rx.try_recv()
        {
            batch.push(next);
        }
        if let Err(e) = log.append_all(&batch) {
            let events: Vec<&str> = batch.iter().map(|r| r.event).collect();
            error!(error = %e, ?events, "audit records were not written");
        }
    }
}

impl Observer for AuditWriter {
    fn observe(&self, activity: &Activity) {
        let Some((event, fields)) = record(activity) else {
            return;
        };
        let Some(tx) = &self.tx else {
            return;
        };
        let pending = Pending {
            time: now_rfc3339(),
            event,
            fields,
        };
        let sent = match tx.try_send(pending) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(pending)) => {
                warn!(path = %self.path.display(), event, "the audit log's queue is full (a slow disk?); waiting for the writer");
                tx.send(pending).map_err(|_| ())
            }
            Err(TrySendError::Disconnected(_)) => Err(()),
        };
        if sent.is_err() {
            error!(path = %self.path.display(), event, "an audit record was not written: the audit log's writer thread has stopped");
        }
    }
}

impl Drop for AuditWriter {
    fn drop(&mut self) {
        // Closing the channel lets the thread write what is queued, drop the log (fsync) and end.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!(path = %self.path.display(), "the audit log's writer thread panicked");
        }
    }
}
