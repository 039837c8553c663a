//! `fieldpulse cloud validate` / `print-config` through the real binary: the
//! shipped example validates as it is, and a bad file fails naming the key
//! and the file; `dead-letters list|replay` and `feedback export` on a state
//! directory.

use std::process::{Command, Output};

fn fieldpulse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldpulse"))
        .args(args)
        .env("FIELDPULSE_SF_CLIENT_SECRET", "test-only-secret")
        .output()
        .expect("run fieldpulse")
}

#[test]
fn the_shipped_example_validates_and_print_config_prints_it() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../cloud/fieldpulse-cloud.example.toml"
    );
    let out = fieldpulse(&["cloud", "validate", "--config", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = fieldpulse(&["cloud", "print-config"]);
    assert!(printed.status.success());
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout),
        std::fs::read_to_string(example).unwrap()
    );
}

#[test]
fn bad_configs_fail_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("[scoring]\nshardz = 2\n", "shardz"),
        ("[server]\ninsecure_dev_no_auth = true\n[scoring]\nsensors = [\"t\"]\nanomaly_threshold = 2.0\n", "scoring.anomaly_threshold"),
        ("[scoring]\nsensors = [\"t\"]\n", "gateways"),
        ("[[gateways]]\nid = \"gw\"\ntoken_sha256 = \"not-hex\"\n[scoring]\nsensors = [\"t\"]\n", "gateways[0].token_sha256"),
        ("[server]\ninsecure_dev_no_auth = true\n[scoring]\nsensors = [\"t\"]\n[salesforce]\nclient_secret_env = \"FP_TEST_UNSET_VARIABLE\"\n", "salesforce.client_secret_env"),
    ] {
        let path = dir.path().join("cloud.toml");
        std::fs::write(&path, text).unwrap();
        let out = fieldpulse(&["cloud", "validate", "--config", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{text:?} should be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cloud.toml") && err.contains(key), "{text:?}: {err}");
    }
}

/// A state directory whose `cloud.sqlite` holds one Case the outbox
/// dead-lettered, as the sender leaves it; returns the action id.
fn state_with_a_dead_case(state: &std::path::Path) -> i64 {
    use fieldpulse_cloud::outbox::{enqueue, Action, SCHEMA};
    let mut conn = rusqlite::Connection::open(state.join("cloud.sqlite")).unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    let tx = conn.transaction().unwrap();
    let mut fields = serde_json::Map::new();
    fields.insert("Subject".into(), "x".repeat(300).into());
    let action = Action {
        sobject: "Case".into(),
        ext_key: "fp-case:P-104:anomaly:1".into(),
        fields,
        priority: 1,
        deferrable: false,
        source_ms: 1,
    };
    let id = enqueue(&tx, &action, 1).unwrap();
    tx.execute(
        "UPDATE outbox_actions SET state = 'dead', attempts = 1 WHERE id = ?1",
        [id],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO outbox_dead_letters (action_id, sobject, ext_key, error_code, message, fields, dead_ms)
         VALUES (?1, 'Case', 'fp-case:P-104:anomaly:1', 'STRING_TOO_LONG', 'Subject: data value too large', '[\"Subject\"]', 2)",
        [id],
    )
    .unwrap();
    tx.commit().unwrap();
    id
}

#[test]
fn dead_letters_are_listed_and_replayed_back_into_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let id = state_with_a_dead_case(dir.path());
    let out = fieldpulse(&["cloud", "dead-letters", "list", "--state", state, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let letters = listed["dead_letters"].as_array().expect("array");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["action_id"], id);
    assert_eq!(letters[0]["error_code"], "STRING_TOO_LONG");
    assert_eq!(letters[0]["fields"], serde_json::json!(["Subject"]));
    let out = fieldpulse(&["cloud", "dead-letters", "list", "--state", state]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fp-case:P-104:anomaly:1\tSTRING_TOO_LONG")
    );

    let id_arg = id.to_string();
    let replay = [
        "cloud",
        "dead-letters",
        "replay",
        "--state",
        state,
        "--id",
        &id_arg,
    ];
    let out = fieldpulse(&replay);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conn = rusqlite::Connection::open(dir.path().join("cloud.sqlite")).unwrap();
    let (row_state, attempts): (String, i64) = conn
        .query_row(
            "SELECT state, attempts FROM outbox_actions WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((row_state.as_str(), attempts), ("pending", 0));
    let out = fieldpulse(&["cloud", "dead-letters", "list", "--state", state, "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["dead_letters"], serde_json::json!([]));

    // Replaying it again, choosing nothing, or a directory without a database fail.
    let out = fieldpulse(&replay);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("action {id} is not a dead letter"))
    );
    assert!(
        !fieldpulse(&["cloud", "dead-letters", "replay", "--state", state])
            .status
            .success()
    );
    let empty = tempfile::tempdir().unwrap();
    let out = fieldpulse(&[
        "cloud",
        "dead-letters",
        "list",
        "--state",
        empty.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cloud database here"));
}

#[test]
fn feedback_export_writes_every_label_as_csv_and_json() {
    use fieldpulse_cloud::store::{tx, FeedbackLabel, Store};
    let dir = tempfile::tempdir().unwrap();
    let labels = vec![
        FeedbackLabel {
            asset: "PUMP-002".into(),
            mode: Some("bearing".into()),
            label: "failure".into(),
            at_ms: 1_767_225_600_000,
            source_object: "WorkOrder".into(),
            source_id: "0WO000000000001AAA".into(),
            failure_code: Some("BRG".into()),
            detail: Some("[BRG] replace bearing, \"drive end\"".into()),
        },
        FeedbackLabel {
            asset: "PUMP-005".into(),
            mode: None,
            label: "false_alarm".into(),
            at_ms: 1_767_312_000_000,
            source_object: "Case".into(),
            source_id: "500000000000001AAA".into(),
            failure_code: None,
            detail: Some("Closed - Not a Problem".into()),
        },
    ];
    {
        let mut store = Store::open(&dir.path().join("cloud.sqlite")).expect("store");
        let tx = store.write().expect("tx");
        for label in &labels {
            assert!(tx::put_label(&tx, label).expect("label stored"));
        }
        tx.commit().expect("commit");
    }
    let state = dir.path().to_str().unwrap();
    let csv_path = dir.path().join("labels.csv");
    let out = fieldpulse(&[
        "feedback",
        "export",
        "--state",
        state,
        "--format",
        "csv",
        "--out",
        csv_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 labels"));
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines,
        [
            "asset,mode,label,at,at_ms,source_object,source_id,failure_code,detail",
            "PUMP-002,bearing,failure,2026-01-01T00:00:00Z,1767225600000,WorkOrder,0WO000000000001AAA,BRG,\"[BRG] replace bearing, \"\"drive end\"\"\"",
            "PUMP-005,,false_alarm,2026-01-02T00:00:00Z,1767312000000,Case,500000000000001AAA,,Closed - Not a Problem",
        ]
    );
    let out = fieldpulse(&["feedback", "export", "--state", state, "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: Vec<FeedbackLabel> =
        serde_json::from_slice(&out.stdout).expect("a JSON array of labels");
    assert_eq!(exported, labels);
    let empty = tempfile::tempdir().unwrap();
    let out = fieldpulse(&[
        "feedback",
        "export",
        "--state",
        empty.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cloud database here"));
}
