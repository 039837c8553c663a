//! A model registry: a directory of versioned failure-model artifacts and
//! which one is promoted (behind `fieldpulse models`).
//!
//! # Layout
//! ```text
//! DIR/registry.json               the index (format below), replaced atomically
//! DIR/versions/<version>/         one artifact as `fieldpulse train --out` wrote it
//!     model.json model_card.json report.html
//! DIR/.lock                       advisory lock held while a command changes DIR
//! ```
//! `registry.json` holds `format_version` ([`REGISTRY_FORMAT`]), every
//! registered version (added when, by whom, from where; the card's model
//! version, data fingerprint and creation time), the `champion` (the promoted
//! version, the one to serve), the `candidate` (the last version added and not
//! promoted since) and the `history` of promotions and rollbacks (who, when,
//! from which version, an optional note). Any other version is archived.
//!
//! # Durability
//! Every file is written to a temporary name beside its target, fsynced,
//! renamed over it and the directory fsynced; an artifact is copied into
//! `versions/.tmp-*` and renamed into place before the index names it. A
//! crash therefore leaves either the old or the new `registry.json`, never a
//! half-written one; leftover temporary files and directories are ignored
//! (and a version directory the index does not name is never served). A
//! registry whose `format_version` is newer than this build's is refused.
//!
//! Rollback returns to the champion before the current one: replaying the
//! history, a promotion pushes the champion it replaced and a rollback pops
//! it, so repeated rollbacks walk back through earlier champions.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::failure::labels::format_ms;
use crate::failure::model::{FailureModel, MODEL_FILE};

/// Format version of `registry.json` this build reads and writes.
pub const REGISTRY_FORMAT: u32 = 1;
/// The index file inside a registry directory.
pub const INDEX_FILE: &str = "registry.json";
/// The folder of versioned artifacts inside a registry directory.
pub const VERSIONS_DIR: &str = "versions";
/// The model card file inside an artifact directory.
pub const CARD_FILE: &str = "model_card.json";

/// Why a registry operation failed.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// File or directory.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `registry.json` (or a model card) is not valid.
    #[error("{path}: {msg}")]
    Invalid {
        /// File.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// `registry.json` was written by a newer build.
    #[error(
        "{path}: registry format version {found}, this build reads up to {supported}: \
         it was written by a newer fieldpulse; use that build (or newer) on it"
    )]
    NewerFormat {
        /// File.
        path: String,
        /// Found.
        found: u32,
        /// Supported.
        supported: u32,
    },
    /// The artifact cannot be registered or served.
    #[error("artifact {path}: {msg}")]
    Artifact {
        /// Artifact directory.
        path: String,
        /// What is wrong.
        msg: String,
    },
    /// A rule of the registry was broken (duplicate, unknown version, no rollback target).
    #[error("{0}")]
    Rule(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One registered version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionEntry {
    /// Registry version name (`v3`, or as given).
    pub version: String,
    /// When it was added (ISO 8601, UTC).
    pub added_at: String,
    /// Who added it.
    pub added_by: String,
    /// The artifact directory it was copied from.
    pub source: String,
    /// `model_version` of its `model.json`.
    pub model_version: String,
    /// `data_fingerprint` of its model card.
    pub data_fingerprint: Option<String>,
    /// `created_at` of its model card.
    pub created_at: Option<String>,
    /// FNV-1a 64 of its `model.json` bytes: two trainings of the same data in
    /// the same second are different models unless their bytes agree.
    #[serde(default)]
    pub model_hash: Option<String>,
}

/// What happened to the champion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A version was promoted.
    Promote,
    /// The previous champion was restored.
    Rollback,
}

/// One promotion or rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Promote or rollback.
    pub action: Action,
    /// The new champion.
    pub version: String,
    /// The champion it replaced.
    pub from: Option<String>,
    /// When (ISO 8601, UTC).
    pub at: String,
    /// Who.
    pub by: String,
    /// Optional note (`--note`).
    pub note: Option<String>,
}

