//! Unit tests for each episode rule, and property tests over random
//! sequences of evaluations and Work Order / Case events.

use proptest::prelude::*;

use super::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const THRESHOLD: f64 = 0.5;

/// Small numbers so each rule shows in a few evaluations.
fn cfg() -> EpisodeConfig {
    EpisodeConfig {
        open_after: 3,
        close_after: 2,
        hysteresis: 0.8,
        escalate_ratio: 1.5,
        min_update_interval_ms: 30 * MIN as u64,
        cooldown_ms: 2 * HOUR as u64,
        flap_window_ms: 12 * HOUR as u64,
        flap_max_opens: 3,
        max_alert_age_ms: HOUR as u64,
    }
}

/// A live evaluation at minute `minute`, priority Medium.
fn eval(minute: i64, risk: f64) -> Evaluation {
    Evaluation {
        ts_ms: minute * MIN,
        risk,
        threshold: THRESHOLD,
        rul_days: None,
        priority: Priority::Medium,
        historical: false,
        now_ms: minute * MIN,
    }
}

fn with_priority(mut evaluation: Evaluation, priority: Priority) -> Evaluation {
    evaluation.priority = priority;
    evaluation
}

/// Feeds `(minute, risk)` pairs and returns the transitions.
fn feed(episode: &mut Episode, cfg: &EpisodeConfig, points: &[(i64, f64)]) -> Vec<Transition> {
    points
        .iter()
        .filter_map(|&(minute, risk)| episode.observe(cfg, &eval(minute, risk)))
        .collect()
}

fn kinds(transitions: &[Transition]) -> Vec<&'static str> {
    transitions.iter().map(Transition::kind).collect()
}

/// An episode opened at minutes 0, 1, 2 (risk 0.6).
fn opened(cfg: &EpisodeConfig) -> Episode {
    let mut episode = Episode::default();
    let out = feed(&mut episode, cfg, &[(0, 0.6), (1, 0.6), (2, 0.6)]);
    assert_eq!(kinds(&out), ["opened"]);
    episode
}

#[test]
fn opens_after_open_after_consecutive_evaluations_at_or_above_threshold() {
    let cfg = cfg();
    let mut episode = Episode::default();
    // Two highs, a dip below the threshold resets the pending count.
    assert!(feed(&mut episode, &cfg, &[(0, 0.9), (1, 0.5), (2, 0.49)]).is_empty());
    assert!(feed(&mut episode, &cfg, &[(3, 0.5), (4, 0.7)]).is_empty());
    let out = feed(&mut episode, &cfg, &[(5, 0.6)]);
    assert_eq!(kinds(&out), ["opened"]);
    let summary = out[0].episode();
    assert_eq!(summary.seq, 1);
    assert_eq!(summary.opened_at_ms, 5 * MIN);
    assert_eq!(summary.n_evaluations, 1);
    assert_eq!(summary.peak_risk, 0.6);
    assert!(!summary.flapping);
    assert!(episode.is_open());
}

#[test]
fn closes_after_close_after_evaluations_below_the_hysteresis_level() {
    let cfg = cfg();
    let mut episode = opened(&cfg);
    // 0.45 is below the threshold but above 0.5 * 0.8: not recovered, and it
    // resets the count of lows.
    assert!(feed(&mut episode, &cfg, &[(3, 0.39), (4, 0.45), (5, 0.39)]).is_empty());
    let out = feed(&mut episode, &cfg, &[(6, 0.1)]);
    assert_eq!(kinds(&out), ["closed"]);
    let Transition::Closed {
        episode: summary,
        reason,
    } = &out[0]
    else {
        unreachable!("checked by kinds")
    };
    assert_eq!(*reason, CloseReason::Recovered);
    assert_eq!(summary.n_evaluations, 5);
    assert_eq!(summary.peak_risk, 0.6);
    assert_eq!(summary.last_risk, 0.1);
    assert!(!episode.is_open());
}

