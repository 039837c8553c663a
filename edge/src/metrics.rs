//! The agent's counters and gauges, and their Prometheus text rendering.
//!
//! Plain atomics, updated per group commit or per batch (never per reading in a hot loop), read
//! by `/metrics`, `/healthz` and in-process callers through [`MetricsHandle::snapshot`]. Names
//! follow DESIGN.md: `fieldpulse_edge_<what>_total` for counters, labels from closed sets only.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::intake::AckGate;

use crate::reject::{RejectCounts, RejectReason};

/// Why readings were dropped after the agent had accepted them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Evicted by the `drop_oldest` policy at the spool's byte cap.
    SpoolFull,
    /// In a batch the cloud rejected permanently (written to the dead-letter directory).
    DeadLetter,
    /// Records the spool found corrupt at startup and skipped.
    SpoolCorrupt,
    /// A spool record whose payload could not be read when building a batch.
    RecordCorrupt,
}

impl DropReason {
    /// Every reason, in rendering order.
    pub const ALL: [DropReason; 4] = [
        Self::SpoolFull,
        Self::DeadLetter,
        Self::SpoolCorrupt,
        Self::RecordCorrupt,
    ];

    /// The metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SpoolFull => "spool_full",
            Self::DeadLetter => "dead_letter",
            Self::SpoolCorrupt => "spool_corrupt",
            Self::RecordCorrupt => "record_corrupt",
        }
    }
}

/// Why a broker connection failed (or could not be established).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttFailure {
    /// The TLS handshake failed: unknown CA, wrong name, expired or refused certificate.
    Tls,
    /// The broker answered CONNECT with a refusal (bad user name or password, not authorized).
    Refused,
    /// Anything else: connection refused or reset, timeout, broker restart, protocol error.
    Network,
}

impl MqttFailure {
    /// Every reason, in rendering order.
    pub const ALL: [MqttFailure; 3] = [Self::Tls, Self::Refused, Self::Network];

    /// The metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Refused => "refused",
            Self::Network => "network",
        }
    }
}

/// The live counters. Shared by every task of one agent.
#[derive(Debug, Default)]
pub struct EdgeMetrics {
    pub(crate) messages_received: AtomicU64,
    pub(crate) messages_duplicate: AtomicU64,
    pub(crate) readings_received: AtomicU64,
    pub(crate) readings_spooled: AtomicU64,
    pub(crate) readings_forwarded: AtomicU64,
    pub(crate) readings_receive_stamped: AtomicU64,
    pub(crate) config_reloads: AtomicU64,
    pub(crate) config_reload_errors: AtomicU64,
    pub(crate) readings_held_back: AtomicU64,
    pub(crate) rejected: [AtomicU64; RejectReason::ALL.len()],
    pub(crate) dropped: [AtomicU64; DropReason::ALL.len()],
    pub(crate) records_dropped: AtomicU64,
    pub(crate) batches_acked: AtomicU64,
    pub(crate) batches_historical: AtomicU64,
    pub(crate) batches_dead_letter: AtomicU64,
    pub(crate) dead_letter_write_failures: AtomicU64,
    pub(crate) dead_letter_bytes: AtomicU64,
    pub(crate) dead_letter_files: AtomicU64,
    pub(crate) batches_split: AtomicU64,
    pub(crate) send_failures: AtomicU64,
    // Uplink sizing (see `crate::uplink`).
    pub(crate) send_timeouts: AtomicU64,
    pub(crate) uplink_bytes_per_second: AtomicU64,
    pub(crate) batch_target_bytes: AtomicU64,
    // Checks of the cloud's `BatchAck` against the batch and the spool epoch.
    pub(crate) acks_refused: AtomicU64,
    pub(crate) acks_contiguous_ahead: AtomicU64,
    pub(crate) wire_bytes: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) backpressure_waits: AtomicU64,
    pub(crate) mqtt_connected: AtomicBool,
    pub(crate) mqtt_connects: AtomicU64,
    /// Reconnects where the broker had not kept the agent's session.
    pub(crate) mqtt_sessions_lost: AtomicU64,
    /// Failed broker connections by reason (`MqttFailure::ALL` order).
    pub(crate) mqtt_failures: [AtomicU64; MqttFailure::ALL.len()],
    pub(crate) last_message_ms: AtomicI64,
    pub(crate) spool_bytes: AtomicU64,
    pub(crate) spool_max_bytes: AtomicU64,
    pub(crate) spool_records_uncut: AtomicU64,
    pub(crate) spool_batches_pending: AtomicU64,
    pub(crate) backlog_records: AtomicU64,
    /// Acknowledgements waiting for room in the MQTT client's request channel.
    pub(crate) acks_waiting: AtomicU64,
    /// Bumped whenever `drop_oldest` evicted records (pending batches may have shrunk).
    pub(crate) evictions: AtomicU64,
    /// The agent's PUBACK gate, read when rendering (set once by the agent).
    pub(crate) ack_gate: OnceLock<Arc<AckGate>>,
    /// 1 while the spool cannot be written (intake refuses messages); see [`WriteBlockReason`].
    pub(crate) spool_write_blocked: AtomicBool,
    /// Spool writes (or opens) that failed for lack of space; each is retried.
    pub(crate) spool_write_errors: AtomicU64,
    /// Free bytes of the spool's filesystem plus one (statvfs, refreshed every few seconds);
    /// 0 = unknown. See [`EdgeMetrics::set_fs_free_bytes`].
    pub(crate) spool_fs_free_bytes: AtomicU64,
    /// Receive time of the oldest spooled record the cloud has not acknowledged (ms since
    /// epoch; 0 = none waiting).
    pub(crate) oldest_unforwarded_ms: AtomicI64,
    /// When the cloud last acknowledged a batch (ms since epoch; 0 = never).
    pub(crate) last_forward_ms: AtomicI64,
}

