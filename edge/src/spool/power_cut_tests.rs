//! The power-cut test: the spool runs on [`SimFs`], power fails after a random
//! number of file operations (or between two calls), everything not fsynced is
//! thrown away (sometimes keeping a torn prefix), and the spool is reopened. A
//! model of what the spool promised is checked against what it recovers, across
//! thousands of crash points:
//!
//! - every record whose append was followed by a successful `sync` survives,
//!   unless it was acked or counted as dropped by `DropOldest`;
//! - every acked seq stays acked: it is never pending again and its records never
//!   come back as unsent;
//! - a seq never names two different record sets, and a cut batch keeps its seq;
//! - every recovered record has exactly the payload that was appended with its id;
//! - `DropOldest` reports exactly the unacked records it deleted.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::Arc,
};

use rand::{rngs::SmallRng, Rng, SeedableRng};

use super::{
    sim_fs::SimFs, FullPolicy, Lane, Spool, SpoolConfig, SpoolError, SpoolRecord, MIN_MAX_BYTES,
};

/// What the spool has promised so far.
#[derive(Debug, Default)]
struct Model {
    /// Unacked records the spool may hold: id -> (payload, n_readings).
    records: BTreeMap<u64, (Vec<u8>, u32)>,
    /// Records that must survive a crash (synced, not acked, not dropped).
    durable: BTreeSet<u64>,
    /// Record ids of every seq ever returned or recovered.
    seq_ids: BTreeMap<u64, BTreeSet<u64>>,
    /// Seqs cut and not acked -> their records still held.
    pending: BTreeMap<u64, BTreeSet<u64>>,
    /// Seqs acked.
    acked: BTreeSet<u64>,
    /// Ids of acked records.
    acked_ids: BTreeSet<u64>,
    /// Largest seq ever returned or recovered.
    max_seq: u64,
    /// A seq whose ack failed at the power cut (it may or may not be durable).
    ack_in_doubt: Option<u64>,
    /// An append failed at the power cut under `DropOldest`: it may have evicted
    /// the oldest segment(s) before failing, with its report lost.
    evict_in_doubt: bool,
    /// What happened, so the test can show it exercised every path.
    events: Events,
}

/// Counts of interesting events over a run.
#[derive(Debug, Default, Clone, Copy)]
struct Events {
    crash_points: u64,
    cut_mid_operation: u64,
    synced_records: u64,
    acked_batches: u64,
    evictions: u64,
    full: u64,
    unsynced_survivors: u64,
    records_checked: u64,
}

impl Events {
    fn add(&mut self, other: Events) {
        self.crash_points += other.crash_points;
        self.cut_mid_operation += other.cut_mid_operation;
        self.synced_records += other.synced_records;
        self.acked_batches += other.acked_batches;
        self.evictions += other.evictions;
        self.full += other.full;
        self.unsynced_survivors += other.unsynced_survivors;
        self.records_checked += other.records_checked;
    }
}

fn config(policy: FullPolicy) -> SpoolConfig {
    SpoolConfig {
        max_bytes: MIN_MAX_BYTES,
        segment_bytes: 16 * 1024,
        policy,
    }
}

fn open(sim: &Arc<SimFs>, dir: &Path, policy: FullPolicy) -> Spool {
    let fs: Arc<dyn super::FileLayer> = sim.clone();
    match Spool::open_with(fs, dir, config(policy)) {
        Ok((spool, _report)) => spool,
        Err(err) => panic!("recovery must succeed on any crash state: {err}"),
    }
}

impl Model {
    fn ack_done(&mut self, seq: u64) {
        let ids = self.pending.remove(&seq).unwrap_or_default();
        for id in &ids {
            self.records.remove(id);
            self.durable.remove(id);
        }
        self.acked_ids.extend(ids);
        self.acked.insert(seq);
        self.events.acked_batches += 1;
    }

