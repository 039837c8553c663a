//! `fieldpulse cloud validate` / `print-config` through the real binary: the
//! shipped example validates as it is, and a bad file fails naming the key
//! and the file.

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
