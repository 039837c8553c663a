//! [`Episode`]: the state machine of one (asset, failure mode or anomaly kind).

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::config::{span_ms, EpisodeConfig};
use super::priority::Priority;

/// One scoring result for an (asset, mode), as the processor feeds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Asset time of the scored reading (ms since the epoch): the clock for
    /// counting, ordering, cooldown, update interval and flapping.
    pub ts_ms: i64,
    /// Failure probability within the horizon, or a calibrated anomaly score.
    /// NaN or infinite is no evidence: counted and ignored.
    pub risk: f64,
    /// The model's alert threshold for this mode (from its model card).
    pub threshold: f64,
    /// Predicted remaining useful life, when the model gives one.
    pub rul_days: Option<f64>,
    /// The dispatch priority of this evaluation (see [`prioritize`](super::prioritize));
    /// a rise to a higher band escalates an open episode.
    pub priority: Priority,
    /// True for readings that came through the edge's backfill lane.
    pub historical: bool,
    /// Wall clock when the evaluation is made (ms since the epoch): judges
    /// `max_alert_age_ms` and snoozes, which a dispatcher sets in wall time.
    pub now_ms: i64,
}

/// Why an episode closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The risk stayed below `threshold * hysteresis` for `close_after`
    /// evaluations (and, for a flapping episode, for a whole flap window).
    Recovered,
    /// A Work Order for this problem was completed; its outcome is the label.
    WorkOrderCompleted {
        /// The Work Order id.
        work_order: String,
        /// The failure code the technician recorded, if any.
        failure_code: Option<String>,
    },
    /// A dispatcher closed the Case as not a problem (feedback: false alarm).
    DismissedAsFalseAlarm,
}

/// Why an open episode escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationCause {
    /// The priority rose above every priority notified in this episode.
    PriorityBand,
    /// The risk rose above `escalate_ratio` times the last notified risk.
    RiskRatio,
}

/// How many finished Work Order ids an episode remembers to recognise replays.
const FINISHED_WORK_ORDERS_KEPT: usize = 16;

/// What the action builder needs to know about an episode at a transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeSummary {
    /// Episode number of this (asset, mode), from 1; part of the Case's
    /// external key, so it changes only when the previous episode closed.
    pub seq: u64,
    /// When the transition happened: the evaluation's `ts_ms`, or the time
    /// given with a Work Order or Case event.
    pub at_ms: i64,
    /// Asset time of the evaluation that opened the episode.
    pub opened_at_ms: i64,
    /// Highest risk seen in the episode.
    pub peak_risk: f64,
    /// Most recent risk.
    pub last_risk: f64,
    /// Most recent remaining useful life, if the model gives one.
    pub last_rul_days: Option<f64>,
    /// Priority of the most recent evaluation.
    pub priority: Priority,
    /// Highest priority notified in the episode (what the Case shows).
    pub notified_priority: Priority,
    /// Evaluations counted in the episode, the opening one included.
    pub n_evaluations: u64,
    /// The episode was kept open because it flapped.
    pub flapping: bool,
}

/// A change the processor turns into Salesforce actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// A new episode: create the Case and the alert.
    Opened {
        /// The episode.
        episode: EpisodeSummary,
    },
    /// The priority or risk rose enough to tell the dispatcher now.
    Escalated {
        /// The episode, with the new `notified_priority`.
        episode: EpisodeSummary,
        /// The highest priority notified before.
        from: Priority,
        /// Band crossing or risk ratio.
        cause: EscalationCause,
    },
    /// Periodic refresh of an open episode (at most every `min_update_interval_ms`).
    Updated {
        /// The episode.
        episode: EpisodeSummary,
    },
    /// The episode would have recovered but opened too often: it stays open,
    /// marked flapping, instead of closing and reopening.
    Flapping {
        /// The episode, `flapping` set.
        episode: EpisodeSummary,
    },
    /// A Work Order for the problem opened: the episode is inhibited.
    Suppressed {
        /// The episode.
        episode: EpisodeSummary,
        /// The Work Order that inhibits it.
        work_order: String,
    },
    /// The last inhibiting Work Order was cancelled: the episode notifies again.
    Resumed {
        /// The episode.
        episode: EpisodeSummary,
        /// The cancelled Work Order.
        work_order: String,
    },
    /// The episode ended: close or resolve the Case and the alert.
    Closed {
        /// The episode as it ended.
        episode: EpisodeSummary,
        /// Why.
        reason: CloseReason,
    },
}

