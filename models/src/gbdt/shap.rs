//! Exact per-prediction feature contributions: path-dependent TreeSHAP.
//!
//! For one row `x`, [`Gbdt::contributions`] returns `φ_0` (the ensemble's
//! expected raw score) and one `φ_i` per feature such that
//! `φ_0 + Σ φ_i = predict_raw(x)` (local accuracy). Each `φ_i` is the Shapley
//! value of feature `i` in the game `v(S) = E[f(x) | x_S]`, where the
//! conditional expectation is the *path-dependent* one of Lundberg, Erion and
//! Lee (2018, "Consistent individualized feature attribution for tree
//! ensembles", Algorithm 2): at a split on a feature outside `S` both
//! children are followed, weighted by the share of training cover that went
//! each way; at a split on a feature in `S` only the child `x` takes. A
//! missing value (`NaN`) takes the child the booster sends it to (the split's
//! learned default direction, [`super::Node::goes_left`]), so a missing
//! feature is attributed like any other value. Trees are additive,
//! so the ensemble's values are the sums of the trees' values.
//!
//! The algorithm walks each tree once, keeping for the current root-to-node
//! path the distinct features split on so far and, for every subset size, the
//! Shapley-weighted share of subsets (EXTEND adds a feature to the path,
//! UNWIND removes one; a feature split on twice is unwound and re-extended
//! with the product of its fractions). Cost is `O(L · D²)` per tree (`L`
//! leaves, `D` depth), with no allocation beyond one path buffer per call.
//!
//! Covers come from training ([`super::Node::cover`]). A tree without them
//! (artifacts from before covers were stored) yields
//! [`ExplainError::NoCover`]: the model still scores, it just cannot be
//! explained.

use thiserror::Error;

use super::{Gbdt, Tree, LEAF};

/// Deepest tree explained; deeper (malformed) trees are refused rather than
/// risking the stack. Training caps depth at 16.
const MAX_DEPTH: usize = 64;

/// Why a prediction cannot be explained.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ExplainError {
    /// The model was saved without node covers (an older artifact).
    #[error("tree {tree} has no node covers (the artifact predates covers; retrain to explain)")]
    NoCover {
        /// Index of the first tree lacking covers.
        tree: usize,
    },
    /// A cover is negative or not finite, or a split has no cover.
    #[error("tree {tree} node {node}: invalid cover {cover}")]
    BadCover {
        /// Tree index.
        tree: usize,
        /// Node index within the tree.
        node: usize,
        /// The stored cover.
        cover: f64,
    },
    /// A split's children are out of range or not after it, or the tree is
    /// deeper than any trained one.
    #[error("tree {tree} node {node}: malformed tree structure")]
    Malformed {
        /// Tree index.
        tree: usize,
        /// Node index within the tree.
        node: usize,
    },
    /// The row is shorter than the model's feature count.
    #[error("row has {got} features, model needs {need}")]
    RowLength {
        /// Values in the row.
        got: usize,
        /// [`Gbdt::n_features`].
        need: usize,
    },
}

/// Feature contributions of one prediction, in raw-score units (log-odds for
/// a logistic booster).
#[derive(Debug, Clone, PartialEq)]
pub struct Contributions {
    /// `φ_0`: the expected raw score over the training cover
    /// (`base_score` plus each tree's cover-weighted mean leaf).
    pub base: f64,
    /// `φ_i` per feature, `n_features` long.
    pub values: Vec<f64>,
}

impl Contributions {
    /// `base + Σ values`: equals the model's raw score up to rounding.
    pub fn total(&self) -> f64 {
        self.base + self.values.iter().sum::<f64>()
    }
}

impl Gbdt {
    /// Whether every node of every tree carries a cover.
    pub fn has_covers(&self) -> bool {
        self.trees
            .iter()
            .all(|t| t.nodes.iter().all(|n| n.cover.is_some()))
    }

    /// Exact TreeSHAP contributions of each feature to [`Gbdt::predict_raw`]
    /// for `row`.
    ///
    /// # Errors
    /// [`ExplainError`] when the model has no covers, a tree is malformed, or
    /// the row is too short; never panics.
    pub fn contributions(&self, row: &[f64]) -> Result<Contributions, ExplainError> {
        if row.len() < self.n_features {
            return Err(ExplainError::RowLength {
                got: row.len(),
                need: self.n_features,
            });
        }
        let mut values = vec![0.0; self.n_features];
        let mut base = self.base_score;
        let mut path = Vec::new();
        for (tree_idx, tree) in self.trees.iter().enumerate() {
            check_tree(tree, tree_idx, self.n_features)?;
            if tree.nodes.is_empty() {
                continue;
            }
            base += expected_value(tree, 0);
            tree_shap(tree, row, &mut values, &mut path);
        }
        Ok(Contributions { base, values })
    }

