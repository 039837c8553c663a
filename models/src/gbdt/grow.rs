//! Growing one tree (feature `train`): binning, histograms, the split search
//! with learned missing-value directions and monotone constraints.
//!
//! Each node's histogram holds (sum g, sum h, count) per bin for every sampled
//! feature; only the smaller child's histogram is built from rows, the larger
//! one is the parent's minus it. Split gain is the usual second-order gain
//! `GL²/(HL+λ) + GR²/(HR+λ) − G²/(H+λ)`. Every node records its cover (the
//! summed sample weight of the tree's rows that reached it) for TreeSHAP.
//!
//! **Missing values.** Bin 0 holds `NaN`. Every threshold is tried with the
//! `NaN` rows on the left and, when the node has any, on the right; the
//! better gain wins (left on a tie, so data without `NaN`s grows the same
//! trees as before directions were learned). The winner is stored as
//! [`Node::missing_right`]. "`NaN` left, every number right" is the split at
//! bin 0 (threshold `f64::MIN`); its mirror is not tried again. With
//! [`GbdtParams::learn_missing_direction`] off, only the left side is tried.
//!
//! **Monotone constraints** (LightGBM's "basic" method). Each node carries
//! bounds `[lo, hi]` on its output; leaf values are clamped to them and, once
//! any feature is constrained, gains are computed with the clamped outputs
//! (`−(2Gw + (H+λ)w²)` for output `w`). A split on a `+1` feature whose left
//! output exceeds its right one is rejected (`−1`: the reverse); an accepted
//! one caps the left subtree at the midpoint of the two outputs and floors
//! the right subtree there. Two rows that differ only in a constrained
//! feature share their path down to the first split on it, and from there
//! every leaf on the smaller value's side is at most every leaf on the other
//! side: each tree, hence the sum, is monotone in that feature.

use super::{Node, LEAF};
use crate::gbdt::GbdtParams;

/// A leaf with its value and cover.
pub(super) fn leaf(value: f64, cover: f64) -> Node {
    Node {
        feature: LEAF,
        threshold: 0.0,
        left: 0,
        right: 0,
        value,
        cover: Some(cover),
        missing_right: false,
    }
}

/// Feature values quantised to at most 255 bins, row-major. Bin 0 holds
/// `NaN`; bin `1 + k` holds values in `(cuts[k-1], cuts[k]]`.
pub(super) struct BinnedMatrix {
    pub(super) n_features: usize,
    pub(super) bins: Vec<u8>,
    pub(super) cuts: Vec<Vec<f64>>,
}

impl BinnedMatrix {
    pub(super) fn new(x: &[f64], n_features: usize, n_rows: usize, max_bins: usize) -> Self {
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

    pub(super) fn row(&self, r: usize) -> &[u8] {
        &self.bins[r * self.n_features..(r + 1) * self.n_features]
    }
}

/// At most `n_buckets - 1` cut points splitting sorted finite `values` into
/// roughly equal-count buckets; exact unique values when there are few.
pub(super) fn quantile_cuts(sorted: &[f64], n_buckets: usize) -> Vec<f64> {
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

/// Bounds on a node's (unshrunk) output, from monotone splits above it.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    lo: f64,
    hi: f64,
}

impl Bounds {
    const NONE: Bounds = Bounds {
        lo: f64::NEG_INFINITY,
        hi: f64::INFINITY,
    };
}

/// The best split found at a node.
struct Split {
    feature_pos: usize,
    bin: u8,
    gain: f64,
    missing_right: bool,
    /// Clamped (unshrunk) outputs of the two children, for their bounds.
    left_out: f64,
    right_out: f64,
}

/// Grows one tree on the rows it is given.
pub(super) struct Grower<'a> {
    pub(super) params: &'a GbdtParams,
    pub(super) binned: &'a BinnedMatrix,
    pub(super) grad: &'a [f64],
    pub(super) hess: &'a [f64],
    pub(super) features: &'a [usize],
    pub(super) weights: Option<&'a [f64]>,
    /// Whether any feature is constrained: then gains use clamped outputs.
    pub(super) constrained: bool,
    pub(super) nodes: Vec<Node>,
    /// Bin threshold of each split node (0 for leaves), for
    /// [`binned_predict`].
    pub(super) split_bins: Vec<u8>,
    pub(super) importance: &'a mut [f64],
}