    /// Checks the reopened spool against the model, then adopts what survived.
    fn reconcile(&mut self, spool: &Spool) {
        let batches = spool.pending().expect("pending after recovery");
        let uncut = spool.read_uncut().expect("uncut after recovery");
        let mut present: BTreeMap<u64, Option<u64>> = BTreeMap::new();
        let check_record = |model: &Model, rec: &SpoolRecord| {
            let (payload, n) = model
                .records
                .get(&rec.id)
                .unwrap_or_else(|| panic!("record {} was never appended or was acked", rec.id));
            assert_eq!(&rec.payload, payload, "payload of record {}", rec.id);
            assert_eq!(rec.n_readings, *n, "readings of record {}", rec.id);
        };
        let spool_seqs: BTreeSet<u64> = batches.iter().map(|b| b.seq).collect();
        // An ack that failed at the power cut may have become durable anyway.
        if let Some(seq) = self.ack_in_doubt.take() {
            if self.pending.contains_key(&seq) && !spool_seqs.contains(&seq) {
                self.ack_done(seq);
            }
        }
        for batch in &batches {
            assert!(
                !self.acked.contains(&batch.seq),
                "acked seq {} is pending again",
                batch.seq
            );
            let ids: BTreeSet<u64> = batch.records.iter().map(|r| r.id).collect();
            match self.seq_ids.get(&batch.seq) {
                Some(known) => assert!(
                    ids.is_subset(known),
                    "seq {} now names records {ids:?}, it was cut with {known:?}",
                    batch.seq
                ),
                None => {
                    // A cut whose fsync was cut short but whose entry survived: a
                    // seq never returned, so it must be fresh.
                    assert!(batch.seq > self.max_seq, "seq {} reused", batch.seq);
                    self.max_seq = batch.seq;
                    self.seq_ids.insert(batch.seq, ids.clone());
                    self.pending.insert(batch.seq, ids.clone());
                }
            }
            for rec in &batch.records {
                check_record(self, rec);
                assert!(
                    present.insert(rec.id, Some(batch.seq)).is_none(),
                    "record {} twice",
                    rec.id
                );
            }
        }
        for rec in &uncut {
            check_record(self, rec);
            assert!(
                present.insert(rec.id, None).is_none(),
                "record {} twice",
                rec.id
            );
        }
        let lost: Vec<u64> = self
            .durable
            .iter()
            .copied()
            .filter(|id| !present.contains_key(id))
            .collect();
        if std::mem::take(&mut self.evict_in_doubt) && !lost.is_empty() {
            // Only whole oldest segments can have been evicted: the lost records are
            // older than every surviving one.
            let oldest_kept = self.durable.iter().find(|id| present.contains_key(id));
            assert!(
                oldest_kept.is_none_or(|kept| lost.iter().all(|id| id < kept)),
                "an interrupted eviction lost records {lost:?} that are not the oldest"
            );
        } else {
            assert!(lost.is_empty(), "synced records {lost:?} were lost");
        }
        for (seq, ids) in &self.pending {
            assert!(
                spool_seqs.contains(seq) || ids.iter().all(|id| !present.contains_key(id)),
                "batch {seq} vanished but its records are back"
            );
            for id in ids {
                if let Some(owner) = present.get(id) {
                    assert_eq!(
                        *owner,
                        Some(*seq),
                        "record {id} of batch {seq} changed batch"
                    );
                }
            }
        }
        self.events.records_checked += present.len() as u64;
        self.events.unsynced_survivors += present
            .keys()
            .filter(|id| !self.durable.contains(id))
            .count() as u64;
        // Adopt the recovered state: survivors are durable now, the rest is forgotten.
        self.records.retain(|id, _| present.contains_key(id));
        self.durable = present.keys().copied().collect();
        for ids in self.pending.values_mut() {
            ids.retain(|id| present.contains_key(id));
        }
        self.pending.retain(|seq, _| spool_seqs.contains(seq));
    }
}

/// One run: several epochs of random operations, each ending in a power cut.
fn run(seed: u64, epochs: usize) -> Events {
    let mut rng = SmallRng::seed_from_u64(seed);

    let policy = match seed % 2 {
        0 => FullPolicy::DropOldest,
        _ => FullPolicy::Backpressure,
    };
    // Runs that ack rarely fill the cap and exercise the full policy.
    let ack_share = if seed % 4 < 2 { 2 } else { 10 };
    let sim = SimFs::new();
    let dir = Path::new("/spool");
    let mut model = Model::default();
    let mut spool_epoch = None;
    for _ in 0..epochs {
        let mut spool = open(&sim, dir, policy);
        model.reconcile(&spool);
        // Seqs are unique per epoch: the epoch a spool was opened with never changes.
        assert_eq!(
            *spool_epoch.get_or_insert(spool.epoch()),
            spool.epoch(),
            "the epoch changed"
        );
        // Power fails after a random number of file operations, or, if the epoch's
        // calls all finish first, between two calls.
        sim.cut_power_after(rng.gen_range(0..100));
        let mut unsynced: Vec<u64> = Vec::new();
        for _ in 0..rng.gen_range(1..120) {
            if step(
                &mut spool,
                &mut model,
                &mut unsynced,
                &mut rng,
                policy,
                ack_share,
            )
            .is_err()
            {
                model.events.cut_mid_operation += 1;
                break;
            }
            let stats = spool.stats();
            assert!(
                stats.bytes_on_disk <= stats.max_bytes,
                "over the cap: {stats:?}"
            );
        }
        drop(spool);
        sim.crash(&mut rng);
        model.events.crash_points += 1;
    }
    let spool = open(&sim, dir, policy);
    model.reconcile(&spool);
    assert_eq!(spool_epoch, Some(spool.epoch()), "the epoch changed");
    model.events
}