#[test]
fn old_historical_evaluations_never_open_but_recent_ones_do() {
    let cfg = cfg();
    let mut episode = Episode::default();
    let old = |minute: i64| Evaluation {
        historical: true,
        now_ms: minute * MIN + 2 * HOUR,
        ..eval(minute, 0.9)
    };
    for minute in 0..10 {
        assert_eq!(episode.observe(&cfg, &old(minute)), None);
    }
    assert_eq!(episode.counters().historical_held, 8);
    assert!(!episode.is_open());
    // Backfill within max_alert_age opens (the pending count carried over).
    let recent = Evaluation {
        historical: true,
        now_ms: 10 * MIN + 30 * MIN,
        ..eval(10, 0.9)
    };
    let out = episode.observe(&cfg, &recent).map(|t| t.kind());
    assert_eq!(out, Some("opened"));
}

#[test]
fn old_historical_evaluations_update_and_close_an_open_episode() {
    let cfg = cfg();
    let mut episode = opened(&cfg);
    let old = |minute: i64, risk: f64| Evaluation {
        historical: true,
        now_ms: minute * MIN + 5 * HOUR,
        ..eval(minute, risk)
    };
    assert_eq!(episode.observe(&cfg, &old(3, 0.85)), None);
    assert_eq!(episode.summary(3 * MIN).map(|s| s.peak_risk), Some(0.85));
    assert_eq!(episode.observe(&cfg, &old(4, 0.1)), None);
    let out = episode.observe(&cfg, &old(5, 0.1)).map(|t| t.kind());
    assert_eq!(out, Some("closed"));
}

#[test]
fn evaluations_not_newer_than_the_newest_are_ignored_and_counted() {
    let cfg = cfg();
    let mut episode = Episode::default();
    assert!(feed(&mut episode, &cfg, &[(10, 0.9), (11, 0.9)]).is_empty());
    // Late and replayed evaluations neither open nor reset the pending count.
    assert!(feed(&mut episode, &cfg, &[(5, 0.9), (11, 0.9), (9, 0.1)]).is_empty());
    assert_eq!(episode.counters().stale, 3);
    assert_eq!(episode.counters().evaluations, 2);
    assert_eq!(kinds(&feed(&mut episode, &cfg, &[(12, 0.9)])), ["opened"]);
}

#[test]
fn non_finite_risk_is_no_evidence_and_counted() {
    let cfg = cfg();
    let mut episode = Episode::default();
    assert!(feed(&mut episode, &cfg, &[(0, 0.9), (1, 0.9), (2, f64::NAN)]).is_empty());
    let infinite_threshold = Evaluation {
        threshold: f64::INFINITY,
        ..eval(3, 0.9)
    };
    assert_eq!(episode.observe(&cfg, &infinite_threshold), None);
    assert_eq!(episode.observe(&cfg, &eval(4, f64::NEG_INFINITY)), None);
    assert_eq!(episode.counters().non_finite, 3);
    // The two highs still count: NaN neither opened nor reset anything.
    assert_eq!(kinds(&feed(&mut episode, &cfg, &[(5, 0.9)])), ["opened"]);
    // A NaN RUL is dropped, a finite one kept.
    let with_rul = |rul: f64, minute: i64| Evaluation {
        rul_days: Some(rul),
        ..eval(minute, 0.9)
    };
    episode.observe(&cfg, &with_rul(12.5, 6));
    episode.observe(&cfg, &with_rul(f64::NAN, 7));
    assert_eq!(
        episode.summary(7 * MIN).and_then(|s| s.last_rul_days),
        Some(12.5)
    );
}

#[test]
fn open_work_order_suppresses_until_completion_which_closes_with_the_outcome() {
    let cfg = cfg();
    let mut episode = opened(&cfg);
    let out = episode.work_order_opened("0WO1", 3 * MIN);
    assert!(
        matches!(&out, Some(Transition::Suppressed { work_order, .. }) if work_order == "0WO1")
    );
    assert!(episode.is_suppressed());
    // Escalating priority, long gaps and recovery: nothing is emitted.
    let mut quiet = Vec::new();
    for minute in 4..200 {
        let risk = if minute < 100 { 0.99 } else { 0.0 };
        let evaluation = with_priority(eval(minute, risk), Priority::Critical);
        quiet.extend(episode.observe(&cfg, &evaluation));
    }
    assert!(quiet.is_empty(), "{quiet:?}");
    assert_eq!(episode.counters().suppressed, 196);
    assert!(episode.is_open());
    let out = episode.work_order_completed("0WO1", 200 * MIN, Some("BEARING"));
    let Some(Transition::Closed {
        episode: summary,
        reason,
    }) = out
    else {
        panic!("expected a close, got {out:?}")
    };
    assert_eq!(
        reason,
        CloseReason::WorkOrderCompleted {
            work_order: "0WO1".into(),
            failure_code: Some("BEARING".into()),
        }
    );
    assert_eq!(summary.peak_risk, 0.99);
    assert_eq!(summary.at_ms, 200 * MIN);
    assert!(!episode.is_open() && !episode.is_suppressed());
}

