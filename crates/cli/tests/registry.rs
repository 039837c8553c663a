//! The retraining loop's promotion and scoring guards through the real
//! binary: `train --registry`, `models list|add|promote|rollback`, and
//! `score` refusing missing history and a foreign cadence, flagging warm-up
//! rows and continuing from `--state`.

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldpulse"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run fieldpulse")
}

fn ok(args: &[&str], dir: &Path) -> serde_json::Value {
    let out = run(args, dir);
    assert!(
        out.status.success(),
        "fieldpulse {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn fails(args: &[&str], dir: &Path) -> String {
    let out = run(args, dir);
    assert!(!out.status.success(), "fieldpulse {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn simulate(dir: &Path, out: &str, days: &str, interval: &str) {
    ok(
        &[
            "simulate",
            "--assets",
            "8",
            "--days",
            days,
            "--interval",
            interval,
            "--seed",
            "9",
            "--wear-speedup",
            "1.5",
            "--out",
            out,
            "--json",
        ],
        dir,
    );
}

fn train(dir: &Path, out: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "train",
        "--telemetry",
        "sim/telemetry.csv",
        "--work-orders",
        "sim/history.json",
        "--out",
        out,
        "--trees",
        "15",
        "--json",
    ];
    args.extend_from_slice(extra);
    ok(&args, dir)
}

/// (header, data rows) of a CSV.
fn csv(path: &Path) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(path).expect("csv");
    let mut lines = text.lines().map(str::to_string);
    let header = lines.next().expect("header");
    (header, lines.collect())
}

#[test]
fn train_registers_and_models_promote_rollback_and_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    simulate(d, "sim", "150", "4h");
    let t1 = train(d, "m1", &["--registry", "reg"]);
    assert_eq!(t1["registry_version"], "v1", "{t1}");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("m1/model_card.json")).expect("card"))
            .expect("json");
    assert_eq!(card["training_cadence"]["median_interval_s"], 14_400.0);
    assert!(
        card["code_version"]["crate_version"].is_string(),
        "{}",
        card["code_version"]
    );
    assert!(
        card["limitations"].as_array().is_some_and(|l| l.len() >= 3),
        "{}",
        card["limitations"]
    );
    assert!(card["data_fingerprint"]
        .as_str()
        .is_some_and(|f| f.starts_with("fnv1a64:")));

    train(d, "m2", &["--target-precision", "0.6"]);
    let added = ok(
        &[
            "models",
            "add",
            "--registry",
            "reg",
            "--artifact",
            "m2",
            "--json",
        ],
        d,
    );
    assert_eq!(added["version"], "v2");
    let err = fails(
        &["models", "add", "--registry", "reg", "--artifact", "m2"],
        d,
    );
    assert!(err.contains("already registered as v2"), "{err}");

    let err = fails(&["models", "list", "--registry", "nowhere"], d);
    assert!(err.contains("no registry at nowhere"), "{err}");
    let err = fails(&["models", "rollback", "--registry", "reg"], d);
    assert!(err.contains("nothing to roll back to"), "{err}");
    ok(
        &[
            "models",
            "promote",
            "--registry",
            "reg",
            "v1",
            "--by",
            "ana",
        ],
        d,
    );
    let p = ok(
        &[
            "models",
            "promote",
            "--registry",
            "reg",
            "v2",
            "--note",
            "higher precision",
            "--json",
        ],
        d,
    );
    assert_eq!(
        (p["version"].as_str(), p["from"].as_str()),
        (Some("v2"), Some("v1"))
    );
    let list = ok(&["models", "list", "--registry", "reg", "--json"], d);
    assert_eq!(list["champion"], "v2");
    let versions = list["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["status"], "archived");
    assert_eq!(versions[1]["status"], "champion");
    assert!(
        versions[0]["metrics"]["rul_rmse_days"].is_number(),
        "{list}"
    );
    assert!(versions[0]["data_fingerprint"].is_string(), "{list}");
    assert_eq!(list["history"][1]["note"], "higher precision");

    let r = ok(&["models", "rollback", "--registry", "reg", "--json"], d);
    assert_eq!(
        (r["version"].as_str(), r["from"].as_str()),
        (Some("v1"), Some("v2"))
    );
    let human = run(&["models", "list", "--registry", "reg"], d);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("v1") && text.contains("champion"), "{text}");

    // The next training run is compared with the champion (v1) in its
    // challengers table; the first run, without a champion, said so.
    let none = &t1["challengers"]["targets"][0]["results"][1];
    assert_eq!(none["name"], "champion");
    assert_eq!(none["note"], "no promoted model given");
    let t3 = train(d, "m3", &["--registry", "reg", "--version", "v3"]);
    let any = &t3["challengers"]["targets"][0];
    assert_eq!(any["mode"], "any");
    let champion = &any["results"][1];
    assert_eq!(champion["name"], "champion");
    assert_eq!(champion["note"], t1["model_version"], "{champion}");
    assert!(champion["average_precision"]["value"].is_number(), "{any}");
    let names: Vec<&str> = any["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "booster",
            "champion",
            "age_only",
            "logistic_regression",
            "random_forest"
        ]
    );

    // A registry written by a newer build is refused, and left alone.
    let index = d.join("reg/registry.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index).expect("index")).expect("json");
    value["format_version"] = 99.into();
    std::fs::write(&index, value.to_string()).expect("write");
    let err = fails(&["models", "list", "--registry", "reg"], d);
    assert!(
        err.contains("format version 99") && err.contains("newer fieldpulse"),
        "{err}"
    );
    fails(&["models", "promote", "--registry", "reg", "v2"], d);
    assert_eq!(
        std::fs::read_to_string(&index).expect("index"),
        value.to_string()
    );
}

