//! The registry watcher: what to load at start, and the poll loop.
//!
//! [`WatchState`] is the bookkeeping as a pure state machine (what is served,
//! what is in shadow, which versions were refused since the registry last
//! changed); [`Watcher`] does the IO around it on a blocking thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldpulse_models::registry::{Index, Registry};
use tokio_util::sync::CancellationToken;

use super::artifact::{
    candidate_of, load_version, read_served, write_served, Compat, Loaded, Refusal, ServedRecord,
};
use super::report::ShadowReporter;
use super::{RefuseReason, ReloadError, ReloadMetrics};
use crate::processor::{ModelUpdate, Processor, SensorLayout};

/// How often `shadow_report.json` is rewritten while a candidate is in shadow
/// (and once more at shutdown).
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// What to serve at start.
#[derive(Debug)]
pub struct Startup {
    /// The champion (the promoted version, or the last served one when the
    /// promoted version cannot be served).
    pub champion: Loaded,
    /// The candidate to score in shadow, when enabled and servable.
    pub shadow: Option<Loaded>,
    /// Versions refused at start (already counted and logged).
    pub refused: Vec<Refusal>,
    /// The index read at start, if it could be.
    pub index: Option<Index>,
}

/// Loads the registry's champion (or, failing that, the version
/// `served_model.json` names) and, with `shadow`, its candidate. `sensors`
/// are the configured `scoring.sensors` (empty: the champion's are used).
/// Refusals are counted in `metrics` and logged here.
///
/// # Errors
/// [`ReloadError::NoModel`] when neither version can be served.
pub fn load_at_start(
    registry: &Registry,
    state_dir: &Path,
    sensors: &[String],
    shadow: bool,
    metrics: &ReloadMetrics,
) -> Result<Startup, ReloadError> {
    let layout = (!sensors.is_empty()).then(|| SensorLayout::new(sensors.to_vec()));
    let compat = Compat {
        layout: layout.as_ref(),
        cadence_s: None,
    };
    let mut refused = Vec::new();
    let index = match registry.load() {
        Ok(index) => Some(index),
        Err(e) => {
            refused.push(Refusal {
                version: String::new(),
                reason: RefuseReason::Registry,
                message: e.to_string(),
            });
            None
        }
    };
    let promoted = index.as_ref().and_then(|i| i.champion.clone());
    let mut champion = None;
    if let Some(v) = &promoted {
        match load_version(registry, index.as_ref(), v, compat) {
            Ok(l) => champion = Some(l),
            Err(r) => refused.push(r),
        }
    }
    for r in &refused {
        metrics.count_failure(r.reason);
        tracing::error!(registry = %registry.dir().display(), refusal = %r, "Cannot serve the promoted model.");
    }
    let champion = match champion {
        Some(c) => c,
        None => {
            let why = match (&promoted, refused.last()) {
                (_, Some(r)) => r.to_string(),
                (None, None) => "no version is promoted".to_string(),
                (Some(v), None) => format!("version {v} cannot be served"),
            };
            let served = match read_served(state_dir) {
                Ok(Some(record)) => {
                    match load_version(registry, index.as_ref(), &record.version, compat) {
                        Ok(l) => {
                            tracing::error!(
                                version = %record.version,
                                served_since = %record.since,
                                "Serving the last served model version instead of the promoted one; fix or roll back the registry."
                            );
                            Ok(l)
                        }
                        Err(r) => Err(format!("{} names {r}", super::SERVED_FILE)),
                    }
                }
                Ok(None) => Err(format!(
                    "{} has no {}",
                    state_dir.display(),
                    super::SERVED_FILE
                )),
                Err(e) => Err(e),
            };
            match served {
                Ok(l) => l,
                Err(served) => {
                    return Err(ReloadError::NoModel {
                        registry: registry.dir().display().to_string(),
                        why,
                        served,
                    })
                }
            }
        }
    };
    let layout =
        layout.unwrap_or_else(|| SensorLayout::new(champion.served.model.schema.sensors.clone()));
    let mut shadow_loaded = None;
    if shadow {
        if let Some(v) = index.as_ref().and_then(candidate_of) {
            let compat = Compat {
                layout: Some(&layout),
                cadence_s: champion.cadence_s,
            };
            match load_version(registry, index.as_ref(), &v, compat) {
                Ok(l) => shadow_loaded = Some(l),
                Err(r) => {
                    metrics.count_failure(r.reason);
                    tracing::error!(refusal = %r, "Cannot score the candidate in shadow.");
                    refused.push(r);
                }
            }
        }
    }
    if let Err(e) = write_served(state_dir, &ServedRecord::new(registry, &champion)) {
        tracing::warn!(error = %e, "Could not record the served model version.");
    }
    Ok(Startup {
        champion,
        shadow: shadow_loaded,
        refused,
        index,
    })
}

/// What one poll should load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// A new champion to load.
    pub champion: Option<String>,
    /// A new shadow target: `Some(None)` stops shadow scoring.
    pub shadow: Option<Option<String>>,
}