impl Transition {
    /// The episode the transition is about.
    pub fn episode(&self) -> &EpisodeSummary {
        match self {
            Self::Opened { episode }
            | Self::Escalated { episode, .. }
            | Self::Updated { episode }
            | Self::Flapping { episode }
            | Self::Suppressed { episode, .. }
            | Self::Resumed { episode, .. }
            | Self::Closed { episode, .. } => episode,
        }
    }

    /// A short stable name (`opened`, `escalated`, ...) for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Opened { .. } => "opened",
            Self::Escalated { .. } => "escalated",
            Self::Updated { .. } => "updated",
            Self::Flapping { .. } => "flapping",
            Self::Suppressed { .. } => "suppressed",
            Self::Resumed { .. } => "resumed",
            Self::Closed { .. } => "closed",
        }
    }
}

/// Evaluations and events that changed nothing, by reason, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EpisodeCounters {
    /// Evaluations taken into the state.
    pub evaluations: u64,
    /// Evaluations not newer than the newest seen (out of order or replayed): ignored.
    pub stale: u64,
    /// Evaluations with a NaN or infinite risk or threshold: ignored.
    pub non_finite: u64,
    /// Evaluations that would have opened an episode but were historical
    /// and older than `max_alert_age_ms`.
    pub historical_held: u64,
    /// Evaluations that would have opened an episode while a Work Order for
    /// the problem is open.
    pub inhibited: u64,
    /// Evaluations that would have opened an episode during a snooze.
    pub snoozed_held: u64,
    /// Evaluations of an open episode while a Work Order suppresses it.
    pub suppressed: u64,
    /// Work Order events that changed nothing (already known, or unknown).
    pub work_order_ignored: u64,
}

impl EpisodeCounters {
    /// Adds `other` into `self` (for fleet totals).
    pub fn add(&mut self, other: &Self) {
        self.evaluations += other.evaluations;
        self.stale += other.stale;
        self.non_finite += other.non_finite;
        self.historical_held += other.historical_held;
        self.inhibited += other.inhibited;
        self.snoozed_held += other.snoozed_held;
        self.suppressed += other.suppressed;
        self.work_order_ignored += other.work_order_ignored;
    }
}

/// The state of one open episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OpenEpisode {
    opened_at_ms: i64,
    peak_risk: f64,
    last_risk: f64,
    last_rul_days: Option<f64>,
    priority: Priority,
    notified_priority: Priority,
    /// Risk of the last `Opened`/`Escalated`: the base of the ratio rule.
    escalation_base: f64,
    /// Asset time of the last notice (any transition of this episode).
    last_notice_ms: i64,
    n_evaluations: u64,
    /// Consecutive evaluations below the close level.
    lows: u32,
    /// Asset time of the first of those evaluations.
    low_since_ms: Option<i64>,
    flapping: bool,
}

/// Where the machine is; see the module documentation for the diagram.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    /// No open episode; `hits` counts towards opening one.
    #[default]
    Idle,
    /// An episode is open (suppressed when `work_orders` is not empty).
    Open(OpenEpisode),
}

/// Alert state of one (asset, mode): pending count, the open episode if any,
/// inhibiting Work Orders, snooze, cooldown and flap history.
///
/// Pure and deterministic: the same calls give the same transitions, and a
/// serde round trip (the processor's checkpoint) changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Episode {
    phase: Phase,
    /// Number of the last opened episode (0 before the first).
    seq: u64,
    /// Consecutive evaluations at or above the threshold while idle.
    hits: u32,
    /// Asset time of the newest evaluation taken.
    last_ts_ms: Option<i64>,
    /// When the last episode closed or a Work Order completed (cooldown start).
    cooldown_from_ms: Option<i64>,
    /// Asset times of the latest opens, at most `flap_max_opens` of them.
    recent_opens_ms: VecDeque<i64>,
    /// Open Work Orders for this problem (inhibition).
    work_orders: BTreeSet<String>,
    /// The latest completed or cancelled Work Orders, so a replayed event
    /// about one of them is ignored instead of re-inhibiting or closing.
    finished_work_orders: VecDeque<String>,
    /// Wall-clock end of a dispatcher's snooze.
    snoozed_until_ms: Option<i64>,
    counters: EpisodeCounters,
}

