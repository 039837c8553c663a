//! MQTT intake: the broker connection task and the spool writer.
//!
//! ```text
//! broker ──▶ [mqtt task: EventLoop::poll] ──bounded mpsc──▶ [writer: decode, validate,
//!                    ▲                                        append, group fsync]
//!                    └──────── client.try_ack (request channel) ◀─┘  PUBACK after sync, in order
//! ```
//!
//! Rules that keep this deadlock-free and lossless (rumqttc issues #1025 and #910):
//! - The mqtt task does nothing but poll the event loop and hand publishes to the writer. It never
//!   acknowledges and never awaits the client.
//! - The writer acknowledges with the non-blocking `try_ack`; an ack the request channel cannot
//!   take yet is queued locally (in order) and retried, so the writer never waits on the mqtt task.
//! - A message is acknowledged only after `Spool::sync` returned Ok for its record (or after it
//!   was rejected or recognised as a redelivery of a synced record), in receive order.
//! - An ack leaves only on the connection its message arrived on; acks of a failed connection are
//!   dropped (see [`AckGate::on_connection_lost`]), so a broker that lost the session never gets a
//!   stale PUBACK for a packet id it has since given to another message. A lost session is
//!   counted (`fieldpulse_edge_mqtt_sessions_lost_total`) and logged.
//! - QoS 0 deliveries (a sensor publishing at QoS 0 gets QoS 0 despite our QoS 1 subscription)
//!   are spooled like the rest but have no ack, so they never enter the [`AckGate`].
//! - Backpressure: when the spool is full (policy `backpressure`), the writer stops taking
//!   messages; the channel fills, the mqtt task stops polling, and the broker holds further
//!   messages (up to its `max_queued_messages`) because they are not acknowledged.
//! - A full filesystem (`ENOSPC`, not the spool's cap): the spool rolls back to its last sync, so
//!   nothing of the failed group is spooled or acknowledged; the writer keeps the group, flags
//!   `fieldpulse_edge_spool_write_blocked` and retries it whole with backoff (woken early when
//!   the forwarder frees space). Meanwhile intake behaves as under backpressure: the broker
//!   holds new messages. Any other spool error stops intake (nothing more is acknowledged).
//! - Redeliveries: after a reconnect or restart the broker re-sends unacknowledged messages with
//!   DUP set and the same packet id. The [`DupWindow`] (rebuilt from the redelivery ring and the
//!   spool tail at startup) says when such a delivery certainly repeats a spooled message; only
//!   then is it acknowledged without spooling it twice. Separately, the hashes of the newest
//!   [`RECENT_MESSAGES`] spooled messages recognise timestamped readings that come again under a
//!   new packet id.
//!
//! Shutdown: the mqtt task stops handing over messages (unacknowledged ones are redelivered by
//! the broker next session), the writer drains the channel, fsyncs, acknowledges, then sends
//! DISCONNECT; the mqtt task keeps polling until the DISCONNECT went out, so every ack is flushed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ClientError, ConnectionError, Event, EventLoop, Incoming, MqttOptions, Outgoing,
    Publish, QoS, SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{EdgeConfig, Subscription};
use crate::dup_window::{DupWindow, PREVIOUS_PROCESS};
use crate::envelope;
use crate::metrics::{DropReason, MetricsHandle, MqttFailure, WriteBlockReason};
use crate::payload::{self, DecodeLimits, NameSource};
use crate::quarantine::Quarantine;
use crate::reject::{RejectCounts, RejectReason};
use crate::reload::LiveSettings;
use crate::spool::{Spool, SpoolError};
use crate::validate::{ValidReading, Validator};

/// Spooled messages remembered for redelivery detection.
pub const RECENT_MESSAGES: usize = 32_768;

/// Tracks which spooled records have had their PUBACK written to the broker connection.
///
/// The forwarder must not cut (and so, after the cloud's ack, possibly delete) a record whose
/// PUBACK has not left yet: after a kill -9 the broker redelivers that message, and the restarted
/// agent recognises the redelivery only while the record is still on disk (the spool tail). Acks
/// leave in commit order, so the unflushed records are always the newest committed ones. A
/// QoS 0 message has no ack: its record counts for the gate as flushed once every earlier ack is.
/// The gate also knows the broker connection (see [`AckGate::hand_acks`]): an ack that cannot
/// leave any more (its connection failed) is written off, never waited for.
#[derive(Debug, Default)]
pub struct AckGate {
    /// Acks handed to the MQTT client's request channel (or dropped unsent, see `hand_acks`).
    handed: AtomicU64,
    /// PUBACKs written to the socket (or written off: dropped unsent or with their connection).
    flushed: AtomicU64,
    /// Records committed (appended and synced).
    committed_records: AtomicU64,
    /// Records whose PUBACK (and every earlier one) has been flushed.
    flushed_records: AtomicU64,
    /// Per commit: (cumulative acks of the commit, cumulative records), oldest first.
    groups: Mutex<VecDeque<(u64, u64)>>,
    /// Cumulative acks planned (issued by commits).
    planned: AtomicU64,
    /// The writer waits for spool space. Its acks cannot leave then (the mqtt task is stalled
    /// behind the full intake channel), so holding records back would deadlock: the gate opens.
    spool_full: std::sync::atomic::AtomicBool,
    /// The broker connection acks may leave on. Locked while acks are handed to the client and
    /// while the mqtt task marks a connection up or down, so no ack slips onto the wrong one.
    link: Mutex<Link>,
}

/// The broker connection as the ack path sees it.
#[derive(Debug, Default, Clone, Copy)]
struct Link {
    /// Number of the current (or last) connection; 0 before the first CONNACK.
    connection: u64,
    /// True between a CONNACK and the connection's failure.
    up: bool,
}

/// An acknowledgement waiting to be handed to the MQTT client.
#[derive(Debug)]
pub struct QueuedAck {
    /// Packet id and QoS of the message (see `ack_handle`).
    publish: Publish,
    /// The connection the message arrived on; the ack may leave only on that one.
    connection: u64,
}

impl AckGate {
    /// Registers a commit of `n_records` records whose messages need `n_acks` acks.
    pub fn record_commit(&self, n_acks: u64, n_records: u64) {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let acks_end = self.planned.fetch_add(n_acks, Ordering::SeqCst) + n_acks;
        let records_end = self
            .committed_records
            .fetch_add(n_records, Ordering::SeqCst)
            + n_records;
        groups.push_back((acks_end, records_end));
        drop(groups);
        self.advance();
    }

