//! Promotion to the cloud: serving the model registry's promoted version,
//! hot reload and shadow scoring (`scoring.registry`, `scoring.shadow`).
//!
//! ```text
//!  registry.json ──poll (scoring.registry_poll)──▶ Watcher ──load + validate──▶ Processor::update_models
//!  versions/<v>/                                    │ (off the scoring path)      every shard swaps between
//!                                                   ▼                             two records
//!                                  state_dir/served_model.json, shadow_report.json
//! ```
//!
//! At start ([`load_at_start`]) the registry's champion is loaded and checked
//! ([`load_version`]); if it cannot be served, the version named in
//! `served_model.json` (the last one this state directory served) is, and
//! with neither the cloud refuses to start. While running, the [`Watcher`]
//! reads `registry.json` every `registry_poll`; when the champion changes it
//! loads and checks the new version on a blocking thread and hands it to
//! every shard ([`crate::processor::Processor::update_models`]), which swaps
//! between two log records: every reading is scored by exactly one version,
//! the old one before its shard's swap point and the new one after.
//!
//! A version that fails ([`RefuseReason`]) is refused: the shards keep their
//! model, `fieldpulse_cloud_model_reload_failures_total{reason}` counts it,
//! and the watcher logs it once and does not try that version again until
//! `registry.json` changes.
//!
//! With `shadow = true` the registry's candidate ([`candidate_of`]) is scored
//! beside the champion on every reading: its evaluations are metered and
//! compared with the champion's (agreement by failure mode), never turned
//! into episodes or Salesforce actions. [`ShadowReporter`] writes the
//! comparison to `shadow_report.json`.
//!
//! Not kept across a crash: the swap point. Records replayed after a crash
//! (those after the shards' last checkpoint) are scored by the model served
//! at restart; the outbox's `emitted` keys still keep actions from repeating.

mod artifact;
mod report;
mod watcher;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

pub use artifact::{
    candidate_of, load_version, read_served, write_served, Compat, Loaded, Refusal, ServedRecord,
    SERVED_FILE,
};
pub use report::{ShadowReport, ShadowReporter, REPORT_FILE};
pub use watcher::{load_at_start, Startup, WatchState, Watcher};

/// Why a model version was refused (the `reason` label of
/// `fieldpulse_cloud_model_reload_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefuseReason {
    /// `registry.json` is unreadable, invalid or from a newer build.
    Registry,
    /// The version's artifact (directory or `model.json`) cannot be read.
    Missing,
    /// `model.json` differs from the bytes the registry recorded when the
    /// version was added.
    Corrupt,
    /// `model.json` is not a valid model.
    Invalid,
    /// The artifact's format or feature schema does not match this build.
    Incompatible,
    /// The model reads sensors the cloud does not score (`scoring.sensors`).
    Sensors,
    /// The model was trained at a reading cadence more than 2x off the
    /// served model's.
    Cadence,
}

impl RefuseReason {
    /// Every reason, in label order.
    pub const ALL: [Self; 7] = [
        Self::Registry,
        Self::Missing,
        Self::Corrupt,
        Self::Invalid,
        Self::Incompatible,
        Self::Sensors,
        Self::Cadence,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registry => "registry",
            Self::Missing => "missing",
            Self::Corrupt => "corrupt",
            Self::Invalid => "invalid",
            Self::Incompatible => "incompatible",
            Self::Sensors => "sensors",
            Self::Cadence => "cadence",
        }
    }
}

/// Why the cloud cannot serve a model from the registry at start.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Neither the promoted version nor the last served one can be served.
    #[error(
        "scoring.registry {registry}: no model to serve: {why}; and no earlier served version to \
         fall back on ({served}). Promote a version that loads with \
         `fieldpulse models promote --registry {registry} VERSION`"
    )]
    NoModel {
        /// The registry directory.
        registry: String,
        /// What went wrong with the promoted version.
        why: String,
        /// What went wrong with the fallback.
        served: String,
    },
}

/// Counters of the watcher (`fieldpulse_cloud_model_reload*`).
#[derive(Debug, Default)]
pub struct ReloadMetrics {
    /// Promoted versions loaded, checked and handed to the shards while running.
    pub reloads: AtomicU64,
    failures: [AtomicU64; RefuseReason::ALL.len()],
}

impl ReloadMetrics {
    /// Counts one refused version.
    pub fn count_failure(&self, reason: RefuseReason) {
        self.failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals for one reason.
    pub fn failures(&self, reason: RefuseReason) -> u64 {
        self.failures[reason as usize].load(Ordering::Relaxed)
    }

    /// Renders the counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let name = "fieldpulse_cloud_model_reloads_total";
        let _ = writeln!(
            out,
            "# HELP {name} Promoted model versions loaded and handed to the scoring shards while running.\n# TYPE {name} counter\n{name} {}",
            self.reloads.load(Ordering::Relaxed)
        );
        let name = "fieldpulse_cloud_model_reload_failures_total";
        let _ = writeln!(
            out,
            "# HELP {name} Model versions refused (the shards kept their model), by reason.\n# TYPE {name} counter"
        );
        for reason in RefuseReason::ALL {
            let _ = writeln!(
                out,
                "{name}{{reason=\"{}\"}} {}",
                reason.as_str(),
                self.failures(reason)
            );
        }
    }
}
