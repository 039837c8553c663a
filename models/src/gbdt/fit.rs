//! Fitting the histogram booster (feature `train`).
//!
//! Per tree: gradients and hessians of the loss at the current predictions,
//! an optional row subsample and feature subsample, then depth-wise growth.
//! Each node's histogram holds (sum g, sum h, count) per bin for every sampled
//! feature; only the smaller child's histogram is built from rows, the larger
//! one is the parent's minus it. Split gain is the usual second-order gain
//! `GL²/(HL+λ) + GR²/(HR+λ) − G²/(H+λ)`. Every node records its cover (the
//! summed sample weight of the tree's rows that reached it) for TreeSHAP.

use thiserror::Error;

use super::{Gbdt, Node, Objective, Tree, LEAF};
use crate::rng::SplitMix64;

/// Hyper-parameters of the booster, unchecked (see [`GbdtParams::check`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GbdtParams {
    /// Loss to minimise.
    pub objective: Objective,
    /// Number of boosting rounds.
    pub n_trees: usize,
    /// Shrinkage applied to every leaf, in `(0, 1]`.
    pub learning_rate: f64,
    /// Maximum depth of a tree (root = depth 0), 1..=16.
    pub max_depth: usize,
    /// Minimum rows in a leaf.
    pub min_samples_leaf: usize,
    /// Minimum hessian sum in a leaf (matters for the logistic loss).
    pub min_hessian_leaf: f64,
    /// L2 regularisation of leaf values.
    pub l2: f64,
    /// Fraction of rows used per tree, in `(0, 1]`.
    pub subsample: f64,
    /// Fraction of features used per tree, in `(0, 1]`.
    pub colsample: f64,
    /// Bins per feature (at most 255, at least 2).
    pub max_bins: usize,
    /// Seed of the subsampling generator.
    pub seed: u64,
}

impl Default for GbdtParams {
    fn default() -> Self {
        Self {
            objective: Objective::SquaredError,
            n_trees: 200,
            learning_rate: 0.05,
            max_depth: 5,
            min_samples_leaf: 20,
            min_hessian_leaf: 1e-3,
            l2: 1.0,
            subsample: 0.8,
            colsample: 0.8,
            max_bins: 255,
            seed: 42,
        }
    }
}

/// Parameters that passed [`GbdtParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct GbdtValidParams(GbdtParams);

/// Why fitting could not start.
#[derive(Debug, Error, PartialEq)]
pub enum GbdtError {
    /// A hyper-parameter is outside its range.
    #[error("invalid booster parameter `{name}`: {reason}")]
    InvalidParam {
        /// Parameter name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The training matrix does not match the targets or is empty.
    #[error("bad training data: {0}")]
    BadData(String),
}

impl GbdtParams {
    /// Validates every parameter.
    ///
    /// # Errors
    /// [`GbdtError::InvalidParam`] naming the first bad parameter.
    pub fn check(&self) -> Result<GbdtValidParams, GbdtError> {
        let bad = |name: &'static str, reason: &str| {
            Err(GbdtError::InvalidParam {
                name,
                reason: reason.to_string(),
            })
        };
        if self.n_trees == 0 {
            return bad("n_trees", "must be at least 1");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad("learning_rate", "must be in (0, 1]");
        }
        if !(1..=16).contains(&self.max_depth) {
            return bad("max_depth", "must be in 1..=16");
        }
        if self.min_samples_leaf == 0 {
            return bad("min_samples_leaf", "must be at least 1");
        }
        if !(self.min_hessian_leaf >= 0.0 && self.min_hessian_leaf.is_finite()) {
            return bad("min_hessian_leaf", "must be finite and >= 0");
        }
        if !(self.l2 >= 0.0 && self.l2.is_finite()) {
            return bad("l2", "must be finite and >= 0");
        }
        if !(self.subsample > 0.0 && self.subsample <= 1.0) {
            return bad("subsample", "must be in (0, 1]");
        }
        if !(self.colsample > 0.0 && self.colsample <= 1.0) {
            return bad("colsample", "must be in (0, 1]");
        }
        if !(2..=255).contains(&self.max_bins) {
            return bad("max_bins", "must be in 2..=255");
        }
        Ok(GbdtValidParams(self.clone()))
    }

