//! The single writer thread: group commit, segment rolls, and rollback of a
//! failed append.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::frame::{self, HEADER_BYTES, MAX_PAYLOAD_BYTES};
use super::segment::{self, Segment};
use super::state::{self, now_ms};
use super::{EpochKey, LogError, Shared};
use crate::ingest::SeqSet;

/// How segment files are written: the real filesystem, or a fault-injecting
/// layer in tests.
pub(crate) trait FileLayer: Send + Sync + 'static {
    /// Opens an existing segment for writing (without truncating it).
    fn open(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
    /// Creates a new, empty segment (truncating a leftover one).
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
}

/// The writes the writer makes to a segment.
pub(crate) trait SegmentFile: Send {
    /// Writes all of `buf` at `pos`.
    fn write_all_at(&mut self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// `fdatasync`.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Truncates (or extends) the file to `len`.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// The real filesystem.
pub(crate) struct StdFileLayer;

impl FileLayer for StdFileLayer {
    fn open(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        Ok(Box::new(OpenOptions::new().write(true).open(path)?))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(file))
    }
}

impl SegmentFile for std::fs::File {
    fn write_all_at(&mut self, buf: &[u8], pos: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, pos)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        std::fs::File::sync_data(self)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        std::fs::File::set_len(self, len)
    }
}

/// One commit waiting for the writer.
struct Request {
    key: EpochKey,
    seq: u64,
    payload: Bytes,
    reply: oneshot::Sender<Result<u64, LogError>>,
}

/// The handle that feeds the writer thread.
pub(crate) struct Handle {
    tx: mpsc::Sender<Request>,
    thread: JoinHandle<()>,
}

