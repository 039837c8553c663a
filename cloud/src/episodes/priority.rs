//! Dispatch priority: `score = probability × criticality × sla_factor`, cut
//! into [`Priority`] bands by configurable [`PriorityBands`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Dispatch priority of an alert or a Case, lowest first (so `Ord` sorts by
/// urgency and `Critical > High`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    /// Score below the `medium` band.
    Low,
    /// Score at or above `medium`.
    Medium,
    /// Score at or above `high`.
    High,
    /// Score at or above `critical`.
    Critical,
}

impl Priority {
    /// The picklist value: `Asset_Alert__c.Priority__c` and `WorkOrder.Priority`
    /// hold all four; a new org's Case `Priority` lists only `High`, `Medium`
    /// and `Low` but is not restricted, so `Critical` is stored as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
            Self::Critical => "Critical",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lower score bounds of the `Medium`, `High` and `Critical` bands; anything
/// below `medium` is `Low`. Deserialises with defaults for missing keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriorityBands {
    /// Scores at or above this are `Critical`.
    pub critical: f64,
    /// Scores at or above this (and below `critical`) are `High`.
    pub high: f64,
    /// Scores at or above this (and below `high`) are `Medium`.
    pub medium: f64,
}

impl Default for PriorityBands {
    fn default() -> Self {
        Self {
            critical: 0.7,
            high: 0.4,
            medium: 0.15,
        }
    }
}

/// A [`PriorityBands`] key that fails its check.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct PriorityBandsError {
    /// The offending key, as spelt in the config file.
    pub key: &'static str,
    /// What is wrong with its value.
    pub problem: String,
}

impl PriorityBands {
    /// Checks that the bounds are finite, non-negative and ordered
    /// `medium <= high <= critical`.
    ///
    /// # Errors
    /// The first key out of range or out of order.
    pub fn validate(&self) -> Result<(), PriorityBandsError> {
        for (key, value) in [
            ("medium", self.medium),
            ("high", self.high),
            ("critical", self.critical),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(PriorityBandsError {
                    key,
                    problem: format!("must be a finite number >= 0, got {value}"),
                });
            }
        }
        if self.high < self.medium {
            return Err(PriorityBandsError {
                key: "high",
                problem: format!("must be >= medium ({}), got {}", self.medium, self.high),
            });
        }
        if self.critical < self.high {
            return Err(PriorityBandsError {
                key: "critical",
                problem: format!("must be >= high ({}), got {}", self.high, self.critical),
            });
        }
        Ok(())
    }

    /// The band `score` falls in; a non-finite score is `Low`.
    pub fn classify(&self, score: f64) -> Priority {
        if score >= self.critical {
            Priority::Critical
        } else if score >= self.high {
            Priority::High
        } else if score >= self.medium {
            Priority::Medium
        } else {
            Priority::Low
        }
    }
}

/// What a priority is computed from, with where each factor came from, so a
/// dispatcher (and `AI_Insight__c`) can see why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityInputs {
    /// Probability of failure within the horizon, or a calibrated anomaly score, in `[0, 1]`.
    pub probability: f64,
    /// How much a failure of this asset matters, relative to a normal asset (`1`).
    pub criticality: f64,
    /// Where `criticality` came from, e.g. `Asset.ConsequenceOfFailure` or `default`.
    pub criticality_source: String,
    /// Multiplier for the service contract, `1` for a standard SLA.
    pub sla_factor: f64,
    /// Where `sla_factor` came from, e.g. `Entitlement.SlaProcess` or `default`.
    pub sla_source: String,
}

/// A computed priority with its score and inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityDecision {
    /// `probability × criticality × sla_factor`; `0` when that is not a
    /// finite, non-negative number (`sanitized` is then true).
    pub score: f64,
    /// The band of `score`.
    pub priority: Priority,
    /// True when an input made the raw product NaN, infinite or negative.
    pub sanitized: bool,
    /// The inputs, unchanged.
    pub inputs: PriorityInputs,
}

