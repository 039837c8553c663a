//! Model-based property test: random sequences of append, sync, cut, ack, restart
//! and "truncate a segment file anywhere" run against the spool (on [`SimFs`]) and
//! against a small in-memory model that predicts exactly which records, batches,
//! seqs and segment files exist after each step.
//!
//! The model mirrors the documented layout rules: a 48-byte segment header,
//! 24-byte frame headers, a roll (which syncs) when the next frame would overflow
//! the segment, a new segment at every open, deletion of sealed segments with no
//! unacked record. Unlike the power-cut test it predicts outcomes exactly.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::Arc,
};

use proptest::prelude::*;

use super::{
    record::frame_len, segment, sim_fs::SimFs, FileLayer, FullPolicy, Lane, Spool, SpoolConfig,
    SpoolRecord,
};

const SEGMENT_BYTES: u64 = 16 * 1024;
const DIR: &str = "/spool";

#[derive(Debug, Clone)]
enum Op {
    Append {
        len: usize,
        n_readings: u32,
    },
    Sync,
    Cut {
        live: bool,
        max_records: usize,
        max_bytes: usize,
    },
    Ack {
        pick: usize,
    },
    Restart,
    /// Restart after truncating the `pick`-th segment file at `frac_permille` of its length.
    Truncate {
        pick: usize,
        frac_permille: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3000, 1u32..10).prop_map(|(len, n_readings)| Op::Append { len, n_readings }),
        2 => Just(Op::Sync),
        3 => (any::<bool>(), 1usize..12, 1usize..12_000)
            .prop_map(|(live, max_records, max_bytes)| Op::Cut { live, max_records, max_bytes }),
        2 => (0usize..8).prop_map(|pick| Op::Ack { pick }),
        1 => Just(Op::Restart),
        1 => (0usize..8, 0u64..1000).prop_map(|(pick, frac_permille)| Op::Truncate { pick, frac_permille }),
    ]
}

#[derive(Debug, Clone)]
struct ModelRecord {
    payload: Vec<u8>,
    n_readings: u32,
    segment_id: u64,
    /// Offset just past the record's frame in its segment file.
    end: u64,
}

#[derive(Debug, Clone)]
struct ModelSegment {
    len: u64,
    first_id: u64,
}

#[derive(Debug, Default)]
struct Model {
    /// Unacked records on disk or buffered.
    records: BTreeMap<u64, ModelRecord>,
    /// Ids below this are synced.
    synced_below: u64,
    uncut: BTreeSet<u64>,
    pending: BTreeMap<u64, BTreeSet<u64>>,
    /// Segment files: id -> state; the last one is active.
    segments: BTreeMap<u64, ModelSegment>,
    next_id: u64,
    next_seq: u64,
    /// Lower bound for record ids after a restart (ledger snapshot, cut entries).
    id_floor: u64,
}

impl Model {
    fn new() -> Self {
        let mut model = Model {
            next_id: 1,
            next_seq: 1,
            synced_below: 1,
            id_floor: 1,
            ..Model::default()
        };
        model.open();
        model
    }

    fn active_id(&self) -> u64 {
        *self.segments.keys().next_back().expect("an active segment")
    }

    fn seg_has_unacked(&self, segment_id: u64) -> bool {
        self.records.values().any(|r| r.segment_id == segment_id)
    }

    /// What `Spool::open` does to the files: a new active segment, sealed segments
    /// with nothing unacked deleted.
    fn open(&mut self) {
        // Lost ids may be reused only above every floor the spool knows about.
        let last_on_disk = self.records.keys().next_back().map_or(0, |id| id + 1);
        let header_floor = self
            .segments
            .values()
            .map(|s| s.first_id)
            .max()
            .unwrap_or(1);
        self.next_id = last_on_disk.max(header_floor).max(self.id_floor).max(1);
        self.id_floor = self.next_id;
        self.synced_below = self.next_id;
        let new_id = self.segments.keys().next_back().map_or(1, |id| id + 1);
        let sealed: Vec<u64> = self.segments.keys().copied().collect();
        for segment_id in sealed {
            if !self.seg_has_unacked(segment_id) {
                self.segments.remove(&segment_id);
            }
        }
        self.segments.insert(
            new_id,
            ModelSegment {
                len: segment::SEGMENT_HEADER_LEN as u64,
                first_id: self.next_id,
            },
        );
    }

