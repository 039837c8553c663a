//! `fieldpulse eval`: judge models. `eval cmapss` runs the public NASA
//! C-MAPSS benchmark with the published protocol; `eval shapes` runs the anomaly
//! detector on the shape corpus (`eval_shapes.rs`); `eval --model DIR --data
//! DIR` scores a trained failure-model artifact on held-out history.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use fieldpulse_models::cmapss::{self, protocol, Subset};
use fieldpulse_models::gbdt::GbdtParams;

/// Arguments of `fieldpulse eval`.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  fieldpulse eval cmapss --json\n  fieldpulse eval --model models/v1 --telemetry held-out/telemetry.csv --work-orders held-out/history.json"
)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: Option<EvalCommand>,
    #[command(flatten)]
    artifact: crate::train::EvalModelArgs,
}

/// Benchmarks `fieldpulse eval` can run.
#[derive(Debug, Subcommand)]
enum EvalCommand {
    /// NASA C-MAPSS turbofan RUL benchmark (train files → last test cycle, RUL cap 125, RMSE and PHM08 score).
    #[command(
        after_help = "Examples:\n  fieldpulse eval cmapss --subset FD001 --json\n  fieldpulse eval cmapss --data /srv/cmapss --tune"
    )]
    Cmapss(CmapssArgs),
    /// The anomaly detector on the shape corpus (flat, square, counts, seasonal, gaps, …): false
    /// alarms per 1,000 normal rows, rows flagged, and detection delay per injected anomaly kind.
    #[command(
        after_help = "Examples:\n  fieldpulse eval shapes\n  fieldpulse eval shapes --rows 50000 --json"
    )]
    Shapes(crate::eval_shapes::ShapesArgs),
}

/// Arguments of `fieldpulse eval cmapss`.
#[derive(Debug, Args)]
struct CmapssArgs {
    /// Directory holding train_FD00x / test_FD00x / RUL_FD00x (`.txt.gz` or
    /// `.txt`). Default: the repository's `data/cmapss` (the checkout this
    /// binary was built from, else `./data/cmapss`).
    #[arg(long, value_name = "DIR", env = CMAPSS_DATA_ENV)]
    data: Option<PathBuf>,
    /// One subset (FD001..FD004); all four when omitted.
    #[arg(long)]
    subset: Option<String>,
    /// Re-choose depth, leaf size and tree count by 5-fold cross-validation
    /// grouped by engine, on the training engines only, before the test.
    #[arg(long)]
    tune: bool,
    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// Environment variable that overrides the default C-MAPSS data directory
/// (the same as `--data DIR`).
pub const CMAPSS_DATA_ENV: &str = "FIELDPULSE_CMAPSS_DATA";

/// Where `eval cmapss` looks when neither `--data` nor [`CMAPSS_DATA_ENV`] is
/// given, in order: `data/cmapss` in the checkout this binary was compiled
/// from (so tests and `cargo run` work from any directory), then
/// `./data/cmapss` (a binary run from the root of another checkout).
pub fn cmapss_default_dirs() -> [PathBuf; 2] {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo_root = manifest.ancestors().nth(2).unwrap_or(manifest);
    [
        repo_root.join("data").join("cmapss"),
        PathBuf::from("data").join("cmapss"),
    ]
}

/// The C-MAPSS directory to read: `explicit` (from `--data` or
/// [`CMAPSS_DATA_ENV`]) when given, else the first existing directory of
/// `defaults`. Errors name the path(s) tried and how to choose another.
pub fn resolve_cmapss_dir(
    explicit: Option<PathBuf>,
    defaults: &[PathBuf],
) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        if dir.is_dir() {
            return Ok(dir);
        }
        bail!(
            "C-MAPSS data directory {} does not exist (given by --data or {CMAPSS_DATA_ENV}); \
             pass --data DIR with the directory holding train_FD001.txt.gz",
            dir.display()
        );
    }
    if let Some(dir) = defaults.iter().find(|d| d.is_dir()) {
        return Ok(dir.clone());
    }
    let tried: Vec<String> = defaults.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "C-MAPSS data directory not found (looked in {}); the repository ships it in data/cmapss, \
         or pass --data DIR (or set {CMAPSS_DATA_ENV}) with the directory holding train_FD001.txt.gz",
        tried.join(" and ")
    )
}

