//! [`EpisodeBook`]: every (asset, mode) [`Episode`] of a processor, with the
//! gauges and counters its metrics report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::config::EpisodeConfig;
use super::episode::{Episode, EpisodeCounters, Evaluation, Transition};

/// Episodes by asset, then by failure mode or anomaly kind.
///
/// Nested string-keyed maps, so the whole book is a plain JSON object for the
/// checkpoint, in a deterministic order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpisodeBook {
    assets: BTreeMap<String, BTreeMap<String, Episode>>,
}

/// Gauges over a book, for `fieldpulse_cloud_alerts_open` and friends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookCounts {
    /// (asset, mode) pairs with state.
    pub tracked: usize,
    /// Open episodes, suppressed ones included.
    pub open: usize,
    /// Open episodes silenced by an open Work Order.
    pub suppressed: usize,
    /// Open episodes kept open because they flapped.
    pub flapping: usize,
    /// Pairs under a dispatcher's snooze at the given wall time.
    pub snoozed: usize,
}

impl EpisodeBook {
    /// The episode of (asset, mode), if it has state.
    pub fn get(&self, asset: &str, mode: &str) -> Option<&Episode> {
        self.assets.get(asset)?.get(mode)
    }

    /// The episode of (asset, mode), created idle when absent; use it for the
    /// Work Order, snooze and Case events.
    pub fn episode_mut(&mut self, asset: &str, mode: &str) -> &mut Episode {
        // Look up before inserting so the hot path (the pair exists) does not
        // allocate the keys.
        if !self.assets.contains_key(asset) {
            self.assets.insert(asset.to_owned(), BTreeMap::new());
        }
        let modes = self.assets.get_mut(asset).expect("asset inserted above");
        if !modes.contains_key(mode) {
            modes.insert(mode.to_owned(), Episode::default());
        }
        modes.get_mut(mode).expect("mode inserted above")
    }

    /// Feeds `eval` to the episode of (asset, mode).
    pub fn observe(
        &mut self,
        asset: &str,
        mode: &str,
        cfg: &EpisodeConfig,
        eval: &Evaluation,
    ) -> Option<Transition> {
        self.episode_mut(asset, mode).observe(cfg, eval)
    }

    /// Every (asset, mode, episode), ordered by asset then mode.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Episode)> {
        self.assets.iter().flat_map(|(asset, modes)| {
            modes
                .iter()
                .map(move |(mode, episode)| (asset.as_str(), mode.as_str(), episode))
        })
    }

    /// Gauges at wall time `now_ms` (which decides whether a snooze lasts).
    pub fn counts(&self, now_ms: i64) -> BookCounts {
        let mut res = BookCounts::default();
        for (_, _, episode) in self.iter() {
            res.tracked += 1;
            res.open += usize::from(episode.is_open());
            res.suppressed += usize::from(episode.is_suppressed());
            res.flapping += usize::from(episode.is_flapping());
            res.snoozed += usize::from(episode.is_snoozed(now_ms));
        }
        res
    }

    /// Counters summed over every episode.
    pub fn counters(&self) -> EpisodeCounters {
        let mut res = EpisodeCounters::default();
        for (_, _, episode) in self.iter() {
            res.add(episode.counters());
        }
        res
    }
}
