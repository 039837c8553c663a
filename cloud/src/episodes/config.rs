//! [`EpisodeConfig`]: the knobs of the episode state machine, and their checks.

use serde::{Deserialize, Serialize};

/// How evaluations turn into episodes. Durations are in milliseconds of
/// asset time (`Evaluation::ts_ms`), except `max_alert_age_ms`, which compares
/// asset time with the wall clock (`Evaluation::now_ms`).
///
/// Deserialises with defaults for missing keys and refuses unknown ones, so it
/// can sit in the cloud TOML as an `[episodes]` table. Call
/// [`validate`](Self::validate) after loading; [`Episode`](super::Episode)
/// never panics on an invalid config, but its behaviour is only documented for
/// valid ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EpisodeConfig {
    /// Consecutive evaluations at or above the threshold before an episode opens.
    pub open_after: u32,
    /// Consecutive evaluations below `threshold * hysteresis` before it closes.
    pub close_after: u32,
    /// Fraction of the threshold that the risk must fall below to count as
    /// recovered, in `(0, 1]`; the gap stops a risk that hovers at the
    /// threshold from opening and closing on every evaluation.
    pub hysteresis: f64,
    /// An open episode escalates when its risk exceeds this factor times the
    /// risk of its last `Opened`/`Escalated` notice (`> 1`).
    pub escalate_ratio: f64,
    /// Least asset time between two `Updated` notices of one episode.
    pub min_update_interval_ms: u64,
    /// Asset time after a close (or a completed Work Order) during which the
    /// (asset, mode) cannot start counting towards a new episode.
    pub cooldown_ms: u64,
    /// Window of asset time in which episode opens are counted for flapping.
    pub flap_window_ms: u64,
    /// An episode that would recover while it is the `flap_max_opens`-th open
    /// inside `flap_window_ms` stays open, marked flapping, until the risk has
    /// stayed low for a whole window. `0` disables flap detection; otherwise
    /// at least 2.
    pub flap_max_opens: u32,
    /// A historical (backfill) evaluation older than this, by the wall clock,
    /// never opens an episode.
    pub max_alert_age_ms: u64,
}

impl Default for EpisodeConfig {
    fn default() -> Self {
        const MINUTE_MS: u64 = 60_000;
        const HOUR_MS: u64 = 60 * MINUTE_MS;
        Self {
            open_after: 3,
            close_after: 5,
            hysteresis: 0.8,
            escalate_ratio: 1.5,
            // A dispatcher wants a daily refresh of an open Case, not an hourly one
            // (escalations go out at once regardless); every update costs API calls.
            min_update_interval_ms: 24 * HOUR_MS,
            cooldown_ms: 6 * HOUR_MS,
            flap_window_ms: 24 * HOUR_MS,
            flap_max_opens: 3,
            max_alert_age_ms: 6 * HOUR_MS,
        }
    }
}

/// A key of [`EpisodeConfig`] that fails its check.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct EpisodeConfigError {
    /// The offending key, as spelt in the config file.
    pub key: &'static str,
    /// What is wrong with its value.
    pub problem: String,
}

impl EpisodeConfig {
    /// Checks every key.
    ///
    /// # Errors
    /// The first key whose value is out of range, named as in the config file.
    pub fn validate(&self) -> Result<(), EpisodeConfigError> {
        let bad = |key: &'static str, problem: String| Err(EpisodeConfigError { key, problem });
        if self.open_after == 0 {
            return bad("open_after", "must be at least 1".into());
        }
        if self.close_after == 0 {
            return bad("close_after", "must be at least 1".into());
        }
        if !(self.hysteresis > 0.0 && self.hysteresis <= 1.0) {
            return bad(
                "hysteresis",
                format!("must be in (0, 1], got {}", self.hysteresis),
            );
        }
        if !(self.escalate_ratio.is_finite() && self.escalate_ratio > 1.0) {
            return bad(
                "escalate_ratio",
                format!("must be a finite number > 1, got {}", self.escalate_ratio),
            );
        }
        if self.flap_max_opens == 1 {
            return bad(
                "flap_max_opens",
                "must be 0 (disabled) or at least 2, got 1".into(),
            );
        }
        for (key, value) in [
            ("min_update_interval_ms", self.min_update_interval_ms),
            ("cooldown_ms", self.cooldown_ms),
            ("flap_window_ms", self.flap_window_ms),
            ("max_alert_age_ms", self.max_alert_age_ms),
        ] {
            if i64::try_from(value).is_err() {
                return bad(key, format!("must be at most {}, got {value}", i64::MAX));
            }
        }
        Ok(())
    }
}

/// A millisecond duration as a signed span of time, saturating (validated
/// configs never saturate).
pub(crate) fn span_ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_validates() {
        assert_eq!(EpisodeConfig::default().validate(), Ok(()));
    }

    #[test]
    fn validate_names_the_bad_key() {
        type Breaker = fn(&mut EpisodeConfig);
        let cases: [(&str, Breaker); 7] = [
            ("open_after", |c| c.open_after = 0),
            ("close_after", |c| c.close_after = 0),
            ("hysteresis", |c| c.hysteresis = f64::NAN),
            ("hysteresis", |c| c.hysteresis = 1.2),
            ("escalate_ratio", |c| c.escalate_ratio = 1.0),
            ("flap_max_opens", |c| c.flap_max_opens = 1),
            ("cooldown_ms", |c| c.cooldown_ms = u64::MAX),
        ];
        for (key, break_it) in cases {
            let mut cfg = EpisodeConfig::default();
            break_it(&mut cfg);
            let err = cfg.validate().expect_err(key);
            assert_eq!(err.key, key);
            assert!(err.to_string().starts_with(&format!("{key}: ")), "{err}");
        }
    }

    #[test]
    fn config_reads_partial_json_and_refuses_unknown_keys() {
        let cfg: EpisodeConfig = serde_json::from_str(r#"{"open_after": 2}"#).expect("parse");
        assert_eq!(cfg.open_after, 2);
        assert_eq!(cfg.close_after, EpisodeConfig::default().close_after);
        let err = serde_json::from_str::<EpisodeConfig>(r#"{"open_afterr": 2}"#)
            .expect_err("unknown key");
        assert!(err.to_string().contains("open_afterr"), "{err}");
    }
}
