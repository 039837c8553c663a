//! `LogConsumer`: a named reader of the log with a persisted committed offset.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldpulse_proto::v1::Batch;
use prost::Message;

use super::segment::{Segment, Step, Walker};
use super::state;
use super::{BatchSource, LogError, LogRecord, Shared};

/// Longest consumer name.
const MAX_NAME_LEN: usize = 64;

/// A named consumer of an [`super::IngestLog`]. Its committed offset is
/// persisted in the log directory and holds retention back; where it reads
/// from is the caller's business (`read(from, ..)`).
pub struct LogConsumer {
    shared: Arc<Shared>,
    name: String,
    committed: u64,
    cursor: Option<Cursor>,
}

impl std::fmt::Debug for LogConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogConsumer")
            .field("name", &self.name)
            .field("committed", &self.committed)
            .finish()
    }
}

/// Where the previous read stopped, so a sequential reader does not rescan.
struct Cursor {
    segment: Arc<Segment>,
    walker: Walker,
    /// The next offset at or after which the walker's position is valid.
    next_offset: u64,
}

impl LogConsumer {
    pub(super) fn register(shared: Arc<Shared>, name: &str) -> Result<Self, LogError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid {
            return Err(LogError::ConsumerName {
                name: name.to_string(),
            });
        }
        let committed = {
            let mut consumers = shared.consumers.lock().unwrap_or_else(|p| p.into_inner());
            match consumers.get(name) {
                Some(&offset) => offset,
                None => {
                    let start = shared.start_offset();
                    consumers.insert(name.to_string(), start);
                    state::write_consumers(&shared.dir, &consumers)?;
                    start
                }
            }
        };
        Ok(Self {
            shared,
            name: name.to_string(),
            committed,
            cursor: None,
        })
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The committed offset (every record below it is processed).
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The segment holding `offset`, or an error when retention deleted it.
    fn segment_for(&self, offset: u64) -> Result<Option<Arc<Segment>>, LogError> {
        let segments = self
            .shared
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let oldest = segments.keys().next().copied().unwrap_or(0);
        if offset < oldest {
            return Err(LogError::OffsetDeleted { offset, oldest });
        }
        Ok(segments
            .range(..=offset)
            .next_back()
            .map(|(_, s)| Arc::clone(s)))
    }

    fn next_segment(&self, after: &Segment) -> Option<Arc<Segment>> {
        let segments = self
            .shared
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner());
        segments
            .range(after.base + 1..)
            .next()
            .map(|(_, s)| Arc::clone(s))
    }

    fn open_walker(&self, segment: &Segment, from: u64) -> Result<Walker, LogError> {
        let (pos, last) = segment.seek_hint(from);
        let last = last.or(segment.base.checked_sub(1));
        Walker::open(segment, pos, last).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                LogError::OffsetDeleted {
                    offset: from,
                    oldest: self.shared.start_offset(),
                }
            } else {
                LogError::Io {
                    path: segment.path.clone(),
                    source,
                }
            }
        })
    }

    /// Reads durable records `>= from` and `< end`, at most `max`.
    fn collect(&mut self, from: u64, end: u64, max: usize) -> Result<Vec<LogRecord>, LogError> {
        let mut out = Vec::new();
        let mut cursor = match self.cursor.take() {
            Some(cursor) if cursor.next_offset == from => cursor,
            _ => {
                let Some(segment) = self.segment_for(from)? else {
                    return Ok(out);
                };
                let walker = self.open_walker(&segment, from)?;
                Cursor {
                    segment,
                    walker,
                    next_offset: from,
                }
            }
        };
        // A resumed cursor may be behind a segment retention deleted since.
        self.segment_for(from)?;
        while out.len() < max {
            // The active segment grows: readers see up to its durable length.
            cursor.walker.limit = cursor.segment.durable_len();
            let step = cursor.walker.step().map_err(|source| LogError::Io {
                path: cursor.segment.path.clone(),
                source,
            })?;
            match step {
                Step::Frame { pos, frame } => {
                    cursor.segment.note_position(frame.offset, pos);
                    if frame.offset >= end {
                        // Durable but not yet published: step back and read
                        // it next time.
                        cursor.walker.pos = pos;
                        cursor.walker.last_offset = frame.offset.checked_sub(1);
                        break;
                    }
                    cursor.next_offset = frame.offset + 1;
                    if frame.offset < from {
                        continue;
                    }
                    let batch = Batch::decode(cursor.walker.payload.as_slice()).map_err(|_| {
                        LogError::Corrupt {
                            path: cursor.segment.path.clone(),
                            offset: frame.offset,
                        }
                    })?;
                    out.push(LogRecord {
                        offset: frame.offset,
                        appended_ms: frame.appended_ms,
                        batch,
                    });
                }
                Step::Damaged { from: bad, to } => {
                    self.count_damage(&cursor.segment, bad, to);
                }
                Step::DamagedTail { from: bad } => {
                    self.count_damage(&cursor.segment, bad, cursor.walker.limit);
                }
                Step::End => match self.next_segment(&cursor.segment) {
                    Some(next) => {
                        cursor.walker = self.open_walker(&next, next.base)?;
                        cursor.segment = next;
                    }
                    None => break,
                },
            }
        }
        // The next read from `cursor.next_offset` continues here.
        self.cursor = Some(cursor);
        Ok(out)
    }

    fn count_damage(&self, segment: &Segment, from: u64, to: u64) {
        self.shared
            .read_skipped_bytes
            .fetch_add(to.saturating_sub(from), Ordering::Relaxed);
        tracing::error!(
            path = %segment.path.display(),
            position = from,
            skipped_bytes = to.saturating_sub(from),
            "A reader skipped damaged bytes in the ingest log."
        );
    }
}

impl BatchSource for LogConsumer {
    fn read(&mut self, from: u64, max: usize, wait: Duration) -> Result<Vec<LogRecord>, LogError> {
        let deadline = Instant::now() + wait;
        loop {
            let end = self.shared.end_offset.load(Ordering::Acquire);
            if from < end && max > 0 {
                let records = self.collect(from, end, max)?;
                if !records.is_empty() {
                    return Ok(records);
                }
            } else {
                // Still a deleted offset is an error, also when nothing is new.
                self.segment_for(from)?;
            }
            let now = Instant::now();
            if now >= deadline || max == 0 {
                return Ok(Vec::new());
            }
            self.shared.wait_past(end.max(from), deadline - now);
            if self.shared.end_offset.load(Ordering::Acquire) <= end.max(from) {
                return Ok(Vec::new());
            }
        }
    }

    fn commit(&mut self, next_offset: u64) -> Result<(), LogError> {
        let end_offset = self.shared.end_offset.load(Ordering::Acquire);
        if next_offset < self.committed || next_offset > end_offset {
            return Err(LogError::CommitOutOfRange {
                consumer: self.name.clone(),
                next_offset,
                committed: self.committed,
                end_offset,
            });
        }
        if next_offset == self.committed {
            return Ok(());
        }
        let mut consumers = self
            .shared
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let previous = consumers.insert(self.name.clone(), next_offset);
        if let Err(err) = state::write_consumers(&self.shared.dir, &consumers) {
            match previous {
                Some(prev) => consumers.insert(self.name.clone(), prev),
                None => consumers.remove(&self.name),
            };
            return Err(err);
        }
        self.committed = next_offset;
        Ok(())
    }

    fn end_offset(&self) -> u64 {
        self.shared.end_offset.load(Ordering::Acquire)
    }
}
