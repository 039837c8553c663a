//! `fieldpulse eval shapes`: the anomaly detector on the shape corpus
//! (`fieldpulse_simulator::shapes`): per shape, false alarms per 1,000 normal
//! rows (an alarm is an onset: a flagged row after an unflagged one), apart
//! for the rows while the detectors settle and after, flagged normal rows
//! per 1,000, the fraction of all rows flagged, and for each injected anomaly
//! kind whether an alarm came within the stated delay.
//!
//! Every series is scored alone, univariate (the most common export), with the
//! default detector parameters, flagged as `fieldpulse detect` flags a row.
//! Normal rows are the rows of the shape's clean series after the warm-up:
//! a series with an injected anomaly is the clean series itself up to the
//! anomaly's start (the same seed), so its rows there are the same rows,
//! scored the same, and counting them again would weigh a series' first
//! thousands of rows several times over its last. An anomaly counts as detected when an alarm falls
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
use fieldpulse_models::anomaly::{DetectorValidParams, FleetScorer, Seasonality};
use fieldpulse_simulator::shapes::{corpus, AnomalyKind, ShapeSeries, DRIFT_SPREADS};
use serde::Serialize;

use crate::anomaly_runs::{
    alarms, default_params, parse_seasonality, print_json, surprise_of_score,
};

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
    /// Seed of the corpus; several, comma-separated, also print the
    /// shapes' rates over all of them together (one seed's clean series
    /// holds about 2 onsets at the nominal rate: too few to tell 2x from
    /// chance).
    #[arg(long, default_value = "13", value_delimiter = ',', num_args = 1..)]
    pub seed: Vec<u64>,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write every series as `DIR/<shape>__<kind>.csv` (`ts,value,label`),
    /// to score the same corpus with `fieldpulse detect --time-col ts
    /// --label-col label` or another tool (`DIR/seed-<S>/...` for each of
    /// several seeds).
    #[arg(long, value_name = "DIR")]
    pub write_corpus: Option<std::path::PathBuf>,
    /// Seasonal profile the detector learns: off, daily or weekly (as
    /// `fieldpulse detect`; a weekly one is applied only after three weeks,
    /// so the default 20,000 rows, about 14 days, score as with it off).
    #[arg(long, default_value = "weekly", value_parser = parse_seasonality)]
    pub seasonal: Seasonality,
}

/// Alarm onsets on a stretch of normal rows.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct OnsetRate {
    /// Normal rows scored (after the warm-up).
    pub rows: u64,
    /// Alarm onsets among them (a flagged row after an unflagged one).
    pub onsets: u64,
    /// `onsets` per 1,000 `rows`.
    pub per_1000: f64,
}

impl OnsetRate {
    fn count(&mut self, onset: bool) {
        self.rows += 1;
        self.onsets += u64::from(onset);
    }

    fn finish(&mut self) {
        self.per_1000 = 1_000.0 * self.onsets as f64 / self.rows.max(1) as f64;
    }

    /// The rate of `rates` together (several seeds' runs of one shape).
    pub fn pooled<'a>(rates: impl IntoIterator<Item = &'a OnsetRate>) -> OnsetRate {
        let mut sum = OnsetRate::default();
        for r in rates {
            sum.rows += r.rows;
            sum.onsets += r.onsets;
        }
        sum.finish();
        sum
    }
}

/// Results for one shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShapeResult {
    /// The shape's name.
    pub shape: &'static str,
    /// Normal rows scored after the warm-up: the clean series' rows (the
    /// other series share them up to their anomaly).
    pub normal_rows: u64,
    /// Alarm onsets on those rows (a flagged normal row after an unflagged row).
    pub false_alarms: u64,
    /// `false_alarms` per 1,000 normal rows.
    pub false_alarms_per_1000: f64,
    /// The onsets while the detectors settle: rows up to
    /// `DetectorValidParams::settle_readings` (2,080 by default), while the slow
    /// trend settles and the calibration learns the sensor's tail from its
    /// first bursts.
    pub settling: OnsetRate,
    /// The onsets after that: the detector's steady state.
    pub steady: OnsetRate,
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
    /// Readings after which a sensor's detectors have settled: onsets before
    /// count as `settling`, after as `steady`.
    pub settle_readings: f64,
    /// Per shape, in corpus order.
    pub shapes: Vec<ShapeResult>,
}

