//! Alert episodes and dispatch priority: a pure state machine (no IO, no
//! clock of its own) that turns a stream of evaluations per (asset, failure
//! mode or anomaly kind) into the few transitions a dispatcher should see.
//!
//! An [`Episode`] is the unit behind one Salesforce Case: the processor feeds
//! it [`Evaluation`]s (a failure model's P(failure within horizon), or an
//! anomaly score, with the model's threshold) and Work Order / Case events,
//! and turns each returned [`Transition`] into Case, `Asset_Alert__c` and
//! `AI_Insight__c` actions. [`Transition::episode`] carries what those need:
//! the episode number (`seq`, part of the Case's external key), when it
//! opened, peak and last risk, RUL, priorities, evaluation count and the
//! flapping flag. [`EpisodeBook`] holds every (asset, mode) and serialises
//! to JSON for the processor's SQLite checkpoint.
//!
//! ```text
//!              Opened: risk >= threshold, open_after times in a row (not in
//!              cooldown, no open WO, not too-old backfill, not snoozed)
//!   +--------+ ------------------------------------------> +--------+ --+  Escalated: higher band, or
//!   |  Idle  |                                             |  Open  |   |    risk > escalate_ratio x base
//!   | (hits) | <------------------------------------------ | (lows) | <-+  Updated: every min_update_interval
//!   +--------+  Closed{Recovered}: risk < threshold x      +--------+      Flapping: would recover, but is
//!       ^         hysteresis, close_after times in a row      |   ^          the flap_max_opens-th open in
//!       |         (flapping: low for a whole flap_window)     |   |          flap_window: stays Open
//!       |       Closed{DismissedAsFalseAlarm}: Case closed    |   |
//!       |         as not a problem (Open or Suppressed)       |   | last WO cancelled:
//!       |                                   WO opened:        |   | Resumed
//!       |                                   Suppressed        v   |
//!       |  Closed{WorkOrderCompleted}                     +------------+
//!       +------------------------------------------------ | Suppressed |  evaluations tracked,
//!                                                         +------------+  nothing emitted
//!   Every close, and a WO completed while Idle, starts the cooldown.
//! ```
//!
//! Rules, all in asset time (`ts_ms`) except where noted:
//! - **Pending, like Alertmanager's `for:`**: an episode opens after
//!   `open_after` consecutive evaluations at or above the threshold, and
//!   closes after `close_after` consecutive ones below `threshold ×
//!   hysteresis`; values in between reset both counts.
//! - **Order**: an evaluation not newer than the newest taken is ignored and
//!   counted (`stale`), as is one with a NaN or infinite risk (`non_finite`).
//!   A replay from an older checkpoint is therefore harmless.
//! - **Backfill**: a `historical` evaluation more than `max_alert_age_ms`
//!   older than the wall clock (`now_ms`) updates the state but never opens
//!   an episode; it may update or close an open one.
//! - **Inhibition**: an open Work Order for the problem suppresses the open
//!   episode (nothing is emitted until it completes) or withholds a new one.
//!   Completion closes the episode with its outcome; cancellation of the
//!   last one resumes it. Replayed Work Order events are recognised and
//!   ignored.
//! - **Cooldown**: after any close, and after a Work Order completed while
//!   idle, no evidence counts towards a new episode for `cooldown_ms`.
//! - **Silence**: [`Episode::snooze`] (wall clock) mutes `Opened`,
//!   `Escalated` and `Updated`; `Closed`, `Flapping` and the Work Order
//!   transitions still go out, so Salesforce never disagrees with the state.
//! - **No storms**: `Escalated` needs a priority above every one notified in
//!   the episode, or a risk above `escalate_ratio` times the last escalation;
//!   `Updated` comes at most every `min_update_interval_ms`.
//! - **Flapping**: instead of a close/reopen cycle, an episode that recovers
//!   while it is the `flap_max_opens`-th open inside `flap_window_ms` stays
//!   open, marked flapping, until its risk has stayed low for a whole window.
//!   So observed recoveries never make more than `flap_max_opens` opens in
//!   any window.
//!
//! [`prioritize`] computes the dispatch [`Priority`] as `probability ×
//! criticality × sla_factor` cut by [`PriorityBands`]; the processor puts
//! it in each [`Evaluation`], so a band crossing escalates the Case.
//!
//! ```
//! use fieldpulse_cloud::episodes::{
//!     prioritize, EpisodeBook, EpisodeConfig, Evaluation, PriorityBands, PriorityInputs, Transition,
//! };
//!
//! let cfg = EpisodeConfig { open_after: 2, ..EpisodeConfig::default() };
//! let bands = PriorityBands::default();
//! let mut book = EpisodeBook::default();
//! let mut opened = Vec::new();
//! for (ts_ms, probability) in [(0, 0.7), (60_000, 0.8)] {
//!     let decision = prioritize(
//!         PriorityInputs {
//!             probability,
//!             criticality: 1.0,
//!             criticality_source: "default".into(),
//!             sla_factor: 1.0,
//!             sla_source: "default".into(),
//!         },
//!         &bands,
//!     );
//!     let eval = Evaluation {
//!         ts_ms,
//!         risk: probability,
//!         threshold: 0.6,
//!         rul_days: Some(9.0),
//!         priority: decision.priority,
//!         historical: false,
//!         now_ms: ts_ms,
//!     };
//!     opened.extend(book.observe("02i000000000001AAA", "bearing", &cfg, &eval));
//! }
//! assert!(matches!(&opened[..], [Transition::Opened { episode }] if episode.seq == 1));
//! assert_eq!(opened[0].episode().priority.to_string(), "Critical");
//! assert_eq!(book.counts(60_000).open, 1);
//! ```
//!
//! Deliberately absent: IO, clocks, Salesforce record shapes (the action
//! builder's), and grouping of several assets into a PM campaign.

mod book;
mod config;
mod episode;
mod priority;
#[cfg(test)]
mod tests;

pub use book::{BookCounts, EpisodeBook};
pub use config::{EpisodeConfig, EpisodeConfigError};
pub use episode::{
    CloseReason, Episode, EpisodeCounters, EpisodeSummary, EscalationCause, Evaluation, Transition,
};
pub use priority::{
    prioritize, Priority, PriorityBands, PriorityBandsError, PriorityDecision, PriorityInputs,
};
