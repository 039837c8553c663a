//! `report.html`: one self-contained page (inline CSS, SVG and a little
//! script; nothing loaded from the network) for a dispatcher and a
//! reliability engineer.

use std::fmt::Write;

use fieldpulse_simulator::time::{DAY_MS, HOUR_MS};

use super::data::{signature_channels, AssetRisk, PageData, Timeline};
use super::markup::{datetime_label, day_label, esc, num};
use super::plots::{no_data, Histogram, Marker, Panel, Series, Style, TimeChart};
use crate::demo::outcome::{assets_with_cases, CaseRow};
use crate::demo::report::DemoSummary;
use crate::demo::scenario::LOOKBACK_MS;

const CASE_OPENED: &str = "#d97706";
const FAILURE: &str = "#c62828";
const CONTEXT: &str = "#6b7280";
const CHANNEL_COLORS: [&str; 2] = ["#1f5fa8", "#0f766e"];

fn mode_color(mode: &str) -> &'static str {
    match mode {
        "bearing" => "#1f5fa8",
        "fouling" => "#2e8b3a",
        "electrical" => "#7e3fb5",
        _ => "#8c564b",
    }
}

/// The whole page.
pub fn render(s: &DemoSummary) -> String {
    let p = &s.page;
    let mut out = String::with_capacity(256 * 1024);
    out.push_str(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>fieldpulse demo report</title><style>"#,
    );
    out.push_str(CSS);
    out.push_str("</style></head><body>");
    let _ = write!(
        out,
        r#"<header><h1>fieldpulse demo report</h1><p class="sub">Seed {seed} · {assets} assets · {replayed} days of fleet time replayed ({warm} warm-up + {judged} judged) · fleet time {from} – {to} (UTC) · broker {broker} · run took {wall:.0} s</p></header>"#,
        seed = s.seed,
        assets = s.assets,
        replayed = s.days_replayed,
        warm = s.days_replayed.saturating_sub(s.days_judged),
        judged = s.days_judged,
        from = esc(&day_label(p.start_ms)),
        to = esc(&day_label(p.end_ms)),
        broker = esc(&s.broker),
        wall = s.wall_seconds,
    );
    headline(&mut out, s);
    cases_table(&mut out, s);
    timelines(&mut out, s);
    risk(&mut out, s);
    lead_time(&mut out, s);
    pipeline(&mut out, s);
    let _ = write!(
        out,
        r#"<footer class="note"><p>Ground truth: the simulator's failures. A Case is a true alarm when its asset fails in the Case's failure mode within {lookback} days after it opened, a false alarm otherwise; Cases opened during the warm-up are listed but not judged. Recall counts the failures in the judged window caught by a right-mode Case up to {lookback} days ahead; lead time is measured from the first such Case.</p></footer>"#,
        lookback = LOOKBACK_MS / DAY_MS
    );
    out.push_str("<script>");
    out.push_str(SCRIPT);
    out.push_str("</script></body></html>\n");
    out
}

fn card(out: &mut String, value: &str, label: &str, sub: &str, class: &str) {
    let _ = write!(
        out,
        r#"<div class="card {class}"><div class="v">{}</div><div class="l">{}</div><div class="s">{}</div></div>"#,
        esc(value),
        esc(label),
        esc(sub)
    );
}

