//! Long outages under the `backpressure` policy (issue #12 item 6): messages the agent itself held
//! back at the broker are not "too old" when they finally arrive, however long the outage, and
//! timestamp-less readings are stamped at receive time and flagged as such.

use std::collections::HashSet;
use std::time::Duration;

use fieldpulse_edge::reject::RejectReason;

use crate::support::{start_agent, wait_until};

/// `validation.max_age` in this test.
const MAX_AGE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_held_back_at_the_broker_longer_than_max_age_arrive_and_unstamped_ones_are_flagged(
) {
    // One reading per message (about 70 spool bytes), so the 256 KiB spool fills after a few
    // thousand and the broker holds the rest.
    const MSGS: usize = 8_000;
    let s = start_agent("publisher-long-outage", |o| {
        o.spool_max_bytes = 256 * 1024;
        o.full_policy = "backpressure";
        o.extra = format!("[validation]\nmax_age = \"{}ms\"\n", MAX_AGE.as_millis());
    })
    .await;
    s.receiver.set_unavailable(true);
    // Even messages carry the publish time as their device timestamp, odd ones no timestamp.
    for i in 0..MSGS {
        if i % 2 == 0 {
            let ts = fieldpulse_edge::clock::now_ms();
            let payload = format!("{{\"ts\":{ts},\"v\":{i}}}");
            s.publisher
                .publish(&format!("sensors/stamped-{}", i % 10), payload.into_bytes())
                .await;
        } else {
            s.publisher
                .publish(
                    &format!("plant/s1/unstamped-{}/v", i % 10),
                    i.to_string().into_bytes(),
                )
                .await;
        }
    }
    s.publisher.wait_acked(MSGS, Duration::from_secs(30)).await;
    let published_by = std::time::Instant::now();
    wait_until(
        "the spool refused an append",
        Duration::from_secs(30),
        || s.metrics.snapshot().backpressure_waits > 0,
    )
    .await;
    let held = s.metrics.snapshot();
    assert!(
        held.messages_received < MSGS as u64 / 2,
        "the broker holds most messages: {held:?}"
    );
    // The outage outlasts max_age: the messages the broker holds are older than that when the
    // agent takes them.
    tokio::time::sleep(
        (MAX_AGE + Duration::from_millis(1500)).saturating_sub(published_by.elapsed()),
    )
    .await;
    s.receiver.set_unavailable(false);
    wait_until("every reading delivered", Duration::from_secs(60), || {
        let m = s.metrics.snapshot();
        s.receiver.n_readings() + m.rejected.total() as usize >= MSGS
    })
    .await;
    let end = s.metrics.snapshot();
    assert_eq!(
        end.rejected.get(RejectReason::TooOld),
        0,
        "readings the agent held back are not too old: {end:?}"
    );
    assert_eq!(end.dropped_total(), 0);
    assert_eq!(end.readings_receive_stamped, (MSGS / 2) as u64);
    // Everything the broker still held when the spool first refused arrived during the hold (a
    // group of messages already prepared when the spool refused is judged as before it).
    let arrived_later = MSGS as u64 - held.messages_received;
    assert!(
        end.readings_held_back >= arrived_later / 2,
        "readings that arrived during the hold are counted: {end:?}"
    );
    s.receiver.with(|got| {
        assert_eq!(got.readings.len(), MSGS, "exactly once");
        let values: HashSet<u64> = got.readings.iter().map(|r| r.value as u64).collect();
        assert_eq!(values.len(), MSGS);
        for reading in &got.readings {
            let unstamped = reading.asset.starts_with("unstamped-");
            assert_eq!(reading.receive_stamped, unstamped, "{reading:?}");
        }
        let held_back = got.readings.iter().filter(|r| r.held_back).count();
        assert_eq!(held_back as u64, end.readings_held_back);
        // Held-back receive stamps are late: the broker delivered them after the outage.
        assert!(got
            .readings
            .iter()
            .any(|r| r.held_back && r.receive_stamped));
    });
    s.shutdown.cancel();
    s.run.await.unwrap().unwrap();
    s.publisher.close().await;
}
