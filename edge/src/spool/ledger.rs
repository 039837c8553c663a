//! The ledger: a CRC-framed, append-only log of batch cuts and acks, compacted
//! by writing a snapshot to a new file and renaming it into place.
//!
//! Entries use the record framing of [`super::record`]: the frame's id is the
//! entry's number in the file (1, 2, ...), the frame's reading count holds the
//! entry kind, and the payload holds the entry body (little endian):
//!
//! | kind | body |
//! |---|---|
//! | 1 snapshot | next_seq `u64`, next_record_id `u64`, acked ranges, n_cuts `u32`, cuts |
//! | 2 cut | seq `u64`, lane `u8` (0 live, 1 backfill), ranges |
//! | 3 ack | seq `u64` |
//!
//! where "ranges" is n `u32` followed by n pairs (start `u64`, end `u64`) of
//! half-open record id ranges.

use std::{
    collections::BTreeMap,
    io,
    ops::Range,
    path::{Path, PathBuf},
};

use super::{
    fs::{AppendFile, FileLayer},
    ranges::RangeSet,
    record::{self, ScanDamage},
    Lane, SpoolError,
};

/// File name of the ledger.
pub const LEDGER_FILE: &str = "ledger.log";
/// File name a compaction writes before renaming it over [`LEDGER_FILE`].
pub const LEDGER_TMP_FILE: &str = "ledger.log.tmp";
/// The ledger is compacted once it exceeds `max_bytes / 32`, clamped to this
/// range, and twice its last snapshot.
const COMPACT_BYTES: std::ops::RangeInclusive<u64> = 4 * 1024..=64 * 1024;

const KIND_SNAPSHOT: u32 = 1;
const KIND_CUT: u32 = 2;
const KIND_ACK: u32 = 3;

/// A batch cut as persisted: its seq, lane and record id ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutEntry {
    /// Batch seq.
    pub seq: u64,
    /// Lane it was cut for.
    pub lane: Lane,
    /// Record ids of the batch, ascending, disjoint.
    pub ranges: Vec<Range<u64>>,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The complete state at compaction time.
    Snapshot(LedgerState),
    /// A batch was cut.
    Cut(CutEntry),
    /// A batch was acknowledged by the cloud.
    Ack(u64),
}

/// The state the ledger describes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerState {
    /// Lower bound for the next batch seq.
    pub next_seq: u64,
    /// Lower bound for the next record id.
    pub next_record_id: u64,
    /// Record ids acked whose segment may still exist.
    pub acked: RangeSet,
    /// Batches cut and not acked, by seq.
    pub pending: BTreeMap<u64, CutEntry>,
}

/// What loading the ledger found.
#[derive(Debug, Clone, Default)]
pub struct LoadedLedger {
    /// State after replaying every valid entry.
    pub state: LedgerState,
    /// Largest seq in any entry (0 if none).
    pub max_seq_seen: u64,
    /// Largest record id referenced by any cut (0 if none).
    pub max_record_id_seen: u64,
    /// The ledger file did not exist.
    pub missing: bool,
    /// No snapshot entry was found (the head of the file is lost).
    pub snapshot_missing: bool,
    /// Valid entries replayed.
    pub entries: u64,
    /// Entries with a valid checksum but a body we could not decode.
    pub bad_entries: u64,
    /// Damage found by the frame scanner.
    pub damage: ScanDamage,
}

/// The open ledger file.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: Box<dyn AppendFile>,
    len: u64,
    next_entry: u64,
    snapshot_len: u64,
    compact_bytes: u64,
    buf: Vec<u8>,
}

