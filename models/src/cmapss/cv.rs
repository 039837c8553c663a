//! Choosing every C-MAPSS hyper-parameter, the RUL cap included, by
//! cross-validation grouped by engine on **truncated** training engines.
//!
//! The test set holds engines cut "some time prior to system failure" (NASA
//! readme), scored at their last cycle against the uncapped true RUL. The CV
//! mimics that on training engines only:
//!
//! 1. Engines are shuffled (seeded) and dealt into `n_folds` folds; an engine
//!    is never split across folds.
//! 2. Each engine gets `cuts_per_engine` cut points, drawn once (seeded, in
//!    file order, so a cut does not depend on the fold it lands in): the
//!    fraction of life seen is uniform in `seen_fraction`, the cycles seen
//!    `n = round(fraction × life)` kept within `1..life`, and the truth is
//!    the **uncapped** RUL at the cut, `life − n`.
//! 3. Per fold, the normaliser, sensor selection and booster are fitted on
//!    the other folds' full trajectories (target `min(RUL, cap)`), and each
//!    held-out cut is featurised as a truncated engine and predicted at its
//!    last cycle, clamped to `[0, cap]`, exactly as a test engine is.
//! 4. Every grid point is scored on the same cuts (a paired comparison);
//!    tree counts are checkpoints of one fit. The point with the lowest mean
//!    fold RMSE wins; ties go to the earlier point in grid order.
//!
//! [`cross_validate`] takes training engines and nothing else, so the test
//! files cannot influence the choice.

use std::time::Instant;

use serde::Serialize;

use super::conditions::ConditionNormalizer;
use super::features::WindowFeatures;
use super::protocol::{capped, clamp_rul, training_matrix, ProtocolError};
use super::Engine;
use crate::gbdt::GbdtParams;
use crate::metrics::phm08_score;
use crate::rng::SplitMix64;

/// One point of the searched grid: the RUL cap and the booster's
/// hyper-parameters that vary (the rest come from [`Grid::base`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridPoint {
    /// Training target cap in cycles; `null` (no cap) trains on the plain RUL.
    pub cap: Option<f64>,
    /// Maximum tree depth.
    pub max_depth: usize,
    /// Minimum rows per leaf.
    pub min_samples_leaf: usize,
    /// Shrinkage.
    pub learning_rate: f64,
    /// Number of trees.
    pub n_trees: usize,
}

impl GridPoint {
    /// `base` with this point's booster hyper-parameters.
    pub fn params(&self, base: &GbdtParams) -> GbdtParams {
        GbdtParams {
            max_depth: self.max_depth,
            min_samples_leaf: self.min_samples_leaf,
            learning_rate: self.learning_rate,
            n_trees: self.n_trees,
            ..base.clone()
        }
    }

    /// The cap as text: `125` or `none`.
    pub fn cap_label(&self) -> String {
        self.cap
            .map_or_else(|| "none".to_string(), |c| format!("{c}"))
    }
}

/// The grid searched: the Cartesian product of every list, in the order
/// cap, depth, leaf size, learning rate, trees.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// RUL caps (`None`: no cap).
    pub caps: Vec<Option<f64>>,
    /// Tree depths.
    pub max_depths: Vec<usize>,
    /// Minimum leaf sizes.
    pub min_samples_leaf: Vec<usize>,
    /// Learning rates.
    pub learning_rates: Vec<f64>,
    /// Tree counts; all are checkpoints of one fit with the largest.
    pub n_trees: Vec<usize>,
    /// Everything else (subsample 0.8, colsample 0.6, seed 42).
    pub base: GbdtParams,
}

impl Grid {
    /// The grid `fieldpulse eval cmapss` searches by default: caps 110, 120,
    /// 125, 130, 140, 150, 160 and none × depth 4, 6 × leaf 20, 80 ×
    /// learning rate 0.1 × 25, 50, 100, 200 trees (128 points, 32 fits per
    /// fold). A first run with caps up to 140 and at least 50 trees chose 140
    /// and 50 on most subsets, the edge of that grid, so the grid was widened.
    pub fn full() -> Self {
        Self {
            caps: vec![
                Some(110.0),
                Some(120.0),
                Some(125.0),
                Some(130.0),
                Some(140.0),
                Some(150.0),
                Some(160.0),
                None,
            ],
            max_depths: vec![4, 6],
            min_samples_leaf: vec![20, 80],
            learning_rates: vec![0.1],
            n_trees: vec![25, 50, 100, 200],
            base: Self::base_params(),
        }
    }

