//! Histogram-based gradient-boosted regression trees, written for this crate.
//!
//! Why our own: the learners we need (squared-error regression for RUL and
//! logistic classification for failure-within-horizon) are a few hundred lines
//! when done the LightGBM way (quantile bins, gradient/hessian histograms, the
//! sibling-subtraction trick), compile in seconds, are deterministic from a
//! seed and serialize to plain JSON that the cloud can load without the
//! training code. `smartcore` and `linfa` bring ndarray/nalgebra stacks and no
//! histogram boosting; `perpetual` is a good booster but a heavier build.
//!
//! Inference ([`Gbdt`], this module) is always compiled. Fitting
//! ([`GbdtParams::fit`]) sits behind the `train` feature.
//!
//! Missing values (`NaN`) follow each split's learned default direction
//! ([`Node::missing_right`]): training tries them on both sides and keeps the
//! better gain, as LightGBM and XGBoost do. Artifacts written before the
//! direction was learned have no such field, and their `NaN`s go left, as
//! they always did.
//!
//! Per-prediction explanations ([`Gbdt::contributions`], [`shap`]) are exact
//! path-dependent TreeSHAP values; they need each node's `cover`, which
//! training stores since covers were added. Older artifacts load and score as
//! before and report [`ExplainError::NoCover`] instead of an explanation.

#[cfg(feature = "train")]
mod fit;
#[cfg(feature = "train")]
mod grow;
pub mod shap;

#[cfg(feature = "train")]
pub use fit::{GbdtError, GbdtParams, GbdtValidParams, Validation, ValidationReport};
pub use shap::{Contributions, ExplainError};

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Loss minimised by the booster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Squared error; predictions are the raw sum of trees.
    SquaredError,
    /// Binary log-loss; [`Gbdt::predict_row`] returns a probability.
    Logistic,
}

/// One node of a tree: an internal split, or a leaf when `feature` is [`LEAF`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Index of the feature tested, or [`LEAF`].
    pub feature: u32,
    /// Rows with `x <= threshold` go left; `NaN` goes where
    /// [`Node::missing_right`] says.
    pub threshold: f64,
    /// Index of the left child in the tree's node array.
    pub left: u32,
    /// Index of the right child in the tree's node array.
    pub right: u32,
    /// Leaf output (already multiplied by the learning rate).
    pub value: f64,
    /// Sum of the sample weights (the row count when unweighted) of the
    /// tree's training rows that reached this node; `None` in artifacts
    /// written before covers were stored (they score alike, but cannot be
    /// explained). Absent from the JSON when `None`, so such artifacts
    /// round-trip byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cover: Option<f64>,
    /// Whether a missing value (`NaN`) goes to the right child (the default
    /// direction learned in training). Absent from the JSON when `false`
    /// (left), so artifacts written before it existed load, score and
    /// round-trip byte for byte.
    #[serde(default, skip_serializing_if = "is_false")]
    pub missing_right: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

impl Node {
    /// Whether `x` takes this split's left child: `x <= threshold`, or for a
    /// `NaN` the learned default direction. Every tree walker (prediction,
    /// TreeSHAP) routes through this rule.
    #[inline]
    pub fn goes_left(&self, x: f64) -> bool {
        if x.is_nan() {
            !self.missing_right
        } else {
            x <= self.threshold
        }
    }
}

/// Marker for a leaf node's `feature`.
pub const LEAF: u32 = u32::MAX;

/// One regression tree, nodes stored flat with the root at index 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// The nodes; children always come after their parent.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Output of this tree for one row of features.
    #[inline]
    pub fn predict_row(&self, row: &[f64]) -> f64 {
        let mut idx = 0usize;
        loop {
            let node = &self.nodes[idx];
            if node.feature == LEAF {
                return node.value;
            }
            idx = if node.goes_left(row[node.feature as usize]) {
                node.left as usize
            } else {
                node.right as usize
            };
        }
    }
}

/// A fitted boosted ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gbdt {
    /// The loss it was trained with; decides the output transform.
    pub objective: Objective,
    /// Initial raw score added to every prediction.
    pub base_score: f64,
    /// Number of features a row must have.
    pub n_features: usize,
    /// The trees, in boosting order.
    pub trees: Vec<Tree>,
    /// Total split gain per feature over all trees (importance).
    pub gain_importance: Vec<f64>,
    /// Inference layout derived from `trees` on first use (not serialized;
    /// construct with `Default`, and do not mutate `trees` after predicting).
    #[serde(skip)]
    pub flat: FlatCache,
}

/// One node of the inference layout: 16 bytes, left child right after its
/// parent, so a whole forest is one dense, cache-friendly array.
#[derive(Debug, Clone, Copy)]
struct FlatNode {
    /// Threshold of a split, or the output of a leaf.
    value: f64,
    /// Feature tested, with [`FLAT_MISSING_RIGHT`] set when `NaN` goes
    /// right; or [`LEAF`].
    feature: u32,
    /// Absolute index of the right child.
    right: u32,
}