/// The contents of `registry.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// [`REGISTRY_FORMAT`] when written.
    pub format_version: u32,
    /// Registered versions, in the order they were added.
    pub versions: Vec<VersionEntry>,
    /// The promoted version.
    pub champion: Option<String>,
    /// The last version added and not promoted since.
    pub candidate: Option<String>,
    /// Promotions and rollbacks, oldest first.
    pub history: Vec<HistoryEntry>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            format_version: REGISTRY_FORMAT,
            versions: Vec::new(),
            champion: None,
            candidate: None,
            history: Vec::new(),
        }
    }
}

/// Status of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Promoted: the version to serve.
    Champion,
    /// Added and not promoted since.
    Candidate,
    /// Anything else.
    Archived,
}

impl Status {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Champion => "champion",
            Self::Candidate => "candidate",
            Self::Archived => "archived",
        }
    }
}

impl Index {
    /// Status of `version`.
    pub fn status(&self, version: &str) -> Status {
        if self.champion.as_deref() == Some(version) {
            Status::Champion
        } else if self.candidate.as_deref() == Some(version) {
            Status::Candidate
        } else {
            Status::Archived
        }
    }

    /// The version a rollback would restore (module docs), if any.
    pub fn rollback_target(&self) -> Option<String> {
        let mut stack: Vec<String> = Vec::new();
        for h in &self.history {
            match h.action {
                Action::Promote => {
                    if let Some(from) = &h.from {
                        stack.push(from.clone());
                    }
                }
                Action::Rollback => {
                    stack.pop();
                }
            }
        }
        stack.pop()
    }

    /// The next default version name: `v<N>`, one past the largest `v<N>` used.
    pub fn next_version(&self) -> String {
        let n = self
            .versions
            .iter()
            .filter_map(|v| v.version.strip_prefix('v')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        format!("v{}", n + 1)
    }

    fn entry(&self, version: &str) -> Option<&VersionEntry> {
        self.versions.iter().find(|v| v.version == version)
    }
}

/// A registry directory.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

/// Who and why, for changes.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// Who (user name).
    pub by: String,
    /// Optional note.
    pub note: Option<String>,
}

fn now_iso() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    format_ms(ms)
}

/// Checks a version name: 1–64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
///
/// # Errors
/// [`RegistryError::Rule`] naming the problem.
pub fn check_version_name(name: &str) -> Result<(), RegistryError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Rule(format!(
            "version `{name}`: use 1-64 letters, digits, `.`, `_` or `-`, not starting with `.` or `-`"
        )))
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsynced,
/// renamed over `path`, then the directory fsynced.
///
/// # Errors
/// [`RegistryError::Io`].
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{seq}", std::process::id()));
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), RegistryError> {
    let d = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(d).and_then(|f| f.sync_all()).map_err(io(d))
}

/// A lock on a registry directory, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RegistryLock {
    _file: File,
}

impl Registry {
    /// The registry at `dir` (nothing is read yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The artifact directory of `version`.
    pub fn version_dir(&self, version: &str) -> PathBuf {
        self.dir.join(VERSIONS_DIR).join(version)
    }