    /// A small grid for tests and quick looks: caps 125, 140 and none ×
    /// depth 6 × leaf 80 × learning rate 0.1 × 40, 80 trees.
    pub fn quick() -> Self {
        Self {
            caps: vec![Some(125.0), Some(140.0), None],
            max_depths: vec![6],
            min_samples_leaf: vec![80],
            learning_rates: vec![0.1],
            n_trees: vec![40, 80],
            base: Self::base_params(),
        }
    }

    /// Booster settings every grid point shares.
    pub fn base_params() -> GbdtParams {
        GbdtParams {
            subsample: 0.8,
            colsample: 0.6,
            seed: 42,
            ..GbdtParams::default()
        }
    }

    /// Every point, in grid order.
    pub fn points(&self) -> Vec<GridPoint> {
        let mut out = Vec::new();
        for &cap in &self.caps {
            for &max_depth in &self.max_depths {
                for &min_samples_leaf in &self.min_samples_leaf {
                    for &learning_rate in &self.learning_rates {
                        for &n_trees in &self.n_trees {
                            out.push(GridPoint {
                                cap,
                                max_depth,
                                min_samples_leaf,
                                learning_rate,
                                n_trees,
                            });
                        }
                    }
                }
            }
        }
        out
    }
}

/// How the cross-validation splits and truncates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CvConfig {
    /// Folds (engines per fold ≈ engines / folds).
    pub n_folds: usize,
    /// Cut points drawn per held-out engine.
    pub cuts_per_engine: usize,
    /// Range of the fraction of life seen at a cut, `[low, high)`.
    pub seen_fraction: [f64; 2],
    /// Seed of the fold assignment and the cuts.
    pub seed: u64,
}

impl Default for CvConfig {
    /// 5 folds, 4 cuts per engine, 20–95 % of life seen, seed 7.
    fn default() -> Self {
        Self {
            n_folds: 5,
            cuts_per_engine: 4,
            seen_fraction: [0.2, 0.95],
            seed: 7,
        }
    }
}

/// Cross-validated quality of one grid point.
#[derive(Debug, Clone, Serialize)]
pub struct CvPoint {
    /// The hyper-parameters.
    #[serde(flatten)]
    pub point: GridPoint,
    /// Mean over folds of the RMSE at the cuts against the uncapped RUL.
    pub rmse: f64,
    /// Standard deviation of the fold RMSEs (spread over folds).
    pub rmse_sd: f64,
    /// Mean PHM08 score per cut (the score is a sum; per cut it compares
    /// across subsets and fold sizes), pooled over folds.
    pub score_per_cut: f64,
    /// RMSE of each fold.
    pub fold_rmse: Vec<f64>,
}

/// Every grid point's cross-validated scores and the choice.
#[derive(Debug, Clone, Serialize)]
pub struct CvReport {
    /// The split and truncation settings.
    pub config: CvConfig,
    /// Training engines cross-validated.
    pub n_train_engines: usize,
    /// Held-out cuts scored per grid point (all folds).
    pub n_cuts: usize,
    /// Mean uncapped RUL at the cuts.
    pub mean_cut_rul: f64,
    /// Index into `points` of the chosen point.
    pub chosen_index: usize,
    /// Every point, in grid order.
    pub points: Vec<CvPoint>,
    /// Wall-clock seconds of the whole search (one thread).
    pub seconds: f64,
}

impl CvReport {
    /// The chosen point's scores.
    pub fn chosen(&self) -> &CvPoint {
        &self.points[self.chosen_index]
    }
}

/// A held-out engine cut: which engine and how many cycles were seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Index into the training engines.
    pub engine: usize,
    /// Cycles seen (the truncated trajectory's length), in `1..life`.
    pub cycles_seen: usize,
}

