//! `fieldpulse eval shapes`: the anomaly detector on the shape corpus
//! (`fieldpulse_simulator::shapes`): per shape, false alarms per 1,000 normal
//! rows (an alarm is an onset: a flagged row after an unflagged one), flagged
//! normal rows per 1,000, the fraction of all rows flagged, and for each
//! injected anomaly kind whether an alarm came within the stated delay.
//!
//! Every series is scored alone, univariate (the most common export), with the
//! default detector parameters and threshold. Normal rows are the rows after
//! the warm-up of the clean series and, in the others, before the anomaly
//! starts (what follows an anomaly is the detector re-learning); an anomaly counts as detected when an alarm falls
//! within `[start, start + max_delay]` rows of its start ([`max_delay`]: 0 for a
//! spike; 480 rows, 8 hours at one row a minute, for a stuck value or a broken
//! period, which a quantised or slow signal shows only once it outlasts its
//! normal runs; 60 % of its rows for a drift, by when it has ramped to 3
//! spreads; 60 rows otherwise). For a level shift the report also gives how
//! long the alarm lasted: the rows from the shift's start until the first
//! [`QUIET_ROWS`] unflagged rows after its first alarm (a persistent new
//! normal must stop alarming).

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Args;
use fieldpulse_models::anomaly::{FleetScorer, Seasonality};
use fieldpulse_simulator::shapes::{corpus, AnomalyKind, ShapeSeries, DRIFT_SPREADS};
use serde::Serialize;

use crate::anomaly_runs::{default_params, parse_seasonality, print_json};

/// Unflagged rows in a row that count as an alarm having cleared.
pub const QUIET_ROWS: usize = 120;

/// Spreads a drift may reach before it must have been seen.
pub const DRIFT_SEEN_BY_SPREADS: f64 = 3.0;

/// Rows an alarm may come after the start of an anomaly of `kind` that
/// lasts `len` rows. A drift ramps from 0 to [`DRIFT_SPREADS`] spreads over
/// its rows, so after 60 rows of a 2,000-row drift it has moved 0.15
/// spreads, under any detector's noise; it must be seen before it reaches
/// [`DRIFT_SEEN_BY_SPREADS`] (60 % of its rows).
pub fn max_delay(kind: AnomalyKind, len: usize) -> usize {
    match kind {
        AnomalyKind::Spike => 0,
        AnomalyKind::StuckAt | AnomalyKind::BrokenPeriod => 480,
        AnomalyKind::Drift => (len as f64 * DRIFT_SEEN_BY_SPREADS / DRIFT_SPREADS) as usize,
        _ => 60,
    }
}

/// Arguments of `fieldpulse eval shapes`.
#[derive(Debug, Args)]
pub struct ShapesArgs {
    /// Rows per series (a minute apart; at least 2,000).
    #[arg(long, default_value_t = 20_000)]
    pub rows: usize,
    /// Seed of the corpus.
    #[arg(long, default_value_t = 13)]
    pub seed: u64,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write every series as `DIR/<shape>__<kind>.csv` (`ts,value,label`),
    /// to score the same corpus with `fieldpulse detect` or another tool.
    #[arg(long, value_name = "DIR")]
    pub write_corpus: Option<std::path::PathBuf>,
    /// Seasonal profile the detector learns: off, daily or weekly (as
    /// `fieldpulse detect`; a weekly one is applied only after three weeks,
    /// so the default 20,000 rows, about 14 days, score as with it off).
    #[arg(long, default_value = "weekly", value_parser = parse_seasonality)]
    pub seasonal: Seasonality,
}