#[test]
fn high_risk_after_completion_reopens_only_after_cooldown() {
    let cfg = cfg();
    let mut episode = opened(&cfg);
    episode.work_order_opened("0WO1", 3 * MIN);
    episode.work_order_completed("0WO1", 10 * MIN, None);
    // Cooldown is two hours from minute 10: high risk until then counts for nothing.
    let during: Vec<(i64, f64)> = (11..130).map(|minute| (minute, 0.9)).collect();
    assert!(feed(&mut episode, &cfg, &during).is_empty());
    let out = feed(&mut episode, &cfg, &[(130, 0.9), (131, 0.9), (132, 0.9)]);
    assert_eq!(kinds(&out), ["opened"]);
    assert_eq!(out[0].episode().seq, 2);
    assert_eq!(out[0].episode().opened_at_ms, 132 * MIN);
}

#[test]
fn work_order_open_while_idle_withholds_the_next_episode() {
    let cfg = cfg();
    let mut episode = Episode::default();
    assert_eq!(episode.work_order_opened("0WO1", 0), None);
    assert!(feed(
        &mut episode,
        &cfg,
        &[(1, 0.9), (2, 0.9), (3, 0.9), (4, 0.9)]
    )
    .is_empty());
    assert_eq!(episode.counters().inhibited, 2);
    // Completion while idle closes nothing but starts the cooldown.
    assert_eq!(episode.work_order_completed("0WO1", 5 * MIN, None), None);
    assert!(feed(&mut episode, &cfg, &[(6, 0.9), (7, 0.9), (8, 0.9)]).is_empty());
    assert_eq!(episode.seq(), 0);
}

#[test]
fn cancelled_work_order_resumes_and_only_the_last_one_counts() {
    let cfg = cfg();
    let mut episode = opened(&cfg);
    assert!(episode.work_order_opened("0WO1", 3 * MIN).is_some());
    assert_eq!(episode.work_order_opened("0WO2", 4 * MIN), None);
    assert_eq!(episode.work_order_opened("0WO2", 4 * MIN), None);
    assert_eq!(episode.counters().work_order_ignored, 1);
    // One of two cancelled: still suppressed.
    assert_eq!(episode.work_order_cancelled("0WO1", 5 * MIN), None);
    assert!(episode.is_suppressed());
    let out = episode.work_order_cancelled("0WO2", 6 * MIN);
    assert!(matches!(&out, Some(Transition::Resumed { work_order, .. }) if work_order == "0WO2"));
    assert!(episode.is_open() && !episode.is_suppressed());
    // Notices flow again.
    let out = feed(&mut episode, &cfg, &[(40, 0.6)]);
    assert_eq!(kinds(&out), ["updated"]);
}

#[test]
fn completing_one_of_two_work_orders_keeps_the_episode_suppressed() {
    let cfg = cfg();
    let mut episode = opened(&cfg);
    episode.work_order_opened("0WO1", 3 * MIN);
    episode.work_order_opened("0WO2", 3 * MIN);
    assert_eq!(episode.work_order_completed("0WO1", 4 * MIN, None), None);
    assert!(episode.is_suppressed());
    let out = episode.work_order_completed("0WO2", 5 * MIN, Some("SEAL"));
    assert_eq!(out.map(|t| t.kind()), Some("closed"));
}