    /// Checks the parameters and fits (see [`GbdtValidParams::fit`]).
    ///
    /// # Errors
    /// Invalid parameters or data.
    pub fn fit(
        &self,
        x: &[f64],
        n_features: usize,
        y: &[f64],
        weights: Option<&[f64]>,
    ) -> Result<Gbdt, GbdtError> {
        self.check()?.fit(x, n_features, y, weights, &mut |_, _| {})
    }
}

impl GbdtValidParams {
    /// The validated parameters.
    pub fn params(&self) -> &GbdtParams {
        &self.0
    }

    /// Fits on a row-major matrix `x` (`y.len()` rows × `n_features`), with
    /// optional non-negative sample weights. `on_tree(done, total)` is called
    /// after every tree (for progress bars).
    ///
    /// # Errors
    /// [`GbdtError::BadData`] when shapes disagree, targets are not finite,
    /// logistic targets are not 0/1, or weights are negative.
    pub fn fit(
        &self,
        x: &[f64],
        n_features: usize,
        y: &[f64],
        weights: Option<&[f64]>,
        on_tree: &mut dyn FnMut(usize, usize),
    ) -> Result<Gbdt, GbdtError> {
        let p = &self.0;
        let n_rows = y.len();
        validate_data(p.objective, x, n_features, y, weights)?;
        let binned = BinnedMatrix::new(x, n_features, n_rows, p.max_bins);
        let weight = |r: usize| weights.map_or(1.0, |w| w[r]);
        let total_w: f64 = (0..n_rows).map(weight).sum();
        if total_w <= 0.0 {
            return Err(GbdtError::BadData("all sample weights are zero".into()));
        }
        let base_score = match p.objective {
            Objective::SquaredError => (0..n_rows).map(|r| weight(r) * y[r]).sum::<f64>() / total_w,
            Objective::Logistic => {
                let pos = (0..n_rows).map(|r| weight(r) * y[r]).sum::<f64>() / total_w;
                let pos = pos.clamp(1e-6, 1.0 - 1e-6);
                (pos / (1.0 - pos)).ln()
            }
        };
        let mut raw = vec![base_score; n_rows];
        let mut grad = vec![0.0; n_rows];
        let mut hess = vec![0.0; n_rows];
        let mut rng = SplitMix64::new(p.seed);
        let mut trees = Vec::with_capacity(p.n_trees);
        let mut importance = vec![0.0; n_features];
        let n_cols = ((n_features as f64 * p.colsample).ceil() as usize).clamp(1, n_features);
        let mut all_features: Vec<usize> = (0..n_features).collect();
        let mut rows: Vec<u32> = Vec::with_capacity(n_rows);
        for tree_idx in 0..p.n_trees {
            for r in 0..n_rows {
                let w = weight(r);
                let (g, h) = match p.objective {
                    Objective::SquaredError => (raw[r] - y[r], 1.0),
                    Objective::Logistic => {
                        let prob = super::sigmoid(raw[r]);
                        (prob - y[r], (prob * (1.0 - prob)).max(1e-12))
                    }
                };
                grad[r] = g * w;
                hess[r] = h * w;
            }
            rows.clear();
            if p.subsample < 1.0 {
                rows.extend((0..n_rows as u32).filter(|_| rng.next_f64() < p.subsample));
                if rows.is_empty() {
                    rows.push(rng.below(n_rows) as u32);
                }
            } else {
                rows.extend(0..n_rows as u32);
            }
            rows.retain(|&r| weights.is_none_or(|w| w[r as usize] > 0.0));
            rng.shuffle(&mut all_features);
            let mut features: Vec<usize> = all_features[..n_cols].to_vec();
            features.sort_unstable();
            let mut grower = Grower {
                params: p,
                binned: &binned,
                grad: &grad,
                hess: &hess,
                features: &features,
                weights,
                nodes: Vec::new(),
                split_bins: Vec::new(),
                importance: &mut importance,
            };
            if !rows.is_empty() {
                grower.grow_root(&mut rows);
            } else {
                grower.nodes.push(leaf(0.0, 0.0));
                grower.split_bins.push(0);
            }
            let split_bins = std::mem::take(&mut grower.split_bins);
            let tree = Tree {
                nodes: std::mem::take(&mut grower.nodes),
            };
            for (r, value) in raw.iter_mut().enumerate() {
                *value += binned_predict(&tree, &split_bins, binned.row(r));
            }
            trees.push(tree);
            on_tree(tree_idx + 1, p.n_trees);
        }
        Ok(Gbdt {
            objective: p.objective,
            base_score,
            n_features,
            trees,
            gain_importance: importance,
            flat: super::FlatCache::default(),
        })
    }
}

