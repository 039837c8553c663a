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
//! empty. Every receive-stamped reading is marked `receive_stamped`.
//!
//! **Holds.** When the agent itself holds messages back (the spool refused an append, so the
//! broker keeps them unacknowledged: policy `backpressure`, or a spool that cannot be written),
//! the messages that arrive afterwards are late because of the agent, not the device. From the
//! start of such a hold until the intake has caught up, `max_age` is counted from the hold's
//! start instead of the receive time, so a reading that was fresh when the agent stopped taking
//! messages is not rejected as `too_old` however long the hold lasted; every reading received
//! meanwhile is marked `held_back` (a receive stamp is then late by up to the hold's length).
//! Catching up is taken to last as long as the hold did, and at least [`MIN_CATCH_UP_MS`]; a new
//! hold within that window continues the same episode. The hold lives in memory: after a restart
//! held messages are judged against the receive time again.
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

/// Shortest catch-up window after a hold ends (see the module docs).
pub const MIN_CATCH_UP_MS: i64 = 60_000;

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
    /// True when the device sent no timestamp and the edge stamped the reading at receive time.
    pub receive_stamped: bool,
    /// True when the reading arrived while the agent held messages back or was catching up after
    /// such a hold (see the module docs).
    pub held_back: bool,
}

/// The agent held messages back from `since_ms`; `ended_ms` once it takes messages again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    since_ms: i64,
    ended_ms: Option<i64>,
}

impl Hold {
    /// True while the hold lasts or its catch-up window is open at `now_ms`.
    fn open_at(&self, now_ms: i64) -> bool {
        match self.ended_ms {
            None => true,
            Some(ended) => {
                let window = ended.saturating_sub(self.since_ms).max(MIN_CATCH_UP_MS);
                now_ms <= ended.saturating_add(window)
            }
        }
    }
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
    hold: Option<Hold>,
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
            hold: None,
        }
    }

    /// The agent stopped taking messages at `now_ms` (the spool refused an append). Continues
    /// the current episode when its catch-up window is still open.
    pub fn hold_started(&mut self, now_ms: i64) {
        match &mut self.hold {
            Some(hold) if hold.open_at(now_ms) => hold.ended_ms = None,
            _ => {
                self.hold = Some(Hold {
                    since_ms: now_ms,
                    ended_ms: None,
                });
            }
        }
    }

    /// The agent takes messages again at `now_ms` (an append succeeded).
    pub fn hold_ended(&mut self, now_ms: i64) {
        if let Some(hold) = &mut self.hold {
            if hold.ended_ms.is_none() {
                hold.ended_ms = Some(now_ms);
            }
        }
    }

    /// True while a hold lasts or the intake is catching up after one.
    pub fn is_holding(&self, now_ms: i64) -> bool {
        self.hold.is_some_and(|hold| hold.open_at(now_ms))
    }

    /// The time `max_age` is counted from, and whether a hold applies.
    fn age_reference(&mut self, now_ms: i64) -> (i64, bool) {
        match self.hold {
            Some(hold) if hold.open_at(now_ms) => (hold.since_ms.min(now_ms), true),
            Some(_) => {
                self.hold = None;
                (now_ms, false)
            }
            None => (now_ms, false),
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
        let (age_reference, held_back) = self.age_reference(now_ms);
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
            let receive_stamped = reading.ts_ms.is_none();
            let (ts_ms, clock_suspect) = match reading.ts_ms {
                Some(ts_ms) => {
                    if ts_ms < age_reference.saturating_sub(self.max_age_ms) {
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
                receive_stamped,
                held_back,
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
    fn readings_held_back_by_the_agent_are_judged_by_the_hold_start_not_their_late_arrival() {
        const HOUR: i64 = 3_600_000;
        let mut validator = Validator::new(&config());
        // Published at NOW, held at the broker for 30 h because the agent's spool was full.
        validator.hold_started(NOW);
        let later = NOW + 30 * HOUR;
        validator.hold_ended(later);
        let (out, rejected) = run(
            &mut validator,
            vec![
                decoded("p1", "temp", Some(NOW - 60_000), 1.0),
                decoded("p1", "temp", None, 2.0),
                // Too old already when the hold began.
                decoded("p1", "temp", Some(NOW - 25 * HOUR), 3.0),
            ],
            later + 1,
        );
        assert_eq!(rejected.get(RejectReason::TooOld), 1);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|r| r.held_back));
        assert!(!out[0].receive_stamped);
        assert!(out[1].receive_stamped);
        assert_eq!(out[1].ts_ms, later + 1);
        // The catch-up window lasts as long as the hold did; then max_age counts from now again.
        assert!(validator.is_holding(later + 30 * HOUR));
        let (out, rejected) = run(
            &mut validator,
            vec![decoded("p1", "temp", Some(NOW), 1.0)],
            later + 30 * HOUR + 1,
        );
        assert!(out.is_empty());
        assert_eq!(rejected.get(RejectReason::TooOld), 1);
        assert!(!validator.is_holding(later + 30 * HOUR + 1));
    }

    #[test]
    fn a_new_hold_during_catch_up_continues_the_episode_and_short_holds_catch_up_for_a_minute() {
        let mut validator = Validator::new(&config());
        validator.hold_started(NOW);
        validator.hold_ended(NOW + 1_000);
        validator.hold_started(NOW + 30_000);
        validator.hold_ended(NOW + 31_000);
        assert!(validator.is_holding(NOW + 31_000 + MIN_CATCH_UP_MS));
        assert!(!validator.is_holding(NOW + 31_000 + MIN_CATCH_UP_MS + 1));
        let (out, _) = run(
            &mut validator,
            vec![decoded("p1", "temp", None, 1.0)],
            NOW + 10 * MIN_CATCH_UP_MS,
        );
        assert!(out[0].receive_stamped && !out[0].held_back);
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
