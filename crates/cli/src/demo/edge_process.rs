//! The demo's edge agent as a separate process (`fieldpulse edge --config F`),
//! so it can be killed with SIGKILL mid-run and restarted on the same spool, as
//! a gateway losing power would be. Its counters are read from its Prometheus
//! `/metrics` endpoint, as an operator would read them.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How often `/metrics` is read: the counters of a killed life are those of its last read.
const SCRAPE_EVERY: Duration = Duration::from_millis(200);

/// Edge counters (summed over the agent's lives) and its current gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeCounters {
    /// Readings decoded or rejected.
    pub readings_received: u64,
    /// Readings made durable in the spool.
    pub readings_spooled: u64,
    /// Readings the cloud acknowledged.
    pub readings_forwarded: u64,
    /// Rejected readings by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Accepted readings lost (all reasons).
    pub dropped: u64,
    /// MQTT messages recognised as broker redeliveries and skipped.
    pub messages_duplicate: u64,
    /// Batches the cloud acknowledged.
    pub batches_acked: u64,
    /// Of those, sent as backlog.
    pub batches_historical: u64,
    /// Failed send attempts.
    pub send_failures: u64,
    /// Compressed bytes sent.
    pub wire_bytes: u64,
    /// Gauge: records in the spool not yet cut into a batch.
    pub spool_records_uncut: u64,
    /// Gauge: connected and subscribed to the broker.
    pub mqtt_connected: bool,
}

impl EdgeCounters {
    /// Reads the counters from a Prometheus text exposition.
    pub fn from_prometheus(text: &str) -> Self {
        let samples = parse_samples(text);
        let get = |name: &str| samples.get(name).copied().unwrap_or(0.0) as u64;
        let labelled = |metric: &str| -> BTreeMap<String, u64> {
            let prefix = format!("{metric}{{reason=\"");
            samples
                .iter()
                .filter_map(|(key, value)| {
                    let reason = key.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                    Some((reason.to_string(), *value as u64))
                })
                .collect()
        };
        Self {
            readings_received: get("fieldpulse_edge_readings_received_total"),
            readings_spooled: get("fieldpulse_edge_readings_spooled_total"),
            readings_forwarded: get("fieldpulse_edge_readings_forwarded_total"),
            rejected: labelled("fieldpulse_edge_readings_rejected_total"),
            dropped: labelled("fieldpulse_edge_readings_dropped_total")
                .values()
                .sum(),
            messages_duplicate: get("fieldpulse_edge_mqtt_messages_duplicate_total"),
            batches_acked: get("fieldpulse_edge_batches_acked_total"),
            batches_historical: get("fieldpulse_edge_batches_historical_total"),
            send_failures: get("fieldpulse_edge_send_failures_total"),
            wire_bytes: get("fieldpulse_edge_wire_bytes_total"),
            spool_records_uncut: get("fieldpulse_edge_spool_records_uncut"),
            mqtt_connected: get("fieldpulse_edge_mqtt_connected") == 1,
        }
    }

    /// Adds a finished life's counters (gauges come from the newer one).
    fn plus(&self, newer: &Self) -> Self {
        let mut rejected = self.rejected.clone();
        for (reason, n) in &newer.rejected {
            *rejected.entry(reason.clone()).or_default() += n;
        }
        Self {
            readings_received: self.readings_received + newer.readings_received,
            readings_spooled: self.readings_spooled + newer.readings_spooled,
            readings_forwarded: self.readings_forwarded + newer.readings_forwarded,
            rejected,
            dropped: self.dropped + newer.dropped,
            messages_duplicate: self.messages_duplicate + newer.messages_duplicate,
            batches_acked: self.batches_acked + newer.batches_acked,
            batches_historical: self.batches_historical + newer.batches_historical,
            send_failures: self.send_failures + newer.send_failures,
            wire_bytes: self.wire_bytes + newer.wire_bytes,
            spool_records_uncut: newer.spool_records_uncut,
            mqtt_connected: newer.mqtt_connected,
        }
    }