impl Ledger {
    /// Reads and replays the ledger in `dir`. Never fails on bad data, only on IO.
    pub fn load(fs: &dyn FileLayer, dir: &Path) -> Result<LoadedLedger, SpoolError> {
        let path = dir.join(LEDGER_FILE);
        let bytes = match fs.read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Ok(LoadedLedger {
                    missing: true,
                    snapshot_missing: true,
                    state: LedgerState {
                        next_seq: 1,
                        next_record_id: 1,
                        ..LedgerState::default()
                    },
                    ..LoadedLedger::default()
                })
            }
            Err(source) => return Err(SpoolError::io("reading ledger", &path, source)),
        };
        Ok(replay(&bytes))
    }

    /// Writes `state` as a fresh ledger (new file, fsync, rename, fsync dir) and
    /// opens it for appending. `max_bytes` is the spool's cap, which sizes the
    /// compaction threshold.
    pub fn create(
        fs: &dyn FileLayer,
        dir: &Path,
        state: &LedgerState,
        max_bytes: u64,
    ) -> Result<Ledger, SpoolError> {
        let path = dir.join(LEDGER_FILE);
        let tmp = dir.join(LEDGER_TMP_FILE);
        let mut buf = Vec::new();
        encode_entry(&mut buf, 1, &Entry::Snapshot(state.clone()));
        let mut file = fs
            .create_truncate(&tmp)
            .map_err(|source| SpoolError::io("creating ledger", &tmp, source))?;
        file.write_all(&buf)
            .and_then(|()| file.sync_data())
            .map_err(|source| SpoolError::io("writing ledger", &tmp, source))?;
        drop(file);
        fs.rename(&tmp, &path)
            .map_err(|source| SpoolError::io("renaming ledger", &tmp, source))?;
        fs.sync_dir(dir)
            .map_err(|source| SpoolError::io("syncing directory", dir, source))?;
        let file = fs
            .open_append(&path)
            .map_err(|source| SpoolError::io("opening ledger", &path, source))?;
        let len = buf.len() as u64;
        buf.clear();
        Ok(Ledger {
            path,
            file,
            len,
            next_entry: 2,
            snapshot_len: len,
            compact_bytes: (max_bytes / 32).clamp(*COMPACT_BYTES.start(), *COMPACT_BYTES.end()),
            buf,
        })
    }

    /// Appends one entry and fsyncs it.
    pub fn append(&mut self, entry: &Entry) -> Result<(), SpoolError> {
        self.buf.clear();
        encode_entry(&mut self.buf, self.next_entry, entry);
        self.file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| SpoolError::io("writing ledger", &self.path, source))?;
        self.len += self.buf.len() as u64;
        self.next_entry += 1;
        Ok(())
    }

    /// True when the log has grown enough that [`Ledger::create`] should compact it.
    pub fn wants_compaction(&self) -> bool {
        self.len > self.compact_bytes && self.len > 2 * self.snapshot_len
    }

    /// Bytes the byte cap sets aside for the ledger: its size, or the size it may
    /// grow to before the next compaction, whichever is larger.
    pub fn reserved(&self) -> u64 {
        self.len.max(self.compact_bytes)
    }

    /// Bytes of the ledger file.
    pub fn len(&self) -> u64 {
        self.len
    }
}

/// Replays ledger bytes into a state.
pub fn replay(bytes: &[u8]) -> LoadedLedger {
    let mut loaded = LoadedLedger {
        snapshot_missing: true,
        state: LedgerState {
            next_seq: 1,
            next_record_id: 1,
            ..LedgerState::default()
        },
        ..LoadedLedger::default()
    };
    let damage = record::scan(bytes, 0, &mut |frame| {
        let Some(entry) = decode_entry(frame.n_readings, frame.payload) else {
            loaded.bad_entries += 1;
            return;
        };
        loaded.entries += 1;
        apply(&mut loaded, entry);
    });
    loaded.damage = damage;
    loaded
}