#[test]
fn replayed_work_order_events_change_nothing() {
    let cfg = cfg();
    let mut episode = opened(&cfg);
    episode.work_order_opened("0WO1", 3 * MIN);
    assert!(episode
        .work_order_completed("0WO1", 4 * MIN, None)
        .is_some());
    // The processor re-reads old Work Order events after a restart.
    assert_eq!(episode.work_order_opened("0WO1", 3 * MIN), None);
    assert_eq!(episode.work_order_completed("0WO1", 4 * MIN, None), None);
    assert_eq!(episode.work_order_cancelled("0WO1", 4 * MIN), None);
    assert_eq!(episode.counters().work_order_ignored, 3);
    // Not re-inhibited: after the cooldown a new episode opens, and a late
    // replay of the old completion does not close it.
    let out = feed(&mut episode, &cfg, &[(130, 0.9), (131, 0.9), (132, 0.9)]);
    assert_eq!(kinds(&out), ["opened"]);
    assert_eq!(episode.work_order_completed("0WO1", 133 * MIN, None), None);
    assert!(episode.is_open());
    // A Work Order seen only at completion still closes the episode.
    let out = episode.work_order_completed("0WO9", 134 * MIN, Some("SEAL"));
    assert_eq!(out.map(|t| t.kind()), Some("closed"));
}

#[test]
fn escalation_emits_once_per_band_crossing() {
    let cfg = cfg();
    let mut episode = opened(&cfg);
    let at = |minute: i64, priority: Priority| with_priority(eval(minute, 0.6), priority);
    let out = episode.observe(&cfg, &at(3, Priority::High));
    let Some(Transition::Escalated {
        episode: summary,
        from,
        cause,
    }) = out
    else {
        panic!("expected an escalation, got {out:?}")
    };
    assert_eq!(
        (from, cause, summary.notified_priority),
        (
            Priority::Medium,
            EscalationCause::PriorityBand,
            Priority::High
        )
    );
    // Oscillating around the band edge escalates no more.
    let mut out = Vec::new();
    for minute in 4..20 {
        let priority = if minute % 2 == 0 {
            Priority::Medium
        } else {
            Priority::High
        };
        out.extend(episode.observe(&cfg, &at(minute, priority)));
    }
    assert!(out.is_empty(), "{out:?}");
    let out = episode.observe(&cfg, &at(20, Priority::Critical));
    assert!(matches!(
        out,
        Some(Transition::Escalated {
            from: Priority::High,
            ..
        })
    ));
}

#[test]
fn risk_rising_by_escalate_ratio_escalates_once() {
    let cfg = cfg();
    let mut episode = opened(&cfg);
    // Opened at 0.6: the ratio rule needs more than 0.6 x 1.5.
    assert!(feed(&mut episode, &cfg, &[(3, 0.89)]).is_empty());
    let out = feed(&mut episode, &cfg, &[(4, 0.91), (5, 0.95), (6, 0.99)]);
    assert_eq!(kinds(&out), ["escalated"]);
    assert!(matches!(
        out[0],
        Transition::Escalated {
            cause: EscalationCause::RiskRatio,
            ..
        }
    ));
}

#[test]
fn updated_comes_at_most_every_min_update_interval() {
    let cfg = cfg();
    let mut episode = opened(&cfg);
    let points: Vec<(i64, f64)> = (3..=95).map(|minute| (minute, 0.6)).collect();
    let out = feed(&mut episode, &cfg, &points);
    assert_eq!(kinds(&out), ["updated", "updated", "updated"]);
    let at: Vec<i64> = out.iter().map(|t| t.episode().at_ms / MIN).collect();
    assert_eq!(at, [32, 62, 92]);
}

#[test]
fn snooze_mutes_opened_and_updates_but_not_closed() {
    let cfg = cfg();
    let mut episode = Episode::default();
    episode.snooze(10 * MIN);
    let points: Vec<(i64, f64)> = (0..10).map(|minute| (minute, 0.9)).collect();
    assert!(feed(&mut episode, &cfg, &points).is_empty());
    assert!(episode.is_snoozed(9 * MIN));
    assert_eq!(episode.counters().snoozed_held, 8);
    // The snooze ended at minute 10: the pending episode opens at once.
    assert_eq!(kinds(&feed(&mut episode, &cfg, &[(10, 0.9)])), ["opened"]);
    // Snoozed again: no escalation, no update; the close still goes out.
    episode.snooze(1000 * MIN);
    let escalating = with_priority(eval(11, 0.99), Priority::Critical);
    assert_eq!(episode.observe(&cfg, &escalating), None);
    assert!(feed(&mut episode, &cfg, &[(100, 0.9), (101, 0.1)]).is_empty());
    assert_eq!(kinds(&feed(&mut episode, &cfg, &[(102, 0.1)])), ["closed"]);
}