/// Results for one shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShapeResult {
    /// The shape's name.
    pub shape: &'static str,
    /// Normal rows scored after the warm-up, over all of the shape's series:
    /// every row of the clean series, the rows before the anomaly of the others.
    pub normal_rows: u64,
    /// Alarm onsets on those rows (a flagged normal row after an unflagged row).
    pub false_alarms: u64,
    /// `false_alarms` per 1,000 normal rows.
    pub false_alarms_per_1000: f64,
    /// Flagged normal rows per 1,000 normal rows (a run of flagged rows counts
    /// every row).
    pub flagged_normal_per_1000: f64,
    /// Fraction of all scored rows flagged (anomalous ones included).
    pub flagged_fraction: f64,
    /// Per injected kind: the detection delay in rows, `None` when missed.
    pub delays: BTreeMap<&'static str, Option<usize>>,
    /// Rows from the level shift's start until its alarm cleared (the first
    /// row of [`QUIET_ROWS`] unflagged rows after the first alarm): how long
    /// the detector took to accept the new level. `None` when it never
    /// alarmed or never cleared.
    pub level_shift_alarmed_rows: Option<usize>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct ShapesReport {
    /// Rows per series.
    pub rows: usize,
    /// Corpus seed.
    pub seed: u64,
    /// The threshold used (the detector's default).
    pub threshold: f64,
    /// The detector's nominal false-alarm rate per 1,000 rows at that threshold.
    pub nominal_per_1000: f64,
    /// Per shape, in corpus order.
    pub shapes: Vec<ShapeResult>,
}

/// Scores the corpus with the default (weekly) seasonal profile.
///
/// # Errors
/// When the default detector parameters do not validate (a bug).
#[cfg(test)]
pub fn evaluate(rows: usize, seed: u64) -> anyhow::Result<ShapesReport> {
    evaluate_with(rows, seed, Seasonality::Weekly)
}

/// [`evaluate`] with the given seasonal profile.
///
/// # Errors
/// When the detector parameters do not validate (a bug).
pub fn evaluate_with(
    rows: usize,
    seed: u64,
    seasonality: Seasonality,
) -> anyhow::Result<ShapesReport> {
    let params = default_params(seasonality)?;
    let threshold = params.threshold();
    let mut by_shape: Vec<ShapeResult> = Vec::new();
    for series in corpus(rows, seed) {
        let (alarms, scored) = score(&series, params.clone())?;
        let name = series.shape.name();
        if by_shape.last().is_none_or(|r| r.shape != name) {
            by_shape.push(ShapeResult {
                shape: name,
                normal_rows: 0,
                false_alarms: 0,
                false_alarms_per_1000: 0.0,
                flagged_normal_per_1000: 0.0,
                flagged_fraction: 0.0,
                delays: BTreeMap::new(),
                level_shift_alarmed_rows: None,
            });
        }
        let result = by_shape.last_mut().expect("pushed above");
        // Normal rows: every row of a clean series, and the rows before the
        // anomaly of the others (after an anomaly the detector may still be
        // re-learning what it saw; that is not a false alarm on normal data).
        let normal_end = series.injected.map_or(alarms.len(), |i| i.start);
        for (i, alarm) in alarms.iter().enumerate().take(normal_end) {
            if scored[i] {
                let onset = *alarm && (i == 0 || !alarms[i - 1]);
                result.normal_rows += 1;
                result.false_alarms += u64::from(onset);
                // Accumulated as a count here, turned into a rate below.
                result.flagged_normal_per_1000 += f64::from(u8::from(*alarm));
            }
        }
        // Accumulated as a count here, turned into a fraction below.
        result.flagged_fraction += alarms.iter().filter(|a| **a).count() as f64;
        if let Some(injected) = series.injected {
            let len = injected.end - injected.start;
            let last = (injected.start + max_delay(injected.kind, len)).min(alarms.len() - 1);
            let delay = (injected.start..=last)
                .find(|&i| alarms[i])
                .map(|i| i - injected.start);
            result.delays.insert(injected.kind.name(), delay);
            if injected.kind == AnomalyKind::LevelShift {
                result.level_shift_alarmed_rows =
                    alarm_cleared(&alarms[injected.start..injected.end]);
            }
        }
    }
    for result in &mut by_shape {
        let series = 1 + result.delays.len();
        result.flagged_fraction /= (series * rows.max(2_000)) as f64;
        let per_1000 = 1_000.0 / result.normal_rows.max(1) as f64;
        result.false_alarms_per_1000 = result.false_alarms as f64 * per_1000;
        result.flagged_normal_per_1000 *= per_1000;
    }
    Ok(ShapesReport {
        rows: rows.max(2_000),
        seed,
        threshold,
        nominal_per_1000: 1_000.0 * (1.0 - threshold),
        shapes: by_shape,
    })
}

