//! `fieldpulse demo` end to end: the real binary, broker, edge, cloud
//! processor and Salesforce emulator, at a small size.

use std::process::Command;

use fieldpulse_tests::fieldpulse_bin;

/// Runs `fieldpulse demo --json --out <tmp> <args>`, checks it succeeded, and
/// returns the printed summary after checking `summary.json` holds the same.
fn run_demo(args: &[&str]) -> serde_json::Value {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(fieldpulse_bin())
        .args(["demo", "--json"])
        .args(args)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "demo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk, summary);
    summary
}

#[test]
fn demo_accounts_for_every_reading_creates_cases_and_writes_its_summary() {
    let summary = run_demo(&[
        "--assets",
        "40",
        "--days",
        "20",
        "--warmup-days",
        "30",
        "--history-assets",
        "48",
        "--duration",
        "8s",
    ]);
    let count = |key: &str| {
        summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {summary}"))
    };
    for key in [
        "readings_published",
        "readings_ingested",
        "readings_lost",
        "duplicates_dropped",
        "rejected",
        "cases_created",
        "asset_alerts",
        "pm_campaign_drafts",
        "ai_insights",
        "case_precision",
        "case_recall",
        "median_lead_time_hours",
        "false_alarms",
        "latency_ms_p50",
        "latency_ms_p99",
    ] {
        assert!(summary.get(key).is_some(), "{key} missing in {summary}");
    }
    assert_eq!(count("readings_lost"), 0);
    assert_eq!(count("readings_duplicated"), 0);
    assert!(count("readings_published") > 1_000);
    assert_eq!(count("readings_ingested"), count("readings_published"));
    // The cloud's Parquet archive holds every ingested reading once, across
    // the cloud's kill and restart (read back from the part files' footers).
    assert_eq!(
        count("archive_rows"),
        count("readings_ingested"),
        "{summary}"
    );
    assert!(count("archive_files") >= count("archive_days"), "{summary}");
    assert!(count("archive_days") >= 50, "{summary}");
    assert_eq!(
        count("messages_acknowledged_by_broker"),
        count("messages_published")
    );
    // Every malformed payload was rejected, none silently. The edge agent is
    // killed with SIGKILL once: its counters are read just before, and the
    // broker redelivers what it had not PUBACKed, which the next life counts
    // again. So the count is exact up to the messages in flight at the kill.
    let rejected: u64 = summary["edge_rejected"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(count("rejected"), rejected);
    assert_eq!(count("edge_kills"), 1, "{summary}");
    let malformed = count("malformed_messages_published");
    assert!(
        rejected.abs_diff(malformed) <= 25,
        "{rejected} readings rejected, {malformed} malformed published"
    );
    // The outage (uplink cut, cloud killed and restarted) made the edge spool
    // and backfill.
    assert!(count("cloud_readings_historical") > 0);
    assert!(count("edge_send_failures") > 0);
    // The model raised Cases; every Case has its alert and its audit trail.
    let cases = count("cases_created");
    assert!(cases >= 1, "{summary}");
    assert_eq!(summary["cases"].as_array().unwrap().len() as u64, cases);
    assert!(count("asset_alerts") >= cases);
    assert!(count("ai_insights") >= cases);
    for c in summary["cases"].as_array().unwrap() {
        for field in ["asset", "priority", "mode", "opened"] {
            assert!(
                !c[field].as_str().unwrap_or_default().is_empty(),
                "{field} in {c}"
            );
        }
    }
    // Every Case has exactly one Asset_Alert__c and its audit trail.
    for c in summary["cases"].as_array().unwrap() {
        assert_eq!(c["asset_alerts"].as_u64(), Some(1), "{c}");
        assert!(c["ai_insights"].as_u64().unwrap() >= 1, "{c}");
    }
    // Every failure mode the simulator produced got at least one Case.
    let failure_modes = summary["failures_by_mode"].as_object().unwrap();
    assert!(!failure_modes.is_empty(), "{summary}");
    for mode in failure_modes.keys() {
        assert!(
            summary["cases"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["mode"] == mode.as_str()),
            "no Case for failure mode {mode}: {summary}"
        );
    }
    // Quality floors, at this size (40 assets, 20 judged days, about 15
    // failures). By chance, an alarm on an asset and mode is followed by that
    // failure within the 14-day look-ahead about 1 time in 10 (15 failures /
    // (40 assets x 3 modes x 20 days) x 14 days), so a precision of 0.4 is four
    // times chance; seeds 7 to 9 measured 0.59 to 0.87 precision and 0.39 to
    // 0.64 recall (the full-size demo: 0.69 and 0.67).
    let fraction = |key: &str| {
        let x = summary[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{key} {x}");
        x
    };
    assert!(fraction("case_precision") >= 0.4, "{summary}");
    assert!(fraction("case_recall") >= 0.25, "{summary}");
    assert!(count("latency_ms_p99") >= count("latency_ms_p50"));
    assert!(
        summary["edge_finished_in_grace"].as_bool().unwrap(),
        "{summary}"
    );
}

/// Runs a small demo without injected faults and returns its Cases as
/// (asset, mode, priority, opened, predicted failure) lines.
fn cases_without_faults(seed: &str) -> Vec<String> {
    let summary = run_demo(&[
        "--no-faults",
        "--assets",
        "30",
        "--days",
        "15",
        "--warmup-days",
        "25",
        "--history-assets",
        "24",
        "--duration",
        "4s",
        "--seed",
        seed,
    ]);
    assert_eq!(summary["readings_lost"], 0);
    assert_eq!(summary["faults_injected"], false);
    summary["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {} {}",
                c["asset"], c["mode"], c["priority"], c["opened"], c["predicted_failure"]
            )
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_cases() {
    let first = cases_without_faults("11");
    assert!(!first.is_empty(), "the run raised Cases");
    // Batch boundaries and timing differ between runs; the Cases must not.
    assert_eq!(cases_without_faults("11"), first);
}

#[test]
fn edge_only_accounts_for_every_reading_through_an_outage_and_a_kill_9() {
    let summary = run_demo(&[
        "--edge-only",
        "--assets",
        "30",
        "--days",
        "10",
        "--warmup-days",
        "10",
        "--duration",
        "5s",
    ]);
    let count = |key: &str| {
        summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {summary}"))
    };
    assert!(count("readings_published") > 1_000, "{summary}");
    assert_eq!(count("readings_lost"), 0, "{summary}");
    assert_eq!(count("readings_duplicated"), 0, "{summary}");
    assert_eq!(count("readings_ingested"), count("readings_published"));
    assert_eq!(count("edge_kills"), 1, "{summary}");
    // The uplink cut made the edge spool (what it had spooled then reached
    // the log: nothing lost above).
    assert!(count("peak_spool_backlog_records") > 0, "{summary}");
    assert!(summary["edge_finished_in_grace"].as_bool().unwrap());
}
