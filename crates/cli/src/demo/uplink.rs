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