/// Rows until the first alarm in `alarms` has cleared: the start of the
/// first run of [`QUIET_ROWS`] unflagged rows after it.
fn alarm_cleared(alarms: &[bool]) -> Option<usize> {
    let first = alarms.iter().position(|a| *a)?;
    let mut quiet = 0;
    for (i, a) in alarms.iter().enumerate().skip(first) {
        quiet = if *a { 0 } else { quiet + 1 };
        if quiet == QUIET_ROWS {
            return Some(i + 1 - QUIET_ROWS);
        }
    }
    None
}

/// Per row: alarmed, and scored after the warm-up.
fn score(
    series: &ShapeSeries,
    params: fieldpulse_models::anomaly::DetectorValidParams,
) -> anyhow::Result<(Vec<bool>, Vec<bool>)> {
    let threshold = params.threshold();
    let mut scorer = FleetScorer::new(params, vec!["value".to_string()], 1)
        .context("setting up the detectors")?;
    let mut alarms = Vec::with_capacity(series.values.len());
    let mut scored = Vec::with_capacity(series.values.len());
    for (&ts, &value) in series.ts_ms.iter().zip(&series.values) {
        let r = scorer.score_row(0, ts, &[value]);
        alarms.push(r.is_anomaly(threshold));
        scored.push(!r.in_warmup);
    }
    Ok((alarms, scored))
}