/// The watcher's bookkeeping, with no IO.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchState {
    /// The version served.
    pub champion: String,
    /// Training cadence of the served version.
    pub champion_cadence_s: Option<f64>,
    /// The version in shadow.
    pub shadow: Option<String>,
    /// Whether shadow scoring is enabled.
    pub shadow_enabled: bool,
    /// Versions refused since the index last changed, with the reason.
    pub refused: BTreeMap<String, RefuseReason>,
    /// The index as last read.
    pub last_index: Option<Index>,
    /// The registry could not be read at the last poll (logged once).
    pub registry_failing: bool,
}

impl WatchState {
    /// The state after [`load_at_start`].
    pub fn new(startup: &Startup, shadow_enabled: bool) -> Self {
        Self {
            champion: startup.champion.served.version.to_string(),
            champion_cadence_s: startup.champion.cadence_s,
            shadow: startup
                .shadow
                .as_ref()
                .map(|s| s.served.version.to_string()),
            shadow_enabled,
            refused: startup
                .refused
                .iter()
                .filter(|r| !r.version.is_empty())
                .map(|r| (r.version.clone(), r.reason))
                .collect(),
            last_index: startup.index.clone(),
            registry_failing: startup.index.is_none(),
        }
    }

    /// Given the index just read, what to load. A changed index forgets the
    /// refusals, so each refused version is tried again once.
    pub fn plan(&mut self, index: &Index) -> Plan {
        if self.last_index.as_ref() != Some(index) {
            self.refused.clear();
            self.last_index = Some(index.clone());
        }
        self.registry_failing = false;
        let open = |v: &String| !self.refused.contains_key(v);
        let champion = index
            .champion
            .clone()
            .filter(|v| *v != self.champion && open(v));
        let shadow = if self.shadow_enabled {
            let target = candidate_of(index).filter(open);
            (target != self.shadow).then_some(target)
        } else {
            None
        };
        Plan { champion, shadow }
    }

    /// Records a refusal; true the first time (since the index changed) for
    /// this version, which is when it is logged.
    pub fn refuse(&mut self, refusal: &Refusal) -> bool {
        self.refused
            .insert(refusal.version.clone(), refusal.reason)
            .is_none()
    }
}

/// Polls the registry and hands new versions to the processor.
pub struct Watcher {
    registry: Registry,
    state_dir: PathBuf,
    processor: Arc<Processor>,
    layout: SensorLayout,
    metrics: Arc<ReloadMetrics>,
    reporter: Arc<ShadowReporter>,
    state: WatchState,
    poll_every: Duration,
    last_report: Instant,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("registry", &self.registry.dir())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// A watcher continuing from `state` (see [`WatchState::new`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        registry: Registry,
        state_dir: &Path,
        processor: Arc<Processor>,
        layout: SensorLayout,
        metrics: Arc<ReloadMetrics>,
        reporter: Arc<ShadowReporter>,
        state: WatchState,
        poll_every: Duration,
    ) -> Self {
        Self {
            registry,
            state_dir: state_dir.to_path_buf(),
            processor,
            layout,
            metrics,
            reporter,
            state,
            poll_every,
            last_report: Instant::now(),
        }
    }

    /// Polls every `registry_poll` until `shutdown`; each poll runs on a
    /// blocking thread (reading and checking an artifact is file IO and JSON).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.poll_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                // Cancel-safe: a missed tick is only a later poll.
                _ = tick.tick() => {}
            }
            let polled = tokio::task::spawn_blocking(move || {
                self.poll_once();
                self
            })
            .await;
            match polled {
                Ok(w) => self = w,
                Err(e) => {
                    tracing::error!(error = %e, "Model registry watcher stopped; the served model stays.");
                    return;
                }
            }
        }
    }

    /// Reads the registry once and applies what changed.
    pub fn poll_once(&mut self) {
        let index = match self.registry.load() {
            Ok(index) => index,
            Err(e) => {
                if !self.state.registry_failing {
                    self.state.registry_failing = true;
                    self.metrics.count_failure(RefuseReason::Registry);
                    tracing::error!(registry = %self.registry.dir().display(), error = %e, "Cannot read the model registry; the served model stays.");
                }
                return;
            }
        };
        if self.state.registry_failing {
            tracing::info!(registry = %self.registry.dir().display(), "The model registry is readable again.");
        }
        let plan = self.state.plan(&index);
        let mut update = ModelUpdate::default();
        if let Some(version) = &plan.champion {
            let compat = Compat {
                layout: Some(&self.layout),
                cadence_s: self.state.champion_cadence_s,
            };
            let started = Instant::now();
            match load_version(&self.registry, Some(&index), version, compat) {
                Ok(loaded) => {
                    tracing::info!(
                        from = %self.state.champion,
                        to = %version,
                        model_version = %loaded.served.model.model_version,
                        load_ms = started.elapsed().as_millis() as u64,
                        "Model reloaded: the shards switch between two records."
                    );
                    if let Err(e) =
                        write_served(&self.state_dir, &ServedRecord::new(&self.registry, &loaded))
                    {
                        tracing::warn!(error = %e, "Could not record the served model version.");
                    }
                    self.state.champion = version.clone();
                    self.state.champion_cadence_s = loaded.cadence_s;
                    update.champion = Some(loaded.served);
                }
                Err(r) => self.refused(&r),
            }
        }
        if let Some(target) = plan.shadow {
            let next = match target {
                None => None,
                Some(version) => {
                    let compat = Compat {
                        layout: Some(&self.layout),
                        cadence_s: self.state.champion_cadence_s,
                    };
                    match load_version(&self.registry, Some(&index), &version, compat) {
                        Ok(loaded) => {
                            tracing::info!(%version, champion = %self.state.champion, "Scoring the candidate in shadow.");
                            Some(loaded.served)
                        }
                        Err(r) => {
                            self.refused(&r);
                            None
                        }
                    }
                }
            };
            let next_version = next.as_ref().map(|s| s.version.to_string());
            if next_version != self.state.shadow {
                self.state.shadow = next_version;
                update.shadow = Some(next);
            }
        }
        let changed = update.champion.is_some() || update.shadow.is_some();
        if changed {
            if update.champion.is_some() {
                self.metrics.reloads.fetch_add(1, Ordering::Relaxed);
            }
            self.processor.update_models(update);
            let (champion, shadow) = self.processor.models();
            if let Err(e) = self.reporter.restart(champion, shadow) {
                tracing::warn!(error = %e, "Could not write the shadow report.");
            }
            self.last_report = Instant::now();
        } else if self.last_report.elapsed() >= REPORT_EVERY {
            self.last_report = Instant::now();
            if let Err(e) = self.reporter.write() {
                tracing::warn!(error = %e, "Could not write the shadow report.");
            }
        }
    }

    fn refused(&mut self, refusal: &Refusal) {
        if self.state.refuse(refusal) {
            self.metrics.count_failure(refusal.reason);
            tracing::error!(
                refusal = %refusal,
                served = %self.state.champion,
                "Refused a model version; the shards keep the served model. It is not tried again until the registry changes."
            );
        }
    }

    /// The bookkeeping now.
    pub fn state(&self) -> &WatchState {
        &self.state
    }
}