/// Why spool writes are blocked (the `reason` of `fieldpulse_edge_spool_write_blocked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteBlockReason {
    /// The spool's filesystem is full (`ENOSPC`/`EDQUOT`), not the spool's own cap.
    NoSpace,
}

impl WriteBlockReason {
    /// Every reason, in rendering order.
    pub const ALL: [WriteBlockReason; 1] = [Self::NoSpace];

    /// The metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoSpace => "no_space",
        }
    }
}

/// A cheap, clonable handle on an agent's metrics.
#[derive(Debug, Clone, Default)]
pub struct MetricsHandle(pub(crate) Arc<EdgeMetrics>);

/// A point-in-time copy of every metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// MQTT messages received (including rejected and duplicate ones).
    pub messages_received: u64,
    /// Broker redeliveries of messages already spooled, acknowledged without spooling again.
    pub messages_duplicate: u64,
    /// Readings decoded or rejected from received messages.
    pub readings_received: u64,
    /// Readings made durable in the spool.
    pub readings_spooled: u64,
    /// Readings acknowledged by the cloud.
    pub readings_forwarded: u64,
    /// Spooled readings the edge stamped at receive time (the device sent no timestamp).
    pub readings_receive_stamped: u64,
    /// Configuration reloads applied (SIGHUP).
    pub config_reloads: u64,
    /// Configuration reloads refused (the file did not validate).
    pub config_reload_errors: u64,
    /// Spooled readings received while the agent held messages back or caught up after a hold.
    pub readings_held_back: u64,
    /// Rejected readings by reason.
    pub rejected: RejectCounts,
    /// Dropped readings by reason (`DropReason::ALL` order).
    pub dropped: [u64; DropReason::ALL.len()],
    /// Spool records dropped (all reasons).
    pub records_dropped: u64,
    /// Batches acknowledged by the cloud.
    pub batches_acked: u64,
    /// Of those, backfill (historical) batches.
    pub batches_historical: u64,
    /// Batches written to the dead-letter directory.
    pub batches_dead_letter: u64,
    /// Failed writes to the dead-letter directory (the batch stays in the spool; retried).
    pub dead_letter_write_failures: u64,
    /// Bytes in the dead-letter directory (counted against the spool's cap).
    pub dead_letter_bytes: u64,
    /// Dead letters (batches) in the dead-letter directory.
    pub dead_letter_files: u64,
    /// Batches split in halves because the cloud refused them as too large (413).
    pub batches_split: u64,
    /// Failed POST attempts (each retried).
    pub send_failures: u64,
    /// Of those, attempts that ran out of their request timeout.
    pub send_timeouts: u64,
    /// Measured uplink rate in compressed body bytes per second (0 until measured).
    pub uplink_bytes_per_second: u64,
    /// Record bytes the next batch may hold.
    pub batch_target_bytes: u64,
    /// 2xx replies not accepted as the batch's ack (undecodable, another seq or another
    /// spool epoch); each is a failed attempt, retried.
    pub acks_refused: u64,
    /// Acks whose `contiguous_seq` is beyond every seq this spool epoch has handed out.
    pub acks_contiguous_ahead: u64,
    /// Compressed body bytes of acknowledged batches.
    pub wire_bytes: u64,
    /// Group commits (fsyncs) done.
    pub commits: u64,
    /// Times intake waited for spool space (backpressure policy).
    pub backpressure_waits: u64,
    /// Whether the broker connection is up.
    pub mqtt_connected: bool,
    /// Successful broker connections (first one included).
    pub mqtt_connects: u64,
    /// Reconnects where the broker had not kept the agent's session (`session_present = false`).
    pub mqtt_sessions_lost: u64,
    /// Failed broker connections by reason (`MqttFailure::ALL` order).
    pub mqtt_failures: [u64; MqttFailure::ALL.len()],
    /// Acknowledgements waiting for room in the MQTT client's request channel.
    pub mqtt_acks_waiting: u64,
    /// Committed records held back from batches until their PUBACK has left (see `AckGate`).
    pub gate_held_records: u64,
    /// Receive time of the last MQTT message (ms since epoch; 0 = none yet).
    pub last_message_ms: i64,
    /// Spool bytes on disk.
    pub spool_bytes: u64,
    /// Spool byte cap.
    pub spool_max_bytes: u64,
    /// Committed records not yet in a batch.
    pub spool_records_uncut: u64,
    /// Batches cut and not yet acknowledged.
    pub spool_batches_pending: u64,
    /// Records waiting for the backfill lane.
    pub backlog_records: u64,
    /// True while the spool cannot be written for lack of space (intake refuses messages).
    pub spool_write_blocked: bool,
    /// Spool writes (or opens) that failed for lack of space.
    pub spool_write_errors: u64,
    /// Free bytes of the spool's filesystem (`None` until measured or when unknown).
    pub spool_fs_free_bytes: Option<u64>,
    /// Receive time of the oldest spooled record not yet acknowledged by the cloud (ms since
    /// epoch; 0 = none waiting).
    pub oldest_unforwarded_ms: i64,
    /// When the cloud last acknowledged a batch (ms since epoch; 0 = never).
    pub last_forward_ms: i64,
}