/// Published RMSE / score per subset (from the table in `data/README.md`).
const PUBLISHED: &[(&str, [(f64, f64); 4])] = &[
    (
        "Deep LSTM",
        [
            (16.14, 338.0),
            (24.49, 4450.0),
            (16.18, 852.0),
            (28.17, 5550.0),
        ],
    ),
    (
        "RVE (2022)",
        [
            (13.42, 324.0),
            (14.92, 1379.0),
            (12.51, 256.0),
            (16.37, 1846.0),
        ],
    ),
    (
        "ADL-DNN (2022)",
        [
            (13.05, 238.0),
            (17.33, 1149.0),
            (12.59, 281.0),
            (16.95, 1371.0),
        ],
    ),
    (
        "FFVE (2023)",
        [
            (12.31, 280.0),
            (12.55, 772.0),
            (12.43, 302.0),
            (14.08, 1149.0),
        ],
    ),
    (
        "DA-TCN (2021)",
        [
            (11.78, 229.0),
            (19.95, 1842.0),
            (11.56, 257.0),
            (18.23, 2317.0),
        ],
    ),
    (
        "MTSTAN",
        [
            (10.97, 175.0),
            (16.81, 1154.0),
            (10.90, 188.0),
            (18.85, 1446.0),
        ],
    ),
];

/// Runs `fieldpulse eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    match args.command {
        Some(EvalCommand::Cmapss(cmd)) => run_cmapss(cmd),
        Some(EvalCommand::Shapes(cmd)) => crate::eval_shapes::run(cmd),
        None => crate::train::run_eval_model(args.artifact),
    }
}

/// Booster settings for C-MAPSS: the winner of `--tune` (5-fold CV grouped
/// by engine, on the training files only) on three of the four subsets, and
/// tied on FD003 (depth 6, leaf 80, 150 trees); docs/models.md has the table.
/// Chosen before the test files were scored with them.
pub fn cmapss_default_params() -> GbdtParams {
    GbdtParams {
        n_trees: 150,
        learning_rate: 0.05,
        max_depth: 6,
        min_samples_leaf: 80,
        subsample: 0.8,
        colsample: 0.6,
        ..GbdtParams::default()
    }
}

fn run_cmapss(args: CmapssArgs) -> anyhow::Result<()> {
    let subsets: Vec<Subset> = match &args.subset {
        Some(s) => {
            vec![Subset::parse(s).with_context(|| format!("unknown subset `{s}` (FD001..FD004)"))?]
        }
        None => Subset::ALL.to_vec(),
    };
    let data_dir = resolve_cmapss_dir(args.data, &cmapss_default_dirs())?;
    let mut results = Vec::new();
    let mut tuning = serde_json::Map::new();
    for subset in subsets {
        eprintln!("[{subset}] loading {}", data_dir.display());
        let data = cmapss::load_subset(&data_dir, subset)?;
        let mut params = cmapss_default_params();
        if args.tune {
            eprintln!(
                "[{subset}] 5-fold grouped CV on {} training engines",
                data.train.len()
            );
            let cv = protocol::tune_default(&data.train, &params)?;
            let best = &cv[0];
            eprintln!(
                "[{subset}] CV best: depth {} leaf {} trees {} (CV RMSE {:.2})",
                best.max_depth, best.min_samples_leaf, best.n_trees, best.rmse
            );
            params.max_depth = best.max_depth;
            params.min_samples_leaf = best.min_samples_leaf;
            params.n_trees = best.n_trees;
            tuning.insert(subset.name().to_string(), serde_json::to_value(&cv)?);
        }
        eprintln!("[{subset}] fitting on {} engines", data.train.len());
        let res = protocol::evaluate_subset(&data, &params)?;
        eprintln!(
            "[{subset}] RMSE {:.2}  score {:.0}  ({} test engines, {:.2}s train)",
            res.rmse, res.score, res.n_test_engines, res.train_seconds
        );
        results.push(res);
    }
    if args.json {
        let mut out = serde_json::Map::new();
        for res in &results {
            let mut v = serde_json::to_value(res)?;
            if let Some(obj) = v.as_object_mut() {
                obj.remove("predicted");
                obj.remove("truth");
            }
            out.insert(res.subset.clone(), v);
        }
        if args.tune {
            out.insert("cv".into(), serde_json::Value::Object(tuning));
        }
        println!("{}", serde_json::Value::Object(out));
    } else {
        print_table(&results);
    }
    Ok(())
}

