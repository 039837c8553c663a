//! An MQTT publisher that knows which of its QoS 1 publishes the broker acknowledged (it can also
//! publish at QoS 0, which the broker never acknowledges).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Outgoing, QoS};
use tokio::task::JoinHandle;

#[derive(Default)]
struct Tracking {
    /// Publish index -> acknowledged by the broker.
    acked: Vec<bool>,
    n_acked: usize,
    next_index: usize,
    in_flight: HashMap<u16, usize>,
}

/// A publisher whose event loop runs in a test-owned task.
pub struct Publisher {
    client: AsyncClient,
    tracking: Arc<Mutex<Tracking>>,
    task: JoinHandle<()>,
}

impl Publisher {
    /// Connects (persistent session, so in-flight publishes survive a broker restart).
    pub fn connect(port: u16, client_id: &str) -> Self {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(10))
            .set_inflight(500)
            .set_max_packet_size(20 << 20, 20 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let tracking = Arc::new(Mutex::new(Tracking::default()));
        let task_tracking = Arc::clone(&tracking);
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    // QoS 0 publishes carry packet id 0 and get no PUBACK: not tracked.
                    Ok(Event::Outgoing(Outgoing::Publish(0))) => {}
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        let mut t = task_tracking.lock().unwrap();
                        // A pkid still in flight is a republish after reconnect, not a new message.
                        if !t.in_flight.contains_key(&pkid) {
                            let index = t.next_index;
                            t.next_index += 1;
                            t.in_flight.insert(pkid, index);
                        }
                    }
                    Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                        let mut t = task_tracking.lock().unwrap();
                        if let Some(index) = t.in_flight.remove(&ack.pkid) {
                            if !t.acked[index] {
                                t.acked[index] = true;
                                t.n_acked += 1;
                            }
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Self {
            client,
            tracking,
            task,
        }
    }

    /// Publishes one QoS 1 message (waits only for room in the client's request channel).
    pub async fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.tracking.lock().unwrap().acked.push(false);
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("publisher event loop is running");
    }

    /// Publishes one QoS 0 message (fire and forget: not counted in [`Publisher::acked`]).
    pub async fn publish_qos0(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtMostOnce, false, payload)
            .await
            .expect("publisher event loop is running");
    }

    /// Publishes acknowledged by the broker so far.
    pub fn n_acked(&self) -> usize {
        self.tracking.lock().unwrap().n_acked
    }

    /// Per publish index: whether the broker acknowledged it.
    pub fn acked(&self) -> Vec<bool> {
        self.tracking.lock().unwrap().acked.clone()
    }

    /// Waits until `n` publishes are acknowledged.
    pub async fn wait_acked(&self, n: usize, timeout: Duration) {
        let what = format!("{n} broker PUBACKs");
        let deadline = std::time::Instant::now() + timeout;
        while self.n_acked() < n {
            if std::time::Instant::now() >= deadline {
                let t = self.tracking.lock().unwrap();
                panic!(
                    "timed out waiting for {what}: {} acked of {} published, {} assigned, {} in flight",
                    t.n_acked,
                    t.acked.len(),
                    t.next_index,
                    t.in_flight.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// True when every publish that went out has been acknowledged and none is in flight.
    pub fn settled(&self) -> bool {
        let t = self.tracking.lock().unwrap();
        t.in_flight.is_empty() && t.n_acked == t.next_index
    }

    /// Disconnects and ends the event loop task.
    pub async fn close(self) {
        let _ = self.client.disconnect().await;
        drop(self.client);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
