//! A slow uplink: a 64–128 kbit/s cellular link, scaled down (a 32 kbit/s link and a 2 s request
//! timeout) so the tests take seconds. Batches sized for a LAN cannot cross it within a fixed
//! timeout, so every attempt times out and is retried forever; batches and timeouts must follow
//! the link. Also: a 429/503 with `Retry-After` waits what the cloud asked for.
// See: issue #12 (item 8)

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use fieldpulse_edge::{Agent, MetricsHandle, RunSummary};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::broker::Broker;
use crate::support::publisher::Publisher;
use crate::support::receiver::Receiver;
use crate::support::slow_link::SlowLink;
use crate::support::{wait_until, EdgeOptions};

/// 32 kbit/s each way.
const LINK_BYTES_PER_SECOND: f64 = 4096.0;
/// The test configs' `forward.request_timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// (asset, ts_ms, value bits) -> times received.
type ReadingCounts = BTreeMap<(String, i64, u64), u32>;

/// A broker, the receiver behind a slow link, and the agent's spool directory.
struct Setup {
    dir: tempfile::TempDir,
    broker: Broker,
    receiver: Receiver,
    link: SlowLink,
    options: EdgeOptions,
}

/// A running agent.
struct Running {
    metrics: MetricsHandle,
    shutdown: CancellationToken,
    run: JoinHandle<Result<RunSummary, fieldpulse_edge::AgentError>>,
}

impl Setup {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start(dir.path(), false);
        let receiver = Receiver::start().await;
        let target = receiver
            .url()
            .trim_start_matches("http://")
            .parse()
            .expect("receiver address");
        let link = SlowLink::start(target, LINK_BYTES_PER_SECOND).await;
        let options = EdgeOptions::new(broker.port(), &link.url());
        broker
            .prepare_session(
                &options.config(dir.path()).mqtt.client_id,
                &["plant/+/+/+", "sensors/+"],
            )
            .await;
        Self {
            dir,
            broker,
            receiver,
            link,
            options,
        }
    }

    /// Starts the agent with the test config, adjusted by `settings` (see [`with_settings`]).
    async fn start_agent(&self, settings: &[&str]) -> Running {
        let toml = with_settings(&self.options.to_toml(self.dir.path()), settings);
        let config = fieldpulse_edge::EdgeConfig::from_toml_str(&toml, "slow-uplink.toml")
            .expect("test config validates");
        let agent = Agent::start(config).await.expect("agent starts");
        let metrics = agent.metrics();
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(agent.run(shutdown.clone()));
        Running {
            metrics,
            shutdown,
            run,
        }
    }
}

/// Applies `table.key = value` settings to `toml`: each replaces the line setting `key` in
/// `[table]`, or is added at the top of that table (which must exist).
fn with_settings(toml: &str, settings: &[&str]) -> String {
    let key_of = |line: &str| line.split('=').next().unwrap_or("").trim().to_string();
    let mut lines: Vec<String> = toml.lines().map(str::to_string).collect();
    for setting in settings {
        let (table, line) = setting.split_once('.').expect("table.key = value");
        let header = lines
            .iter()
            .position(|l| *l == format!("[{table}]"))
            .unwrap_or_else(|| panic!("no [{table}] in the test config"));
        let end = lines[header + 1..]
            .iter()
            .position(|l| l.starts_with('['))
            .map_or(lines.len(), |idx| header + 1 + idx);
        match lines[header + 1..end]
            .iter()
            .position(|l| key_of(l) == key_of(line))
        {
            Some(idx) => lines[header + 1 + idx] = line.to_string(),
            None => lines.insert(header + 1, line.to_string()),
        }
    }
    lines.join("\n")
}

/// Publishes readings `range`, one per message, with values that compress badly (like real
/// sensor noise), and adds them to `expected`.
async fn publish(
    publisher: &Publisher,
    range: std::ops::Range<usize>,
    expected: &mut ReadingCounts,
) {
    let base_ts = fieldpulse_edge::clock::now_ms() - 3_600_000;
    for i in range {
        let asset = format!("asset-{}", i % 10);
        let ts = base_ts + i as i64 * 100;
        let value = noise(i as u64);
        publisher
            .publish(
                &format!("plant/s1/{asset}/vibration"),
                format!("{{\"ts\":{ts},\"value\":{value}}}").into_bytes(),
            )
            .await;
        expected.insert((asset, ts, value.to_bits()), 1);
    }
}

