//! Loading one registry version for the shards, and `served_model.json`.

use std::path::Path;
use std::sync::Arc;

use fieldpulse_models::failure::cadence::{cadence_matches, CADENCE_TOLERANCE};
use fieldpulse_models::failure::{ArtifactError, FailureModel};
use fieldpulse_models::registry::{self, Action, Index, Registry};
use serde::{Deserialize, Serialize};

use super::RefuseReason;
use crate::processor::{SensorLayout, ServedModel};

/// The file in the state directory naming the version served last.
pub const SERVED_FILE: &str = "served_model.json";
/// Format version of [`SERVED_FILE`].
const SERVED_FORMAT: u32 = 1;

/// A version that cannot be served, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The registry version (empty when the registry itself failed).
    pub version: String,
    /// The metric label.
    pub reason: RefuseReason,
    /// What is wrong, for the log.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.version.is_empty() {
            write!(f, "{} ({})", self.message, self.reason.as_str())
        } else {
            write!(
                f,
                "version {}: {} ({})",
                self.version,
                self.message,
                self.reason.as_str()
            )
        }
    }
}

/// What a loaded model must fit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Compat<'a> {
    /// The sensors the shards score; `None` at start when the model itself
    /// chooses them (`scoring.sensors = []`).
    pub layout: Option<&'a SensorLayout>,
    /// Training cadence (seconds between readings) of the model served now,
    /// when its card records one.
    pub cadence_s: Option<f64>,
}

/// A version loaded and checked, ready for the shards.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The model under its registry version.
    pub served: ServedModel,
    /// Its card's `training_cadence.median_interval_s`.
    pub cadence_s: Option<f64>,
    /// FNV-1a of its `model.json`.
    pub model_hash: String,
}

/// Loads `version` from `registry` and checks it the way the shards need it:
/// the bytes the registry recorded, the artifact format and feature schema of
/// this build, every sensor it reads among the scored ones, and a training
/// cadence within 2x of the served model's. Runs on a blocking thread, never
/// on the scoring path.
///
/// # Errors
/// A [`Refusal`] naming the version and the reason.
pub fn load_version(
    registry: &Registry,
    index: Option<&Index>,
    version: &str,
    compat: Compat<'_>,
) -> Result<Loaded, Refusal> {
    let refuse = |reason, message: String| Refusal {
        version: version.to_string(),
        reason,
        message,
    };
    let dir = registry.version_dir(version);
    let entry = index.and_then(|i| i.versions.iter().find(|v| v.version == version));
    if index.is_some() && entry.is_none() {
        return Err(refuse(
            RefuseReason::Missing,
            format!("not registered in {}", registry.dir().display()),
        ));
    }
    let model_hash = registry::model_json_hash(&dir).map_err(|e| {
        refuse(
            RefuseReason::Missing,
            format!("{}: {e}", dir.join("model.json").display()),
        )
    })?;
    if let Some(recorded) = entry.and_then(|e| e.model_hash.as_deref()) {
        if recorded != model_hash {
            return Err(refuse(
                RefuseReason::Corrupt,
                format!(
                    "{} is not the file registered ({model_hash}, registered {recorded})",
                    dir.join("model.json").display()
                ),
            ));
        }
    }
    let model = FailureModel::load(&dir).map_err(|e| {
        let reason = match &e {
            ArtifactError::Io { .. } => RefuseReason::Missing,
            ArtifactError::Json { .. } => RefuseReason::Invalid,
            _ => RefuseReason::Incompatible,
        };
        refuse(reason, e.to_string())
    })?;
    if let Some(layout) = compat.layout {
        let unknown: Vec<&str> = model
            .schema
            .sensors
            .iter()
            .filter(|s| layout.position(s).is_none())
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(refuse(
                RefuseReason::Sensors,
                format!(
                    "reads sensors the cloud does not score: {} (scored: {}; list them in scoring.sensors and restart)",
                    unknown.join(", "),
                    layout.names().join(", ")
                ),
            ));
        }
    }
    // A card is not required to serve (an artifact without one still
    // validates), but without it the cadence is not checked.
    let cadence_s = registry.card(version).ok().and_then(|card| {
        card.get("training_cadence")?
            .get("median_interval_s")?
            .as_f64()
    });
    if let (Some(new), Some(now)) = (cadence_s, compat.cadence_s) {
        if !cadence_matches(new, now) {
            return Err(refuse(
                RefuseReason::Cadence,
                format!(
                    "trained on readings every {new:.0} s, the served model on every {now:.0} s \
                     (more than {CADENCE_TOLERANCE}x apart: its streaming features would not mean what \
                     they meant in training); restart the cloud to change cadence"
                ),
            ));
        }
    }
    Ok(Loaded {
        served: ServedModel::new(version, Arc::new(model)),
        cadence_s,
        model_hash,
    })
}

