//! The demo's uplink: a TCP relay between the edge and the cloud, so the demo
//! can cut the network (every connection reset, new ones closed at once) and
//! point the edge's fixed URL at a restarted cloud, as a load balancer would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The relay: the edge posts to [`Uplink::addr`].
#[derive(Debug)]
pub struct Uplink {
    /// Where the edge connects.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: AbortHandle,
}

#[derive(Debug, Default)]
struct State {
    /// The cloud's address, `None` while the uplink is cut.
    target: Option<SocketAddr>,
    /// Relayed connections (aborted by a cut).
    conns: Vec<AbortHandle>,
}

impl Uplink {
    /// Starts relaying to `target` on a free loopback port.
    ///
    /// # Errors
    /// The port cannot be bound.
    pub async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the demo uplink")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            target: Some(target),
            conns: Vec::new(),
        }));
        let accept_state = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let mut st = accept_state.lock().unwrap_or_else(|p| p.into_inner());
                // While cut, the connection is closed at once (the edge retries).
                let Some(target) = st.target else { continue };
                st.conns.retain(|c| !c.is_finished());
                st.conns
                    .push(tokio::spawn(relay(inbound, target)).abort_handle());
            }
        })
        .abort_handle();
        Ok(Self {
            addr,
            state,
            accept,
        })
    }

    /// Cuts the uplink: open connections are reset, new ones closed.
    pub fn cut(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.target = None;
        for c in st.conns.drain(..) {
            c.abort();
        }
    }

    /// Restores the uplink towards `target`.
    pub fn restore(&self, target: SocketAddr) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).target = Some(target);
    }
}

impl Drop for Uplink {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn relay(mut inbound: TcpStream, target: SocketAddr) {
    if let Ok(mut outbound) = TcpStream::connect(target).await {
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An echo server; returns its address.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// Sends a byte through the uplink; true when it came back.
    async fn round_trip(addr: SocketAddr) -> bool {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            return false;
        };
        if s.write_all(b"x").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await,
            Ok(Ok(1))
        )
    }

    #[tokio::test]
    async fn relays_is_cut_and_is_restored_towards_a_new_target() {
        let first = echo().await;
        let uplink = Uplink::start(first).await.unwrap();
        assert!(round_trip(uplink.addr).await);
        // A connection open across the cut is reset.
        let mut open = TcpStream::connect(uplink.addr).await.unwrap();
        open.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 1];
        open.read_exact(&mut buf).await.unwrap();
        uplink.cut();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            open.read_to_end(&mut rest),
        )
        .await
        .unwrap()
        .unwrap_or(0);
        assert_eq!(n, 0, "the open connection ended");
        assert!(!round_trip(uplink.addr).await, "cut: nothing comes back");
        let second = echo().await;
        uplink.restore(second);
        assert!(round_trip(uplink.addr).await);
    }
}
