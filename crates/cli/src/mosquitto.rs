//! A private `mosquitto` broker on a free loopback port, for `fieldpulse bench
//! edge`: the same broker gateways run, measured in the same run as the edge.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A running `mosquitto`, killed on drop.
pub struct Mosquitto {
    child: Child,
    addr: SocketAddr,
}

impl Mosquitto {
    /// Starts mosquitto with a generated config in `dir` and waits until it
    /// accepts connections.
    ///
    /// # Errors
    /// When the `mosquitto` binary is missing or does not start listening.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let binary = find_binary().context(
            "the `mosquitto` binary is needed for this benchmark (apt-get install mosquitto)",
        )?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("finding a free port")?
            .port();
        let conf = dir.join("mosquitto.conf");
        // Broker limits a gateway operator sets for the edge (see docs/edge.md):
        // deep queues for the persistent session, generous in-flight window.
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
                 max_queued_messages 0\nmax_inflight_messages 1000\nmax_keepalive 120\n\
                 message_size_limit 1048576\nlog_dest none\n"
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut broker = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(broker);
            }
            if let Some(status) = broker.child.try_wait()? {
                anyhow::bail!("mosquitto exited with {status} before listening");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        anyhow::bail!("mosquitto did not listen on {addr} within 10 s")
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("mosquitto"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    })
}
