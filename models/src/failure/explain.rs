//! Why the failure model rated a row as it did: the top TreeSHAP feature
//! contributions of one classifier, in log-odds and in probability, each with
//! a phrase a dispatcher can read ("vibration RMS 3.1σ above this asset's
//! normal").
//!
//! Units. The booster's contributions are exact in its raw score, the
//! log-odds of the uncalibrated probability: `base + Σ φ_i = raw(x)`
//! ([`crate::gbdt::shap`]). The risk a Case reports is the *calibrated*
//! probability `p = iso(sigmoid(raw))`. Isotonic calibration is monotone but
//! not additive, so no exact per-feature split of `p` exists; we report
//! `φ_i · (p − p_base) / (raw − base)`, the change from the baseline risk
//! `p_base = iso(sigmoid(base))` shared out in proportion to the log-odds
//! contributions. These sum to `p − p_base` and keep each feature's sign
//! (the calibration never decreases); their relative sizes are those of the
//! log-odds contributions, which are reported alongside.
//!
//! Phrases read the feature's own value from the row and, for per-sensor
//! features, the asset's running median and robust scale (`{sensor}.median`,
//! `{sensor}.robust_scale`, in the same row): `robust_z` and `resid_z` are
//! already σ distances from this asset's normal and recent level; EWMA means
//! and spreads are put against the median and the robust scale; the others
//! are raw values, with a unit when the sensor name ends in a known unit
//! suffix (`_c` °C, `_bar`, `_a` A, …; see [`sensor_label`]).

use super::model::{Classifier, FeatureSchema};
use crate::gbdt::{sigmoid, ExplainError};

/// Method tag written next to explanations (audit records, docs).
pub const METHOD: &str = "tree_shap_path_dependent";

/// One feature's share of a prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureContribution {
    /// Column name in the model's schema.
    pub feature: String,
    /// The feature's value in the explained row (`NaN` = missing).
    pub value: f64,
    /// Exact TreeSHAP contribution to the classifier's log-odds.
    pub log_odds: f64,
    /// Contribution to the calibrated probability (see the module doc).
    pub probability: f64,
    /// The value in words, relative to the asset's normal where the
    /// features give one.
    pub phrase: String,
}

/// A classifier's explanation of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Expected log-odds over the training cover (TreeSHAP `φ_0`).
    pub base_log_odds: f64,
    /// The row's log-odds (`base_log_odds + Σ` every feature's contribution).
    pub log_odds: f64,
    /// Calibrated probability at `base_log_odds`.
    pub base_probability: f64,
    /// Calibrated probability of the row (the reported risk).
    pub probability: f64,
    /// The largest contributions by `|log_odds|`, largest first; features
    /// contributing exactly nothing are left out.
    pub top: Vec<FeatureContribution>,
    /// Features with a non-zero contribution (of which `top` is the head).
    pub n_contributing: usize,
}

impl Classifier {
    /// Explains this classifier's probability for a full feature row
    /// (schema order), keeping the `top` largest contributions.
    ///
    /// # Errors
    /// [`ExplainError`] when the booster cannot be explained (an artifact
    /// without node covers, a malformed tree, a short row).
    pub fn explain(
        &self,
        schema: &FeatureSchema,
        row: &[f64],
        top: usize,
    ) -> Result<Explanation, ExplainError> {
        let contributions = self.booster.contributions(row)?;
        let base = contributions.base;
        let raw = self.booster.predict_raw(row);
        let probability = self.calibration.apply(sigmoid(raw));
        let base_probability = self.calibration.apply(sigmoid(base));
        let scale = if (raw - base).abs() > 1e-12 {
            (probability - base_probability) / (raw - base)
        } else {
            0.0
        };
        let mut order: Vec<usize> = (0..contributions.values.len())
            .filter(|&i| contributions.values[i] != 0.0)
            .collect();
        let n_contributing = order.len();
        order.sort_by(|&a, &b| {
            let (va, vb) = (contributions.values[a], contributions.values[b]);
            vb.abs().total_cmp(&va.abs()).then(a.cmp(&b))
        });
        let top = order
            .into_iter()
            .take(top)
            .map(|i| {
                let phi = contributions.values[i];
                FeatureContribution {
                    feature: column(schema, i).map_or_else(|| format!("f{i}"), str::to_string),
                    value: row[i],
                    log_odds: phi,
                    probability: phi * scale,
                    phrase: describe(schema, row, i),
                }
            })
            .collect();
        Ok(Explanation {
            base_log_odds: base,
            log_odds: raw,
            base_probability,
            probability,
            top,
            n_contributing,
        })
    }
}

