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

/// `fieldpulse simulate` of the 12-asset, 200-day fleet the training tests
/// share, into `dir/sim`; its JSON summary.
fn simulate_fleet(dir: &Path) -> serde_json::Value {
    json(&fieldpulse(
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
        dir,
    ))
}

#[test]
fn simulate_train_score_and_eval_produce_a_usable_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sim = simulate_fleet(dir.path());
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

/// The simulator's Work Order fixture as another CMMS would export it: one
/// CSV row per Work Order with CMMS type codes, minus every Work Order of
/// `drop_asset`, plus one row with a bad date and one with an unknown type.
/// Returns the CSV and `(asset, created)` of every corrective Work Order kept.
fn as_cmms_csv(fixture: &serde_json::Value, drop_asset: &str) -> (String, Vec<(String, String)>) {
    let objects = fixture["objects"].as_array().expect("objects");
    let of = |ty: &str| -> Vec<serde_json::Value> {
        objects
            .iter()
            .filter(|o| o["type"] == ty)
            .flat_map(|o| o["records"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let work_types: std::collections::HashMap<String, String> = of("WorkType")
        .iter()
        .map(|w| {
            let name = w["Name"].as_str().expect("name").to_string();
            (format!("@{}", w["@ref"].as_str().expect("ref")), name)
        })
        .collect();
    let mut csv = String::from("Equipment;Reported;Start;Done;WO Type;Failure Code;State\n");
    let mut corrective = Vec::new();
    for wo in of("WorkOrder") {
        let asset_name = wo["AssetId"]
            .as_str()
            .expect("asset")
            .trim_start_matches('@');
        if asset_name == drop_asset {
            continue;
        }
        let work_type = &work_types[wo["WorkTypeId"].as_str().expect("work type")];
        let subject = wo["Subject"].as_str().unwrap_or("");
        let code = subject
            .strip_prefix('[')
            .and_then(|s| s.split_once(']'))
            .map_or("", |(c, _)| c);
        let cmms_type = if work_type.starts_with("Corrective") {
            "CM"
        } else if work_type.starts_with("Preventive") {
            "PM"
        } else {
            "INSP"
        };
        let created = wo["CreatedDate"].as_str().expect("created");
        let state = if wo["Status"] == "Canceled" {
            "CANC"
        } else {
            "DONE"
        };
        if cmms_type == "CM" && state == "DONE" {
            corrective.push((asset_name.to_string(), created.to_string()));
        }
        csv.push_str(&format!(
            "{asset_name};{created};{};{};{cmms_type};{code};{state}\n",
            wo["StartDate"].as_str().unwrap_or(""),
            wo["EndDate"].as_str().unwrap_or(""),
        ));
    }
    let asset = &corrective.first().expect("a corrective work order").0;
    csv.push_str(&format!("{asset};31.02.2026;;;CM;BRG;DONE\n"));
    csv.push_str(&format!("{asset};2026-01-01 08:00;;;Emergency;;DONE\n"));
    (csv, corrective)
}

const CMMS_MAP: &str = r#"delimiter = ";"

[columns]
asset = "Equipment"
created = "Reported"
started = "Start"
completed = "Done"
type = "WO Type"
failure_code = "Failure Code"
status = "State"

[types]
corrective = ["CM"]
preventive = ["PM"]
other = ["INSP"]

[status]
canceled = ["CANC"]
"#;

/// `train` on a CMMS CSV export with its column map, dispatcher feedback and
/// an export date: rejected rows, the asset missing from the export and what
/// the feedback did are in the JSON summary and the model card.
#[test]
fn train_reads_a_cmms_csv_export_and_dispatcher_feedback() {
    let dir = tempfile::tempdir().expect("tempdir");
    simulate_fleet(dir.path());
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("sim/history.json")).expect("history"),
    )
    .expect("history json");
    let telemetry = std::fs::read_to_string(dir.path().join("sim/telemetry.csv")).expect("csv");
    let mut names: Vec<&str> = telemetry
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    names.sort_unstable();
    names.dedup();
    let dropped = names[0];
    let (csv, corrective) = as_cmms_csv(&fixture, dropped);
    let (kept, corrective_at) = &corrective[0];
    std::fs::write(dir.path().join("wo.csv"), csv).expect("write");
    std::fs::write(dir.path().join("map.toml"), CMMS_MAP).expect("write");
    std::fs::write(
        dir.path().join("feedback.csv"),
        format!(
            "asset,mode,label,at,at_ms,source_object,source_id,failure_code,detail\n\
             {kept},,failure,{corrective_at},,WorkOrder,0WO1,,\n\
             {kept},bearing,false_alarm,2026-03-01T00:00:00Z,,Case,500A,,\"Closed - Not a Problem\"\n\
             ghost-0001,,failure,2026-03-01T00:00:00Z,,WorkOrder,0WO2,,\n"
        ),
    )
    .expect("write");
    let trained = json(&fieldpulse(
        &[
            "train",
            "--telemetry",
            "sim/telemetry.csv",
            "--work-orders",
            "wo.csv",
            "--work-order-map",
            "map.toml",
            "--feedback",
            "feedback.csv",
            "--observed-until",
            "2030-01-01",
            "--out",
            "model",
            "--trees",
            "25",
            "--json",
        ],
        dir.path(),
    ));
    let labels = &trained["labels"];
    assert_eq!(
        labels["assets_without_history"],
        serde_json::json!([dropped]),
        "{labels}"
    );
    assert_eq!(labels["assets_without_history_excluded"], true);
    assert_eq!(labels["n_assets_without_history"], 1);
    assert_eq!(labels["observed_until"], "2030-01-01T00:00:00Z");
    let rejected = &labels["work_orders"]["rejected"];
    assert_eq!(rejected["bad_date"], 1, "{labels}");
    assert_eq!(rejected["unknown_type"], 1, "{labels}");
    let feedback = &labels["feedback"];
    assert_eq!(feedback["n_labels"], 3, "{labels}");
    assert_eq!(feedback["failures_already_known"], 1, "{labels}");
    assert_eq!(feedback["false_alarms_applied"], 1, "{labels}");
    assert_eq!(feedback["unknown_asset"], 1, "{labels}");
    assert!(
        labels["n_fit_labels_excluded"].as_u64().expect("count") > 0,
        "windows near the end are excluded: {labels}"
    );
    assert!(trained["test"]["classifiers"]
        .as_array()
        .is_some_and(|c| !c.is_empty()));
    let card: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("model/model_card.json")).expect("card"),
    )
    .expect("card json");
    assert_eq!(card["labels"], *labels);
    let eval = json(&fieldpulse(
        &[
            "eval",
            "--model",
            "model",
            "--telemetry",
            "sim/telemetry.csv",
            "--work-orders",
            "wo.csv",
            "--work-order-map",
            "map.toml",
            "--json",
        ],
        dir.path(),
    ));
    assert_eq!(
        eval["assets_without_history"],
        serde_json::json!([dropped]),
        "{eval}"
    );
    assert!(eval["metrics"]["n_assets"].as_u64().expect("assets") < names.len() as u64);

    // A misspelt key in the map names the file and the key.
    std::fs::write(
        dir.path().join("bad.toml"),
        CMMS_MAP.replace("failure_code =", "failure_cod ="),
    )
    .expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_fieldpulse"))
        .args([
            "train",
            "--telemetry",
            "sim/telemetry.csv",
            "--work-orders",
            "wo.csv",
            "--work-order-map",
            "bad.toml",
            "--out",
            "model2",
        ])
        .current_dir(dir.path())
        .output()
        .expect("run fieldpulse");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "must fail: {stderr}");
    assert!(
        stderr.contains("bad.toml") && stderr.contains("failure_cod"),
        "{stderr}"
    );
}

