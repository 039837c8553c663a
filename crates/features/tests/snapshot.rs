//! Per-asset state snapshots: a fleet restored from snapshots into a fresh
//! `FleetFeatures` continues bit-identically to the uninterrupted one, and
//! bytes from another spec, shape or version, truncated, altered or random
//! bytes are refused with an error (never a panic) and change nothing.

use fieldpulse_features::snapshot::{StateWriter, FEATURE_STATE_MAGIC, FEATURE_STATE_VERSION};
use fieldpulse_features::{
    FeatureParams, FeatureSpec, FleetFeatures, ParamGuard, RowScratch, RowStatus, StateError,
};
use proptest::prelude::*;

const T0: i64 = 1_767_225_600_000;
const N_ASSETS: usize = 3;
const N_ROWS: usize = 900;

fn spec_with(names: &[String], half_lives: Vec<f64>) -> FeatureSpec {
    let params = FeatureParams::default()
        .half_lives(half_lives)
        .check()
        .unwrap();
    FeatureSpec::new(params, names.to_vec()).unwrap()
}

fn names(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// The default shape (3 horizons, one lane chunk: the const-shape kernel).
fn default_shape() -> FeatureSpec {
    spec_with(&names(5, "s"), vec![4.0, 32.0, 256.0])
}

/// Two lane chunks and two horizons: the generic kernel.
fn generic_shape() -> FeatureSpec {
    spec_with(&names(11, "s"), vec![3.0, 40.0])
}

struct Row {
    asset: usize,
    ts: i64,
    values: Vec<f64>,
}

/// A deterministic interleaved fleet series with irregular gaps, long
/// outages, missing and out-of-range values, duplicates and out-of-order rows.
fn series(n_sensors: usize, seed: u64) -> Vec<Row> {
    let mut state = seed ^ 0x5DEE_CE66_D1CE_4E5B;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut last = [T0; N_ASSETS];
    let mut level = vec![0.0; N_ASSETS * n_sensors];
    (0..N_ROWS)
        .map(|i| {
            let asset = (next() * N_ASSETS as f64) as usize % N_ASSETS;
            let u = next();
            let ts = if i < N_ASSETS || u > 0.04 {
                let gap = if u > 0.99 { 50 * 60_000 } else { 60_000 };
                last[asset] += gap + (next() * 2_000.0) as i64;
                last[asset]
            } else if u > 0.02 {
                last[asset] // duplicate
            } else {
                last[asset] - 90_000 // out of order
            };
            let values = (0..n_sensors)
                .map(|s| {
                    let l = &mut level[asset * n_sensors + s];
                    *l += (next() - 0.5) * 0.3;
                    let r = next();
                    if r < 0.03 {
                        f64::NAN
                    } else if r < 0.035 {
                        f64::INFINITY
                    } else if r < 0.04 {
                        1e300
                    } else {
                        10.0 * s as f64 + *l + (next() - 0.5) + if r > 0.995 { 40.0 } else { 0.0 }
                    }
                })
                .collect();
            Row { asset, ts, values }
        })
        .collect()
}

/// Feature rows (as bits) and statuses of `rows` scored on `fleet`.
fn score(
    fleet: &mut FleetFeatures,
    rows: &[Row],
    scratch: &mut RowScratch,
) -> Vec<(RowStatus, Vec<u64>)> {
    let mut out = vec![0.0; fleet.spec().n_features()];
    rows.iter()
        .map(|r| {
            let status = fleet
                .update_features(r.asset, r.ts, &r.values, scratch, &mut out)
                .unwrap();
            let extra = [scratch.resid_z(), scratch.robust_z()].concat();
            let bits = out.iter().chain(&extra).map(|v| v.to_bits()).collect();
            (status, bits)
        })
        .collect()
}

/// Scores `rows[..split]`, snapshots every asset, restores them into a fresh
/// fleet (assets added in the same order) and scores the rest there; the
/// result must equal the uninterrupted run bit for bit.
fn check_restore_continues_identically(spec: FeatureSpec, seed: u64, split: usize) {
    let rows = series(spec.n_sensors(), seed);
    let mut scratch = RowScratch::new(&spec);
    let mut whole = FleetFeatures::new(spec.clone(), N_ASSETS);
    let want = score(&mut whole, &rows, &mut scratch);

    let mut before = FleetFeatures::new(spec.clone(), N_ASSETS);
    let mut scratch = RowScratch::new(&spec);
    score(&mut before, &rows[..split], &mut scratch);
    let snaps: Vec<Vec<u8>> = (0..N_ASSETS).map(|a| before.asset_state(a)).collect();

    let mut after = FleetFeatures::new(spec.clone(), 0);
    for (a, snap) in snaps.iter().enumerate() {
        assert_eq!(after.add_asset(), a);
        after.restore_asset_state(a, snap).unwrap();
        assert_eq!(&after.asset_state(a), snap, "asset {a} round trip");
        assert_eq!(after.rows_learned(a), before.rows_learned(a));
    }
    let mut fresh_scratch = RowScratch::new(&spec);
    let got = score(&mut after, &rows[split..], &mut fresh_scratch);
    for (i, (g, w)) in got.iter().zip(&want[split..]).enumerate() {
        assert_eq!(g, w, "row {} after a restore at row {split}", split + i);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_restored_default_shape_fleet_continues_bit_identically(
        split in 0..=N_ROWS, seed in 0u64..4,
    ) {
        check_restore_continues_identically(default_shape(), seed, split);
    }

    #[test]
    fn a_restored_generic_shape_fleet_continues_bit_identically(
        split in 0..=N_ROWS, seed in 0u64..4,
    ) {
        check_restore_continues_identically(generic_shape(), seed, split);
    }

    #[test]
    fn truncated_snapshots_are_refused_and_change_nothing(cut in 0usize..10_000) {
        let (mut fleet, snap) = trained(default_shape());
        let cut = cut % snap.len();
        let before = fleet.asset_state(1);
        let err = fleet.restore_asset_state(1, &snap[..cut]).unwrap_err();
        prop_assert!(!err.to_string().is_empty());
        prop_assert_eq!(fleet.asset_state(1), before);
    }

    #[test]
    fn altered_snapshots_are_refused(pos in 0usize..10_000, flip in 1u8..=255) {
        let (mut fleet, mut snap) = trained(generic_shape());
        let pos = pos % snap.len();
        snap[pos] ^= flip;
        prop_assert!(fleet.restore_asset_state(0, &snap).is_err());
    }

    #[test]
    fn random_bytes_are_refused(
        bytes in proptest::collection::vec(any::<u8>(), 0..2_000),
        magic in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if magic && bytes.len() >= 5 {
            // Get past the kind and version checks.
            bytes[..4].copy_from_slice(&FEATURE_STATE_MAGIC);
            bytes[4] = FEATURE_STATE_VERSION;
        }
        let (mut fleet, _) = trained(default_shape());
        let before = fleet.asset_state(0);
        prop_assert!(fleet.restore_asset_state(0, &bytes).is_err());
        prop_assert_eq!(fleet.asset_state(0), before);
    }
}

/// A fleet that learned the series, and a snapshot of its asset 2.
fn trained(spec: FeatureSpec) -> (FleetFeatures, Vec<u8>) {
    let rows = series(spec.n_sensors(), 9);
    let mut scratch = RowScratch::new(&spec);
    let mut fleet = FleetFeatures::new(spec, N_ASSETS);
    score(&mut fleet, &rows[..400], &mut scratch);
    let snap = fleet.asset_state(2);
    (fleet, snap)
}

#[test]
fn snapshots_of_another_shape_or_spec_are_refused_naming_why() {
    let (_, snap) = trained(default_shape());
    let err = |spec: FeatureSpec| {
        let mut f = FleetFeatures::new(spec, 1);
        f.restore_asset_state(0, &snap).unwrap_err()
    };
    let e = err(spec_with(&names(6, "s"), vec![4.0, 32.0, 256.0]));
    assert!(
        matches!(
            e,
            StateError::Shape {
                what: "sensors",
                expected: 6,
                found: 5
            }
        ),
        "{e}"
    );
    let e = err(spec_with(&names(5, "s"), vec![4.0, 32.0]));
    assert!(
        matches!(
            e,
            StateError::Shape {
                what: "horizons",
                ..
            }
        ),
        "{e}"
    );
    let e = err(spec_with(&names(5, "t"), vec![4.0, 32.0, 256.0]));
    assert!(matches!(e, StateError::SpecMismatch { .. }), "{e}");
    assert!(e.to_string().contains("feature spec"), "{e}");
    let e = err(spec_with(&names(5, "s"), vec![4.0, 32.0, 512.0]));
    assert!(matches!(e, StateError::SpecMismatch { .. }), "{e}");

    let mut same = FleetFeatures::new(default_shape(), 1);
    assert_eq!(
        same.restore_asset_state(1, &snap).unwrap_err(),
        StateError::NoAsset {
            asset: 1,
            n_assets: 1
        }
    );
    same.restore_asset_state(0, &snap).unwrap();
    same.check_asset_state(&snap).unwrap();
    let mut newer = snap.clone();
    newer[4] += 1;
    assert!(matches!(
        same.restore_asset_state(0, &newer),
        Err(StateError::Version { .. })
    ));
    let mut longer = snap.clone();
    longer.push(0);
    assert!(matches!(
        same.restore_asset_state(0, &longer),
        Err(StateError::TrailingBytes { .. })
    ));
}

/// Rewrites the block of a snapshot with a valid envelope and checksum.
fn reframe(snap: &[u8], edit: impl FnOnce(&mut [f64])) -> Vec<u8> {
    let body = &snap[12..snap.len() - 8];
    let (head, raw) = body.split_at(28);
    let mut blk: Vec<f64> = raw
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    edit(&mut blk);
    let mut w = StateWriter::new(FEATURE_STATE_MAGIC, FEATURE_STATE_VERSION, body.len());
    w.put_bytes(head);
    w.put_f64s(&blk);
    w.finish()
}

/// A change to a block.
type Edit = Box<dyn FnOnce(&mut [f64])>;

#[test]
fn well_framed_blocks_that_break_the_state_invariants_are_refused() {
    let spec = default_shape();
    let (mut fleet, snap) = trained(spec.clone());
    assert_eq!(
        reframe(&snap, |_| {}),
        snap,
        "reframing alone changes nothing"
    );
    let header = 16; // header slots of 3 horizons, rounded to a cache line
    let lanes = spec.n_lanes();
    let n_valid = header + (2 * 3 + 4) * lanes;
    let cases: Vec<(&str, Edit)> = vec![
        ("rows learned", Box::new(|b| b[2] = -1.0)),
        ("rows learned", Box::new(|b| b[2] = f64::NAN)),
        ("rows learned", Box::new(|b| b[2] = 2.5)),
        ("warm-up", Box::new(|b| b[7] = 6.0)),
        ("header padding", Box::new(|b| b[15] = 1.0)),
        ("valid count", Box::new(move |b| b[n_valid] = b[2] + 1.0)),
        ("infinite", Box::new(move |b| b[n_valid + 7] = 0.0)),
        ("padding lanes", Box::new(move |b| b[header + 6] = 3.0)),
    ];
    for (why, edit) in cases {
        let bad = reframe(&snap, edit);
        let err = fleet.restore_asset_state(0, &bad).unwrap_err();
        assert!(matches!(err, StateError::Corrupt(_)), "{why}: {err}");
        assert!(err.to_string().contains(why), "{err} should say {why}");
    }
}
