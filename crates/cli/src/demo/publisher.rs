//! The demo's sensor publisher: replays the simulated live fleet over MQTT
//! QoS 1 at a speed-up (days of fleet time in a minute or two), in the
//! payload shapes real devices use, plus a corpus of malformed payloads the
//! edge must reject (and count) without losing anything else.
//!
//! Every payload carries the reading's own timestamp (fleet time): bare
//! numbers, which the edge stamps on receipt, cannot replay the past, so the
//! fleet uses per-sensor JSON, one JSON object per scan and protobuf
//! `ReadingBatch`es.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use fieldpulse_edge::clock::now_ms;
use fieldpulse_proto::v1::{Reading as WireReading, ReadingBatch};
use fieldpulse_proto::Message;
use fieldpulse_simulator::{Reading, SENSORS};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

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
    /// Fleet time of the last published reading, epoch ms.
    pub fleet_ms: AtomicI64,
    /// `(fleet time, wall time)` at which each distinct reading time was
    /// first published, in order (for sensor-to-Case latency).
    pub published_at: Mutex<Vec<(i64, i64)>>,
}

impl PublishStats {
    /// Wall time (epoch ms) at which readings stamped `fleet_ms` (or the next
    /// reading time after it) were published, if they were.
    pub fn wall_time_of(&self, fleet_ms: i64) -> Option<i64> {
        let at = self.published_at.lock().unwrap_or_else(|p| p.into_inner());
        let i = at.partition_point(|(ts, _)| *ts < fleet_ms);
        at.get(i).map(|(_, wall)| *wall)
    }
}

/// What the fleet replays.
#[derive(Debug)]
pub struct FleetPlan {
    /// Asset names by asset index.
    pub names: Vec<String>,
    /// Readings in time order.
    pub readings: Vec<Reading>,
    /// Fleet time the replay starts at.
    pub start_ms: i64,
    /// Fleet time the replay ends at.
    pub end_ms: i64,
    /// Wall time the replay should take (it takes longer if the broker or
    /// the edge cannot keep up: MQTT QoS 1 pushes back).
    pub duration: Duration,
}

/// The MQTT topic patterns the demo's edge subscribes with.
pub const TOPIC_PATTERNS: [&str; 2] = ["plant/{site}/{asset}/{sensor}", "sensors/{asset}"];

/// Replays the fleet until its end or `shutdown`, then waits (bounded) for
/// every PUBACK.
///
/// # Errors
/// The MQTT client's queue closed.
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

    let started = tokio::time::Instant::now();
    let span = (plan.end_ms - plan.start_ms).max(1) as f64;
    let mut last_ts = i64::MIN;
    let mut distinct_ts: u64 = 0;
    for reading in &plan.readings {
        if shutdown.is_cancelled() {
            break;
        }
        if reading.ts_ms != last_ts {
            // Pace: fleet time maps linearly onto the replay's wall time.
            let at = started
                + plan
                    .duration
                    .mul_f64(((reading.ts_ms - plan.start_ms) as f64 / span).clamp(0.0, 1.0));
            tokio::time::sleep_until(at).await;
            last_ts = reading.ts_ms;
            distinct_ts += 1;
            stats
                .published_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((reading.ts_ms, now_ms()));
            stats.fleet_ms.store(reading.ts_ms, Ordering::Relaxed);
            if distinct_ts % 50 == 7 {
                publish_malformed(&client, distinct_ts, &stats).await?;
            }
        }
        let name = &plan.names[reading.asset_idx];
        publish_scan(&client, reading.asset_idx, name, reading, &stats).await?;
    }
    // Every publish must be acknowledged by the broker before we report.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stats.pubacks.load(Ordering::Relaxed) < stats.messages.load(Ordering::Relaxed)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = client.disconnect().await;
    poller.abort();
    Ok(())
}

/// One scan of one asset, in one of three payload shapes chosen by asset
/// (every product gets every shape: products are assigned round-robin by
/// asset index, shapes by a third of it).
async fn publish_scan(
    client: &AsyncClient,
    asset_idx: usize,
    asset: &str,
    reading: &Reading,
    stats: &PublishStats,
) -> anyhow::Result<()> {
    let site = if asset_idx.is_multiple_of(2) {
        "north"
    } else {
        "south"
    };
    let ts_ms = reading.ts_ms;
    let values: Vec<(&str, f64)> = SENSORS
        .iter()
        .zip(reading.values)
        .filter_map(|(sensor, v)| v.filter(|v| v.is_finite()).map(|v| (*sensor, v)))
        .collect();
    if values.is_empty() {
        return Ok(());
    }
    let mut messages: Vec<(String, Vec<u8>)> = Vec::with_capacity(values.len());
    match (asset_idx / 3) % 3 {
        // One JSON `{"ts","value"}` message per sensor.
        0 => {
            for (sensor, value) in &values {
                let body = format!("{{\"ts\":{ts_ms},\"value\":{value}}}");
                messages.push((format!("plant/{site}/{asset}/{sensor}"), body.into_bytes()));
            }
        }
        // One JSON object with every sensor.
        1 => {
            let fields: Vec<String> = values
                .iter()
                .map(|(sensor, value)| format!("\"{sensor}\":{value}"))
                .collect();
            let body = format!("{{\"ts\":{ts_ms},{}}}", fields.join(","));
            messages.push((format!("sensors/{asset}"), body.into_bytes()));
        }
        // A protobuf ReadingBatch.
        _ => {
            let readings = values
                .iter()
                .map(|(sensor, value)| WireReading {
                    asset_id: asset.to_string(),
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
            "plant/north/pump-001/pressure_bar",
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
