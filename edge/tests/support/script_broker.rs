//! A scripted MQTT 3.1.1 broker for one client: the test decides every PUBLISH the edge gets —
//! its packet id and `DUP` flag included — when connections drop and whether a reconnect finds its
//! session. It answers CONNECT, SUBSCRIBE (granting QoS 1) and PINGREQ like a real broker, and
//! logs what the client sent, so a test can wait for a PUBACK or a keep-alive ping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::proxy::next_packet;

/// A packet the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// CONNECT (a new connection).
    Connect,
    /// SUBSCRIBE.
    Subscribe,
    /// PUBACK for this packet id.
    PubAck(u16),
    /// PINGREQ.
    PingReq,
}

#[derive(Default)]
struct State {
    /// The current connection's write half.
    writer: Option<Arc<tokio::sync::Mutex<OwnedWriteHalf>>>,
    /// Session-present flag of the next CONNACK.
    session_present: bool,
    /// Everything the client sent, in order, with the connection number (1-based).
    log: Vec<(u64, Sent)>,
    connections: u64,
    /// Cancels the current connection's reader.
    conn_stop: Option<CancellationToken>,
}

/// The running broker; stops when dropped.
pub struct ScriptBroker {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl ScriptBroker {
    /// Listens on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let (task_state, task_stop) = (Arc::clone(&state), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = task_stop.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let (reader, writer) = stream.into_split();
                let writer = Arc::new(tokio::sync::Mutex::new(writer));
                let conn_stop = task_stop.child_token();
                let conn = {
                    let mut state = task_state.lock().unwrap();
                    if let Some(old) = state.conn_stop.replace(conn_stop.clone()) {
                        old.cancel();
                    }
                    state.connections += 1;
                    state.writer = Some(Arc::clone(&writer));
                    state.connections
                };
                tokio::spawn(serve(
                    reader,
                    writer,
                    conn,
                    Arc::clone(&task_state),
                    conn_stop,
                ));
            }
        });
        Self { port, state, stop }
    }

    /// The port the edge connects to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sets the session-present flag of the next CONNACK.
    pub fn set_session_present(&self, present: bool) {
        self.state.lock().unwrap().session_present = present;
    }

    /// Sends a QoS 1 PUBLISH on the current connection.
    pub async fn publish(&self, topic: &str, payload: &[u8], pkid: u16, dup: bool) {
        let writer = self
            .state
            .lock()
            .unwrap()
            .writer
            .clone()
            .expect("a client is connected");
        let mut body = Vec::new();
        body.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(&pkid.to_be_bytes());
        body.extend_from_slice(payload);
        let first = 0x30 | 0x02 | if dup { 0x08 } else { 0 };
        let packet = packet(first, &body);
        writer
            .lock()
            .await
            .write_all(&packet)
            .await
            .expect("write PUBLISH");
    }

    /// Closes the current connection (the client reconnects).
    pub async fn drop_connection(&self) {
        let (writer, stop) = {
            let mut state = self.state.lock().unwrap();
            (state.writer.take(), state.conn_stop.take())
        };
        if let Some(stop) = stop {
            stop.cancel();
        }
        if let Some(writer) = writer {
            let _ = writer.lock().await.shutdown().await;
        }
    }

    /// What the client sent, with connection numbers.
    pub fn log(&self) -> Vec<(u64, Sent)> {
        self.state.lock().unwrap().log.clone()
    }

    /// Waits until `done(log)` holds.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[(u64, Sent)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if done(&self.state.lock().unwrap().log) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; client sent {:?}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for the `n`-th PUBACK of `pkid` (counted over all connections).
    pub async fn wait_puback(&self, pkid: u16, n: usize) {
        self.wait_for(&format!("PUBACK #{n} of packet id {pkid}"), |log| {
            log.iter()
                .filter(|(_, sent)| *sent == Sent::PubAck(pkid))
                .count()
                >= n
        })
        .await;
    }

    /// Waits until the client sent `n` PINGREQs on the current connection after the last PUBACK
    /// of `pkid`: the second proves the client processed the PINGRESP to the first.
    pub async fn wait_pings_after_puback(&self, pkid: u16, n: usize) {
        self.wait_for(&format!("{n} pings after PUBACK {pkid}"), |log| {
            let Some(at) = log.iter().rposition(|(_, s)| *s == Sent::PubAck(pkid)) else {
                return false;
            };
            let conn = log[at].0;
            log[at..]
                .iter()
                .filter(|(c, s)| *c == conn && *s == Sent::PingReq)
                .count()
                >= n
        })
        .await;
    }

    /// Waits until the client has connected `n` times and subscribed on the last connection.
    pub async fn wait_subscribed(&self, n: u64) {
        self.wait_for(&format!("connection {n} subscribed"), |log| {
            log.iter().any(|(c, s)| *c == n && *s == Sent::Subscribe)
        })
        .await;
    }
}

impl Drop for ScriptBroker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

async fn serve(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    conn: u64,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => return,
            read = reader.read(&mut chunk) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some((first, body, _)) = next_packet(&mut buf) {
            let (sent, reply) = match first >> 4 {
                1 => {
                    let present = state.lock().unwrap().session_present;
                    (
                        Some(Sent::Connect),
                        Some(vec![0x20, 0x02, u8::from(present), 0x00]),
                    )
                }
                8 => {
                    // Packet id, then (length, filter, QoS) entries: grant QoS 1 to each.
                    let mut n_filters = 0;
                    let mut at = 2;
                    while at + 2 <= body.len() {
                        let len = usize::from(u16::from_be_bytes([body[at], body[at + 1]]));
                        at += 2 + len + 1;
                        n_filters += 1;
                    }
                    let mut ack = vec![body[0], body[1]];
                    ack.extend(std::iter::repeat_n(0x01, n_filters));
                    (Some(Sent::Subscribe), Some(packet(0x90, &ack)))
                }
                4 => (
                    Some(Sent::PubAck(u16::from_be_bytes([body[0], body[1]]))),
                    None,
                ),
                12 => (Some(Sent::PingReq), Some(vec![0xd0, 0x00])),
                _ => (None, None),
            };
            if let Some(sent) = sent {
                state.lock().unwrap().log.push((conn, sent));
            }
            if let Some(reply) = reply {
                if writer.lock().await.write_all(&reply).await.is_err() {
                    return;
                }
            }
        }
    }
}
