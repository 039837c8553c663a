//! Decoding MQTT payloads into readings.
//!
//! Accepted forms (DESIGN.md, "Sensor input on MQTT"):
//! - a bare number: `71.2`;
//! - JSON single value: `{"ts": <RFC 3339 or epoch ms>, "value": 71.2}`;
//! - JSON multi-sensor object: `{"ts": ..., "temp": 71.2, "vib_rms": 0.31}` (every key other
//!   than `ts`, `asset` and `sensor` is a sensor);
//! - protobuf `fieldpulse.v1.ReadingBatch`.
//!
//! A missing `ts` means receive time (left as `None` here; validation stamps it). Unknown fields
//! of the single-value form are ignored. The decoder never fails: it returns the readings it
//! accepted and a [`RejectCounts`] of what it could not use. Limits: payload size, JSON nesting
//! depth (checked by a byte scan before parsing, so deep input never reaches the parser's
//! recursion), readings per message.

use std::borrow::Cow;

use fieldpulse_proto::v1::ReadingBatch;
use prost::Message;
use serde_json::Value;

use crate::config::PayloadFormat;
use crate::reject::{RejectCounts, RejectReason};
use crate::topic::TopicFields;

/// One decoded, not yet validated reading.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedReading {
    /// Asset identifier.
    pub asset: String,
    /// Sensor name.
    pub sensor: String,
    /// Device timestamp in ms since the epoch; `None` = receive time.
    pub ts_ms: Option<i64>,
    /// The value (may still be NaN or infinite; validation rejects those).
    pub value: f64,
}

/// What a payload decoded to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// Readings accepted by the decoder.
    pub readings: Vec<DecodedReading>,
    /// Readings (or whole payloads) the decoder could not use.
    pub rejected: RejectCounts,
}

/// Limits and defaults the decoder applies.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest payload decoded.
    pub max_payload_bytes: usize,
    /// Deepest JSON nesting.
    pub max_json_depth: usize,
    /// Most readings per message.
    pub max_readings: usize,
}

/// Where names come from when the payload does not carry them.
#[derive(Debug, Clone, Copy, Default)]
pub struct NameSource<'a> {
    /// Segments extracted from the topic.
    pub topic: TopicFields<'a>,
    /// The subscription's default sensor for single values.
    pub default_sensor: Option<&'a str>,
}

/// Decodes one payload.
pub fn decode(
    payload: &[u8],
    format: PayloadFormat,
    names: NameSource<'_>,
    limits: &DecodeLimits,
) -> Decoded {
    let mut out = Decoded::default();
    if payload.len() > limits.max_payload_bytes {
        out.rejected.add(RejectReason::TooLarge, 1);
        return out;
    }
    let format = match format {
        PayloadFormat::Auto => sniff(payload),
        other => other,
    };
    match format {
        PayloadFormat::Number | PayloadFormat::Auto => decode_number(payload, names, &mut out),
        PayloadFormat::Json => decode_json(payload, names, limits, &mut out),
        PayloadFormat::Protobuf => decode_protobuf(payload, names, limits, &mut out),
    }
    if out.readings.len() > limits.max_readings {
        let n = out.readings.len() as u64;
        out.readings.clear();
        out.rejected.add(RejectReason::TooManyReadings, n);
    }
    out
}

/// Picks the format of an `auto` payload: JSON when it starts with `{` or `[`, a number when it
/// is UTF-8 text that parses as one, protobuf otherwise.
fn sniff(payload: &[u8]) -> PayloadFormat {
    let trimmed = payload.trim_ascii();
    match trimmed.first() {
        Some(b'{') | Some(b'[') => PayloadFormat::Json,
        _ => match std::str::from_utf8(trimmed) {
            Ok(text) if text.parse::<f64>().is_ok() => PayloadFormat::Number,
            _ => PayloadFormat::Protobuf,
        },
    }
}

fn decode_number(payload: &[u8], names: NameSource<'_>, out: &mut Decoded) {
    let Ok(text) = std::str::from_utf8(payload) else {
        out.rejected.add(RejectReason::BadUtf8, 1);
        return;
    };
    let Ok(value) = text.trim().parse::<f64>() else {
        out.rejected.add(RejectReason::BadNumber, 1);
        return;
    };
    push_single(names, None, None, None, value, out);
}

