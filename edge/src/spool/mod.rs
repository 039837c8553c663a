//! # The crash-safe disk spool
//!
//! Every reading the edge acknowledges to the MQTT broker is first made durable
//! here, and stays here until the cloud acknowledges the batch that carried it.
//! The spool is a synchronous, single-owner state machine plus file IO: the agent
//! owns one [`Spool`] and calls its blocking methods from a dedicated thread or
//! `spawn_blocking`. Payloads are opaque bytes; the spool only knows each record's
//! reading count, for accounting.
//!
//! ```no_run
//! use fieldpulse_edge::spool::{Lane, Spool, SpoolConfig};
//! # fn main() -> Result<(), fieldpulse_edge::spool::SpoolError> {
//! let (mut spool, recovery) = Spool::open("/var/lib/fieldpulse/spool".as_ref(), SpoolConfig::default())?;
//! println!("recovered: {recovery}");
//! spool.append(b"encoded readings", 8)?;
//! spool.sync()?; // now PUBACK the MQTT message(s)
//! if let Some(batch) = spool.cut(Lane::Live, 1000, 256 * 1024)? {
//!     // ... POST it with `spool_epoch = spool.epoch()` and Idempotency-Key
//!     // <gateway>/<batch.seq>, then on a BatchAck echoing both:
//!     spool.ack(batch.seq)?;
//! }
//! # Ok(()) }
//! ```
//!
//! Deliberately absent: compression (the forwarder compresses batches), any
//! notion of topics or readings beyond a count, threads or async.
//!
//! ## Files
//!
//! One directory per spool:
//!
//! | file | what |
//! |---|---|
//! | `00000000000000000001.seg` ... | segment files, named by a 20-digit segment id so names sort by id |
//! | `ledger.log` | batch cuts and acks, the seq counter |
//! | `ledger.log.tmp` | a ledger compaction in progress (deleted on open) |
//! | `spool.epoch` | the spool epoch (32 bytes; see "Spool epoch" below) |
//! | `spool.epoch.tmp` | an epoch being written (deleted on open) |
//! | `spool.lock` | empty; an advisory lock (flock) held while a spool is open, so a second agent on the same directory gets [`SpoolError::Locked`]; the kernel releases it when the process dies |
//! | anything else | foreign: reported, never touched |
//!
//! ### Format versions
//!
//! - **v1**: segment files and the ledger.
//! - **v2** (current): v1 plus `spool.epoch`. Segment and ledger layouts are
//!   unchanged (their version fields stay 1), so nothing is rewritten on upgrade:
//!   opening a v1 spool creates its epoch file (a new epoch; pending batches keep
//!   their seqs and are re-sent under it, which can duplicate a batch the cloud
//!   had committed under epoch 0 but never lose one). An older agent opening a v2
//!   spool reports `spool.epoch` as foreign and sends epoch 0 again; its seqs
//!   continue above every seq used before, so none is reused in epoch 0.
//!
//! ### Segment file
//!
//! A 48-byte header, then record frames back to back. All integers little endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `FPSPOOL\0` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | reserved, 0 |
//! | 16 | 8 | segment id |
//! | 24 | 8 | id of the first record written to this segment |
//! | 32 | 8 | seq hint: the next batch seq when the segment was created |
//! | 40 | 4 | CRC-32 (IEEE, `crc32fast`) of bytes 0..40 |
//! | 44 | 4 | reserved, 0 |
//!
//! ### Record frame
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | sync marker `FA 5E C0 DE` |
//! | 4 | 4 | payload length `n` |
//! | 8 | 8 | record id |
//! | 16 | 4 | reading count |
//! | 20 | 4 | CRC-32 of bytes 4..20 and the payload |
//! | 24 | n | payload |
//!
//! ### Ledger
//!
//! The same frames, where the id field numbers the entry within the file and the
//! reading-count field holds the entry kind: a *snapshot* (next seq, next record
//! id, acked id ranges, pending cuts) always first, then *cut* (seq, lane, id
//! ranges) and *ack* (seq) entries. A cut of ids that a pending batch holds takes
//! them over: that is how [`Spool::split`] moves half of a batch to a new seq in one
//! fsynced entry. Once the log outgrows `max_bytes / 32`
//! (clamped to 4..64 KiB) and twice its snapshot it is compacted: a new snapshot is written to `ledger.log.tmp`,
//! fsynced, renamed over `ledger.log`, and the directory fsynced (entry bodies
//! are documented in `ledger.rs`).
//!
//! ### Epoch file
//!
//! 32 bytes: magic `FPEPOCH\0` (8), version `u32` (1), reserved `u32`, the epoch
//! `u64` (never 0), CRC-32 of bytes 0..24 `u32`, reserved `u32`.
//!
//! ## Spool epoch
//!
//! Seqs are unique within one spool directory, not per gateway: a wiped or
//! replaced directory (re-imaged gateway, new SD card, deleted by hand) starts at
//! seq 1 again. So every spool has an *epoch*, a random non-zero `u64`
//! ([`Spool::epoch`]), sent in every batch; the cloud deduplicates by
//! `(gateway, epoch, seq)` and echoes the epoch in its ack. Open creates a new
//! epoch when the old one cannot be trusted to cover the seqs the spool will hand
//! out ([`NewEpochReason`] in the [`RecoveryReport`]):
//!
//! - a new spool (no epoch file, ledger or segment);
//! - an existing spool without an epoch file (format v1, or the file deleted);
//! - an unreadable epoch file (damaged, or a version this build cannot read);
//! - a lost ledger (missing, or its snapshot damaged): the seq counter may then
//!   restart below seqs already used, so the old epoch is retired with it.
//!
//! The last two are damage and make the report unclean. A new epoch costs at most
//! duplicates (batches re-sent under it), never loss. It is written to
//! `spool.epoch.tmp`, fsynced, renamed over `spool.epoch` and the directory
//! fsynced before the new ledger snapshot, so it is durable before any seq is
//! handed out under it; a readable epoch file of a spool whose ledger is intact is
//! never rewritten. The file (32 bytes) is not counted in the byte cap.
//!
//! ## Invariants
//!
//! - Record ids are assigned by `append`, start at 1, increase by one per record
//!   and are never reused while a record with that id may be on disk or was ever
//!   cut (recovery starts above every id in the segments, their headers and the
//!   ledger). Within a segment ids are consecutive; across segments they increase.
//! - A segment holds at most `segment_bytes` bytes, where `segment_bytes =
//!   min(config.segment_bytes, max_bytes / 8)` (16 KiB..=64 MiB); a record's
//!   payload must fit in one segment. Only the newest segment (the active one) is ever written; recovery
//!   always starts a new active segment rather than append after data it did not
//!   write in this process.
//! - A record is in exactly one state: unsynced, uncut, pending (in one cut batch)
//!   or acked. Uncut and acked records are tracked as id range sets.
//! - Batch seqs start at 1, increase by one per cut, and are never reused: a cut is
//!   fsynced to the ledger before its seq is returned, so a seq that was handed out
//!   is always found again on recovery, which continues at `max(seq seen) + 1`. A
//!   cut entry torn by a crash was never fsynced, so `cut` never returned it and its
//!   seq may be used again. Seqs can have gaps (a batch whose records were all
//!   evicted is never acked), so the cloud must not expect them to be dense.
//! - A sealed segment is deleted as soon as none of its records is uncut or pending
//!   (all acked, or it had no valid record). The active segment is never deleted.
//!
//! ## Durability
//!
//! `append` only encodes the frame into a reused buffer (written out, without
//! fsync, every 256 KiB and when the segment fills up and is sealed); it makes no
//! syscall per record and never fsyncs, except that `DropOldest` eviction fsyncs
//! the directory. `sync` writes the buffer, `fdatasync`s every segment sealed since
//! the last sync and the active one and, if a segment was created or deleted since,
//! fsyncs the directory. Only then are the records committed (eligible for `cut`).
//! After `sync` returns `Ok`, every record appended before it survives power loss;
//! this is when the agent acknowledges the MQTT messages. `cut` and `ack` append
//! to the ledger and fsync it before returning. A segment is only deleted after
//! the ack that finished it is durable.
//!
//! Records written out but not yet synced when the process dies may survive (the
//! page cache outlives a killed process); they are recovered like any other
//! record. The broker will also redeliver their unacknowledged messages, so such
//! readings can be delivered twice: the spool is at-least-once for them.
//!
//! After any write error the spool is *poisoned*: memory and disk may disagree
//! (a partial write, an fsync that failed and left the page cache in an unknown
//! state), so every further call returns [`SpoolError::Poisoned`] and the agent
//! must reopen the spool, which runs recovery. One exception: when `append` or
//! `sync` fails because the filesystem is full ([`SpoolError::is_no_space`]), the
//! spool rolls back to its last successful sync instead (the active segment is
//! truncated to its synced length, segments created since are removed, memory is
//! restored; the truncation fsyncs) and stays usable: the records appended since
//! were never synced, so never acknowledged, and the caller may append them again
//! later. A ledger compaction that finds no space is postponed (the current ledger
//! stays in use). Other ledger writes still poison.
//!
//! ## Recovery (on open)
//!
//! Opening never fails because of bad data, never needs a human, and never
//! crash-loops; only IO errors (such as permission denied, naming the path) fail.
//! Everything below is counted in the [`RecoveryReport`] and logged.
//!
//! - **Torn tail** (bytes after the last valid frame of a segment, from a write cut
//!   short by a crash, or zeros from a file extended without its data): skipped and
//!   the file truncated to its last valid frame. Those records were never synced.
//! - **Corrupt record in the middle** (bad checksum, impossible length): the scanner
//!   resynchronises by searching for the next sync marker that starts a frame with a
//!   valid checksum and a larger id, so later records are kept. Lost records are
//!   counted from the gap in the consecutive ids. (A payload that itself embeds a
//!   complete, checksum-valid frame with a larger id could be taken for one while
//!   resynchronising; payloads are the agent's own encoding, so this is accepted.)
//! - **Damaged segment header**: the frames are scanned anyway (they carry their
//!   own ids and checksums). A segment with a newer format version is left
//!   untouched and reported.
//! - **Missing segment** (deleted by hand): its records are gone; pending batches
//!   shrink to the records that remain, and a batch with none left is dropped (its
//!   seq is never reused).
//! - **Ledger**: replayed up to damage; a damaged entry in the middle is skipped
//!   and later entries kept. A lost cut only makes its records uncut again (they are
//!   re-sent under a new seq: duplicates, never loss); a lost ack only makes a batch
//!   pending again (re-sent under the same seq, which the cloud deduplicates). If the
//!   snapshot is lost or the ledger is missing while segments exist, the seq counter
//!   jumps past every seq that can have been used (the newest segment header's seq
//!   hint plus the next record id) so that no seq is ever reused.
//! - **Epoch**: kept, or replaced by a new one as described under "Spool epoch"
//!   (before anything else is written).
//! - A fresh ledger snapshot is written on every open, and segments with no record
//!   left to send are deleted.
//!
//! ## Byte cap and policies
//!
//! The cap (at least 256 KiB; gateways should give it several MiB) counts segment
//! files (including buffered bytes), the ledger, and the bytes the owner keeps
//! outside the spool on its behalf ([`Spool::set_external_bytes`]: the agent's
//! dead-letter directory). The ledger is counted at the
//! size it may reach before its next compaction (`max_bytes / 32`, clamped to
//! 4..64 KiB), so cuts and acks between appends never push the spool over the
//! cap. When an append would exceed it:
//!
//! - [`FullPolicy::DropOldest`] deletes the oldest whole segment(s). Every record in
//!   them that was not acked is counted as dropped (records, readings, payload
//!   bytes) in the returned [`Dropped`] and in [`SpoolStats`]. Pending batches that
//!   referenced evicted records shrink to the records that remain; a batch left
//!   empty disappears from `pending()` and a later `ack` of it is a no-op. A
//!   shrunken batch re-sent under its seq carries fewer readings than its first
//!   attempt; the cloud keeps whichever attempt it committed first.
//! - [`FullPolicy::Backpressure`] refuses the append with [`SpoolError::Full`] and
//!   drops nothing (space comes back when acks finish whole segments); the agent
//!   stops acknowledging the broker, which then holds the
//!   messages up to its own limits (for mosquitto, `max_queued_messages` and
//!   `max_queued_bytes` per client; the operator must size them for the outage the
//!   gateway must ride out, or the broker drops messages silently).
//!
//! Evicting a segment fsyncs the directory at once: a deleted segment that came
//! back after a crash would resurrect records whose ack was already forgotten. A
//! power cut in the middle of an evicting `append` can delete the oldest
//! segment(s) without the [`Dropped`] report reaching the caller; only the oldest
//! records are ever lost that way, and never a record the cap did not require.
//!
//! ## Lanes
//!
//! [`Lane::Live`] cuts the newest synced, uncut records, [`Lane::Backfill`] the
//! oldest. After an outage, live data goes first while the backlog drains.
//! [`Spool::cut_from`] decouples the two: a live lane that keeps up cuts the
//! oldest records (so every stream stays in order) while still recording `Live`.
//! Uncut records are tracked as a set of id ranges, so taking from either end is
//! cheap however large the backlog.
//!
//! [`Spool::tail`] reads the newest records still on disk in any state, for the
//! agent to rebuild its filter of recently spooled MQTT messages after a restart.
//!
//! ## Tests
//!
//! `tests.rs` covers the contract and damaged files (a torn tail at every byte of
//! the last record, a flipped bit and a bad length in the middle, a zero-filled
//! tail, empty and garbage segment files, stray files, a missing ledger).
//! `model_tests.rs` is a proptest of random append / sync / cut / ack / restart /
//! truncate-a-segment-anywhere sequences against a model that predicts records,
//! batches, seqs and segment files exactly. `damage_tests.rs` applies random bit
//! flips, zeroed, inserted and deleted bytes and truncations to every file and
//! checks that open succeeds, no wrong payload is ever returned, and a second open
//! has nothing left to repair. `power_cut_tests.rs` runs the spool on
//! `sim_fs.rs`, a file layer that discards every byte and directory change not yet
//! fsynced at a simulated power cut (sometimes keeping a torn prefix), and checks
//! the durability, ack and seq invariants over thousands of crash points, and
//! that the epoch an open returns is durable and never changes afterwards (also
//! with the power cut in the middle of an open).