fn headline(out: &mut String, s: &DemoSummary) {
    out.push_str(r#"<section id="headline"><h2>Headline</h2><div class="cards">"#);
    let flag = |bad: bool| if bad { "bad" } else { "good" };
    card(
        out,
        &s.readings_published.to_string(),
        "readings published",
        &format!("{} MQTT messages", s.messages_published),
        "",
    );
    card(
        out,
        &s.readings_ingested.to_string(),
        "readings ingested",
        "committed to the cloud's log",
        "",
    );
    card(
        out,
        &s.readings_lost.to_string(),
        "readings lost",
        "published, never committed",
        flag(s.readings_lost > 0),
    );
    card(
        out,
        &s.readings_duplicated.to_string(),
        "readings duplicated",
        &format!("{} duplicate batches re-acked", s.duplicates_dropped),
        flag(s.readings_duplicated > 0),
    );
    card(
        out,
        &s.rejected.to_string(),
        "readings rejected",
        &format!("{} malformed on purpose", s.malformed_messages_published),
        "",
    );
    card(
        out,
        &s.cases_created.to_string(),
        "Cases",
        &format!("on {} of {} assets", assets_with_cases(&s.cases), s.assets),
        "",
    );
    card(
        out,
        &s.asset_alerts.to_string(),
        "Asset_Alert__c",
        "alerts",
        "",
    );
    card(
        out,
        &s.pm_campaign_drafts.to_string(),
        "PM campaign drafts",
        "MaintenancePlan",
        "",
    );
    card(
        out,
        &s.ai_insights.to_string(),
        "AI_Insight__c",
        "audit records",
        "",
    );
    card(
        out,
        &num(s.case_precision, 2),
        "precision",
        &format!("{} false alarms", s.false_alarms),
        "",
    );
    card(
        out,
        &num(s.case_recall, 2),
        "recall",
        &format!(
            "{} of {} failures caught",
            s.failures_caught, s.failures_in_window
        ),
        "",
    );
    let (lead, lead_sub) = s.median_lead_time_hours.map_or_else(
        || ("-".to_string(), "nothing caught".to_string()),
        |h| (format!("{h:.0} h"), format!("{:.1} days ahead", h / 24.0)),
    );
    card(out, &lead, "median lead time", &lead_sub, "");
    card(
        out,
        &format!("{} ms", s.latency_ms_p50),
        "latency p50",
        "MQTT publish → Case created",
        "",
    );
    card(
        out,
        &format!("{} ms", s.latency_ms_p99),
        "latency p99",
        "includes the outage backlog",
        "",
    );
    out.push_str("</div></section>");
}

fn sobject_url(p: &PageData, object: &str, id: &str) -> String {
    format!(
        "{}/services/data/v{}/sobjects/{object}/{id}",
        p.org_base.trim_end_matches('/'),
        p.api_version
    )
}

/// `true alarm` / `false alarm` / `not judged`, with its CSS class.
fn judgement(c: &CaseRow) -> (&'static str, &'static str) {
    match (c.judged, c.actual_failure.is_some()) {
        (true, true) => ("true alarm", "true"),
        (true, false) => ("false alarm", "false"),
        (false, _) => ("warm-up, not judged", "warm"),
    }
}

fn predicted(c: &CaseRow) -> String {
    match (&c.predicted_failure, c.rul_days) {
        (Some(d), Some(rul)) => format!("by {d} (RUL {rul:.1} d)"),
        (Some(d), None) => format!("by {d}"),
        (None, Some(rul)) => format!("RUL {rul:.1} d"),
        (None, None) => "-".into(),
    }
}

fn link(url: Option<String>, text: &str) -> String {
    match url {
        Some(u) => format!(r#"<a href="{}">{}</a>"#, esc(&u), esc(text)),
        None => esc(text),
    }
}

fn cases_table(out: &mut String, s: &DemoSummary) {
    let p = &s.page;
    let _ = write!(
        out,
        r#"<section id="cases"><h2>Cases for dispatch ({n})</h2><p class="note">As a dispatcher sees them in Salesforce, by opening time (click a column to sort). Case and asset links point at the records in the demo's Salesforce emulator REST API (<code>{base}</code>, API v{ver}); <strong>the emulator stopped when the demo ended</strong>, and it answers only with a bearer token from <code>/services/oauth2/token</code>, so run <code>fieldpulse sf-emulator</code> or keep a demo running to follow them. Times are fleet time (UTC).</p>"#,
        n = s.cases.len(),
        base = esc(&p.org_base),
        ver = esc(&p.api_version),
    );
    if s.cases.is_empty() {
        out.push_str(r#"<p class="empty">No Cases were opened in this run.</p></section>"#);
        return;
    }
    let plotted: Vec<usize> = p.timelines.iter().map(|t| t.case_idx).collect();
    out.push_str(
        r#"<table class="sortable" id="case-table"><thead><tr><th>#</th><th>Case</th><th>Asset</th><th>Failure mode</th><th>Priority</th><th>Status</th><th>Opened</th><th>Predicted failure / RUL</th><th>Actual failure</th><th>Judged</th><th>Latency</th></tr></thead><tbody>"#,
    );
    for (i, c) in s.cases.iter().enumerate() {
        let n = i + 1;
        let number = if plotted.contains(&i) {
            format!(r##"<a href="#timeline-{n}" title="sensor timeline">{n}</a>"##)
        } else {
            n.to_string()
        };
        let case_link = link(
            (!c.case_id.is_empty()).then(|| sobject_url(p, "Case", &c.case_id)),
            if c.case_id.is_empty() {
                "-"
            } else {
                &c.case_id
            },
        );
        let asset_link = link(
            (!c.asset_id.is_empty()).then(|| sobject_url(p, "Asset", &c.asset_id)),
            &c.asset,
        );
        let (verdict, class) = judgement(c);
        let _ = write!(
            out,
            r#"<tr id="case-{n}"><td class="num" data-sort="{n}">{number}</td><td class="id">{case_link}</td><td class="nw">{asset_link}</td><td>{mode}</td><td data-sort="{prio_rank}"><span class="prio prio-{prio}">{prio}</span></td><td>{status}</td><td class="nw" data-sort="{opened_ms}">{opened}</td><td class="nw" data-sort="{rul}">{predicted}</td><td class="nw" data-sort="{failed_ms}">{failed}</td><td class="nw {class}">{verdict}</td><td class="num" data-sort="{lat_ms}">{lat}</td></tr>"#,
            mode = esc(&c.mode),
            prio_rank = match c.priority.as_str() {
                "Critical" => 0,
                "High" => 1,
                "Medium" => 2,
                _ => 3,
            },
            prio = esc(&c.priority),
            status = esc(&c.status),
            opened_ms = c.opened_ms.unwrap_or(0),
            opened = esc(&c.opened),
            rul = c.rul_days.map_or_else(|| "1e9".into(), |r| r.to_string()),
            predicted = esc(&predicted(c)),
            failed_ms = c.actual_failure_ms.unwrap_or(i64::MAX),
            failed = esc(c.actual_failure.as_deref().unwrap_or("none within 14 d")),
            lat_ms = c.latency_ms.unwrap_or(u64::MAX),
            lat = c
                .latency_ms
                .map_or_else(|| "-".into(), |ms| format!("{ms} ms")),
        );
    }
    out.push_str("</tbody></table></section>");
}

fn timelines(out: &mut String, s: &DemoSummary) {
    let p = &s.page;
    out.push_str(r#"<section id="timelines"><h2>Sensor timelines around the Cases</h2><p class="note">The failure mode's signature sensors on the Case's asset, from a week before the Case opened until two days after the later of the opening and the failure. Amber: the Case opened (the alert onset); red: the asset's actual failures (ground truth); grey dashed: where the judged window starts and the replay ends.</p>"#);
    if p.timelines.is_empty() {
        out.push_str(&no_data(
            "timeline",
            "Sensor timelines around the Cases",
            "no Cases, so no timeline",
        ));
    }
    for t in &p.timelines {
        let Some(c) = s.cases.get(t.case_idx) else {
            continue;
        };
        let n = t.case_idx + 1;
        let (verdict, class) = judgement(c);
        let _ = write!(
            out,
            r##"<figure id="timeline-{n}"><figcaption><a href="#case-{n}">Case {n}</a>: {asset}, {mode}, {prio}, opened {opened} · <span class="{class}">{verdict}</span></figcaption>"##,
            asset = esc(&c.asset),
            mode = esc(&c.mode),
            prio = esc(&c.priority),
            opened = esc(&c.opened),
        );
        out.push_str(&timeline_chart(p, c, t, n).to_svg());
        out.push_str("</figure>");
    }
    let plotted: Vec<usize> = p.timelines.iter().map(|t| t.case_idx).collect();
    let rest: Vec<String> = (0..s.cases.len())
        .filter(|i| !plotted.contains(i))
        .map(|i| {
            let c = &s.cases[i];
            format!(
                r##"<a href="#case-{n}">{n}</a> ({} {})"##,
                esc(&c.asset),
                esc(&c.mode),
                n = i + 1
            )
        })
        .collect();
    if !rest.is_empty() {
        let _ = write!(
            out,
            r#"<p class="note">Not plotted ({} more Cases; judged Cases are plotted first, true and false alarms): {}.</p>"#,
            rest.len(),
            rest.join(", ")
        );
    }
    out.push_str("</section>");
}

fn context_markers(p: &PageData, markers: &mut Vec<Marker>) {
    markers.push(Marker {
        t_ms: p.window_start_ms,
        label: "judged window starts".into(),
        color: CONTEXT,
        dashed: true,
    });
    markers.push(Marker {
        t_ms: p.end_ms,
        label: "replay ends".into(),
        color: CONTEXT,
        dashed: true,
    });
}

fn timeline_chart(p: &PageData, c: &CaseRow, t: &Timeline, n: usize) -> TimeChart {
    let panels = t
        .channels
        .iter()
        .zip(CHANNEL_COLORS)
        .map(|(ch, color)| Panel {
            y_label: format!("{} ({})", ch.name, ch.unit),
            y_range: None,
            height: 130.0,
            series: vec![Series {
                label: ch.name.to_string(),
                color,
                style: Style::Line,
                points: ch.points.clone(),
                tips: Vec::new(),
                // Readings come every 4 h; a longer silence is not joined.
                max_gap_ms: Some(12 * HOUR_MS),
            }],
        })
        .collect();
    let mut markers = Vec::new();
    if let Some(opened) = c.opened_ms {
        markers.push(Marker {
            t_ms: opened,
            label: format!("Case opened {}", datetime_label(opened)),
            color: CASE_OPENED,
            dashed: false,
        });
    }
    for (mode, ms) in &t.failures {
        markers.push(Marker {
            t_ms: *ms,
            label: format!("{mode} failure {}", datetime_label(*ms)),
            color: FAILURE,
            dashed: false,
        });
    }
    context_markers(p, &mut markers);
    let names: Vec<&str> = signature_channels(&c.mode)
        .iter()
        .map(|(_, name, _)| *name)
        .collect();
    TimeChart {
        kind: "timeline",
        title: format!(
            "Case {n}: {} {} around the {} Case",
            c.asset,
            names.join(" and "),
            c.mode
        ),
        from_ms: t.from_ms,
        to_ms: t.to_ms,
        panels,
        markers,
    }
}

fn risk(out: &mut String, s: &DemoSummary) {
    let p = &s.page;
    out.push_str(r#"<section id="risk"><h2>Failure risk over time</h2><p class="note">What the cloud wrote to <code>AI_Insight__c</code> for each asset with a Case: one point per episode change (opened, escalated, updated, closed): the model's probability of failure within its horizon and its remaining-useful-life estimate, per failure mode, each held until the next change; dashed: the mode's alert threshold. Hover a point for the change. Amber: Cases opened; red: actual failures.</p>"#);
    if p.risk.is_empty() {
        out.push_str(&no_data(
            "risk",
            "Failure risk over time",
            "no Cases, so no asset to plot",
        ));
    }
    for a in &p.risk {
        let _ = write!(
            out,
            r#"<figure id="risk-{}"><figcaption>{}</figcaption>"#,
            esc(&a.asset),
            esc(&a.asset)
        );
        out.push_str(&risk_chart(p, &s.cases, a).to_svg());
        out.push_str("</figure>");
    }
    if !p.risk_not_plotted.is_empty() {
        let names: Vec<String> = p.risk_not_plotted.iter().map(|a| esc(a)).collect();
        let _ = write!(
            out,
            r#"<p class="note">Not plotted ({} more assets with Cases): {}.</p>"#,
            names.len(),
            names.join(", ")
        );
    }
    out.push_str("</section>");
}

fn risk_chart(p: &PageData, cases: &[CaseRow], a: &AssetRisk) -> TimeChart {
    let mut modes: Vec<&str> = a.points.iter().map(|r| r.mode.as_str()).collect();
    modes.sort_unstable();
    modes.dedup();
    let mut risk_series = Vec::new();
    let mut rul_series = Vec::new();
    for mode in &modes {
        let pts: Vec<_> = a.points.iter().filter(|r| r.mode == *mode).collect();
        let tips: Vec<String> = pts
            .iter()
            .map(|r| {
                format!(
                    "{mode} {}, {}: risk {} (threshold {}), RUL {}",
                    r.change,
                    datetime_label(r.ts_ms),
                    num(r.risk, 2),
                    num(r.threshold, 2),
                    r.rul_days
                        .map_or_else(|| "-".into(), |d| format!("{d:.1} d"))
                )
            })
            .collect();
        let color = mode_color(mode);
        risk_series.push(Series {
            label: mode.to_string(),
            color,
            style: Style::StepDots,
            points: pts.iter().map(|r| (r.ts_ms, r.risk)).collect(),
            tips: tips.clone(),
            max_gap_ms: None,
        });
        risk_series.push(Series {
            label: format!("{mode} threshold"),
            color,
            style: Style::Dashed,
            points: pts.iter().map(|r| (r.ts_ms, r.threshold)).collect(),
            tips: Vec::new(),
            max_gap_ms: None,
        });
        let rul: Vec<(i64, f64, String)> = pts
            .iter()
            .zip(&tips)
            .filter_map(|(r, tip)| r.rul_days.map(|d| (r.ts_ms, d, tip.clone())))
            .collect();
        if !rul.is_empty() {
            rul_series.push(Series {
                label: mode.to_string(),
                color,
                style: Style::StepDots,
                points: rul.iter().map(|(t, d, _)| (*t, *d)).collect(),
                tips: rul.into_iter().map(|(_, _, tip)| tip).collect(),
                max_gap_ms: None,
            });
        }
    }
    let mut panels = vec![Panel {
        y_label: "risk (P of failure)".into(),
        y_range: Some((0.0, 1.0)),
        height: 150.0,
        series: risk_series,
    }];
    if !rul_series.is_empty() {
        panels.push(Panel {
            y_label: "RUL (days)".into(),
            y_range: None,
            height: 110.0,
            series: rul_series,
        });
    }
    let mut markers = Vec::new();
    for c in cases.iter().filter(|c| c.asset == a.asset) {
        if let Some(ms) = c.opened_ms {
            markers.push(Marker {
                t_ms: ms,
                label: format!("{} Case opened", c.mode),
                color: CASE_OPENED,
                dashed: false,
            });
        }
    }
    for (mode, ms) in &a.failures {
        markers.push(Marker {
            t_ms: *ms,
            label: format!("{mode} failure"),
            color: FAILURE,
            dashed: false,
        });
    }
    context_markers(p, &mut markers);
    let last_failure = a.failures.iter().map(|(_, ms)| *ms).max().unwrap_or(0);
    TimeChart {
        kind: "risk",
        title: format!("{}: failure risk and RUL per mode (AI_Insight__c)", a.asset),
        from_ms: p.start_ms,
        to_ms: p.end_ms.max(last_failure + 12 * HOUR_MS),
        panels,
        markers,
    }
}

fn lead_time(out: &mut String, s: &DemoSummary) {
    let p = &s.page;
    let lookback_h = (LOOKBACK_MS / HOUR_MS) as f64;
    let _ = write!(
        out,
        r#"<section id="lead"><h2>Lead time</h2><p class="note">For each failure in the judged window caught by a Case of the right mode: hours from the first such Case opening to the failure ({} of {} failures caught).</p>"#,
        s.failures_caught, s.failures_in_window
    );
    let h = Histogram {
        kind: "lead-time",
        title: "Lead time of caught failures (Case opened → failure)".into(),
        x_label: "lead time (hours before the failure, 24 h bins)".into(),
        y_label: "failures caught".into(),
        bin_width: 24.0,
        x_min_extent: lookback_h,
        values: p.lead_hours.clone(),
        marker: s
            .median_lead_time_hours
            .map(|m| (m, format!("median {m:.0} h"))),
    };
    out.push_str(&h.to_svg());
    out.push_str("</section>");
}

fn pipeline(out: &mut String, s: &DemoSummary) {
    let rows: [(&str, String); 14] = [
        ("broker", s.broker.clone()),
        (
            "fleet",
            format!(
                "{} messages ({} malformed on purpose), {} acknowledged by the broker",
                s.messages_published, s.malformed_messages_published, s.messages_acknowledged_by_broker
            ),
        ),
        (
            "edge",
            format!(
                "{} received, {} spooled, {} forwarded, {} dropped",
                s.edge_readings_received,
                s.edge_readings_spooled,
                s.edge_readings_forwarded,
                s.edge_readings_dropped
            ),
        ),
        (
            "edge rejections",
            if s.edge_rejected.is_empty() {
                "none".into()
            } else {
                s.edge_rejected
                    .iter()
                    .map(|(r, n)| format!("{r} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        (
            "edge → cloud",
            format!(
                "{} batches acked ({} backfill), {} bytes/reading on the wire, {} failed sends retried",
                s.edge_batches_acked,
                s.edge_batches_historical,
                num(s.bytes_per_reading_on_wire, 2),
                s.edge_send_failures
            ),
        ),
        (
            "outage",
            format!(
                "uplink cut, cloud killed and restarted; spool backlog peaked at {} records",
                s.peak_spool_backlog_records
            ),
        ),
        (
            "cloud recovery",
            format!(
                "{} assets restored from checkpoints, {} readings skipped on replay, {} changes not re-emitted",
                s.cloud_assets_restored,
                s.cloud_readings_skipped_on_replay,
                s.cloud_changes_not_reemitted
            ),
        ),
        (
            "cloud",
            format!(
                "{} readings committed ({} from backfill), {} duplicate batches re-acknowledged",
                s.readings_ingested, s.cloud_readings_historical, s.duplicates_dropped
            ),
        ),
        ("episodes open at the end", s.episodes_open.to_string()),
        (
            "edge shut down within its grace period",
            if s.edge_finished_in_grace { "yes" } else { "no" }.into(),
        ),
        (
            "model trained on",
            format!(
                "{} assets / {} Work Orders of simulated history",
                s.trained_on_assets, s.trained_on_work_orders
            ),
        ),
        (
            "failures in the judged window",
            format!("{} ({} caught)", s.failures_in_window, s.failures_caught),
        ),
        (
            "sensor-to-Case latency",
            format!("p50 {} ms, p99 {} ms", s.latency_ms_p50, s.latency_ms_p99),
        ),
        ("wall time", format!("{:.1} s", s.wall_seconds)),
    ];
    out.push_str(r#"<section id="pipeline"><h2>Pipeline</h2><table class="kv"><tbody>"#);
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    out.push_str("</tbody></table></section>");
}

const CSS: &str = r#"
:root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--ok:#15803d;--bad:#b91c1c}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);margin:0 auto;max-width:1240px;padding:20px 28px;background:#fff}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid var(--line);padding-bottom:4px}
a{color:#1d4ed8}
code{font-size:12px;background:#f3f4f6;padding:0 3px;border-radius:3px}
.sub,.note{color:var(--muted)}
.note{font-size:13px;max-width:1100px}
.cards{display:grid;grid-template-columns:repeat(7,1fr);gap:10px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 10px;background:#f9fafb}
.card .v{font-size:21px;font-weight:600;font-variant-numeric:tabular-nums}
.card .l{font-size:13px;font-weight:600}
.card .s{font-size:12px;color:var(--muted)}
.card.bad{border-color:#fca5a5;background:#fef2f2}.card.bad .v{color:var(--bad)}
.card.good .v{color:var(--ok)}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:4px 7px;text-align:left;vertical-align:top}
thead th{background:#f3f4f6;position:sticky;top:0;white-space:nowrap}
thead th.sort{cursor:pointer;user-select:none}
thead th.sort::after{content:" \2195";color:#9ca3af}
thead th[aria-sort=ascending]::after{content:" \25B2";color:#374151}
thead th[aria-sort=descending]::after{content:" \25BC";color:#374151}
tbody tr:hover{background:#f9fafb}
tr:target{background:#fef3c7}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.nw{white-space:nowrap}
td.id{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:11px}
.true{color:var(--ok);font-weight:600}
.false{color:var(--bad);font-weight:600}
.warm{color:var(--muted)}
.prio{padding:0 6px;border-radius:8px;font-size:12px;background:#e5e7eb}
.prio-Critical,.prio-High{background:#fee2e2;color:#991b1b}
.prio-Medium{background:#fef3c7;color:#92400e}
table.kv th{width:320px;background:none;font-weight:600}
figure{margin:16px 0 22px;break-inside:avoid;page-break-inside:avoid}
figcaption{font-weight:600;margin-bottom:4px}
figure:target figcaption{background:#fef3c7}
svg.plot{max-width:100%;height:auto;display:block}
svg.plot text{font-family:system-ui,"DejaVu Sans",sans-serif}
svg .ptitle{font-size:14px;font-weight:600;fill:#111827}
svg .tick{font-size:11px;fill:#4b5563}
svg .axis,svg .legend{font-size:12px;fill:#374151}
svg .marker{font-size:12px;font-weight:600}
footer{margin-top:28px;border-top:1px solid var(--line)}
@media (max-width:1100px){.cards{grid-template-columns:repeat(4,1fr)}}
@media print{body{max-width:none;padding:0;font-size:11px}td.nw,td.num{white-space:normal}table{font-size:10px}a{color:inherit;text-decoration:none}thead th{position:static}h2{break-after:avoid}.cards{grid-template-columns:repeat(7,1fr)}thead th.sort::after{content:none}}
"#;

/// Column sorting for the Case table, and `data-rendered` on `<body>` (the
/// number of plots) once the script ran to its end.
const SCRIPT: &str = r#"
(function () {
  "use strict";
  var numeric = /^-?\d+(\.\d+)?(e\d+)?$/;
  function key(cell) {
    var v = cell.getAttribute("data-sort");
    return v === null ? cell.textContent.trim() : v;
  }
  function compare(x, y) {
    if (numeric.test(x) && numeric.test(y)) { return parseFloat(x) - parseFloat(y); }
    return x.localeCompare(y);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.querySelectorAll("thead th");
    Array.prototype.forEach.call(heads, function (th, col) {
      th.classList.add("sort");
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        rows.sort(function (a, b) {
          var c = compare(key(a.cells[col]), key(b.cells[col]));
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.body.setAttribute("data-rendered", String(document.querySelectorAll("svg[data-plot]").length));
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The `data-plot` kinds the page always has (each at least once; a "no
    /// data" plot when there is nothing to draw); `tests/tests/report.rs`
    /// looks for them.
    const PLOT_KINDS: [&str; 3] = ["timeline", "risk", "lead-time"];

    fn case(asset: &str) -> CaseRow {
        CaseRow {
            asset: asset.into(),
            mode: "bearing".into(),
            priority: "High".into(),
            status: "New".into(),
            opened: "2026-11-20 14:00".into(),
            predicted_failure: Some("2026-11-24".into()),
            rul_days: Some(4.2),
            actual_failure: Some("2026-11-23 08:00".into()),
            judged: true,
            latency_ms: Some(120),
            case_id: "500000000000001AAA".into(),
            asset_id: "02i000000000007AAA".into(),
            opened_ms: Some(20_777 * DAY_MS + 14 * HOUR_MS),
            actual_failure_ms: Some(20_780 * DAY_MS + 8 * HOUR_MS),
            asset_alerts: 1,
            ai_insights: 1,
        }
    }

    #[test]
    fn an_empty_run_renders_every_plot_kind_as_no_data() {
        let html = render(&DemoSummary::default());
        for kind in PLOT_KINDS {
            assert!(
                html.contains(&format!(r#"data-plot="{kind}" data-empty="true""#)),
                "{kind}"
            );
        }
        assert!(html.contains("No Cases were opened"));
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn cases_are_escaped_judged_and_linked_to_the_emulator() {
        let mut s = DemoSummary {
            cases: vec![case("<b>pump</b>"), case("comp-0002")],
            ..DemoSummary::default()
        };
        s.cases[1].judged = false;
        s.page.org_base = "http://127.0.0.1:4242/".into();
        s.page.api_version = "66.0".into();
        let html = render(&s);
        assert!(!html.contains("<b>pump"));
        assert!(html.contains("&lt;b&gt;pump&lt;/b&gt;"));
        assert!(html.contains(
            r#"href="http://127.0.0.1:4242/services/data/v66.0/sobjects/Case/500000000000001AAA""#
        ));
        assert!(html.contains(r#"/sobjects/Asset/02i000000000007AAA""#));
        assert!(html.contains(r#"id="case-1""#) && html.contains(r#"id="case-2""#));
        assert!(html.contains(">true alarm<") && html.contains(">warm-up, not judged<"));
        assert!(html.contains("by 2026-11-24 (RUL 4.2 d)"));
        assert!(html.contains("the emulator stopped when the demo ended"));
    }
}