impl Episode {
    /// Takes one evaluation. Returns the transition it causes, if any.
    ///
    /// Ignored (and counted): a NaN or infinite risk or threshold, and an
    /// evaluation whose `ts_ms` is not newer than the newest one taken.
    pub fn observe(&mut self, cfg: &EpisodeConfig, eval: &Evaluation) -> Option<Transition> {
        if !(eval.risk.is_finite() && eval.threshold.is_finite()) {
            self.counters.non_finite += 1;
            return None;
        }
        if self.last_ts_ms.is_some_and(|last| eval.ts_ms <= last) {
            self.counters.stale += 1;
            return None;
        }
        self.last_ts_ms = Some(eval.ts_ms);
        self.counters.evaluations += 1;
        let high = eval.risk >= eval.threshold;
        // `!high` keeps the two classes apart even for a negative threshold.
        let low = !high && eval.risk < eval.threshold * cfg.hysteresis;
        if matches!(self.phase, Phase::Idle) {
            self.observe_idle(cfg, eval, high)
        } else {
            self.observe_open(cfg, eval, low)
        }
    }

    /// A Work Order for this problem opened: inhibits the episode until it
    /// completes or is cancelled. Returns `Suppressed` when it silences an
    /// open episode; while idle it only withholds the next open.
    /// An event about a Work Order already open, completed or cancelled is
    /// ignored and counted.
    pub fn work_order_opened(&mut self, wo_id: &str, at_ms: i64) -> Option<Transition> {
        let was_inhibited = !self.work_orders.is_empty();
        if self.is_finished(wo_id) || !self.work_orders.insert(wo_id.to_owned()) {
            self.counters.work_order_ignored += 1;
            return None;
        }
        if was_inhibited {
            return None;
        }
        let episode = self.summary(at_ms)?;
        Some(Transition::Suppressed {
            episode,
            work_order: wo_id.to_owned(),
        })
    }

    /// A Work Order for this problem completed. When no other one is open,
    /// this closes the open episode with the outcome and starts the cooldown,
    /// also while idle (a repaired asset gets time to settle before a new
    /// episode). A Work Order never seen open counts too (it may have opened
    /// and completed between two polls); a replayed completion is ignored
    /// and counted.
    pub fn work_order_completed(
        &mut self,
        wo_id: &str,
        at_ms: i64,
        failure_code: Option<&str>,
    ) -> Option<Transition> {
        if self.is_finished(wo_id) {
            self.counters.work_order_ignored += 1;
            return None;
        }
        let known = self.work_orders.remove(wo_id);
        self.remember_finished(wo_id);
        if !self.work_orders.is_empty() {
            if !known {
                self.counters.work_order_ignored += 1;
            }
            return None;
        }
        self.close(
            at_ms,
            CloseReason::WorkOrderCompleted {
                work_order: wo_id.to_owned(),
                failure_code: failure_code.map(str::to_owned),
            },
        )
    }

    /// A Work Order for this problem was cancelled (or could not be
    /// completed): the problem is not fixed. When it was the last one, an
    /// open episode notifies again (`Resumed`).
    pub fn work_order_cancelled(&mut self, wo_id: &str, at_ms: i64) -> Option<Transition> {
        if !self.work_orders.remove(wo_id) {
            self.counters.work_order_ignored += 1;
            return None;
        }
        self.remember_finished(wo_id);
        if !self.work_orders.is_empty() {
            return None;
        }
        let episode = self.summary(at_ms)?;
        Some(Transition::Resumed {
            episode,
            work_order: wo_id.to_owned(),
        })
    }