    /// All rejected readings.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// `name{labels}` → value, for every sample line.
fn parse_samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            Some((key.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Counters of the ended lives and the current life's last scrape.
#[derive(Debug, Default)]
struct Lives {
    ended: EdgeCounters,
    current: EdgeCounters,
    /// Which life the scraper may write (a scrape of a killed life arriving late is dropped).
    life: u64,
}

/// A cheap handle on the edge's counters, for progress lines.
#[derive(Debug, Clone, Default)]
pub struct EdgeWatch(Arc<Mutex<Lives>>);

impl EdgeWatch {
    /// Counters over every life (a killed life's as of its last scrape).
    pub fn counters(&self) -> EdgeCounters {
        let lives = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lives.ended.plus(&lives.current)
    }

    /// The current life's gauges and counters.
    fn current(&self) -> EdgeCounters {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current
            .clone()
    }

    /// The current life's number.
    fn life(&self) -> u64 {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).life
    }

    fn set(&self, life: u64, counters: EdgeCounters) {
        let mut lives = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if lives.life == life {
            lives.current = counters;
        }
    }

    /// Ends the current life: its counters are kept, a new life starts from zero.
    fn next_life(&self) -> u64 {
        let mut lives = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let last = std::mem::take(&mut lives.current);
        lives.ended = lives.ended.plus(&last);
        lives.life += 1;
        lives.life
    }
}

/// The running edge process and its counters.
pub struct EdgeProcess {
    exe: PathBuf,
    config: PathBuf,
    log: PathBuf,
    metrics_url: String,
    child: Child,
    watch: EdgeWatch,
    scraper: JoinHandle<()>,
    /// Times the process was killed with SIGKILL.
    pub kills: u32,
}

impl EdgeProcess {
    /// Starts `fieldpulse edge --config <config>` (this executable), logging to `log`, and
    /// scrapes its metrics on `metrics_addr` (the config's `[http] listen`).
    pub async fn start(
        config: &Path,
        log: &Path,
        metrics_addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the fieldpulse executable")?;
        let metrics_url = format!("http://{metrics_addr}/metrics");
        let child = spawn(&exe, config, log)?;
        let watch = EdgeWatch::default();
        let scraper = tokio::spawn(scrape(metrics_url.clone(), watch.clone(), 0));
        Ok(Self {
            exe,
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            metrics_url,
            child,
            watch,
            scraper,
            kills: 0,
        })
    }

    /// A handle on the counters.
    pub fn watch(&self) -> EdgeWatch {
        self.watch.clone()
    }

    /// Waits until the agent is connected and subscribed (read from its metrics).
    pub async fn wait_connected(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().context("checking the edge process")? {
                anyhow::bail!(
                    "the edge process exited ({status}) during startup; see {}",
                    self.log.display()
                );
            }
            if self.watch.current().mqtt_connected {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the edge did not subscribe to the broker within {within:?}; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no drain, no flush, no goodbye, as a power cut. The life's counters are read
    /// just before; what it counted after that read is lost with it, and messages it had
    /// not PUBACKed are redelivered by the broker and counted again by the next life.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        self.last_scrape().await;
        self.child
            .kill()
            .await
            .context("killing the edge process")?;
        self.kills += 1;
        self.watch.next_life();
        Ok(())
    }

    /// Stops the periodic scrape and reads the metrics once more, now.
    async fn last_scrape(&mut self) {
        self.scraper.abort();
        let life = self.watch.life();
        if let Ok(text) = fetch(&self.metrics_url).await {
            self.watch.set(life, EdgeCounters::from_prometheus(&text));
        }
    }

    /// Starts a new life on the same config and spool.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.child = spawn(&self.exe, &self.config, &self.log)?;
        let life = self.watch.life();
        self.scraper = tokio::spawn(scrape(self.metrics_url.clone(), self.watch.clone(), life));
        Ok(())
    }

    /// Reads the metrics once more, then SIGTERM: the agent drains and exits. Returns the
    /// counters over every life and whether it exited cleanly within `grace`.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<(EdgeCounters, bool)> {
        self.last_scrape().await;
        let counters = self.watch.counters();
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        let clean = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status.context("waiting for the edge process")?.success(),
            Err(_) => {
                self.child
                    .kill()
                    .await
                    .context("killing the edge process")?;
                false
            }
        };
        Ok((counters, clean))
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        self.scraper.abort();
        // A demo that fails must not leave an agent running.
        let _ = self.child.start_kill();
    }
}

fn spawn(exe: &Path, config: &Path, log: &Path) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    Command::new(exe)
        .arg("edge")
        .arg("--config")
        .arg(config)
        .env("FIELDPULSE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} edge", exe.display()))
}

async fn fetch(url: &str) -> anyhow::Result<String> {
    Ok(reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// Reads `/metrics` every [`SCRAPE_EVERY`] into life `life` of `watch` (connection errors
/// while the agent starts are expected and skipped).
async fn scrape(url: String, watch: EdgeWatch, life: u64) {
    loop {
        if let Ok(text) = fetch(&url).await {
            watch.set(life, EdgeCounters::from_prometheus(&text));
        }
        tokio::time::sleep(SCRAPE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_the_exposition_and_summed_over_lives() {
        let text = "# HELP fieldpulse_edge_readings_spooled_total x\n\
             # TYPE fieldpulse_edge_readings_spooled_total counter\n\
             fieldpulse_edge_readings_spooled_total 120\n\
             fieldpulse_edge_readings_received_total 130\n\
             fieldpulse_edge_readings_rejected_total{reason=\"too_old\"} 4\n\
             fieldpulse_edge_readings_rejected_total{reason=\"non_finite\"} 6\n\
             fieldpulse_edge_readings_dropped_total{reason=\"spool_full\"} 2\n\
             fieldpulse_edge_spool_records_uncut 9\n\
             fieldpulse_edge_mqtt_connected 1\n";
        let one = EdgeCounters::from_prometheus(text);
        assert_eq!(one.readings_spooled, 120);
        assert_eq!(one.readings_received, 130);
        assert_eq!(one.rejected_total(), 10);
        assert_eq!(one.rejected["too_old"], 4);
        assert_eq!(one.dropped, 2);
        assert!(one.mqtt_connected);
        let second = EdgeCounters {
            readings_spooled: 5,
            ..EdgeCounters::default()
        };
        let both = one.plus(&second);
        assert_eq!(both.readings_spooled, 125);
        assert_eq!(both.rejected_total(), 10);
        assert_eq!(both.spool_records_uncut, 0, "gauges are the newest life's");
        assert!(!both.mqtt_connected);
    }

    #[test]
    fn garbage_lines_are_ignored() {
        let one =
            EdgeCounters::from_prometheus("nonsense\n\nfieldpulse_edge_readings_spooled_total x\n");
        assert_eq!(one, EdgeCounters::default());
    }
}
