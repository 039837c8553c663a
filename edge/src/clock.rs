//! The gateway wall clock, in the unit every timestamp of the agent uses.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by the gateway clock (negative if the clock is before 1970).
pub fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}
