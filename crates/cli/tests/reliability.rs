//! The reliability engineer's loop through the real binary: `simulate` →
//! `train` → `score` → `eval --model`, plus `eval cmapss` on the public data.

use std::path::Path;
use std::process::{Command, Output};

fn fieldpulse(args: &[&str], dir: &Path) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_fieldpulse"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run fieldpulse");
    assert!(
        output.status.success(),
        "fieldpulse {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

#[test]
fn simulate_train_score_and_eval_produce_a_usable_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = json(&fieldpulse(
        &[
            "simulate",
            "--assets",
            "12",
            "--days",
            "200",
            "--interval",
            "4h",
            "--seed",
            "9",
            "--wear-speedup",
            "1.5",
            "--out",
            "sim",
            "--json",
        ],
        dir.path(),
    ));
    assert!(sim["failures"].as_u64().expect("failures") > 0, "{sim}");
    let trained = json(&fieldpulse(
        &[
            "train",
            "--telemetry",
            "sim/telemetry.csv",
            "--work-orders",
            "sim/history.json",
            "--out",
            "model",
            "--trees",
            "25",
            "--json",
        ],
        dir.path(),
    ));
    assert!(
        trained["test"]["classifiers"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{trained}"
    );
    for file in ["model.json", "model_card.json", "report.html"] {
        assert!(
            dir.path().join("model").join(file).is_file(),
            "{file} missing"
        );
    }
    let card: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("model/model_card.json")).expect("card"),
    )
    .expect("card json");
    for key in [
        "version",
        "data_fingerprint",
        "features",
        "training_window",
        "metrics",
        "thresholds",
        "created_by",
        "created_at_unix",
    ] {
        assert!(!card[key].is_null(), "model card lacks {key}");
    }
    let report = std::fs::read_to_string(dir.path().join("model/report.html")).expect("report");
    assert!(
        report.matches("<svg").count() >= 4,
        "report needs its four plots"
    );

    let scored = json(&fieldpulse(
        &[
            "score",
            "--model",
            "model",
            "--input",
            "sim/telemetry.csv",
            "--work-orders",
            "sim/history.json",
            "--output",
            "scores.csv",
            "--json",
        ],
        dir.path(),
    ));
    let rows = std::fs::read_to_string(dir.path().join("scores.csv")).expect("scores");
    assert_eq!(
        rows.lines().count() as u64,
        scored["rows"].as_u64().expect("rows") + 1
    );
    assert!(rows
        .lines()
        .next()
        .is_some_and(|h| h.starts_with("asset,ts,p_any_7d")));

    let eval = json(&fieldpulse(
        &[
            "eval",
            "--model",
            "model",
            "--telemetry",
            "sim/telemetry.csv",
            "--work-orders",
            "sim/history.json",
            "--json",
        ],
        dir.path(),
    ));
    assert!(
        eval["metrics"]["rul_rmse_days"].as_f64().is_some(),
        "{eval}"
    );
}

/// Needs `../shared/data/cmapss` beside the project root; fails loudly
/// without it.
#[test]
fn eval_cmapss_prints_the_contract_fields_for_one_subset() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cmapss");
    assert!(
        data.join("train_FD001.txt.gz").is_file(),
        "C-MAPSS data missing at {}",
        data.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = json(&fieldpulse(
        &[
            "eval",
            "cmapss",
            "--data",
            data.to_str().expect("utf8 path"),
            "--subset",
            "FD001",
            "--json",
        ],
        dir.path(),
    ));
    let fd001 = &out["FD001"];
    assert_eq!(fd001["n_test_engines"], 100);
    for key in ["rmse", "score", "train_seconds"] {
        assert!(fd001[key].as_f64().is_some(), "{key} in {out}");
    }
    assert!(fd001["rmse"].as_f64().unwrap_or(f64::MAX) < 16.0, "{out}");
}
