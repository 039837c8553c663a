//! Monotone constraints for the failure models, by feature-name pattern
//! (feature `train`).
//!
//! A [`MonotoneRule`] is `PATTERN=+1`, `PATTERN=-1` or `PATTERN=0`, written
//! in terms of **risk**: `+1` means the failure probability of every
//! classifier never decreases as the feature rises. The RUL regressor gets
//! the opposite direction (more risk, less life left). `PATTERN` is a
//! feature column name (`vib_rms.robust_z`, `hist.days_since_pm`; the names
//! are in the model card's `features.columns`) in which `*` matches any run
//! of characters (`vib_*.ewma_mean_hl*`). Rules apply in order, a later one
//! overriding an earlier one on the columns both match (so `PATTERN=0` lifts
//! a default). A pattern given by the user that matches no column is an
//! error: a typo must not silently train an unconstrained model.
//!
//! [`DEFAULT_RULES`] are the constraints physics asks for on any fleet that
//! has the channels: failure risk never falls as a vibration channel's level
//! (`vib_*.ewma_mean_hl*`) or its deviation above the asset's own normal
//! (`vib_*.robust_z`) rises, every other feature held fixed (the product
//! among them, so a product's higher nominal vibration is not read as
//! risk). They apply where their columns exist and are skipped silently
//! where they do not (telemetry without vibration channels).

use std::fmt;
use std::str::FromStr;

/// One `PATTERN=DIRECTION` rule (module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonotoneRule {
    /// Feature-name pattern; `*` matches any run of characters.
    pub pattern: String,
    /// `+1` risk non-decreasing in the feature, `-1` non-increasing, `0`
    /// free.
    pub direction: i8,
}

/// Why a rule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonotoneError {
    /// The text is not `PATTERN=+1|-1|0`.
    #[error("monotone rule `{0}`: expected PATTERN=+1, PATTERN=-1 or PATTERN=0")]
    Syntax(String),
    /// The pattern names no feature column.
    #[error("monotone rule `{0}` matches no feature column (names are in the model card's features.columns)")]
    NoMatch(String),
}

impl MonotoneRule {
    /// A rule for `pattern` in `direction`.
    pub fn new(pattern: impl Into<String>, direction: i8) -> Self {
        Self {
            pattern: pattern.into(),
            direction,
        }
    }

    /// Whether `name` matches the pattern.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(&self.pattern, name)
    }
}

impl FromStr for MonotoneRule {
    type Err = MonotoneError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || MonotoneError::Syntax(text.to_string());
        let (pattern, direction) = text.trim().rsplit_once('=').ok_or_else(bad)?;
        let direction = match direction.trim() {
            "+1" | "1" => 1,
            "-1" => -1,
            "0" => 0,
            _ => return Err(bad()),
        };
        let pattern = pattern.trim();
        if pattern.is_empty() {
            return Err(bad());
        }
        Ok(Self::new(pattern, direction))
    }
}

impl fmt::Display for MonotoneRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let direction = match self.direction {
            1 => "+1",
            -1 => "-1",
            _ => "0",
        };
        write!(f, "{}={direction}", self.pattern)
    }
}

/// Default constraints, as `(pattern, risk direction)` (module docs).
pub const DEFAULT_RULES: [(&str, i8); 2] = [("vib_*.ewma_mean_hl*", 1), ("vib_*.robust_z", 1)];

/// [`DEFAULT_RULES`] as rules.
pub fn default_rules() -> Vec<MonotoneRule> {
    DEFAULT_RULES
        .iter()
        .map(|&(pattern, direction)| MonotoneRule::new(pattern, direction))
        .collect()
}

/// The per-column risk directions `defaults` then `rules` give `columns`
/// (all 0 when there is no rule). A default that matches nothing is
/// skipped.
///
/// # Errors
/// [`MonotoneError::NoMatch`] naming the first of `rules` that matches
/// nothing.
pub fn resolve(
    columns: &[String],
    defaults: &[MonotoneRule],
    rules: &[MonotoneRule],
) -> Result<Vec<i8>, MonotoneError> {
    let mut out = vec![0i8; columns.len()];
    for rule in defaults {
        for (slot, name) in out.iter_mut().zip(columns) {
            if rule.matches(name) {
                *slot = rule.direction;
            }
        }
    }
    for rule in rules {
        let mut matched = false;
        for (slot, name) in out.iter_mut().zip(columns) {
            if rule.matches(name) {
                *slot = rule.direction;
                matched = true;
            }
        }
        if !matched {
            return Err(MonotoneError::NoMatch(rule.to_string()));
        }
    }
    Ok(out)
}

/// `*`-only glob: `*` matches any run of characters (none included), every
/// other character itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Greedy match with backtracking to the last `*` (linear in practice).
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names_with_star_runs() {
        assert!(glob_match("vib_rms.robust_z", "vib_rms.robust_z"));
        assert!(!glob_match("vib_rms.robust", "vib_rms.robust_z"));
        assert!(glob_match("vib_*.robust_z", "vib_peak.robust_z"));
        assert!(glob_match("*.ewma_mean_hl*", "temp_c.ewma_mean_hl256"));
        assert!(!glob_match("*.ewma_mean_hl*", "temp_c.ewma_std_hl256"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn rules_parse_resolve_in_order_and_refuse_what_matches_nothing() {
        let rules: Vec<MonotoneRule> = [
            "vib_*.robust_z=+1",
            "vib_peak.robust_z = 0",
            "hist.age_days=-1",
        ]
        .iter()
        .map(|t| t.parse().expect("rule"))
        .collect();
        assert_eq!(rules[0], MonotoneRule::new("vib_*.robust_z", 1));
        assert_eq!(rules[1].to_string(), "vib_peak.robust_z=0");
        let columns: Vec<String> = [
            "vib_rms.robust_z",
            "vib_peak.robust_z",
            "hist.age_days",
            "dt_s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(resolve(&columns, &[], &rules), Ok(vec![1, 0, -1, 0]));
        assert_eq!(resolve(&columns, &[], &[]), Ok(vec![0; 4]));
        let typo = MonotoneRule::new("vib_rm.robust_z", 1);
        assert!(matches!(
            resolve(&columns, &[], std::slice::from_ref(&typo)),
            Err(MonotoneError::NoMatch(_))
        ));
        // Defaults apply where they match, are skipped where they do not,
        // and the user's rules override them.
        let defaults = default_rules();
        assert_eq!(resolve(&columns, &defaults, &[]), Ok(vec![1, 1, 0, 0]));
        let lifted = MonotoneRule::new("vib_peak.*", 0);
        assert_eq!(
            resolve(&columns, &defaults, &[lifted]),
            Ok(vec![1, 0, 0, 0])
        );
        let no_vibration = vec!["temp_c.robust_z".to_string(), "dt_s".to_string()];
        assert_eq!(resolve(&no_vibration, &defaults, &[]), Ok(vec![0, 0]));
        assert!(resolve(&no_vibration, &defaults, &[typo]).is_err());
        for bad in ["vib_rms", "=1", "vib_rms=2", "vib_rms=+", "vib_rms=up"] {
            assert!(bad.parse::<MonotoneRule>().is_err(), "{bad}");
        }
    }
}