/// Bit of [`FlatNode::feature`] marking a split whose `NaN`s go right.
const FLAT_MISSING_RIGHT: u32 = 1 << 31;

/// Lazily built flat forest. Equality ignores it: it is a pure function of
/// the trees.
#[derive(Debug, Clone, Default)]
pub struct FlatCache(OnceLock<FlatForest>);

impl PartialEq for FlatCache {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

/// All trees' nodes in pre-order in one array, plus each tree's root.
#[derive(Debug, Clone, Default)]
pub struct FlatForest {
    nodes: Vec<FlatNode>,
    roots: Vec<u32>,
}

impl FlatForest {
    fn build(trees: &[Tree]) -> Self {
        let mut out = FlatForest::default();
        for tree in trees {
            out.roots.push(out.nodes.len() as u32);
            if !tree.nodes.is_empty() {
                out.push_subtree(tree, 0);
            }
        }
        out
    }

    /// Appends the subtree rooted at `idx` in pre-order; returns its index.
    fn push_subtree(&mut self, tree: &Tree, idx: usize) -> u32 {
        let node = tree.nodes[idx];
        let at = self.nodes.len();
        let leaf = node.feature == LEAF
            || node.feature >= FLAT_MISSING_RIGHT
            || node.left as usize >= tree.nodes.len()
            || node.right as usize >= tree.nodes.len()
            || node.left as usize <= idx
            || node.right as usize <= idx;
        self.nodes.push(FlatNode {
            value: if node.feature == LEAF {
                node.value
            } else {
                node.threshold
            },
            feature: if leaf {
                LEAF
            } else if node.missing_right {
                node.feature | FLAT_MISSING_RIGHT
            } else {
                node.feature
            },
            right: 0,
        });
        if leaf {
            if node.feature != LEAF {
                // A malformed split (children out of order, a feature index
                // past 2^31) scores as 0
                // rather than looping; validated artifacts never have one.
                self.nodes[at].value = 0.0;
            }
            return at as u32;
        }
        self.push_subtree(tree, node.left as usize);
        let right = self.push_subtree(tree, node.right as usize);
        self.nodes[at].right = right;
        at as u32
    }

    #[inline]
    fn sum(&self, row: &[f64]) -> f64 {
        let mut total = 0.0;
        for &root in &self.roots {
            let mut idx = root as usize;
            loop {
                let node = self.nodes[idx];
                if node.feature == LEAF {
                    total += node.value;
                    break;
                }
                let x = row[(node.feature & !FLAT_MISSING_RIGHT) as usize];
                let left = if x.is_nan() {
                    node.feature & FLAT_MISSING_RIGHT == 0
                } else {
                    x <= node.value
                };
                idx = if left { idx + 1 } else { node.right as usize };
            }
        }
        total
    }
}

impl Gbdt {
    /// Raw additive score (log-odds for [`Objective::Logistic`]).
    ///
    /// # Panics
    /// Panics if `row` is shorter than [`Gbdt::n_features`]; callers validate
    /// the feature schema when they load an artifact.
    pub fn predict_raw(&self, row: &[f64]) -> f64 {
        assert!(
            row.len() >= self.n_features,
            "row has {} features, model needs {}",
            row.len(),
            self.n_features
        );
        let flat = self.flat.0.get_or_init(|| FlatForest::build(&self.trees));
        self.base_score + flat.sum(row)
    }

    /// Prediction in the objective's output space (value or probability).
    pub fn predict_row(&self, row: &[f64]) -> f64 {
        let raw = self.predict_raw(row);
        match self.objective {
            Objective::SquaredError => raw,
            Objective::Logistic => sigmoid(raw),
        }
    }

    /// Predictions for a row-major matrix with `n_features` columns.
    pub fn predict(&self, rows: &[f64]) -> Vec<f64> {
        rows.chunks_exact(self.n_features.max(1))
            .map(|row| self.predict_row(row))
            .collect()
    }

