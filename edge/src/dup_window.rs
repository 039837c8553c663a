//! The redelivery window: which MQTT `DUP` deliveries may be acknowledged without spooling again.
//!
//! A broker that resumes a session re-sends every QoS 1 message whose PUBACK it did not process,
//! with `DUP` set and its original packet id. The agent acknowledges such a redelivery without
//! spooling it twice only when it is certainly one — a message the agent spooled whose PUBACK the
//! broker may not have processed:
//!
//! - **One entry per packet id, the newest.** A broker never gives a packet id to a new message
//!   while the old one awaits its PUBACK, so a new message with packet id `p` means every earlier
//!   `p` was acknowledged: only the newest spooled message with `p` can be redelivered.
//! - **Earlier connections only.** A redelivery is a re-send after a reconnect (MQTT 3.1.1 §4.4):
//!   a `DUP` message can repeat a message received on an *earlier* connection of the session (or by
//!   the previous process, after a restart), never one received on the current connection.
//! - **Confirmed PUBACKs leave the window.** rumqttc sends a PINGREQ every keep-alive; the broker
//!   answers after processing everything sent before it, so when the PINGRESP arrives, every
//!   PUBACK written before the PINGREQ has been processed and its message can never be redelivered:
//!   its entry is removed. Without this, a broker that reused the packet id for a new message with
//!   identical topic and payload (a timestamp-less `1`), whose first send was lost with the
//!   connection, would have that new message taken for the old one and never spooled.
//! - **A lost session empties the window**: a broker that did not keep the session redelivers
//!   nothing.
//!
//! What remains ambiguous is a PUBACK written and not yet confirmed when the connection fails: the
//! broker may have processed it or not. The window then trusts the match (the message is in the
//! spool), which can only be wrong if, within that last keep-alive interval, the broker also
//! processed the PUBACK, reused the packet id for a message with identical topic and payload, and
//! lost that message's first send with the connection.
//!
//! The window is shared: the writer inserts and matches, the MQTT task reports written PUBACKs,
//! pings and connection changes. It holds at most one entry per packet id (65,535), in a table
//! of 1 MiB.

use std::sync::{Mutex, PoisonError};

/// The connection number of entries rebuilt after a restart (the previous process's): earlier
/// than every connection of this process, which are numbered from 1.
pub const PREVIOUS_PROCESS: u64 = 0;

/// One packet id's newest spooled message. 16 bytes, so the whole window (one slot per packet
/// id) takes 1 MiB at most, whatever the message rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    hash: u64,
    /// Connection number (saturated to `u32::MAX - 1`); `EMPTY` marks a free slot.
    connection: u32,
    /// 1 + the ping round its PUBACK was written in; 0 while not written (or unconfirmable).
    acked_in: u32,
}

const EMPTY: u32 = u32::MAX;

impl Entry {
    const FREE: Self = Self {
        hash: 0,
        connection: EMPTY,
        acked_in: 0,
    };

    fn is_free(&self) -> bool {
        self.connection == EMPTY
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Indexed by packet id; allocated on the first insert (65,536 slots).
    slots: Vec<Entry>,
    /// Slots in use.
    used: usize,
    /// The current ping round: PUBACKs written now are confirmed by the PINGRESP to the next
    /// PINGREQ.
    round: u32,
    /// The round whose PINGREQ awaits its PINGRESP.
    awaiting: Option<u32>,
}

impl Inner {
    fn slot(&self, pkid: u16) -> Option<&Entry> {
        self.slots
            .get(usize::from(pkid))
            .filter(|entry| !entry.is_free())
    }

    fn free_where(&mut self, mut free: impl FnMut(&Entry) -> bool) {
        for entry in &mut self.slots {
            if !entry.is_free() && free(entry) {
                *entry = Entry::FREE;
                self.used -= 1;
            }
        }
    }
}

/// Spooled QoS 1 messages that a `DUP` delivery may repeat (see the module docs).
#[derive(Debug, Default)]
pub struct DupWindow {
    inner: Mutex<Inner>,
}

impl DupWindow {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers a message spooled (or recognised as a redelivery) on `connection`: the newest
    /// message with packet id `pkid`.
    pub fn insert(&self, pkid: u16, msg_hash: u64, connection: u64) {
        if pkid == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.slots.is_empty() {
            inner.slots = vec![Entry::FREE; usize::from(u16::MAX) + 1];
        }
        let slot = &mut inner.slots[usize::from(pkid)];
        let was_free = slot.is_free();
        *slot = Entry {
            hash: msg_hash,
            connection: u32::try_from(connection)
                .unwrap_or(EMPTY - 1)
                .min(EMPTY - 1),
            acked_in: 0,
        };
        if was_free {
            inner.used += 1;
        }
    }

