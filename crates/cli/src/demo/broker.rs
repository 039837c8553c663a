//! The demo's embedded MQTT broker: `rumqttd` in-process, so a fresh machine
//! needs nothing installed. Production gateways run their own broker
//! (mosquitto, EMQX, ...); the edge treats this one exactly like those.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::Context;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Starts the broker on a free loopback port and returns its address once it
/// accepts connections. The broker lives on its own threads until the process
/// exits (rumqttd has no shutdown API).
pub fn start() -> anyhow::Result<SocketAddr> {
    // Ask the OS for a free port, then hand it to rumqttd (which binds itself).
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port for the demo broker")?;
    let server = ServerSettings {
        name: "demo-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 1 << 20,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 64,
            max_outgoing_packet_count: 500,
            max_segment_size: 16 << 20,
            max_segment_count: 8,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    };
    std::thread::Builder::new()
        .name("demo-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(err) = broker.start() {
                tracing::error!(error = %err, "Demo broker stopped.");
            }
        })
        .context("starting the demo broker thread")?;
    // Wait until the listener is up (a connection attempt succeeds).
    for _ in 0..200 {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(50)).is_ok() {
            return Ok(addr);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    anyhow::bail!("demo broker did not start listening on {addr}")
}