#[cfg(test)]
mod tests {
    use fieldpulse_models::registry::VersionEntry;

    use super::*;

    fn index(champion: &str, candidate: Option<&str>, n: usize) -> Index {
        Index {
            versions: (1..=n)
                .map(|i| VersionEntry {
                    version: format!("v{i}"),
                    added_at: String::new(),
                    added_by: String::new(),
                    source: String::new(),
                    model_version: format!("m{i}"),
                    data_fingerprint: None,
                    created_at: None,
                    model_hash: None,
                })
                .collect(),
            champion: Some(champion.into()),
            candidate: candidate.map(Into::into),
            ..Index::default()
        }
    }

    fn state(shadow: bool) -> WatchState {
        WatchState {
            champion: "v1".into(),
            champion_cadence_s: None,
            shadow: None,
            shadow_enabled: shadow,
            refused: BTreeMap::new(),
            last_index: None,
            registry_failing: false,
        }
    }

    #[test]
    fn a_refused_version_is_not_tried_again_until_the_index_changes() {
        let mut s = state(false);
        let i = index("v2", None, 2);
        assert_eq!(s.plan(&i).champion.as_deref(), Some("v2"));
        let refusal = Refusal {
            version: "v2".into(),
            reason: RefuseReason::Corrupt,
            message: String::new(),
        };
        assert!(s.refuse(&refusal), "first refusal is logged");
        assert!(!s.refuse(&refusal), "a second one is not");
        assert_eq!(s.plan(&i), Plan::default());
        assert_eq!(s.plan(&i), Plan::default());
        // Any change of the index: tried once more.
        let mut changed = i.clone();
        changed.candidate = Some("v2".into());
        assert_eq!(s.plan(&changed).champion.as_deref(), Some("v2"));
        // The served version is never reloaded.
        assert_eq!(s.plan(&index("v1", None, 2)), Plan::default());
    }

    #[test]
    fn the_shadow_follows_the_candidate_when_enabled() {
        let mut off = state(false);
        assert_eq!(off.plan(&index("v1", Some("v2"), 2)).shadow, None);
        let mut s = state(true);
        assert_eq!(
            s.plan(&index("v1", Some("v2"), 2)).shadow,
            Some(Some("v2".into()))
        );
        s.shadow = Some("v2".into());
        assert_eq!(s.plan(&index("v1", Some("v2"), 2)).shadow, None);
        // Promoted: the candidate is gone, shadow scoring stops.
        let p = s.plan(&index("v2", None, 2));
        assert_eq!(p.champion.as_deref(), Some("v2"));
        assert_eq!(p.shadow, Some(None));
    }
}