fn decode_json(payload: &[u8], names: NameSource<'_>, limits: &DecodeLimits, out: &mut Decoded) {
    if json_depth_exceeds(payload, limits.max_json_depth) {
        out.rejected.add(RejectReason::TooDeep, 1);
        return;
    }
    let object = match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            out.rejected.add(RejectReason::WrongType, 1);
            return;
        }
        Err(_) if std::str::from_utf8(payload).is_err() => {
            out.rejected.add(RejectReason::BadUtf8, 1);
            return;
        }
        Err(_) => {
            out.rejected.add(RejectReason::BadJson, 1);
            return;
        }
    };
    let ts_ms = match object.get("ts") {
        None | Some(Value::Null) => None,
        Some(ts) => match parse_ts(ts) {
            Some(ts_ms) => Some(ts_ms),
            None => {
                out.rejected.add(RejectReason::BadTimestamp, 1);
                return;
            }
        },
    };
    let asset = match object.get("asset") {
        None | Some(Value::Null) => None,
        Some(Value::String(asset)) => Some(asset.as_str()),
        Some(_) => {
            out.rejected.add(RejectReason::WrongType, 1);
            return;
        }
    };
    let sensor = match object.get("sensor") {
        None | Some(Value::Null) => None,
        Some(Value::String(sensor)) => Some(sensor.as_str()),
        Some(_) => {
            out.rejected.add(RejectReason::WrongType, 1);
            return;
        }
    };
    if let Some(value) = object.get("value") {
        match value.as_f64() {
            Some(value) => push_single(names, asset, sensor, ts_ms, value, out),
            None => out.rejected.add(RejectReason::WrongType, 1),
        }
        return;
    }
    let Some(asset) = asset.or(names.topic.asset) else {
        out.rejected.add(RejectReason::NoAsset, 1);
        return;
    };
    let before = out.readings.len();
    for (key, value) in &object {
        if matches!(key.as_str(), "ts" | "asset" | "sensor") {
            continue;
        }
        match value.as_f64() {
            Some(value) => out.readings.push(DecodedReading {
                asset: asset.to_string(),
                sensor: key.clone(),
                ts_ms,
                value,
            }),
            None => out.rejected.add(RejectReason::WrongType, 1),
        }
    }
    if out.readings.len() == before && out.rejected.total() == 0 {
        out.rejected.add(RejectReason::Empty, 1);
    }
}

fn decode_protobuf(
    payload: &[u8],
    names: NameSource<'_>,
    limits: &DecodeLimits,
    out: &mut Decoded,
) {
    if payload.is_empty() {
        out.rejected.add(RejectReason::Empty, 1);
        return;
    }
    let batch = match ReadingBatch::decode(payload) {
        Ok(batch) => batch,
        Err(_) => {
            out.rejected.add(RejectReason::BadProtobuf, 1);
            return;
        }
    };
    if batch.readings.is_empty() {
        out.rejected.add(RejectReason::Empty, 1);
        return;
    }
    if batch.readings.len() > limits.max_readings {
        out.rejected
            .add(RejectReason::TooManyReadings, batch.readings.len() as u64);
        return;
    }
    out.readings.reserve(batch.readings.len());
    for reading in batch.readings {
        let asset = non_empty(reading.asset_id).or_else(|| names.topic.asset.map(Cow::Borrowed));
        let sensor = non_empty(reading.sensor)
            .or_else(|| names.topic.sensor.map(Cow::Borrowed))
            .or_else(|| names.default_sensor.map(Cow::Borrowed));
        let Some(asset) = asset else {
            out.rejected.add(RejectReason::NoAsset, 1);
            continue;
        };
        let Some(sensor) = sensor else {
            out.rejected.add(RejectReason::NoSensor, 1);
            continue;
        };
        out.readings.push(DecodedReading {
            asset: asset.into_owned(),
            sensor: sensor.into_owned(),
            ts_ms: (reading.ts_ms != 0).then_some(reading.ts_ms),
            value: reading.value,
        });
    }
}

fn non_empty(text: String) -> Option<Cow<'static, str>> {
    (!text.is_empty()).then_some(Cow::Owned(text))
}

fn push_single(
    names: NameSource<'_>,
    asset: Option<&str>,
    sensor: Option<&str>,
    ts_ms: Option<i64>,
    value: f64,
    out: &mut Decoded,
) {
    let Some(asset) = asset.or(names.topic.asset) else {
        out.rejected.add(RejectReason::NoAsset, 1);
        return;
    };
    let Some(sensor) = sensor.or(names.topic.sensor).or(names.default_sensor) else {
        out.rejected.add(RejectReason::NoSensor, 1);
        return;
    };
    out.readings.push(DecodedReading {
        asset: asset.to_string(),
        sensor: sensor.to_string(),
        ts_ms,
        value,
    });
}