impl MetricsSnapshot {
    /// Dropped readings for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Dropped readings, all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Failed broker connections for one reason.
    pub fn mqtt_failures(&self, reason: MqttFailure) -> u64 {
        self.mqtt_failures[reason as usize]
    }
}

impl EdgeMetrics {
    pub(crate) fn add_rejected(&self, counts: &RejectCounts) {
        for (reason, n) in counts.iter() {
            self.rejected[reason.index()].fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn add_dropped(&self, reason: DropReason, n_readings: u64) {
        self.dropped[reason as usize].fetch_add(n_readings, Ordering::Relaxed);
    }

    /// Stores the free bytes of the spool's filesystem (`None`: unknown).
    pub(crate) fn set_fs_free_bytes(&self, free: Option<u64>) {
        let encoded = free.map_or(0, |free| free.saturating_add(1));
        self.spool_fs_free_bytes.store(encoded, Ordering::Relaxed);
    }

    /// Marks spool writes blocked (`Some`) or flowing again (`None`).
    pub(crate) fn set_write_blocked(&self, reason: Option<WriteBlockReason>) {
        self.spool_write_blocked
            .store(reason.is_some(), Ordering::Relaxed);
    }

    pub(crate) fn add_mqtt_failure(&self, reason: MqttFailure) {
        self.mqtt_failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

impl MetricsHandle {
    pub(crate) fn inner(&self) -> &EdgeMetrics {
        &self.0
    }

    /// Reports `gate`'s held-back records as `fieldpulse_edge_puback_gate_held_records` (the
    /// first gate attached wins: one agent, one gate).
    pub(crate) fn attach_gate(&self, gate: Arc<AckGate>) {
        let _ = self.0.ack_gate.set(gate);
    }

    /// Copies every metric.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let m = &self.0;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut rejected = RejectCounts::default();
        for reason in RejectReason::ALL {
            rejected.add(reason, load(&m.rejected[reason.index()]));
        }
        MetricsSnapshot {
            messages_received: load(&m.messages_received),
            messages_duplicate: load(&m.messages_duplicate),
            readings_received: load(&m.readings_received),
            readings_spooled: load(&m.readings_spooled),
            readings_forwarded: load(&m.readings_forwarded),
            readings_receive_stamped: load(&m.readings_receive_stamped),
            config_reloads: load(&m.config_reloads),
            config_reload_errors: load(&m.config_reload_errors),
            readings_held_back: load(&m.readings_held_back),
            rejected,
            dropped: std::array::from_fn(|idx| load(&m.dropped[idx])),
            records_dropped: load(&m.records_dropped),
            batches_acked: load(&m.batches_acked),
            batches_historical: load(&m.batches_historical),
            batches_dead_letter: load(&m.batches_dead_letter),
            dead_letter_write_failures: load(&m.dead_letter_write_failures),
            dead_letter_bytes: load(&m.dead_letter_bytes),
            dead_letter_files: load(&m.dead_letter_files),
            batches_split: load(&m.batches_split),
            send_failures: load(&m.send_failures),
            send_timeouts: load(&m.send_timeouts),
            uplink_bytes_per_second: load(&m.uplink_bytes_per_second),
            batch_target_bytes: load(&m.batch_target_bytes),
            acks_refused: load(&m.acks_refused),
            acks_contiguous_ahead: load(&m.acks_contiguous_ahead),
            wire_bytes: load(&m.wire_bytes),
            commits: load(&m.commits),
            backpressure_waits: load(&m.backpressure_waits),
            mqtt_connected: m.mqtt_connected.load(Ordering::Relaxed),
            mqtt_connects: load(&m.mqtt_connects),
            mqtt_sessions_lost: load(&m.mqtt_sessions_lost),
            mqtt_failures: std::array::from_fn(|idx| load(&m.mqtt_failures[idx])),
            mqtt_acks_waiting: load(&m.acks_waiting),
            gate_held_records: m.ack_gate.get().map_or(0, |gate| gate.unflushed_records()),
            last_message_ms: m.last_message_ms.load(Ordering::Relaxed),
            spool_bytes: load(&m.spool_bytes),
            spool_max_bytes: load(&m.spool_max_bytes),
            spool_records_uncut: load(&m.spool_records_uncut),
            spool_batches_pending: load(&m.spool_batches_pending),
            backlog_records: load(&m.backlog_records),
            spool_write_blocked: m.spool_write_blocked.load(Ordering::Relaxed),
            spool_write_errors: load(&m.spool_write_errors),
            spool_fs_free_bytes: load(&m.spool_fs_free_bytes).checked_sub(1),
            oldest_unforwarded_ms: m.oldest_unforwarded_ms.load(Ordering::Relaxed),
            last_forward_ms: m.last_forward_ms.load(Ordering::Relaxed),
        }
    }

    /// Renders the Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        self.render_prometheus_at(crate::clock::now_ms())
    }

    /// [`MetricsHandle::render_prometheus`] with ages computed at `now_ms`.
    pub fn render_prometheus_at(&self, now_ms: i64) -> String {
        let s = self.snapshot();
        let mut out = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "fieldpulse_edge_mqtt_messages_received_total",
            "MQTT messages received.",
            s.messages_received,
        );
        counter(
            "fieldpulse_edge_mqtt_messages_duplicate_total",
            "Broker redeliveries of already spooled messages, acknowledged without spooling again.",
            s.messages_duplicate,
        );
        counter(
            "fieldpulse_edge_mqtt_connects_total",
            "Successful broker connections.",
            s.mqtt_connects,
        );
        counter(
            "fieldpulse_edge_mqtt_sessions_lost_total",
            "Reconnects where the broker had not kept the agent's session (unsent PUBACKs dropped).",
            s.mqtt_sessions_lost,
        );
        counter(
            "fieldpulse_edge_readings_received_total",
            "Readings received (accepted or rejected).",
            s.readings_received,
        );
        counter(
            "fieldpulse_edge_readings_spooled_total",
            "Readings made durable in the spool.",
            s.readings_spooled,
        );
        counter(
            "fieldpulse_edge_readings_forwarded_total",
            "Readings acknowledged by the cloud.",
            s.readings_forwarded,
        );
        counter(
            "fieldpulse_edge_config_reloads_total",
            "Configuration reloads applied (SIGHUP: token and topic mappings).",
            s.config_reloads,
        );
        counter(
            "fieldpulse_edge_config_reload_errors_total",
            "Configuration reloads refused because the file did not validate.",
            s.config_reload_errors,
        );
        counter(
            "fieldpulse_edge_readings_receive_stamped_total",
            "Spooled readings stamped at receive time (the device sent no timestamp).",
            s.readings_receive_stamped,
        );
        counter(
            "fieldpulse_edge_readings_held_back_total",
            "Spooled readings that arrived while the agent held messages back at the broker \
             (spool full under backpressure) or caught up after such a hold.",
            s.readings_held_back,
        );
        counter(
            "fieldpulse_edge_spool_commits_total",
            "Group commits (fsync) of the spool.",
            s.commits,
        );
        counter(
            "fieldpulse_edge_backpressure_waits_total",
            "Times intake stopped acknowledging the broker because the spool was full.",
            s.backpressure_waits,
        );
        counter(
            "fieldpulse_edge_batches_acked_total",
            "Batches acknowledged by the cloud.",
            s.batches_acked,
        );
        counter(
            "fieldpulse_edge_batches_historical_total",
            "Backfill batches acknowledged by the cloud.",
            s.batches_historical,
        );
        counter(
            "fieldpulse_edge_batches_dead_letter_total",
            "Batches the cloud rejected permanently, kept in the dead-letter directory.",
            s.batches_dead_letter,
        );
        counter(
            "fieldpulse_edge_dead_letter_write_failures_total",
            "Failed writes to the dead-letter directory; the batch stays in the spool and is retried.",
            s.dead_letter_write_failures,
        );
        counter(
            "fieldpulse_edge_batches_split_total",
            "Batches split in halves because the cloud refused them as too large (HTTP 413).",
            s.batches_split,
        );
        counter(
            "fieldpulse_edge_send_failures_total",
            "Failed batch POST attempts (retried).",
            s.send_failures,
        );
        counter(
            "fieldpulse_edge_send_timeouts_total",
            "Batch POST attempts that ran out of their request timeout (retried).",
            s.send_timeouts,
        );
        counter(
            "fieldpulse_edge_acks_refused_total",
            "Cloud replies not accepted as the batch's ack (undecodable, other seq or spool epoch); retried.",
            s.acks_refused,
        );
        counter(
            "fieldpulse_edge_acks_contiguous_seq_ahead_total",
            "Acks whose contiguous_seq is beyond every seq this spool epoch has sent.",
            s.acks_contiguous_ahead,
        );
        counter(
            "fieldpulse_edge_wire_bytes_total",
            "Compressed bytes of acknowledged batch bodies.",
            s.wire_bytes,
        );
        counter(
            "fieldpulse_edge_spool_records_dropped_total",
            "Spool records dropped.",
            s.records_dropped,
        );
        counter(
            "fieldpulse_edge_spool_write_errors_total",
            "Spool writes or opens that failed because the filesystem is full (retried).",
            s.spool_write_errors,
        );

        let _ = writeln!(
            out,
            "# HELP fieldpulse_edge_readings_rejected_total Readings rejected at the door, by reason.\n\
             # TYPE fieldpulse_edge_readings_rejected_total counter"
        );
        for reason in RejectReason::ALL {
            let _ = writeln!(
                out,
                "fieldpulse_edge_readings_rejected_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                s.rejected.get(reason)
            );
        }
        let _ = writeln!(
            out,
            "# HELP fieldpulse_edge_readings_dropped_total Accepted readings lost, by reason.\n\
             # TYPE fieldpulse_edge_readings_dropped_total counter"
        );
        for reason in DropReason::ALL {
            let _ = writeln!(
                out,
                "fieldpulse_edge_readings_dropped_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                s.dropped(reason)
            );
        }
        let _ = writeln!(
            out,
            "# HELP fieldpulse_edge_mqtt_connection_failures_total Broker connections that failed \
             or could not be established, by reason.\n\
             # TYPE fieldpulse_edge_mqtt_connection_failures_total counter"
        );
        for reason in MqttFailure::ALL {
            let _ = writeln!(
                out,
                "fieldpulse_edge_mqtt_connection_failures_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                s.mqtt_failures(reason)
            );
        }
        let mut gauge = |name: &str, help: &str, value: i128| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            "fieldpulse_edge_spool_bytes",
            "Spool bytes on disk.",
            s.spool_bytes.into(),
        );
        gauge(
            "fieldpulse_edge_spool_max_bytes",
            "Spool byte cap.",
            s.spool_max_bytes.into(),
        );
        gauge(
            "fieldpulse_edge_spool_records_uncut",
            "Committed records not yet in a batch.",
            s.spool_records_uncut.into(),
        );
        gauge(
            "fieldpulse_edge_spool_batches_pending",
            "Batches sent or being sent and not yet acknowledged.",
            s.spool_batches_pending.into(),
        );
        gauge(
            "fieldpulse_edge_dead_letter_bytes",
            "Bytes in the dead-letter directory (counted against the spool's byte cap).",
            s.dead_letter_bytes.into(),
        );
        gauge(
            "fieldpulse_edge_dead_letter_files",
            "Batches in the dead-letter directory.",
            s.dead_letter_files.into(),
        );
        gauge(
            "fieldpulse_edge_backlog_records",
            "Records waiting for the backfill lane.",
            s.backlog_records.into(),
        );
        gauge(
            "fieldpulse_edge_uplink_bytes_per_second",
            "Measured uplink rate, compressed body bytes per second (0 until measured).",
            s.uplink_bytes_per_second.into(),
        );
        gauge(
            "fieldpulse_edge_batch_target_bytes",
            "Record bytes the next batch may hold (adapted to the uplink).",
            s.batch_target_bytes.into(),
        );
        gauge(
            "fieldpulse_edge_mqtt_acks_waiting",
            "Acknowledgements waiting for room in the MQTT client's request channel.",
            s.mqtt_acks_waiting.into(),
        );
        gauge(
            "fieldpulse_edge_puback_gate_held_records",
            "Committed records held back from batches until their PUBACK has left.",
            s.gate_held_records.into(),
        );
        gauge(
            "fieldpulse_edge_mqtt_connected",
            "1 while subscribed to the broker.",
            i128::from(s.mqtt_connected),
        );
        gauge(
            "fieldpulse_edge_last_message_timestamp_ms",
            "Receive time of the last MQTT message.",
            s.last_message_ms.into(),
        );
        gauge(
            "fieldpulse_edge_spool_fs_free_bytes",
            "Free bytes on the spool's filesystem (statvfs; -1 unknown).",
            s.spool_fs_free_bytes.map_or(-1, i128::from),
        );
        gauge(
            "fieldpulse_edge_oldest_unforwarded_age_seconds",
            "Age of the oldest spooled reading the cloud has not acknowledged (0 when none waits).",
            age_seconds(s.oldest_unforwarded_ms, now_ms).into(),
        );
        gauge(
            "fieldpulse_edge_last_forward_timestamp_ms",
            "When the cloud last acknowledged a batch (0 = never since start).",
            s.last_forward_ms.into(),
        );
        gauge(
            "fieldpulse_edge_seconds_since_last_forward",
            "Seconds since the cloud last acknowledged a batch (-1 = never since start).",
            if s.last_forward_ms > 0 {
                age_seconds(s.last_forward_ms, now_ms).into()
            } else {
                -1
            },
        );
        let _ = writeln!(
            out,
            "# HELP fieldpulse_edge_spool_write_blocked 1 while the spool cannot be written and intake refuses messages, by reason.\n\
             # TYPE fieldpulse_edge_spool_write_blocked gauge"
        );
        for reason in WriteBlockReason::ALL {
            // One reason today: the flag is the reason's value.
            let _ = writeln!(
                out,
                "fieldpulse_edge_spool_write_blocked{{reason=\"{}\"}} {}",
                reason.as_str(),
                u8::from(s.spool_write_blocked)
            );
        }
        out
    }
}

