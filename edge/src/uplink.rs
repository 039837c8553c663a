//! Sizing batches and request timeouts from the measured uplink rate, and reading `Retry-After`.
//!
//! A gateway's uplink may be a 64 kbit/s cellular link or a LAN. A fixed batch size and a fixed
//! whole-request timeout cannot serve both: a batch that needs longer than the timeout to upload
//! times out on every attempt and never arrives. [`Uplink`] is the pure state machine the
//! forwarder consults instead (it does no IO and reads no clock):
//!
//! - **Rate**: every delivered batch is a sample of compressed body bytes (the bytes that travel)
//!   over the request's duration. The estimate is a ratio of exponentially decayed sums (bytes /
//!   seconds, each decayed by [`RATE_DECAY`] per sample), so big batches weigh more than small
//!   ones; bodies under [`MIN_SAMPLE_BYTES`] are skipped (their time is mostly round trip).
//!   The duration includes the round trip and the cloud's commit, so the estimate errs low, which
//!   errs towards longer timeouts and smaller batches.
//! - **Batch target** (record bytes a lane may cut; the spool stops a cut there): starts at
//!   `forward.batch_initial_bytes`; each delivered batch that filled at least half of it doubles
//!   it (a small live batch proves nothing about bigger ones), up to `forward.batch_max_bytes`
//!   and up to what the measured rate uploads within `forward.request_timeout` (the compression
//!   ratio, also measured, turns record bytes into body bytes); each timeout halves it, down to
//!   [`MIN_TARGET_BYTES`]. Multiplicative increase bounded by the estimate, multiplicative decrease.
//! - **Request timeout** of a body of `n` bytes: `n / rate` × [`TIMEOUT_HEADROOM`], at least
//!   `forward.request_timeout` (the floor, also the timeout while no rate is known), doubled for
//!   each time this same batch already timed out, at most `forward.request_timeout_max`. A batch
//!   already cut keeps its seq and content (re-cutting it would break the cloud's deduplication), so
//!   a batch cut before the link turned slow still passes once its timeout has grown enough.
//!
//! [`retry_after`] reads a 429/503 answer's `Retry-After` header (delay-seconds or HTTP-date).

use std::time::{Duration, SystemTime};

/// Weight kept by the rate sums at each new sample.
pub const RATE_DECAY: f64 = 0.7;
/// Bodies smaller than this are not rate samples.
pub const MIN_SAMPLE_BYTES: usize = 1024;
/// Timeout = expected upload time × this (then floored and capped).
pub const TIMEOUT_HEADROOM: f64 = 3.0;
/// The batch target never shrinks below this (the spool still cuts at least one record).
pub const MIN_TARGET_BYTES: usize = 1024;

/// The limits [`Uplink`] works within (from `[forward]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UplinkParams {
    /// First batch target, in record bytes.
    pub initial_bytes: usize,
    /// Largest batch target, in record bytes (`forward.batch_max_bytes`).
    pub max_bytes: usize,
    /// Shortest request timeout, and the timeout while no rate is known.
    pub timeout_floor: Duration,
    /// Longest request timeout.
    pub timeout_ceiling: Duration,
}

/// Measured uplink rate, current batch target and the timeouts derived from them.
#[derive(Debug, Clone)]
pub struct Uplink {
    params: UplinkParams,
    target_bytes: usize,
    /// Decayed sums of sampled body bytes and request seconds.
    sampled_bytes: f64,
    sampled_secs: f64,
    /// Decayed sums of body bytes and record bytes of delivered batches (compression ratio).
    ratio_body: f64,
    ratio_records: f64,
}

impl Uplink {
    /// Starts at `params.initial_bytes` (clamped to the limits) with no rate known.
    pub fn new(params: UplinkParams) -> Self {
        let target_bytes = params
            .initial_bytes
            .min(params.max_bytes)
            .max(MIN_TARGET_BYTES.min(params.max_bytes));
        Self {
            params,
            target_bytes,
            sampled_bytes: 0.0,
            sampled_secs: 0.0,
            ratio_body: 0.0,
            ratio_records: 0.0,
        }
    }

    /// Record bytes the next batch may hold.
    pub fn target_bytes(&self) -> usize {
        self.target_bytes
    }

