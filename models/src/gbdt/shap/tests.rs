use super::*;
use crate::gbdt::{FlatCache, Node, Objective};
use crate::rng::SplitMix64;

fn leaf(value: f64, cover: f64) -> Node {
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

/// A random tree of depth ≤ `max_depth` splitting only on features
/// `0..n_split`, covers consistent (children sum to their parent), some
/// features split twice on one path, some leaves with zero cover.
fn random_tree(rng: &mut SplitMix64, max_depth: usize, n_split: usize) -> Tree {
    fn grow(
        rng: &mut SplitMix64,
        nodes: &mut Vec<Node>,
        depth: usize,
        max_depth: usize,
        n_split: usize,
        cover: f64,
    ) -> u32 {
        let idx = nodes.len();
        let value = rng.next_f64() * 2.0 - 1.0;
        nodes.push(leaf(value, cover));
        if cover == 0.0 || depth >= max_depth || (depth > 0 && rng.next_f64() < 0.25) {
            return idx as u32;
        }
        let share = if rng.next_f64() < 0.08 {
            // A child no training row reached.
            if rng.next_f64() < 0.5 {
                0.0
            } else {
                1.0
            }
        } else {
            0.05 + 0.9 * rng.next_f64()
        };
        let left_cover = cover * share;
        let right_cover = cover - left_cover;
        let feature = rng.below(n_split) as u32;
        let threshold = rng.next_f64() * 2.0 - 1.0;
        let missing_right = rng.next_f64() < 0.5;
        let left = grow(rng, nodes, depth + 1, max_depth, n_split, left_cover);
        let right = grow(rng, nodes, depth + 1, max_depth, n_split, right_cover);
        nodes[idx] = Node {
            feature,
            threshold,
            left,
            right,
            value: 0.0,
            cover: Some(cover),
            missing_right,
        };
        idx as u32
    }
    let mut nodes = Vec::new();
    let cover = 10.0 + 100.0 * rng.next_f64();
    grow(rng, &mut nodes, 0, max_depth, n_split, cover);
    Tree { nodes }
}

fn random_ensemble(
    rng: &mut SplitMix64,
    n_trees: usize,
    max_depth: usize,
    n_features: usize,
) -> Gbdt {
    let n_split = n_features - 1; // the last feature never splits
    Gbdt {
        objective: Objective::Logistic,
        base_score: rng.next_f64() - 0.5,
        n_features,
        trees: (0..n_trees)
            .map(|_| random_tree(rng, max_depth, n_split))
            .collect(),
        gain_importance: vec![0.0; n_features],
        flat: FlatCache::default(),
    }
}

fn random_row(rng: &mut SplitMix64, n_features: usize) -> Vec<f64> {
    (0..n_features)
        .map(|_| {
            if rng.next_f64() < 0.2 {
                f64::NAN
            } else {
                rng.next_f64() * 3.0 - 1.5
            }
        })
        .collect()
}

/// `E[f(x) | x_S]` by the path-dependent rule, straight from its definition.
fn conditional(tree: &Tree, idx: usize, row: &[f64], known: u32) -> f64 {
    let node = &tree.nodes[idx];
    if node.feature == LEAF {
        return node.value;
    }
    let (l, r) = (node.left as usize, node.right as usize);
    if known & (1 << node.feature) != 0 {
        let next = if node.goes_left(row[node.feature as usize]) {
            l
        } else {
            r
        };
        return conditional(tree, next, row, known);
    }
    let c = node.cover.unwrap();
    (tree.nodes[l].cover.unwrap() * conditional(tree, l, row, known)
        + tree.nodes[r].cover.unwrap() * conditional(tree, r, row, known))
        / c
}

/// Shapley values by enumerating every subset of the features.
fn brute_force(model: &Gbdt, row: &[f64]) -> Vec<f64> {
    let m = model.n_features;
    let v = |known: u32| -> f64 {
        model.base_score
            + model
                .trees
                .iter()
                .map(|t| conditional(t, 0, row, known))
                .sum::<f64>()
    };
    let fact = |n: usize| (1..=n).map(|k| k as f64).product::<f64>();
    let mut phi = vec![0.0; m];
    for (i, phi_i) in phi.iter_mut().enumerate() {
        for subset in 0u32..(1 << m) {
            if subset & (1 << i) != 0 {
                continue;
            }
            let s = subset.count_ones() as usize;
            let weight = fact(s) * fact(m - s - 1) / fact(m);
            *phi_i += weight * (v(subset | (1 << i)) - v(subset));
        }
    }
    phi
}

#[test]
fn local_accuracy_holds_on_random_ensembles() {
    let mut rng = SplitMix64::new(11);
    for case in 0..200 {
        let n_features = 2 + rng.below(8);
        let (n_trees, depth) = (1 + rng.below(20), 1 + rng.below(8));
        let model = random_ensemble(&mut rng, n_trees, depth, n_features);
        for _ in 0..5 {
            let row = random_row(&mut rng, n_features);
            let c = model.contributions(&row).expect("explainable");
            let raw = model.predict_raw(&row);
            assert!(
                (c.total() - raw).abs() < 1e-9,
                "case {case}: {} + Σ {:?} = {} vs raw {raw}",
                c.base,
                c.values,
                c.total()
            );
        }
    }
}

#[test]
fn tree_shap_equals_brute_force_shapley_values_on_small_trees() {
    let mut rng = SplitMix64::new(23);
    for case in 0..300 {
        let n_features = 2 + rng.below(5);
        let (n_trees, depth) = (1 + rng.below(3), 1 + rng.below(4));
        let model = random_ensemble(&mut rng, n_trees, depth, n_features);
        let row = random_row(&mut rng, n_features);
        let fast = model.contributions(&row).expect("explainable");
        let slow = brute_force(&model, &row);
        for (i, (a, b)) in fast.values.iter().zip(&slow).enumerate() {
            assert!(
                (a - b).abs() < 1e-9,
                "case {case} feature {i}: TreeSHAP {a} vs brute force {b}\nrow {row:?}\n{model:?}"
            );
        }
        assert!((fast.base - brute_force_base(&model, &row)).abs() < 1e-9);
    }
}

fn brute_force_base(model: &Gbdt, row: &[f64]) -> f64 {
    model.base_score
        + model
            .trees
            .iter()
            .map(|t| conditional(t, 0, row, 0))
            .sum::<f64>()
}

#[test]
fn a_feature_that_never_splits_gets_exactly_zero() {
    let mut rng = SplitMix64::new(5);
    for _ in 0..100 {
        let n_features = 3 + rng.below(4);
        let model = random_ensemble(&mut rng, 10, 6, n_features);
        let row = random_row(&mut rng, n_features);
        let c = model.contributions(&row).expect("explainable");
        assert_eq!(c.values[n_features - 1], 0.0);
    }
}

#[test]
fn a_missing_value_is_attributed_along_the_branch_the_booster_sends_it() {
    // Split on feature 0 at 0.5: 30 rows left (value -1), 70 right (value 2).
    let tree = Tree {
        nodes: vec![
            Node {
                feature: 0,
                threshold: 0.5,
                left: 1,
                right: 2,
                value: 0.0,
                cover: Some(100.0),
                missing_right: false,
            },
            leaf(-1.0, 30.0),
            leaf(2.0, 70.0),
        ],
    };
    let model = Gbdt {
        objective: Objective::SquaredError,
        base_score: 0.0,
        n_features: 2,
        trees: vec![tree],
        gain_importance: vec![1.0, 0.0],
        flat: FlatCache::default(),
    };
    let expected = -0.3 + 0.7 * 2.0;
    // NaN goes left, like a value at or below the threshold.
    for x in [f64::NAN, 0.5, -3.0] {
        let c = model.contributions(&[x, 7.0]).expect("explainable");
        assert!((c.base - expected).abs() < 1e-12);
        assert!((c.values[0] - (-1.0 - expected)).abs() < 1e-12, "{x}");
        assert_eq!(c.values[1], 0.0);
    }
    let c = model.contributions(&[0.6, f64::NAN]).expect("explainable");
    assert!((c.values[0] - (2.0 - expected)).abs() < 1e-12);
    // A split whose learned default is right sends NaN with the large values.
    let mut right = model.clone();
    right.trees[0].nodes[0].missing_right = true;
    right.flat = FlatCache::default();
    for x in [f64::NAN, 0.6, 3.0] {
        let c = right.contributions(&[x, 7.0]).expect("explainable");
        assert!((c.values[0] - (2.0 - expected)).abs() < 1e-12, "{x}");
        assert!((c.total() - right.predict_raw(&[x, 7.0])).abs() < 1e-12);
    }
    let c = right.contributions(&[0.5, 7.0]).expect("explainable");
    assert!((c.values[0] - (-1.0 - expected)).abs() < 1e-12);
    // With NaNs everywhere, random ensembles still match brute force and the prediction.
    let mut rng = SplitMix64::new(9);
    for _ in 0..50 {
        let model = random_ensemble(&mut rng, 3, 4, 4);
        let row = vec![f64::NAN; 4];
        let c = model.contributions(&row).expect("explainable");
        assert!((c.total() - model.predict_raw(&row)).abs() < 1e-9);
        for (a, b) in c.values.iter().zip(brute_force(&model, &row)) {
            assert!((a - b).abs() < 1e-9);
        }
    }
}

#[test]
fn a_model_without_covers_scores_but_reports_no_explanation() {
    let mut rng = SplitMix64::new(3);
    let with = random_ensemble(&mut rng, 5, 3, 3);
    let mut without = with.clone();
    for tree in &mut without.trees {
        for node in &mut tree.nodes {
            node.cover = None;
        }
    }
    let row = random_row(&mut rng, 3);
    assert_eq!(with.predict_raw(&row), without.predict_raw(&row));
    assert!(with.has_covers() && !without.has_covers());
    assert_eq!(
        without.contributions(&row),
        Err(ExplainError::NoCover { tree: 0 })
    );
    assert!(without.expected_raw().is_err());
    // The old JSON layout (no `cover` key) loads and writes back unchanged.
    let text = serde_json::to_string(&without).expect("serialize");
    assert!(!text.contains("cover"));
    let back: Gbdt = serde_json::from_str(&text).expect("old layout loads");
    assert_eq!(serde_json::to_string(&back).expect("serialize"), text);
    assert_eq!(back.predict_raw(&row), with.predict_raw(&row));
}

#[test]
fn malformed_trees_and_short_rows_are_errors_not_panics() {
    let mut bad = Tree {
        nodes: vec![
            Node {
                feature: 0,
                threshold: 0.0,
                left: 1,
                right: 0, // points back at the root
                value: 0.0,
                cover: Some(2.0),
                missing_right: false,
            },
            leaf(1.0, 1.0),
        ],
    };
    let mut model = Gbdt {
        objective: Objective::SquaredError,
        base_score: 0.0,
        n_features: 1,
        trees: vec![bad.clone()],
        gain_importance: vec![0.0],
        flat: FlatCache::default(),
    };
    assert!(matches!(
        model.contributions(&[0.0]),
        Err(ExplainError::Malformed { tree: 0, node: 0 })
    ));
    bad.nodes[0].right = 1;
    model.trees = vec![bad.clone()];
    assert!(matches!(
        model.contributions(&[0.0]),
        Err(ExplainError::Malformed { .. })
    ));
    bad.nodes.push(leaf(2.0, 1.0));
    bad.nodes[0].right = 2;
    bad.nodes[0].cover = Some(f64::NAN);
    model.trees = vec![bad];
    assert!(matches!(
        model.contributions(&[0.0]),
        Err(ExplainError::BadCover { .. })
    ));
    assert_eq!(
        model.contributions(&[]),
        Err(ExplainError::RowLength { got: 0, need: 1 })
    );
}

#[cfg(feature = "train")]
#[test]
fn a_trained_booster_stores_consistent_covers_and_is_locally_accurate() {
    use crate::gbdt::GbdtParams;
    let mut rng = SplitMix64::new(17);
    let (mut x, mut y, mut w) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..1500 {
        let a = rng.next_f64() * 4.0 - 2.0;
        let b = if rng.next_f64() < 0.15 {
            f64::NAN
        } else {
            rng.next_f64()
        };
        let noise = rng.next_f64();
        let p = crate::gbdt::sigmoid(2.0 * a + if b.is_nan() { 1.0 } else { b });
        y.push(if rng.next_f64() < p { 1.0 } else { 0.0 });
        w.push(if rng.next_f64() < 0.1 { 3.0 } else { 1.0 });
        x.extend([a, b, noise, 0.0]);
    }
    let params = GbdtParams {
        objective: Objective::Logistic,
        n_trees: 40,
        max_depth: 5,
        min_samples_leaf: 10,
        learning_rate: 0.2,
        ..GbdtParams::default()
    };
    let model = params.fit(&x, 4, &y, Some(&w)).expect("fit");
    assert!(model.has_covers());
    for tree in &model.trees {
        for node in tree.nodes.iter().filter(|n| n.feature != LEAF) {
            let sum = tree.nodes[node.left as usize].cover.unwrap()
                + tree.nodes[node.right as usize].cover.unwrap();
            let cover = node.cover.unwrap();
            assert!((sum - cover).abs() <= 1e-9 * cover, "{sum} vs {cover}");
        }
    }
    for row in x.chunks_exact(4).take(300) {
        let c = model.contributions(row).expect("explainable");
        assert!((c.total() - model.predict_raw(row)).abs() < 1e-9);
        // Feature 3 is constant: no tree can split on it.
        assert_eq!(c.values[3], 0.0);
    }
    // The JSON round trip keeps the covers and the explanations.
    let text = serde_json::to_string(&model).expect("serialize");
    let back: Gbdt = serde_json::from_str(&text).expect("deserialize");
    assert_eq!(back, model);
    assert_eq!(back.contributions(&x[..4]), model.contributions(&x[..4]));
}
