//! Messages published again with a new packet id and without the DUP flag: what
//! a broker that re-reads its log after a session resumes sends (rumqttd does),
//! and what a device that re-publishes after its own reconnect sends.

use std::time::Duration;

use crate::support::{start_agent, wait_until, Running};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timestamped_message_published_again_is_spooled_once_and_an_untimestamped_one_twice() {
    const N: usize = 200;
    // Bound, not `..`: the broker and the directory must live to the end.
    let Running {
        _dir,
        broker: _broker,
        receiver,
        metrics,
        shutdown,
        run,
        publisher,
    } = start_agent("publisher-duplicates", |_| {}).await;
    let base_ts = fieldpulse_edge::clock::now_ms() - 3_600_000;
    let timestamped = |i: usize| format!("{{\"ts\":{},\"value\":{i}}}", base_ts + i as i64);
    // Every timestamped message twice (the second copy: a new packet id, no
    // DUP flag), and N timestamp-less messages with one value repeated: each
    // of those is a new reading at its own receive time.
    for pass in 0..2 {
        for i in 0..N {
            publisher
                .publish("plant/s1/pump-1/temp", timestamped(i).into_bytes())
                .await;
        }
        for _ in 0..N / 2 {
            publisher
                .publish("plant/s1/pump-2/temp", b"7".to_vec())
                .await;
        }
        if pass == 0 {
            publisher
                .wait_acked(N + N / 2, Duration::from_secs(30))
                .await;
        }
    }
    publisher
        .wait_acked(2 * (N + N / 2), Duration::from_secs(30))
        .await;
    wait_until(
        "every distinct reading at the receiver",
        Duration::from_secs(30),
        || receiver.n_readings() >= 2 * N,
    )
    .await;
    shutdown.cancel();
    run.await.unwrap().unwrap();
    publisher.close().await;
    receiver.with(|got| {
        let pump1: Vec<f64> = got
            .readings
            .iter()
            .filter(|r| r.asset == "pump-1")
            .map(|r| r.value)
            .collect();
        let expected: Vec<f64> = (0..N).map(|i| i as f64).collect();
        assert_eq!(pump1, expected, "each timestamped reading once, in order");
        let pump2 = got.readings.iter().filter(|r| r.asset == "pump-2").count();
        assert_eq!(pump2, N, "timestamp-less messages are all new readings");
    });
    assert_eq!(metrics.snapshot().messages_duplicate, N as u64);
}
