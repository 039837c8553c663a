//! Detection quality against known labels: per anomaly kind, event recall,
//! alarm-episode precision, F1 and detection delay, plus the false-alarm rate
//! on normal rows.
//!
//! Definitions (per asset, in the asset's reading order):
//! - an *event* is a maximal run of rows with the same nonzero label; it is
//!   *detected* when an alarm falls within `[start, start + max_delay]`
//!   readings (`max_delay` 0 for spikes: the spike reading itself must alarm);
//!   its delay is the first such alarm's position minus `start`;
//! - an *episode* is a maximal run of alarmed rows; it is true when it
//!   overlaps a labelled row (and then belongs to the largest label in it),
//!   false otherwise;
//! - `precision(kind) = true episodes of kind / (those + every false episode)`:
//!   exact on a fleet with only that kind injected, conservative on a mixed one.

use super::params::{AnomalyError, DetectorValidParams};
use super::scorer::FleetScorer;
use super::synth::{generate, AnomalyKind, SynthFleet, SynthParams};

/// Quality for one anomaly kind.
#[derive(Debug, Clone, PartialEq)]
pub struct KindQuality {
    /// The kind.
    pub kind: AnomalyKind,
    /// Number of labelled events.
    pub events: usize,
    /// Events detected within the delay budget.
    pub detected: usize,
    /// `detected / events` (NaN without events).
    pub recall: f64,
    /// Episode precision (see module docs).
    pub precision: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Median detection delay in readings (NaN when nothing was detected).
    pub delay_median: f64,
    /// 90th percentile of the detection delay in readings.
    pub delay_p90: f64,
}

/// Quality of a scored fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityReport {
    /// Per kind, for kinds present in the labels.
    pub kinds: Vec<KindQuality>,
    /// Rows labelled 0.
    pub normal_rows: usize,
    /// Alarmed rows labelled 0: the rows of false episodes, and the rows
    /// of true episodes that outlast their anomaly's labels.
    pub false_alarm_rows: usize,
    /// `false_alarm_rows` per 1,000 normal rows.
    pub false_alarms_per_1k: f64,
    /// Rows of false episodes (alarm runs overlapping no labelled row).
    pub false_episode_rows: usize,
    /// Alarm episodes.
    pub episodes: usize,
    /// Alarm episodes overlapping no labelled row.
    pub false_episodes: usize,
    /// `false_episodes` per 1,000 normal rows: false alarms counted as
    /// onsets, the rate the default threshold's nominal 0.1 is about.
    pub false_onsets_per_1k: f64,
}

/// Evaluates `alarms` (one per row, arrival order) against `labels` for rows of
/// assets `asset_idx`. `max_delay` is the budget for non-spike kinds.
///
/// # Panics
/// If the three slices differ in length.
pub fn evaluate(
    asset_idx: &[u32],
    labels: &[u8],
    alarms: &[bool],
    max_delay: usize,
) -> QualityReport {
    assert!(
        asset_idx.len() == labels.len() && labels.len() == alarms.len(),
        "one label and alarm per row"
    );
    let n_assets = asset_idx.iter().map(|a| *a as usize + 1).max().unwrap_or(0);
    let mut per_asset: Vec<Vec<usize>> = vec![Vec::new(); n_assets];
    for (i, a) in asset_idx.iter().enumerate() {
        per_asset[*a as usize].push(i);
    }
    let mut events: Vec<(AnomalyKind, bool, usize)> = Vec::new();
    let mut true_episodes: Vec<AnomalyKind> = Vec::new();
    let mut false_episodes = 0;
    let mut false_episode_rows = 0;
    for rows in &per_asset {
        let lab: Vec<u8> = rows.iter().map(|&i| labels[i]).collect();
        let al: Vec<bool> = rows.iter().map(|&i| alarms[i]).collect();
        let mut pos = 0;
        while pos < lab.len() {
            let l = lab[pos];
            let mut end = pos;
            while end + 1 < lab.len() && lab[end + 1] == l {
                end += 1;
            }
            if let Some(kind) = AnomalyKind::from_label(l) {
                // Every spike reading is its own event.
                let starts: Vec<usize> = if kind == AnomalyKind::Spike {
                    (pos..=end).collect()
                } else {
                    vec![pos]
                };
                for start in starts {
                    let budget = if kind == AnomalyKind::Spike {
                        0
                    } else {
                        max_delay
                    };
                    let last = (start + budget).min(al.len() - 1);
                    let hit = (start..=last).find(|&j| al[j]);
                    events.push((kind, hit.is_some(), hit.map_or(usize::MAX, |j| j - start)));
                }
            }
            pos = end + 1;
        }
        let mut j = 0;
        while j < al.len() {
            if !al[j] {
                j += 1;
                continue;
            }
            let mut end = j;
            while end + 1 < al.len() && al[end + 1] {
                end += 1;
            }
            match lab[j..=end]
                .iter()
                .copied()
                .max()
                .and_then(AnomalyKind::from_label)
            {
                Some(kind) => true_episodes.push(kind),
                None => {
                    false_episodes += 1;
                    false_episode_rows += end + 1 - j;
                }
            }
            j = end + 1;
        }
    }
    let mut kinds = Vec::new();
    for kind in AnomalyKind::ALL {
        let ev: Vec<&(AnomalyKind, bool, usize)> = events.iter().filter(|e| e.0 == kind).collect();
        if ev.is_empty() {
            continue;
        }
        let detected = ev.iter().filter(|e| e.1).count();
        let mut delays: Vec<usize> = ev.iter().filter(|e| e.1).map(|e| e.2).collect();
        delays.sort_unstable();
        let pct = |q: f64| -> f64 {
            if delays.is_empty() {
                f64::NAN
            } else {
                delays[((delays.len() - 1) as f64 * q).round() as usize] as f64
            }
        };
        let tp = true_episodes.iter().filter(|k| **k == kind).count();
        let precision = if tp + false_episodes == 0 {
            f64::NAN
        } else {
            tp as f64 / (tp + false_episodes) as f64
        };
        let recall = detected as f64 / ev.len() as f64;
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        kinds.push(KindQuality {
            kind,
            events: ev.len(),
            detected,
            recall,
            precision,
            f1,
            delay_median: pct(0.5),
            delay_p90: pct(0.9),
        });
    }
    let normal_rows = labels.iter().filter(|l| **l == 0).count();
    let false_alarm_rows = labels
        .iter()
        .zip(alarms)
        .filter(|(l, a)| **l == 0 && **a)
        .count();
    let per_1k = |n: usize| {
        if normal_rows == 0 {
            0.0
        } else {
            1000.0 * n as f64 / normal_rows as f64
        }
    };
    QualityReport {
        kinds,
        normal_rows,
        false_alarm_rows,
        false_alarms_per_1k: per_1k(false_alarm_rows),
        false_episode_rows,
        episodes: true_episodes.len() + false_episodes,
        false_episodes,
        false_onsets_per_1k: per_1k(false_episodes),
    }
}