#[test]
fn dismissed_case_closes_as_false_alarm_and_starts_cooldown() {
    let cfg = cfg();
    let mut episode = opened(&cfg);
    let out = episode.case_closed_as_not_a_problem(5 * MIN);
    assert!(matches!(
        out,
        Some(Transition::Closed {
            reason: CloseReason::DismissedAsFalseAlarm,
            ..
        })
    ));
    assert_eq!(episode.case_closed_as_not_a_problem(6 * MIN), None);
    let points: Vec<(i64, f64)> = (6..60).map(|minute| (minute, 0.9)).collect();
    assert!(feed(&mut episode, &cfg, &points).is_empty());
}

/// Open at `start`, recover two evaluations later, then wait out the cooldown.
fn cycle(start: i64) -> Vec<(i64, f64)> {
    vec![
        (start, 0.9),
        (start + 1, 0.9),
        (start + 2, 0.9),
        (start + 3, 0.1),
        (start + 4, 0.1),
    ]
}

#[test]
fn flapping_episode_stays_open_instead_of_close_reopen_churn() {
    let cfg = cfg();
    let mut episode = Episode::default();
    let mut out = Vec::new();
    // Cooldown is 2 h: cycles every 3 h put three opens in the 12 h window.
    for start in [0, 180, 360] {
        out.extend(feed(&mut episode, &cfg, &cycle(start)));
    }
    assert_eq!(
        kinds(&out),
        ["opened", "closed", "opened", "closed", "opened", "flapping"]
    );
    assert!(episode.is_flapping() && episode.is_open());
    assert!(out[5].episode().flapping);
    // It goes on flapping: no new Case, no close.
    let mut out = Vec::new();
    for start in [540, 720, 900] {
        out.extend(feed(&mut episode, &cfg, &cycle(start)));
    }
    assert!(
        out.iter()
            .all(|t| !matches!(t, Transition::Opened { .. } | Transition::Closed { .. })),
        "{out:?}"
    );
    assert_eq!(episode.seq(), 3);
    // Low for a whole flap window closes it.
    let low: Vec<(i64, f64)> = (905..=905 + 12 * 60)
        .step_by(30)
        .map(|m| (m, 0.1))
        .collect();
    let out = feed(&mut episode, &cfg, &low);
    let closes: Vec<&Transition> = out.iter().filter(|t| t.kind() == "closed").collect();
    assert_eq!(closes.len(), 1);
    assert!(closes[0].episode().flapping);
    assert_eq!(closes[0].episode().at_ms, (905 + 12 * 60) * MIN);
    assert!(!episode.is_open());
}

#[test]
fn opens_spread_wider_than_the_flap_window_never_flap() {
    let cfg = cfg();
    let mut episode = Episode::default();
    let mut out = Vec::new();
    for start in [0, 7 * 60, 14 * 60, 21 * 60] {
        out.extend(feed(&mut episode, &cfg, &cycle(start)));
    }
    assert_eq!(kinds(&out).iter().filter(|k| **k == "closed").count(), 4);
    assert_eq!(episode.seq(), 4);
}

#[test]
fn book_tracks_pairs_and_reports_gauges_and_counters() {
    let cfg = cfg();
    let mut book = EpisodeBook::default();
    for minute in 0..3 {
        book.observe("02i1", "bearing", &cfg, &eval(minute, 0.9));
        book.observe("02i1", "seal", &cfg, &eval(minute, 0.1));
        book.observe("02i2", "bearing", &cfg, &eval(minute, 0.9));
    }
    book.observe("02i2", "bearing", &cfg, &eval(0, 0.9));
    assert!(book
        .episode_mut("02i2", "bearing")
        .work_order_opened("0WO1", 4 * MIN)
        .is_some());
    book.episode_mut("02i1", "seal").snooze(100 * MIN);
    let counts = book.counts(10 * MIN);
    assert_eq!(
        counts,
        BookCounts {
            tracked: 3,
            open: 2,
            suppressed: 1,
            flapping: 0,
            snoozed: 1,
        }
    );
    assert_eq!(book.counts(100 * MIN).snoozed, 0);
    assert_eq!(book.counters().stale, 1);
    assert_eq!(book.counters().evaluations, 9);
    assert!(book.get("02i1", "bearing").is_some_and(Episode::is_open));
    assert!(book.get("02i3", "bearing").is_none());
    let pairs: Vec<(&str, &str)> = book.iter().map(|(a, m, _)| (a, m)).collect();
    assert_eq!(
        pairs,
        [("02i1", "bearing"), ("02i1", "seal"), ("02i2", "bearing")]
    );
    let json = serde_json::to_string(&book).expect("serialise");
    let back: EpisodeBook = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, book);
}