    /// A dispatcher's silence until `until_ms` (wall clock): no `Opened`,
    /// `Escalated` or `Updated` before then; `Closed` and `Flapping` still
    /// go out so Salesforce never shows a Case the machine has closed. A
    /// later call replaces the end; a past `until_ms` lifts the snooze.
    pub fn snooze(&mut self, until_ms: i64) {
        self.snoozed_until_ms = Some(until_ms);
    }

    /// A dispatcher closed the Case as not a problem: closes the open
    /// episode (feedback for the model) and starts the cooldown.
    pub fn case_closed_as_not_a_problem(&mut self, at_ms: i64) -> Option<Transition> {
        if matches!(self.phase, Phase::Idle) {
            return None;
        }
        self.close(at_ms, CloseReason::DismissedAsFalseAlarm)
    }

    /// True while an episode is open (suppressed or not).
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// True while an open episode is silenced by an open Work Order.
    pub fn is_suppressed(&self) -> bool {
        self.is_open() && !self.work_orders.is_empty()
    }

    /// True while the open episode is marked flapping.
    pub fn is_flapping(&self) -> bool {
        matches!(&self.phase, Phase::Open(open) if open.flapping)
    }

    /// True while a snooze set by [`snooze`](Self::snooze) lasts at wall time `now_ms`.
    pub fn is_snoozed(&self, now_ms: i64) -> bool {
        self.snoozed_until_ms.is_some_and(|until| now_ms < until)
    }

    /// Number of the current or last episode (0 before the first).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The open episode as of `at_ms`, if one is open.
    pub fn summary(&self, at_ms: i64) -> Option<EpisodeSummary> {
        match &self.phase {
            Phase::Idle => None,
            Phase::Open(open) => Some(EpisodeSummary {
                seq: self.seq,
                at_ms,
                opened_at_ms: open.opened_at_ms,
                peak_risk: open.peak_risk,
                last_risk: open.last_risk,
                last_rul_days: open.last_rul_days,
                priority: open.priority,
                notified_priority: open.notified_priority,
                n_evaluations: open.n_evaluations,
                flapping: open.flapping,
            }),
        }
    }

    /// What was ignored or withheld, by reason.
    pub fn counters(&self) -> &EpisodeCounters {
        &self.counters
    }

    fn observe_idle(
        &mut self,
        cfg: &EpisodeConfig,
        eval: &Evaluation,
        high: bool,
    ) -> Option<Transition> {
        let in_cooldown = self
            .cooldown_from_ms
            .is_some_and(|from| eval.ts_ms.saturating_sub(from) < span_ms(cfg.cooldown_ms));
        // Evidence from the cooldown (often data from before the repair)
        // does not count: a new episode needs `open_after` fresh evaluations.
        if !high || in_cooldown {
            self.hits = 0;
            return None;
        }
        self.hits = self.hits.saturating_add(1);
        if self.hits < cfg.open_after {
            return None;
        }
        if !self.work_orders.is_empty() {
            self.counters.inhibited += 1;
            return None;
        }
        if eval.historical && eval.now_ms.saturating_sub(eval.ts_ms) > span_ms(cfg.max_alert_age_ms)
        {
            self.counters.historical_held += 1;
            return None;
        }
        if self.is_snoozed(eval.now_ms) {
            self.counters.snoozed_held += 1;
            return None;
        }
        self.hits = 0;
        self.seq += 1;
        self.record_open(cfg, eval.ts_ms);
        self.phase = Phase::Open(OpenEpisode {
            opened_at_ms: eval.ts_ms,
            peak_risk: eval.risk,
            last_risk: eval.risk,
            last_rul_days: finite(eval.rul_days),
            priority: eval.priority,
            notified_priority: eval.priority,
            escalation_base: eval.risk,
            last_notice_ms: eval.ts_ms,
            n_evaluations: 1,
            lows: 0,
            low_since_ms: None,
            flapping: false,
        });
        let episode = self.summary(eval.ts_ms)?;
        Some(Transition::Opened { episode })
    }