/// One random call; `Err` means the power went out.
fn step(
    spool: &mut Spool,
    model: &mut Model,
    unsynced: &mut Vec<u64>,
    rng: &mut SmallRng,
    policy: FullPolicy,
    ack_share: u32,
) -> Result<(), SpoolError> {
    let roll = rng.gen_range(0..100);
    match roll {
        0..=54 => {
            let len = rng.gen_range(0..6000);
            let payload: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let n_readings = rng.gen_range(1..10);
            match spool.append(&payload, n_readings) {
                Ok(appended) => {
                    assert!(
                        !model.records.contains_key(&appended.id)
                            && !model.acked_ids.contains(&appended.id),
                        "record id {} reused",
                        appended.id
                    );
                    let dropped = appended.dropped;
                    if !dropped.is_empty() {
                        assert_eq!(policy, FullPolicy::DropOldest);
                        model.events.evictions += dropped.segments;
                        let lost: Vec<u64> = model
                            .records
                            .range(..dropped.below_id)
                            .map(|(id, _)| *id)
                            .collect();
                        let readings: u64 =
                            lost.iter().map(|id| u64::from(model.records[id].1)).sum();
                        let bytes: u64 =
                            lost.iter().map(|id| model.records[id].0.len() as u64).sum();
                        assert_eq!(
                            (dropped.records, dropped.readings, dropped.bytes),
                            (lost.len() as u64, readings, bytes),
                            "DropOldest must count exactly what it deleted"
                        );
                        for id in &lost {
                            model.records.remove(id);
                            model.durable.remove(id);
                        }
                        for ids in model.pending.values_mut() {
                            ids.retain(|id| *id >= dropped.below_id);
                        }
                        unsynced.retain(|id| *id >= dropped.below_id);
                    }
                    model.records.insert(appended.id, (payload, n_readings));
                    unsynced.push(appended.id);
                    let stats = spool.stats();
                    assert!(stats.bytes_on_disk <= stats.max_bytes, "{stats:?}");
                }
                Err(err) if err.is_full() => model.events.full += 1,
                Err(err) => {
                    model.evict_in_doubt = policy == FullPolicy::DropOldest;
                    return Err(err);
                }
            }
        }
        55..=69 => {
            spool.sync()?;
            model.events.synced_records += unsynced.len() as u64;
            model.durable.extend(unsynced.drain(..));
        }
        r if r < 100 - ack_share => {
            let lane = if rng.gen_bool(0.5) {
                Lane::Live
            } else {
                Lane::Backfill
            };
            let max_records = rng.gen_range(1..20);
            let max_bytes = rng.gen_range(1..20_000);
            if let Some(batch) = spool.cut(lane, max_records, max_bytes)? {
                assert!(
                    batch.seq > model.max_seq,
                    "seq {} not fresh (max {})",
                    batch.seq,
                    model.max_seq
                );
                model.max_seq = batch.seq;
                let ids: BTreeSet<u64> = batch.records.iter().map(|r| r.id).collect();
                for rec in &batch.records {
                    let (payload, _) = model.records.get(&rec.id).expect("cut an unknown record");
                    assert_eq!(&rec.payload, payload);
                    assert!(model.pending.values().all(|p| !p.contains(&rec.id)));
                    // Only synced records are cut (a segment roll also syncs).
                    model.durable.insert(rec.id);
                    unsynced.retain(|id| *id != rec.id);
                }
                model.seq_ids.insert(batch.seq, ids.clone());
                model.pending.insert(batch.seq, ids);
            }
        }
        _ => {
            let known: Vec<u64> = model.pending.keys().copied().collect();
            let seq = if known.is_empty() || rng.gen_bool(0.1) {
                rng.gen_range(0..model.max_seq + 2)
            } else {
                known[rng.gen_range(0..known.len())]
            };
            let expected = model.pending.contains_key(&seq);
            model.ack_in_doubt = Some(seq);
            let report = spool.ack(seq)?;
            model.ack_in_doubt = None;
            // A batch whose records were all evicted is no longer pending in the spool.
            if report.known {
                assert!(
                    expected,
                    "ack of {seq} freed records the model did not expect"
                );
            }
            if expected {
                model.ack_done(seq);
            }
        }
    }
    Ok(())
}

#[test]
fn every_synced_record_and_every_ack_survives_thousands_of_power_cuts() {
    let mut events = Events::default();
    for seed in 0..200 {
        events.add(run(seed, 12));
    }
    // The run must have exercised every path it claims to test.
    assert!(events.crash_points >= 2000, "{events:?}");
    assert!(events.cut_mid_operation >= 1000, "{events:?}");
    assert!(events.synced_records >= 10_000, "{events:?}");
    assert!(events.acked_batches >= 500, "{events:?}");
    assert!(events.evictions >= 50, "{events:?}");
    assert!(events.full >= 50, "{events:?}");
    assert!(events.unsynced_survivors >= 50, "{events:?}");
}