    /// Counts one PUBACK written to the connection. Never counts past the acks handed: an event
    /// of a connection that already failed (and was written off) may still come out of rumqttc.
    pub fn on_flushed(&self) {
        let handed = self.handed.load(Ordering::SeqCst);
        let _ = self
            .flushed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |flushed| {
                (flushed < handed).then_some(flushed + 1)
            });
        self.advance();
    }

    /// A CONNACK arrived: acks of messages received from now on may leave. Returns the new
    /// connection's number (1 for the first), which the mqtt task stamps on every message.
    pub fn on_connected(&self) -> u64 {
        let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        link.connection += 1;
        link.up = true;
        link.connection
    }

    /// The number of the current (or last) connection.
    pub fn connection(&self) -> u64 {
        self.link
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connection
    }

    /// The connection failed. An ack goes out only on the connection its message arrived on
    /// (MQTT packet ids belong to a session, and a broker that did not keep the session reuses
    /// them for other messages), so every ack not written yet is dropped: `discard_handed` must
    /// remove acks still in the client's request channel (rumqttc drops them when the connection
    /// fails; `EventLoop::clean` drops any handed since). Runs under the link lock, so no ack is
    /// handed meanwhile. Dropping is lossless: the message is in the spool (acks are queued
    /// only after its fsync); a broker that kept the session redelivers it with DUP set and the
    /// redelivery is recognised and acknowledged; a broker that lost the session forgot it.
    pub fn on_connection_lost(&self, discard_handed: impl FnOnce()) {
        let mut link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        link.up = false;
        discard_handed();
        self.flushed
            .fetch_max(self.handed.load(Ordering::SeqCst), Ordering::SeqCst);
        drop(link);
        self.advance();
    }

    /// Hands queued acks to the client with `try_ack` (non-blocking), oldest first, until one
    /// does not fit; drops those whose connection is gone (see
    /// [`AckGate::on_connection_lost`]). Returns how many were dropped.
    pub fn hand_acks(
        &self,
        queue: &mut VecDeque<QueuedAck>,
        mut try_ack: impl FnMut(&Publish) -> Result<(), ClientError>,
    ) -> u64 {
        let link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
        let mut dropped = 0u64;
        while let Some(ack) = queue.front() {
            if !link.up || ack.connection != link.connection {
                queue.pop_front();
                dropped += 1;
                continue;
            }
            // Counted before it is handed (under the link lock: `on_connection_lost` must see
            // every handed ack): the mqtt task may write it, and report the flush, before
            // `try_ack` even returns, and a flush beyond the acks handed is ignored.
            self.handed.fetch_add(1, Ordering::SeqCst);
            match try_ack(&ack.publish) {
                Ok(()) => {
                    queue.pop_front();
                }
                Err(ClientError::TryRequest(_)) | Err(ClientError::Request(_)) => {
                    self.handed.fetch_sub(1, Ordering::SeqCst);
                    break;
                }
            }
        }
        self.handed.fetch_add(dropped, Ordering::SeqCst);
        if dropped > 0 {
            // Written off: they will never be flushed.
            self.flushed.fetch_add(dropped, Ordering::SeqCst);
        }
        drop(link);
        self.advance();
        dropped
    }

    /// Marks whether the writer is waiting for spool space.
    pub fn set_spool_full(&self, full: bool) {
        self.spool_full.store(full, Ordering::SeqCst);
    }

    /// Committed records whose PUBACK has not left yet (the newest ones); 0 while the writer
    /// waits for spool space.
    pub fn unflushed_records(&self) -> u64 {
        if self.spool_full.load(Ordering::SeqCst) {
            return 0;
        }
        self.committed_records
            .load(Ordering::SeqCst)
            .saturating_sub(self.flushed_records.load(Ordering::SeqCst))
    }

    /// (planned, handed, flushed, committed records, flushed records), for diagnostics.
    pub fn counters(&self) -> (u64, u64, u64, u64, u64) {
        (
            self.planned.load(Ordering::SeqCst),
            self.handed.load(Ordering::SeqCst),
            self.flushed.load(Ordering::SeqCst),
            self.committed_records.load(Ordering::SeqCst),
            self.flushed_records.load(Ordering::SeqCst),
        )
    }

    fn advance(&self) {
        let flushed = self.flushed.load(Ordering::SeqCst);
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(&(acks_end, records_end)) = groups.front() {
            if acks_end > flushed {
                break;
            }
            self.flushed_records
                .fetch_max(records_end, Ordering::SeqCst);
            groups.pop_front();
        }
    }
}

/// How often a rejection is logged per topic.
const REJECT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Why intake stopped.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The spool failed (IO): acknowledging further messages would be a lie.
    #[error("spool write failed")]
    Spool(#[source] SpoolError),
    /// The blocking writer thread panicked or was cancelled.
    #[error("spool writer thread stopped unexpectedly")]
    WriterThread(#[source] tokio::task::JoinError),
}

/// A publish with its receive time.
#[derive(Debug)]
pub struct Received {
    /// The MQTT publish.
    pub publish: Publish,
    /// Gateway receive time, ms since epoch.
    pub recv_ms: i64,
    /// The broker connection it arrived on (see [`AckGate::on_connected`]).
    pub connection: u64,
}

/// Builds the rumqttc client and event loop from the config (TLS when `[mqtt.tls]` is set; its
/// rustls configuration was built when the config was validated).
pub fn mqtt_connection(cfg: &EdgeConfig) -> (AsyncClient, EventLoop) {
    let mqtt = &cfg.mqtt;
    let mut options = MqttOptions::new(mqtt.client_id.clone(), mqtt.host.clone(), mqtt.port);
    options
        .set_keep_alive(mqtt.keep_alive)
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(mqtt.max_packet_bytes, 64 * 1024);
    if let Some((user, password)) = &mqtt.credentials {
        options.set_credentials(user.clone(), password.expose().to_string());
    }
    if let Some(tls) = &mqtt.tls {
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.client_config(),
        )));
    }
    // The request channel carries acks: large enough that `try_ack` rarely finds it full.
    let capacity = mqtt.channel_capacity + cfg.spool.commit_max_messages + 64;
    AsyncClient::new(options, capacity)
}

/// The broker connection task: polls the event loop, hands publishes to the writer.
pub struct MqttTask {
    /// Event loop (owned: only this task polls it).
    pub eventloop: EventLoop,
    /// Client, used only for non-blocking subscribes.
    pub client: AsyncClient,
    /// Subscription filters; a reload (SIGHUP) may change them.
    pub filters: watch::Receiver<Vec<String>>,
    /// To the writer.
    pub tx: mpsc::Sender<Received>,
    /// Metrics.
    pub metrics: MetricsHandle,
    /// Delay between reconnect attempts.
    pub reconnect_delay: Duration,
    /// Ack progress shared with the writer and the forwarder.
    pub gate: Arc<AckGate>,
    /// Which redeliveries repeat spooled messages (fed with PUBACKs, pings and sessions).
    pub window: Arc<DupWindow>,
}