    /// Gain importance normalised to sum to one (all zeros if no split).
    pub fn normalized_importance(&self) -> Vec<f64> {
        let total: f64 = self.gain_importance.iter().sum();
        if total <= 0.0 {
            return vec![0.0; self.gain_importance.len()];
        }
        self.gain_importance.iter().map(|g| g / total).collect()
    }
}

/// The logistic function, numerically safe at both ends.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stump(threshold: f64, left: f64, right: f64) -> Tree {
        Tree {
            nodes: vec![
                Node {
                    feature: 0,
                    threshold,
                    left: 1,
                    right: 2,
                    value: 0.0,
                    cover: None,
                    missing_right: false,
                },
                Node {
                    feature: LEAF,
                    threshold: 0.0,
                    left: 0,
                    right: 0,
                    value: left,
                    cover: None,
                    missing_right: false,
                },
                Node {
                    feature: LEAF,
                    threshold: 0.0,
                    left: 0,
                    right: 0,
                    value: right,
                    cover: None,
                    missing_right: false,
                },
            ],
        }
    }

    #[test]
    fn nan_goes_left_and_threshold_is_inclusive() {
        let tree = stump(1.0, -1.0, 1.0);
        assert_eq!(tree.predict_row(&[f64::NAN]), -1.0);
        assert_eq!(tree.predict_row(&[1.0]), -1.0);
        assert_eq!(tree.predict_row(&[1.000001]), 1.0);
    }

    #[test]
    fn nan_follows_the_learned_default_direction_in_every_walker() {
        let mut tree = stump(1.0, -1.0, 1.0);
        tree.nodes[0].missing_right = true;
        assert_eq!(tree.predict_row(&[f64::NAN]), 1.0);
        assert_eq!(tree.predict_row(&[1.0]), -1.0);
        assert_eq!(tree.predict_row(&[2.0]), 1.0);
        let model = Gbdt {
            objective: Objective::SquaredError,
            base_score: 0.5,
            n_features: 1,
            trees: vec![tree, stump(0.0, -2.0, 2.0)],
            gain_importance: vec![1.0],
            flat: FlatCache::default(),
        };
        // The flat forest agrees with the trees: NaN right in the first
        // tree, left (the absent field) in the second.
        assert_eq!(model.predict_row(&[f64::NAN]), 0.5 + 1.0 - 2.0);
        assert_eq!(model.predict_row(&[0.5]), 0.5 - 1.0 + 2.0);
        // Only a right default is written; a node without it reads as left.
        let text = serde_json::to_string(&model).expect("serialize");
        assert_eq!(text.matches("missing_right").count(), 1, "{text}");
        let back: Gbdt = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, model);
        assert_eq!(serde_json::to_string(&back).expect("serialize"), text);
    }

    /// The first trees of a classifier from an artifact written before
    /// missing-value directions were learned, byte for byte as that build
    /// saved it.
    const OLD_BOOSTER: &str = include_str!("fixtures/booster_before_missing_directions.json");

    #[test]
    fn an_artifact_from_before_missing_directions_scores_nan_left_and_round_trips_byte_for_byte() {
        let model: Gbdt = serde_json::from_str(OLD_BOOSTER).expect("old layout loads");
        assert_eq!(
            serde_json::to_string(&model).expect("serialize"),
            OLD_BOOSTER
        );
        let nodes = || model.trees.iter().flat_map(|t| &t.nodes);
        assert!(nodes().all(|n| !n.missing_right));
        // Rows near the stored thresholds, a third of the values missing,
        // score exactly as the old rule (NaN left) walks them.
        let mut thresholds = vec![Vec::new(); model.n_features];
        for n in nodes().filter(|n| n.feature != LEAF) {
            thresholds[n.feature as usize].push(n.threshold);
        }
        let old_rule = |row: &[f64]| {
            let walk = |tree: &Tree| {
                let mut idx = 0;
                loop {
                    let node = &tree.nodes[idx];
                    if node.feature == LEAF {
                        return node.value;
                    }
                    let x = row[node.feature as usize];
                    idx = if x.is_nan() || x <= node.threshold {
                        node.left as usize
                    } else {
                        node.right as usize
                    };
                }
            };
            model.base_score + model.trees.iter().map(walk).sum::<f64>()
        };
        let mut rng = crate::rng::SplitMix64::new(7);
        for _ in 0..500 {
            let row: Vec<f64> = thresholds
                .iter()
                .map(|t| {
                    if rng.next_f64() < 0.33 {
                        f64::NAN
                    } else if t.is_empty() {
                        rng.next_f64()
                    } else {
                        let at = t[rng.below(t.len())];
                        [at, at + 1e-9, at - 1.0, at + 1.0][rng.below(4)]
                    }
                })
                .collect();
            assert_eq!(model.predict_raw(&row), old_rule(&row));
            let c = model.contributions(&row).expect("explainable");
            assert!((c.total() - model.predict_raw(&row)).abs() < 1e-9);
        }
    }

    #[test]
    fn logistic_output_is_a_probability() {
        let model = Gbdt {
            objective: Objective::Logistic,
            base_score: 0.0,
            n_features: 1,
            trees: vec![stump(0.0, -800.0, 800.0)],
            gain_importance: vec![1.0],
            flat: FlatCache::default(),
        };
        assert_eq!(model.predict_row(&[-1.0]), 0.0);
        assert_eq!(model.predict_row(&[1.0]), 1.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn model_round_trips_through_json() {
        let model = Gbdt {
            objective: Objective::SquaredError,
            base_score: 3.5,
            n_features: 1,
            trees: vec![stump(0.25, -1.0, 2.0)],
            gain_importance: vec![4.0],
            flat: FlatCache::default(),
        };
        let text = serde_json::to_string(&model).expect("serialize");
        let back: Gbdt = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, model);
        assert_eq!(back.predict(&[0.0, 1.0]), vec![2.5, 5.5]);
    }
}