/// A sensor name in words and its unit, read from the name's suffix:
/// `vib_rms` → ("vibration RMS", None), `temp_c` → ("temperature", "°C").
pub fn sensor_label(sensor: &str) -> (String, Option<&'static str>) {
    const UNITS: [(&str, &str); 13] = [
        ("mm_s", "mm/s"),
        ("c", "°C"),
        ("f", "°F"),
        ("bar", "bar"),
        ("psi", "psi"),
        ("kpa", "kPa"),
        ("a", "A"),
        ("v", "V"),
        ("kw", "kW"),
        ("hz", "Hz"),
        ("rpm", "rpm"),
        ("pct", "%"),
        ("g", "g"),
    ];
    let lower = sensor.to_ascii_lowercase();
    if lower == "rpm" {
        return ("speed".into(), Some("rpm"));
    }
    let mut stem = lower.as_str();
    let mut unit = None;
    for (suffix, u) in UNITS {
        if let Some(s) = lower.strip_suffix(suffix) {
            if let Some(s) = s.strip_suffix('_').filter(|s| !s.is_empty()) {
                stem = s;
                unit = Some(u);
                break;
            }
        }
    }
    let words: Vec<String> = stem
        .split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| match w {
            "temp" => "temperature".to_string(),
            "vib" => "vibration".to_string(),
            "rms" => "RMS".to_string(),
            "pres" => "pressure".to_string(),
            other => other.to_string(),
        })
        .collect();
    if words.is_empty() {
        return (sensor.to_string(), unit);
    }
    (words.join(" "), unit)
}

/// A number with about three significant digits.
fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn with_unit(x: f64, unit: Option<&str>) -> String {
    match unit {
        Some("°C" | "°F" | "%") => format!("{}{}", num(x), unit.unwrap_or_default()),
        Some(u) => format!("{} {u}", num(x)),
        None => num(x),
    }
}

fn duration(seconds: f64) -> String {
    let a = seconds.abs();
    if a >= 2.0 * 86_400.0 {
        format!("{:.1} days", seconds / 86_400.0)
    } else if a >= 3_600.0 {
        format!("{:.1} h", seconds / 3_600.0)
    } else if a >= 60.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{seconds:.0} s")
    }
}

fn sigma_phrase(z: f64, against: &str) -> String {
    if z.abs() < 0.05 {
        format!("at {against}")
    } else {
        format!(
            "{:.1}σ {} {against}",
            z.abs(),
            if z > 0.0 { "above" } else { "below" }
        )
    }
}

/// Column `idx` of the schema (stream columns, then history columns),
/// without building the whole name list.
fn column(schema: &FeatureSchema, idx: usize) -> Option<&str> {
    let n_stream = schema.stream_columns.len();
    match idx.checked_sub(n_stream) {
        None => schema.stream_columns.get(idx),
        Some(h) => schema.history_columns.get(h),
    }
    .map(String::as_str)
}