fn print_table(results: &[protocol::SubsetResult]) {
    let idx = |name: &str| Subset::parse(name).map(|s| s as usize).unwrap_or(0);
    print!("{:<18}", "method (RMSE/score)");
    for r in results {
        print!(" {:>16}", r.subset);
    }
    println!();
    print!("{:<18}", "fieldpulse GBDT");
    for r in results {
        print!(" {:>16}", format!("{:.2} / {:.0}", r.rmse, r.score));
    }
    println!();
    for (name, row) in PUBLISHED {
        print!("{name:<18}");
        for r in results {
            let (rmse, score) = row[idx(&r.subset)];
            print!(" {:>16}", format!("{rmse:.2} / {score:.0}"));
        }
        println!();
    }
    print!("{:<18}", "test engines");
    for r in results {
        print!(" {:>16}", r.n_test_engines);
    }
    println!();
    print!("{:<18}", "train seconds");
    for r in results {
        print!(" {:>16}", format!("{:.2}", r.train_seconds));
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_directory_wins_and_a_missing_one_names_path_and_flag() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let given = tmp.path().join("mine");
        let fallback = tmp.path().join("fallback");
        std::fs::create_dir_all(&fallback).expect("mkdir");
        let err = resolve_cmapss_dir(Some(given.clone()), std::slice::from_ref(&fallback))
            .expect_err("a missing --data directory must not fall back silently")
            .to_string();
        assert!(err.contains(&given.display().to_string()), "{err}");
        assert!(err.contains("--data"), "{err}");
        assert!(err.contains(CMAPSS_DATA_ENV), "{err}");
        std::fs::create_dir_all(&given).expect("mkdir");
        let got = resolve_cmapss_dir(Some(given.clone()), std::slice::from_ref(&fallback))
            .expect("existing --data directory");
        assert_eq!(got, given);
    }

    #[test]
    fn defaults_are_tried_in_order_and_all_are_named_when_none_exists() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let first = tmp.path().join("built-in");
        let second = tmp.path().join("cwd");
        let defaults = [first.clone(), second.clone()];
        let err = resolve_cmapss_dir(None, &defaults)
            .expect_err("no directory exists")
            .to_string();
        assert!(err.contains(&first.display().to_string()), "{err}");
        assert!(err.contains(&second.display().to_string()), "{err}");
        assert!(err.contains("--data DIR"), "{err}");
        std::fs::create_dir_all(&second).expect("mkdir");
        assert_eq!(resolve_cmapss_dir(None, &defaults).expect("second"), second);
        std::fs::create_dir_all(&first).expect("mkdir");
        assert_eq!(resolve_cmapss_dir(None, &defaults).expect("first"), first);
    }

    #[test]
    fn the_built_in_default_is_this_checkouts_data_directory() {
        let [built_in, cwd] = cmapss_default_dirs();
        assert_eq!(cwd, Path::new("data/cmapss"));
        assert!(
            built_in.join("train_FD001.txt.gz").is_file(),
            "the repository must ship C-MAPSS at {} (see data/README.md)",
            built_in.display()
        );
    }
}