impl Handle {
    /// Opens the tail segment for writing and starts the thread.
    pub fn start(
        shared: Arc<Shared>,
        layer: Arc<dyn FileLayer>,
        dedupe: HashMap<EpochKey, SeqSet>,
    ) -> Result<Self, LogError> {
        let active = {
            let segments = shared.segments.read().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                segments
                    .values()
                    .next_back()
                    .expect("open keeps one segment"),
            )
        };
        let file = layer
            .open(&active.path)
            .map_err(Shared::io_err(&active.path))?;
        let writer = Writer {
            active_len: active.durable_len(),
            next_offset: shared.end_offset.load(Ordering::Acquire),
            shared,
            layer,
            file,
            active,
            dirty: false,
            dedupe,
            buf: Vec::new(),
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ingest-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| LogError::Io {
                path: "ingest-log-writer thread".into(),
                source,
            })?;
        Ok(Self { tx, thread })
    }

    /// Queues one commit; the receiver yields its offset once durable.
    pub fn submit(
        &self,
        key: EpochKey,
        seq: u64,
        payload: Bytes,
    ) -> Result<oneshot::Receiver<Result<u64, LogError>>, LogError> {
        if payload.len() > MAX_PAYLOAD_BYTES as usize {
            return Err(LogError::TooLarge { len: payload.len() });
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                key,
                seq,
                payload,
                reply,
            })
            .map_err(|_| LogError::Closed)?;
        Ok(rx)
    }

    /// Stops the thread after it has finished the queued commits.
    pub fn stop(self) {
        drop(self.tx);
        if self.thread.join().is_err() {
            tracing::error!("The ingest log writer thread panicked.");
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    layer: Arc<dyn FileLayer>,
    file: Box<dyn SegmentFile>,
    active: Arc<Segment>,
    /// Durable length of the active segment.
    active_len: u64,
    /// True when bytes past `active_len` may be on disk (a failed rollback).
    dirty: bool,
    next_offset: u64,
    /// Seqs of every durable record, for the snapshot written at each roll.
    dedupe: HashMap<EpochKey, SeqSet>,
    buf: Vec<u8>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        let max_group = self.shared.config.max_group_bytes.max(1);
        while let Ok(first) = rx.recv() {
            let mut group_bytes = first.payload.len();
            let mut group = vec![first];
            // Everything queued while the previous group synced joins this one.
            while group_bytes < max_group {
                match rx.try_recv() {
                    Ok(req) => {
                        group_bytes += req.payload.len();
                        group.push(req);
                    }
                    Err(_) => break,
                }
            }
            self.write_group(group);
        }
    }

    fn write_group(&mut self, group: Vec<Request>) {
        let segment_bytes = self.shared.config.segment_bytes;
        let mut pending: Vec<Request> = Vec::with_capacity(group.len());
        let mut requests = group.into_iter();
        let now = now_ms();
        while let Some(req) = requests.next() {
            let frame_len = HEADER_BYTES + req.payload.len() as u64;
            let used = self.active_len + self.buf.len() as u64;
            if used > 0 && used + frame_len > segment_bytes {
                let res = self.flush(&mut pending, now).and_then(|()| self.roll());
                if let Err(err) = res {
                    let failed = std::iter::once(req).chain(requests);
                    self.fail(failed, &err);
                    return;
                }
            }
            let offset = self.next_offset + pending.len() as u64;
            frame::encode(&mut self.buf, offset, now, &req.payload);
            pending.push(req);
        }
        // `flush` already answered the requests of a failed group.
        let _ = self.flush(&mut pending, now);
    }

    /// Writes the buffered frames and syncs; answers their requests.
    fn flush(&mut self, pending: &mut Vec<Request>, appended_ms: i64) -> Result<(), LogError> {
        if pending.is_empty() {
            return Ok(());
        }
        let res = self.write_and_sync();
        let path = self.active.path.clone();
        if let Err(source) = res {
            self.buf.clear();
            self.rollback();
            let err = LogError::Io { path, source };
            self.fail(pending.drain(..), &err);
            return Err(err);
        }
        let first_offset = self.next_offset;
        let mut pos = self.active_len;
        for (idx, req) in pending.iter().enumerate() {
            self.active.note_position(first_offset + idx as u64, pos);
            pos += HEADER_BYTES + req.payload.len() as u64;
        }
        self.active_len += self.buf.len() as u64;
        self.buf.clear();
        self.next_offset += pending.len() as u64;
        self.active
            .durable_len
            .store(self.active_len, Ordering::Release);
        self.active.newest_ms.store(appended_ms, Ordering::Relaxed);
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.shared
            .batches_synced
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        self.shared.publish_end(self.next_offset);
        for (idx, req) in pending.drain(..).enumerate() {
            self.dedupe.entry(req.key).or_default().insert(req.seq);
            // A caller that went away no longer needs the answer.
            let _ = req.reply.send(Ok(first_offset + idx as u64));
        }
        Ok(())
    }

    fn write_and_sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.set_len(self.active_len)?;
            self.dirty = false;
        }
        self.file.write_all_at(&self.buf, self.active_len)?;
        self.file.sync_data()
    }

    /// Cuts the active segment back to its durable length after a failed
    /// write, so a later append does not land behind half a frame.
    fn rollback(&mut self) {
        self.shared.append_errors.fetch_add(1, Ordering::Relaxed);
        match self
            .file
            .set_len(self.active_len)
            .and_then(|()| self.file.sync_data())
        {
            Ok(()) => self.dirty = false,
            Err(err) => {
                // The next append retries the truncation before writing.
                self.dirty = true;
                tracing::error!(
                    path = %self.active.path.display(),
                    error = %err,
                    "Could not cut a failed append off the ingest log; retrying on the next append."
                );
            }
        }
    }

    fn fail(&self, requests: impl IntoIterator<Item = Request>, err: &LogError) {
        tracing::warn!(path = %self.active.path.display(), error = %error_chain(err), "Ingest log append failed; the gateways will retry.");
        for req in requests {
            let _ = req.reply.send(Err(LogError::Io {
                path: self.active.path.clone(),
                source: io::Error::other(error_chain(err)),
            }));
        }
    }

    /// Starts a new segment at `next_offset`. The dedupe snapshot is written
    /// first, covering every record of the segments before it.
    fn roll(&mut self) -> Result<(), LogError> {
        let dir = self.shared.dir.clone();
        state::write_dedupe_snapshot(&dir, self.next_offset, &self.dedupe)?;
        let path = dir.join(segment::file_name(self.next_offset));
        let file = self.layer.create(&path).map_err(Shared::io_err(&path))?;
        state::sync_dir(&dir)?;
        let seg = Arc::new(Segment::new(self.next_offset, path, 0, now_ms()));
        self.shared
            .segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seg.base, Arc::clone(&seg));
        self.file = file;
        self.active = seg;
        self.active_len = 0;
        self.dirty = false;
        Ok(())
    }
}

/// `err` with its sources, for messages that outlive it.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
