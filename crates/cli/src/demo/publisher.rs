//! The demo's sensor publisher: a small fleet publishing over MQTT QoS 1 in
//! the payload shapes real devices use, plus a corpus of malformed payloads
//! the edge must reject (and count) without losing anything else.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fieldpulse_edge::clock::now_ms;
use fieldpulse_proto::v1::{Reading, ReadingBatch};
use fieldpulse_proto::Message;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

/// Sensors every demo asset carries, with a nominal level and noise scale.
const SENSORS: [(&str, f64, f64); 4] = [
    ("temp", 65.0, 0.8),
    ("vib_rms", 0.35, 0.03),
    ("pressure", 5.2, 0.05),
    ("current", 14.0, 0.4),
];

/// What the publisher sent, for the summary's exact accounting.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// MQTT messages published.
    pub messages: AtomicU64,
    /// Valid readings inside those messages (what must arrive in the cloud).
    pub valid_readings: AtomicU64,
    /// Malformed payloads published on purpose (each must be rejected).
    pub malformed_messages: AtomicU64,
    /// PUBACKs received from the broker.
    pub pubacks: AtomicU64,
}

/// How the fleet publishes.
#[derive(Debug, Clone)]
pub struct FleetPlan {
    /// Number of assets.
    pub n_assets: usize,
    /// Interval between scans of every asset.
    pub tick: Duration,
    /// How long to publish.
    pub duration: Duration,
    /// RNG seed (values only; the payload mix is fixed).
    pub seed: u64,
}

/// The MQTT topic patterns the demo's edge subscribes with.
pub const TOPIC_PATTERNS: [&str; 2] = ["plant/{site}/{asset}/{sensor}", "sensors/{asset}"];

/// Publishes the fleet until `plan.duration` elapsed or `shutdown`, then waits
/// (bounded) for every PUBACK.
///
/// # Errors
/// Broker connection failures that outlast the publish window.
pub async fn run(
    broker: SocketAddr,
    plan: FleetPlan,
    stats: Arc<PublishStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut options = MqttOptions::new(
        "fieldpulse-demo-sensors",
        broker.ip().to_string(),
        broker.port(),
    );
    options
        .set_keep_alive(Duration::from_secs(10))
        .set_inflight(200);
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    let poll_stats = Arc::clone(&stats);
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    poll_stats.pubacks.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "Demo publisher lost the broker; reconnecting.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });

    let mut rng = SmallRng::seed_from_u64(plan.seed);
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(plan.tick);
    let mut tick_idx: u64 = 0;
    while started.elapsed() < plan.duration && !shutdown.is_cancelled() {
        ticker.tick().await;
        let now_ms = now_ms();
        let phase = tick_idx as f64 * plan.tick.as_secs_f64() / 10.0 * std::f64::consts::TAU;
        for asset_idx in 0..plan.n_assets {
            let values: Vec<f64> = SENSORS
                .iter()
                .map(|(_, level, noise)| {
                    let cycle = 1.0 + 0.03 * (phase + asset_idx as f64).sin();
                    level * cycle + noise * (rng.gen::<f64>() - 0.5) * 2.0
                })
                .collect();
            publish_scan(&client, asset_idx, now_ms, &values, &stats).await?;
        }
        if tick_idx % 50 == 7 {
            publish_malformed(&client, tick_idx, &stats).await?;
        }
        tick_idx += 1;
    }
    // Every publish must be acknowledged by the broker before we report.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.pubacks.load(Ordering::Relaxed) < stats.messages.load(Ordering::Relaxed)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = client.disconnect().await;
    poller.abort();
    Ok(())
}

fn asset_name(asset_idx: usize) -> (String, &'static str) {
    let site = if asset_idx.is_multiple_of(2) {
        "north"
    } else {
        "south"
    };
    (format!("pump-{:03}", asset_idx + 1), site)
}

/// One scan of one asset, in one of four payload shapes chosen by asset.
async fn publish_scan(
    client: &AsyncClient,
    asset_idx: usize,
    ts_ms: i64,
    values: &[f64],
    stats: &PublishStats,
) -> anyhow::Result<()> {
    let (asset, site) = asset_name(asset_idx);
    let mut messages: Vec<(String, Vec<u8>)> = Vec::with_capacity(SENSORS.len());
    match asset_idx % 4 {
        // One JSON `{"ts","value"}` message per sensor.
        0 => {
            for ((sensor, ..), value) in SENSORS.iter().zip(values) {
                let body = format!("{{\"ts\":{ts_ms},\"value\":{value:.4}}}");
                messages.push((format!("plant/{site}/{asset}/{sensor}"), body.into_bytes()));
            }
        }
        // Bare numbers, stamped by the edge on receipt.
        1 => {
            for ((sensor, ..), value) in SENSORS.iter().zip(values) {
                messages.push((
                    format!("plant/{site}/{asset}/{sensor}"),
                    format!("{value:.4}").into_bytes(),
                ));
            }
        }
        // One JSON object with every sensor.
        2 => {
            let fields: Vec<String> = SENSORS
                .iter()
                .zip(values)
                .map(|((sensor, ..), value)| format!("\"{sensor}\":{value:.4}"))
                .collect();
            let body = format!("{{\"ts\":{ts_ms},{}}}", fields.join(","));
            messages.push((format!("sensors/{asset}"), body.into_bytes()));
        }
        // A protobuf ReadingBatch.
        _ => {
            let readings = SENSORS
                .iter()
                .zip(values)
                .map(|((sensor, ..), value)| Reading {
                    asset_id: asset.clone(),
                    sensor: (*sensor).to_string(),
                    ts_ms,
                    value: *value,
                })
                .collect();
            messages.push((
                format!("sensors/{asset}"),
                ReadingBatch { readings }.encode_to_vec(),
            ));
        }
    }
    for (topic, body) in messages {
        client
            .publish(topic, QoS::AtLeastOnce, false, body)
            .await
            .context("queueing a demo publish")?;
        stats.messages.fetch_add(1, Ordering::Relaxed);
    }
    stats
        .valid_readings
        .fetch_add(values.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Payloads a real fleet produces by accident: each one must be rejected.
async fn publish_malformed(
    client: &AsyncClient,
    tick_idx: u64,
    stats: &PublishStats,
) -> anyhow::Result<()> {
    let corpus: [(&str, Vec<u8>); 5] = [
        ("plant/north/pump-001/temp", b"NaN".to_vec()),
        (
            "plant/north/pump-001/temp",
            b"{\"ts\":1,\"value\":\"hot\"}".to_vec(),
        ),
        ("plant/south/pump-002/vib_rms", vec![0xff, 0xfe, 0x00, 0x9c]),
        (
            "sensors/pump-003",
            b"{\"ts\": \"yesterday\", \"temp\": ".to_vec(),
        ),
        (
            "plant/north/pump-001/pressure",
            format!("1e{}", 300 + tick_idx % 10).into_bytes(),
        ),
    ];
    for (topic, body) in corpus {
        client
            .publish(topic, QoS::AtLeastOnce, false, body)
            .await
            .context("queueing a malformed demo publish")?;
        stats.messages.fetch_add(1, Ordering::Relaxed);
        stats.malformed_messages.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
