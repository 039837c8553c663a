//! Development tool: run the C-MAPSS protocol (and optionally the grouped CV
//! grid) straight from the models crate, without building the CLI.
//!
//! `cargo run -p fieldpulse-models --features train --example cmapss_cv -- [DIR] [FD001] [--tune]`
//!
//! `DIR` defaults to the repository's `data/cmapss`.

use std::path::PathBuf;

use fieldpulse_models::cmapss::{self, protocol, Subset};
use fieldpulse_models::gbdt::GbdtParams;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let default_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/cmapss");
    let dir = PathBuf::from(
        args.first()
            .filter(|a| !a.starts_with("--") && Subset::parse(a).is_none())
            .map_or(default_dir, String::as_str),
    );
    let subsets: Vec<Subset> = args.iter().filter_map(|a| Subset::parse(a)).collect();
    let subsets = if subsets.is_empty() {
        Subset::ALL.to_vec()
    } else {
        subsets
    };
    let tune = args.iter().any(|a| a == "--tune");
    let get = |key: &str| {
        args.iter().find_map(|a| {
            a.strip_prefix(&format!("--{key}="))
                .and_then(|v| v.parse::<f64>().ok())
        })
    };
    let mut params = GbdtParams {
        n_trees: 150,
        learning_rate: 0.05,
        max_depth: 6,
        min_samples_leaf: 80,
        subsample: 0.8,
        colsample: 0.6,
        ..GbdtParams::default()
    };
    if let Some(v) = get("trees") {
        params.n_trees = v as usize;
    }
    if let Some(v) = get("depth") {
        params.max_depth = v as usize;
    }
    if let Some(v) = get("leaf") {
        params.min_samples_leaf = v as usize;
    }
    if let Some(v) = get("lr") {
        params.learning_rate = v;
    }
    for subset in subsets {
        let data = cmapss::load_subset(&dir, subset)?;
        if tune {
            let cv = protocol::tune_default(&data.train, &params)?;
            for r in cv.iter().take(6) {
                println!(
                    "{subset} cv depth={} leaf={} trees={} rmse={:.3}",
                    r.max_depth, r.min_samples_leaf, r.n_trees, r.rmse
                );
            }
        }
        let res = protocol::evaluate_subset(&data, &params)?;
        println!(
            "{subset} rmse={:.3} score={:.1} rmse_capped_truth={:.3} n={} conds={} sensors={:?} nf={} train_s={:.2}",
            res.rmse, res.score, res.rmse_capped_truth, res.n_test_engines, res.n_conditions, res.sensors, res.n_features, res.train_seconds
        );
    }
    Ok(())
}