fn apply(loaded: &mut LoadedLedger, entry: Entry) {
    let state = &mut loaded.state;
    match entry {
        Entry::Snapshot(snapshot) => {
            loaded.snapshot_missing = false;
            loaded.max_seq_seen = loaded.max_seq_seen.max(snapshot.next_seq.saturating_sub(1));
            loaded.max_record_id_seen = loaded
                .max_record_id_seen
                .max(snapshot.next_record_id.saturating_sub(1));
            *state = snapshot;
            for cut in state.pending.values() {
                if let Some(last) = cut.ranges.last() {
                    loaded.max_record_id_seen = loaded.max_record_id_seen.max(last.end - 1);
                }
            }
        }
        Entry::Cut(cut) => {
            loaded.max_seq_seen = loaded.max_seq_seen.max(cut.seq);
            if let Some(last) = cut.ranges.last() {
                loaded.max_record_id_seen = loaded.max_record_id_seen.max(last.end - 1);
            }
            // A record belongs to at most one batch: a later cut of the same ids (only
            // possible after the ledger lost entries) takes them over.
            for range in &cut.ranges {
                for other in state.pending.values_mut() {
                    other.ranges = subtract(&other.ranges, range);
                }
            }
            state.pending.retain(|_, other| !other.ranges.is_empty());
            state.pending.insert(cut.seq, cut);
        }
        Entry::Ack(seq) => {
            loaded.max_seq_seen = loaded.max_seq_seen.max(seq);
            if let Some(cut) = state.pending.remove(&seq) {
                for range in cut.ranges {
                    state.acked.insert(range);
                }
            }
        }
    }
}

/// `ranges` without the ids of `cut`.
pub(super) fn subtract(ranges: &[Range<u64>], cut: &Range<u64>) -> Vec<Range<u64>> {
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        if range.end <= cut.start || range.start >= cut.end {
            out.push(range.clone());
            continue;
        }
        if range.start < cut.start {
            out.push(range.start..cut.start);
        }
        if range.end > cut.end {
            out.push(cut.end..range.end);
        }
    }
    out
}

fn encode_entry(out: &mut Vec<u8>, entry_no: u64, entry: &Entry) {
    let mut body = Vec::new();
    let kind = match entry {
        Entry::Snapshot(state) => {
            body.extend_from_slice(&state.next_seq.to_le_bytes());
            body.extend_from_slice(&state.next_record_id.to_le_bytes());
            let acked: Vec<Range<u64>> = state.acked.iter().collect();
            encode_ranges(&mut body, &acked);
            body.extend_from_slice(&(state.pending.len() as u32).to_le_bytes());
            for cut in state.pending.values() {
                encode_cut(&mut body, cut);
            }
            KIND_SNAPSHOT
        }
        Entry::Cut(cut) => {
            encode_cut(&mut body, cut);
            KIND_CUT
        }
        Entry::Ack(seq) => {
            body.extend_from_slice(&seq.to_le_bytes());
            KIND_ACK
        }
    };
    record::encode(out, entry_no, kind, &body);
}

fn encode_cut(out: &mut Vec<u8>, cut: &CutEntry) {
    out.extend_from_slice(&cut.seq.to_le_bytes());
    out.push(match cut.lane {
        Lane::Live => 0,
        Lane::Backfill => 1,
    });
    encode_ranges(out, &cut.ranges);
}

fn encode_ranges(out: &mut Vec<u8>, ranges: &[Range<u64>]) {
    out.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
    for range in ranges {
        out.extend_from_slice(&range.start.to_le_bytes());
        out.extend_from_slice(&range.end.to_le_bytes());
    }
}

/// A cursor over an entry body; every read is bounds-checked.
struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_first_chunk::<8>()?;
        self.0 = rest;
        Some(u64::from_le_bytes(*head))
    }

    fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_le_bytes(*head))
    }

    fn u8(&mut self) -> Option<u8> {
        let (&head, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(head)
    }

    fn ranges(&mut self) -> Option<Vec<Range<u64>>> {
        let n = self.u32()? as usize;
        // Each range takes 16 bytes: reject counts the body cannot hold before allocating.
        if n > self.0.len() / 16 {
            return None;
        }
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            let (start, end) = (self.u64()?, self.u64()?);
            if start >= end || ranges.last().is_some_and(|r: &Range<u64>| r.end > start) {
                return None;
            }
            ranges.push(start..end);
        }
        Some(ranges)
    }

    fn cut(&mut self) -> Option<CutEntry> {
        let seq = self.u64()?;
        let lane = match self.u8()? {
            0 => Lane::Live,
            1 => Lane::Backfill,
            _ => return None,
        };
        let ranges = self.ranges()?;
        Some(CutEntry { seq, lane, ranges })
    }
}

