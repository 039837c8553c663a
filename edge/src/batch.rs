//! Building the edge → cloud [`Batch`]: spool records in, columnar protobuf + zstd out.
//!
//! Records are grouped into one [`Series`] per (asset, sensor, stamp source), in order of first
//! appearance (device-stamped and receive-stamped readings of one stream, or readings held back by
//! the agent, go to separate series, since `receive_stamped` and `held_back` are per series);
//! inside a series, readings keep the records' order (which is receive order). A batch is a pure
//! function of its spool epoch, seq, lane and records, so a batch re-sent after a restart carries
//! the same readings (only `created_ms` differs).

use std::collections::HashMap;

use fieldpulse_proto::v1::{Batch, Series};
use prost::Message;

use crate::envelope::{EnvelopeError, EnvelopeView};

/// Groups record readings into series.
#[derive(Debug)]
pub struct BatchBuilder<'a> {
    batch: Batch,
    index: HashMap<(&'a str, &'a str, bool, bool), usize>,
    n_readings: u64,
    n_corrupt_records: u64,
}

/// A batch ready to POST.
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    /// The batch seq.
    pub seq: u64,
    /// The spool epoch the seq belongs to.
    pub spool_epoch: u64,
    /// Readings in the batch.
    pub n_readings: u64,
    /// Records that could not be read (their readings are lost; counted as dropped).
    pub n_corrupt_records: u64,
    /// Whether the batch is backfill.
    pub historical: bool,
    /// Protobuf size before compression.
    pub encoded_len: usize,
    /// The zstd-compressed protobuf body.
    pub body: Vec<u8>,
}

impl<'a> BatchBuilder<'a> {
    /// Starts batch `seq` of spool epoch `spool_epoch` (see [`crate::spool::Spool::epoch`]).
    pub fn new(
        gateway_id: &str,
        spool_epoch: u64,
        seq: u64,
        historical: bool,
        created_ms: i64,
    ) -> Self {
        Self {
            batch: Batch {
                gateway_id: gateway_id.to_string(),
                seq,
                historical,
                clock_suspect: false,
                created_ms,
                series: Vec::new(),
                spool_epoch,
            },
            index: HashMap::new(),
            n_readings: 0,
            n_corrupt_records: 0,
        }
    }

    /// Adds the readings of one record payload (see [`crate::envelope`]).
    ///
    /// # Errors
    /// [`EnvelopeError`] when the record is unreadable; it is counted and skipped.
    pub fn add_record(&mut self, payload: &'a [u8]) -> Result<(), EnvelopeError> {
        let view = match EnvelopeView::parse(payload) {
            Ok(view) => view,
            Err(err) => {
                self.n_corrupt_records += 1;
                return Err(err);
            }
        };
        for reading in view.readings {
            let next_idx = self.batch.series.len();
            let series_idx = *self
                .index
                .entry((
                    reading.asset,
                    reading.sensor,
                    reading.receive_stamped,
                    reading.held_back,
                ))
                .or_insert(next_idx);
            if series_idx == next_idx {
                self.batch.series.push(Series {
                    asset_id: reading.asset.to_string(),
                    sensor: reading.sensor.to_string(),
                    receive_stamped: reading.receive_stamped,
                    held_back: reading.held_back,
                    ..Default::default()
                });
            }
            let series = &mut self.batch.series[series_idx];
            series.push(reading.ts_ms, reading.value);
            if reading.clock_suspect {
                series.clock_suspect = true;
                self.batch.clock_suspect = true;
            }
            self.n_readings += 1;
        }
        Ok(())
    }

    /// Readings added so far.
    pub fn n_readings(&self) -> u64 {
        self.n_readings
    }

    /// The protobuf batch.
    pub fn finish(self) -> Batch {
        self.batch
    }

