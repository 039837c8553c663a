//! Development tool: run the C-MAPSS benchmark (cross-validated choice, then
//! the test set under both protocols) straight from the models crate, without
//! building the CLI, and print the whole grid.
//!
//! `cargo run --release -p fieldpulse-models --features train --example cmapss_cv -- [DIR] [FD001] [--quick] [--seed=7] [--folds=5] [--cuts=4] [--seen=0.2,0.95] [--cv-only]`
//!
//! `DIR` defaults to the repository's `data/cmapss`. `--seen` changes the
//! range of the fraction of life seen at a cut; `--cv-only` stops after the
//! choice and scores nothing on the test files (for studying the CV itself).

use std::path::PathBuf;

use fieldpulse_models::cmapss::cv::{cross_validate, CvConfig, Grid};
use fieldpulse_models::cmapss::{self, protocol, Subset};

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
    let get = |key: &str| {
        args.iter().find_map(|a| {
            a.strip_prefix(&format!("--{key}="))
                .and_then(|v| v.parse::<u64>().ok())
        })
    };
    let grid = if args.iter().any(|a| a == "--quick") {
        Grid::quick()
    } else {
        Grid::full()
    };
    let defaults = CvConfig::default();
    let seen = args
        .iter()
        .find_map(|a| a.strip_prefix("--seen="))
        .and_then(|v| v.split_once(','))
        .and_then(|(lo, hi)| Some([lo.parse::<f64>().ok()?, hi.parse::<f64>().ok()?]))
        .unwrap_or(defaults.seen_fraction);
    let cv_only = args.iter().any(|a| a == "--cv-only");
    let config = CvConfig {
        seen_fraction: seen,
        seed: get("seed").unwrap_or(defaults.seed),
        n_folds: get("folds").map_or(defaults.n_folds, |v| v as usize),
        cuts_per_engine: get("cuts").map_or(defaults.cuts_per_engine, |v| v as usize),
    };
    for subset in subsets {
        let data = cmapss::load_subset(&dir, subset)?;
        if cv_only {
            let cv = cross_validate(&data.train, &grid, &config)?;
            let best = cv.chosen();
            println!(
                "{subset} seen={:?} chosen cap={} depth={} leaf={} trees={} rmse={:.3} sd={:.3} mean_cut_rul={:.1} cv_s={:.1}",
                config.seen_fraction,
                best.point.cap_label(),
                best.point.max_depth,
                best.point.min_samples_leaf,
                best.point.n_trees,
                best.rmse,
                best.rmse_sd,
                cv.mean_cut_rul,
                cv.seconds
            );
            continue;
        }
        let report = protocol::run(&data, &grid, &config)?;
        for (i, p) in report.cv.points.iter().enumerate() {
            println!(
                "{subset} cv{} cap={} depth={} leaf={} lr={} trees={} rmse={:.3} sd={:.3} score/cut={:.2}",
                if i == report.cv.chosen_index { "*" } else { " " },
                p.point.cap_label(),
                p.point.max_depth,
                p.point.min_samples_leaf,
                p.point.learning_rate,
                p.point.n_trees,
                p.rmse,
                p.rmse_sd,
                p.score_per_cut
            );
        }
        let res = &report.result;
        for s in &res.protocols {
            println!(
                "{subset} test {:?} rmse={:.3} score={:.1} n={}",
                s.protocol, s.rmse, s.score, s.n_test_engines
            );
        }
        println!(
            "{subset} cv_s={:.1} train_s={:.2} conds={} sensors={:?} nf={}",
            report.cv.seconds, res.train_seconds, res.n_conditions, res.sensors, res.n_features
        );
    }
    Ok(())
}