impl Grower<'_> {
    pub(super) fn grow_root(&mut self, rows: &mut [u32]) {
        let hist = self.build_histogram(rows);
        let (g, h) = rows.iter().fold((0.0, 0.0), |(g, h), &r| {
            (g + self.grad[r as usize], h + self.hess[r as usize])
        });
        self.grow(rows, hist, g, h, 0, Bounds::NONE);
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

    /// The node output before shrinkage, clamped to its bounds.
    fn output(&self, g: f64, h: f64, bounds: Bounds) -> f64 {
        (-g / (h + self.params.l2)).clamp(bounds.lo, bounds.hi)
    }

    fn monotone(&self, feature: usize) -> i8 {
        self.params.monotone.get(feature).copied().unwrap_or(0)
    }

    fn grow(
        &mut self,
        rows: &mut [u32],
        hist: Histogram,
        g: f64,
        h: f64,
        depth: usize,
        bounds: Bounds,
    ) -> u32 {
        let idx = self.nodes.len();
        let cover = match self.weights {
            Some(w) => rows.iter().map(|&r| w[r as usize]).sum(),
            None => rows.len() as f64,
        };
        let value = self.output(g, h, bounds) * self.params.learning_rate;
        self.nodes.push(leaf(value, cover));
        self.split_bins.push(0);
        let min_leaf = self.params.min_samples_leaf;
        if depth >= self.params.max_depth || rows.len() < 2 * min_leaf {
            return idx as u32;
        }
        let Some(split) = self.best_split(&hist, g, h, bounds) else {
            return idx as u32;
        };
        let feature = self.features[split.feature_pos];
        let nf = self.binned.n_features;
        // In-place partition: rows going left first.
        let mut n_left = 0;
        for i in 0..rows.len() {
            let bin = self.binned.bins[rows[i] as usize * nf + feature];
            if goes_left(bin, split.bin, split.missing_right) {
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
        let mid = 0.5 * (split.left_out + split.right_out);
        let (left_bounds, right_bounds) = match self.monotone(feature) {
            1 => (Bounds { hi: mid, ..bounds }, Bounds { lo: mid, ..bounds }),
            -1 => (Bounds { lo: mid, ..bounds }, Bounds { hi: mid, ..bounds }),
            _ => (bounds, bounds),
        };
        let left = self.grow(left_rows, left_hist, lg, lh, depth + 1, left_bounds);
        let right = self.grow(
            right_rows,
            right_hist,
            g - lg,
            h - lh,
            depth + 1,
            right_bounds,
        );
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
            missing_right: split.missing_right,
        };
        self.split_bins[idx] = split.bin;
        idx as u32
    }

    /// `−(2Gw + (H+λ)w²)`: the loss reduction of output `w` (equal to
    /// `G²/(H+λ)` at the unclamped optimum).
    fn leaf_gain(&self, g: f64, h: f64, w: f64) -> f64 {
        -(2.0 * g * w + (h + self.params.l2) * w * w)
    }

    fn best_split(&self, hist: &Histogram, g: f64, h: f64, bounds: Bounds) -> Option<Split> {
        let l2 = self.params.l2;
        let min_n = self.params.min_samples_leaf as f64;
        let min_h = self.params.min_hessian_leaf;
        let parent_score = if self.constrained {
            self.leaf_gain(g, h, self.output(g, h, bounds))
        } else {
            g * g / (h + l2)
        };
        let mut best: Option<Split> = None;
        for (pos, &f) in self.features.iter().enumerate() {
            let n_bins = self.binned.cuts[f].len() + 2;
            let cells = &hist[pos * 256..pos * 256 + n_bins];
            let total_n: f64 = cells.iter().map(|c| c.n).sum();
            let monotone = self.monotone(f);
            // NaN (bin 0) left: the left side accumulates from bin 0; then
            // NaN right: from bin 1, bin 0 joining the right side.
            for missing_right in [false, true] {
                if missing_right && (cells[0].n == 0.0 || !self.params.learn_missing_direction) {
                    break;
                }
                let first = usize::from(missing_right);
                let (mut lg, mut lh, mut ln) = (0.0, 0.0, 0.0);
                for (bin, cell) in cells.iter().enumerate().take(n_bins - 1).skip(first) {
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
                    let (gain, left_out, right_out) = if self.constrained {
                        let wl = self.output(lg, lh, bounds);
                        let wr = self.output(rg, rh, bounds);
                        if (monotone > 0 && wl > wr) || (monotone < 0 && wl < wr) {
                            continue;
                        }
                        let gain =
                            self.leaf_gain(lg, lh, wl) + self.leaf_gain(rg, rh, wr) - parent_score;
                        (gain, wl, wr)
                    } else {
                        let gain = lg * lg / (lh + l2) + rg * rg / (rh + l2) - parent_score;
                        (gain, 0.0, 0.0)
                    };
                    if gain > 1e-12 && best.as_ref().is_none_or(|b| gain > b.gain) {
                        best = Some(Split {
                            feature_pos: pos,
                            bin: bin as u8,
                            gain,
                            missing_right,
                            left_out,
                            right_out,
                        });
                    }
                }
            }
        }
        best
    }
}

/// Whether a row in `bin` takes the left child of a split at `split_bin`.
#[inline]
fn goes_left(bin: u8, split_bin: u8, missing_right: bool) -> bool {
    if bin == 0 {
        !missing_right
    } else {
        bin <= split_bin
    }
}

/// Tree output for a binned training row (same routing as the real-valued
/// prediction, since `x <= cuts[b-1]` exactly when `bin(x) <= b`, and `NaN`
/// is bin 0).
pub(super) fn binned_predict(nodes: &[Node], split_bins: &[u8], row: &[u8]) -> f64 {
    let mut idx = 0usize;
    loop {
        let node = &nodes[idx];
        if node.feature == LEAF {
            return node.value;
        }
        idx = if goes_left(
            row[node.feature as usize],
            split_bins[idx],
            node.missing_right,
        ) {
            node.left as usize
        } else {
            node.right as usize
        };
    }
}
