//! A TCP proxy between the edge and the broker that reads the MQTT 3.1.1 packets passing
//! through: per connection, the CONNACK's session-present flag, the packet ids the broker
//! PUBLISHed to the edge, and every PUBACK of the edge that acknowledges no outstanding PUBLISH of
//! that same connection (a stale ack). It can cut a connection right after the n-th PUBLISH
//! reached the edge, and refuse connections until told to pass them again.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What the proxy saw on one connection.
#[derive(Debug, Default, Clone)]
pub struct ConnLog {
    /// The CONNACK's session-present flag, once the broker answered.
    pub session_present: Option<bool>,
    /// QoS 1/2 PUBLISHes forwarded to the edge.
    pub publishes: u64,
    /// PUBACKs from the edge.
    pub pubacks: u64,
    /// PUBACKs whose packet id no PUBLISH of this connection was waiting for.
    pub stray_acks: Vec<u16>,
    outstanding: HashSet<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Pass,
    /// Cut the connection after this many more PUBLISHes, then refuse.
    CutAfter(u64),
    Refuse,
}

struct State {
    mode: Mode,
    connections: Vec<ConnLog>,
    cuts: u64,
}

/// The running proxy; stops when dropped.
pub struct MqttProxy {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
}

impl MqttProxy {
    /// Listens on a free loopback port, forwarding to the broker on `broker_port`.
    pub async fn start(broker_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Pass,
            connections: Vec::new(),
            cuts: 0,
        }));
        let stop = CancellationToken::new();
        let (task_state, task_stop) = (Arc::clone(&state), stop.clone());
        tokio::spawn(async move {
            loop {
                let (edge, _) = tokio::select! {
                    _ = task_stop.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                };
                if task_state.lock().unwrap().mode == Mode::Refuse {
                    drop(edge);
                    continue;
                }
                let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)).await else {
                    continue;
                };
                let conn = {
                    let mut state = task_state.lock().unwrap();
                    state.connections.push(ConnLog::default());
                    state.connections.len() - 1
                };
                tokio::spawn(relay(
                    edge,
                    broker,
                    conn,
                    Arc::clone(&task_state),
                    task_stop.child_token(),
                ));
            }
        });
        Self { port, state, stop }
    }

    /// The port the edge connects to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts the current connection right after `n` more PUBLISHes reached the edge, then refuses
    /// new connections until [`MqttProxy::pass`].
    pub fn cut_after_publishes(&self, n: u64) {
        self.state.lock().unwrap().mode = Mode::CutAfter(n);
    }

    /// Passes connections again.
    pub fn pass(&self) {
        self.state.lock().unwrap().mode = Mode::Pass;
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> u64 {
        self.state.lock().unwrap().cuts
    }

    /// What the proxy saw, per connection in accept order.
    pub fn connections(&self) -> Vec<ConnLog> {
        self.state.lock().unwrap().connections.clone()
    }
}

impl Drop for MqttProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Splits one complete MQTT packet off the front of `buf`: (first byte, body, raw bytes).
pub fn next_packet(buf: &mut Vec<u8>) -> Option<(u8, Vec<u8>, Vec<u8>)> {
    let mut len = 0usize;
    let mut shift = 0;
    let mut idx = 1;
    loop {
        let byte = *buf.get(idx)?;
        len |= usize::from(byte & 0x7f) << shift;
        idx += 1;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        assert!(shift <= 21, "bad MQTT remaining length");
    }
    if buf.len() < idx + len {
        return None;
    }
    let raw: Vec<u8> = buf.drain(..idx + len).collect();
    Some((raw[0], raw[idx..].to_vec(), raw))
}

async fn relay(
    edge: TcpStream,
    broker: TcpStream,
    conn: usize,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
) {
    let (mut edge_read, mut edge_write) = edge.into_split();
    let (mut broker_read, mut broker_write) = broker.into_split();
    let cut = CancellationToken::new();
    // Edge -> broker: record PUBACKs; forward until cut, then only drain (so the edge can read
    // everything sent to it and see a clean end of stream).
    let up_state = Arc::clone(&state);
    let up_cut = cut.clone();
    let up_stop = stop.clone();
    let up = tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::select! {
                _ = up_stop.cancelled() => break,
                read = edge_read.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
            };
            buf.extend_from_slice(&chunk[..n]);
            while let Some((first, body, _)) = next_packet(&mut buf) {
                if first >> 4 == 4 && body.len() >= 2 {
                    let pkid = u16::from_be_bytes([body[0], body[1]]);
                    let mut state = up_state.lock().unwrap();
                    let log = &mut state.connections[conn];
                    log.pubacks += 1;
                    if !log.outstanding.remove(&pkid) {
                        log.stray_acks.push(pkid);
                    }
                }
            }
            if !up_cut.is_cancelled() && broker_write.write_all(&chunk[..n]).await.is_err() {
                break;
            }
        }
        let _ = broker_write.shutdown().await;
    });
    // Broker -> edge: packet by packet, so a cut falls exactly after a PUBLISH.
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    'relay: loop {
        let n = tokio::select! {
            _ = stop.cancelled() => break,
            read = broker_read.read(&mut chunk) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some((first, body, raw)) = next_packet(&mut buf) {
            let mut cut_now = false;
            {
                let mut state = state.lock().unwrap();
                match first >> 4 {
                    2 if !body.is_empty() => {
                        state.connections[conn].session_present = Some(body[0] & 1 == 1);
                    }
                    3 if (first >> 1) & 3 > 0 && body.len() >= 2 => {
                        let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
                        if let Some(id) = body.get(2 + topic_len..4 + topic_len) {
                            let pkid = u16::from_be_bytes([id[0], id[1]]);
                            let log = &mut state.connections[conn];
                            log.publishes += 1;
                            log.outstanding.insert(pkid);
                        }
                        if let Mode::CutAfter(left) = state.mode {
                            if left <= 1 {
                                state.mode = Mode::Refuse;
                                state.cuts += 1;
                                cut_now = true;
                            } else {
                                state.mode = Mode::CutAfter(left - 1);
                            }
                        }
                    }
                    _ => {}
                }
            }
            if edge_write.write_all(&raw).await.is_err() {
                break 'relay;
            }
            if cut_now {
                cut.cancel();
                break 'relay;
            }
        }
    }
    // End of stream to the edge after everything written; the broker sees its client vanish.
    let _ = edge_write.shutdown().await;
    drop(broker_read);
    let _ = up.await;
}
