//! `fieldpulse detect --label-col`: how the alarms compare with a column of
//! ground-truth labels in the input (0 normal, any other number anomalous),
//! row by row as outlier benchmarks score it (precision, recall, F1, the
//! false- and missed-alarm rates) and by event (a labelled run found when any
//! of its rows alarms; false alarm onsets per 1,000 normal rows).

use serde::Serialize;

/// Per asset: the previous scored row's label and alarm, and whether the
/// current labelled run has alarmed.
#[derive(Debug, Clone, Copy, Default)]
struct AssetRun {
    label: bool,
    alarm: bool,
    found: bool,
}

/// Accumulates the comparison while `detect` streams.
#[derive(Debug, Default)]
pub struct LabelScore {
    assets: Vec<AssetRun>,
    tp: u64,
    fp: u64,
    fn_: u64,
    tn: u64,
    unlabelled: u64,
    events: u64,
    events_found: u64,
    false_onsets: u64,
}

/// The comparison, as `detect --json` reports it.
#[derive(Debug, Serialize, PartialEq)]
pub struct LabelReport {
    /// The label column.
    pub column: String,
    /// Scored rows labelled anomalous.
    pub anomalous_rows: u64,
    /// Scored rows labelled normal.
    pub normal_rows: u64,
    /// Scored rows whose label is empty or not a number (not compared).
    pub unlabelled_rows: u64,
    /// Alarmed rows labelled anomalous.
    pub true_positives: u64,
    /// Alarmed rows labelled normal.
    pub false_positives: u64,
    /// Quiet rows labelled anomalous.
    pub false_negatives: u64,
    /// Alarmed rows over alarmed rows (0 without alarms).
    pub precision: f64,
    /// Alarmed anomalous rows over anomalous rows (0 without any).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// False alarm rate: alarmed normal rows over normal rows.
    pub far: f64,
    /// Missed alarm rate: quiet anomalous rows over anomalous rows.
    pub mar: f64,
    /// Runs of anomalous labels (per asset).
    pub events: u64,
    /// Runs with at least one alarmed row.
    pub events_found: u64,
    /// Alarm onsets (an alarm after a quiet row of the asset) on normal rows.
    pub false_onsets: u64,
    /// `false_onsets` per 1,000 normal rows.
    pub false_onsets_per_1k: f64,
}

/// A label field: `Some(anomalous)` for a number, `None` for an empty or
/// unreadable field.
pub fn parse_label(field: &str) -> Option<bool> {
    let v: f64 = field.trim().parse().ok()?;
    v.is_finite().then_some(v != 0.0)
}

impl LabelScore {
    /// Counts one scored row of `asset` (assets are numbered from 0 as the
    /// scorer adds them).
    pub fn add(&mut self, asset: usize, label: Option<bool>, alarm: bool) {
        if self.assets.len() <= asset {
            self.assets.resize(asset + 1, AssetRun::default());
        }
        let prev = self.assets[asset];
        let Some(label) = label else {
            self.unlabelled += 1;
            self.assets[asset] = AssetRun {
                alarm,
                label: false,
                found: false,
            };
            return;
        };
        match (alarm, label) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
        if alarm && !prev.alarm && !label {
            self.false_onsets += 1;
        }
        let found = if label {
            if !prev.label {
                self.events += 1;
            }
            let found = (prev.label && prev.found) || alarm;
            if found && !(prev.label && prev.found) {
                self.events_found += 1;
            }
            found
        } else {
            false
        };
        self.assets[asset] = AssetRun {
            label,
            alarm,
            found,
        };
    }

    /// The comparison so far.
    pub fn report(&self, column: &str) -> LabelReport {
        let ratio = |a: u64, b: u64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
        let precision = ratio(self.tp, self.tp + self.fp);
        let recall = ratio(self.tp, self.tp + self.fn_);
        let normal = self.fp + self.tn;
        LabelReport {
            column: column.to_string(),
            anomalous_rows: self.tp + self.fn_,
            normal_rows: normal,
            unlabelled_rows: self.unlabelled,
            true_positives: self.tp,
            false_positives: self.fp,
            false_negatives: self.fn_,
            precision,
            recall,
            f1: if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            },
            far: ratio(self.fp, normal),
            mar: ratio(self.fn_, self.tp + self.fn_),
            events: self.events,
            events_found: self.events_found,
            false_onsets: self.false_onsets,
            false_onsets_per_1k: 1_000.0 * ratio(self.false_onsets, normal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_as_numbers_and_anything_else_is_unlabelled() {
        assert_eq!(parse_label("0"), Some(false));
        assert_eq!(parse_label("0.0"), Some(false));
        assert_eq!(parse_label(" 1 "), Some(true));
        assert_eq!(parse_label("2"), Some(true));
        assert_eq!(parse_label(""), None);
        assert_eq!(parse_label("yes"), None);
        assert_eq!(parse_label("NaN"), None);
    }

    #[test]
    fn rows_events_and_onsets_are_counted_per_asset() {
        let mut s = LabelScore::default();
        // Asset 0: normal, a false alarm of two rows, normal, an event of
        // three rows alarmed from its second, an event of two never alarmed.
        let rows0 = [
            (false, false),
            (false, true),
            (false, true),
            (false, false),
            (true, false),
            (true, true),
            (true, true),
            (false, false),
            (true, false),
            (true, false),
            (false, false),
        ];
        // Asset 1, interleaved: an event alarmed at once, then an unlabelled
        // row, then a false alarm onset.
        let rows1 = [(true, true), (false, false), (false, true)];
        for (i, (label, alarm)) in rows0.iter().enumerate() {
            s.add(0, Some(*label), *alarm);
            if i < rows1.len() {
                let (l1, a1) = rows1[i];
                s.add(1, Some(l1), a1);
            }
            if i == 1 {
                s.add(1, None, false);
            }
        }
        let r = s.report("anomaly");
        assert_eq!(
            (r.true_positives, r.false_positives, r.false_negatives),
            (3, 3, 3)
        );
        assert_eq!(
            (r.anomalous_rows, r.normal_rows, r.unlabelled_rows),
            (6, 8, 1)
        );
        assert_eq!((r.events, r.events_found), (3, 2));
        assert_eq!(r.false_onsets, 2);
        assert!((r.precision - 0.5).abs() < 1e-12 && (r.recall - 0.5).abs() < 1e-12);
        assert!((r.f1 - 0.5).abs() < 1e-12);
        assert!((r.far - 3.0 / 8.0).abs() < 1e-12 && (r.mar - 0.5).abs() < 1e-12);
        assert!((r.false_onsets_per_1k - 250.0).abs() < 1e-9);
    }
}