/// Writes the corpus as one CSV per series.
fn write_corpus(dir: &std::path::Path, rows: usize, seed: u64) -> anyhow::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for series in corpus(rows, seed) {
        let kind = series.injected.map_or("clean", |i| i.kind.name());
        let path = dir.join(format!("{}__{kind}.csv", series.shape.name()));
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let mut write = || -> std::io::Result<()> {
            writeln!(out, "ts,value,label")?;
            for ((ts, v), l) in series.ts_ms.iter().zip(&series.values).zip(&series.labels) {
                writeln!(out, "{ts},{v},{}", u8::from(*l))?;
            }
            out.flush()
        };
        write().with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Runs `fieldpulse eval shapes`.
pub fn run(args: ShapesArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.write_corpus {
        write_corpus(dir, args.rows, args.seed)?;
    }
    let report = evaluate_with(args.rows, args.seed, args.seasonal)?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "shape corpus: {} rows per series, seed {}, threshold {} (nominal {:.2} false alarms per 1,000 rows); delays in rows, '-' = missed",
        report.rows, report.seed, report.threshold, report.nominal_per_1000
    );
    let kinds: Vec<&str> = AnomalyKind::ALL.iter().map(|k| k.name()).collect();
    print!(
        "{:<16} {:>9} {:>12} {:>9}",
        "shape", "FA/1000", "flagged/1000", "flagged"
    );
    for kind in &kinds {
        print!(" {kind:>15}");
    }
    println!(" {:>15}", "shift_alarmed");
    for r in &report.shapes {
        print!(
            "{:<16} {:>9.2} {:>12.2} {:>8.2}%",
            r.shape,
            r.false_alarms_per_1000,
            r.flagged_normal_per_1000,
            100.0 * r.flagged_fraction
        );
        for kind in &kinds {
            let cell = match r.delays.get(kind) {
                None => String::new(),
                Some(None) => "-".to_string(),
                Some(Some(d)) => d.to_string(),
            };
            print!(" {cell:>15}");
        }
        let alarmed = r
            .level_shift_alarmed_rows
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        println!(" {alarmed:>15}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_is_reported_with_consistent_counts() {
        let report = evaluate(2_000, 1).unwrap();
        assert_eq!(
            report.shapes.len(),
            fieldpulse_simulator::shapes::Shape::ALL.len()
        );
        for r in &report.shapes {
            assert!(
                r.normal_rows > 0 && r.false_alarms <= r.normal_rows,
                "{r:?}"
            );
            assert!((0.0..=1.0).contains(&r.flagged_fraction), "{r:?}");
            // Every kind that applies was injected once.
            assert!(r.delays.len() >= 5, "{r:?}");
        }
    }

    /// The bounds docs/anomaly.md states for the shape corpus (20,000 rows,
    /// seeds 13 and 3), at the default threshold (nominal 0.1 per 1,000).
    #[test]
    fn the_shape_corpus_meets_the_stated_bounds() {
        // Alarm onsets per 1,000 clean rows: within 2x nominal (0.1) on
        // every shape but two (issue #13 asks for all, per sensor type):
        // heavy-tailed noise (0.15 and 0.21 on these seeds, from 0.37 and
        // 0.44) and bursty counters, whose first bursts after the warm-up
        // alarm before the tail model has seen enough of them (0.49 and
        // 0.46, unchanged). Bounded here against regressions.
        // A disk idle between writes of 10^4-10^8 bytes (session 14): the
        // largest writes after a stretch of small ones still reach the
        // threshold (0.14 and 4.79 on these seeds); without the spread
        // floor it raised 0.16 and 18.2, and flagged 0.19 and 279 clean
        // rows per 1,000 (the storm NAB's disk-write files showed).
        let onsets = |shape: &str| match shape {
            "poisson_bursts" => 0.5,
            "heavy_tailed" => 0.25,
            "idle_bursts" => 5.0,
            _ => 0.2,
        };
        // Flagged clean rows per 1,000: a random walk's wander holds alarms
        // for a while once raised.
        let flagged = |shape: &str| match shape {
            "random_walk" => 12.0,
            "poisson_bursts" => 4.0,
            "idle_bursts" => 10.0,
            _ => 1.5,
        };
        for seed in [13, 3] {
            let report = evaluate(20_000, seed).unwrap();
            for r in &report.shapes {
                let shape = r.shape;
                assert!(
                    r.false_alarms_per_1000 <= onsets(shape),
                    "seed {seed} {shape}: {} alarm onsets per 1,000 clean rows",
                    r.false_alarms_per_1000
                );
                assert!(
                    r.flagged_normal_per_1000 <= flagged(shape),
                    "seed {seed} {shape}: {} flagged clean rows per 1,000",
                    r.flagged_normal_per_1000
                );
                let detected = |kind: &str| r.delays.get(kind).copied().flatten();
                // Where the kind is visible against the shape's normal tail
                // (on a disk idle between writes, a spike of 8 typical
                // writes, a variance change and a level shift of 4 are
                // within what its largest writes do).
                if !matches!(shape, "poisson_bursts" | "heavy_tailed" | "idle_bursts") {
                    assert!(
                        detected("variance_change").is_some(),
                        "seed {seed} {shape}: {r:?}"
                    );
                    if shape != "square_wave" {
                        assert_eq!(detected("spike"), Some(0), "seed {seed} {shape}: {r:?}");
                    }
                }
                if !matches!(shape, "poisson_bursts" | "idle_bursts") {
                    assert!(
                        detected("level_shift").is_some(),
                        "seed {seed} {shape}: {r:?}"
                    );
                    // A persistent new level is accepted: the alarm clears
                    // within the re-learning horizon (720 alarming rows).
                    assert!(
                        r.level_shift_alarmed_rows.is_some_and(|n| n <= 800),
                        "seed {seed} {shape}: {r:?}"
                    );
                }
                // A drift is seen before it has ramped to 3 spreads: on flat
                // quantised signals by the drift statistic, on noisy,
                // bursty, gappy, sawtooth and slow-ramp ones by the slow
                // trend (of the median or of the mean). Not yet on square
                // waves, random walks (whose own wander is as large) and
                // seasonal series (found on seed 13, not on 3: the daily
                // cycle moves the median and the mean as much).
                if !matches!(shape, "square_wave" | "random_walk" | "seasonal") {
                    assert!(detected("drift").is_some(), "seed {seed} {shape}: {r:?}");
                }
                // A broken period (the cycle stops, the signal holds its
                // mean) on sawtooths and square waves: the slow trend of
                // the median sees a sawtooth's median leave the cycle's;
                // on square waves (whose median sits on one level, so the
                // break reads as a step it catches up with) the trend of
                // the mean finds it, within 242-304 rows on seeds 13, 3, 1
                // and 21.
                if matches!(shape, "sawtooth" | "square_wave") {
                    assert!(
                        detected("broken_period").is_some(),
                        "seed {seed} {shape}: {r:?}"
                    );
                }
                // A stuck value is seen on every shape within 480 rows but
                // a disk idle between writes: held at 0 on these seeds, it
                // reads as a long idle stretch, and the stuck run alarms
                // at four times the longest one seen.
                if shape != "idle_bursts" {
                    assert!(detected("stuck_at").is_some(), "seed {seed} {shape}: {r:?}");
                }
            }
        }
    }
}