#[test]
fn score_refuses_what_it_cannot_score_and_flags_warm_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    simulate(d, "sim", "200", "4h");
    train(d, "m", &[]);
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("m/model.json")).expect("model"))
            .expect("json");
    let n_stream = model["schema"]["stream_columns"]
        .as_array()
        .expect("cols")
        .len() as u64;
    let reads_history = std::iter::once(&model["rul"])
        .chain(
            model["classifiers"]
                .as_array()
                .expect("cl")
                .iter()
                .map(|c| &c["booster"]),
        )
        .flat_map(|b| b["trees"].as_array().expect("trees").iter())
        .flat_map(|t| t["nodes"].as_array().expect("nodes").iter())
        .any(|n| {
            n["feature"]
                .as_u64()
                .is_some_and(|f| f >= n_stream && f != u64::from(u32::MAX))
        });
    assert!(reads_history, "this model should read history features");

    // (a) Work Order history.
    let base = ["score", "--model", "m", "--input", "sim/telemetry.csv"];
    let err = fails(&[&base[..], &["--output", "s.csv"]].concat(), d);
    assert!(
        err.contains("--work-orders") && err.contains("--allow-missing-history"),
        "{err}"
    );
    let s = ok(
        &[
            &base[..],
            &[
                "--allow-missing-history",
                "--output",
                "nohist.csv",
                "--json",
            ],
        ]
        .concat(),
        d,
    );
    assert_eq!(s["no_history_rows"], s["rows"], "{s}");
    assert!(s["warnings"][0]
        .as_str()
        .is_some_and(|w| w.contains("--allow-missing-history")));

    // (c) Warm-up flags, and --state continuing bit-identically.
    let full = ok(
        &[
            &base[..],
            &[
                "--work-orders",
                "sim/history.json",
                "--output",
                "full.csv",
                "--json",
            ],
        ]
        .concat(),
        d,
    );
    assert_eq!(full["warnings"].as_array().map(Vec::len), Some(0), "{full}");
    assert_eq!(full["training_cadence_s"], 14_400.0);
    let (header, rows) = csv(&d.join("full.csv"));
    assert!(header.starts_with("asset,ts,p_any_7d"), "{header}");
    assert!(
        header.ends_with(",rul_days,warmup,no_history,cadence_mismatch"),
        "{header}"
    );
    let warm_n = full["warmup_readings"].as_u64().expect("warmup_readings");
    let first = rows.first().expect("rows");
    assert!(
        first.ends_with(",1,0,0"),
        "an asset's first row is warm-up: {first}"
    );
    assert_eq!(full["warmup_rows"].as_u64(), Some(8 * warm_n), "{full}");

    let (tel_header, tel) = csv(&d.join("sim/telemetry.csv"));
    let half = tel.len() / 2;
    for (name, part) in [("a.csv", &tel[..half]), ("b.csv", &tel[half..])] {
        std::fs::write(d.join(name), format!("{tel_header}\n{}\n", part.join("\n"))).expect("w");
    }
    let mut outputs = Vec::new();
    for (input, output) in [("a.csv", "sa.csv"), ("b.csv", "sb.csv")] {
        let s = ok(
            &[
                "score",
                "--model",
                "m",
                "--input",
                input,
                "--work-orders",
                "sim/history.json",
                "--state",
                "state.bin",
                "--output",
                output,
                "--json",
            ],
            d,
        );
        outputs.push(s);
    }
    assert_eq!(outputs[1]["state_assets_restored"], 8, "{}", outputs[1]);
    assert_eq!(
        outputs[1]["warmup_rows"], 0,
        "the state carried over: {}",
        outputs[1]
    );
    let (_, b_rows) = csv(&d.join("sb.csv"));
    assert_eq!(
        b_rows.as_slice(),
        &rows[half..],
        "continued scores equal the uninterrupted run"
    );

    // (b) Cadence: 30-minute telemetry against a 4-hour model.
    simulate(d, "fast", "20", "30m");
    let fast = [
        "score",
        "--model",
        "m",
        "--input",
        "fast/telemetry.csv",
        "--work-orders",
        "fast/history.json",
    ];
    let err = fails(&[&fast[..], &["--output", "f.csv"]].concat(), d);
    assert!(
        err.contains("--allow-cadence-mismatch") && err.contains("14400 s"),
        "{err}"
    );
    let s = ok(
        &[
            &fast[..],
            &["--allow-cadence-mismatch", "--output", "f.csv", "--json"],
        ]
        .concat(),
        d,
    );
    assert_eq!(s["cadence_mismatch_rows"], s["rows"], "{s}");
    assert_eq!(s["input_cadence_s"], 1800.0);
    let (_, f_rows) = csv(&d.join("f.csv"));
    assert!(f_rows.iter().all(|r| r.ends_with(",1")), "every row marked");
}