// ---------------------------------------------------------------------------
// Property tests.

/// One input to an episode; times are offsets from a running asset clock.
#[derive(Debug, Clone)]
enum Op {
    Observe {
        /// Added to the clock before the evaluation; negative is out of order.
        dt_ms: i64,
        risk: f64,
        priority: Priority,
        historical: bool,
        /// Wall clock minus asset time.
        lag_ms: i64,
    },
    WorkOrderOpened(u8),
    WorkOrderCompleted(u8, bool),
    WorkOrderCancelled(u8),
    Snooze(i64),
    Dismiss,
}

fn priority_strategy() -> impl Strategy<Value = Priority> {
    prop_oneof![
        Just(Priority::Low),
        Just(Priority::Medium),
        Just(Priority::High),
        Just(Priority::Critical),
    ]
}

fn risk_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0..1.0f64,
        1 => any::<f64>(),
        1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
    ]
}

fn op_strategy(risk: BoxedStrategy<f64>) -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (-5 * MIN..60 * MIN, risk, priority_strategy(), any::<bool>(), 0..3 * HOUR).prop_map(
            |(dt_ms, risk, priority, historical, lag_ms)| Op::Observe {
                dt_ms,
                risk,
                priority,
                historical,
                lag_ms,
            }
        ),
        1 => (0..6u8).prop_map(Op::WorkOrderOpened),
        1 => (0..6u8, any::<bool>()).prop_map(|(id, code)| Op::WorkOrderCompleted(id, code)),
        1 => (0..6u8).prop_map(Op::WorkOrderCancelled),
        1 => (-HOUR..3 * HOUR).prop_map(Op::Snooze),
        1 => Just(Op::Dismiss),
    ]
}

fn config_strategy() -> impl Strategy<Value = EpisodeConfig> {
    (
        (1..5u32, 1..5u32, 0.5..=1.0f64, 1.1..3.0f64),
        (0..90u64, 0..300u64, 0..24 * 60u64),
        (prop_oneof![Just(0u32), 2..5u32], 0..180u64),
    )
        .prop_map(
            |(
                (open_after, close_after, hysteresis, escalate_ratio),
                (update_min, cooldown_min, flap_window_min),
                (flap_max_opens, max_age_min),
            )| {
                let ms = |minutes: u64| minutes * 60_000;
                EpisodeConfig {
                    open_after,
                    close_after,
                    hysteresis,
                    escalate_ratio,
                    min_update_interval_ms: ms(update_min),
                    cooldown_ms: ms(cooldown_min),
                    flap_window_ms: ms(flap_window_min),
                    flap_max_opens,
                    max_alert_age_ms: ms(max_age_min),
                }
            },
        )
}