    fn observe_open(
        &mut self,
        cfg: &EpisodeConfig,
        eval: &Evaluation,
        low: bool,
    ) -> Option<Transition> {
        let suppressed = !self.work_orders.is_empty();
        let opens_in_window = self.opens_in_window(cfg, eval.ts_ms);
        let snoozed = self.is_snoozed(eval.now_ms);
        let Phase::Open(open) = &mut self.phase else {
            return None;
        };
        open.n_evaluations += 1;
        open.last_risk = eval.risk;
        open.peak_risk = open.peak_risk.max(eval.risk);
        open.priority = eval.priority;
        if let Some(rul) = finite(eval.rul_days) {
            open.last_rul_days = Some(rul);
        }
        if suppressed {
            // The Work Order is the resolution: no recovery, no notices.
            self.counters.suppressed += 1;
            return None;
        }
        if low {
            open.lows = open.lows.saturating_add(1);
            open.low_since_ms.get_or_insert(eval.ts_ms);
        } else {
            open.lows = 0;
            open.low_since_ms = None;
        }
        if open.lows >= cfg.close_after {
            let low_for = eval
                .ts_ms
                .saturating_sub(open.low_since_ms.unwrap_or(eval.ts_ms));
            if !open.flapping {
                if cfg.flap_max_opens > 0 && opens_in_window >= cfg.flap_max_opens as usize {
                    open.flapping = true;
                    open.last_notice_ms = eval.ts_ms;
                    let episode = self.summary(eval.ts_ms)?;
                    return Some(Transition::Flapping { episode });
                }
                return self.close(eval.ts_ms, CloseReason::Recovered);
            }
            if low_for >= span_ms(cfg.flap_window_ms) {
                return self.close(eval.ts_ms, CloseReason::Recovered);
            }
        }
        if snoozed {
            return None;
        }
        let from = open.notified_priority;
        let cause = if eval.priority > open.notified_priority {
            Some(EscalationCause::PriorityBand)
        } else if open.escalation_base > 0.0
            && eval.risk > open.escalation_base * cfg.escalate_ratio
        {
            Some(EscalationCause::RiskRatio)
        } else {
            None
        };
        if let Some(cause) = cause {
            open.notified_priority = open.notified_priority.max(eval.priority);
            open.escalation_base = eval.risk;
            open.last_notice_ms = eval.ts_ms;
            let episode = self.summary(eval.ts_ms)?;
            return Some(Transition::Escalated {
                episode,
                from,
                cause,
            });
        }
        if eval.ts_ms.saturating_sub(open.last_notice_ms) >= span_ms(cfg.min_update_interval_ms) {
            open.last_notice_ms = eval.ts_ms;
            let episode = self.summary(eval.ts_ms)?;
            return Some(Transition::Updated { episode });
        }
        None
    }

    /// Ends the open episode (if any) and starts the cooldown at `at_ms`.
    fn close(&mut self, at_ms: i64, reason: CloseReason) -> Option<Transition> {
        self.hits = 0;
        self.cooldown_from_ms = Some(self.cooldown_from_ms.map_or(at_ms, |from| from.max(at_ms)));
        let episode = self.summary(at_ms);
        self.phase = Phase::Idle;
        Some(Transition::Closed {
            episode: episode?,
            reason,
        })
    }

    fn is_finished(&self, wo_id: &str) -> bool {
        self.finished_work_orders.iter().any(|id| id == wo_id)
    }

    fn remember_finished(&mut self, wo_id: &str) {
        self.finished_work_orders.push_back(wo_id.to_owned());
        while self.finished_work_orders.len() > FINISHED_WORK_ORDERS_KEPT {
            self.finished_work_orders.pop_front();
        }
    }

    fn record_open(&mut self, cfg: &EpisodeConfig, ts_ms: i64) {
        if cfg.flap_max_opens == 0 {
            self.recent_opens_ms.clear();
            return;
        }
        self.recent_opens_ms.push_back(ts_ms);
        while self.recent_opens_ms.len() > cfg.flap_max_opens as usize {
            self.recent_opens_ms.pop_front();
        }
    }

    /// Opens within `flap_window_ms` before `ts_ms` (inclusive).
    fn opens_in_window(&self, cfg: &EpisodeConfig, ts_ms: i64) -> usize {
        let window = span_ms(cfg.flap_window_ms);
        self.recent_opens_ms
            .iter()
            .filter(|&&opened| ts_ms.saturating_sub(opened) <= window)
            .count()
    }
}

/// `value` when it is a finite number.
fn finite(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}