impl MqttTask {
    /// Runs until `stop_intake` is cancelled, then keeps polling (without taking new messages)
    /// until the writer's DISCONNECT went out or `hard_stop` is cancelled.
    pub async fn run(self, stop_intake: CancellationToken, hard_stop: CancellationToken) {
        let MqttTask {
            mut eventloop,
            client,
            filters: mut live_filters,
            tx,
            metrics,
            reconnect_delay,
            gate,
            window,
        } = self;
        let mut filters = live_filters.borrow_and_update().clone();
        // Filters a reload removed: unsubscribed on this connection (a reconnect subscribes the
        // current filters only; the persistent session may keep old ones until then).
        let mut to_unsubscribe: Vec<String> = Vec::new();
        // False once the reload side is gone (nothing can change the filters any more).
        let mut filters_live = true;
        let mut filters_changed = false;
        let metrics = metrics.inner();
        let mut tx = Some(tx);
        let mut need_subscribe = false;
        let mut connection = gate.connection();
        let mut failure_log = FailureLog::default();
        loop {
            if stop_intake.is_cancelled() && tx.is_some() {
                info!("Stopping MQTT intake.");
                // Dropping the sender lets the writer drain and finish.
                tx = None;
            }
            if filters_changed {
                filters_changed = false;
                let new = live_filters.borrow_and_update().clone();
                to_unsubscribe.extend(filters.iter().filter(|f| !new.contains(f)).cloned());
                to_unsubscribe.retain(|f| !new.contains(f));
                info!(filters = ?new, "Topic filters reloaded.");
                filters = new;
                need_subscribe = true;
            }
            while let Some(filter) = to_unsubscribe.last() {
                match client.try_unsubscribe(filter.clone()) {
                    Ok(()) => {
                        to_unsubscribe.pop();
                    }
                    Err(err) => {
                        debug!(%err, "Unsubscribe request deferred.");
                        break;
                    }
                }
            }
            if need_subscribe {
                let subs = filters
                    .iter()
                    .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
                match client.try_subscribe_many(subs) {
                    Ok(()) => need_subscribe = false,
                    Err(err) => debug!(%err, "Subscribe request deferred."),
                }
            }
            let event = tokio::select! {
                biased;
                _ = hard_stop.cancelled() => break,
                // Cancelling `poll` at shutdown may lose a half-read packet; that message was not
                // acknowledged, so the broker redelivers it next session.
                _ = stop_intake.cancelled(), if tx.is_some() => continue,
                changed = live_filters.changed(), if filters_live => {
                    match changed {
                        Ok(()) => filters_changed = true,
                        Err(_) => filters_live = false,
                    }
                    continue;
                }
                event = eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Incoming::Publish(publish))) => {
                    hand_over(&mut tx, publish, connection, metrics, &stop_intake).await;
                }
                Ok(Event::Incoming(Incoming::ConnAck(connack))) => {
                    connection = gate.on_connected();
                    failure_log = FailureLog::default();
                    info!(
                        session_present = connack.session_present,
                        "Connected to the MQTT broker."
                    );
                    if !connack.session_present {
                        // Nothing of an earlier session will be redelivered.
                        window.on_session_lost();
                    }
                    if !connack.session_present && connection > 1 {
                        // Acks of the old session were dropped with its connection (see
                        // `AckGate::on_connection_lost`); their messages are spooled. What the
                        // broker held for the agent and had not delivered yet is gone.
                        metrics.mqtt_sessions_lost.fetch_add(1, Ordering::Relaxed);
                        warn!(
                            "The MQTT broker did not keep the agent's session: messages it held \
                             for the agent are lost. Unsent acknowledgements were dropped; what \
                             the agent received before is spooled."
                        );
                    }
                    metrics.mqtt_connects.fetch_add(1, Ordering::Relaxed);
                    // Always (re)subscribe: a broker restarted without persistence forgot us.
                    need_subscribe = true;
                }
                Ok(Event::Incoming(Incoming::SubAck(suback))) => {
                    let failed = suback
                        .return_codes
                        .iter()
                        .filter(|code| matches!(code, SubscribeReasonCode::Failure))
                        .count();
                    if failed > 0 {
                        error!(failed, "The broker refused subscriptions; check its ACLs.");
                    }
                    metrics.mqtt_connected.store(true, Ordering::Relaxed);
                }
                // PUBREC: the ack of a QoS 2 delivery (not expected: we subscribe at QoS 1).
                Ok(Event::Outgoing(Outgoing::PubAck(pkid) | Outgoing::PubRec(pkid))) => {
                    window.on_ack_written(pkid);
                    gate.on_flushed();
                }
                Ok(Event::Outgoing(Outgoing::PingReq)) => window.on_ping_sent(),
                Ok(Event::Incoming(Incoming::PingResp)) => window.on_ping_answered(),
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    debug!("Sent DISCONNECT; all acknowledgements are flushed.");
                    break;
                }
                Ok(_) => {}
                Err(err) => {
                    metrics.mqtt_connected.store(false, Ordering::Relaxed);
                    // Publishes read in the same batch as the end of the stream are still
                    // buffered in the event loop, which would yield them after the next CONNACK:
                    // hand them over now, as the failed connection's (their acks must not go out
                    // on the next one). Their other buffered events are moot with the connection.
                    let leftovers: Vec<Event> = eventloop.state.events.drain(..).collect();
                    for event in leftovers {
                        if let Event::Incoming(Incoming::Publish(publish)) = event {
                            hand_over(&mut tx, publish, connection, metrics, &stop_intake).await;
                        }
                    }
                    // `poll` failed after `clean`ing the event loop; clean again under the link
                    // lock to drop acks the writer handed in between.
                    gate.on_connection_lost(|| eventloop.clean());
                    window.on_connection_lost();
                    if stop_intake.is_cancelled() && tx.is_none() {
                        // Shutting down without a broker: unsent acks are redelivered next
                        // session (and recognised), so there is nothing left to wait for.
                        debug!(%err, "Broker connection lost during shutdown.");
                        break;
                    }
                    let reason = failure_reason(&err);
                    metrics.add_mqtt_failure(reason);
                    match reason {
                        // An operator must act; the agent retries meanwhile (every attempt counted,
                        // logged once a minute).
                        MqttFailure::Tls if failure_log.should_log(reason) => error!(
                            %err,
                            "TLS with the MQTT broker failed; check mqtt.tls (ca_file, \
                             server_name, client certificate) against the broker's certificate. \
                             Retrying."
                        ),
                        MqttFailure::Refused if failure_log.should_log(reason) => error!(
                            %err,
                            "The MQTT broker refused the connection; check mqtt.username and the \
                             password. Retrying."
                        ),
                        MqttFailure::Tls | MqttFailure::Refused => {
                            debug!(%err, "MQTT connection failed again; retrying.")
                        }
                        MqttFailure::Network => {
                            warn!(%err, "MQTT connection failed; reconnecting.")
                        }
                    }
                    tokio::select! {
                        biased;
                        _ = hard_stop.cancelled() => break,
                        _ = tokio::time::sleep(reconnect_delay) => {}
                    }
                }
            }
        }
        metrics.mqtt_connected.store(false, Ordering::Relaxed);
    }
}

