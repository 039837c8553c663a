//! SIGHUP reloads the gateway token and the topic mappings of the running binary: no restart,
//! nothing lost. A file that no longer validates is refused and the running settings stay.

use std::process::Command;
use std::time::Duration;

use tempfile::tempdir;

use crate::support::broker::Broker;
use crate::support::process::{spawn_edge, terminate, wait_serving, write_edge_config, EdgeFiles};
use crate::support::publisher::Publisher;
use crate::support::receiver::Receiver;
use crate::support::{wait_until, EdgeOptions};

fn hangup(child: &std::process::Child) {
    let status = Command::new("kill")
        .arg("-HUP")
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
}

async fn metric(port: u16, name: &str) -> u64 {
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    body.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_takes_over_a_rotated_token_and_new_topic_mappings_without_losing_a_reading() {
    let dir = tempdir().unwrap();
    let broker = Broker::start(dir.path(), false);
    let receiver = Receiver::start().await;
    let mut options = EdgeOptions::new(broker.port(), &receiver.url());
    let EdgeFiles {
        config_path,
        log,
        http_port,
    } = write_edge_config(dir.path(), &broker, &mut options).await;
    let edge = spawn_edge(&config_path, &log);
    wait_serving(http_port).await;
    let publisher = Publisher::connect(broker.port(), "publisher-reload");
    let ts = fieldpulse_edge::clock::now_ms() - 60_000;
    let publish = |topic: String, i: usize| {
        let payload = format!("{{\"ts\":{},\"v\":{i}}}", ts + i as i64);
        (topic, payload.into_bytes())
    };
    for i in 0..50 {
        let (topic, payload) = publish(format!("sensors/a-{}", i % 5), i);
        publisher.publish(&topic, payload).await;
    }
    wait_until("the first readings", Duration::from_secs(20), || {
        receiver.n_readings() == 50
    })
    .await;

    // The cloud rotates the gateway's token: the old one is refused from now on, so readings
    // wait in the spool (retried) until the file has the new token and the agent gets SIGHUP.
    receiver.set_token("rotated-token");
    for i in 50..100 {
        let (topic, payload) = publish(format!("sensors/a-{}", i % 5), i);
        publisher.publish(&topic, payload).await;
    }
    publisher.wait_acked(100, Duration::from_secs(20)).await;
    wait_until(
        "a request refused for its token",
        Duration::from_secs(20),
        || receiver.with(|got| got.bad_requests.iter().any(|r| r == "auth")),
    )
    .await;
    assert_eq!(receiver.n_readings(), 50);

    // First a broken file: refused, nothing changes.
    std::fs::write(
        &config_path,
        "gateway_id = \"gw-test\"\n[spool]\nmax_bytes = 1\n",
    )
    .unwrap();
    hangup(&edge);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while metric(http_port, "fieldpulse_edge_config_reload_errors_total").await < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the broken file was not refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The new file: the rotated token, and a new mapping `line/{asset}` with sensor `temp`.
    std::fs::write(dir.path().join("token"), "rotated-token\n").unwrap();
    options.extra = "[[subscriptions]]\npattern = \"line/{asset}\"\nsensor = \"temp\"\n".into();
    let toml = options.to_toml(dir.path());
    // `to_toml` rewrites the token file: keep the rotated token.
    std::fs::write(dir.path().join("token"), "rotated-token\n").unwrap();
    std::fs::write(&config_path, toml).unwrap();
    hangup(&edge);
    wait_until(
        "the readings held back by the old token",
        Duration::from_secs(30),
        || receiver.n_readings() == 100,
    )
    .await;
    assert_eq!(
        metric(http_port, "fieldpulse_edge_config_reloads_total").await,
        1
    );
    // The new mapping is subscribed and decoded (plain numbers on `line/<asset>`).
    for i in 100..120 {
        publisher
            .publish(&format!("line/l-{}", i % 2), i.to_string().into_bytes())
            .await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while receiver.n_readings() < 120 {
        if std::time::Instant::now() > deadline {
            let metrics = reqwest::get(format!("http://127.0.0.1:{http_port}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            panic!(
                "readings on the new mapping: {} of 120 arrived; edge log:\n{}\nmetrics:\n{metrics}",
                receiver.n_readings(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    receiver.with(|got| {
        let line: Vec<_> = got
            .readings
            .iter()
            .filter(|r| r.asset.starts_with("l-"))
            .collect();
        assert_eq!(line.len(), 20);
        assert!(line.iter().all(|r| r.sensor == "temp"));
        let mut values: Vec<u64> = got.readings.iter().map(|r| r.value as u64).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), 120, "every reading once");
    });
    let status = terminate(edge).await;
    assert!(status.success(), "{status}");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !log_text.contains("rotated-token") && !log_text.contains("test-token"),
        "tokens never appear in the log:\n{log_text}"
    );
    publisher.close().await;
}