impl Cut {
    /// The uncapped true RUL at the cut's last cycle.
    pub fn true_rul(&self, life: usize) -> f64 {
        (life - self.cycles_seen) as f64
    }
}

/// Folds (engine indexes per fold) and cuts (per engine, in engine order)
/// for `n_engines` engines of the given lives, from `config.seed`.
pub fn folds_and_cuts(lives: &[usize], config: &CvConfig) -> (Vec<Vec<usize>>, Vec<Vec<Cut>>) {
    let n_folds = config.n_folds.max(1);
    let mut order: Vec<usize> = (0..lives.len()).collect();
    SplitMix64::new(config.seed).shuffle(&mut order);
    let mut folds = vec![Vec::new(); n_folds];
    for (pos, &engine) in order.iter().enumerate() {
        folds[pos % n_folds].push(engine);
    }
    // A second stream, so changing the folds does not move the cuts.
    let mut rng = SplitMix64::new(config.seed ^ 0x5EED_C075_0000_0001);
    let [low, high] = config.seen_fraction;
    let cuts = lives
        .iter()
        .enumerate()
        .map(|(engine, &life)| {
            (0..config.cuts_per_engine)
                .map(|_| {
                    let fraction = low + (high - low) * rng.next_f64();
                    let seen = (fraction * life as f64).round() as usize;
                    Cut {
                        engine,
                        cycles_seen: seen.clamp(1, life.saturating_sub(1).max(1)),
                    }
                })
                .collect()
        })
        .collect();
    (folds, cuts)
}

/// One fold's matrices: training rows (full held-in trajectories) and one
/// row per held-out cut.
struct FoldData {
    n_features: usize,
    x: Vec<f64>,
    rul: Vec<f64>,
    x_cut: Vec<f64>,
    rul_cut: Vec<f64>,
}