    /// `φ_0` alone: the expected raw score over the training cover.
    ///
    /// # Errors
    /// As [`Gbdt::contributions`].
    pub fn expected_raw(&self) -> Result<f64, ExplainError> {
        let mut base = self.base_score;
        for (tree_idx, tree) in self.trees.iter().enumerate() {
            check_tree(tree, tree_idx, self.n_features)?;
            if !tree.nodes.is_empty() {
                base += expected_value(tree, 0);
            }
        }
        Ok(base)
    }
}

/// Refuses what the recursion could not handle: missing or invalid covers,
/// children that are out of range, not after their parent (which rules out
/// cycles) or shared by two parents, split features past the row, excessive
/// depth.
fn check_tree(tree: &Tree, tree_idx: usize, n_features: usize) -> Result<(), ExplainError> {
    let n = tree.nodes.len();
    let mut depth = vec![0usize; n];
    let mut referenced = vec![false; n];
    for (idx, node) in tree.nodes.iter().enumerate() {
        let Some(cover) = node.cover else {
            return Err(ExplainError::NoCover { tree: tree_idx });
        };
        let split = node.feature != LEAF;
        if !(cover.is_finite() && cover >= 0.0) || (split && cover <= 0.0) {
            return Err(ExplainError::BadCover {
                tree: tree_idx,
                node: idx,
                cover,
            });
        }
        if split {
            let (l, r) = (node.left as usize, node.right as usize);
            let bad = l <= idx
                || r <= idx
                || l >= n
                || r >= n
                || l == r
                || node.feature as usize >= n_features
                || depth[idx] >= MAX_DEPTH
                || referenced[l]
                || referenced[r];
            if bad {
                return Err(ExplainError::Malformed {
                    tree: tree_idx,
                    node: idx,
                });
            }
            referenced[l] = true;
            referenced[r] = true;
            depth[l] = depth[idx] + 1;
            depth[r] = depth[idx] + 1;
        }
    }
    Ok(())
}

/// Cover-weighted mean leaf value below `idx` (the path-dependent
/// expectation with no feature known).
fn expected_value(tree: &Tree, idx: usize) -> f64 {
    let node = &tree.nodes[idx];
    if node.feature == LEAF {
        return node.value;
    }
    let (l, r) = (node.left as usize, node.right as usize);
    let parent = node.cover.unwrap_or(0.0);
    let wl = tree.nodes[l].cover.unwrap_or(0.0) / parent;
    let wr = tree.nodes[r].cover.unwrap_or(0.0) / parent;
    wl * expected_value(tree, l) + wr * expected_value(tree, r)
}

/// One element of the unique-feature path.
#[derive(Debug, Clone, Copy, Default)]
struct PathElement {
    /// Feature split on (`usize::MAX` for the root's placeholder).
    feature: usize,
    /// Fraction of subsets *without* the feature that pass through here
    /// (product of cover ratios).
    zero: f64,
    /// Whether `x` itself follows this path (1 or 0; a product of them).
    one: f64,
    /// Shapley weight of subsets of each size, in position order.
    weight: f64,
}

/// Adds `x`'s contributions from one (checked) tree to `phi`.
fn tree_shap(tree: &Tree, row: &[f64], phi: &mut [f64], path: &mut Vec<PathElement>) {
    path.clear();
    recurse(tree, row, phi, path, 0, 0, 0, 1.0, 1.0, usize::MAX);
}