    /// The measured rate in body bytes per second, once a batch of at least
    /// [`MIN_SAMPLE_BYTES`] was delivered.
    pub fn bytes_per_second(&self) -> Option<f64> {
        (self.sampled_secs > 0.0).then(|| self.sampled_bytes / self.sampled_secs)
    }

    /// Timeout for uploading a body of `body_bytes` that already timed out `n_timeouts` times.
    pub fn timeout_for(&self, body_bytes: usize, n_timeouts: u32) -> Duration {
        let floor = self.params.timeout_floor;
        let ceiling = self.params.timeout_ceiling.max(floor);
        let expected = self.bytes_per_second().map_or(Duration::ZERO, |rate| {
            Duration::try_from_secs_f64(body_bytes as f64 / rate * TIMEOUT_HEADROOM)
                .unwrap_or(ceiling)
        });
        let base = expected.max(floor);
        base.checked_mul(1 << n_timeouts.min(20))
            .unwrap_or(ceiling)
            .min(ceiling)
    }

    /// A batch of `record_bytes` (spool payload bytes) was delivered as a body of `body_bytes` in
    /// `elapsed`: updates the rate and the compression ratio, then grows the target if the batch
    /// filled at least half of it.
    pub fn on_delivered(&mut self, record_bytes: usize, body_bytes: usize, elapsed: Duration) {
        if body_bytes >= MIN_SAMPLE_BYTES && !elapsed.is_zero() {
            self.sampled_bytes = self.sampled_bytes * RATE_DECAY + body_bytes as f64;
            self.sampled_secs = self.sampled_secs * RATE_DECAY + elapsed.as_secs_f64();
        }
        if record_bytes > 0 && body_bytes > 0 {
            self.ratio_body = self.ratio_body * RATE_DECAY + body_bytes as f64;
            self.ratio_records = self.ratio_records * RATE_DECAY + record_bytes as f64;
        }
        let mut target = if record_bytes.saturating_mul(2) >= self.target_bytes {
            self.target_bytes.saturating_mul(2)
        } else {
            self.target_bytes
        };
        if let Some(fits) = self.record_bytes_within_floor() {
            // Never beyond one floor-timeout's worth at the measured rate; this may also shrink
            // the target when the link got slower.
            target = target.min(fits);
        }
        self.target_bytes = target
            .min(self.params.max_bytes)
            .max(MIN_TARGET_BYTES.min(self.params.max_bytes));
    }

    /// A request timed out: halves the target.
    pub fn on_timeout(&mut self) {
        self.target_bytes =
            (self.target_bytes / 2).max(MIN_TARGET_BYTES.min(self.params.max_bytes));
    }

    /// Record bytes whose body the measured rate uploads within the floor timeout.
    fn record_bytes_within_floor(&self) -> Option<usize> {
        let rate = self.bytes_per_second()?;
        if self.ratio_records <= 0.0 || self.ratio_body <= 0.0 {
            return None;
        }
        let body_per_record_byte = self.ratio_body / self.ratio_records;
        let body_bytes = rate * self.params.timeout_floor.as_secs_f64();
        // `as` saturates: an absurd estimate only means "no limit from the rate".
        Some((body_bytes / body_per_record_byte) as usize)
    }
}