/// One shape's results over several seeds together.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PooledShape {
    /// The shape's name.
    pub shape: &'static str,
    /// Onsets on every seed's normal rows.
    pub whole: OnsetRate,
    /// Onsets while the detectors settle.
    pub settling: OnsetRate,
    /// Onsets once settled.
    pub steady: OnsetRate,
    /// Flagged normal rows per 1,000 normal rows.
    pub flagged_normal_per_1000: f64,
    /// Per injected kind: on how many seeds it was detected within its delay.
    pub detected: BTreeMap<&'static str, usize>,
}

/// `fieldpulse eval shapes` over several seeds.
#[derive(Debug, Clone, Serialize)]
pub struct SeedsReport {
    /// Each seed's report, in the order given.
    pub seeds: Vec<ShapesReport>,
    /// Per shape, the seeds together.
    pub pooled: Vec<PooledShape>,
}

/// Per shape, the rates of `reports` (runs of the same corpus size with
/// different seeds) together.
pub fn pool(reports: &[ShapesReport]) -> Vec<PooledShape> {
    let Some(first) = reports.first() else {
        return Vec::new();
    };
    (0..first.shapes.len())
        .map(|i| {
            let shapes: Vec<&ShapeResult> = reports.iter().map(|r| &r.shapes[i]).collect();
            let settling = OnsetRate::pooled(shapes.iter().map(|r| &r.settling));
            let steady = OnsetRate::pooled(shapes.iter().map(|r| &r.steady));
            let whole = OnsetRate::pooled([&settling, &steady]);
            let flagged: f64 = shapes
                .iter()
                .map(|r| r.flagged_normal_per_1000 * r.normal_rows as f64)
                .sum();
            let mut detected = BTreeMap::new();
            for r in &shapes {
                for (kind, delay) in &r.delays {
                    *detected.entry(*kind).or_insert(0) += usize::from(delay.is_some());
                }
            }
            PooledShape {
                shape: first.shapes[i].shape,
                whole,
                settling,
                steady,
                flagged_normal_per_1000: flagged / whole.rows.max(1) as f64,
                detected,
            }
        })
        .collect()
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
    let settle = params.settle_readings();
    let mut by_shape: Vec<ShapeResult> = Vec::new();
    for series in corpus(rows, seed) {
        let (alarms, scored) = score(&series, &params)?;
        let name = series.shape.name();
        if by_shape.last().is_none_or(|r| r.shape != name) {
            by_shape.push(ShapeResult {
                shape: name,
                normal_rows: 0,
                false_alarms: 0,
                false_alarms_per_1000: 0.0,
                settling: OnsetRate::default(),
                steady: OnsetRate::default(),
                flagged_normal_per_1000: 0.0,
                flagged_fraction: 0.0,
                delays: BTreeMap::new(),
                level_shift_alarmed_rows: None,
            });
        }
        let result = by_shape.last_mut().expect("pushed above");
        if series.injected.is_none() {
            for (i, alarm) in alarms.iter().enumerate() {
                if scored[i] {
                    let onset = *alarm && (i == 0 || !alarms[i - 1]);
                    // Row `i` is the sensor's reading `i + 1`.
                    if (i + 1) as f64 <= settle {
                        result.settling.count(onset);
                    } else {
                        result.steady.count(onset);
                    }
                    // Accumulated as a count here, turned into a rate below.
                    result.flagged_normal_per_1000 += f64::from(u8::from(*alarm));
                }
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
        result.settling.finish();
        result.steady.finish();
        let whole = OnsetRate::pooled([&result.settling, &result.steady]);
        result.normal_rows = whole.rows;
        result.false_alarms = whole.onsets;
        result.false_alarms_per_1000 = whole.per_1000;
        result.flagged_normal_per_1000 *= 1_000.0 / whole.rows.max(1) as f64;
    }
    Ok(ShapesReport {
        rows: rows.max(2_000),
        seed,
        threshold,
        nominal_per_1000: 1_000.0 * (1.0 - threshold),
        settle_readings: settle,
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

/// Per row: alarmed (as `fieldpulse detect` flags a row at the default
/// threshold), and scored after the warm-up.
fn score(
    series: &ShapeSeries,
    params: &DetectorValidParams,
) -> anyhow::Result<(Vec<bool>, Vec<bool>)> {
    let min_surprise = surprise_of_score(params.threshold());
    let mut scorer = FleetScorer::new(params.clone(), vec!["value".to_string()], 1)
        .context("setting up the detectors")?;
    let mut flags = Vec::with_capacity(series.values.len());
    let mut scored = Vec::with_capacity(series.values.len());
    for (&ts, &value) in series.ts_ms.iter().zip(&series.values) {
        let r = scorer.score_row(0, ts, &[value]);
        flags.push(alarms(&r, min_surprise));
        scored.push(!r.in_warmup);
    }
    Ok((flags, scored))
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
    let several = args.seed.len() > 1;
    let mut reports = Vec::with_capacity(args.seed.len());
    for &seed in &args.seed {
        if let Some(dir) = &args.write_corpus {
            let dir = if several {
                dir.join(format!("seed-{seed}"))
            } else {
                dir.clone()
            };
            write_corpus(&dir, args.rows, seed)?;
        }
        reports.push(evaluate_with(args.rows, seed, args.seasonal)?);
    }
    if args.json {
        return match reports.as_slice() {
            [one] => print_json(one),
            _ => print_json(&SeedsReport {
                pooled: pool(&reports),
                seeds: reports,
            }),
        };
    }
    for report in &reports {
        print_report(report);
    }
    if several {
        print_pooled(&reports);
    }
    Ok(())
}

/// Prints one seed's table.
fn print_report(report: &ShapesReport) {
    println!(
        "shape corpus: {} rows per series, seed {}, threshold {} (nominal {:.2} false alarms per 1,000 rows); delays in rows, '-' = missed",
        report.rows, report.seed, report.threshold, report.nominal_per_1000
    );
    println!(
        "false alarms (FA) on the clean series' rows after the warm-up; settling: its first {:.0} readings, steady: after",
        report.settle_readings
    );
    let kinds: Vec<&str> = AnomalyKind::ALL.iter().map(|k| k.name()).collect();
    print!(
        "{:<16} {:>9} {:>9} {:>9} {:>12} {:>9}",
        "shape", "FA/1000", "settling", "steady", "flagged/1000", "flagged"
    );
    for kind in &kinds {
        print!(" {kind:>15}");
    }
    println!(" {:>15}", "shift_alarmed");
    for r in &report.shapes {
        print!(
            "{:<16} {:>9.2} {:>9.2} {:>9.2} {:>12.2} {:>8.2}%",
            r.shape,
            r.false_alarms_per_1000,
            r.settling.per_1000,
            r.steady.per_1000,
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
}

/// Prints the seeds' rates together, and on how many seeds each kind was found.
fn print_pooled(reports: &[ShapesReport]) {
    let seeds: Vec<String> = reports.iter().map(|r| r.seed.to_string()).collect();
    println!(
        "seeds {} together: false alarms per 1,000 clean rows (onsets / rows), kinds found on how many seeds",
        seeds.join(", ")
    );
    let kinds: Vec<&str> = AnomalyKind::ALL.iter().map(|k| k.name()).collect();
    print!(
        "{:<16} {:>18} {:>16} {:>18} {:>12}",
        "shape", "FA/1000", "settling", "steady", "flagged/1000"
    );
    for kind in &kinds {
        print!(" {kind:>15}");
    }
    println!();
    let rate = |r: &OnsetRate| format!("{:.2} ({}/{})", r.per_1000, r.onsets, r.rows);
    for p in pool(reports) {
        print!(
            "{:<16} {:>18} {:>16} {:>18} {:>12.2}",
            p.shape,
            rate(&p.whole),
            rate(&p.settling),
            rate(&p.steady),
            p.flagged_normal_per_1000
        );
        for kind in &kinds {
            let cell = p
                .detected
                .get(kind)
                .map_or_else(String::new, |n| format!("{n}/{}", reports.len()));
            print!(" {cell:>15}");
        }
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_is_reported_with_consistent_counts() {
        let report = evaluate(3_000, 1).unwrap();
        // Each clean row once (the 128-reading warm-up is not scored),
        // split at the settling point (2,080 readings).
        assert_eq!(report.settle_readings, 2_080.0);
        assert_eq!(
            report.shapes.len(),
            fieldpulse_simulator::shapes::Shape::ALL.len()
        );
        for r in &report.shapes {
            assert!(
                r.normal_rows > 0 && r.false_alarms <= r.normal_rows,
                "{r:?}"
            );
            assert_eq!(r.normal_rows, 3_000 - 128, "{r:?}");
            assert_eq!((r.settling.rows, r.steady.rows), (2_080 - 128, 920));
            assert_eq!(r.false_alarms, r.settling.onsets + r.steady.onsets);
            assert!((0.0..=1.0).contains(&r.flagged_fraction), "{r:?}");
            // Every kind that applies was injected once.
            assert!(r.delays.len() >= 5, "{r:?}");
        }
    }

    #[test]
    fn seeds_pooled_sum_their_rows_onsets_and_detections() {
        let reports = [evaluate(3_000, 1).unwrap(), evaluate(3_000, 2).unwrap()];
        let pooled = pool(&reports);
        assert_eq!(pooled.len(), reports[0].shapes.len());
        for (i, p) in pooled.iter().enumerate() {
            let (a, b) = (&reports[0].shapes[i], &reports[1].shapes[i]);
            assert_eq!(p.shape, a.shape);
            assert_eq!(p.whole.rows, a.normal_rows + b.normal_rows);
            assert_eq!(p.whole.onsets, a.false_alarms + b.false_alarms);
            assert_eq!(p.steady.onsets, a.steady.onsets + b.steady.onsets);
            let per_1000 = 1_000.0 * p.whole.onsets as f64 / p.whole.rows as f64;
            assert!((p.whole.per_1000 - per_1000).abs() < 1e-12, "{p:?}");
            for (kind, found) in &p.detected {
                let on = |r: &ShapeResult| usize::from(r.delays[kind].is_some());
                assert_eq!(*found, on(a) + on(b), "{p:?}");
            }
        }
        assert!(pool(&[]).is_empty());
    }

    /// The bounds docs/anomaly.md states for the shape corpus (20,000 rows),
    /// at the default threshold (nominal 0.1 false alarms per 1,000 rows):
    /// false alarms over seeds 13, 3, 1 and 21 together (one seed's clean
    /// series holds about 2 onsets at nominal, too few to tell 2x from
    /// chance), detections on seeds 13 and 3.
    #[test]
    fn the_shape_corpus_meets_the_stated_bounds() {
        let reports: Vec<ShapesReport> = [13, 3, 1, 21]
            .into_iter()
            .map(|seed| evaluate(20_000, seed).unwrap())
            .collect();
        for pooled in pool(&reports) {
            let (shape, steady, settling) = (pooled.shape, pooled.steady, pooled.settling);
            // Once settled, within 2x nominal on every shape (issue #13):
            // at most 0.15 over the four seeds (square waves, heavy-tailed
            // noise, the idle disk).
            assert!(steady.per_1000 <= 0.2, "{shape}: {steady:?} once settled");
            // While settling (the first 2,080 readings), bursty signals
            // alarm at their first bursts, before the calibration has seen
            // any: bounded here against regressions (2.05 and 2.31 per
            // 1,000 over the four seeds; heavy-tailed noise 0.51, random
            // walks 0.26, every other shape 0).
            let settling_bound = match shape {
                "poisson_bursts" | "idle_bursts" => 3.0,
                _ => 1.0,
            };
            assert!(
                settling.per_1000 <= settling_bound,
                "{shape}: {settling:?} while settling"
            );
        }
        // Flagged clean rows per 1,000: a random walk's wander holds alarms
        // for a while once raised.
        let flagged = |shape: &str| match shape {
            "random_walk" => 12.0,
            "poisson_bursts" => 4.0,
            "idle_bursts" => 4.0,
            _ => 1.5,
        };
        for report in &reports[..2] {
            let seed = report.seed;
            for r in &report.shapes {
                let shape = r.shape;
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