fn validate_data(
    objective: Objective,
    x: &[f64],
    n_features: usize,
    y: &[f64],
    weights: Option<&[f64]>,
) -> Result<(), GbdtError> {
    let bad = |msg: String| Err(GbdtError::BadData(msg));
    if y.is_empty() || n_features == 0 {
        return bad("no rows or no features".into());
    }
    if x.len() != y.len() * n_features {
        return bad(format!(
            "matrix has {} values, expected {} rows x {} features",
            x.len(),
            y.len(),
            n_features
        ));
    }
    if let Some(pos) = y.iter().position(|v| !v.is_finite()) {
        return bad(format!("target of row {pos} is not finite"));
    }
    if objective == Objective::Logistic {
        if let Some(pos) = y.iter().position(|&v| v != 0.0 && v != 1.0) {
            return bad(format!("logistic target of row {pos} is not 0 or 1"));
        }
    }
    if let Some(w) = weights {
        if w.len() != y.len() {
            return bad(format!("{} weights for {} rows", w.len(), y.len()));
        }
        if let Some(pos) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return bad(format!("weight of row {pos} is negative or not finite"));
        }
    }
    Ok(())
}

fn leaf(value: f64, cover: f64) -> Node {
    Node {
        feature: LEAF,
        threshold: 0.0,
        left: 0,
        right: 0,
        value,
        cover: Some(cover),
    }
}

/// Feature values quantised to at most 255 bins, row-major. Bin 0 holds
/// `NaN`; bin `1 + k` holds values in `(cuts[k-1], cuts[k]]`.
struct BinnedMatrix {
    n_features: usize,
    bins: Vec<u8>,
    cuts: Vec<Vec<f64>>,
}

impl BinnedMatrix {
    fn new(x: &[f64], n_features: usize, n_rows: usize, max_bins: usize) -> Self {
        // Quantiles from at most this many rows per feature keep binning
        // cheap on big inputs without changing the cuts materially.
        const MAX_SAMPLE: usize = 200_000;
        let stride = n_rows.div_ceil(MAX_SAMPLE).max(1);
        let mut cuts = Vec::with_capacity(n_features);
        let mut values = Vec::with_capacity(n_rows / stride + 1);
        for f in 0..n_features {
            values.clear();
            values.extend(
                (0..n_rows)
                    .step_by(stride)
                    .map(|r| x[r * n_features + f])
                    .filter(|v| v.is_finite()),
            );
            values.sort_unstable_by(f64::total_cmp);
            cuts.push(quantile_cuts(&values, max_bins - 1));
        }
        let mut bins = vec![0u8; n_rows * n_features];
        for r in 0..n_rows {
            for f in 0..n_features {
                let v = x[r * n_features + f];
                bins[r * n_features + f] = if v.is_nan() {
                    0
                } else {
                    (1 + cuts[f].partition_point(|&c| c < v)) as u8
                };
            }
        }
        Self {
            n_features,
            bins,
            cuts,
        }
    }

    fn row(&self, r: usize) -> &[u8] {
        &self.bins[r * self.n_features..(r + 1) * self.n_features]
    }
}

/// At most `n_buckets - 1` cut points splitting sorted finite `values` into
/// roughly equal-count buckets; exact unique values when there are few.
fn quantile_cuts(sorted: &[f64], n_buckets: usize) -> Vec<f64> {
    let mut unique: Vec<f64> = sorted.to_vec();
    unique.dedup();
    if unique.len() <= n_buckets {
        unique.pop();
        return unique;
    }
    let n = sorted.len();
    let mut cuts: Vec<f64> = (1..n_buckets)
        .map(|k| sorted[(k * n / n_buckets).min(n - 1)])
        .collect();
    cuts.dedup();
    if cuts.last() == sorted.last() {
        cuts.pop();
    }
    cuts
}