/// The wait a `Retry-After` header value asks for at `now`: delay-seconds (`"120"`) or an
/// HTTP-date (`"Wed, 21 Oct 2015 07:28:00 GMT"`; a date in the past is no wait). `None` when the
/// value is neither.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits to parse is "very long": the caller caps the wait anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> UplinkParams {
        UplinkParams {
            initial_bytes: 32 << 10,
            max_bytes: 1 << 20,
            timeout_floor: Duration::from_secs(10),
            timeout_ceiling: Duration::from_secs(300),
        }
    }

    #[test]
    fn without_a_measured_rate_the_target_doubles_up_to_the_max_and_timeouts_are_the_floor() {
        let mut uplink = Uplink::new(params());
        assert_eq!(uplink.target_bytes(), 32 << 10);
        assert_eq!(uplink.bytes_per_second(), None);
        assert_eq!(uplink.timeout_for(1 << 20, 0), Duration::from_secs(10));
        // Small bodies are no rate sample: the target still grows.
        for _ in 0..10 {
            let records = uplink.target_bytes();
            uplink.on_delivered(records, 500, Duration::from_millis(5));
        }
        assert_eq!(uplink.bytes_per_second(), None);
        assert_eq!(uplink.target_bytes(), 1 << 20);
    }

    #[test]
    fn batches_that_fill_less_than_half_the_target_do_not_grow_it() {
        let mut uplink = Uplink::new(params());
        for _ in 0..10 {
            uplink.on_delivered(2_000, 400, Duration::from_millis(50));
        }
        assert_eq!(uplink.target_bytes(), 32 << 10);
        uplink.on_delivered(16 << 10, 3_000, Duration::from_millis(50));
        assert_eq!(uplink.target_bytes(), 64 << 10);
    }

    #[test]
    fn on_a_fast_link_the_target_reaches_the_max_in_a_few_batches() {
        let mut uplink = Uplink::new(params());
        let mut n_batches = 0;
        while uplink.target_bytes() < 1 << 20 {
            let records = uplink.target_bytes();
            // 10 MB/s, compression 1:5.
            uplink.on_delivered(
                records,
                records / 5,
                Duration::from_secs_f64(records as f64 / 50e6),
            );
            n_batches += 1;
        }
        assert_eq!(n_batches, 5);
        let rate = uplink.bytes_per_second().unwrap();
        assert!((rate / 10e6 - 1.0).abs() < 1e-3, "{rate}");
        // 200 KiB body at 10 MB/s: 61 ms x 3 is far below the 10 s floor.
        assert_eq!(uplink.timeout_for(200 << 10, 0), Duration::from_secs(10));
    }

    #[test]
    fn on_a_64_kbit_link_the_target_settles_at_what_uploads_within_the_floor() {
        let mut uplink = Uplink::new(params());
        let rate = 8_000.0; // 64 kbit/s in body bytes per second.
        for _ in 0..20 {
            let records = uplink.target_bytes();
            let body = records / 4;
            uplink.on_delivered(records, body, Duration::from_secs_f64(body as f64 / rate));
        }
        let measured = uplink.bytes_per_second().unwrap();
        assert!((measured - rate).abs() < 1.0, "{measured}");
        // 10 s x 8 kB/s = 80 kB of body = 320 kB of records.
        let target = uplink.target_bytes();
        assert!((319_000..=321_000).contains(&target), "{target}");
        // A full 1 MiB batch cut earlier (262 KiB of body) gets 33 s x 3.
        let timeout = uplink.timeout_for(262_144, 0);
        assert_eq!(timeout.as_secs(), 98);
        // The link slows to a quarter: one delivered batch pulls the target down.
        let body = target / 4;
        uplink.on_delivered(target, body, Duration::from_secs_f64(body as f64 / 2_000.0));
        assert!(
            uplink.target_bytes() < target * 6 / 10,
            "{}",
            uplink.target_bytes()
        );
    }

    #[test]
    fn a_timeout_halves_the_target_down_to_the_minimum() {
        let mut uplink = Uplink::new(params());
        uplink.on_timeout();
        assert_eq!(uplink.target_bytes(), 16 << 10);
        for _ in 0..20 {
            uplink.on_timeout();
        }
        assert_eq!(uplink.target_bytes(), MIN_TARGET_BYTES);
        // The target never exceeds a small max, nor drops below it when the max is tiny.
        let tiny = Uplink::new(UplinkParams {
            max_bytes: 512,
            ..params()
        });
        assert_eq!(tiny.target_bytes(), 512);
    }

    #[test]
    fn the_timeout_of_a_batch_that_keeps_timing_out_doubles_up_to_the_ceiling() {
        let uplink = Uplink::new(params());
        let timeouts: Vec<u64> = (0..8)
            .map(|n| uplink.timeout_for(1 << 20, n).as_secs())
            .collect();
        assert_eq!(timeouts, vec![10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(
            uplink.timeout_for(1 << 20, u32::MAX),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        // 2015-10-21 07:28:00 UTC is `now`; 07:29:30 is 90 s later.
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-1", "1.5", "soon", "Wed, 21 Oct 2015"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }
}