/// Classifies a failed broker connection for `fieldpulse_edge_mqtt_connection_failures_total`.
fn failure_reason(err: &ConnectionError) -> MqttFailure {
    match err {
        ConnectionError::Tls(_) => MqttFailure::Tls,
        ConnectionError::ConnectionRefused(_) => MqttFailure::Refused,
        // A refused client certificate shows up after the handshake, as an alert read as an IO
        // error of the first packet.
        other if crate::tls::is_tls_failure(other) => MqttFailure::Tls,
        _ => MqttFailure::Network,
    }
}

/// Rate limit of the errors that need an operator: the first failure of a kind, then at most one
/// log line a minute while the same kind repeats.
#[derive(Debug, Default)]
struct FailureLog {
    last: Option<(MqttFailure, Instant)>,
}

impl FailureLog {
    const EVERY: Duration = Duration::from_secs(60);

    fn should_log(&mut self, reason: MqttFailure) -> bool {
        let now = Instant::now();
        let log = match self.last {
            Some((last, at)) => last != reason || now.duration_since(at) >= Self::EVERY,
            None => true,
        };
        if log {
            self.last = Some((reason, now));
        }
        log
    }
}

/// Hands one publish, received on `connection`, to the writer. Waiting here is the backpressure
/// point: the mqtt task stops polling, so TCP and then the broker hold further messages.
/// Cancel-safe: a message lost here was not acknowledged.
async fn hand_over(
    tx: &mut Option<mpsc::Sender<Received>>,
    publish: Publish,
    connection: u64,
    metrics: &crate::metrics::EdgeMetrics,
    stop_intake: &CancellationToken,
) {
    let Some(sender) = tx.as_ref() else {
        // Shutting down: not acknowledged, the broker keeps it for next session.
        return;
    };
    let received = Received {
        publish,
        recv_ms: crate::clock::now_ms(),
        connection,
    };
    metrics
        .last_message_ms
        .store(received.recv_ms, Ordering::Relaxed);
    tokio::select! {
        biased;
        _ = stop_intake.cancelled() => {}
        res = sender.send(received) => {
            if res.is_err() {
                // The writer is gone (fatal error); stop taking messages.
                *tx = None;
            }
        }
    }
}

/// Remembers the hashes (topic and payload) of the newest [`RECENT_MESSAGES`] spooled messages,
/// whatever their packet id: timestamped readings that come again are the same readings.
#[derive(Debug, Default)]
pub struct RecentMessages {
    order: VecDeque<u64>,
    /// How many remembered messages have each hash.
    hashes: HashMap<u64, u32>,
}

impl RecentMessages {
    /// Remembers one spooled message.
    pub fn insert(&mut self, msg_hash: u64) {
        self.order.push_back(msg_hash);
        *self.hashes.entry(msg_hash).or_default() += 1;
        if self.order.len() > RECENT_MESSAGES {
            if let Some(old) = self.order.pop_front() {
                if let Some(n) = self.hashes.get_mut(&old) {
                    *n -= 1;
                    if *n == 0 {
                        self.hashes.remove(&old);
                    }
                }
            }
        }
    }

    /// True when a message with this hash (same topic and payload) was spooled recently.
    pub fn contains_hash(&self, msg_hash: u64) -> bool {
        self.hashes.contains_key(&msg_hash)
    }

    /// Rebuilds the filter and the redelivery window after a restart: first `sent` (messages of
    /// batches sent before, from the redelivery ring), then the newest spool records (so they
    /// are the last to be forgotten and the newest per packet id). Both count as the previous
    /// process's ([`PREVIOUS_PROCESS`]).
    pub fn rebuild(spool: &Spool, sent: &[(u16, u64)]) -> Result<(Self, DupWindow), SpoolError> {
        let mut recent = Self::default();
        let window = DupWindow::default();
        for &(pkid, hash) in sent {
            recent.insert(hash);
            window.insert(pkid, hash, PREVIOUS_PROCESS);
        }
        let records = spool.tail(RECENT_MESSAGES / 2)?;
        for record in records {
            if let Ok(header) = envelope::parse_header(&record.payload) {
                recent.insert(header.msg_hash);
                window.insert(header.pkid, header.msg_hash, PREVIOUS_PROCESS);
            }
        }
        Ok((recent, window))
    }
}

/// What the writer decided for one message before touching the spool.
#[derive(Debug)]
enum Prepared {
    /// A redelivery of a spooled message: acknowledge only.
    Duplicate { msg_hash: u64 },
    /// Nothing to spool (all rejected): acknowledge.
    Rejected {
        n_received: u64,
        rejected: RejectCounts,
    },
    /// Append this record, then acknowledge after sync.
    Record {
        bytes: Vec<u8>,
        n_readings: u32,
        msg_hash: u64,
        rejected: RejectCounts,
        stamps: StampCounts,
        /// Every reading carries a device timestamp: a later copy is the same readings.
        all_stamped: bool,
    },
}

/// How the readings of a record were stamped (counted once the record is spooled).
#[derive(Debug, Clone, Copy, Default)]
struct StampCounts {
    /// Stamped by the edge at receive time.
    receive_stamped: u64,
    /// Received while the agent held messages back or caught up after a hold.
    held_back: u64,
}

impl StampCounts {
    fn of(readings: &[ValidReading]) -> Self {
        readings.iter().fold(Self::default(), |mut counts, r| {
            counts.receive_stamped += u64::from(r.receive_stamped);
            counts.held_back += u64::from(r.held_back);
            counts
        })
    }
}