/// Visits node `idx`. Its path lives in `path[start..]`: on entry that
/// segment holds the parent's `depth` elements; this call extends it with
/// `(feature, zero, one)` and hands copies to the children further on.
#[allow(clippy::too_many_arguments)]
fn recurse(
    tree: &Tree,
    row: &[f64],
    phi: &mut [f64],
    path: &mut Vec<PathElement>,
    start: usize,
    depth: usize,
    idx: usize,
    zero: f64,
    one: f64,
    feature: usize,
) {
    if path.len() < start + depth + 1 {
        path.resize(start + depth + 1, PathElement::default());
    }
    let seg = &mut path[start..start + depth + 1];
    extend(seg, depth, zero, one, feature);
    let node = &tree.nodes[idx];
    if node.feature == LEAF {
        for i in 1..=depth {
            let w = unwound_sum(seg, depth, i);
            let el = seg[i];
            phi[el.feature] += w * (el.one - el.zero) * node.value;
        }
        return;
    }
    let split = node.feature as usize;
    let (hot, cold) = if node.goes_left(row[split]) {
        (node.left as usize, node.right as usize)
    } else {
        (node.right as usize, node.left as usize)
    };
    // A feature already on the path is taken off and re-added below with
    // the product of its fractions (the paper's "undo the previous split").
    let mut unique_depth = depth;
    let (mut in_zero, mut in_one) = (1.0, 1.0);
    if let Some(k) = (1..=depth).find(|&k| seg[k].feature == split) {
        in_zero = seg[k].zero;
        in_one = seg[k].one;
        unwind(seg, depth, k);
        unique_depth -= 1;
    }
    let cover = node.cover.unwrap_or(0.0);
    let hot_zero = in_zero * tree.nodes[hot].cover.unwrap_or(0.0) / cover;
    let cold_zero = in_zero * tree.nodes[cold].cover.unwrap_or(0.0) / cover;
    let len = unique_depth + 1;
    let child_start = start + len;
    for (child, child_zero, child_one) in [(hot, hot_zero, in_one), (cold, cold_zero, 0.0)] {
        // A branch no subset reaches contributes exactly nothing; skipping
        // it also avoids dividing by a zero fraction in `unwound_sum`.
        if child_zero == 0.0 && child_one == 0.0 {
            continue;
        }
        if path.len() < child_start + len + 1 {
            path.resize(child_start + len + 1, PathElement::default());
        }
        path.copy_within(start..start + len, child_start);
        recurse(
            tree,
            row,
            phi,
            path,
            child_start,
            unique_depth + 1,
            child,
            child_zero,
            child_one,
            split,
        );
    }
}

/// EXTEND: appends `(feature, zero, one)` at position `depth` and updates the
/// subset-size weights.
fn extend(seg: &mut [PathElement], depth: usize, zero: f64, one: f64, feature: usize) {
    seg[depth] = PathElement {
        feature,
        zero,
        one,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let n = (depth + 1) as f64;
    for i in (0..depth).rev() {
        seg[i + 1].weight += one * seg[i].weight * (i + 1) as f64 / n;
        seg[i].weight = zero * seg[i].weight * (depth - i) as f64 / n;
    }
}

/// UNWIND: removes position `k` from a path whose last position is `depth`
/// (inverting [`extend`] for that element).
fn unwind(seg: &mut [PathElement], depth: usize, k: usize) {
    let (one, zero) = (seg[k].one, seg[k].zero);
    let n = (depth + 1) as f64;
    let mut next = seg[depth].weight;
    for j in (0..depth).rev() {
        if one != 0.0 {
            let tmp = seg[j].weight;
            seg[j].weight = next * n / ((j + 1) as f64 * one);
            next = tmp - seg[j].weight * zero * (depth - j) as f64 / n;
        } else {
            seg[j].weight = seg[j].weight * n / (zero * (depth - j) as f64);
        }
    }
    for j in k..depth {
        seg[j].feature = seg[j + 1].feature;
        seg[j].zero = seg[j + 1].zero;
        seg[j].one = seg[j + 1].one;
    }
}

/// Sum of the weights [`unwind`] would leave after removing position `k`,
/// without changing the path.
fn unwound_sum(seg: &[PathElement], depth: usize, k: usize) -> f64 {
    let (one, zero) = (seg[k].one, seg[k].zero);
    let n = (depth + 1) as f64;
    let mut total = 0.0;
    if one != 0.0 {
        let mut next = seg[depth].weight;
        for j in (0..depth).rev() {
            let tmp = next * n / ((j + 1) as f64 * one);
            total += tmp;
            next = seg[j].weight - tmp * zero * (depth - j) as f64 / n;
        }
    } else {
        for j in (0..depth).rev() {
            total += seg[j].weight * n / (zero * (depth - j) as f64);
        }
    }
    total
}

#[cfg(test)]
mod tests;