    fn append(&mut self, payload: Vec<u8>, n_readings: u32) -> u64 {
        let frame = frame_len(payload.len()) as u64;
        let active = self.active_id();
        let seg = &self.segments[&active];
        let has_records = seg.first_id < self.next_id;
        if has_records && seg.len + frame > SEGMENT_BYTES {
            // A roll writes the sealed segment out; the next sync fsyncs it.
            self.segments.insert(
                active + 1,
                ModelSegment {
                    len: segment::SEGMENT_HEADER_LEN as u64,
                    first_id: self.next_id,
                },
            );
        }
        let active = self.active_id();
        let seg = self.segments.get_mut(&active).expect("active");
        seg.len += frame;
        let id = self.next_id;
        self.next_id += 1;
        self.records.insert(
            id,
            ModelRecord {
                payload,
                n_readings,
                segment_id: active,
                end: seg.len,
            },
        );
        id
    }

    fn sync(&mut self) {
        for id in self.synced_below..self.next_id {
            if self.records.contains_key(&id) {
                self.uncut.insert(id);
            }
        }
        self.synced_below = self.next_id;
    }

    fn cut(&mut self, lane: Lane, max_records: usize, max_bytes: usize) -> Option<(u64, Vec<u64>)> {
        let mut ids: Vec<u64> = match lane {
            Lane::Live => self.uncut.iter().rev().take(max_records).copied().collect(),
            Lane::Backfill => self.uncut.iter().take(max_records).copied().collect(),
        };
        // `ids` runs from the lane's end: keep records while they fit (at least one).
        let mut total = 0;
        let mut keep = 0;
        for id in &ids {
            let len = self.records[id].payload.len();
            if keep > 0 && total + len > max_bytes {
                break;
            }
            total += len;
            keep += 1;
        }
        ids.truncate(keep);
        ids.sort_unstable();
        if ids.is_empty() {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        for id in &ids {
            self.uncut.remove(id);
        }
        self.id_floor = self.id_floor.max(ids[ids.len() - 1] + 1);
        self.pending.insert(seq, ids.iter().copied().collect());
        Some((seq, ids))
    }

    fn ack(&mut self, seq: u64) -> Option<(u64, u64)> {
        let ids = self.pending.remove(&seq)?;
        let mut readings = 0;
        for id in &ids {
            let rec = self.records.remove(id).expect("pending records exist");
            readings += u64::from(rec.n_readings);
        }
        let active = self.active_id();
        let done: Vec<u64> = self
            .segments
            .keys()
            .copied()
            .filter(|&s| s != active && !self.seg_has_unacked(s))
            .collect();
        for segment_id in done {
            self.segments.remove(&segment_id);
        }
        Some((ids.len() as u64, readings))
    }

    /// A restart (not a power cut): records still in the write buffer, i.e. the
    /// active segment's unsynced ones, are lost; sealed segments were written out.
    fn restart(&mut self) {
        self.lose_buffered();
        self.open();
    }

    fn lose_buffered(&mut self) {
        let active = self.active_id();
        let unsynced: Vec<u64> = self
            .records
            .range(self.synced_below..)
            .map(|(id, _)| *id)
            .collect();
        for id in unsynced {
            if self.records[&id].segment_id == active {
                self.records.remove(&id);
            } else {
                self.uncut.insert(id);
            }
        }
    }

    /// Truncates segment `segment_id` to `len` bytes, then restarts.
    fn truncate(&mut self, segment_id: u64, len: u64) {
        // Buffered records are lost by the restart anyway; drop them first so the
        // truncation acts on what is in the file.
        self.lose_buffered();
        let truncated: Vec<u64> = self
            .records
            .iter()
            .filter(|(_, r)| r.segment_id == segment_id && r.end > len)
            .map(|(id, _)| *id)
            .collect();
        for id in truncated {
            self.records.remove(&id);
            self.uncut.remove(&id);
            for ids in self.pending.values_mut() {
                ids.remove(&id);
            }
        }
        self.pending.retain(|_, ids| !ids.is_empty());
        if len < segment::SEGMENT_HEADER_LEN as u64 {
            // The header is gone: the spool can no longer learn the segment's first id.
            if let Some(seg) = self.segments.get_mut(&segment_id) {
                seg.first_id = 0;
            }
        }
        self.open();
    }
}

fn config() -> SpoolConfig {
    SpoolConfig {
        max_bytes: 64 * 1024 * 1024,
        segment_bytes: SEGMENT_BYTES,
        policy: FullPolicy::Backpressure,
    }
}

fn open(sim: &Arc<SimFs>) -> Spool {
    let fs: Arc<dyn FileLayer> = sim.clone();
    Spool::open_with(fs, Path::new(DIR), config())
        .expect("open")
        .0
}

fn segment_ids(sim: &SimFs) -> Vec<u64> {
    sim.file_names()
        .iter()
        .filter_map(|p| segment::parse_file_name(&p.file_name()?.to_string_lossy()))
        .collect()
}

fn check(spool: &Spool, sim: &SimFs, model: &Model) -> Result<(), TestCaseError> {
    let model_segments: Vec<u64> = model.segments.keys().copied().collect();
    prop_assert_eq!(segment_ids(sim), model_segments, "segment files");
    let pending = spool.pending().expect("pending");
    let spool_pending: BTreeMap<u64, Vec<u64>> = pending
        .iter()
        .map(|b| (b.seq, b.records.iter().map(|r| r.id).collect()))
        .collect();
    let model_pending: BTreeMap<u64, Vec<u64>> = model
        .pending
        .iter()
        .map(|(seq, ids)| (*seq, ids.iter().copied().collect()))
        .collect();
    prop_assert_eq!(spool_pending, model_pending, "pending batches");
    let uncut: Vec<u64> = spool
        .read_uncut()
        .expect("uncut")
        .iter()
        .map(|r| r.id)
        .collect();
    prop_assert_eq!(
        uncut,
        model.uncut.iter().copied().collect::<Vec<_>>(),
        "uncut records"
    );
    for rec in pending.iter().flat_map(|b| &b.records) {
        check_payload(model, rec)?;
    }
    let stats = spool.stats();
    prop_assert_eq!(stats.next_seq, model.next_seq);
    prop_assert_eq!(stats.pending_batches, model.pending.len() as u64);
    prop_assert_eq!(
        stats.uncut_records,
        model.records.len() as u64 - pending_count(model)
    );
    Ok(())
}

fn pending_count(model: &Model) -> u64 {
    model.pending.values().map(|ids| ids.len() as u64).sum()
}

fn check_payload(model: &Model, rec: &SpoolRecord) -> Result<(), TestCaseError> {
    let expected = &model.records[&rec.id];
    prop_assert_eq!(
        &rec.payload,
        &expected.payload,
        "payload of record {}",
        rec.id
    );
    prop_assert_eq!(rec.n_readings, expected.n_readings);
    Ok(())
}

fn run_ops(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let sim = SimFs::new();
    let mut spool = open(&sim);
    let mut model = Model::new();
    let mut fill: u8 = 0;
    for op in ops {
        match op {
            Op::Append { len, n_readings } => {
                fill = fill.wrapping_add(1);
                let payload = vec![fill; len];
                let appended = spool.append(&payload, n_readings).expect("append");
                let expected = model.append(payload, n_readings);
                prop_assert_eq!(appended.id, expected, "record id");
            }
            Op::Sync => {
                spool.sync().expect("sync");
                model.sync();
            }
            Op::Cut {
                live,
                max_records,
                max_bytes,
            } => {
                let lane = if live { Lane::Live } else { Lane::Backfill };
                let got = spool.cut(lane, max_records, max_bytes).expect("cut");
                let expected = model.cut(lane, max_records, max_bytes);
                match (got, expected) {
                    (None, None) => {}
                    (Some(batch), Some((seq, ids))) => {
                        prop_assert_eq!(batch.seq, seq);
                        prop_assert_eq!(
                            batch.records.iter().map(|r| r.id).collect::<Vec<_>>(),
                            ids
                        );
                        for rec in &batch.records {
                            check_payload(&model, rec)?;
                        }
                    }
                    (got, expected) => {
                        prop_assert!(false, "cut {got:?} but model expected {expected:?}")
                    }
                }
            }
            Op::Ack { pick } => {
                let seqs: Vec<u64> = model.pending.keys().copied().collect();
                let seq = seqs
                    .get(pick)
                    .copied()
                    .unwrap_or(model.next_seq + pick as u64);
                let report = spool.ack(seq).expect("ack");
                match model.ack(seq) {
                    Some((records, readings)) => {
                        prop_assert!(report.known);
                        prop_assert_eq!((report.records, report.readings), (records, readings));
                    }
                    None => prop_assert!(!report.known),
                }
            }
            Op::Restart => {
                drop(spool);
                spool = open(&sim);
                model.restart();
            }
            Op::Truncate {
                pick,
                frac_permille,
            } => {
                drop(spool);
                let ids = segment_ids(&sim);
                let segment_id = ids[pick % ids.len()];
                let path = Path::new(DIR).join(segment::file_name(segment_id));
                // Only bytes that reached the file can be truncated: the model's
                // length includes buffered frames, the file's does not.
                let mut file_len = 0;
                sim.corrupt(&path, &mut |data| file_len = data.len() as u64)
                    .expect("segment exists");
                let len = file_len * frac_permille / 1000;
                sim.corrupt(&path, &mut |data| data.truncate(len as usize))
                    .expect("truncate");
                spool = open(&sim);
                model.truncate(segment_id, len);
            }
        }
        check(&spool, &sim, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn spool_matches_the_model_across_appends_cuts_acks_restarts_and_truncation(
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run_ops(ops)?;
    }
}