/// The writer's synchronous core: decoding, validation and spool appends. Runs on a blocking
/// thread (it fsyncs).
pub struct WriterCore {
    spool: Arc<Mutex<Spool>>,
    limits: DecodeLimits,
    validator: Validator,
    quarantine: Option<Quarantine>,
    recent: RecentMessages,
    window: Arc<DupWindow>,
    /// Reloadable settings; `subscriptions` is their topic mappings for the current group.
    live: Arc<LiveSettings>,
    subscriptions: Arc<Vec<Subscription>>,
    metrics: MetricsHandle,
    last_reject_log: HashMap<String, Instant>,
    valid: Vec<ValidReading>,
    gate: Arc<AckGate>,
}

/// Result of one group commit.
#[derive(Debug, Default)]
pub struct GroupOutcome {
    /// Acks to send (QoS 1 and 2 messages only), in receive order.
    pub acks: Vec<QueuedAck>,
    /// True when the spool refused an append (backpressure): the rest of the group is waiting.
    pub full: bool,
    /// Records made durable by this commit.
    pub n_committed: u64,
}

impl WriterCore {
    /// Builds the core; `recent` and `window` come from [`RecentMessages::rebuild`].
    pub fn new(
        spool: Arc<Mutex<Spool>>,
        config: Arc<EdgeConfig>,
        quarantine: Option<Quarantine>,
        (recent, window): (RecentMessages, Arc<DupWindow>),
        live: Arc<LiveSettings>,
        metrics: MetricsHandle,
        gate: Arc<AckGate>,
    ) -> Self {
        Self {
            limits: DecodeLimits {
                max_payload_bytes: config.mqtt.max_payload_bytes,
                max_json_depth: config.validation.max_json_depth,
                max_readings: config.validation.max_readings_per_message,
            },
            validator: Validator::new(&config.validation),
            spool,
            quarantine,
            recent,
            window,
            subscriptions: live.subscriptions(),
            live,
            metrics,
            last_reject_log: HashMap::new(),
            valid: Vec::new(),
            gate,
        }
    }

    /// Decides what to do with one message. `in_group`: hashes of the records prepared earlier in
    /// the same group (not yet in `recent`, which learns them only once they are durable).
    fn prepare(&mut self, received: &Received, in_group: &HashSet<u64>) -> Prepared {
        let publish = &received.publish;
        let msg_hash = envelope::message_hash(&publish.topic, &publish.payload);
        if publish.dup
            && self
                .window
                .is_redelivery(publish.pkid, msg_hash, received.connection)
        {
            return Prepared::Duplicate { msg_hash };
        }
        let subscriptions = Arc::clone(&self.subscriptions);
        let Some(sub) = subscriptions.iter().find_map(|sub| {
            sub.pattern
                .extract(&publish.topic)
                .map(|fields| (sub, fields))
        }) else {
            let mut rejected = RejectCounts::default();
            rejected.add(RejectReason::UnmatchedTopic, 1);
            return Prepared::Rejected {
                n_received: 1,
                rejected,
            };
        };
        let (sub, fields) = sub;
        let names = NameSource {
            topic: fields,
            default_sensor: sub.sensor.as_deref(),
        };
        let decoded = payload::decode(&publish.payload, sub.format, names, &self.limits);
        // The same topic and payload with device timestamps is the same readings: a
        // redelivery under a new packet id without the DUP flag (a broker that re-reads
        // its log when a session resumes, as rumqttd does) or a device re-publishing.
        // Without timestamps each copy is a new reading (stamped at receive time).
        let all_stamped =
            !decoded.readings.is_empty() && decoded.readings.iter().all(|r| r.ts_ms.is_some());
        if all_stamped && (self.recent.contains_hash(msg_hash) || in_group.contains(&msg_hash)) {
            return Prepared::Duplicate { msg_hash };
        }
        let mut rejected = decoded.rejected;
        let n_received = decoded.readings.len() as u64 + rejected.total();
        self.valid.clear();
        self.validator.validate(
            decoded.readings,
            received.recv_ms,
            &mut self.valid,
            &mut rejected,
        );
        if self.valid.is_empty() {
            return Prepared::Rejected {
                n_received,
                rejected,
            };
        }
        let mut bytes = Vec::new();
        envelope::encode(
            publish.pkid,
            msg_hash,
            received.recv_ms,
            &self.valid,
            &mut bytes,
        );
        Prepared::Record {
            bytes,
            n_readings: self.valid.len() as u32,
            msg_hash,
            rejected,
            stamps: StampCounts::of(&self.valid),
            all_stamped,
        }
    }

    fn note_rejected(&mut self, received: &Received, rejected: &RejectCounts) {
        let Some(reason) = rejected.first() else {
            return;
        };
        let metrics = self.metrics.inner();
        metrics.add_rejected(rejected);
        let topic = &received.publish.topic;
        let now = Instant::now();
        let due = self
            .last_reject_log
            .get(topic.as_str())
            .is_none_or(|last| now.duration_since(*last) >= REJECT_LOG_INTERVAL);
        if due {
            if self.last_reject_log.len() > 10_000 {
                self.last_reject_log.clear();
            }
            self.last_reject_log.insert(topic.clone(), now);
            warn!(%topic, reason = reason.as_str(), n = rejected.total(), "Rejected readings.");
        }
        if let Some(quarantine) = self.quarantine.as_mut() {
            if let Err(err) =
                quarantine.record(received.recv_ms, topic, reason, &received.publish.payload)
            {
                warn!(error = %err, "Quarantine write failed; disabling the quarantine file.");
                self.quarantine = None;
            }
        }
    }

    /// Processes messages from the front of `group` until it is empty or the spool is full,
    /// then fsyncs once. Consumed messages are removed from `group` and listed for acking.
    ///
    /// Side effects (counters, the redelivery filters, the quarantine) happen only once the
    /// commit is durable: when the filesystem is full the spool rolls back to its last sync
    /// (see [`SpoolError::is_no_space`]) and `group` is left as it was, to be retried whole.
    ///
    /// # Errors
    /// The spool's IO error; nothing of this group may be acknowledged then.
    fn commit_group(
        &mut self,
        group: &mut VecDeque<(Received, Option<Prepared>)>,
    ) -> Result<GroupOutcome, SpoolError> {
        let res = self.commit_group_inner(group);
        if matches!(&res, Err(err) if err.is_no_space()) {
            // The broker keeps these messages unacknowledged until space returns: the agent
            // holds them back, so their age is judged from now on (see `validate`).
            self.validator.hold_started(crate::clock::now_ms());
        }
        res
    }

