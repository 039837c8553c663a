//! The edge agent's CPU per reading: payload decoding + validation, and batch encoding.
//!
//! - `decode_validate/<format>`: one MQTT payload through `payload::decode` and the validator,
//!   then into the spool record layout (`envelope::encode`): the writer's work per message
//!   (without the fsync, which `edge_spool` measures).
//! - `batch_encode_compress/<n>_records_x_8`: building a columnar `Batch` from spool records
//!   (1000 streams), protobuf encoding and zstd level 3: the forwarder's work per batch. The
//!   wire size per reading is printed once.
//!
//! Run: `cargo bench -p fieldpulse-benches --bench edge_encode` (add `-- --quick` for a fast
//! estimate). Throughput is in readings.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fieldpulse_edge::batch::BatchBuilder;
use fieldpulse_edge::config::{PayloadFormat, ValidationConfig};
use fieldpulse_edge::envelope;
use fieldpulse_edge::payload::{decode, DecodeLimits, NameSource};
use fieldpulse_edge::reject::RejectCounts;
use fieldpulse_edge::topic::TopicFields;
use fieldpulse_edge::validate::{ValidReading, Validator};
use fieldpulse_proto::v1::{Reading, ReadingBatch};
use prost::Message;

const NOW_MS: i64 = 1_700_000_000_000;

fn validation() -> ValidationConfig {
    ValidationConfig {
        max_age: std::time::Duration::from_secs(86_400),
        max_future: std::time::Duration::from_secs(300),
        allowed_assets: Vec::new(),
        ranges: Default::default(),
        max_json_depth: 8,
        max_readings_per_message: 10_000,
        quarantine_file: None,
        quarantine_max_bytes: 0,
    }
}

fn payloads() -> Vec<(&'static str, Vec<u8>, u64)> {
    let sensors = [
        "temp", "vib_rms", "rpm", "current", "pressure", "flow", "oil_temp", "humidity",
    ];
    let mut multi = format!("{{\"ts\":{}", NOW_MS - 1000);
    for (idx, sensor) in sensors.iter().enumerate() {
        multi.push_str(&format!(",\"{sensor}\":{}.{}", 70 + idx, idx * 7));
    }
    multi.push('}');
    let protobuf = ReadingBatch {
        readings: sensors
            .iter()
            .enumerate()
            .map(|(idx, sensor)| Reading {
                asset_id: String::new(),
                sensor: sensor.to_string(),
                ts_ms: NOW_MS - 1000,
                value: 70.0 + idx as f64,
            })
            .collect(),
    }
    .encode_to_vec();
    vec![
        ("number", b"71.25".to_vec(), 1),
        (
            "json_single",
            format!("{{\"ts\":{},\"value\":71.25}}", NOW_MS - 1000).into_bytes(),
            1,
        ),
        ("json_8_sensors", multi.into_bytes(), 8),
        ("protobuf_8_readings", protobuf, 8),
    ]
}

fn decode_validate(c: &mut Criterion) {
    let limits = DecodeLimits {
        max_payload_bytes: 256 << 10,
        max_json_depth: 8,
        max_readings: 10_000,
    };
    let names = NameSource {
        topic: TopicFields {
            asset: Some("pump-17"),
            sensor: Some("temp"),
        },
        default_sensor: None,
    };
    let mut group = c.benchmark_group("decode_validate");
    for (name, payload, n_readings) in payloads() {
        group.throughput(Throughput::Elements(n_readings));
        let mut validator = Validator::new(&validation());
        let mut valid: Vec<ValidReading> = Vec::new();
        let mut record = Vec::new();
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let decoded = decode(black_box(&payload), PayloadFormat::Auto, names, &limits);
                let mut rejected = decoded.rejected;
                valid.clear();
                validator.validate(decoded.readings, NOW_MS, &mut valid, &mut rejected);
                let hash = envelope::message_hash("plant/s1/pump-17/temp", &payload);
                envelope::encode(7, hash, NOW_MS, &valid, &mut record);
                assert_eq!(rejected, RejectCounts::default());
                black_box(record.len())
            })
        });
    }
    group.finish();
}

/// Spool records of 8 readings each over 125 assets (1000 streams), values a noisy signal with
/// two decimals (a fixed-seed xorshift), so compression sees realistic entropy.
fn records(n_records: usize) -> Vec<Vec<u8>> {
    let sensors = [
        "temp", "vib_rms", "rpm", "current", "pressure", "flow", "oil_temp", "humidity",
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 2000) as f64 / 100.0 - 10.0
    };
    (0..n_records)
        .map(|idx| {
            let asset = format!("pump-{}", idx % 125);
            let readings: Vec<ValidReading> = sensors
                .iter()
                .enumerate()
                .map(|(sensor_idx, sensor)| ValidReading {
                    asset: asset.clone(),
                    sensor: sensor.to_string(),
                    ts_ms: NOW_MS + (idx / 125) as i64 * 1000,
                    value: 50.0 + 10.0 * sensor_idx as f64 + noise(),
                    clock_suspect: false,
                    receive_stamped: false,
                    held_back: false,
                })
                .collect();
            let mut out = Vec::new();
            envelope::encode(idx as u16, idx as u64, NOW_MS, &readings, &mut out);
            out
        })
        .collect()
}

fn batch_encode_compress(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_encode_compress");
    group.sample_size(20);
    for n_records in [1000usize, 5000] {
        let records = records(n_records);
        let n_readings = (n_records * 8) as u64;
        let build = || {
            let mut builder = BatchBuilder::new("gw-1", 1, 1, false, NOW_MS);
            for record in &records {
                builder.add_record(record).expect("valid record");
            }
            builder.encode(3).expect("zstd")
        };
        let sample = build();
        eprintln!(
            "batch of {n_records} records x 8 readings: {} bytes protobuf, {} bytes zstd, {:.2} bytes/reading on the wire",
            sample.encoded_len,
            sample.body.len(),
            sample.body.len() as f64 / n_readings as f64
        );
        group.throughput(Throughput::Elements(n_readings));
        group.bench_function(
            BenchmarkId::from_parameter(format!("{n_records}_records_x_8")),
            |b| b.iter(|| black_box(build().body.len())),
        );
    }
    group.finish();
}

criterion_group!(benches, decode_validate, batch_encode_compress);
criterion_main!(benches);