/// The version to score in shadow: the registry's candidate (the newest
/// version added and not promoted since) when it is registered after the
/// champion and was never rolled back from.
pub fn candidate_of(index: &Index) -> Option<String> {
    let candidate = index.candidate.as_deref()?;
    if index.champion.as_deref() == Some(candidate) {
        return None;
    }
    let position = |v: &str| index.versions.iter().position(|e| e.version == v);
    let at = position(candidate)?;
    if let Some(champion) = index.champion.as_deref() {
        if position(champion).is_some_and(|c| c > at) {
            return None;
        }
    }
    let rolled_back = index
        .history
        .iter()
        .any(|h| h.action == Action::Rollback && h.from.as_deref() == Some(candidate));
    (!rolled_back).then(|| candidate.to_string())
}

/// `served_model.json`: the version this state directory served last, so a
/// restart whose promoted version cannot be served keeps serving it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedRecord {
    /// Format of this file.
    pub format_version: u32,
    /// The registry directory.
    pub registry: String,
    /// The registry version.
    pub version: String,
    /// Its `model_version`.
    pub model_version: String,
    /// FNV-1a of its `model.json` when it was served.
    pub model_hash: String,
    /// When it started serving (ISO 8601, UTC).
    pub since: String,
}

impl ServedRecord {
    /// The record for `loaded`, served from `registry` from now on.
    pub fn new(registry: &Registry, loaded: &Loaded) -> Self {
        Self {
            format_version: SERVED_FORMAT,
            registry: registry.dir().display().to_string(),
            version: loaded.served.version.to_string(),
            model_version: loaded.served.model.model_version.clone(),
            model_hash: loaded.model_hash.clone(),
            since: now_iso(),
        }
    }
}

pub(crate) fn now_iso() -> String {
    fieldpulse_models::failure::labels::format_ms(crate::store::now_ms())
}