/// Whole seconds from `since_ms` to `now_ms`; 0 when `since_ms` is 0 (nothing) or in the future.
pub fn age_seconds(since_ms: i64, now_ms: i64) -> i64 {
    if since_ms <= 0 {
        return 0;
    }
    now_ms.saturating_sub(since_ms).max(0) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_gauge_reports_records_waiting_for_their_puback() {
        let handle = MetricsHandle::default();
        let gate = Arc::new(AckGate::default());
        handle.attach_gate(Arc::clone(&gate));
        gate.record_commit(2, 5);
        assert_eq!(handle.snapshot().gate_held_records, 5);
        assert!(handle
            .render_prometheus()
            .contains("\nfieldpulse_edge_puback_gate_held_records 5\n"));
        handle
            .inner()
            .mqtt_sessions_lost
            .fetch_add(1, Ordering::Relaxed);
        assert!(handle
            .render_prometheus()
            .contains("\nfieldpulse_edge_mqtt_sessions_lost_total 1\n"));
    }

    #[test]
    fn prometheus_text_lists_every_reason_with_its_count() {
        let handle = MetricsHandle::default();
        let mut counts = RejectCounts::default();
        counts.add(RejectReason::TooOld, 3);
        handle.inner().add_rejected(&counts);
        handle.inner().add_dropped(DropReason::SpoolFull, 5);
        handle.inner().add_mqtt_failure(MqttFailure::Tls);
        handle
            .inner()
            .readings_spooled
            .fetch_add(11, Ordering::Relaxed);
        let text = handle.render_prometheus();
        assert!(text.contains("fieldpulse_edge_readings_rejected_total{reason=\"too_old\"} 3\n"));
        assert!(text.contains("fieldpulse_edge_readings_rejected_total{reason=\"non_finite\"} 0\n"));
        assert!(text.contains("fieldpulse_edge_readings_dropped_total{reason=\"spool_full\"} 5\n"));
        assert!(text.contains("fieldpulse_edge_readings_spooled_total 11\n"));
        assert!(text.contains("fieldpulse_edge_mqtt_connection_failures_total{reason=\"tls\"} 1\n"));
        assert!(
            text.contains("fieldpulse_edge_mqtt_connection_failures_total{reason=\"network\"} 0\n")
        );
        assert!(text.contains("# TYPE fieldpulse_edge_spool_bytes gauge\n"));
        assert!(text.contains(
            "# TYPE fieldpulse_edge_mqtt_sessions_lost_total counter\nfieldpulse_edge_mqtt_sessions_lost_total 0\n"
        ));
        assert!(text.contains(
            "# TYPE fieldpulse_edge_puback_gate_held_records gauge\nfieldpulse_edge_puback_gate_held_records 0\n"
        ));
        let snapshot = handle.snapshot();
        assert_eq!(snapshot.dropped(DropReason::SpoolFull), 5);
        assert_eq!(snapshot.rejected.get(RejectReason::TooOld), 3);
    }
}
