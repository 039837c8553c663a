//! The `fieldpulse-edge` command line: `validate`, `print-config`, `spool inspect`.

use std::process::Command;

use fieldpulse_edge::spool::{Spool, SpoolConfig};
use tempfile::tempdir;

fn edge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fieldpulse-edge"))
}

#[test]
fn validate_accepts_the_example_and_names_the_file_and_key_of_an_error() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/fieldpulse-edge.example.toml");
    let out = edge()
        .args(["validate", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));

    let dir = tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "gateway_id = \"gw\"\n[spool]\nmax_bytes = 5\n").unwrap();
    let out = edge()
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
    assert!(stderr.contains("spool.max_bytes"), "{stderr}");
}

#[test]
fn print_config_prints_a_config_that_validates() {
    let dir = tempdir().unwrap();
    let out = edge().arg("print-config").output().unwrap();
    assert!(out.status.success());
    let path = dir.path().join("effective.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    let out = edge()
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn spool_inspect_reads_a_spool_without_changing_it() {
    let dir = tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let epoch = {
        let (mut spool, _) = Spool::open(&spool_dir, SpoolConfig::default()).unwrap();
        spool.append(b"record", 1).unwrap();
        spool.sync().unwrap();
        spool.epoch()
    };
    let before: Vec<_> = std::fs::read_dir(&spool_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    let out = edge()
        .args(["spool", "inspect", "--json"])
        .arg(&spool_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(report.is_object());
    assert_eq!(report["epoch"], serde_json::json!(epoch));
    assert_eq!(report["epoch_file"], "ok");
    let out = edge()
        .args(["spool", "inspect"])
        .arg(&spool_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("epoch {epoch}\n")), "{text}");
    let after: Vec<_> = std::fs::read_dir(&spool_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert_eq!(before, after);
}