/// Scores every point of `grid` by cross-validation grouped by engine on
/// truncated held-out engines (see the module doc) and picks the one with
/// the lowest mean fold RMSE.
///
/// # Errors
/// [`ProtocolError::InvalidSetup`] for an empty grid, fewer than two folds,
/// fewer engines than folds, no cut per engine or a bad `seen_fraction`;
/// booster errors for invalid hyper-parameters.
pub fn cross_validate(
    train: &[Engine],
    grid: &Grid,
    config: &CvConfig,
) -> Result<CvReport, ProtocolError> {
    let started = Instant::now();
    validate(train, grid, config)?;
    let lives: Vec<usize> = train.iter().map(Engine::len).collect();
    let (folds, cuts) = folds_and_cuts(&lives, config);
    let mut fold_data = Vec::with_capacity(folds.len());
    for held in &folds {
        let kept: Vec<Engine> = (0..train.len())
            .filter(|i| !held.contains(i))
            .map(|i| train[i].clone())
            .collect();
        let norm = ConditionNormalizer::fit(&kept);
        let spec = WindowFeatures::fit(&kept, &norm)?;
        let (x, rul) = training_matrix(&kept, &norm, &spec)?;
        let nf = spec.n_features();
        let mut x_cut = Vec::new();
        let mut rul_cut = Vec::new();
        for &engine in held {
            for cut in &cuts[engine] {
                let seen = train[engine].truncated(cut.cycles_seen);
                let features = spec.engine_features(&seen, &norm)?;
                x_cut.extend_from_slice(&features[features.len() - nf..]);
                rul_cut.push(cut.true_rul(lives[engine]));
            }
        }
        fold_data.push(FoldData {
            n_features: nf,
            x,
            rul,
            x_cut,
            rul_cut,
        });
    }
    let mut checkpoints: Vec<usize> = grid.n_trees.clone();
    checkpoints.sort_unstable();
    checkpoints.dedup();
    let max_trees = *checkpoints.last().expect("validated non-empty");
    let n_cuts: usize = fold_data.iter().map(|f| f.rul_cut.len()).sum();
    let mean_cut_rul =
        fold_data.iter().flat_map(|f| f.rul_cut.iter()).sum::<f64>() / n_cuts.max(1) as f64;
    // Scores per (cap, depth, leaf, lr) and checkpoint, keyed for lookup.
    let mut scored: Vec<(GridPoint, Vec<f64>, f64)> = Vec::new();
    for &cap in &grid.caps {
        for &max_depth in &grid.max_depths {
            for &min_samples_leaf in &grid.min_samples_leaf {
                for &learning_rate in &grid.learning_rates {
                    let point = GridPoint {
                        cap,
                        max_depth,
                        min_samples_leaf,
                        learning_rate,
                        n_trees: max_trees,
                    };
                    let params = point.params(&grid.base);
                    // Per checkpoint: each fold's RMSE, and the pooled score sum.
                    let mut fold_rmse =
                        vec![Vec::with_capacity(fold_data.len()); checkpoints.len()];
                    let mut score_sum = vec![0.0; checkpoints.len()];
                    for fold in &fold_data {
                        let y = capped(&fold.rul, cap);
                        let model = params.fit(&fold.x, fold.n_features, &y, None)?;
                        let n = fold.rul_cut.len();
                        let mut preds = vec![Vec::with_capacity(n); checkpoints.len()];
                        for row in fold.x_cut.chunks_exact(fold.n_features) {
                            let mut raw = model.base_score;
                            let mut next = 0;
                            for (t, tree) in model.trees.iter().enumerate() {
                                raw += tree.predict_row(row);
                                while next < checkpoints.len() && checkpoints[next] == t + 1 {
                                    preds[next].push(clamp_rul(raw, cap));
                                    next += 1;
                                }
                            }
                        }
                        for (k, p) in preds.iter().enumerate() {
                            fold_rmse[k].push(crate::metrics::rmse(p, &fold.rul_cut));
                            score_sum[k] += phm08_score(p, &fold.rul_cut);
                        }
                    }
                    for (k, &n_trees) in checkpoints.iter().enumerate() {
                        scored.push((
                            GridPoint {
                                n_trees,
                                ..point.clone()
                            },
                            fold_rmse[k].clone(),
                            score_sum[k] / n_cuts.max(1) as f64,
                        ));
                    }
                }
            }
        }
    }
    let points: Vec<CvPoint> = grid
        .points()
        .into_iter()
        .map(|point| {
            let (_, fold_rmse, score_per_cut) = scored
                .iter()
                .find(|(p, _, _)| *p == point)
                .expect("every grid point was scored");
            let (rmse, rmse_sd) = mean_sd(fold_rmse);
            CvPoint {
                point,
                rmse,
                rmse_sd,
                score_per_cut: *score_per_cut,
                fold_rmse: fold_rmse.clone(),
            }
        })
        .collect();
    let chosen_index = points
        .iter()
        .enumerate()
        .min_by(|(ia, a), (ib, b)| a.rmse.total_cmp(&b.rmse).then(ia.cmp(ib)))
        .map(|(i, _)| i)
        .expect("validated non-empty");
    Ok(CvReport {
        config: config.clone(),
        n_train_engines: train.len(),
        n_cuts,
        mean_cut_rul,
        chosen_index,
        points,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn validate(train: &[Engine], grid: &Grid, config: &CvConfig) -> Result<(), ProtocolError> {
    let bad = |reason: String| Err(ProtocolError::InvalidSetup(reason));
    if grid.caps.is_empty()
        || grid.max_depths.is_empty()
        || grid.min_samples_leaf.is_empty()
        || grid.learning_rates.is_empty()
        || grid.n_trees.is_empty()
    {
        return bad("every grid dimension needs at least one value".into());
    }
    if let Some(cap) = grid
        .caps
        .iter()
        .flatten()
        .find(|c| !(c.is_finite() && **c > 0.0))
    {
        return bad(format!("cap {cap} must be a positive number of cycles"));
    }
    if grid.n_trees.contains(&0) {
        return bad("a tree count of 0".into());
    }
    if config.n_folds < 2 {
        return bad(format!("n_folds {} must be at least 2", config.n_folds));
    }
    if train.len() < config.n_folds {
        return bad(format!(
            "{} training engines for {} folds",
            train.len(),
            config.n_folds
        ));
    }
    if config.cuts_per_engine == 0 {
        return bad("cuts_per_engine must be at least 1".into());
    }
    let [low, high] = config.seen_fraction;
    if !(0.0 < low && low < high && high <= 1.0) {
        return bad(format!(
            "seen_fraction [{low}, {high}) must satisfy 0 < low < high <= 1"
        ));
    }
    if let Some(e) = train.iter().find(|e| e.len() < 2) {
        return bad(format!(
            "training unit {} has {} cycle(s); a cut needs at least 2",
            e.unit,
            e.len()
        ));
    }
    Ok(())
}

/// Mean and sample standard deviation (0 for one value).
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_stay_inside_each_life_and_never_reach_failure() {
        let lives = [2, 3, 128, 200, 362];
        let config = CvConfig {
            cuts_per_engine: 50,
            ..CvConfig::default()
        };
        let (folds, cuts) = folds_and_cuts(&lives, &config);
        assert_eq!(folds.len(), 5);
        for (engine, engine_cuts) in cuts.iter().enumerate() {
            assert_eq!(engine_cuts.len(), 50);
            let life = lives[engine];
            for cut in engine_cuts {
                assert_eq!(cut.engine, engine);
                assert!((1..life).contains(&cut.cycles_seen), "{cut:?} life {life}");
                assert!(cut.true_rul(life) >= 1.0);
            }
        }
        // 20–95 % of a 200-cycle life seen: the uncapped RUL spans 10..=160.
        let ruls: Vec<f64> = cuts[3].iter().map(|c| c.true_rul(200)).collect();
        assert!(ruls.iter().all(|r| (10.0..=160.0).contains(r)), "{ruls:?}");
        assert!(ruls.iter().any(|&r| r > 125.0), "{ruls:?}");
    }

    #[test]
    fn folds_partition_the_engines_and_the_seed_decides_folds_and_cuts() {
        let lives: Vec<usize> = (0..23).map(|i| 130 + 7 * i).collect();
        let config = CvConfig::default();
        let (folds, cuts) = folds_and_cuts(&lives, &config);
        let mut all: Vec<usize> = folds.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..23).collect::<Vec<_>>());
        assert!(folds.iter().all(|f| (4..=5).contains(&f.len())));
        assert_eq!(
            folds_and_cuts(&lives, &config),
            (folds.clone(), cuts.clone())
        );
        let other = CvConfig {
            seed: 8,
            ..config.clone()
        };
        let (other_folds, other_cuts) = folds_and_cuts(&lives, &other);
        assert_ne!(other_folds, folds);
        assert_ne!(other_cuts, cuts);
        // Cuts belong to engines, not folds: more folds, same cuts.
        let more_folds = CvConfig {
            n_folds: 7,
            ..config
        };
        assert_eq!(folds_and_cuts(&lives, &more_folds).1, cuts);
    }

    #[test]
    fn the_grid_lists_every_combination_with_the_cap_outermost() {
        let grid = Grid::full();
        let points = grid.points();
        assert_eq!(points.len(), 8 * 2 * 2 * 4);
        assert_eq!(points[0].cap, Some(110.0));
        assert_eq!(points.last().map(|p| p.cap), Some(None));
        assert_eq!(
            points.last().map(GridPoint::cap_label).as_deref(),
            Some("none")
        );
        assert_eq!(Grid::quick().points().len(), 3 * 2);
    }

    #[test]
    fn an_unsearchable_setup_is_refused_before_any_fit() {
        let engine = Engine {
            unit: 1,
            settings: vec![[0.0, 0.0, 100.0]; 5],
            sensors: vec![[1.0; super::super::N_SENSORS]; 5],
        };
        let train = vec![engine; 4];
        let config = CvConfig::default();
        let err = cross_validate(&train, &Grid::quick(), &config).unwrap_err();
        assert!(
            err.to_string().contains("4 training engines for 5 folds"),
            "{err}"
        );
        let empty = Grid {
            caps: Vec::new(),
            ..Grid::quick()
        };
        let err = cross_validate(
            &train,
            &empty,
            &CvConfig {
                n_folds: 2,
                ..config
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("at least one value"), "{err}");
    }
}
