//! Registry: add / promote / rollback / list, durability rules, format guard.

use std::path::Path;

use super::*;
use crate::failure::model::{FailureModel, FeatureSchema, ARTIFACT_VERSION};
use crate::gbdt::{Gbdt, Objective};

/// A tiny valid artifact (no classifier, an empty RUL forest) with a card.
fn artifact(dir: &Path, model_version: &str, fingerprint: &str) {
    let schema = FeatureSchema::new(
        vec!["temp_c".into(), "vib_rms".into()],
        vec![4.0, 32.0],
        1,
        vec!["pump".into()],
        vec!["bearing".into()],
    )
    .expect("schema");
    let n = schema.n_features();
    let model = FailureModel {
        version: ARTIFACT_VERSION,
        model_version: model_version.into(),
        schema,
        classifiers: Vec::new(),
        rul: Gbdt {
            objective: Objective::SquaredError,
            base_score: 20.0,
            n_features: n,
            trees: Vec::new(),
            gain_importance: vec![0.0; n],
            flat: Default::default(),
        },
        rul_cap_days: 45.0,
    };
    model.save(dir).expect("save");
    let card = serde_json::json!({
        "version": model_version,
        "data_fingerprint": fingerprint,
        "created_at": "2026-12-01T00:00:00Z",
        "metrics": {"test": {"rul_rmse_days": 9.5, "classifiers": []}},
    });
    std::fs::write(dir.join(CARD_FILE), card.to_string()).expect("card");
    std::fs::write(dir.join("report.html"), "<html></html>").expect("report");
}

fn actor(by: &str) -> Actor {
    Actor {
        by: by.into(),
        note: None,
    }
}

#[test]
fn add_promote_rollback_and_list() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::new(tmp.path().join("reg"));
    for (i, fp) in ["fnv1a64:01", "fnv1a64:02", "fnv1a64:03"]
        .iter()
        .enumerate()
    {
        let a = tmp.path().join(format!("a{i}"));
        artifact(&a, &format!("fp-failure-{i}"), fp);
        let e = reg.add(&a, None, &actor("ana")).expect("add");
        assert_eq!(e.version, format!("v{}", i + 1));
        assert_eq!(e.data_fingerprint.as_deref(), Some(*fp));
        for f in ["model.json", "model_card.json", "report.html"] {
            assert!(reg.version_dir(&e.version).join(f).is_file(), "{f}");
        }
    }
    let idx = reg.load().expect("load");
    assert_eq!(idx.candidate.as_deref(), Some("v3"));
    assert_eq!(idx.champion, None);
    assert_eq!(idx.status("v1"), Status::Archived);
    assert!(
        matches!(reg.rollback(&actor("ana")), Err(RegistryError::Rule(m)) if m.contains("no version was ever promoted"))
    );

    reg.promote("v1", &actor("ana")).expect("promote v1");
    assert!(
        matches!(reg.rollback(&actor("ana")), Err(RegistryError::Rule(m)) if m.contains("first champion"))
    );
    let p = reg
        .promote(
            "v3",
            &Actor {
                by: "bo".into(),
                note: Some("retrained on Q3".into()),
            },
        )
        .expect("promote v3");
    assert_eq!(p.from.as_deref(), Some("v1"));
    let idx = reg.load().expect("load");
    assert_eq!(idx.champion.as_deref(), Some("v3"));
    assert_eq!(idx.candidate, None, "a promoted candidate is no longer one");
    assert_eq!(idx.history[1].note.as_deref(), Some("retrained on Q3"));
    assert!(reg.promote("v3", &actor("bo")).is_err(), "already champion");
    assert!(
        matches!(reg.promote("v9", &actor("bo")), Err(RegistryError::Rule(m)) if m.contains("v1, v2, v3"))
    );

    reg.promote("v2", &actor("bo")).expect("promote v2");
    let r = reg.rollback(&actor("bo")).expect("rollback");
    assert_eq!((r.version.as_str(), r.from.as_deref()), ("v3", Some("v2")));
    let r = reg
        .rollback(&actor("bo"))
        .expect("second rollback walks further back");
    assert_eq!((r.version.as_str(), r.from.as_deref()), ("v1", Some("v3")));
    assert!(
        reg.rollback(&actor("bo")).is_err(),
        "v1 was the first champion"
    );
    assert_eq!(
        reg.champion_dir().expect("champion"),
        Some(reg.version_dir("v1"))
    );
}