#[derive(Debug, Clone, Copy, Default)]
struct BinStat {
    g: f64,
    h: f64,
    n: f64,
}

/// Histograms for the sampled features of one node: 256 bins per feature.
type Histogram = Vec<BinStat>;

struct Split {
    feature_pos: usize,
    bin: u8,
    gain: f64,
}

struct Grower<'a> {
    params: &'a GbdtParams,
    binned: &'a BinnedMatrix,
    grad: &'a [f64],
    hess: &'a [f64],
    features: &'a [usize],
    weights: Option<&'a [f64]>,
    nodes: Vec<Node>,
    split_bins: Vec<u8>,
    importance: &'a mut [f64],
}

impl Grower<'_> {
    fn grow_root(&mut self, rows: &mut [u32]) {
        let hist = self.build_histogram(rows);
        let (g, h) = rows.iter().fold((0.0, 0.0), |(g, h), &r| {
            (g + self.grad[r as usize], h + self.hess[r as usize])
        });
        self.grow(rows, hist, g, h, 0);
    }

    fn build_histogram(&self, rows: &[u32]) -> Histogram {
        let nf = self.binned.n_features;
        let mut hist = vec![BinStat::default(); self.features.len() * 256];
        for &r in rows {
            let r = r as usize;
            let (g, h) = (self.grad[r], self.hess[r]);
            let row = &self.binned.bins[r * nf..(r + 1) * nf];
            for (pos, &f) in self.features.iter().enumerate() {
                let cell = &mut hist[pos * 256 + row[f] as usize];
                cell.g += g;
                cell.h += h;
                cell.n += 1.0;
            }
        }
        hist
    }

    fn leaf_value(&self, g: f64, h: f64) -> f64 {
        -g / (h + self.params.l2) * self.params.learning_rate
    }

    fn grow(&mut self, rows: &mut [u32], hist: Histogram, g: f64, h: f64, depth: usize) -> u32 {
        let idx = self.nodes.len();
        let cover = match self.weights {
            Some(w) => rows.iter().map(|&r| w[r as usize]).sum(),
            None => rows.len() as f64,
        };
        self.nodes.push(leaf(self.leaf_value(g, h), cover));
        self.split_bins.push(0);
        let min_leaf = self.params.min_samples_leaf;
        if depth >= self.params.max_depth || rows.len() < 2 * min_leaf {
            return idx as u32;
        }
        let Some(split) = self.best_split(&hist, g, h) else {
            return idx as u32;
        };
        let feature = self.features[split.feature_pos];
        let nf = self.binned.n_features;
        // In-place partition: rows going left first.
        let mut n_left = 0;
        for i in 0..rows.len() {
            let r = rows[i] as usize;
            if self.binned.bins[r * nf + feature] <= split.bin {
                rows.swap(i, n_left);
                n_left += 1;
            }
        }
        let (left_rows, right_rows) = rows.split_at_mut(n_left);
        let mut parent = hist;
        let small_is_left = left_rows.len() <= right_rows.len();
        let small = self.build_histogram(if small_is_left { left_rows } else { right_rows });
        for (p, s) in parent.iter_mut().zip(&small) {
            p.g -= s.g;
            p.h -= s.h;
            p.n -= s.n;
        }
        let (left_hist, right_hist) = if small_is_left {
            (small, parent)
        } else {
            (parent, small)
        };
        let pos = split.feature_pos * 256;
        let (lg, lh) = left_hist[pos..pos + 256]
            .iter()
            .fold((0.0, 0.0), |(a, b), c| (a + c.g, b + c.h));
        self.importance[feature] += split.gain;
        let left = self.grow(left_rows, left_hist, lg, lh, depth + 1);
        let right = self.grow(right_rows, right_hist, g - lg, h - lh, depth + 1);
        let cuts = &self.binned.cuts[feature];
        // Bin 0 holds only NaN: "NaN left, every number right". `f64::MIN`
        // rather than −∞ keeps the model JSON-representable.
        let threshold = if split.bin == 0 {
            f64::MIN
        } else {
            cuts[split.bin as usize - 1]
        };
        self.nodes[idx] = Node {
            feature: feature as u32,
            threshold,
            left,
            right,
            value: 0.0,
            cover: Some(cover),
        };
        self.split_bins[idx] = split.bin;
        idx as u32
    }

    fn best_split(&self, hist: &Histogram, g: f64, h: f64) -> Option<Split> {
        let l2 = self.params.l2;
        let min_n = self.params.min_samples_leaf as f64;
        let min_h = self.params.min_hessian_leaf;
        let parent_score = g * g / (h + l2);
        let mut best: Option<Split> = None;
        for (pos, &f) in self.features.iter().enumerate() {
            let n_bins = self.binned.cuts[f].len() + 2;
            let cells = &hist[pos * 256..pos * 256 + n_bins];
            let total_n: f64 = cells.iter().map(|c| c.n).sum();
            let (mut lg, mut lh, mut ln) = (0.0, 0.0, 0.0);
            for (bin, cell) in cells[..n_bins - 1].iter().enumerate() {
                lg += cell.g;
                lh += cell.h;
                ln += cell.n;
                let rn = total_n - ln;
                if ln < min_n {
                    continue;
                }
                if rn < min_n {
                    break;
                }
                let (rg, rh) = (g - lg, h - lh);
                if lh < min_h || rh < min_h {
                    continue;
                }
                let gain = lg * lg / (lh + l2) + rg * rg / (rh + l2) - parent_score;
                if gain > 1e-12 && best.as_ref().is_none_or(|b| gain > b.gain) {
                    best = Some(Split {
                        feature_pos: pos,
                        bin: bin as u8,
                        gain,
                    });
                }
            }
        }
        best
    }
}