mod config;
mod epoch;
mod error;
pub mod fs;
mod inspect;
mod ledger;
mod ranges;
mod record;
mod recovery;
mod report;
mod segment;
mod store;

#[cfg(test)]
mod damage_tests;
/// A switchable full or failing disk: for tests (the spool's and the agent's); the product never
/// uses it.
#[doc(hidden)]
pub mod full_fs;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod no_space_tests;
#[cfg(test)]
mod power_cut_tests;
/// The power-cut simulator: for tests (also the agent-level power-cut test in `edge/tests`); the
/// product never uses it.
#[doc(hidden)]
pub mod sim_fs;
#[cfg(test)]
mod tests;

pub use self::{
    config::{
        CutEnd, FullPolicy, Lane, SpoolConfig, DEFAULT_MAX_BYTES, DEFAULT_SEGMENT_BYTES,
        MAX_SEGMENT_BYTES, MIN_MAX_BYTES, MIN_SEGMENT_BYTES,
    },
    error::SpoolError,
    fs::{FileLayer, StdFileLayer},
    inspect::{inspect, InspectReport, LedgerInspect, PendingInspect, SegmentInspect},
    report::{
        AckReport, Appended, CutBatch, Dropped, NewEpochReason, RecoveryReport, SendCheck,
        SplitOutcome, SpoolRecord, SpoolStats,
    },
    store::Spool,
};