/// Epoch milliseconds from a JSON number or an RFC 3339 string.
fn parse_ts(ts: &Value) -> Option<i64> {
    match ts {
        Value::Number(number) => {
            if let Some(ms) = number.as_i64() {
                Some(ms)
            } else {
                let ms = number.as_f64()?;
                (ms.is_finite() && ms.abs() < 9.0e15).then_some(ms as i64)
            }
        }
        Value::String(text) => parse_rfc3339_ms(text),
        _ => None,
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into epoch milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let slice = bytes.get(range)?;
        if slice.is_empty() || !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            slice
                .iter()
                .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0')),
        )
    };
    let year = digits(0..4)?;
    let month = digits(5..7)?;
    let day = digits(8..10)?;
    let hour = digits(11..13)?;
    let minute = digits(14..16)?;
    let second = digits(17..19)?;
    if bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut idx = 19;
    let mut millis = 0i64;
    if bytes.get(idx) == Some(&b'.') {
        idx += 1;
        let start = idx;
        while bytes.get(idx).is_some_and(u8::is_ascii_digit) {
            idx += 1;
        }
        if idx == start {
            return None;
        }
        let frac = &bytes[start..idx.min(start + 3)];
        millis = frac
            .iter()
            .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
        for _ in frac.len()..3 {
            millis *= 10;
        }
    }
    let offset_s = match bytes.get(idx)? {
        b'Z' | b'z' if idx + 1 == bytes.len() => 0,
        sign @ (b'+' | b'-') if idx + 6 == bytes.len() && bytes[idx + 3] == b':' => {
            let hours = digits(idx + 1..idx + 3)?;
            let minutes = digits(idx + 4..idx + 6)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// True when `{`/`[` nesting outside strings goes deeper than `max_depth`.
fn json_depth_exceeds(payload: &[u8], max_depth: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in payload {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldpulse_proto::v1::Reading;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_payload_bytes: 4096,
        max_json_depth: 8,
        max_readings: 100,
    };

    fn names<'a>(asset: Option<&'a str>, sensor: Option<&'a str>) -> NameSource<'a> {
        NameSource {
            topic: TopicFields { asset, sensor },
            default_sensor: None,
        }
    }

    fn check(payload: &[u8], asset: Option<&str>, sensor: Option<&str>) -> Decoded {
        decode(payload, PayloadFormat::Auto, names(asset, sensor), &LIMITS)
    }

    fn reading(asset: &str, sensor: &str, ts_ms: Option<i64>, value: f64) -> DecodedReading {
        DecodedReading {
            asset: asset.into(),
            sensor: sensor.into(),
            ts_ms,
            value,
        }
    }

    #[test]
    fn a_bare_number_takes_asset_and_sensor_from_the_topic() {
        let out = check(b" 71.25\n", Some("p1"), Some("temp"));
        assert_eq!(out.readings, vec![reading("p1", "temp", None, 71.25)]);
        assert_eq!(out.rejected.total(), 0);
    }

    #[test]
    fn a_bare_number_without_a_sensor_name_is_rejected() {
        let out = check(b"1.5", Some("p1"), None);
        assert!(out.readings.is_empty());
        assert_eq!(out.rejected.get(RejectReason::NoSensor), 1);
    }

    #[test]
    fn json_single_value_accepts_epoch_ms_and_rfc3339_and_ignores_unknown_fields() {
        let out = check(
            br#"{"ts": 1700000000123, "value": 3, "unit": "C"}"#,
            Some("p1"),
            Some("t"),
        );
        assert_eq!(
            out.readings,
            vec![reading("p1", "t", Some(1_700_000_000_123), 3.0)]
        );
        let out = check(
            br#"{"ts": "2023-11-14T22:13:20.5Z", "value": 1.0}"#,
            Some("p1"),
            Some("t"),
        );
        assert_eq!(out.readings[0].ts_ms, Some(1_700_000_000_500));
        let out = check(
            br#"{"ts": "2023-11-15T00:13:20+02:00", "value": 1.0}"#,
            Some("p1"),
            Some("t"),
        );
        assert_eq!(out.readings[0].ts_ms, Some(1_700_000_000_000));
    }

    #[test]
    fn json_multi_sensor_object_yields_one_reading_per_numeric_key() {
        let out = check(
            br#"{"ts": 1000, "temp": 71.2, "vib_rms": 0.31}"#,
            Some("p1"),
            None,
        );
        assert_eq!(
            out.readings,
            vec![
                reading("p1", "temp", Some(1000), 71.2),
                reading("p1", "vib_rms", Some(1000), 0.31)
            ]
        );
    }

    #[test]
    fn json_wrong_types_are_counted_per_field() {
        let out = check(
            br#"{"temp": "hot", "rpm": 1200, "x": [1]}"#,
            Some("p1"),
            None,
        );
        assert_eq!(out.readings, vec![reading("p1", "rpm", None, 1200.0)]);
        assert_eq!(out.rejected.get(RejectReason::WrongType), 2);
        let out = check(br#"{"value": true}"#, Some("p1"), Some("t"));
        assert_eq!(out.rejected.get(RejectReason::WrongType), 1);
        let out = check(br#"{"ts": "yesterday", "value": 1}"#, Some("p1"), Some("t"));
        assert_eq!(out.rejected.get(RejectReason::BadTimestamp), 1);
    }

    #[test]
    fn deep_json_is_rejected_before_parsing() {
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let out = decode(
            deep.as_bytes(),
            PayloadFormat::Json,
            names(Some("a"), Some("s")),
            &DecodeLimits {
                max_payload_bytes: 1 << 20,
                ..LIMITS
            },
        );
        assert_eq!(out.rejected.get(RejectReason::TooDeep), 1);
        let nested = br#"{"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}"#;
        assert_eq!(
            check(nested, Some("a"), None)
                .rejected
                .get(RejectReason::TooDeep),
            1
        );
    }

    #[test]
    fn huge_numbers_decode_to_infinity_or_fail_as_json() {
        let out = check(b"1e400", Some("a"), Some("s"));
        assert_eq!(out.readings.len(), 1);
        assert!(out.readings[0].value.is_infinite());
        let out = check(br#"{"value": 1e400}"#, Some("a"), Some("s"));
        assert_eq!(out.readings.len() as u64 + out.rejected.total(), 1);
        assert!(out.readings.iter().all(|r| r.value.is_infinite()));
    }

    #[test]
    fn protobuf_reading_batches_decode_and_fill_names_from_the_topic() {
        let batch = ReadingBatch {
            readings: vec![
                Reading {
                    asset_id: "".into(),
                    sensor: "temp".into(),
                    ts_ms: 5,
                    value: 1.0,
                },
                Reading {
                    asset_id: "other".into(),
                    sensor: "".into(),
                    ts_ms: 0,
                    value: 2.0,
                },
            ],
        };
        let out = check(&batch.encode_to_vec(), Some("p1"), Some("rpm"));
        assert_eq!(
            out.readings,
            vec![
                reading("p1", "temp", Some(5), 1.0),
                reading("other", "rpm", None, 2.0)
            ]
        );
    }

    #[test]
    fn truncated_protobuf_and_invalid_utf8_are_counted_rejections() {
        let batch = ReadingBatch {
            readings: vec![Reading {
                asset_id: "a".into(),
                sensor: "s".into(),
                ts_ms: 5,
                value: 1.0,
            }],
        };
        let bytes = batch.encode_to_vec();
        let out = check(&bytes[..bytes.len() - 3], None, None);
        assert_eq!(out.rejected.get(RejectReason::BadProtobuf), 1);
        let out = check(&[0xff, 0xfe, 0xfd], Some("a"), Some("s"));
        assert_eq!(out.rejected.total(), 1);
        let out = decode(
            b"\xff12",
            PayloadFormat::Number,
            names(Some("a"), Some("s")),
            &LIMITS,
        );
        assert_eq!(out.rejected.get(RejectReason::BadUtf8), 1);
        let out = check(b"{\"value\": \"\xff\"}", Some("a"), Some("s"));
        assert_eq!(out.rejected.get(RejectReason::BadUtf8), 1);
    }

    #[test]
    fn oversized_payloads_and_too_many_readings_are_rejected() {
        let big = vec![b'1'; 5000];
        assert_eq!(
            check(&big, Some("a"), Some("s"))
                .rejected
                .get(RejectReason::TooLarge),
            1
        );
        let mut object = String::from("{");
        for idx in 0..101 {
            object.push_str(&format!("\"s{idx}\": 1,"));
        }
        object.push_str("\"last\": 2}");
        let out = check(object.as_bytes(), Some("a"), None);
        assert!(out.readings.is_empty());
        assert_eq!(out.rejected.get(RejectReason::TooManyReadings), 102);
    }

    #[test]
    fn rfc3339_parsing_rejects_malformed_stamps() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2000-02-29T12:00:00.123456Z"),
            Some(951_825_600_123)
        );
        for bad in [
            "2000-13-01T00:00:00Z",
            "2000-01-01 00:00:00",
            "2000-01-01T00:00:00+0100",
            "x",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }
}