    /// Reads `registry.json`; a directory without one is an empty registry.
    ///
    /// # Errors
    /// Unreadable or invalid index, or one written by a newer build.
    pub fn load(&self) -> Result<Index, RegistryError> {
        let path = self.dir.join(INDEX_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.dir.exists() && !self.dir.is_dir() {
                    return Err(RegistryError::Rule(format!(
                        "{} is not a directory",
                        self.dir.display()
                    )));
                }
                return Ok(Index::default());
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let invalid = |msg: String| RegistryError::Invalid {
            path: path.display().to_string(),
            msg,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| invalid(format!("not JSON: {e}")))?;
        let found = value
            .get("format_version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| invalid("no `format_version`".into()))?;
        if found > u64::from(REGISTRY_FORMAT) {
            return Err(RegistryError::NewerFormat {
                path: path.display().to_string(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                supported: REGISTRY_FORMAT,
            });
        }
        serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
    }

    fn save(&self, index: &Index) -> Result<(), RegistryError> {
        let mut text = serde_json::to_string_pretty(index).map_err(|e| RegistryError::Invalid {
            path: INDEX_FILE.into(),
            msg: e.to_string(),
        })?;
        text.push('\n');
        atomic_write(&self.dir.join(INDEX_FILE), text.as_bytes())
    }

    /// Takes the registry's exclusive lock (creating the directory), waiting
    /// for another writer to finish.
    ///
    /// # Errors
    /// [`RegistryError::Io`].
    pub fn lock(&self) -> Result<RegistryLock, RegistryError> {
        fs::create_dir_all(self.dir.join(VERSIONS_DIR)).map_err(io(&self.dir))?;
        let path = self.dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(RegistryLock { _file: file })
    }

    /// Copies the artifact directory `artifact` in as `version` (default:
    /// [`Index::next_version`]) and makes it the candidate. The artifact must
    /// load and validate with this build and have a model card.
    ///
    /// # Errors
    /// Invalid artifact, duplicate or invalid version name, IO.
    pub fn add(
        &self,
        artifact: &Path,
        version: Option<&str>,
        actor: &Actor,
    ) -> Result<VersionEntry, RegistryError> {
        let _lock = self.lock()?;
        let mut index = self.load()?;
        let bad = |msg: String| RegistryError::Artifact {
            path: artifact.display().to_string(),
            msg,
        };
        let model = FailureModel::load(artifact).map_err(|e| bad(e.to_string()))?;
        let card = read_card(artifact)?;
        let model_hash = Some(model_json_hash(artifact).map_err(|e| bad(e.to_string()))?);
        let version = match version {
            Some(v) => v.to_string(),
            None => index.next_version(),
        };
        check_version_name(&version)?;
        let target = self.version_dir(&version);
        if index.entry(&version).is_some() {
            return Err(RegistryError::Rule(format!(
                "version {version} is already registered in {}",
                self.dir.display()
            )));
        }
        if let Some(dup) = index.versions.iter().find(|v| {
            v.model_version == model.model_version
                && v.data_fingerprint.is_some()
                && v.data_fingerprint == card_str(&card, "data_fingerprint")
                && v.created_at == card_str(&card, "created_at")
                && (v.model_hash.is_none() || v.model_hash == model_hash)
        }) {
            return Err(RegistryError::Rule(format!(
                "this artifact ({}) is already registered as {}",
                model.model_version, dup.version
            )));
        }
        let versions = self.dir.join(VERSIONS_DIR);
        if target.exists() {
            // Left by a crash after the copy and before the index named it:
            // never served, safe to replace.
            fs::remove_dir_all(&target).map_err(io(&target))?;
        }
        let tmp = versions.join(format!(".tmp-{version}-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        copy_artifact(artifact, &tmp)?;
        sync_dir(&tmp)?;
        fs::rename(&tmp, &target).map_err(io(&target))?;
        sync_dir(&versions)?;
        let entry = VersionEntry {
            version: version.clone(),
            added_at: now_iso(),
            added_by: actor.by.clone(),
            source: artifact.display().to_string(),
            model_version: model.model_version.clone(),
            data_fingerprint: card_str(&card, "data_fingerprint"),
            created_at: card_str(&card, "created_at"),
            model_hash,
        };
        index.versions.push(entry.clone());
        index.candidate = Some(version);
        self.save(&index)?;
        Ok(entry)
    }

    /// Makes `version` the champion. Its copy must still load and validate.
    ///
    /// # Errors
    /// Unknown version, already champion, invalid artifact, IO.
    pub fn promote(&self, version: &str, actor: &Actor) -> Result<HistoryEntry, RegistryError> {
        let _lock = self.lock()?;
        let mut index = self.load()?;
        if index.entry(version).is_none() {
            let known: Vec<&str> = index.versions.iter().map(|v| v.version.as_str()).collect();
            return Err(RegistryError::Rule(format!(
                "no version {version} in {} (registered: {})",
                self.dir.display(),
                if known.is_empty() {
                    "none; add one with `fieldpulse models add`".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        if index.champion.as_deref() == Some(version) {
            return Err(RegistryError::Rule(format!(
                "{version} is already the champion"
            )));
        }
        self.check_servable(version)?;
        let entry = HistoryEntry {
            action: Action::Promote,
            version: version.to_string(),
            from: index.champion.clone(),
            at: now_iso(),
            by: actor.by.clone(),
            note: actor.note.clone(),
        };
        index.champion = Some(version.to_string());
        if index.candidate.as_deref() == Some(version) {
            index.candidate = None;
        }
        index.history.push(entry.clone());
        self.save(&index)?;
        Ok(entry)
    }

    /// Restores the champion before the current one (module docs).
    ///
    /// # Errors
    /// No earlier champion, invalid artifact, IO.
    pub fn rollback(&self, actor: &Actor) -> Result<HistoryEntry, RegistryError> {
        let _lock = self.lock()?;
        let mut index = self.load()?;
        let Some(target) = index.rollback_target() else {
            return Err(RegistryError::Rule(match &index.champion {
                Some(c) => format!("nothing to roll back to: {c} is the first champion"),
                None => "nothing to roll back to: no version was ever promoted".into(),
            }));
        };
        self.check_servable(&target)?;
        let entry = HistoryEntry {
            action: Action::Rollback,
            version: target.clone(),
            from: index.champion.clone(),
            at: now_iso(),
            by: actor.by.clone(),
            note: actor.note.clone(),
        };
        index.champion = Some(target);
        index.history.push(entry.clone());
        self.save(&index)?;
        Ok(entry)
    }

    /// The champion's artifact directory, if a version is promoted (what a
    /// service loads).
    ///
    /// # Errors
    /// Unreadable index.
    pub fn champion_dir(&self) -> Result<Option<PathBuf>, RegistryError> {
        Ok(self.load()?.champion.map(|v| self.version_dir(&v)))
    }

    /// The model card of a registered version.
    ///
    /// # Errors
    /// Missing or invalid card.
    pub fn card(&self, version: &str) -> Result<serde_json::Value, RegistryError> {
        read_card(&self.version_dir(version))
    }

    fn check_servable(&self, version: &str) -> Result<(), RegistryError> {
        let dir = self.version_dir(version);
        FailureModel::load(&dir)
            .map(|_| ())
            .map_err(|e| RegistryError::Artifact {
                path: dir.display().to_string(),
                msg: e.to_string(),
            })
    }
}

fn card_str(card: &serde_json::Value, key: &str) -> Option<String> {
    card.get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

fn read_card(dir: &Path) -> Result<serde_json::Value, RegistryError> {
    let path = dir.join(CARD_FILE);
    let text = fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text).map_err(|e| RegistryError::Invalid {
        path: path.display().to_string(),
        msg: format!("not JSON: {e}"),
    })
}

/// Copies the regular files at the top of `from` into `to`, each fsynced.
fn copy_artifact(from: &Path, to: &Path) -> Result<(), RegistryError> {
    let mut copied_model = false;
    for entry in fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let kind = entry.file_type().map_err(io(&entry.path()))?;
        if !kind.is_file() {
            continue;
        }
        let src = entry.path();
        let dst = to.join(entry.file_name());
        fs::copy(&src, &dst).map_err(io(&src))?;
        File::open(&dst)
            .and_then(|f| f.sync_all())
            .map_err(io(&dst))?;
        copied_model |= entry.file_name() == MODEL_FILE;
    }
    if !copied_model {
        return Err(RegistryError::Artifact {
            path: from.display().to_string(),
            msg: format!("no {MODEL_FILE}"),
        });
    }
    Ok(())
}

#[cfg(all(test, feature = "train"))]
mod tests;

/// FNV-1a 64 of an artifact's `model.json`, as `fnv1a64:<hex>` (what
/// [`VersionEntry::model_hash`] records, so a server can tell an artifact
/// changed after it was registered).
///
/// # Errors
/// The file cannot be read.
pub fn model_json_hash(artifact: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(artifact.join("model.json"))?;
    let mut h = fieldpulse_features::snapshot::Fnv64::default();
    h.write(&bytes);
    Ok(format!("fnv1a64:{:016x}", h.finish()))
}