/// A value in [0, 2^32) with 52 random bits (splitmix64 of `i`): next to incompressible.
fn noise(i: u64) -> f64 {
    let mut z = i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 12) as f64 / f64::from(1u32 << 20)
}

/// Waits until the receiver holds `n` readings and the agent has their acks (a request can reach
/// the cloud and still time out before its ack is back), failing with the agent's progress after
/// `timeout`.
async fn wait_delivered(s: &Setup, running: &Running, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while s.receiver.n_readings() < n || running.metrics.snapshot().readings_forwarded < n as u64 {
        if Instant::now() >= deadline {
            let m = running.metrics.snapshot();
            panic!(
                "{} of {n} readings delivered after {timeout:?} on the slow link: {} batches \
                 acked, {} attempts failed ({} timed out), {} connections, {} bytes carried, \
                 batch target {} bytes",
                s.receiver.n_readings(),
                m.batches_acked,
                m.send_failures,
                m.send_timeouts,
                s.link.connections(),
                s.link.bytes_upstream(),
                m.batch_target_bytes,
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every expected reading arrived exactly once, and nothing else.
fn assert_exactly_once(receiver: &Receiver, expected: &ReadingCounts) {
    let mut got = ReadingCounts::new();
    receiver.with(|inner| {
        for r in &inner.readings {
            *got.entry((r.asset.clone(), r.ts_ms, r.value.to_bits()))
                .or_default() += 1;
        }
        assert_eq!(inner.duplicate_mismatches, 0);
    });
    let missing = expected.keys().filter(|k| !got.contains_key(*k)).count();
    let twice = got.values().filter(|&&n| n > 1).count();
    let unexpected = got.keys().filter(|k| !expected.contains_key(*k)).count();
    assert_eq!(
        (missing, twice, unexpected),
        (0, 0, 0),
        "every reading once: {missing} missing, {twice} duplicated, {unexpected} unexpected"
    );
}

async fn stop(running: Running) {
    running.shutdown.cancel();
    running.run.await.unwrap().unwrap();
}

/// The bodies of `n` readings need this long on the link (from what the agent sent).
fn link_seconds(metrics: &MetricsHandle) -> f64 {
    metrics.snapshot().wire_bytes as f64 / LINK_BYTES_PER_SECOND
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_over_a_slow_link_with_every_reading_once() {
    const N: usize = 4000;
    let s = Setup::start().await;
    // The link is down while the readings pile up, as after a cellular outage.
    s.link.set_down(true);
    let running = s.start_agent(&["forward.request_timeout = \"2s\""]).await;
    let publisher = Publisher::connect(s.broker.port(), "publisher-slow-uplink");
    let mut expected = ReadingCounts::new();
    publish(&publisher, 0..N, &mut expected).await;
    publisher.wait_acked(N, Duration::from_secs(30)).await;
    wait_until("every reading spooled", Duration::from_secs(30), || {
        running.metrics.snapshot().readings_spooled == N as u64
    })
    .await;
    wait_until(
        "a send failed on the down link",
        Duration::from_secs(10),
        || running.metrics.snapshot().send_failures > 0,
    )
    .await;

    s.link.set_down(false);
    let up_at = Instant::now();
    // Far more than the ~10 s the readings' bodies need on this link.
    wait_delivered(&s, &running, N, Duration::from_secs(90)).await;
    let m = running.metrics.snapshot();
    eprintln!(
        "slow link: {N} readings in {:?}, {} batches, {} body bytes, {} timeouts; measured {} B/s, \
         batch target {} B",
        up_at.elapsed(),
        m.batches_acked,
        m.wire_bytes,
        m.send_timeouts,
        m.uplink_bytes_per_second,
        m.batch_target_bytes
    );
    publisher.close().await;
    assert_exactly_once(&s.receiver, &expected);
    let seconds = link_seconds(&running.metrics);
    assert!(
        seconds > 2.0 * REQUEST_TIMEOUT.as_secs_f64(),
        "the test needs a backlog that cannot cross the link within one request timeout: \
         {seconds:.1} s"
    );
    let m = running.metrics.snapshot();
    assert!(m.uplink_bytes_per_second > 0, "{m:?}");
    assert!(m.batch_target_bytes > 0, "{m:?}");
    let text = running.metrics.render_prometheus();
    for name in [
        "fieldpulse_edge_uplink_bytes_per_second ",
        "fieldpulse_edge_batch_target_bytes ",
        "fieldpulse_edge_send_timeouts_total ",
    ] {
        assert!(text.contains(name), "{name}");
    }
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_before_the_link_turned_slow_is_delivered_once_its_timeout_has_grown() {
    const N: usize = 2000;
    let s = Setup::start().await;
    // First run: the link is down and the agent cuts the readings into large batches (as on a
    // fast link, normally one batch); it stops with them pending.
    s.link.set_down(true);
    let first = s
        .start_agent(&[
            "forward.request_timeout = \"2s\"",
            "forward.batch_max_bytes = 1048576",
            "forward.batch_initial_bytes = 1048576",
            "forward.batch_max_records = 5000",
            "forward.batch_max_age = \"3s\"",
            "shutdown.grace = \"200ms\"",
        ])
        .await;
    let publisher = Publisher::connect(s.broker.port(), "publisher-slow-pending");
    let mut expected = ReadingCounts::new();
    publish(&publisher, 0..N, &mut expected).await;
    publisher.wait_acked(N, Duration::from_secs(30)).await;
    wait_until("every reading cut", Duration::from_secs(30), || {
        let m = first.metrics.snapshot();
        m.readings_spooled == N as u64 && m.spool_records_uncut == 0 && m.send_failures > 0
    })
    .await;
    let n_pending = first.metrics.snapshot().spool_batches_pending;
    // The grace period ends with the batch still pending (it stays in the spool).
    let summary = {
        first.shutdown.cancel();
        first.run.await.unwrap().unwrap()
    };
    assert!(!summary.finished_in_grace, "{summary:?}");

    // Second run: the link is up but slow; the pending batch keeps its seq and content.
    s.link.set_down(false);
    let second = s.start_agent(&["forward.request_timeout = \"2s\""]).await;
    wait_delivered(&s, &second, N, Duration::from_secs(90)).await;
    publisher.close().await;
    assert_exactly_once(&s.receiver, &expected);
    let m = second.metrics.snapshot();
    assert_eq!(m.batches_acked, n_pending, "batches never re-cut: {m:?}");
    let seconds = link_seconds(&second.metrics);
    assert!(
        seconds > 1.5 * REQUEST_TIMEOUT.as_secs_f64(),
        "the batches must need longer than a request timeout on the link: {seconds:.1} s"
    );
    // A batch needed more than the shortest timeout, timed out and was delivered later.
    assert!(m.send_timeouts >= 1, "{m:?}");
    stop(second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_or_503_with_retry_after_waits_what_the_cloud_asked_for() {
    let s = Setup::start().await;
    let running = s.start_agent(&["forward.retry_max = \"10s\""]).await;
    let publisher = Publisher::connect(s.broker.port(), "publisher-retry-after");
    let mut expected = ReadingCounts::new();
    for round in 0..2 {
        // Delay-seconds, then an HTTP-date four seconds ahead (whole seconds: at least three, of
        // which publishing and cutting the batch may take up to two).
        let (status, value) = match round {
            0 => (503, "1".to_string()),
            _ => (
                429,
                httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(4)),
            ),
        };
        s.receiver.refuse_next_with_retry_after(status, &value);
        publish(&publisher, round * 10..round * 10 + 10, &mut expected).await;
        wait_delivered(&s, &running, round * 10 + 10, Duration::from_secs(30)).await;
        // The refused request's next one is its retry: the other lane has no backlog.
        let (refused_at, retried_at) = s.receiver.with(|inner| {
            assert_eq!(inner.retry_after_refusals.len(), round + 1);
            let refused = inner.retry_after_refusals[round];
            (inner.arrivals[refused], inner.arrivals[refused + 1])
        });
        let waited = retried_at - refused_at;
        assert!(
            waited >= Duration::from_millis(950),
            "HTTP {status} with Retry-After {value:?}: retried after {waited:?}"
        );
    }
    publisher.close().await;
    assert_exactly_once(&s.receiver, &expected);
    stop(running).await;
}

#[test]
fn settings_replace_or_add_keys_in_their_own_table() {
    let toml = "[spool]\nmax_bytes = 1\n[forward]\nurl = \"x\"\nretry_max = \"1s\"\n\n[http]\n";
    assert_eq!(
        with_settings(
            toml,
            &["forward.retry_max = \"5s\"", "forward.max_bytes = 2"]
        ),
        "[spool]\nmax_bytes = 1\n[forward]\nmax_bytes = 2\nurl = \"x\"\nretry_max = \"5s\"\n\n[http]"
    );
}
