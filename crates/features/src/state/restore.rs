//! Per-asset snapshots of [`FleetFeatures`]: the asset's block in the
//! format [`crate::snapshot`] documents, and its checked restore.

use super::FleetFeatures;
use crate::snapshot::{
    StateError, StateReader, StateWriter, FEATURE_STATE_MAGIC, FEATURE_STATE_VERSION,
};
use crate::spec::{field, n_sensor_fields, H_N_ROWS, H_N_WARM, H_W};

/// Counts are f64 in the block: whole numbers up to 2^53 are exact.
const MAX_COUNT: f64 = 9_007_199_254_740_992.0;

impl FleetFeatures {
    /// The serialised state of one asset: its whole block, behind a versioned
    /// header naming the shape (sensors, lanes, horizons, header and block
    /// length) and [`FeatureSpec::state_hash`](crate::FeatureSpec::state_hash),
    /// little-endian, checksummed. Format: [`crate::snapshot`]. Fleet-wide
    /// counters are not in it (they do not affect features).
    ///
    /// # Panics
    /// If `asset >= n_assets()`.
    pub fn asset_state(&self, asset: usize) -> Vec<u8> {
        assert!(asset < self.n_assets, "asset index out of range");
        let blk = self.block(asset);
        let mut w = StateWriter::new(
            FEATURE_STATE_MAGIC,
            FEATURE_STATE_VERSION,
            28 + std::mem::size_of_val(blk),
        );
        w.put_len(self.spec.n_sensors());
        w.put_len(self.spec.lanes);
        w.put_len(self.kernel.n_h);
        w.put_len(self.spec.header_len);
        w.put_len(self.spec.stride);
        w.put_u64(self.spec.state_hash());
        w.put_f64s(blk);
        w.finish()
    }

    /// Checks that `bytes` is an [`Self::asset_state`] snapshot this fleet
    /// can restore, without changing anything.
    ///
    /// # Errors
    /// As [`Self::restore_asset_state`], except the asset index check.
    pub fn check_asset_state(&self, bytes: &[u8]) -> Result<(), StateError> {
        self.decode_asset_state(bytes).map(|_| ())
    }

    /// Replaces one asset's state with an [`Self::asset_state`] snapshot, so
    /// the asset continues exactly where the snapshot was taken. Everything is
    /// checked before anything is written: a refused restore leaves the asset
    /// as it was. Never panics, whatever `bytes` hold.
    ///
    /// # Errors
    /// [`StateError::NoAsset`] when `asset >= n_assets()`; the envelope errors
    /// of [`StateReader::open`] (other kind, version, length, checksum);
    /// [`StateError::Shape`] for another sensor count, lane count, horizon
    /// count, header or block length; [`StateError::SpecMismatch`] for other
    /// sensor names or parameters; [`StateError::Corrupt`] when counts are not
    /// whole numbers in range or padding is not inert.
    pub fn restore_asset_state(&mut self, asset: usize, bytes: &[u8]) -> Result<(), StateError> {
        if asset >= self.n_assets {
            return Err(StateError::NoAsset {
                asset,
                n_assets: self.n_assets,
            });
        }
        let blk = self.decode_asset_state(bytes)?;
        let stride = self.spec.stride;
        self.data.as_mut_slice()[asset * stride..(asset + 1) * stride].copy_from_slice(&blk);
        Ok(())
    }

    /// The block a snapshot holds, checked against this fleet's spec.
    fn decode_asset_state(&self, bytes: &[u8]) -> Result<Vec<f64>, StateError> {
        let mut r = StateReader::open(bytes, FEATURE_STATE_MAGIC, FEATURE_STATE_VERSION)?;
        let (n, np, n_h) = (self.spec.n_sensors(), self.spec.lanes, self.kernel.n_h);
        r.expect_len("sensors", n)?;
        r.expect_len("lanes", np)?;
        r.expect_len("horizons", n_h)?;
        r.expect_len("header slots", self.spec.header_len)?;
        r.expect_len("block values", self.spec.stride)?;
        r.expect_hash("feature spec", self.spec.state_hash())?;
        let mut blk = vec![0.0; self.spec.stride];
        r.f64s(&mut blk)?;
        r.finish()?;
        check_block(&blk, n, np, n_h, self.spec.header_len)?;
        Ok(blk)
    }
}

/// Whether `v` is a whole number in `[0, max]` (false for NaN).
fn whole_in(v: f64, max: f64) -> bool {
    (0.0..=max).contains(&v) && v.fract() == 0.0
}

/// The invariants a block keeps whatever it learned: counts are whole numbers
/// in range (reports subtract them), header and lane padding are inert.
fn check_block(
    blk: &[f64],
    n: usize,
    np: usize,
    n_h: usize,
    header_len: usize,
) -> Result<(), StateError> {
    let corrupt = |why: String| Err(StateError::Corrupt(why));
    let n_rows = blk[H_N_ROWS];
    if !whole_in(n_rows, MAX_COUNT) {
        return corrupt(format!("rows learned {n_rows}"));
    }
    if !whole_in(blk[H_N_WARM], n as f64) {
        return corrupt(format!(
            "sensors in warm-up {} of {n} sensors",
            blk[H_N_WARM]
        ));
    }
    if blk[H_W + 2 * n_h..header_len].iter().any(|v| *v != 0.0) {
        return corrupt("header padding is set".into());
    }
    let lanes = &blk[header_len..];
    for f in 0..n_sensor_fields(n_h) {
        let lane = &lanes[f * np..(f + 1) * np];
        if f == field::n_valid(n_h) {
            if let Some(s) = (0..n).find(|s| !whole_in(lane[*s], n_rows)) {
                return corrupt(format!(
                    "sensor {s} valid count {} with {n_rows} rows learned",
                    lane[s]
                ));
            }
            // Padding lanes count as long past warm-up.
            if lane[n..].iter().any(|v| *v != f64::INFINITY) {
                return corrupt("padding lanes' valid counts are not infinite".into());
            }
        } else if lane[n..].iter().any(|v| *v != 0.0) {
            return corrupt(format!("padding lanes of state field {f} are set"));
        } else if f == field::quantum(n_h) {
            if let Some(s) = (0..n).find(|s| !(lane[*s].is_finite() && lane[*s] >= 0.0)) {
                return corrupt(format!(
                    "sensor {s} quantum {} is not finite and >= 0",
                    lane[s]
                ));
            }
        }
    }
    Ok(())
}
