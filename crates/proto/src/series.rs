//! Columnar helpers for [`Series`]: append a reading, iterate readings back, and
//! check a decoded series before trusting it.

use crate::v1::{Batch, Series};

/// Why a decoded [`Series`] cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesError {
    /// `ts_delta_ms` and `values` differ in length.
    #[error("series {asset_id}/{sensor}: {n_deltas} timestamps but {n_values} values")]
    LengthMismatch {
        /// Asset of the series.
        asset_id: String,
        /// Sensor of the series.
        sensor: String,
        /// Number of timestamp deltas.
        n_deltas: usize,
        /// Number of values.
        n_values: usize,
    },
    /// Summing the deltas overflows an `i64`.
    #[error("series {asset_id}/{sensor}: timestamp overflow")]
    TimestampOverflow {
        /// Asset of the series.
        asset_id: String,
        /// Sensor of the series.
        sensor: String,
    },
}

impl Series {
    /// Appends one reading, delta-encoding its timestamp against the previous one.
    pub fn push(&mut self, ts_ms: i64, value: f64) {
        if self.values.is_empty() {
            self.first_ts_ms = ts_ms;
            self.ts_delta_ms.push(0);
        } else {
            let last = self.last_ts_ms();
            self.ts_delta_ms.push(ts_ms.wrapping_sub(last));
        }
        self.values.push(value);
    }

    /// Timestamp of the last reading (or `first_ts_ms` when empty).
    pub fn last_ts_ms(&self) -> i64 {
        self.ts_delta_ms
            .iter()
            .fold(self.first_ts_ms, |acc, d| acc.wrapping_add(*d))
    }

    /// Number of readings in the series.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the series holds no reading.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Iterates `(ts_ms, value)` pairs in order.
    ///
    /// Call [`Series::check`] first on untrusted input: the iterator stops at the
    /// shorter of the two columns and wraps on overflow.
    pub fn points(&self) -> Points<'_> {
        Points {
            ts_ms: self.first_ts_ms,
            deltas: self.ts_delta_ms.iter(),
            values: self.values.iter(),
        }
    }

    /// Validates column lengths and timestamp arithmetic of a decoded series.
    ///
    /// # Errors
    /// [`SeriesError`] naming the stream when the series is malformed.
    pub fn check(&self) -> Result<(), SeriesError> {
        if self.ts_delta_ms.len() != self.values.len() {
            return Err(SeriesError::LengthMismatch {
                asset_id: self.asset_id.clone(),
                sensor: self.sensor.clone(),
                n_deltas: self.ts_delta_ms.len(),
                n_values: self.values.len(),
            });
        }
        let mut ts = self.first_ts_ms;
        for delta in &self.ts_delta_ms {
            ts = ts
                .checked_add(*delta)
                .ok_or_else(|| SeriesError::TimestampOverflow {
                    asset_id: self.asset_id.clone(),
                    sensor: self.sensor.clone(),
                })?;
        }
        Ok(())
    }
}

impl Batch {
    /// Total number of readings across all series.
    pub fn n_readings(&self) -> usize {
        self.series.iter().map(Series::len).sum()
    }

    /// The `Idempotency-Key` header value for this batch: `<gateway_id>/<seq>`.
    pub fn idempotency_key(&self) -> String {
        format!("{}/{}", self.gateway_id, self.seq)
    }
}

/// Iterator over the `(ts_ms, value)` pairs of a [`Series`].
#[derive(Debug, Clone)]
pub struct Points<'a> {
    ts_ms: i64,
    deltas: std::slice::Iter<'a, i64>,
    values: std::slice::Iter<'a, f64>,
}

impl Iterator for Points<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<Self::Item> {
        let delta = self.deltas.next()?;
        let value = self.values.next()?;
        self.ts_ms = self.ts_ms.wrapping_add(*delta);
        Some((self.ts_ms, *value))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn series_round_trips_out_of_order_timestamps() {
        let input = [(1_000, 1.0), (900, 2.0), (5_000, f64::MAX), (5_000, -0.0)];
        let mut series = Series::default();
        for (ts, v) in input {
            series.push(ts, v);
        }
        let decoded = Series::decode(series.encode_to_vec().as_slice()).unwrap();
        decoded.check().unwrap();
        assert_eq!(decoded.points().collect::<Vec<_>>(), input.to_vec());
        assert_eq!(decoded.last_ts_ms(), 5_000);
    }

    #[test]
    fn check_rejects_mismatched_columns() {
        let series = Series {
            asset_id: "a".into(),
            sensor: "s".into(),
            ts_delta_ms: vec![0, 1],
            values: vec![1.0],
            ..Default::default()
        };
        assert!(matches!(
            series.check(),
            Err(SeriesError::LengthMismatch {
                n_deltas: 2,
                n_values: 1,
                ..
            })
        ));
    }

    #[test]
    fn check_rejects_timestamp_overflow() {
        let series = Series {
            first_ts_ms: i64::MAX,
            ts_delta_ms: vec![0, 1],
            values: vec![1.0, 2.0],
            ..Default::default()
        };
        assert!(matches!(
            series.check(),
            Err(SeriesError::TimestampOverflow { .. })
        ));
    }

    #[test]
    fn idempotency_key_joins_gateway_and_seq() {
        let batch = Batch {
            gateway_id: "gw-9".into(),
            seq: 42,
            ..Default::default()
        };
        assert_eq!(batch.idempotency_key(), "gw-9/42");
    }
}