#[test]
fn duplicates_and_bad_names_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::new(tmp.path().join("reg"));
    let a = tmp.path().join("a");
    artifact(&a, "fp-failure-a", "fnv1a64:aa");
    reg.add(&a, Some("2026-12-01-aa"), &actor("ana"))
        .expect("add");
    let err = reg
        .add(&a, None, &actor("ana"))
        .expect_err("same artifact twice");
    assert!(
        err.to_string()
            .contains("already registered as 2026-12-01-aa"),
        "{err}"
    );
    let b = tmp.path().join("b");
    artifact(&b, "fp-failure-b", "fnv1a64:bb");
    let err = reg
        .add(&b, Some("2026-12-01-aa"), &actor("ana"))
        .expect_err("same name");
    assert!(err.to_string().contains("already registered"), "{err}");
    for bad in ["", "../x", ".hidden", "a/b", "-x"] {
        assert!(reg.add(&b, Some(bad), &actor("ana")).is_err(), "{bad:?}");
    }
    // Default names continue after the largest v<N>, whatever else exists.
    assert_eq!(reg.add(&b, None, &actor("ana")).expect("add").version, "v1");
    let not_artifact = tmp.path().join("empty");
    std::fs::create_dir_all(&not_artifact).expect("dir");
    let err = reg
        .add(&not_artifact, None, &actor("ana"))
        .expect_err("no model");
    assert!(err.to_string().contains("model.json"), "{err}");
}

#[test]
fn leftover_temporary_files_are_ignored_and_a_half_copied_version_is_replaced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::new(tmp.path().join("reg"));
    let a = tmp.path().join("a");
    artifact(&a, "fp-failure-a", "fnv1a64:aa");
    reg.add(&a, None, &actor("ana")).expect("add");
    reg.promote("v1", &actor("ana")).expect("promote");
    let before = reg.load().expect("load");
    // A crash mid-write leaves a temporary index and a half-copied artifact.
    std::fs::write(reg.dir().join(".registry.json.tmp-4242"), "{\"format_vers").expect("tmp");
    std::fs::create_dir_all(reg.dir().join("versions/.tmp-v2-4242")).expect("tmp dir");
    std::fs::create_dir_all(reg.version_dir("v2")).expect("orphan dir");
    std::fs::write(reg.version_dir("v2").join("model.json"), "{").expect("orphan");
    assert_eq!(reg.load().expect("load"), before);
    let b = tmp.path().join("b");
    artifact(&b, "fp-failure-b", "fnv1a64:bb");
    let e = reg
        .add(&b, None, &actor("ana"))
        .expect("add over the orphan");
    assert_eq!(e.version, "v2");
    FailureModel::load(&reg.version_dir("v2")).expect("the new copy, not the orphan");
    let listed: Vec<String> = reg
        .load()
        .expect("load")
        .versions
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(listed, ["v1", "v2"]);
}

#[test]
fn a_registry_from_a_newer_build_or_a_damaged_one_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::new(tmp.path());
    std::fs::write(
        tmp.path().join(INDEX_FILE),
        r#"{"format_version": 2, "versions": [], "shards": {}}"#,
    )
    .expect("write");
    let err = reg.load().expect_err("newer");
    assert!(matches!(
        err,
        RegistryError::NewerFormat {
            found: 2,
            supported: 1,
            ..
        }
    ));
    assert!(err.to_string().contains("newer fieldpulse"), "{err}");
    let a = tmp.path().join("a");
    artifact(&a, "fp-failure-a", "fnv1a64:aa");
    assert!(
        reg.add(&a, None, &actor("ana")).is_err(),
        "never rewritten by an older build"
    );
    std::fs::write(tmp.path().join(INDEX_FILE), "{\"format_vers").expect("write");
    assert!(matches!(reg.load(), Err(RegistryError::Invalid { .. })));
}

#[test]
fn promote_refuses_a_damaged_copy() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::new(tmp.path().join("reg"));
    let a = tmp.path().join("a");
    artifact(&a, "fp-failure-a", "fnv1a64:aa");
    reg.add(&a, None, &actor("ana")).expect("add");
    std::fs::write(reg.version_dir("v1").join("model.json"), "{").expect("damage");
    let err = reg.promote("v1", &actor("ana")).expect_err("damaged");
    assert!(err.to_string().contains("invalid model file"), "{err}");
    assert_eq!(reg.load().expect("load").champion, None);
}

#[test]
fn concurrent_adds_lose_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let reg = Registry::new(tmp.path().join("reg"));
    let dirs: Vec<_> = (0..6)
        .map(|i| {
            let a = tmp.path().join(format!("a{i}"));
            artifact(&a, &format!("fp-failure-{i}"), &format!("fnv1a64:{i:02}"));
            a
        })
        .collect();
    std::thread::scope(|s| {
        for a in &dirs {
            let reg = reg.clone();
            s.spawn(move || reg.add(a, None, &actor("ana")).expect("add"));
        }
    });
    let mut names: Vec<String> = reg
        .load()
        .expect("load")
        .versions
        .into_iter()
        .map(|v| v.version)
        .collect();
    names.sort();
    assert_eq!(names, ["v1", "v2", "v3", "v4", "v5", "v6"]);
}