    fn commit_group_inner(
        &mut self,
        group: &mut VecDeque<(Received, Option<Prepared>)>,
    ) -> Result<GroupOutcome, SpoolError> {
        let mut outcome = GroupOutcome::default();
        // Topic mappings as reloaded last (SIGHUP), for this whole group.
        self.subscriptions = self.live.subscriptions();
        // A copy of a message earlier in this group is a duplicate too (the first copy reaches
        // `recent` only once it is durable).
        let mut in_group = HashSet::new();
        for (received, prepared) in group.iter_mut() {
            if prepared.is_none() {
                *prepared = Some(self.prepare(received, &in_group));
            }
            if let Some(Prepared::Record {
                msg_hash,
                all_stamped: true,
                ..
            }) = prepared
            {
                in_group.insert(*msg_hash);
            }
        }
        let spool = Arc::clone(&self.spool);
        let mut spool = spool.lock().unwrap_or_else(PoisonError::into_inner);
        let metrics = self.metrics.clone();
        let metrics = metrics.inner();
        // Append phase: how many messages from the front this commit settles.
        let mut n_settled = 0;
        for (_, prepared) in group.iter_mut() {
            let Some(Prepared::Record {
                bytes,
                n_readings,
                rejected,
                ..
            }) = prepared.as_ref()
            else {
                n_settled += 1;
                continue;
            };
            match spool.append(bytes, *n_readings) {
                Ok(appended) => {
                    if !appended.dropped.is_empty() {
                        // Evictions are done (and durable) whatever happens to this group.
                        metrics.evictions.fetch_add(1, Ordering::Relaxed);
                        metrics.add_dropped(DropReason::SpoolFull, appended.dropped.readings);
                        metrics
                            .records_dropped
                            .fetch_add(appended.dropped.records, Ordering::Relaxed);
                        warn!(
                            records = appended.dropped.records,
                            readings = appended.dropped.readings,
                            "Spool full: dropped the oldest records (policy drop_oldest)."
                        );
                    }
                    n_settled += 1;
                }
                Err(err) if err.is_full() => {
                    // The broker keeps what follows unacknowledged: the agent holds it back,
                    // so its age is judged from now on (see `validate`).
                    self.validator.hold_started(crate::clock::now_ms());
                    outcome.full = true;
                    break;
                }
                Err(SpoolError::RecordTooLarge { .. }) => {
                    let mut rejected = *rejected;
                    rejected.add(RejectReason::TooLarge, u64::from(*n_readings));
                    *prepared = Some(Prepared::Rejected {
                        n_received: rejected.total(),
                        rejected,
                    });
                    n_settled += 1;
                }
                Err(err) => return Err(err),
            }
        }
        let n_records = group
            .iter()
            .take(n_settled)
            .filter(|(_, prepared)| matches!(prepared, Some(Prepared::Record { .. })))
            .count();
        if n_records > 0 {
            spool.sync()?;
            metrics.commits.fetch_add(1, Ordering::Relaxed);
            // Taking messages again: a hold (if any) ends, its catch-up begins.
            self.validator.hold_ended(crate::clock::now_ms());
        }
        // Durable: settle the messages.
        let mut n_spooled_readings = 0u64;
        for (received, prepared) in group.drain(..n_settled) {
            match prepared.expect("prepared above") {
                Prepared::Duplicate { msg_hash } => {
                    metrics.messages_duplicate.fetch_add(1, Ordering::Relaxed);
                    // Acknowledged on this connection: if that ack is lost too, the next
                    // redelivery (on a later connection) must still be recognised.
                    if received.publish.qos != QoS::AtMostOnce {
                        self.window
                            .insert(received.publish.pkid, msg_hash, received.connection);
                    }
                }
                Prepared::Rejected {
                    n_received,
                    rejected,
                } => {
                    metrics
                        .readings_received
                        .fetch_add(n_received, Ordering::Relaxed);
                    self.note_rejected(&received, &rejected);
                }
                Prepared::Record {
                    n_readings,
                    msg_hash,
                    rejected,
                    stamps,
                    ..
                } => {
                    metrics
                        .readings_receive_stamped
                        .fetch_add(stamps.receive_stamped, Ordering::Relaxed);
                    metrics
                        .readings_held_back
                        .fetch_add(stamps.held_back, Ordering::Relaxed);
                    // QoS 0 messages too (packet id 0, never matched as a DUP redelivery):
                    // a later copy of the same timestamped readings is still a duplicate.
                    self.recent.insert(msg_hash);
                    if received.publish.qos != QoS::AtMostOnce {
                        self.window
                            .insert(received.publish.pkid, msg_hash, received.connection);
                    }
                    n_spooled_readings += u64::from(n_readings);
                    outcome.n_committed += 1;
                    metrics
                        .readings_received
                        .fetch_add(u64::from(n_readings) + rejected.total(), Ordering::Relaxed);
                    self.note_rejected(&received, &rejected);
                }
            }
            metrics.messages_received.fetch_add(1, Ordering::Relaxed);
            // A QoS 0 delivery (a sensor publishing at QoS 0 is delivered at QoS 0 despite our
            // QoS 1 subscription) has nothing to acknowledge: it must not enter the ack gate,
            // which would wait forever for its PUBACK and hold back every later record.
            if received.publish.qos != QoS::AtMostOnce {
                outcome.acks.push(QueuedAck {
                    publish: ack_handle(&received.publish),
                    connection: received.connection,
                });
            }
        }
        metrics
            .readings_spooled
            .fetch_add(n_spooled_readings, Ordering::Relaxed);
        // Registered while the spool is still locked: the forwarder must see these records as
        // unflushed before it can cut them.
        self.gate
            .record_commit(outcome.acks.len() as u64, outcome.n_committed);
        publish_spool_gauges(&spool, &self.metrics);
        Ok(outcome)
    }
}

/// What an ack needs of a publish (packet id and QoS), without its topic and payload: a queued
/// ack must not keep the payload (and the read buffer it shares memory with) alive.
fn ack_handle(publish: &Publish) -> Publish {
    let mut handle = Publish::new(String::new(), publish.qos, Vec::new());
    handle.pkid = publish.pkid;
    handle
}

/// Copies the spool's stats into the metrics gauges.
pub fn publish_spool_gauges(spool: &Spool, metrics: &MetricsHandle) {
    let stats = spool.stats();
    let m = metrics.inner();
    m.spool_bytes.store(stats.bytes_on_disk, Ordering::Relaxed);
    m.spool_max_bytes.store(stats.max_bytes, Ordering::Relaxed);
    m.spool_records_uncut
        .store(stats.uncut_records, Ordering::Relaxed);
    m.spool_batches_pending
        .store(stats.pending_batches, Ordering::Relaxed);
}

