//! Crash safety of the real binary: kill -9 at arbitrary moments, restart, lose nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tempfile::tempdir;

use crate::support::broker::Broker;
use crate::support::process::{spawn_edge, terminate, wait_serving, write_edge_config, EdgeFiles};
use crate::support::publisher::Publisher;
use crate::support::receiver::Receiver;
use crate::support::{wait_until, EdgeOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_100k_run_loses_no_acknowledged_reading_and_duplicates_only_whole_batches()
{
    const N_MSGS: usize = 10_000;
    const SENSORS: usize = 10;
    const ASSETS: usize = 100;
    let dir = tempdir().unwrap();
    let broker = Broker::start(dir.path(), false);
    let receiver = Receiver::start().await;
    let mut options = EdgeOptions::new(broker.port(), &receiver.url());
    let EdgeFiles {
        config_path,
        log,
        http_port,
    } = write_edge_config(dir.path(), &broker, &mut options).await;
    let mut edge = spawn_edge(&config_path, &log);

    let publisher = Arc::new(Publisher::connect(broker.port(), "publisher-crash"));
    let base_ts = fieldpulse_edge::clock::now_ms() - 3_600_000;
    let publishing = {
        let publisher = Arc::clone(&publisher);
        tokio::spawn(async move {
            for i in 0..N_MSGS {
                let k = i / ASSETS;
                let mut payload = format!("{{\"ts\":{}", base_ts + k as i64);
                for sensor in 0..SENSORS {
                    payload.push_str(&format!(",\"s{sensor}\":{k}"));
                }
                payload.push('}');
                publisher
                    .publish(
                        &format!("sensors/asset-{}", i % ASSETS),
                        payload.into_bytes(),
                    )
                    .await;
            }
        })
    };

    // Kill at progress points the edge reaches while it is busy (intake, fsync and forwarding
    // all run concurrently, so each kill lands at an arbitrary point of the pipeline).
    let total = N_MSGS * SENSORS;
    let mut kills = 0;
    for threshold in [8_000, 22_000, 36_000, 50_000, 64_000, 78_000] {
        wait_until(
            "progress before the next kill",
            Duration::from_secs(60),
            || receiver.n_readings() >= threshold,
        )
        .await;
        edge.kill().expect("kill -9 the edge");
        edge.wait().expect("reap the edge");
        kills += 1;
        edge = spawn_edge(&config_path, &log);
    }
    publishing.await.unwrap();
    publisher.wait_acked(N_MSGS, Duration::from_secs(30)).await;
    assert_eq!(
        publisher.acked().iter().filter(|acked| **acked).count(),
        N_MSGS
    );
    wait_until(
        "every acknowledged reading at the receiver",
        Duration::from_secs(60),
        || {
            receiver.with(|got| {
                let distinct: std::collections::HashSet<_> = got
                    .readings
                    .iter()
                    .map(|r| (r.asset.clone(), r.sensor.clone(), r.value as u64))
                    .collect();
                distinct.len() >= total
            })
        },
    )
    .await;
    // The last instance is up (serving /metrics) before it gets SIGTERM.
    wait_serving(http_port).await;
    let status = terminate(edge).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    assert!(kills >= 5);

    receiver.with(|got| {
        assert!(got.bad_requests.is_empty(), "{:?}", got.bad_requests);
        assert_eq!(got.duplicate_mismatches, 0, "a re-sent seq always carries the same readings");
        let mut seen: HashMap<(String, String, u64), Vec<u64>> = HashMap::new();
        for reading in &got.readings {
            seen.entry((reading.asset.clone(), reading.sensor.clone(), reading.value as u64)).or_default().push(reading.seq);
        }
        assert_eq!(seen.len(), total, "every published reading arrived");
        let twice: Vec<_> = seen.iter().filter(|(_, seqs)| seqs.len() > 1).take(5).collect();
        assert!(
            twice.is_empty(),
            "readings committed twice (only whole re-sent batches may repeat): {twice:?}; {} duplicate batches; edge log:\n{}",
            got.duplicate_batches,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    });
    let _ = Arc::try_unwrap(publisher).map(|p| p.close());
}
