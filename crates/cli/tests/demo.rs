//! `fieldpulse demo` end to end: the real binary, broker, edge and ingest.

use std::process::Command;

#[test]
fn demo_accounts_for_every_reading_and_writes_its_summary() {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fieldpulse"))
        .args([
            "demo",
            "--json",
            "--assets",
            "12",
            "--duration",
            "4s",
            "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let count = |key: &str| {
        summary[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {summary}"))
    };
    assert_eq!(count("readings_lost"), 0);
    assert_eq!(count("readings_duplicated"), 0);
    assert!(count("readings_published") > 1_000);
    assert_eq!(
        count("cloud_readings_ingested"),
        count("readings_published")
    );
    assert_eq!(
        count("messages_acknowledged_by_broker"),
        count("messages_published")
    );
    // Every malformed payload was rejected, none silently.
    let rejected: u64 = summary["edge_rejected"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(rejected, count("malformed_messages_published"));
    // The outage made the edge spool and backfill.
    assert!(count("cloud_readings_historical") > 0);
    assert!(summary["live_resumed_before_backlog"].as_bool().unwrap());
    assert!(
        summary["edge_finished_in_grace"].as_bool().unwrap(),
        "{summary}"
    );
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk, summary);
}
