//! A bandwidth-limited TCP proxy: a slow uplink (a cellular modem) between the edge and the cloud.
//!
//! Each direction is one link shared by every connection, paced like a token bucket whose burst is
//! one 512-byte chunk: a chunk leaves when the link has carried the chunks reserved before it,
//! so parallel requests and retries share the rate as they would on a real modem. The proxy
//! reads what the edge writes at once (queueing is free, sending is paced), so when the edge gives
//! up on a request and closes the connection, the bytes not yet sent are dropped instead of
//! occupying the link. The link can be taken down (connections are refused) and up again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest piece paced at once.
const CHUNK: usize = 512;

/// One direction of the link.
struct Pacer {
    bytes_per_second: f64,
    /// When the link has sent everything reserved so far.
    free_at: Instant,
}

impl Pacer {
    /// Reserves the link for `n` bytes; returns when they have crossed it.
    fn reserve(&mut self, n: usize) -> Instant {
        let start = self.free_at.max(Instant::now());
        self.free_at = start + Duration::from_secs_f64(n as f64 / self.bytes_per_second);
        self.free_at
    }
}

struct Link {
    down: AtomicBool,
    upstream: Mutex<Pacer>,
    downstream: Mutex<Pacer>,
    connections: AtomicU64,
    bytes_upstream: AtomicU64,
}

/// The running proxy; stops when dropped.
pub struct SlowLink {
    port: u16,
    link: Arc<Link>,
    stop: CancellationToken,
}

impl SlowLink {
    /// Listens on a free loopback port, forwarding to `target` at `bytes_per_second` each way.
    /// Starts up.
    pub async fn start(target: std::net::SocketAddr, bytes_per_second: f64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind slow link");
        let port = listener.local_addr().expect("slow link address").port();
        let pacer = || {
            Mutex::new(Pacer {
                bytes_per_second,
                free_at: Instant::now(),
            })
        };
        let link = Arc::new(Link {
            down: AtomicBool::new(false),
            upstream: pacer(),
            downstream: pacer(),
            connections: AtomicU64::new(0),
            bytes_upstream: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        let (task_link, task_stop) = (Arc::clone(&link), stop.clone());
        tokio::spawn(async move {
            loop {
                let (edge, _) = tokio::select! {
                    _ = task_stop.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => continue,
                    },
                };
                if task_link.down.load(Ordering::SeqCst) {
                    drop(edge);
                    continue;
                }
                let Ok(cloud) = TcpStream::connect(target).await else {
                    continue;
                };
                task_link.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(relay(
                    edge,
                    cloud,
                    Arc::clone(&task_link),
                    task_stop.child_token(),
                ));
            }
        });
        Self { port, link, stop }
    }

    /// Base URL for `forward.url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Refuses new connections (true) or passes them (false).
    pub fn set_down(&self, down: bool) {
        self.link.down.store(down, Ordering::SeqCst);
    }

    /// Connections passed to the cloud so far.
    pub fn connections(&self) -> u64 {
        self.link.connections.load(Ordering::SeqCst)
    }

    /// Bytes delivered to the cloud so far.
    pub fn bytes_upstream(&self) -> u64 {
        self.link.bytes_upstream.load(Ordering::SeqCst)
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn relay(edge: TcpStream, cloud: TcpStream, link: Arc<Link>, stop: CancellationToken) {
    let _ = edge.set_nodelay(true);
    let _ = cloud.set_nodelay(true);
    let (edge_read, edge_write) = edge.into_split();
    let (cloud_read, cloud_write) = cloud.into_split();
    // The connection ends when either side closes; the edge closing drops its unsent bytes.
    let conn = stop.child_token();
    let up = pipe(
        edge_read,
        cloud_write,
        Arc::clone(&link),
        true,
        conn.clone(),
    );
    let down = pipe(cloud_read, edge_write, link, false, conn);
    tokio::join!(up, down);
}

/// Copies `from` to `to` through one direction of the link.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    link: Arc<Link>,
    upstream: bool,
    conn: CancellationToken,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let reader = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
        drop(tx);
        if upstream {
            // The edge hung up: what it wrote and the link has not sent yet goes nowhere.
            conn.cancel();
        }
    };
    let writer = async {
        while let Some(data) = rx.recv().await {
            for piece in data.chunks(CHUNK) {
                let pacer = if upstream {
                    &link.upstream
                } else {
                    &link.downstream
                };
                let at = pacer.lock().unwrap().reserve(piece.len());
                tokio::time::sleep_until(at).await;
                if to.write_all(piece).await.is_err() {
                    return;
                }
                if upstream {
                    link.bytes_upstream
                        .fetch_add(piece.len() as u64, Ordering::SeqCst);
                }
            }
        }
    };
    tokio::select! {
        _ = conn.cancelled() => {}
        _ = async { tokio::join!(reader, writer) } => {}
    }
    let _ = to.shutdown().await;
    conn.cancel();
}
