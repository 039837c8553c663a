//! Fault injection for REST calls (reference §3.4): seeded draws of
//! 500/503/`UNABLE_TO_LOCK_ROW`/concurrent `REQUEST_LIMIT_EXCEEDED`/session
//! expiry, added latency, and the cap on concurrent long-running calls.

use rand::Rng;

use super::{lock, Emulator, Reply};
use crate::error::ApiErr;

/// One injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Revoke the caller's session: `401 INVALID_SESSION_ID`.
    Session,
    /// `503 SERVER_UNAVAILABLE`.
    Unavailable,
    /// `500 UNKNOWN_EXCEPTION`.
    Internal,
    /// `403 REQUEST_LIMIT_EXCEEDED` (concurrency, retriable).
    Concurrent,
    /// `400 UNABLE_TO_LOCK_ROW` (writes only).
    Lock,
}

impl Fault {
    /// The error response of a fault (session expiry is handled by the caller).
    pub(crate) fn reply(self) -> Reply {
        match self {
            Fault::Session => Reply::error(401, ApiErr::new("INVALID_SESSION_ID", "Session expired or invalid")),
            Fault::Unavailable => Reply::error(503, ApiErr::new("SERVER_UNAVAILABLE", "Server temporarily unavailable, please retry")),
            Fault::Internal => Reply::error(
                500,
                ApiErr::new("UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567-8901 (-1234567890)"),
            ),
            Fault::Concurrent => concurrent_limit(),
            Fault::Lock => Reply::error(400, ApiErr::new("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record or 1 records: 500xx000000bZqL")),
        }
    }
}

/// `403 REQUEST_LIMIT_EXCEEDED` for too many concurrent long-running calls.
pub(crate) fn concurrent_limit() -> Reply {
    Reply::error(
        403,
        ApiErr::new(
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentPerOrgLongTxn Limit exceeded.",
        ),
    )
}

/// Draws this call's fault and latency. `lockable` is a single-record write
/// (Collections draw row locks per record instead, see [`roll_lock`]).
pub(crate) fn draw(emu: &Emulator, lockable: bool) -> (u64, Option<Fault>) {
    let mut state = lock(&emu.shared.faults);
    let cfg = state.config.clone();
    let fault = if cfg.fail_next_503 > 0 {
        state.config.fail_next_503 -= 1;
        Some(Fault::Unavailable)
    } else if cfg.fail_next_500 > 0 {
        state.config.fail_next_500 -= 1;
        Some(Fault::Internal)
    } else {
        let roll: f64 = state.rng.gen();
        let lock_rate = if lockable { cfg.rate_lock } else { 0.0 };
        let mut acc = 0.0;
        [
            (cfg.rate_session_expiry, Fault::Session),
            (cfg.rate_503, Fault::Unavailable),
            (cfg.rate_500, Fault::Internal),
            (cfg.rate_limit, Fault::Concurrent),
            (lock_rate, Fault::Lock),
        ]
        .into_iter()
        .find(|(rate, _)| {
            acc += rate;
            roll < acc
        })
        .map(|(_, fault)| fault)
    };
    (cfg.latency_ms, fault)
}

/// Draws whether one record in a Collections call hits an injected row lock.
pub(crate) fn roll_lock(emu: &Emulator, rate: f64) -> bool {
    rate > 0.0 && lock(&emu.shared.faults).rng.gen::<f64>() < rate
}

/// Registers a call as in flight; `None` when the long-running cap is reached
/// (reference §4.3: 25 calls running ≥ 20 s in production orgs).
pub(crate) fn enter(emu: &Emulator, now_ms: i64) -> Option<InFlight> {
    let (max_long, long_ms) = {
        let state = lock(&emu.shared.faults);
        (
            state.config.max_long_running,
            state.config.long_running_ms as i64,
        )
    };
    let mut flight = lock(&emu.shared.in_flight);
    let long_running = flight
        .1
        .values()
        .filter(|&&start| now_ms - start >= long_ms)
        .count();
    if max_long > 0 && long_running >= max_long as usize {
        return None;
    }
    flight.0 += 1;
    let call_no = flight.0;
    flight.1.insert(call_no, now_ms);
    Some(InFlight {
        emu: emu.clone(),
        call_no,
    })
}

/// Removes a call from the in-flight table when it finishes (or is cancelled).
pub(crate) struct InFlight {
    emu: Emulator,
    call_no: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.emu.shared.in_flight).1.remove(&self.call_no);
    }
}
