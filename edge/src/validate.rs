//! Validation at the door: the rules every decoded reading passes before it is spooled.
//!
//! Rejected (and counted by [`RejectReason`]): NaN and infinities, assets outside the allow-list
//! (when one is configured), values outside the sensor's configured range, timestamps older than
//! `max_age` or further than `max_future` ahead of the gateway clock.
//!
//! Receive-time stamping keeps a **monotonic floor** per stream (asset, sensor): when the gateway
//! clock jumps backwards, a receive-stamped reading gets the stream's last timestamp instead of a
//! smaller one and is marked `clock_suspect`. Device-stamped readings keep their own timestamps.
//! The floor lives in memory (bounded by [`MAX_TRACKED_STREAMS`]); after a restart it starts
//! empty.
//!
//! [`Validator`] is a plain state machine with the clock passed in, so it is tested without a
//! runtime or a real clock.

use std::collections::HashMap;

use crate::config::ValidationConfig;
use crate::payload::DecodedReading;
use crate::reject::{RejectCounts, RejectReason};

/// Streams whose monotonic floor is remembered; beyond this the table is reset (and a gateway
/// clock jump at that very moment goes undetected for the forgotten streams).
pub const MAX_TRACKED_STREAMS: usize = 200_000;

/// A reading that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidReading {
    /// Asset identifier.
    pub asset: String,
    /// Sensor name.
    pub sensor: String,
    /// Timestamp in ms since the epoch (device or receive time).
    pub ts_ms: i64,
    /// The finite value.
    pub value: f64,
    /// True when the gateway clock went backwards and the timestamp was held at the floor.
    pub clock_suspect: bool,
}

/// Applies [`ValidationConfig`] and tracks the per-stream monotonic floor.
#[derive(Debug)]
pub struct Validator {
    max_age_ms: i64,
    max_future_ms: i64,
    allowed_assets: Vec<String>,
    ranges: Vec<(String, f64, f64)>,
    /// Last receive stamp per asset, then per sensor (nested so lookups borrow `&str`).
    floors: HashMap<String, HashMap<String, i64>>,
    n_streams: usize,
}

impl Validator {
    /// Builds a validator from the validated config.
    pub fn new(cfg: &ValidationConfig) -> Self {
        let mut allowed_assets = cfg.allowed_assets.clone();
        allowed_assets.sort();
        allowed_assets.dedup();
        Self {
            max_age_ms: i64::try_from(cfg.max_age.as_millis()).unwrap_or(i64::MAX),
            max_future_ms: i64::try_from(cfg.max_future.as_millis()).unwrap_or(i64::MAX),
            allowed_assets,
            ranges: cfg
                .ranges
                .iter()
                .map(|(sensor, range)| (sensor.clone(), range.min, range.max))
                .collect(),
            floors: HashMap::new(),
            n_streams: 0,
        }
    }

    /// Validates the readings of one message received at `now_ms` (gateway clock); appends the
    /// accepted ones to `out` and counts the rest in `rejected`.
    pub fn validate(
        &mut self,
        readings: Vec<DecodedReading>,
        now_ms: i64,
        out: &mut Vec<ValidReading>,
        rejected: &mut RejectCounts,
    ) {
        for reading in readings {
            if !reading.value.is_finite() {
                rejected.add(RejectReason::NonFinite, 1);
                continue;
            }
            if !self.allowed_assets.is_empty()
                && self.allowed_assets.binary_search(&reading.asset).is_err()
            {
                rejected.add(RejectReason::UnknownAsset, 1);
                continue;
            }
            if let Some((_, min, max)) = self.ranges.iter().find(|(s, _, _)| *s == reading.sensor) {
                if reading.value < *min || reading.value > *max {
                    rejected.add(RejectReason::OutOfRange, 1);
                    continue;
                }
            }
            let (ts_ms, clock_suspect) = match reading.ts_ms {
                Some(ts_ms) => {
                    if ts_ms < now_ms.saturating_sub(self.max_age_ms) {
                        rejected.add(RejectReason::TooOld, 1);
                        continue;
                    }
                    if ts_ms > now_ms.saturating_add(self.max_future_ms) {
                        rejected.add(RejectReason::TooFuture, 1);
                        continue;
                    }
                    (ts_ms, false)
                }
                None => self.stamp(&reading.asset, &reading.sensor, now_ms),
            };
            out.push(ValidReading {
                asset: reading.asset,
                sensor: reading.sensor,
                ts_ms,
                value: reading.value,
                clock_suspect,
            });
        }
    }