/// Tree output for a binned training row (same routing as the real-valued
/// prediction, since `x <= cuts[b-1]` exactly when `bin(x) <= b`).
fn binned_predict(tree: &Tree, split_bins: &[u8], row: &[u8]) -> f64 {
    let mut idx = 0usize;
    loop {
        let node = &tree.nodes[idx];
        if node.feature == LEAF {
            return node.value;
        }
        idx = if row[node.feature as usize] <= split_bins[idx] {
            node.left as usize
        } else {
            node.right as usize
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy_regression(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = SplitMix64::new(seed);
        let mut x = Vec::with_capacity(n * 3);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let a = rng.next_f64() * 4.0 - 2.0;
            let b = rng.next_f64() * 4.0 - 2.0;
            let noise = rng.next_f64() * 4.0 - 2.0;
            x.extend([a, b, noise]);
            y.push(if a > 0.5 { 3.0 } else { -1.0 } + b * b);
        }
        (x, y)
    }

    fn rmse(model: &Gbdt, x: &[f64], y: &[f64]) -> f64 {
        let pred = model.predict(x);
        (pred
            .iter()
            .zip(y)
            .map(|(p, t)| (p - t).powi(2))
            .sum::<f64>()
            / y.len() as f64)
            .sqrt()
    }

    #[test]
    fn booster_learns_a_nonlinear_function_and_ignores_noise() {
        let (x, y) = toy_regression(3000, 1);
        let (xt, yt) = toy_regression(1000, 2);
        let params = GbdtParams {
            n_trees: 150,
            learning_rate: 0.1,
            max_depth: 4,
            min_samples_leaf: 5,
            ..GbdtParams::default()
        };
        let model = params.fit(&x, 3, &y, None).expect("fit");
        let err = rmse(&model, &xt, &yt);
        assert!(err < 0.25, "held-out rmse {err}");
        let imp = model.normalized_importance();
        assert!(imp[2] < 0.05, "noise feature importance {imp:?}");
    }

    #[test]
    fn binned_training_predictions_match_real_valued_prediction() {
        let (x, y) = toy_regression(500, 3);
        let params = GbdtParams {
            n_trees: 20,
            max_bins: 16,
            ..GbdtParams::default()
        };
        let valid = params.check().expect("valid");
        let model = valid.fit(&x, 3, &y, None, &mut |_, _| {}).expect("fit");
        let binned = BinnedMatrix::new(&x, 3, 500, 16);
        // Real-valued routing must agree with bin routing on training rows.
        for r in 0..500 {
            let row = &x[r * 3..r * 3 + 3];
            for tree in &model.trees {
                let real = tree.predict_row(row);
                let mut idx = 0usize;
                let by_bins = loop {
                    let node = &tree.nodes[idx];
                    if node.feature == LEAF {
                        break node.value;
                    }
                    let b = binned.row(r)[node.feature as usize];
                    let bin_of_threshold = if node.threshold == f64::MIN {
                        0
                    } else {
                        1 + binned.cuts[node.feature as usize]
                            .partition_point(|&c| c < node.threshold)
                    };
                    idx = if (b as usize) <= bin_of_threshold {
                        node.left as usize
                    } else {
                        node.right as usize
                    };
                };
                assert_eq!(real, by_bins);
            }
        }
    }

    #[test]
    fn flat_forest_predicts_exactly_like_the_trees() {
        let (x, y) = toy_regression(800, 8);
        let params = GbdtParams {
            n_trees: 40,
            max_depth: 6,
            ..GbdtParams::default()
        };
        let model = params.fit(&x, 3, &y, None).expect("fit");
        for row in x.chunks_exact(3).chain([[f64::NAN, 0.5, 0.0].as_slice()]) {
            let by_trees =
                model.base_score + model.trees.iter().map(|t| t.predict_row(row)).sum::<f64>();
            assert_eq!(model.predict_raw(row), by_trees);
        }
    }

    #[test]
    fn same_seed_gives_identical_models() {
        let (x, y) = toy_regression(400, 4);
        let params = GbdtParams {
            n_trees: 10,
            subsample: 0.5,
            colsample: 0.5,
            ..GbdtParams::default()
        };
        let a = params.fit(&x, 3, &y, None).expect("fit");
        let b = params.fit(&x, 3, &y, None).expect("fit");
        assert_eq!(a, b);
        let c = GbdtParams { seed: 9, ..params }
            .fit(&x, 3, &y, None)
            .expect("fit");
        assert_ne!(a, c);
    }

    #[test]
    fn logistic_booster_separates_classes_and_handles_missing_values() {
        let mut rng = SplitMix64::new(5);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..2000 {
            let a = rng.next_f64();
            let label = if rng.next_f64() < a { 1.0 } else { 0.0 };
            x.push(if rng.next_f64() < 0.1 { f64::NAN } else { a });
            y.push(label);
        }
        let params = GbdtParams {
            objective: Objective::Logistic,
            n_trees: 50,
            learning_rate: 0.1,
            max_depth: 3,
            ..GbdtParams::default()
        };
        let model = params.fit(&x, 1, &y, None).expect("fit");
        let low = model.predict_row(&[0.1]);
        let high = model.predict_row(&[0.9]);
        let missing = model.predict_row(&[f64::NAN]);
        assert!(low < 0.3 && high > 0.7, "low {low} high {high}");
        assert!((0.0..=1.0).contains(&missing));
    }

    #[test]
    fn bad_parameters_and_data_are_rejected_with_their_name() {
        let err = GbdtParams {
            learning_rate: 0.0,
            ..GbdtParams::default()
        }
        .check()
        .unwrap_err();
        assert!(matches!(
            err,
            GbdtError::InvalidParam {
                name: "learning_rate",
                ..
            }
        ));
        let p = GbdtParams::default();
        assert!(matches!(
            p.fit(&[1.0, 2.0], 2, &[1.0, 2.0], None),
            Err(GbdtError::BadData(_))
        ));
        assert!(matches!(
            p.fit(&[1.0], 1, &[f64::NAN], None),
            Err(GbdtError::BadData(_))
        ));
        let logistic = GbdtParams {
            objective: Objective::Logistic,
            ..GbdtParams::default()
        };
        assert!(matches!(
            logistic.fit(&[1.0], 1, &[0.5], None),
            Err(GbdtError::BadData(_))
        ));
    }

    #[test]
    fn quantile_cuts_use_exact_values_when_few_and_stay_sorted() {
        assert_eq!(quantile_cuts(&[1.0, 1.0, 2.0, 3.0], 10), vec![1.0, 2.0]);
        let many: Vec<f64> = (0..1000).map(f64::from).collect();
        let cuts = quantile_cuts(&many, 10);
        assert_eq!(cuts.len(), 9);
        assert!(cuts.windows(2).all(|w| w[0] < w[1]));
    }
}
