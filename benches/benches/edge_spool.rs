//! Spool append throughput, with and without fsync.
//!
//! - `append_no_sync`: appends only (frames go to a reused buffer, written out every
//!   256 KiB without fsync); the spool sits at its cap and evicts old segments, as
//!   a gateway does in a long outage with `drop_oldest`.
//! - `append_then_sync/<n>`: group commit, `n` appends then one `sync` (write +
//!   fdatasync), the agent's pattern for `n` MQTT messages per commit.
//! - `round_trip`: the whole life of 1000 records: append, one sync, cut one batch
//!   (payloads re-read from the file, cut fsynced to the ledger) and ack it (ledger
//!   fsync, segment deletion).
//! - `open_recover/16MiB`: opening (recovering) a spool holding 16 MiB of records:
//!   every segment read and checksummed, a fresh ledger snapshot and active segment
//!   written and fsynced. This is the restart cost after a crash.
//!
//! The spool lives under Cargo's target tmp dir, on the same disk as the build,
//! not in a tmpfs, so fsync costs what it costs on this machine.
//!
//! Run: `cargo bench -p fieldpulse-benches --bench edge_spool` (add `-- --quick` for
//! a fast estimate).

use std::{hint::black_box, path::Path, time::Duration};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fieldpulse_edge::spool::{FullPolicy, Lane, Spool, SpoolConfig};

/// Payload size of one record: a JSON message with a few sensors is about this big.
const PAYLOAD_BYTES: usize = 256;

fn open(dir: &Path, max_bytes: u64) -> Spool {
    let cfg = SpoolConfig {
        max_bytes,
        policy: FullPolicy::DropOldest,
        ..SpoolConfig::default()
    };
    Spool::open(dir, cfg).expect("open spool").0
}

fn payload(seed: u8) -> Vec<u8> {
    (0..PAYLOAD_BYTES)
        .map(|i| seed.wrapping_add(i as u8))
        .collect()
}

fn bench_append(c: &mut Criterion) {
    let mut group = c.benchmark_group("spool");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let payload = payload(7);

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mut spool = open(dir.path(), 32 * 1024 * 1024);
    const BATCH: u64 = 1000;
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function(
        BenchmarkId::new("append_no_sync", format!("{PAYLOAD_BYTES}B")),
        |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    black_box(spool.append(&payload, 4).expect("append"));
                }
            })
        },
    );
    drop(spool);

    for per_sync in [1u64, 64, 1024] {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let mut spool = open(dir.path(), 32 * 1024 * 1024);
        group.throughput(Throughput::Elements(per_sync));
        group.bench_function(BenchmarkId::new("append_then_sync", per_sync), |b| {
            b.iter(|| {
                for _ in 0..per_sync {
                    black_box(spool.append(&payload, 4).expect("append"));
                }
                spool.sync().expect("sync");
            })
        });
    }

    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let mut spool = open(dir.path(), 256 * 1024 * 1024);
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function(BenchmarkId::new("round_trip", BATCH), |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                spool.append(&payload, 4).expect("append");
            }
            spool.sync().expect("sync");
            let batch = spool
                .cut(Lane::Backfill, BATCH as usize, usize::MAX)
                .expect("cut")
                .expect("a batch");
            black_box(spool.ack(batch.seq).expect("ack"));
        })
    });
    group.finish();
}

fn bench_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("spool");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let max_bytes = 64 * 1024 * 1024;
    let payload = payload(3);
    let n_records = 16 * 1024 * 1024 / (PAYLOAD_BYTES as u64 + 24);
    {
        let mut spool = open(dir.path(), max_bytes);
        for _ in 0..n_records {
            spool.append(&payload, 4).expect("append");
        }
        spool.sync().expect("sync");
    }
    group.throughput(Throughput::Bytes(16 * 1024 * 1024));
    group.bench_function(BenchmarkId::new("open_recover", "16MiB"), |b| {
        b.iter(|| {
            let spool = open(dir.path(), max_bytes);
            assert_eq!(spool.stats().uncut_records, n_records);
            black_box(spool);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_append, bench_open);
criterion_main!(benches);