/// Runs `ops` from asset time `clock_ms`; returns the transitions and the clock.
fn run(
    episode: &mut Episode,
    cfg: &EpisodeConfig,
    ops: &[Op],
    mut clock_ms: i64,
) -> (Vec<Transition>, i64) {
    let mut out = Vec::new();
    for op in ops {
        let res = match *op {
            Op::Observe {
                dt_ms,
                risk,
                priority,
                historical,
                lag_ms,
            } => {
                clock_ms = clock_ms.saturating_add(dt_ms);
                episode.observe(
                    cfg,
                    &Evaluation {
                        ts_ms: clock_ms,
                        risk,
                        threshold: THRESHOLD,
                        rul_days: Some(risk * 100.0),
                        priority,
                        historical,
                        now_ms: clock_ms.saturating_add(lag_ms),
                    },
                )
            }
            Op::WorkOrderOpened(id) => episode.work_order_opened(&format!("0WO{id}"), clock_ms),
            Op::WorkOrderCompleted(id, code) => episode.work_order_completed(
                &format!("0WO{id}"),
                clock_ms,
                code.then_some("FAILED"),
            ),
            Op::WorkOrderCancelled(id) => {
                episode.work_order_cancelled(&format!("0WO{id}"), clock_ms)
            }
            Op::Snooze(offset_ms) => {
                episode.snooze(clock_ms.saturating_add(offset_ms));
                None
            }
            Op::Dismiss => episode.case_closed_as_not_a_problem(clock_ms),
        };
        out.extend(res);
    }
    (out, clock_ms)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) Opened and Closed alternate, and every other transition belongs
    /// to an open episode.
    #[test]
    fn opened_and_closed_alternate(
        cfg in config_strategy(),
        ops in prop::collection::vec(op_strategy(risk_strategy().boxed()), 0..300),
    ) {
        let mut episode = Episode::default();
        let mut open = false;
        let mut last_seq = 0;
        let mut clock_ms = 0;
        for op in &ops {
            let (out, clock) = run(&mut episode, &cfg, std::slice::from_ref(op), clock_ms);
            clock_ms = clock;
            for transition in out {
                match transition {
                    Transition::Opened { ref episode } => {
                        prop_assert!(!open, "two Opened without a Closed");
                        prop_assert_eq!(episode.seq, last_seq + 1);
                        last_seq = episode.seq;
                        open = true;
                    }
                    Transition::Closed { .. } => {
                        prop_assert!(open, "Closed without an Opened");
                        open = false;
                    }
                    ref other => {
                        prop_assert!(open, "{} while no episode is open", other.kind());
                        prop_assert_eq!(other.episode().seq, last_seq);
                    }
                }
            }
            prop_assert_eq!(episode.is_open(), open);
        }
    }

    /// (b) A serde round trip mid-sequence changes neither the state nor the
    /// remaining transitions.
    #[test]
    fn serde_round_trip_mid_sequence_changes_nothing(
        cfg in config_strategy(),
        ops in prop::collection::vec(op_strategy(risk_strategy().boxed()), 0..200),
        cut in any::<prop::sample::Index>(),
    ) {
        let cut = if ops.is_empty() { 0 } else { cut.index(ops.len() + 1) };
        let mut episode = Episode::default();
        let (_, clock_ms) = run(&mut episode, &cfg, &ops[..cut], 0);
        let json = serde_json::to_string(&episode).expect("serialise");
        let mut restored: Episode = serde_json::from_str(&json).expect("deserialise");
        prop_assert_eq!(&restored, &episode);
        let (expected, _) = run(&mut episode, &cfg, &ops[cut..], clock_ms);
        let (got, _) = run(&mut restored, &cfg, &ops[cut..], clock_ms);
        prop_assert_eq!(got, expected);
        prop_assert_eq!(restored, episode);
    }

    /// (c) Arbitrary values (NaN, infinities, extreme times) never panic, and
    /// every evaluation is taken, or counted as stale or non-finite.
    #[test]
    fn arbitrary_inputs_never_panic_and_every_evaluation_is_accounted_for(
        cfg in config_strategy(),
        evals in prop::collection::vec(
            (any::<i64>(), any::<f64>(), any::<f64>(), any::<bool>(), any::<i64>(), priority_strategy()),
            0..100,
        ),
        ops in prop::collection::vec(op_strategy(any::<f64>().boxed()), 0..100),
    ) {
        let mut episode = Episode::default();
        for &(ts_ms, risk, threshold, historical, now_ms, priority) in &evals {
            let evaluation = Evaluation {
                ts_ms,
                risk,
                threshold,
                rul_days: Some(risk),
                priority,
                historical,
                now_ms,
            };
            episode.observe(&cfg, &evaluation);
        }
        let counters = episode.counters().clone();
        prop_assert_eq!(
            counters.evaluations + counters.stale + counters.non_finite,
            evals.len() as u64
        );
        run(&mut episode, &cfg, &ops, i64::MAX - HOUR);
        run(&mut episode, &cfg, &ops, i64::MIN + HOUR);
        let json = serde_json::to_string(&episode).expect("serialise");
        let restored: Episode = serde_json::from_str(&json).expect("deserialise");
        prop_assert_eq!(restored, episode);
    }

    /// (d) A steady stream below the threshold never opens, whatever the
    /// order, the Work Orders and the snoozes.
    #[test]
    fn steady_stream_below_threshold_never_opens(
        cfg in config_strategy(),
        ops in prop::collection::vec(op_strategy((0.0..THRESHOLD).boxed()), 0..300),
    ) {
        let mut episode = Episode::default();
        let (out, _) = run(&mut episode, &cfg, &ops, 0);
        prop_assert!(out.is_empty(), "{:?}", out);
        prop_assert_eq!(episode.seq(), 0);
    }

    /// No notice storm: band escalations strictly raise the notified
    /// priority, and `Updated` never follows another notice of the same
    /// episode sooner than `min_update_interval_ms`.
    #[test]
    fn notices_never_storm(
        cfg in config_strategy(),
        ops in prop::collection::vec(op_strategy((0.0..1.0f64).boxed()), 0..300),
    ) {
        let mut episode = Episode::default();
        let (out, _) = run(&mut episode, &cfg, &ops, 0);
        let mut last_notice_ms = None;
        for transition in &out {
            let summary = transition.episode();
            match transition {
                Transition::Opened { .. } | Transition::Flapping { .. } => {}
                Transition::Escalated { from, cause, .. } => {
                    prop_assert!(summary.notified_priority >= *from);
                    if *cause == EscalationCause::PriorityBand {
                        prop_assert!(summary.notified_priority > *from);
                    }
                }
                Transition::Updated { .. } => {
                    let last: i64 = last_notice_ms.expect("an Updated follows an Opened");
                    prop_assert!(
                        summary.at_ms - last >= cfg.min_update_interval_ms as i64,
                        "{:?}",
                        out
                    );
                }
                Transition::Suppressed { .. } | Transition::Resumed { .. } | Transition::Closed { .. } => continue,
            }
            last_notice_ms = Some(summary.at_ms);
        }
    }

    /// Recoveries never put more than `flap_max_opens` opens in any flap window.
    #[test]
    fn recoveries_never_exceed_flap_max_opens_per_window(
        cfg in config_strategy(),
        ops in prop::collection::vec(op_strategy((0.0..1.0f64).boxed()), 0..400),
    ) {
        prop_assume!(cfg.flap_max_opens > 0);
        let observe_only: Vec<Op> = ops
            .into_iter()
            .filter(|op| matches!(op, Op::Observe { .. }))
            .collect();
        let mut episode = Episode::default();
        let (out, _) = run(&mut episode, &cfg, &observe_only, 0);
        let opens: Vec<i64> = out
            .iter()
            .filter_map(|t| match t {
                Transition::Opened { episode } => Some(episode.opened_at_ms),
                _ => None,
            })
            .collect();
        let window = cfg.flap_window_ms as i64;
        for (idx, &last) in opens.iter().enumerate() {
            let in_window = opens[..=idx].iter().filter(|&&t| last - t <= window).count();
            prop_assert!(in_window <= cfg.flap_max_opens as usize, "{:?}", opens);
        }
    }
}

