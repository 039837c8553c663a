//! Why a reading was rejected: the closed set of `reason` labels and a per-reason counter.
//!
//! Bad input is data, not failure: decoders and validators return accepted readings together with
//! a [`RejectCounts`]; the agent adds them to the `fieldpulse_edge_readings_rejected_total{reason}`
//! counter. A payload that cannot be decoded at all counts as one rejected reading.

/// A rejection reason. The label (`as_str`) is a Prometheus label value and never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The payload exceeds `mqtt.max_payload_bytes`.
    TooLarge,
    /// Text that is not valid UTF-8 where text was expected.
    BadUtf8,
    /// A bare-number payload that is not a number.
    BadNumber,
    /// Malformed JSON.
    BadJson,
    /// JSON nested deeper than `validation.max_json_depth`.
    TooDeep,
    /// A field of the wrong type (e.g. a string where a number was expected).
    WrongType,
    /// A timestamp that is neither RFC 3339 nor epoch milliseconds.
    BadTimestamp,
    /// A protobuf `ReadingBatch` that does not decode.
    BadProtobuf,
    /// Neither the topic nor the payload names the asset.
    NoAsset,
    /// Neither the topic, the payload nor the subscription names the sensor.
    NoSensor,
    /// More readings in one message than `validation.max_readings_per_message`.
    TooManyReadings,
    /// A payload without any reading.
    Empty,
    /// NaN or an infinity.
    NonFinite,
    /// An asset outside `validation.allowed_assets`.
    UnknownAsset,
    /// A value outside the sensor's `validation.ranges` entry.
    OutOfRange,
    /// Older than `validation.max_age`.
    TooOld,
    /// Further than `validation.max_future` ahead of the gateway clock.
    TooFuture,
    /// A topic that matches no configured pattern.
    UnmatchedTopic,
}

impl RejectReason {
    /// Every reason, in label order of the metrics output.
    pub const ALL: [RejectReason; 18] = [
        Self::TooLarge,
        Self::BadUtf8,
        Self::BadNumber,
        Self::BadJson,
        Self::TooDeep,
        Self::WrongType,
        Self::BadTimestamp,
        Self::BadProtobuf,
        Self::NoAsset,
        Self::NoSensor,
        Self::TooManyReadings,
        Self::Empty,
        Self::NonFinite,
        Self::UnknownAsset,
        Self::OutOfRange,
        Self::TooOld,
        Self::TooFuture,
        Self::UnmatchedTopic,
    ];

    /// The metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::BadUtf8 => "bad_utf8",
            Self::BadNumber => "bad_number",
            Self::BadJson => "bad_json",
            Self::TooDeep => "too_deep",
            Self::WrongType => "wrong_type",
            Self::BadTimestamp => "bad_timestamp",
            Self::BadProtobuf => "bad_protobuf",
            Self::NoAsset => "no_asset",
            Self::NoSensor => "no_sensor",
            Self::TooManyReadings => "too_many_readings",
            Self::Empty => "empty",
            Self::NonFinite => "non_finite",
            Self::UnknownAsset => "unknown_asset",
            Self::OutOfRange => "out_of_range",
            Self::TooOld => "too_old",
            Self::TooFuture => "too_future",
            Self::UnmatchedTopic => "unmatched_topic",
        }
    }

    /// Position in [`RejectReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Rejected readings counted by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectCounts([u64; RejectReason::ALL.len()]);

impl RejectCounts {
    /// Adds `n` rejections for `reason`.
    pub fn add(&mut self, reason: RejectReason, n: u64) {
        self.0[reason.index()] += n;
    }

    /// Rejections counted for `reason`.
    pub fn get(&self, reason: RejectReason) -> u64 {
        self.0[reason.index()]
    }

    /// All rejections.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &RejectCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine += theirs;
        }
    }

    /// The reasons with a non-zero count.
    pub fn iter(&self) -> impl Iterator<Item = (RejectReason, u64)> + '_ {
        RejectReason::ALL
            .iter()
            .map(|reason| (*reason, self.get(*reason)))
            .filter(|(_, n)| *n > 0)
    }

    /// The first reason with a non-zero count (for logging and quarantine).
    pub fn first(&self) -> Option<RejectReason> {
        self.iter().next().map(|(reason, _)| reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_indexes_follow_the_all_table() {
        for (idx, reason) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), idx, "{}", reason.as_str());
        }
    }

    #[test]
    fn counts_add_merge_and_iterate_non_zero_reasons() {
        let mut a = RejectCounts::default();
        a.add(RejectReason::TooOld, 2);
        let mut b = RejectCounts::default();
        b.add(RejectReason::NonFinite, 1);
        b.add(RejectReason::TooOld, 1);
        a.merge(&b);
        assert_eq!(a.total(), 4);
        let listed: Vec<_> = a.iter().collect();
        assert_eq!(
            listed,
            vec![(RejectReason::NonFinite, 1), (RejectReason::TooOld, 3)]
        );
        assert_eq!(a.first(), Some(RejectReason::NonFinite));
    }
}
