//! Reading the chain back: where it ends (to continue it) and whether it holds (`verify`),
//! streamed line by line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

use super::{AuditError, GENESIS, TORN, Tail, line_hash};

/// Reads backwards from the end until the last complete line (and a torn tail after it, if
/// any) is in hand: only the end of a long log is read.
pub(super) fn read_tail(file: &mut File, path: &Path) -> Result<Tail, AuditError> {
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

/// How many newlines the file holds, read in blocks: only for a line number in a message.
pub(super) fn line_count(file: &mut File, path: &Path) -> Result<usize, AuditError> {
    let read_err = |source| AuditError::Read {
        path: path.to_owned(),
        source,
    };
    file.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let mut reader = BufReader::with_capacity(READ_BLOCK, file);
    let mut count = 0;
    loop {
        let block = reader.fill_buf().map_err(read_err)?;
        if block.is_empty() {
            return Ok(count);
        }
        count += block.iter().filter(|b| **b == b'\n').count();
        let n = block.len();
        reader.consume(n);
    }
}

/// The chain fields of a line.
struct Record {
    seq: u64,
    prev: String,
    event: String,
    /// For a `torn` record: the line it acknowledges.
    torn_line: Option<u64>,
}

/// Why a line is not a record of the chain (read "the line ..." / "its last line ...").
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("is not a JSON object ({0})")]
    NotJson(#[source] serde_json::Error),
    #[error("has no numeric \"seq\"")]
    NoSeq,
    #[error("has no \"prev\" of 64 hex digits")]
    NoPrev,
    #[error("has no \"event\"")]
    NoEvent,
    #[error("has no \"time\"")]
    NoTime,
}

fn parse_record(line: &[u8]) -> Result<Record, RecordError> {
    let v: Value = serde_json::from_slice(line).map_err(RecordError::NotJson)?;
    let seq = v
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or(RecordError::NoSeq)?;
    let prev = v
        .get("prev")
        .and_then(Value::as_str)
        .filter(|p| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(RecordError::NoPrev)?
        .to_owned();
    let event = v
        .get("event")
        .and_then(Value::as_str)
        .ok_or(RecordError::NoEvent)?
        .to_owned();
    if v.get("time").and_then(Value::as_str).is_none() {
        return Err(RecordError::NoTime);
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

/// What `verify` and the line counter read at a time: memory stays bounded by this (and by
/// the longest line), whatever the size of the log.
pub(super) const READ_BLOCK: usize = 64 * 1024;

/// A line longer than this is not a record gitopsd wrote (a drift record of thousands of
/// items is well under it); `verify` stops there rather than hold it.
const MAX_LINE: u64 = 64 * 1024 * 1024;

/// [`verify_lines`] of a log in memory.
pub fn verify(bytes: &[u8]) -> Verdict {
    // Reading a slice cannot fail.
    verify_lines(bytes).unwrap_or_else(|e| Verdict::Broken {
        line: 0,
        reason: e.to_string(),
    })
}

/// [`verify_lines`] of the file at `path`, read line by line.
pub fn verify_file(path: &Path) -> Result<Verdict, AuditError> {
    let read_err = |source| AuditError::Read {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    verify_lines(BufReader::with_capacity(READ_BLOCK, file)).map_err(read_err)
}

/// Checks the chain of a whole log, one line at a time (only the line in hand and the hash of
/// the one before are kept): every line parses, `seq` goes up by one, `prev` is the sha256 of
/// the line before (the first: [`GENESIS`]). A line that does not parse is accepted only when
/// the next line is the `torn` record that acknowledges it.
pub fn verify_lines(mut reader: impl BufRead) -> std::io::Result<Verdict> {
    let mut lines = 0usize;
    let mut buf: Vec<u8> = Vec::new();
    // The sha256 of the line before, and its seq when it was a record.
    let mut prev_hash: Option<String> = None;
    let mut prev_seq: Option<u64> = None;
    // A line that did not parse, waiting for the next one to acknowledge it as torn.
    let mut unparsed: Option<(usize, RecordError)> = None;
    let mut torn = Vec::new();
    let mut ends_with_newline = true;
    loop {
        buf.clear();
        let read = Read::by_ref(&mut reader)
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut buf)?;
        if read == 0 {
            break;
        }
        lines += 1;
        let n = lines;
        ends_with_newline = buf.last() == Some(&b'\n');
        if ends_with_newline {
            buf.pop();
        } else if buf.len() as u64 > MAX_LINE {
            return Ok(Verdict::Broken {
                line: n,
                reason: format!("the line is longer than {MAX_LINE} bytes"),
            });
        }
        let line = buf.as_slice();
        let parsed = parse_record(line);
        if let Some((m, why)) = unparsed.take() {
            let acknowledged = parsed.as_ref().is_ok_and(|next| {
                next.event == TORN
                    && next.torn_line == Some(m as u64)
                    && Some(&next.prev) == prev_hash.as_ref()
            });
            if !acknowledged {
                return Ok(Verdict::Broken {
                    line: m,
                    reason: format!("the line {why}"),
                });
            }
            torn.push(m);
        }
        match parsed {
            Err(why) if !ends_with_newline => {
                return Ok(Verdict::Broken {
                    line: n,
                    reason: format!(
                        "torn last line (no newline at the end of the file: a write was cut short, e.g. by a crash; gitopsd acknowledges it with a `torn` record on its next start); {why}"
                    ),
                });
            }
            Err(why) => unparsed = Some((n, why)),
            Ok(record) => {
                match &prev_hash {
                    None if record.prev != GENESIS => {
                        return Ok(Verdict::Broken {
                            line: n,
                            reason: format!(
                                "the first line's prev is not {GENESIS} (lines before it removed?)"
                            ),
                        });
                    }
                    Some(hash) if record.prev != *hash => {
                        return Ok(Verdict::Broken {
                            line: n,
                            reason: format!(
                                "prev does not match the sha256 of line {} (edited, removed or reordered line)",
                                n - 1
                            ),
                        });
                    }
                    _ => {}
                }
                if let Some(p) = prev_seq
                    && record.seq != p + 1
                {
                    return Ok(Verdict::Broken {
                        line: n,
                        reason: format!(
                            "seq is {}, expected {} (removed or reordered line)",
                            record.seq,
                            p + 1
                        ),
                    });
                }
                prev_seq = Some(record.seq);
            }
        }
        prev_hash = Some(line_hash(line));
    }
    if let Some((m, why)) = unparsed {
        return Ok(Verdict::Broken {
            line: m,
            reason: format!("the line {why}"),
        });
    }
    if !ends_with_newline {
        return Ok(Verdict::Broken {
            line: lines,
            reason: "no newline at the end of the file (a write cut short)".to_owned(),
        });
    }
    Ok(Verdict::Intact { lines, torn })
}
