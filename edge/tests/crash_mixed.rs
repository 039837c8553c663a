//! kill -9 of the real binary, repeatedly, with the real cloud ingest behind it and the traffic
//! a gateway really sees: QoS 1 and QoS 0 publishers mixed, devices that re-publish the same
//! timestamped payload, and timestamp-less payloads. Asserted as exact sets against the ingest
//! log: every reading of an acknowledged QoS 1 message exactly once, QoS 0 readings at most once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tempfile::tempdir;

use crate::support::broker::Broker;
use crate::support::cloud::RealCloud;
use crate::support::process::{spawn_edge, terminate, wait_serving, write_edge_config, EdgeFiles};
use crate::support::publisher::Publisher;
use crate::support::{wait_until, EdgeOptions};

/// Messages published; each index `i` is one of four kinds (`i % 4`).
const N_MSGS: usize = 8_000;
const ASSETS: usize = 40;

/// What message `i` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// QoS 1, device timestamp, a new reading.
    Stamped,
    /// QoS 1, the previous message's topic and payload again (a device re-publishing).
    Republished,
    /// QoS 1 without timestamp: a new reading stamped at receive time.
    Unstamped,
    /// QoS 0, device timestamp.
    AtMostOnce,
}

fn kind(i: usize) -> Kind {
    match i % 4 {
        0 => Kind::Stamped,
        1 => Kind::Republished,
        2 => Kind::Unstamped,
        _ => Kind::AtMostOnce,
    }
}

/// Topic and payload of message `i` (a republished message repeats message `i - 1`).
fn message(i: usize, base_ts: i64) -> (String, String) {
    match kind(i) {
        Kind::Republished => message(i - 1, base_ts),
        Kind::Stamped => (
            format!("sensors/st-{}", i % ASSETS),
            format!("{{\"ts\":{},\"v\":{i}}}", base_ts + i as i64),
        ),
        Kind::Unstamped => (format!("plant/s1/un-{}/v", i % ASSETS), i.to_string()),
        Kind::AtMostOnce => (
            format!("sensors/q0-{}", i % ASSETS),
            format!("{{\"ts\":{},\"v\":{i}}}", base_ts + i as i64),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_mixed_qos_republished_and_unstamped_payloads_keeps_an_exact_set_in_the_cloud()
{
    let dir = tempdir().unwrap();
    let broker = Broker::start(dir.path(), false);
    let mut cloud = RealCloud::start(dir.path()).await;
    let mut options = EdgeOptions::new(broker.port(), &cloud.url);
    options.batch_max_records = 200;
    let EdgeFiles {
        config_path,
        log,
        http_port,
    } = write_edge_config(dir.path(), &broker, &mut options).await;
    let mut edge = spawn_edge(&config_path, &log);

    let publisher = Arc::new(Publisher::connect(broker.port(), "publisher-crash-mixed"));
    let base_ts = fieldpulse_edge::clock::now_ms() - 3_600_000;
    let publishing = {
        let publisher = Arc::clone(&publisher);
        tokio::spawn(async move {
            for i in 0..N_MSGS {
                let (topic, payload) = message(i, base_ts);
                if kind(i) == Kind::AtMostOnce {
                    publisher.publish_qos0(&topic, payload.into_bytes()).await;
                } else {
                    publisher.publish(&topic, payload.into_bytes()).await;
                }
                if i % 500 == 0 {
                    // Spread the run over the kills.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    let mut kills = 0;
    for threshold in [600, 1_500, 2_400, 3_300] {
        wait_until(
            "progress before the next kill",
            Duration::from_secs(60),
            || cloud.ingest.stats().readings_ingested >= threshold,
        )
        .await;
        edge.kill().expect("kill -9 the edge");
        edge.wait().expect("reap the edge");
        kills += 1;
        edge = spawn_edge(&config_path, &log);
    }
    publishing.await.unwrap();
    let n_qos1 = (0..N_MSGS).filter(|&i| kind(i) != Kind::AtMostOnce).count();
    publisher.wait_acked(n_qos1, Duration::from_secs(30)).await;

    // Expected: every QoS 1 reading once; keyed without the timestamp for unstamped ones.
    let mut must: HashSet<(String, u64)> = HashSet::new();
    let mut may: HashSet<(String, u64)> = HashSet::new();
    for i in 0..N_MSGS {
        let (topic, _) = message(i, base_ts);
        let asset = topic
            .split('/')
            .nth(if kind(i) == Kind::Unstamped { 2 } else { 1 });
        let key = (asset.unwrap().to_string(), i as u64);
        match kind(i) {
            Kind::Stamped | Kind::Unstamped => {
                must.insert(key);
            }
            Kind::AtMostOnce => {
                may.insert(key);
            }
            Kind::Republished => {}
        }
    }
    let by_asset_value = |counts: &crate::support::cloud::ReadingCounts| {
        let mut seen: BTreeMap<(String, u64), u32> = BTreeMap::new();
        for ((asset, _, _, bits), n) in counts {
            *seen
                .entry((asset.clone(), f64::from_bits(*bits) as u64))
                .or_default() += n;
        }
        seen
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = by_asset_value(&cloud.readings());
        if must.iter().all(|key| seen.contains_key(key)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "QoS 1 readings missing from the cloud: {:?}; edge log:\n{}",
            must.iter()
                .filter(|key| !seen.contains_key(*key))
                .take(10)
                .collect::<Vec<_>>(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_serving(http_port).await;
    let status = terminate(edge).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    assert_eq!(kills, 4);

    let seen = by_asset_value(&cloud.readings());
    let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).take(10).collect();
    assert!(
        twice.is_empty(),
        "readings in the cloud more than once: {twice:?}; edge log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let unexpected: Vec<_> = seen
        .keys()
        .filter(|key| !must.contains(*key) && !may.contains(*key))
        .take(10)
        .collect();
    assert!(
        unexpected.is_empty(),
        "readings nobody published: {unexpected:?}"
    );
    let qos0 = seen.keys().filter(|key| may.contains(*key)).count();
    assert!(qos0 > 0, "QoS 0 readings flow too");
    cloud.stop().await;
    let _ = Arc::try_unwrap(publisher).map(|p| p.close());
}
