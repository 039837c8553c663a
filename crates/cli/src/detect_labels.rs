//! `fieldpulse detect --label-col`: how the alarms compare with a column of
//! ground-truth labels in the input (0 normal, any other number anomalous),
//! row by row as outlier benchmarks score it (precision, recall, F1, the
//! false- and missed-alarm rates) and by event (a labelled run found when any
//! of its rows alarms; false episodes, alarm runs touching no anomalous row,
//! per 1,000 normal rows, as [`fieldpulse_models::anomaly::evaluate`] counts
//! them for `bench scoring`). An unlabelled row ends a labelled run.

use serde::Serialize;

/// Per asset, after its previous scored row: inside a labelled run, and
/// whether it has alarmed; inside an alarm run, and whether it has touched
/// an anomalous row.
#[derive(Debug, Clone, Copy, Default)]
struct AssetRun {
    label: bool,
    found: bool,
    alarm: bool,
    alarm_labelled: bool,
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
    /// Ended alarm runs that touched no anomalous row.
    false_episodes: u64,
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
    /// Alarm runs (per asset) that touched no row labelled anomalous.
    pub false_episodes: u64,
    /// `false_episodes` per 1,000 normal rows: false alarms counted as
    /// onsets, the rate the default threshold's nominal 0.1 is about.
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
        if prev.alarm && !alarm && !prev.alarm_labelled {
            self.false_episodes += 1;
        }
        let anomalous = label == Some(true);
        let alarm_labelled = alarm && ((prev.alarm && prev.alarm_labelled) || anomalous);
        match label {
            None => self.unlabelled += 1,
            Some(true) if alarm => self.tp += 1,
            Some(true) => self.fn_ += 1,
            Some(false) if alarm => self.fp += 1,
            Some(false) => self.tn += 1,
        }
        let carried = prev.label && prev.found;
        if anomalous && !prev.label {
            self.events += 1;
        }
        let found = anomalous && (carried || alarm);
        if found && !carried {
            self.events_found += 1;
        }
        self.assets[asset] = AssetRun {
            label: anomalous,
            found,
            alarm,
            alarm_labelled,
        };
    }

    /// The comparison so far.
    pub fn report(&self, column: &str) -> LabelReport {
        let ratio = |a: u64, b: u64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
        let precision = ratio(self.tp, self.tp + self.fp);
        let recall = ratio(self.tp, self.tp + self.fn_);
        let normal = self.fp + self.tn;
        // Alarm runs still open at the end of the input count too.
        let false_episodes = self.false_episodes
            + self
                .assets
                .iter()
                .filter(|a| a.alarm && !a.alarm_labelled)
                .count() as u64;
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
            false_episodes,
            false_onsets_per_1k: 1_000.0 * ratio(false_episodes, normal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alarm_run_touching_an_anomaly_is_no_false_episode() {
        let mut s = LabelScore::default();
        // An alarm from one row before an event to one row after it, then a
        // run of two on normal rows, then one left open at the end.
        for (label, alarm) in [
            (false, true),
            (true, true),
            (false, true),
            (false, false),
            (false, true),
            (false, true),
            (false, false),
            (false, true),
        ] {
            s.add(0, Some(label), alarm);
        }
        let r = s.report("anomaly");
        assert_eq!((r.events, r.events_found), (1, 1));
        assert_eq!(r.false_episodes, 2);
        assert_eq!(r.false_positives, 5);
    }

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
        assert_eq!(r.false_episodes, 2);
        assert!((r.precision - 0.5).abs() < 1e-12 && (r.recall - 0.5).abs() < 1e-12);
        assert!((r.f1 - 0.5).abs() < 1e-12);
        assert!((r.far - 3.0 / 8.0).abs() < 1e-12 && (r.mar - 0.5).abs() < 1e-12);
        assert!((r.false_onsets_per_1k - 250.0).abs() < 1e-9);
    }
}