#[test]
fn the_epoch_is_durable_when_open_returns_and_an_established_epoch_never_changes() {
    let dir = Path::new("/spool");
    let mut rng = SmallRng::seed_from_u64(12);
    let mut cut_during_open = 0;
    for ops in 0..40 {
        // A new spool: power fails after `ops` operations of its first open.
        let sim = SimFs::new();
        let fs: Arc<dyn super::FileLayer> = sim.clone();
        sim.cut_power_after(ops);
        if Spool::open_with(Arc::clone(&fs), dir, config(FullPolicy::DropOldest)).is_err() {
            cut_during_open += 1;
        }
        sim.crash(&mut rng);
        // Whatever that left, the epoch an open returns survives the next power cut.
        let epoch = open(&sim, dir, FullPolicy::DropOldest).epoch();
        assert_ne!(epoch, 0);
        sim.crash(&mut rng);
        let mut spool = open(&sim, dir, FullPolicy::DropOldest);
        assert_eq!(spool.epoch(), epoch, "ops {ops}: epoch not durable");
        spool.append(b"r", 1).expect("append");
        spool.sync().expect("sync");
        spool.cut(Lane::Live, 1, 100).expect("cut");
        drop(spool);
        // An established spool: a power cut anywhere in a reopen keeps its epoch.
        sim.cut_power_after(ops);
        let _ = Spool::open_with(fs, dir, config(FullPolicy::DropOldest));
        sim.crash(&mut rng);
        assert_eq!(
            open(&sim, dir, FullPolicy::DropOldest).epoch(),
            epoch,
            "ops {ops}: a reopen changed the epoch"
        );
    }
    assert!(cut_during_open >= 5, "{cut_during_open}");
}

#[test]
fn a_power_cut_during_splits_keeps_every_record_in_exactly_one_pending_batch() {
    let dir = Path::new("/spool");
    let mut rng = SmallRng::seed_from_u64(13);
    let mut splits_lost = 0;
    let mut splits_kept = 0;
    for ops in 0..24 {
        let sim = SimFs::new();
        let mut spool = open(&sim, dir, FullPolicy::DropOldest);
        let mut payloads = BTreeMap::new();
        for i in 0..8u64 {
            let payload = format!("record {i}").into_bytes();
            let id = spool.append(&payload, 1).expect("append").id;
            payloads.insert(id, payload);
        }
        spool.sync().expect("sync");
        let batch = spool
            .cut(Lane::Backfill, 100, usize::MAX)
            .expect("cut")
            .expect("a batch");
        // Split seq 1, then the older half again; power fails after `ops` operations.
        sim.cut_power_after(ops);
        let mut returned: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        let mut seq = batch.seq;
        for _ in 0..2 {
            match spool.split(seq) {
                Ok(super::SplitOutcome::Split(older)) => {
                    seq = older.seq;
                    returned.insert(older.seq, older.records.iter().map(|r| r.id).collect());
                }
                Ok(other) => panic!("ops {ops}: {other:?}"),
                Err(_) => break,
            }
        }
        drop(spool);
        sim.crash(&mut rng);
        let spool = open(&sim, dir, FullPolicy::DropOldest);
        let pending = spool.pending().expect("pending");
        let mut seen = BTreeSet::new();
        for batch in &pending {
            for record in &batch.records {
                assert!(
                    seen.insert(record.id),
                    "ops {ops}: record {} twice",
                    record.id
                );
                assert_eq!(record.payload, payloads[&record.id], "ops {ops}");
            }
        }
        assert_eq!(
            seen,
            payloads.keys().copied().collect(),
            "ops {ops}: every record pending"
        );
        // A split that returned is durable: its batch is pending with the same records.
        for (seq, ids) in &returned {
            let got: BTreeSet<u64> = pending
                .iter()
                .find(|b| b.seq == *seq)
                .unwrap_or_else(|| panic!("ops {ops}: split seq {seq} lost"))
                .records
                .iter()
                .map(|r| r.id)
                .collect();
            assert!(
                got.is_subset(ids) && !got.is_empty(),
                "ops {ops}: seq {seq}"
            );
        }
        if pending.len() == 1 {
            splits_lost += 1;
        } else {
            splits_kept += 1;
        }
        assert!(spool.stats().next_seq > pending.iter().map(|b| b.seq).max().unwrap_or(0));
    }
    assert!(
        splits_lost >= 1 && splits_kept >= 1,
        "{splits_lost} {splits_kept}"
    );
}