/// The repository's own `data/cmapss`; fails loudly when it is missing.
fn cmapss_dir() -> std::path::PathBuf {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/cmapss");
    assert!(
        data.join("train_FD001.txt.gz").is_file(),
        "C-MAPSS data missing at {}: the repository ships it in data/cmapss (see data/README.md)",
        data.display()
    );
    data
}

/// `eval cmapss` with no `--data`, run from a directory with no `data/`:
/// it must find the repository's `data/cmapss` on its own. The small grid
/// keeps it quick; the JSON holds both protocols, tagged, one prediction per
/// test engine and every grid point's cross-validated RMSE.
#[test]
fn eval_cmapss_prints_the_contract_fields_for_one_subset() {
    cmapss_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_fieldpulse"))
        .args([
            "eval", "cmapss", "--subset", "FD001", "--grid", "quick", "--folds", "3", "--cuts",
            "2", "--json",
        ])
        .env_remove("FIELDPULSE_CMAPSS_DATA")
        .current_dir(dir.path())
        .output()
        .expect("run fieldpulse");
    assert!(
        output.status.success(),
        "eval cmapss failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = json(&output);
    let fd001 = &out["FD001"];
    assert_eq!(fd001["n_test_engines"], 100);
    for key in ["rmse", "score", "train_seconds"] {
        assert!(fd001[key].as_f64().is_some(), "{key} in {out}");
    }
    assert!(fd001["rmse"].as_f64().unwrap_or(f64::MAX) < 16.0, "{out}");
    let protocols = fd001["protocols"].as_array().expect("protocols");
    let tags: Vec<&str> = protocols
        .iter()
        .filter_map(|p| p["protocol"].as_str())
        .collect();
    assert_eq!(tags, ["as_given", "capped"]);
    assert_eq!(protocols[0]["rmse"], fd001["rmse"]);
    assert_eq!(protocols[1]["cap"], fd001["chosen"]["cap"]);
    let engines = fd001["engines"].as_array().expect("engines");
    assert_eq!(engines.len(), 100);
    for key in [
        "unit",
        "cycles_seen",
        "predicted_rul",
        "true_rul",
        "true_rul_capped",
    ] {
        assert!(engines[0][key].is_number(), "{key} in {}", engines[0]);
    }
    let cv = &fd001["cv"];
    let points = cv["points"].as_array().expect("cv points");
    assert_eq!(points.len(), 6, "the quick grid");
    assert!(points
        .iter()
        .all(|p| p["rmse"].is_number() && p["rmse_sd"].is_number()));
    let chosen = &points[cv["chosen_index"].as_u64().expect("index") as usize];
    for key in [
        "cap",
        "max_depth",
        "min_samples_leaf",
        "learning_rate",
        "n_trees",
    ] {
        assert_eq!(chosen[key], fd001["chosen"][key], "{key}");
    }
}

/// A directory that is not there, by flag or by environment, is an error
/// naming it and the flag, never a silent fallback to the default.
#[test]
fn eval_cmapss_with_a_missing_directory_names_it_and_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-cmapss");
    let missing_text = missing.to_str().expect("utf8 path");
    let by_flag = Command::new(env!("CARGO_BIN_EXE_fieldpulse"))
        .args(["eval", "cmapss", "--data", missing_text, "--json"])
        .env_remove("FIELDPULSE_CMAPSS_DATA")
        .current_dir(dir.path())
        .output()
        .expect("run fieldpulse");
    let by_env = Command::new(env!("CARGO_BIN_EXE_fieldpulse"))
        .args(["eval", "cmapss", "--json"])
        .env("FIELDPULSE_CMAPSS_DATA", &missing)
        .current_dir(dir.path())
        .output()
        .expect("run fieldpulse");
    for output in [by_flag, by_env] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "must fail: {stderr}");
        assert!(output.stdout.is_empty(), "no JSON on failure");
        assert!(stderr.contains(missing_text), "{stderr}");
        assert!(stderr.contains("--data"), "{stderr}");
    }
}