/// Feature `idx` of `row` in words (see the module doc).
pub fn describe(schema: &FeatureSchema, row: &[f64], idx: usize) -> String {
    let Some(name) = column(schema, idx) else {
        return format!("feature {idx}");
    };
    let value = row.get(idx).copied().unwrap_or(f64::NAN);
    if name == "dt_s" {
        return if value.is_nan() {
            "time since the previous reading unknown".into()
        } else {
            format!("{} since the previous reading", duration(value))
        };
    }
    if let Some(hist) = name.strip_prefix("hist.") {
        return describe_history(schema, hist, value);
    }
    // The longest sensor whose `{sensor}.` prefixes the name (sensor names
    // and half-lives may themselves hold dots).
    let sensor = schema
        .sensors
        .iter()
        .filter(|s| name.len() > s.len() + 1 && name.starts_with(s.as_str()))
        .filter(|s| name.as_bytes()[s.len()] == b'.')
        .max_by_key(|s| s.len());
    let Some(sensor) = sensor else {
        return format!("{name} = {}", num(value));
    };
    let suffix = &name[sensor.len() + 1..];
    let (label, unit) = sensor_label(sensor);
    if value.is_nan() {
        return format!("{label} {} missing", suffix.replace('_', " "));
    }
    let at = |col: &str| {
        let col = format!("{sensor}.{col}");
        schema
            .stream_columns
            .iter()
            .position(|n| *n == col)
            .and_then(|i| row.get(i).copied())
            .filter(|v| v.is_finite())
    };
    let scale = at("robust_scale").filter(|s| *s > 0.0);
    let median = at("median");
    match suffix {
        "robust_z" => format!("{label} {}", sigma_phrase(value, "this asset's normal")),
        "resid_z" => format!("{label} {}", sigma_phrase(value, "its recent level")),
        "median" => format!("{label} typical level {}", with_unit(value, unit)),
        "robust_scale" => format!("{label} normal spread {}", with_unit(value, unit)),
        "resid_scale" => format!("{label} recent noise {}", with_unit(value, unit)),
        "age_s" => format!("{label} last reported {} ago", duration(value)),
        "slope_per_s" => {
            let per_day = value * 86_400.0;
            if per_day == 0.0 {
                return format!("{label} flat");
            }
            let dir = if per_day > 0.0 { "rising" } else { "falling" };
            match scale {
                Some(s) => {
                    let sigmas = per_day.abs() / s;
                    let sigmas = if sigmas >= 1.0 {
                        format!("{sigmas:.1}")
                    } else {
                        format!("{sigmas:.2}")
                    };
                    format!(
                        "{label} {dir} {} per day ({sigmas}σ of this asset's normal spread per day)",
                        with_unit(per_day.abs(), unit),
                    )
                }
                None => format!("{label} {dir} {} per day", with_unit(per_day.abs(), unit)),
            }
        }
        _ => {
            if let Some(hl) = suffix.strip_prefix("ewma_mean_hl") {
                match (median, scale) {
                    (Some(m), Some(s)) => format!(
                        "{label} average (half-life {hl} readings) {}, {}",
                        with_unit(value, unit),
                        sigma_phrase((value - m) / s, "this asset's normal")
                    ),
                    _ => format!(
                        "{label} average (half-life {hl} readings) {}",
                        with_unit(value, unit)
                    ),
                }
            } else if let Some(hl) = suffix.strip_prefix("ewma_std_hl") {
                match scale {
                    Some(s) => format!(
                        "{label} variability (half-life {hl} readings) {}, {:.1}× this asset's normal spread",
                        with_unit(value, unit),
                        value / s
                    ),
                    None => format!(
                        "{label} variability (half-life {hl} readings) {}",
                        with_unit(value, unit)
                    ),
                }
            } else {
                format!("{label} {} {}", suffix.replace('_', " "), num(value))
            }
        }
    }
}