impl PriorityDecision {
    /// One line for a Case description, e.g.
    /// `High: score 0.450 = P 0.900 x criticality 0.500 (Asset.ConsequenceOfFailure) x SLA 1.000 (default)`.
    pub fn explain(&self) -> String {
        let inputs = &self.inputs;
        let mut res = format!(
            "{}: score {:.3} = P {:.3} x criticality {:.3} ({}) x SLA {:.3} ({})",
            self.priority,
            self.score,
            inputs.probability,
            inputs.criticality,
            inputs.criticality_source,
            inputs.sla_factor,
            inputs.sla_source,
        );
        if self.sanitized {
            res.push_str(" [invalid input, score set to 0]");
        }
        res
    }
}

/// Scores `inputs` and puts the score in a band. Never panics: an input that
/// makes the score NaN, infinite or negative gives score 0 (`Low`), flagged
/// `sanitized`, with the inputs kept for the audit record.
pub fn prioritize(inputs: PriorityInputs, bands: &PriorityBands) -> PriorityDecision {
    let raw = inputs.probability * inputs.criticality * inputs.sla_factor;
    let sanitized = !(raw.is_finite() && raw >= 0.0);
    let score = if sanitized { 0.0 } else { raw };
    PriorityDecision {
        score,
        priority: bands.classify(score),
        sanitized,
        inputs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(probability: f64, criticality: f64, sla_factor: f64) -> PriorityInputs {
        PriorityInputs {
            probability,
            criticality,
            criticality_source: "Asset.ConsequenceOfFailure".into(),
            sla_factor,
            sla_source: "default".into(),
        }
    }

    #[test]
    fn score_is_the_product_and_bands_are_inclusive_lower_bounds() {
        let bands = PriorityBands::default();
        let decision = prioritize(inputs(0.9, 0.5, 1.0), &bands);
        assert!((decision.score - 0.45).abs() < 1e-12);
        assert_eq!(decision.priority, Priority::High);
        assert!(!decision.sanitized);
        assert_eq!(bands.classify(0.7), Priority::Critical);
        assert_eq!(bands.classify(0.699), Priority::High);
        assert_eq!(bands.classify(0.4), Priority::High);
        assert_eq!(bands.classify(0.15), Priority::Medium);
        assert_eq!(bands.classify(0.1499), Priority::Low);
        assert_eq!(
            prioritize(inputs(0.9, 1.0, 1.0), &bands).priority,
            Priority::Critical
        );
    }

    #[test]
    fn sla_factor_can_raise_a_band() {
        let bands = PriorityBands::default();
        assert_eq!(
            prioritize(inputs(0.5, 0.6, 1.0), &bands).priority,
            Priority::Medium
        );
        assert_eq!(
            prioritize(inputs(0.5, 0.6, 2.0), &bands).priority,
            Priority::High
        );
    }

    #[test]
    fn invalid_inputs_give_low_and_are_flagged() {
        let bands = PriorityBands::default();
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            let decision = prioritize(inputs(bad, 1.0, 1.0), &bands);
            assert_eq!(decision.score, 0.0);
            assert_eq!(decision.priority, Priority::Low);
            assert!(decision.sanitized);
            assert!(decision.explain().contains("invalid input"));
        }
    }

    #[test]
    fn display_gives_the_picklist_value() {
        let shown: Vec<String> = [
            Priority::Critical,
            Priority::High,
            Priority::Medium,
            Priority::Low,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(shown, ["Critical", "High", "Medium", "Low"]);
        assert!(Priority::Critical > Priority::High && Priority::Medium > Priority::Low);
    }

    #[test]
    fn explain_names_every_factor_and_source() {
        let text = prioritize(inputs(0.9, 0.5, 1.0), &PriorityBands::default()).explain();
        assert_eq!(
            text,
            "High: score 0.450 = P 0.900 x criticality 0.500 (Asset.ConsequenceOfFailure) x SLA 1.000 (default)"
        );
    }

    #[test]
    fn bands_validate_order_and_range() {
        assert_eq!(PriorityBands::default().validate(), Ok(()));
        let unordered = PriorityBands {
            critical: 0.3,
            high: 0.4,
            medium: 0.1,
        };
        assert_eq!(unordered.validate().expect_err("order").key, "critical");
        let nan = PriorityBands {
            medium: f64::NAN,
            ..PriorityBands::default()
        };
        assert_eq!(nan.validate().expect_err("nan").key, "medium");
    }
}