    /// True when a `DUP` delivery of (`pkid`, `msg_hash`) on `connection` repeats a spooled
    /// message: the newest entry for `pkid` has this hash and came from an earlier connection.
    pub fn is_redelivery(&self, pkid: u16, msg_hash: u64, connection: u64) -> bool {
        self.lock()
            .slot(pkid)
            .is_some_and(|entry| entry.hash == msg_hash && u64::from(entry.connection) < connection)
    }

    /// The PUBACK for `pkid` was written to the connection.
    pub fn on_ack_written(&self, pkid: u16) {
        let mut inner = self.lock();
        let round = inner.round;
        if let Some(entry) = inner
            .slots
            .get_mut(usize::from(pkid))
            .filter(|entry| !entry.is_free())
        {
            entry.acked_in = round.wrapping_add(1).max(1);
        }
    }

    /// A PINGREQ was written: the PUBACKs before it are confirmed by its PINGRESP.
    pub fn on_ping_sent(&self) {
        let mut inner = self.lock();
        inner.awaiting = Some(inner.round);
        inner.round = inner.round.wrapping_add(1);
    }

    /// The PINGRESP arrived: the broker processed every PUBACK written before the PINGREQ, so
    /// their messages leave the window (a newer message with the same packet id has no PUBACK
    /// written yet and stays).
    pub fn on_ping_answered(&self) {
        let mut inner = self.lock();
        if let Some(confirmed) = inner.awaiting.take() {
            // Only the PUBACKs of the confirmed round (earlier rounds were confirmed by their
            // own PINGRESP or written on a connection that failed, which clears them).
            let mark = confirmed.wrapping_add(1).max(1);
            inner.free_where(|entry| entry.acked_in == mark);
        }
    }

    /// The connection failed: PUBACKs written on it stay unconfirmed (their entries stay, and no
    /// PINGRESP of a later connection can confirm them).
    pub fn on_connection_lost(&self) {
        let mut inner = self.lock();
        inner.awaiting = None;
        for entry in &mut inner.slots {
            entry.acked_in = 0;
        }
    }

    /// The broker did not keep the session: it will redeliver nothing.
    pub fn on_session_lost(&self) {
        let mut inner = self.lock();
        inner.free_where(|_| true);
        inner.awaiting = None;
    }

    /// Messages in the window.
    pub fn len(&self) -> usize {
        self.lock().used
    }

    /// True when no message is in the window.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_message_of_a_packet_id_from_an_earlier_connection_is_a_redelivery() {
        let window = DupWindow::default();
        window.insert(7, 100, 1);
        assert!(
            !window.is_redelivery(7, 100, 1),
            "no re-send on the same connection"
        );
        assert!(window.is_redelivery(7, 100, 2));
        assert!(!window.is_redelivery(7, 101, 2), "other content");
        window.insert(7, 200, 2);
        assert!(
            !window.is_redelivery(7, 100, 3),
            "packet id 7 was reused: the old message was acknowledged"
        );
        assert!(window.is_redelivery(7, 200, 3));
        assert!(!window.is_redelivery(8, 200, 3));
    }

    #[test]
    fn a_pingresp_confirms_the_pubacks_written_before_its_pingreq() {
        let window = DupWindow::default();
        window.insert(1, 10, 1);
        window.insert(2, 20, 1);
        window.on_ack_written(1);
        window.on_ping_sent();
        window.on_ack_written(2);
        window.on_ping_answered();
        assert!(
            !window.is_redelivery(1, 10, 2),
            "confirmed: cannot come back"
        );
        assert!(window.is_redelivery(2, 20, 2), "written after the PINGREQ");
        // A newer message with packet id 2 arrives before the next PINGRESP: it stays.
        window.on_ping_sent();
        window.insert(2, 21, 1);
        window.on_ping_answered();
        assert!(window.is_redelivery(2, 21, 2));
        assert_eq!(window.len(), 1);
    }

    #[test]
    fn a_lost_connection_leaves_pubacks_unconfirmed_and_a_lost_session_forgets_everything() {
        let window = DupWindow::default();
        window.insert(3, 30, PREVIOUS_PROCESS);
        window.insert(4, 40, 1);
        window.on_ack_written(4);
        window.on_ping_sent();
        window.on_connection_lost();
        window.on_ping_answered();
        assert!(window.is_redelivery(4, 40, 2));
        assert!(
            window.is_redelivery(3, 30, 1),
            "the previous process's messages"
        );
        window.on_session_lost();
        assert!(window.is_empty());
        window.insert(0, 1, 1);
        assert!(window.is_empty(), "QoS 0 has no packet id");
    }
}
