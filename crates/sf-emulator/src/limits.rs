//! The daily API allocation as Salesforce counts it: a rolling 24-hour
//! window (reference §4.1), kept as hourly buckets so long runs neither grow
//! memory nor lock the org out forever.

use std::collections::VecDeque;

const HOUR_MS: i64 = 3_600_000;

/// Rolling 24 h counter of authenticated REST calls.
#[derive(Debug, Clone)]
pub struct ApiCounter {
    max: u64,
    buckets: VecDeque<(i64, u64)>,
}

impl ApiCounter {
    /// A counter with allocation `max` and nothing used.
    pub fn new(max: u64) -> Self {
        ApiCounter {
            max,
            buckets: VecDeque::new(),
        }
    }

    fn prune(&mut self, now_ms: i64) {
        let oldest = now_ms.div_euclid(HOUR_MS) - 23;
        while self.buckets.front().is_some_and(|(hour, _)| *hour < oldest) {
            self.buckets.pop_front();
        }
    }

    /// (used, max) in the window ending now.
    pub fn usage(&mut self, now_ms: i64) -> (u64, u64) {
        self.prune(now_ms);
        (self.buckets.iter().map(|(_, n)| n).sum(), self.max)
    }

    /// Counts one call; `Err((used, max))` when the allocation is used up (not counted).
    pub fn try_count(&mut self, now_ms: i64) -> Result<(u64, u64), (u64, u64)> {
        let (used, max) = self.usage(now_ms);
        if used >= max {
            return Err((used, max));
        }
        let hour = now_ms.div_euclid(HOUR_MS);
        match self.buckets.back_mut() {
            Some((h, n)) if *h == hour => *n += 1,
            _ => self.buckets.push_back((hour, 1)),
        }
        Ok((used + 1, max))
    }

    /// Replaces the window with `used` calls made now and a new allocation.
    pub fn set(&mut self, used: u64, max: u64, now_ms: i64) {
        self.max = max;
        self.buckets.clear();
        self.buckets.push_back((now_ms.div_euclid(HOUR_MS), used));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_leave_the_window_after_twenty_four_hours() {
        let mut counter = ApiCounter::new(2);
        assert_eq!(counter.try_count(0), Ok((1, 2)));
        assert_eq!(counter.try_count(HOUR_MS), Ok((2, 2)));
        assert_eq!(
            counter.try_count(2 * HOUR_MS),
            Err((2, 2)),
            "allocation used up"
        );
        assert_eq!(
            counter.try_count(24 * HOUR_MS),
            Ok((2, 2)),
            "the first call aged out"
        );
        counter.set(5, 10, 24 * HOUR_MS);
        assert_eq!(counter.usage(24 * HOUR_MS), (5, 10));
    }
}