/// The checkpoint format: a change here breaks restoring older checkpoints,
/// so it must be deliberate (fields added with defaults are fine).
#[test]
fn checkpoint_json_format_is_stable() {
    let cfg = cfg();
    let mut episode = opened(&cfg);
    episode.work_order_opened("0WO1", 3 * MIN);
    let expected = concat!(
        r#"{"phase":{"open":{"opened_at_ms":120000,"peak_risk":0.6,"last_risk":0.6,"#,
        r#""last_rul_days":null,"priority":"Medium","notified_priority":"Medium","#,
        r#""escalation_base":0.6,"last_notice_ms":120000,"n_evaluations":1,"lows":0,"#,
        r#""low_since_ms":null,"flapping":false}},"seq":1,"hits":0,"last_ts_ms":120000,"#,
        r#""cooldown_from_ms":null,"recent_opens_ms":[120000],"work_orders":["0WO1"],"#,
        r#""finished_work_orders":[],"snoozed_until_ms":null,"counters":{"evaluations":3,"#,
        r#""stale":0,"non_finite":0,"historical_held":0,"inhibited":0,"snoozed_held":0,"#,
        r#""suppressed":0,"work_order_ignored":0}}"#,
    );
    assert_eq!(
        serde_json::to_string(&episode).expect("serialise"),
        expected
    );
    let restored: Episode = serde_json::from_str(expected).expect("deserialise");
    assert_eq!(restored, episode);
    // A checkpoint written before a field existed still loads.
    let idle: Episode = serde_json::from_str(r#"{"seq":4}"#).expect("defaults");
    assert_eq!(idle.seq(), 4);
    assert!(!idle.is_open());
}