/// The async side of the writer: gathers groups, runs [`WriterCore::commit_group`] on a blocking
/// thread, acknowledges, and waits for space under backpressure.
pub struct Writer {
    /// The synchronous core (moved to a blocking thread per group).
    pub core: WriterCore,
    /// From the mqtt task.
    pub rx: mpsc::Receiver<Received>,
    /// For acks and the final DISCONNECT.
    pub client: AsyncClient,
    /// Bumped after every commit (the forwarder watches it).
    pub committed: watch::Sender<u64>,
    /// Notified by the forwarder when acks freed spool space.
    pub space_freed: Arc<Notify>,
    /// Group commit window.
    pub commit_interval: Duration,
    /// Group size cap.
    pub commit_max_messages: usize,
    /// Ack progress shared with the mqtt task and the forwarder.
    pub gate: Arc<AckGate>,
}

impl Writer {
    /// Runs until the mqtt task closes the channel; then acks everything and disconnects.
    ///
    /// # Errors
    /// [`IntakeError`] when the spool fails; no further message is acknowledged.
    pub async fn run(self, hard_stop: CancellationToken) -> Result<(), IntakeError> {
        let Writer {
            mut core,
            mut rx,
            client,
            committed,
            space_freed,
            commit_interval,
            commit_max_messages,
            gate,
        } = self;
        let mut group: VecDeque<(Received, Option<Prepared>)> = VecDeque::new();
        let mut unsent_acks: VecDeque<QueuedAck> = VecDeque::new();
        let mut open = true;
        let mut no_space_retries = 0u32;
        let metrics = core.metrics.clone();
        loop {
            // Gather: the first message (or leftovers), then whatever arrives within the window.
            if group.is_empty() {
                if !open {
                    break;
                }
                let next = if unsent_acks.is_empty() {
                    rx.recv().await
                } else {
                    // Acks are waiting for room in the client's request channel: retry them
                    // while idle too, not only when the next message arrives.
                    tokio::select! {
                        next = rx.recv() => next,
                        _ = tokio::time::sleep(Duration::from_millis(1)) => {
                            flush_acks(&client, &mut unsent_acks, &gate);
                            metrics.inner().acks_waiting.store(unsent_acks.len() as u64, Ordering::Relaxed);
                            continue;
                        }
                    }
                };
                match next {
                    Some(received) => group.push_back((received, None)),
                    None => {
                        open = false;
                        continue;
                    }
                }
            }
            let deadline = tokio::time::Instant::now() + commit_interval;
            while open && group.len() < commit_max_messages {
                match rx.try_recv() {
                    Ok(received) => group.push_back((received, None)),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(received)) => group.push_back((received, None)),
                            Ok(None) => open = false,
                            Err(_) => break,
                        }
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => open = false,
                }
            }

            let (returned_core, returned_group, res) = tokio::task::spawn_blocking(move || {
                let res = core.commit_group(&mut group);
                (core, group, res)
            })
            .await
            .map_err(IntakeError::WriterThread)?;
            core = returned_core;
            group = returned_group;
            let outcome = match res {
                Ok(outcome) => outcome,
                Err(err) if err.is_no_space() => {
                    // The filesystem is full (not the spool's cap): the spool rolled back to its
                    // last sync, so nothing of this group is spooled or acknowledged. Wait and
                    // retry it whole; meanwhile the channel fills, the mqtt task stops taking
                    // messages and the broker holds them. Forwarding goes on (acks free space).
                    let m = metrics.inner();
                    m.spool_write_errors.fetch_add(1, Ordering::Relaxed);
                    if no_space_retries == 0 {
                        error!(error = %err, waiting = group.len(), "Spool filesystem full; refusing MQTT messages until space returns.");
                        m.set_write_blocked(Some(WriteBlockReason::NoSpace));
                    }
                    // The mqtt task may be stalled behind the full channel: hold nothing back.
                    gate.set_spool_full(true);
                    flush_acks(&client, &mut unsent_acks, &gate);
                    let delay = no_space_backoff(no_space_retries);
                    no_space_retries = no_space_retries.saturating_add(1);
                    tokio::select! {
                        biased;
                        _ = hard_stop.cancelled() => break,
                        _ = space_freed.notified() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                    if rx.is_closed() && !group.is_empty() && no_space_retries > 1 {
                        // Shutting down while full: the unacknowledged messages stay with the
                        // broker and are redelivered next session.
                        warn!(waiting = group.len(), "Stopping with the spool filesystem full; the broker keeps the unacknowledged messages.");
                        group.clear();
                        open = false;
                    }
                    continue;
                }
                Err(err) => {
                    // Not about space (an IO error, a failing disk): memory and disk may disagree,
                    // so acknowledging anything more would be a lie. The agent stops; a restart
                    // recovers the spool (see `AgentError::Intake`).
                    error!(error = %err, "Spool write failed; stopping intake without acknowledging.");
                    return Err(IntakeError::Spool(err));
                }
            };
            if no_space_retries > 0 {
                no_space_retries = 0;
                metrics.inner().set_write_blocked(None);
                info!("Spool filesystem has space again; taking MQTT messages.");
            }
            if outcome.n_committed > 0 {
                committed.send_modify(|n| *n += outcome.n_committed);
            }
            unsent_acks.extend(outcome.acks);
            flush_acks(&client, &mut unsent_acks, &gate);
            metrics
                .inner()
                .acks_waiting
                .store(unsent_acks.len() as u64, Ordering::Relaxed);

            gate.set_spool_full(outcome.full);
            if outcome.full {
                metrics
                    .inner()
                    .backpressure_waits
                    .fetch_add(1, Ordering::Relaxed);
                debug!(
                    waiting = group.len(),
                    "Spool full; waiting for acknowledged batches to free space."
                );
                tokio::select! {
                    biased;
                    _ = hard_stop.cancelled() => break,
                    _ = space_freed.notified() => {}
                    // Re-check periodically: a notification may race with the failed append.
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                flush_acks(&client, &mut unsent_acks, &gate);
            }
        }
        // Channel closed: every consumed message is durable. Hand the remaining acks to the event
        // loop (still polled by the mqtt task), then DISCONNECT behind them.
        loop {
            flush_acks(&client, &mut unsent_acks, &gate);
            if unsent_acks.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                _ = hard_stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        }
        tokio::select! {
            biased;
            _ = hard_stop.cancelled() => {}
            _ = client.disconnect() => {}
        }
        Ok(())
    }
}

/// Delay before the `retry`th (from 0) retry of a group the full filesystem refused: 250 ms,
/// doubling up to 5 s. Space freed by the forwarder's acks wakes the writer earlier.
fn no_space_backoff(retry: u32) -> Duration {
    Duration::from_millis(250)
        .saturating_mul(1 << retry.min(5))
        .min(Duration::from_secs(5))
}