fn describe_history(schema: &FeatureSchema, hist: &str, value: f64) -> String {
    let known = !value.is_nan();
    match hist {
        "days_since_pm" if known => {
            format!("{value:.1} days since the last preventive maintenance")
        }
        "days_since_pm" => "no preventive maintenance on record".into(),
        "days_since_failure" if known => format!("{value:.1} days since the last failure"),
        "days_since_failure" => "no failure on record".into(),
        "failures_90d" if known => format!("{value:.0} failure(s) in the last 90 days"),
        "age_days" if known => format!("asset age {value:.0} days"),
        "age_days" => "asset age unknown".into(),
        "product" => {
            let product = (known && value >= 0.0)
                .then(|| schema.products.get(value as usize))
                .flatten();
            match product {
                Some(p) => format!("product {p}"),
                None => "product unknown".into(),
            }
        }
        other => match other.strip_prefix("days_since_failure_") {
            Some(mode) if known => format!(
                "{value:.1} days since the last {} failure",
                mode.replace('_', " ")
            ),
            Some(mode) => format!("no {} failure on record", mode.replace('_', " ")),
            None if known => format!("{} {}", other.replace('_', " "), num(value)),
            None => format!("{} unknown", other.replace('_', " ")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> FeatureSchema {
        FeatureSchema::new(
            vec!["vib_rms".into(), "temp_c".into()],
            vec![4.0, 32.0],
            1,
            vec!["Pump".into(), "Fan".into()],
            vec!["bearing".into()],
        )
        .expect("schema")
    }

    fn row_with(schema: &FeatureSchema, values: &[(&str, f64)]) -> Vec<f64> {
        let names = schema.names();
        let mut row = vec![f64::NAN; names.len()];
        for (name, v) in values {
            let i = names.iter().position(|n| n == name).expect(name);
            row[i] = *v;
        }
        row
    }

    fn idx(schema: &FeatureSchema, name: &str) -> usize {
        schema.names().iter().position(|n| n == name).expect(name)
    }

    #[test]
    fn sensor_names_become_words_and_units_from_their_suffix() {
        assert_eq!(sensor_label("vib_rms"), ("vibration RMS".into(), None));
        assert_eq!(sensor_label("temp_c"), ("temperature".into(), Some("°C")));
        assert_eq!(
            sensor_label("pressure_bar"),
            ("pressure".into(), Some("bar"))
        );
        assert_eq!(sensor_label("current_a"), ("current".into(), Some("A")));
        assert_eq!(sensor_label("rpm"), ("speed".into(), Some("rpm")));
        assert_eq!(sensor_label("a"), ("a".into(), None));
    }

    #[test]
    fn phrases_put_values_against_the_assets_normal() {
        let s = schema();
        let row = row_with(
            &s,
            &[
                ("vib_rms.robust_z", 3.12),
                ("vib_rms.resid_z", -2.0),
                ("vib_rms.median", 2.0),
                ("vib_rms.robust_scale", 0.5),
                ("vib_rms.ewma_mean_hl4", 3.0),
                ("vib_rms.ewma_std_hl32", 1.0),
                ("vib_rms.slope_per_s", 0.5 / 86_400.0),
                ("temp_c.median", 71.31),
                ("temp_c.age_s", 7_200.0),
                ("hist.days_since_pm", 12.34),
                ("hist.product", 1.0),
                ("dt_s", 14_400.0),
            ],
        );
        let d = |name: &str| describe(&s, &row, idx(&s, name));
        assert_eq!(
            d("vib_rms.robust_z"),
            "vibration RMS 3.1σ above this asset's normal"
        );
        assert_eq!(
            d("vib_rms.resid_z"),
            "vibration RMS 2.0σ below its recent level"
        );
        assert_eq!(
            d("vib_rms.ewma_mean_hl4"),
            "vibration RMS average (half-life 4 readings) 3.00, 2.0σ above this asset's normal"
        );
        assert_eq!(
            d("vib_rms.ewma_std_hl32"),
            "vibration RMS variability (half-life 32 readings) 1.00, 2.0× this asset's normal spread"
        );
        assert_eq!(
            d("vib_rms.slope_per_s"),
            "vibration RMS rising 0.500 per day (1.0σ of this asset's normal spread per day)"
        );
        assert_eq!(d("temp_c.median"), "temperature typical level 71.3°C");
        assert_eq!(d("temp_c.age_s"), "temperature last reported 2.0 h ago");
        assert_eq!(d("temp_c.robust_z"), "temperature robust z missing");
        assert_eq!(
            d("hist.days_since_pm"),
            "12.3 days since the last preventive maintenance"
        );
        assert_eq!(d("hist.product"), "product Fan");
        assert_eq!(
            d("hist.days_since_failure_bearing"),
            "no bearing failure on record"
        );
        assert_eq!(d("dt_s"), "4.0 h since the previous reading");
    }
}