/// A private mosquitto on a free loopback port, killed on drop.
struct Broker {
    child: std::process::Child,
    port: u16,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.is_file())
            .unwrap_or_else(|| "mosquitto".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"),
        )
        .expect("config");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .spawn()
            .expect("mosquitto must be installed for this test (apt-get install mosquitto)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        while std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(100))
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "mosquitto did not listen within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Broker { child, port }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Needs the `mosquitto` binary (CI installs it).
#[test]
fn simulate_publishes_every_reading_over_mqtt_and_waits_for_the_acks() {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(dir.path());
    let mut opts = MqttOptions::new("reliability-test-sub", "127.0.0.1", broker.port);
    opts.set_keep_alive(std::time::Duration::from_secs(30));
    let (client, mut connection) = Client::new(opts, 64);
    client
        .subscribe("sensors/#", QoS::AtLeastOnce)
        .expect("subscribe");
    // Wait for the SUBACK before publishing starts.
    for event in connection.iter() {
        if let Ok(Event::Incoming(Packet::SubAck(_))) = event {
            break;
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send((p.topic, p.payload.to_vec())).is_err() {
                        break;
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    let broker_arg = format!("127.0.0.1:{}", broker.port);
    let out = json(&fieldpulse(
        &[
            "simulate",
            "--assets",
            "3",
            "--days",
            "2",
            "--out",
            "sim",
            "--broker",
            &broker_arg,
            "--speedup",
            "0",
            "--json",
        ],
        dir.path(),
    ));
    let readings = out["readings"].as_u64().expect("readings");
    assert_eq!(out["mqtt"]["published"].as_u64(), Some(readings), "{out}");
    assert_eq!(out["mqtt"]["acked"].as_u64(), Some(readings), "{out}");
    let mut received = 0;
    while received < readings {
        let (topic, payload) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("every published reading reaches the subscriber");
        assert!(topic.starts_with("sensors/"), "{topic}");
        let value: serde_json::Value = serde_json::from_slice(&payload).expect("JSON payload");
        assert!(value["ts"].as_i64().is_some(), "{value}");
        received += 1;
    }
    client.disconnect().expect("disconnect");
    receiver.join().expect("receiver thread");
}

/// A reader that has gone away (`| head -1`) ends a one-shot command
/// quietly: no panic message, killed by SIGPIPE like other Unix tools.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    use std::os::unix::process::ExitStatusExt;

    // A pipe whose reading end is already closed: the first write fails.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_fieldpulse"))
        .args(["eval", "shapes", "--rows", "2000"])
        .stdout(writer)
        .output()
        .expect("run fieldpulse");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // SIGPIPE is 13 on Linux and the BSDs.
    assert_eq!(
        output.status.signal(),
        Some(13),
        "{:?}: {stderr}",
        output.status
    );
}

#[test]
fn train_and_eval_read_the_simulated_parquet_archive_and_skip_days_outside_the_window() {
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
            "--archive",
            "archive",
            "--json",
        ],
        dir.path(),
    ));
    assert!(!dir.path().join("sim/telemetry.csv").exists());
    assert!(dir
        .path()
        .join("archive/day=2026-01-01/part-0.parquet")
        .is_file());
    let trained = json(&fieldpulse(
        &[
            "train",
            "--telemetry",
            "archive",
            "--work-orders",
            "sim/history.json",
            "--out",
            "model",
            "--trees",
            "25",
            "--no-challengers",
            "--json",
        ],
        dir.path(),
    ));
    let telemetry = &trained["telemetry"];
    assert_eq!(telemetry["kind"], "archive", "{telemetry}");
    assert_eq!(telemetry["layout"], "long");
    assert_eq!(telemetry["partitions_read"], 200, "{telemetry}");
    assert_eq!(telemetry["rows"], sim["readings"], "{telemetry}");
    assert_eq!(telemetry["rejected"], serde_json::json!({}), "{telemetry}");
    assert!(
        trained["test"]["classifiers"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{trained}"
    );

    // A window: days outside it are never opened; eval reads the archive too.
    let eval = json(&fieldpulse(
        &[
            "eval",
            "--model",
            "model",
            "--telemetry",
            "archive",
            "--from",
            "2026-05-01",
            "--to",
            "2026-06-01",
            "--work-orders",
            "sim/history.json",
            "--json",
        ],
        dir.path(),
    ));
    let telemetry = &eval["telemetry"];
    assert_eq!(telemetry["partitions_read"], 31, "{telemetry}");
    assert_eq!(telemetry["partitions_skipped"], 169, "{telemetry}");
    // Each of the 31 files once per pass, plus the first one's footer for
    // the layout.
    assert_eq!(telemetry["file_opens"], 2 * 31 + 1, "{telemetry}");
    assert!(
        eval["metrics"]["n_rows"].as_u64().is_some_and(|n| n > 0),
        "{eval}"
    );
}
