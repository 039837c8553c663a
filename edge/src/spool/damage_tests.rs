//! Random damage: whatever happens to the bytes of the segment files, the
//! ledger and the epoch file (bit flips, zeroed ranges, inserted or deleted bytes,
//! truncation), the spool opens, every record it recovers carries exactly the
//! payload appended with its id, and a second open finds nothing left to repair
//! (and keeps the epoch the first one settled on).

use std::{collections::BTreeMap, path::Path, sync::Arc};

use proptest::prelude::*;

use super::{sim_fs::SimFs, FileLayer, FullPolicy, Lane, Spool, SpoolConfig};

#[derive(Debug, Clone)]
enum Damage {
    FlipBit {
        file: usize,
        at: usize,
        bit: u8,
    },
    Zero {
        file: usize,
        at: usize,
        len: usize,
    },
    Insert {
        file: usize,
        at: usize,
        bytes: Vec<u8>,
    },
    Delete {
        file: usize,
        at: usize,
        len: usize,
    },
    Truncate {
        file: usize,
        at: usize,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    let file = 0usize..8;
    let at = 0usize..40_000;
    prop_oneof![
        (file.clone(), at.clone(), 0u8..8).prop_map(|(file, at, bit)| Damage::FlipBit {
            file,
            at,
            bit
        }),
        (file.clone(), at.clone(), 1usize..600).prop_map(|(file, at, len)| Damage::Zero {
            file,
            at,
            len
        }),
        (
            file.clone(),
            at.clone(),
            proptest::collection::vec(any::<u8>(), 1..40)
        )
            .prop_map(|(file, at, bytes)| Damage::Insert { file, at, bytes }),
        (file.clone(), at.clone(), 1usize..200).prop_map(|(file, at, len)| Damage::Delete {
            file,
            at,
            len
        }),
        (file, at).prop_map(|(file, at)| Damage::Truncate { file, at }),
    ]
}

fn config() -> SpoolConfig {
    SpoolConfig {
        max_bytes: 64 * 1024 * 1024,
        segment_bytes: 16 * 1024,
        policy: FullPolicy::Backpressure,
    }
}

fn apply(data: &mut Vec<u8>, damage: &Damage) {
    if data.is_empty() {
        return;
    }
    match damage {
        Damage::FlipBit { at, bit, .. } => {
            let at = at % data.len();
            data[at] ^= 1 << bit;
        }
        Damage::Zero { at, len, .. } => {
            let at = at % data.len();
            let end = (at + len).min(data.len());
            data[at..end].fill(0);
        }
        Damage::Insert { at, bytes, .. } => {
            let at = at % data.len();
            data.splice(at..at, bytes.iter().copied());
        }
        Damage::Delete { at, len, .. } => {
            let at = at % data.len();
            let end = (at + len).min(data.len());
            data.drain(at..end);
        }
        Damage::Truncate { at, .. } => data.truncate(at % data.len()),
    }
}

fn file_of(damage: &Damage) -> usize {
    match damage {
        Damage::FlipBit { file, .. }
        | Damage::Zero { file, .. }
        | Damage::Insert { file, .. }
        | Damage::Delete { file, .. }
        | Damage::Truncate { file, .. } => *file,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn the_spool_opens_after_any_damage_and_never_returns_a_wrong_payload(
        n_records in 1usize..80,
        damages in proptest::collection::vec(damage(), 1..6),
    ) {
        let sim = SimFs::new();
        let dir = Path::new("/spool");
        let open = || {
            let fs: Arc<dyn FileLayer> = sim.clone();
            Spool::open_with(fs, dir, config())
        };
        let (mut spool, _) = open().expect("fresh open");
        let mut appended = BTreeMap::new();
        for i in 0..n_records {
            let payload: Vec<u8> = (0..(i * 37) % 900).map(|k| (k * 7 + i) as u8).collect();
            let id = spool.append(&payload, i as u32 % 5 + 1).expect("append").id;
            appended.insert(id, payload);
        }
        spool.sync().expect("sync");
        spool.cut(Lane::Backfill, n_records / 3 + 1, usize::MAX).expect("cut");
        drop(spool);

        let files = sim.file_names();
        for damage in &damages {
            let path = &files[file_of(damage) % files.len()];
            sim.corrupt(path, &mut |data| apply(data, damage)).expect("damage");
        }

        let (spool, report) = match open() {
            Ok(opened) => opened,
            Err(err) => return Err(TestCaseError::fail(format!("open failed after damage: {err}"))),
        };
        let mut seen = Vec::new();
        for rec in spool.pending().expect("pending").iter().flat_map(|b| b.records.clone())
            .chain(spool.read_uncut().expect("uncut"))
        {
            prop_assert_eq!(Some(&rec.payload), appended.get(&rec.id), "record {}", rec.id);
            seen.push(rec.id);
        }
        seen.sort_unstable();
        let before = seen.len();
        seen.dedup();
        prop_assert_eq!(before, seen.len(), "a record was recovered twice");
        prop_assert!(report.records as usize <= n_records, "{}", report);
        prop_assert_ne!(spool.epoch(), 0);
        let epoch = spool.epoch();
        drop(spool);

        // The first open repaired what can be repaired: nothing torn is left.
        let (again_spool, again) = open().expect("second open");
        prop_assert_eq!(again.new_epoch, None, "{}", again);
        prop_assert_eq!(again_spool.epoch(), epoch);
        prop_assert_eq!(again.torn_tails, 0, "{}", again);
        prop_assert_eq!(again.ledger_torn_bytes, 0, "{}", again);
        prop_assert_eq!(again.ledger_corrupt_regions, 0, "{}", again);
    }
}