    /// Encodes and compresses the batch.
    ///
    /// # Errors
    /// The zstd error (only on allocation failure or an invalid level).
    pub fn encode(self, zstd_level: i32) -> std::io::Result<EncodedBatch> {
        let n_readings = self.n_readings;
        let n_corrupt_records = self.n_corrupt_records;
        let batch = self.batch;
        let encoded = batch.encode_to_vec();
        let body = zstd::bulk::compress(&encoded, zstd_level)?;
        Ok(EncodedBatch {
            seq: batch.seq,
            spool_epoch: batch.spool_epoch,
            n_readings,
            n_corrupt_records,
            historical: batch.historical,
            encoded_len: encoded.len(),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::encode;
    use crate::validate::ValidReading;

    fn record(readings: &[(&str, &str, i64, f64, bool)]) -> Vec<u8> {
        let readings: Vec<ValidReading> = readings
            .iter()
            .map(
                |(asset, sensor, ts_ms, value, clock_suspect)| ValidReading {
                    asset: asset.to_string(),
                    sensor: sensor.to_string(),
                    ts_ms: *ts_ms,
                    value: *value,
                    clock_suspect: *clock_suspect,
                    receive_stamped: sensor.ends_with("/rs"),
                    held_back: sensor.ends_with("/held/rs"),
                },
            )
            .collect();
        let mut out = Vec::new();
        encode(1, 2, 3, &readings, &mut out);
        out
    }

    #[test]
    fn readings_are_grouped_per_stream_in_receive_order() {
        let r1 = record(&[
            ("p1", "temp", 1000, 1.0, false),
            ("p1", "rpm", 1000, 10.0, false),
        ]);
        let r2 = record(&[("p1", "temp", 2000, 2.0, false)]);
        let r3 = record(&[("p2", "temp", 1500, 3.0, true)]);
        let mut builder = BatchBuilder::new("gw", 42, 7, true, 99);
        for r in [&r1, &r2, &r3] {
            builder.add_record(r).unwrap();
        }
        assert_eq!(builder.n_readings(), 4);
        let batch = builder.finish();
        assert_eq!(
            (
                batch.seq,
                batch.spool_epoch,
                batch.historical,
                batch.clock_suspect
            ),
            (7, 42, true, true)
        );
        let streams: Vec<_> = batch
            .series
            .iter()
            .map(|s| {
                (
                    s.asset_id.as_str(),
                    s.sensor.as_str(),
                    s.points().collect::<Vec<_>>(),
                    s.clock_suspect,
                )
            })
            .collect();
        assert_eq!(
            streams,
            vec![
                ("p1", "temp", vec![(1000, 1.0), (2000, 2.0)], false),
                ("p1", "rpm", vec![(1000, 10.0)], false),
                ("p2", "temp", vec![(1500, 3.0)], true),
            ]
        );
    }

    #[test]
    fn receive_stamped_and_held_back_readings_travel_in_their_own_flagged_series() {
        let r1 = record(&[
            ("p1", "t", 1000, 1.0, false),
            ("p1", "t/rs", 1100, 2.0, false),
        ]);
        let r2 = record(&[("p1", "t/held/rs", 1200, 3.0, false)]);
        let mut builder = BatchBuilder::new("gw", 1, 1, false, 5);
        builder.add_record(&r1).unwrap();
        builder.add_record(&r2).unwrap();
        let batch = builder.finish();
        let flags: Vec<_> = batch
            .series
            .iter()
            .map(|s| (s.sensor.as_str(), s.receive_stamped, s.held_back))
            .collect();
        assert_eq!(
            flags,
            vec![
                ("t", false, false),
                ("t/rs", true, false),
                ("t/held/rs", true, true)
            ]
        );
    }

    #[test]
    fn an_encoded_batch_decompresses_to_the_same_protobuf() {
        let r1 = record(&[("p1", "temp", 1000, 1.0, false)]);
        let mut builder = BatchBuilder::new("gw", 9, 3, false, 5);
        builder.add_record(&r1).unwrap();
        builder.add_record(b"garbage").unwrap_err();
        let encoded = builder.encode(3).unwrap();
        assert_eq!(
            (
                encoded.seq,
                encoded.spool_epoch,
                encoded.n_readings,
                encoded.n_corrupt_records
            ),
            (3, 9, 1, 1)
        );
        let raw = zstd::bulk::decompress(&encoded.body, 1 << 20).unwrap();
        assert_eq!(raw.len(), encoded.encoded_len);
        let batch = Batch::decode(raw.as_slice()).unwrap();
        assert_eq!(
            batch.series[0].points().collect::<Vec<_>>(),
            vec![(1000, 1.0)]
        );
    }
}