/// Reads `served_model.json` from the state directory (`Ok(None)` when there is none).
///
/// # Errors
/// Unreadable or invalid file, phrased with its path.
pub fn read_served(state_dir: &Path) -> Result<Option<ServedRecord>, String> {
    let path = state_dir.join(SERVED_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Replaces `served_model.json` atomically (temporary file, fsync, rename).
///
/// # Errors
/// The write failed, phrased with its path.
pub fn write_served(state_dir: &Path, record: &ServedRecord) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(record).map_err(|e| e.to_string())?;
    text.push('\n');
    registry::atomic_write(&state_dir.join(SERVED_FILE), text.as_bytes()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use fieldpulse_models::registry::{HistoryEntry, VersionEntry};

    use super::*;

    fn entry(v: &str) -> VersionEntry {
        VersionEntry {
            version: v.into(),
            added_at: String::new(),
            added_by: String::new(),
            source: String::new(),
            model_version: v.into(),
            data_fingerprint: None,
            created_at: None,
            model_hash: None,
        }
    }

    fn history(action: Action, version: &str, from: Option<&str>) -> HistoryEntry {
        HistoryEntry {
            action,
            version: version.into(),
            from: from.map(Into::into),
            at: String::new(),
            by: String::new(),
            note: None,
        }
    }

    #[test]
    fn the_candidate_is_newer_than_the_champion_and_never_rolled_back() {
        let mut index = Index {
            versions: vec![entry("v1"), entry("v2"), entry("v3")],
            champion: Some("v1".into()),
            candidate: Some("v3".into()),
            ..Index::default()
        };
        assert_eq!(candidate_of(&index).as_deref(), Some("v3"));
        index.candidate = None;
        assert_eq!(candidate_of(&index), None);
        // Promoted, then rolled back: not a candidate any more.
        index.candidate = Some("v3".into());
        index.history = vec![
            history(Action::Promote, "v3", Some("v1")),
            history(Action::Rollback, "v1", Some("v3")),
        ];
        assert_eq!(candidate_of(&index), None);
        // Older than the champion.
        index.history.clear();
        index.champion = Some("v3".into());
        index.candidate = Some("v2".into());
        assert_eq!(candidate_of(&index), None);
        index.champion = Some("v3".into());
        index.candidate = Some("v3".into());
        assert_eq!(candidate_of(&index), None);
    }

    /// A tiny valid artifact (no classifier, an empty RUL forest) with a card
    /// recording `cadence_s`.
    fn artifact(dir: &Path, sensors: &[&str], cadence_s: f64) {
        use fieldpulse_models::failure::model::{FeatureSchema, ARTIFACT_VERSION};
        use fieldpulse_models::gbdt::{Gbdt, Objective};
        let schema = FeatureSchema::new(
            sensors.iter().map(|s| s.to_string()).collect(),
            vec![4.0, 16.0],
            1,
            vec!["pump".into()],
            vec!["bearing".into()],
        )
        .expect("schema");
        let n = schema.n_features();
        FailureModel {
            version: ARTIFACT_VERSION,
            model_version: format!("fp-failure-{}", sensors.join("-")),
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
        }
        .save(dir)
        .expect("save");
        let card = serde_json::json!({
            "data_fingerprint": format!("fnv1a64:{}-{cadence_s}", sensors.len()),
            "created_at": "2026-12-01T00:00:00Z",
            "training_cadence": {"median_interval_s": cadence_s},
        });
        std::fs::write(dir.join("model_card.json"), card.to_string()).expect("card");
    }

    #[test]
    fn versions_that_do_not_fit_are_refused_with_their_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let reg = Registry::new(tmp.path().join("reg"));
        let actor = registry::Actor::default();
        for (name, sensors, cadence) in [
            ("ok", &["temp_c", "vib_rms"][..], 3600.0),
            ("more", &["temp_c", "vib_rms", "rpm"][..], 3600.0),
            ("fast", &["temp_c", "vib_rms"][..], 600.0),
        ] {
            let dir = tmp.path().join(name);
            artifact(&dir, sensors, cadence);
            reg.add(&dir, Some(name), &actor).expect("add");
        }
        let index = reg.load().unwrap();
        let layout = SensorLayout::new(vec!["temp_c".into(), "vib_rms".into()]);
        let compat = Compat {
            layout: Some(&layout),
            cadence_s: Some(3600.0),
        };
        let reason = |v: &str| load_version(&reg, Some(&index), v, compat).map(|l| l.cadence_s);
        assert_eq!(reason("ok"), Ok(Some(3600.0)));
        assert_eq!(reason("more").unwrap_err().reason, RefuseReason::Sensors);
        assert!(reason("more").unwrap_err().message.contains("rpm"));
        assert_eq!(reason("fast").unwrap_err().reason, RefuseReason::Cadence);
        assert_eq!(reason("nope").unwrap_err().reason, RefuseReason::Missing);
        // Without a layout (start, `sensors = []`) and a served cadence, both fit.
        assert!(load_version(&reg, Some(&index), "more", Compat::default()).is_ok());
        // Bytes changed after `add`.
        let model = reg.version_dir("ok").join("model.json");
        let text = std::fs::read_to_string(&model).unwrap();
        std::fs::write(&model, text.replace("fp-failure", "fp-failurx")).unwrap();
        assert_eq!(reason("ok").unwrap_err().reason, RefuseReason::Corrupt);
        // Without the index (unreadable registry) the hash is not known:
        // the file itself decides.
        std::fs::write(&model, "{").unwrap();
        let err = load_version(&reg, None, "ok", compat).unwrap_err();
        assert_eq!(err.reason, RefuseReason::Invalid, "{err}");
        std::fs::remove_file(&model).unwrap();
        assert_eq!(reason("ok").unwrap_err().reason, RefuseReason::Missing);
    }

    #[test]
    fn served_record_round_trips_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_served(dir.path()), Ok(None));
        let record = ServedRecord {
            format_version: SERVED_FORMAT,
            registry: "reg".into(),
            version: "v2".into(),
            model_version: "fp-failure-x".into(),
            model_hash: "fnv1a64:00".into(),
            since: now_iso(),
        };
        write_served(dir.path(), &record).unwrap();
        assert_eq!(read_served(dir.path()), Ok(Some(record)));
        std::fs::write(dir.path().join(SERVED_FILE), "{").unwrap();
        assert!(read_served(dir.path()).unwrap_err().contains(SERVED_FILE));
    }
}
