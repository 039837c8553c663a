//! The built `fieldpulse-edge` binary as a separate process, for crash tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::broker::{free_port, Broker};
use super::EdgeOptions;

/// The files of an edge run as a process, and its `/metrics` port.
pub struct EdgeFiles {
    /// The config file (`<dir>/edge.toml`).
    pub config_path: PathBuf,
    /// Its log (`<dir>/edge.log`).
    pub log: PathBuf,
    /// Where it serves `/metrics` and `/healthz`.
    pub http_port: u16,
}

/// Writes `options` (with `/metrics` on a free port) to `<dir>/edge.toml` and prepares the
/// edge's persistent session on `broker`, so nothing published before it starts is lost.
pub async fn write_edge_config(
    dir: &Path,
    broker: &Broker,
    options: &mut EdgeOptions,
) -> EdgeFiles {
    let http_port = free_port();
    options.http_listen = Some(format!("127.0.0.1:{http_port}"));
    let config_path = dir.join("edge.toml");
    std::fs::write(&config_path, options.to_toml(dir)).expect("write edge.toml");
    broker
        .prepare_session(
            &options.config(dir).mqtt.client_id,
            &["plant/+/+/+", "sensors/+"],
        )
        .await;
    EdgeFiles {
        config_path,
        log: dir.join("edge.log"),
        http_port,
    }
}

/// Starts `fieldpulse-edge run --config <config>`, appending its log (warn and up) to `log`.
pub fn spawn_edge(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open edge log");
    Command::new(env!("CARGO_BIN_EXE_fieldpulse-edge"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("FIELDPULSE_EDGE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn fieldpulse-edge")
}

/// Sends SIGTERM and waits for the exit status (bounded).
pub async fn terminate(mut child: Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait edge") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "edge did not exit within 20 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the edge serves `/metrics` on `port`.
pub async fn wait_serving(port: u16) {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while http.get(&url).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "edge never served /metrics"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