/// Hands queued acks to the event loop without waiting; stops at the first that does not fit.
/// Acks whose connection is gone are dropped (see [`AckGate::on_connection_lost`]).
fn flush_acks(client: &AsyncClient, unsent: &mut VecDeque<QueuedAck>, gate: &AckGate) {
    let dropped = gate.hand_acks(unsent, |publish| client.try_ack(publish));
    if dropped > 0 {
        debug!(
            dropped,
            "Dropped acknowledgements of a closed broker connection."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(pkid: u16, connection: u64) -> QueuedAck {
        let mut publish = Publish::new(String::new(), QoS::AtLeastOnce, Vec::new());
        publish.pkid = pkid;
        QueuedAck {
            publish,
            connection,
        }
    }

    #[test]
    fn acks_of_a_lost_connection_never_go_out_on_the_next_one() {
        let gate = AckGate::default();
        assert_eq!(gate.on_connected(), 1);
        let mut queue: VecDeque<QueuedAck> = (1..=3).map(|pkid| queued(pkid, 1)).collect();
        gate.record_commit(3, 3);
        let mut discarded = false;
        gate.on_connection_lost(|| discarded = true);
        assert!(
            discarded,
            "acks already handed are discarded with the connection"
        );
        // The broker did not keep the session: it numbers its messages afresh.
        assert_eq!(gate.on_connected(), 2);
        queue.push_back(queued(1, 2));
        gate.record_commit(1, 1);
        let mut sent = Vec::new();
        let dropped = gate.hand_acks(&mut queue, |publish| {
            sent.push(publish.pkid);
            Ok(())
        });
        assert_eq!(dropped, 3);
        assert_eq!(sent, vec![1], "only the new connection's ack goes out");
        assert!(queue.is_empty());
        // The dropped acks are written off: only the record whose ack is in flight is held.
        assert_eq!(gate.unflushed_records(), 1);
        gate.on_flushed();
        assert_eq!(gate.unflushed_records(), 0);
    }

    #[test]
    fn acks_queued_while_disconnected_are_dropped() {
        let gate = AckGate::default();
        let mut queue: VecDeque<QueuedAck> = VecDeque::from([queued(7, 0)]);
        gate.record_commit(1, 1);
        let dropped = gate.hand_acks(&mut queue, |_| panic!("no connection to send on"));
        assert_eq!(dropped, 1);
        assert_eq!(gate.unflushed_records(), 0);
    }

    #[test]
    fn acks_leave_in_order_and_wait_for_room_in_the_request_channel() {
        let gate = AckGate::default();
        let connection = gate.on_connected();
        let mut queue: VecDeque<QueuedAck> = (1..=3).map(|pkid| queued(pkid, connection)).collect();
        gate.record_commit(2, 2);
        gate.record_commit(1, 1);
        let mut room = 2;
        let mut sent = Vec::new();
        let dropped = gate.hand_acks(&mut queue, |publish| {
            if room == 0 {
                return Err(ClientError::TryRequest(rumqttc::Request::PubAck(
                    rumqttc::PubAck::new(publish.pkid),
                )));
            }
            room -= 1;
            sent.push(publish.pkid);
            Ok(())
        });
        assert_eq!((dropped, sent.as_slice()), (0, &[1u16, 2][..]));
        assert_eq!(queue.len(), 1, "the third waits for room");
        assert_eq!(gate.unflushed_records(), 3, "nothing flushed yet");
        gate.on_flushed();
        gate.on_flushed();
        assert_eq!(gate.unflushed_records(), 1, "the first commit's acks left");
        gate.hand_acks(&mut queue, |_| Ok(()));
        gate.on_flushed();
        assert_eq!(gate.unflushed_records(), 0);
    }

    #[test]
    fn a_late_flush_event_of_a_failed_connection_does_not_release_newer_records() {
        let gate = AckGate::default();
        let connection = gate.on_connected();
        let mut queue = VecDeque::from([queued(1, connection)]);
        gate.record_commit(1, 1);
        gate.hand_acks(&mut queue, |_| Ok(()));
        gate.on_connection_lost(|| {});
        // rumqttc may still yield the PUBACK event of the failed connection.
        gate.on_flushed();
        let connection = gate.on_connected();
        queue.push_back(queued(1, connection));
        gate.record_commit(1, 1);
        gate.hand_acks(&mut queue, |_| Ok(()));
        assert_eq!(gate.unflushed_records(), 1, "its PUBACK has not left yet");
        gate.on_flushed();
        assert_eq!(gate.unflushed_records(), 0);
    }

    #[test]
    fn recent_messages_remember_the_newest_and_forget_the_oldest() {
        let mut recent = RecentMessages::default();
        for i in 0..(RECENT_MESSAGES as u64 + 10) {
            recent.insert(i * 7);
        }
        assert!(!recent.contains_hash(0), "the oldest entries were evicted");
        assert!(!recent.contains_hash(9 * 7));
        assert!(recent.contains_hash(10 * 7));
        assert!(recent.contains_hash((RECENT_MESSAGES as u64 + 9) * 7));
        assert!(!recent.contains_hash(1));
        // A hash held twice is remembered until its newest copy is evicted.
        recent.insert(10 * 7);
        for i in 0..(RECENT_MESSAGES as u64 - 1) {
            recent.insert(1_000_000 + i);
        }
        assert!(recent.contains_hash(10 * 7));
        recent.insert(2_000_000);
        assert!(!recent.contains_hash(10 * 7));
    }

    #[test]
    fn the_redelivery_filter_is_rebuilt_from_the_spool_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), crate::spool::SpoolConfig::default()).unwrap();
        let reading = ValidReading {
            asset: "a".into(),
            sensor: "s".into(),
            ts_ms: 1,
            value: 1.0,
            clock_suspect: false,
            receive_stamped: false,
            held_back: false,
        };
        let mut record = Vec::new();
        for pkid in 1..=3u16 {
            envelope::encode(
                pkid,
                100 + u64::from(pkid),
                0,
                std::slice::from_ref(&reading),
                &mut record,
            );
            spool.append(&record, 1).unwrap();
        }
        spool.sync().unwrap();
        drop(spool);
        let (spool, _) = Spool::open(dir.path(), crate::spool::SpoolConfig::default()).unwrap();
        let (recent, window) = RecentMessages::rebuild(&spool, &[(1, 55), (4, 66)]).unwrap();
        assert!(recent.contains_hash(101) && recent.contains_hash(103));
        assert!(recent.contains_hash(55) && !recent.contains_hash(104));
        // The spool tail is newer than the ring: packet id 1 now means the spooled message.
        assert!(window.is_redelivery(1, 101, 1) && !window.is_redelivery(1, 55, 1));
        assert!(window.is_redelivery(4, 66, 1));
    }
}