/// Scores a generated fleet in one batch and returns its alarms at the
/// parameters' threshold (one per row, arrival order).
///
/// # Errors
/// [`AnomalyError`] when the fleet's sensors are rejected.
pub fn fleet_alarms(
    params: &DetectorValidParams,
    fleet: &SynthFleet,
) -> Result<Vec<bool>, AnomalyError> {
    let mut scorer = FleetScorer::new(
        params.clone(),
        fleet.sensor_names.clone(),
        fleet.asset_names.len(),
    )?;
    let rows = fleet.n_rows();
    let (mut scores, mut top) = (vec![0.0; rows], vec![0u16; rows]);
    scorer.score_batch(
        &fleet.asset_idx,
        &fleet.ts_ms,
        &fleet.values,
        &mut scores,
        &mut top,
    )?;
    let threshold = params.threshold();
    Ok(scores.iter().map(|s| *s >= threshold).collect())
}

/// One generated fleet per anomaly kind, that kind alone on 10 % of the
/// assets (shape from `base`: assets, readings, sensors, interval; seed
/// `base.seed + kind`), scored and evaluated with `max_delay`. Returns each
/// kind's quality with its fleet's whole report (false-alarm figures).
///
/// # Errors
/// [`AnomalyError`] when the fleet's sensors are rejected.
pub fn quality_by_kind(
    params: &DetectorValidParams,
    base: &SynthParams,
    max_delay: usize,
) -> Result<Vec<(KindQuality, QualityReport)>, AnomalyError> {
    let mut out = Vec::new();
    for kind in AnomalyKind::ALL {
        let fleet = generate(&SynthParams {
            assets: base.assets,
            readings: base.readings,
            sensors: base.sensors,
            interval_s: base.interval_s,
            seed: base.seed + kind as u64,
            ..SynthParams::only(kind, 0.1)
        });
        let alarms = fleet_alarms(params, &fleet)?;
        let report = evaluate(&fleet.asset_idx, &fleet.labels, &alarms, max_delay);
        if let Some(k) = report.kinds.iter().find(|k| k.kind == kind) {
            out.push((k.clone(), report.clone()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_episodes_and_delays_follow_the_documented_definitions() {
        // One asset: normal, level shift from position 3, alarms at 5..=6 and a false one at 1.
        let asset = vec![0u32; 8];
        let labels = vec![0, 0, 0, 3, 3, 3, 3, 3];
        let alarms = vec![false, true, false, false, false, true, true, false];
        let q = evaluate(&asset, &labels, &alarms, 10);
        let ls = &q.kinds[0];
        assert_eq!(ls.kind, AnomalyKind::LevelShift);
        assert_eq!((ls.events, ls.detected, ls.delay_median), (1, 1, 2.0));
        assert_eq!(
            (q.episodes, q.false_episodes, q.false_alarm_rows),
            (2, 1, 1)
        );
        assert!((ls.precision - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_spike_counts_only_if_its_own_reading_alarms() {
        let asset = vec![0u32; 4];
        let labels = vec![0, 1, 0, 0];
        let late = evaluate(&asset, &labels, &[false, false, true, false], 10);
        assert_eq!(late.kinds[0].detected, 0);
        let on_time = evaluate(&asset, &labels, &[false, true, false, false], 10);
        assert_eq!(on_time.kinds[0].detected, 1);
    }

    #[test]
    fn an_alarm_outlasting_its_anomaly_flags_normal_rows_but_is_no_false_onset() {
        // A spike at 1 whose alarm lasts to 3, and a false two-row alarm at 6..=7.
        let asset = vec![0u32; 10];
        let labels = vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let alarms = [
            false, true, true, true, false, false, true, true, false, false,
        ];
        let q = evaluate(&asset, &labels, &alarms, 10);
        assert_eq!((q.normal_rows, q.false_alarm_rows), (9, 4));
        assert_eq!((q.false_episodes, q.false_episode_rows), (1, 2));
        assert!((q.false_onsets_per_1k - 1000.0 / 9.0).abs() < 1e-9);
        assert!((q.false_alarms_per_1k - 4000.0 / 9.0).abs() < 1e-9);
    }
}