fn decode_entry(kind: u32, body: &[u8]) -> Option<Entry> {
    let mut body = Body(body);
    let entry = match kind {
        KIND_SNAPSHOT => {
            let next_seq = body.u64()?;
            let next_record_id = body.u64()?;
            let mut acked = RangeSet::default();
            for range in body.ranges()? {
                acked.insert(range);
            }
            let n_cuts = body.u32()?;
            let mut pending = BTreeMap::new();
            for _ in 0..n_cuts {
                let cut = body.cut()?;
                pending.insert(cut.seq, cut);
            }
            Entry::Snapshot(LedgerState {
                next_seq,
                next_record_id,
                acked,
                pending,
            })
        }
        KIND_CUT => Entry::Cut(body.cut()?),
        KIND_ACK => Entry::Ack(body.u64()?),
        _ => return None,
    };
    body.0.is_empty().then_some(entry)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::single_range_in_vec_init,
        reason = "id range lists with one range"
    )]

    use super::*;

    fn sample_state() -> LedgerState {
        let mut acked = RangeSet::default();
        acked.insert(3..9);
        let mut pending = BTreeMap::new();
        pending.insert(
            7,
            CutEntry {
                seq: 7,
                lane: Lane::Backfill,
                ranges: vec![10..12, 14..15],
            },
        );
        LedgerState {
            next_seq: 8,
            next_record_id: 20,
            acked,
            pending,
        }
    }

    #[test]
    fn ledger_entries_round_trip_through_their_encoding() {
        let mut bytes = Vec::new();
        encode_entry(&mut bytes, 1, &Entry::Snapshot(sample_state()));
        let cut = CutEntry {
            seq: 8,
            lane: Lane::Live,
            ranges: vec![18..20],
        };
        encode_entry(&mut bytes, 2, &Entry::Cut(cut.clone()));
        encode_entry(&mut bytes, 3, &Entry::Ack(7));
        let loaded = replay(&bytes);
        assert_eq!(loaded.entries, 3);
        assert!(!loaded.snapshot_missing);
        assert_eq!(loaded.max_seq_seen, 8);
        assert_eq!(loaded.max_record_id_seen, 19);
        let acked: Vec<_> = loaded.state.acked.iter().collect();
        assert_eq!(acked, vec![3..9, 10..12, 14..15]);
        assert_eq!(
            loaded.state.pending.values().collect::<Vec<_>>(),
            vec![&cut]
        );
    }

    #[test]
    fn ledger_replay_ignores_a_torn_last_entry() {
        let mut bytes = Vec::new();
        encode_entry(&mut bytes, 1, &Entry::Snapshot(sample_state()));
        let good_len = bytes.len();
        encode_entry(&mut bytes, 2, &Entry::Ack(7));
        for cut_at in good_len..bytes.len() {
            let loaded = replay(&bytes[..cut_at]);
            assert_eq!(loaded.entries, 1, "cut at {cut_at}");
            assert_eq!(loaded.damage.tail_bytes, (cut_at - good_len) as u64);
            assert!(loaded.state.pending.contains_key(&7));
        }
    }

    #[test]
    fn ledger_replay_skips_a_corrupt_entry_and_keeps_later_ones() {
        let mut bytes = Vec::new();
        encode_entry(&mut bytes, 1, &Entry::Snapshot(sample_state()));
        let ack_at = bytes.len();
        encode_entry(&mut bytes, 2, &Entry::Ack(7));
        let cut = CutEntry {
            seq: 9,
            lane: Lane::Live,
            ranges: vec![19..20],
        };
        encode_entry(&mut bytes, 3, &Entry::Cut(cut));
        bytes[ack_at + record::FRAME_HEADER_LEN + 2] ^= 0x40;
        let loaded = replay(&bytes);
        assert_eq!(loaded.entries, 2);
        assert_eq!(loaded.damage.corrupt_regions, 1);
        assert_eq!(loaded.max_seq_seen, 9);
        assert!(loaded.state.pending.contains_key(&7));
        assert!(loaded.state.pending.contains_key(&9));
    }
}
