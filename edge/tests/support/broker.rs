//! A real `mosquitto` on a free loopback port, killed on drop; optionally with a second, TLS
//! listener ([`Broker::start_tls`]) while publishers keep the plain one.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS, SubscribeFilter};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A running broker.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    tls_port: Option<u16>,
    conf: PathBuf,
}

/// The TLS listener of [`Broker::start_tls`] (mosquitto's `cafile`, `certfile`, `keyfile`,
/// `require_certificate`).
pub struct TlsListener<'a> {
    /// CA of the client certificates it accepts.
    pub cafile: &'a Path,
    /// The broker's certificate.
    pub certfile: &'a Path,
    /// Its key.
    pub keyfile: &'a Path,
    /// mTLS: refuse clients without a certificate of `cafile`.
    pub require_certificate: bool,
    /// Refuse clients without a user name and password of this `mosquitto_passwd` file (on the
    /// TLS listener only; the plain one stays anonymous).
    pub password_file: Option<&'a Path>,
}

/// Picks a free loopback port (bind to 0, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Broker {
    /// Starts mosquitto in `dir` (persistence there when `persistent`).
    pub fn start(dir: &Path, persistent: bool) -> Self {
        Self::start_with(dir, persistent, None)
    }

    /// Starts mosquitto in `dir` with a plain listener ([`Broker::port`]) and a TLS one
    /// ([`Broker::tls_port`]).
    pub fn start_tls(dir: &Path, tls: &TlsListener<'_>) -> Self {
        Self::start_with(dir, false, Some(tls))
    }

    fn start_with(dir: &Path, persistent: bool, tls: Option<&TlsListener<'_>>) -> Self {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        let persistence = if persistent {
            // `user`: when started as root, mosquitto otherwise switches to the `mosquitto` user,
            // which cannot write the test's temporary directory.
            let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
            format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\nuser {user}\n",
                dir.display()
            )
        } else {
            "persistence false\n".to_string()
        };
        let tls_port = tls.map(|_| free_port());
        // Per-listener `allow_anonymous` and `password_file` need `per_listener_settings`.
        let per_listener = match tls.and_then(|tls| tls.password_file) {
            Some(_) => "per_listener_settings true\n",
            None => "",
        };
        // Listener options follow their `listener` line, so the TLS listener comes last.
        let tls_listener = match (tls, tls_port) {
            (Some(tls), Some(tls_port)) => format!(
                "user {user}\nlistener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\n\
                 keyfile {key}\nrequire_certificate {require}\n{login}",
                user = std::env::var("USER").unwrap_or_else(|_| "root".into()),
                ca = tls.cafile.display(),
                cert = tls.certfile.display(),
                key = tls.keyfile.display(),
                require = tls.require_certificate,
                login = match tls.password_file {
                    Some(file) =>
                        format!("allow_anonymous false\npassword_file {}\n", file.display()),
                    None => String::new(),
                },
            ),
            _ => String::new(),
        };
        // What docs/edge.md tells operators: deep queues for the persistent session, a wide
        // in-flight window, and a message size limit below the edge's max_packet_bytes.
        std::fs::write(
            &conf,
            format!(
                "{per_listener}listener {port} 127.0.0.1\nallow_anonymous true\n{persistence}\
                 max_queued_messages 0\nmax_inflight_messages 1000\n\
                 message_size_limit 12000000\nlog_dest none\n{tls_listener}"
            ),
        )
        .expect("write mosquitto.conf");
        let mut broker = Self {
            child: None,
            port,
            tls_port,
            conf,
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "mosquitto must be installed at /usr/sbin/mosquitto (apt-get install mosquitto)",
            );
        self.child = Some(child);
        for port in std::iter::once(self.port).chain(self.tls_port) {
            self.wait_listening(port);
        }
    }

    fn wait_listening(&mut self, port: u16) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("mosquitto exited with {status} before listening on {addr}");
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS listener's port (brokers from [`Broker::start_tls`]).
    pub fn tls_port(&self) -> u16 {
        self.tls_port.expect("broker started with a TLS listener")
    }

    /// Stops the broker gracefully (SIGTERM: it saves its persistence file) and starts it again
    /// on the same port with the same files.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .expect("run kill");
            assert!(status.success());
            child.wait().expect("mosquitto exits");
        }
        self.spawn();
    }

    /// Creates the edge's persistent session before the edge first runs, so the broker queues
    /// messages for it from now on (no need to wait for the edge to subscribe).
    pub async fn prepare_session(&self, client_id: &str, filters: &[&str]) {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", self.port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(10));
        let (client, mut eventloop) = AsyncClient::new(options, 10);
        let subs = filters
            .iter()
            .map(|f| SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce));
        client.subscribe_many(subs).await.expect("queue subscribe");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let event = tokio::time::timeout_at(deadline, eventloop.poll())
                .await
                .expect("suback within 10 s")
                .expect("session client connects");
            if let Event::Incoming(Incoming::SubAck(_)) = event {
                break;
            }
        }
        client.disconnect().await.expect("queue disconnect");
        loop {
            match tokio::time::timeout_at(deadline, eventloop.poll())
                .await
                .expect("disconnect within 10 s")
            {
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