    /// Receive-time stamp for a stream, never below the stream's previous stamp.
    fn stamp(&mut self, asset: &str, sensor: &str, now_ms: i64) -> (i64, bool) {
        if let Some(floor) = self
            .floors
            .get_mut(asset)
            .and_then(|sensors| sensors.get_mut(sensor))
        {
            if now_ms < *floor {
                return (*floor, true);
            }
            *floor = now_ms;
            return (now_ms, false);
        }
        if self.n_streams >= MAX_TRACKED_STREAMS {
            self.floors.clear();
            self.n_streams = 0;
        }
        self.n_streams += 1;
        self.floors
            .entry(asset.to_string())
            .or_default()
            .insert(sensor.to_string(), now_ms);
        (now_ms, false)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::config::RawRange;

    const NOW: i64 = 1_700_000_000_000;

    fn config() -> ValidationConfig {
        let mut ranges = BTreeMap::new();
        ranges.insert(
            "temp".to_string(),
            RawRange {
                min: -40.0,
                max: 150.0,
            },
        );
        ValidationConfig {
            max_age: Duration::from_secs(24 * 3600),
            max_future: Duration::from_secs(300),
            allowed_assets: vec!["p1".into(), "p2".into()],
            ranges,
            max_json_depth: 8,
            max_readings_per_message: 100,
            quarantine_file: None,
            quarantine_max_bytes: 0,
        }
    }

    fn decoded(asset: &str, sensor: &str, ts_ms: Option<i64>, value: f64) -> DecodedReading {
        DecodedReading {
            asset: asset.into(),
            sensor: sensor.into(),
            ts_ms,
            value,
        }
    }

    fn run(
        validator: &mut Validator,
        readings: Vec<DecodedReading>,
        now: i64,
    ) -> (Vec<ValidReading>, RejectCounts) {
        let mut out = Vec::new();
        let mut rejected = RejectCounts::default();
        validator.validate(readings, now, &mut out, &mut rejected);
        (out, rejected)
    }

    #[test]
    fn each_rule_rejects_with_its_own_reason() {
        let mut validator = Validator::new(&config());
        let (out, rejected) = run(
            &mut validator,
            vec![
                decoded("p1", "temp", None, f64::NAN),
                decoded("p1", "temp", None, f64::INFINITY),
                decoded("p9", "temp", None, 1.0),
                decoded("p1", "temp", None, 151.0),
                decoded("p1", "temp", Some(NOW - 24 * 3_600_000 - 1), 1.0),
                decoded("p1", "temp", Some(NOW + 300_001), 1.0),
                decoded("p1", "temp", Some(NOW + 300_000), 150.0),
                decoded("p2", "rpm", Some(NOW - 24 * 3_600_000), 1e9),
            ],
            NOW,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(rejected.get(RejectReason::NonFinite), 2);
        assert_eq!(rejected.get(RejectReason::UnknownAsset), 1);
        assert_eq!(rejected.get(RejectReason::OutOfRange), 1);
        assert_eq!(rejected.get(RejectReason::TooOld), 1);
        assert_eq!(rejected.get(RejectReason::TooFuture), 1);
    }

    #[test]
    fn receive_time_stamps_never_go_backwards_when_the_gateway_clock_jumps() {
        let mut validator = Validator::new(&config());
        let (first, _) = run(&mut validator, vec![decoded("p1", "temp", None, 1.0)], NOW);
        assert_eq!(first[0].ts_ms, NOW);
        assert!(!first[0].clock_suspect);
        let (jumped, _) = run(
            &mut validator,
            vec![decoded("p1", "temp", None, 2.0)],
            NOW - 60_000,
        );
        assert_eq!(jumped[0].ts_ms, NOW);
        assert!(jumped[0].clock_suspect);
        // Another stream has no floor yet and takes the (wrong) clock as is.
        let (other, _) = run(
            &mut validator,
            vec![decoded("p2", "temp", None, 2.0)],
            NOW - 60_000,
        );
        assert_eq!(other[0].ts_ms, NOW - 60_000);
        assert!(!other[0].clock_suspect);
        let (recovered, _) = run(
            &mut validator,
            vec![decoded("p1", "temp", None, 3.0)],
            NOW + 1,
        );
        assert_eq!(recovered[0].ts_ms, NOW + 1);
        assert!(!recovered[0].clock_suspect);
    }

    #[test]
    fn device_timestamps_are_kept_as_sent() {
        let mut validator = Validator::new(&config());
        let (out, _) = run(
            &mut validator,
            vec![
                decoded("p1", "temp", Some(NOW - 10), 1.0),
                decoded("p1", "temp", Some(NOW - 20), 1.0),
            ],
            NOW,
        );
        assert_eq!(
            out.iter().map(|r| r.ts_ms).collect::<Vec<_>>(),
            vec![NOW - 10, NOW - 20]
        );
    }
}
