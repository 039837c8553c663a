//! `report.html` of a training run: one self-contained page with inline SVG
//! plots (calibration, precision/recall, RUL predicted vs true, feature
//! importance) and the headline metrics (feature `train`).

use std::fmt::Write as _;

use super::challengers::{ChallengerReport, Interval};
use super::evaluate::{ClassifierMetrics, EvalReport};
use super::train::TrainOutcome;

const W: f64 = 360.0;
const H: f64 = 260.0;
const PAD: f64 = 40.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An SVG chart with linear axes over `[x0, x1] × [y0, y1]`.
struct Chart {
    svg: String,
    x: (f64, f64),
    y: (f64, f64),
}

fn tick(v: f64, range: (f64, f64)) -> String {
    if (range.1 - range.0).abs() > 5.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

impl Chart {
    /// A chart with room for `legend_rows` legend lines under the x axis.
    fn new(
        title: &str,
        x_label: &str,
        y_label: &str,
        x: (f64, f64),
        y: (f64, f64),
        legend_rows: usize,
    ) -> Self {
        let mut svg = String::new();
        let height = H + 13.0 * legend_rows as f64;
        let _ = write!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="11"><text x="{}" y="14" text-anchor="middle" font-weight="bold">{}</text><rect x="{PAD}" y="{PAD}" width="{}" height="{}" fill="none" stroke="#999"/><text x="{}" y="{}" text-anchor="middle">{}</text><text x="12" y="{}" text-anchor="middle" transform="rotate(-90 12 {})">{}</text><text x="{PAD}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{}" text-anchor="middle">{}</text><text x="{}" y="{}" text-anchor="end">{}</text><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            W / 2.0,
            esc(title),
            W - 2.0 * PAD,
            H - 2.0 * PAD,
            W / 2.0,
            H - 6.0,
            esc(x_label),
            H / 2.0,
            H / 2.0,
            esc(y_label),
            H - PAD + 12.0,
            tick(x.0, x),
            W - PAD,
            H - PAD + 12.0,
            tick(x.1, x),
            PAD - 3.0,
            H - PAD,
            tick(y.0, y),
            PAD - 3.0,
            PAD + 4.0,
            tick(y.1, y),
        );
        Self { svg, x, y }
    }

    fn px(&self, x: f64) -> f64 {
        PAD + (x - self.x.0) / (self.x.1 - self.x.0).max(1e-12) * (W - 2.0 * PAD)
    }

    fn py(&self, y: f64) -> f64 {
        H - PAD - (y - self.y.0) / (self.y.1 - self.y.0).max(1e-12) * (H - 2.0 * PAD)
    }

    fn line(&mut self, pts: &[(f64, f64)], color: &str, dashed: bool) {
        if pts.is_empty() {
            return;
        }
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", self.px(x), self.py(y)))
            .collect();
        let dash = if dashed {
            r#" stroke-dasharray="4 3""#
        } else {
            ""
        };
        let _ = write!(
            self.svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} points="{}"/>"#,
            path.join(" ")
        );
    }

    fn dots(&mut self, pts: &[(f64, f64)], color: &str, r: f64) {
        for &(x, y) in pts {
            let _ = write!(
                self.svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="{r}" fill="{color}" fill-opacity="0.5"/>"#,
                self.px(x),
                self.py(y)
            );
        }
    }

    /// Legend line `idx`, under the x-axis label.
    fn legend(&mut self, idx: usize, text: &str, color: &str) {
        let y = H + 8.0 + idx as f64 * 13.0;
        let _ = write!(
            self.svg,
            r#"<rect x="{PAD}" y="{}" width="10" height="3" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            y - 4.0,
            PAD + 14.0,
            y,
            esc(text)
        );
    }

    fn finish(mut self) -> String {
        self.svg.push_str("</svg>");
        self.svg
    }
}

fn calibration_chart(classifiers: &[&ClassifierMetrics]) -> String {
    let mut c = Chart::new(
        "Calibration (test)",
        "predicted probability",
        "observed rate",
        (0.0, 1.0),
        (0.0, 1.0),
        classifiers.len(),
    );
    c.line(&[(0.0, 0.0), (1.0, 1.0)], "#999", true);
    for (i, m) in classifiers.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = m
            .calibration
            .iter()
            .map(|b| (b.mean_predicted, b.observed_rate))
            .collect();
        c.line(&pts, color, false);
        c.dots(&pts, color, 2.5);
        c.legend(i, &format!("{} {}d", m.mode, m.horizon_days), color);
    }
    c.finish()
}

fn pr_chart(classifiers: &[&ClassifierMetrics]) -> String {
    let mut c = Chart::new(
        "Precision / recall (test)",
        "recall",
        "precision",
        (0.0, 1.0),
        (0.0, 1.0),
        classifiers.len(),
    );
    for (i, m) in classifiers.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = m.pr_curve.iter().map(|p| (p.recall, p.precision)).collect();
        c.line(&pts, color, false);
        c.dots(&[(m.recall, m.precision)], color, 4.0);
        c.legend(
            i,
            &format!(
                "{} {}d (AP {:.2})",
                m.mode, m.horizon_days, m.average_precision
            ),
            color,
        );
    }
    c.finish()
}

fn rul_chart(report: &EvalReport, cap: f64) -> String {
    let mut c = Chart::new(
        &format!(
            "RUL predicted vs true (test, RMSE {:.1} d)",
            report.rul_rmse_days
        ),
        "true RUL (days)",
        "predicted RUL (days)",
        (0.0, cap),
        (0.0, cap),
        0,
    );
    c.line(&[(0.0, 0.0), (cap, cap)], "#999", true);
    c.dots(&report.rul_pairs, COLORS[0], 1.5);
    c.finish()
}

fn importance_chart(names: &[String], importance: &[f64], title: &str) -> String {
    let mut pairs: Vec<(usize, f64)> = importance.iter().copied().enumerate().collect();
    pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
    pairs.truncate(15);
    let max = pairs.first().map_or(1.0, |p| p.1).max(1e-12);
    let row_h = 15.0;
    let height = 30.0 + row_h * pairs.len() as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="11"><text x="4" y="14" font-weight="bold">{}</text>"#,
        W * 1.3,
        esc(title)
    );
    for (k, (idx, v)) in pairs.iter().enumerate() {
        let y = 24.0 + k as f64 * row_h;
        let width = v / max * (W * 1.3 - 280.0);
        let _ = write!(
            svg,
            r#"<text x="220" y="{}" text-anchor="end">{}</text><rect x="224" y="{}" width="{width:.1}" height="{}" fill="{}"/><text x="{}" y="{}">{:.1}%</text>"#,
            y + 10.0,
            esc(names.get(*idx).map_or("?", String::as_str)),
            y + 2.0,
            row_h - 4.0,
            COLORS[0],
            228.0 + width,
            y + 10.0,
            v * 100.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Renders the report page.
pub fn render(outcome: &TrainOutcome, card: &serde_json::Value) -> String {
    render_with(outcome, card, None)
}

/// The challengers table: one row per challenger and target, intervals from
/// the asset bootstrap, AP per product; then the RUL regressors.
fn challengers_table(ch: &ChallengerReport) -> String {
    let iv = |i: Option<Interval>, digits: usize| {
        i.map_or("–".to_string(), |i| {
            format!(
                "{:.d$} <small>[{:.d$}, {:.d$}]</small>",
                i.value,
                i.lo,
                i.hi,
                d = digits
            )
        })
    };
    let mut html = format!(
        "<h2>Challengers</h2><p>The same split for every model: fitted on the fit rows, calibrated (isotonic) on the calibration slice, scored on the held-out test assets. Brackets: 95 % intervals from {} bootstrap resamples of the test <em>assets</em>; “AP − booster” is paired on the same resamples, so an interval excluding 0 is a difference these assets support.</p>",
        ch.bootstrap
    );
    for t in &ch.targets {
        let products: Vec<&str> = t
            .results
            .first()
            .map(|r| r.by_product.iter().map(|p| p.product.as_str()).collect())
            .unwrap_or_default();
        let _ = write!(
            html,
            "<h3>{} within {} days</h3><p>Fit: {} labelled rows, {} positive. Test: {} rows, {} positive, {} assets.</p><table><tr><th>model</th><th>AP</th><th>Brier</th><th>AP − booster</th>",
            esc(&t.mode),
            t.horizon_days,
            t.n_fit_rows,
            t.n_fit_positive,
            t.n_test_rows,
            t.n_test_positive,
            t.n_test_assets
        );
        for p in &products {
            let _ = write!(html, "<th>AP {}</th>", esc(p));
        }
        html.push_str("<th>fit (s)</th><th>note</th></tr>");
        for r in &t.results {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
                esc(&r.name),
                iv(r.average_precision, 3),
                iv(r.brier, 4),
                iv(r.ap_minus_booster, 3)
            );
            for p in &products {
                let cell =
                    r.by_product
                        .iter()
                        .find(|x| x.product == *p)
                        .map_or("–".to_string(), |x| {
                            x.average_precision.map_or("–".to_string(), |a| {
                                format!("{a:.3} <small>({}/{})</small>", x.n_positive, x.n_rows)
                            })
                        });
                let _ = write!(html, "<td>{cell}</td>");
            }
            let _ = write!(
                html,
                "<td>{:.2}</td><td>{}</td></tr>",
                r.fit_seconds,
                esc(r.note.as_deref().unwrap_or(""))
            );
        }
        html.push_str("</table>");
    }
    let _ = write!(
        html,
        "<h3>RUL</h3><p>{} test rows with a complete window.</p><table><tr><th>model</th><th>RMSE (days)</th><th>note</th></tr>",
        ch.n_rul_rows
    );
    for r in &ch.rul {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.name),
            iv(r.rmse_days, 2),
            esc(r.note.as_deref().unwrap_or(""))
        );
    }
    html.push_str("</table>");
    html
}

/// Trees kept per booster, and the early-stopping validation set.
fn boosters_table(outcome: &TrainOutcome) -> String {
    let mut html = String::from("<h2>Boosters</h2>");
    let validation = &outcome.split.validation_assets;
    if validation.is_empty() {
        html.push_str("<p>No early stopping: every booster has all its trees.</p>");
    } else {
        let _ = write!(
            html,
            "<p>Early stopping on {} validation assets ({} fit-window rows): {}.</p>",
            validation.len(),
            outcome.split.val_rows.len(),
            esc(&validation.join(", "))
        );
    }
    html.push_str("<table><tr><th>model</th><th>trees kept</th><th>of</th><th>validation loss</th><th>refit on all fit assets</th><th>note</th></tr>");
    for b in &outcome.boosters {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&b.model),
            b.n_trees,
            b.max_trees,
            b.validation_loss
                .map_or("–".to_string(), |l| format!("{l:.4}")),
            if b.refit { "yes" } else { "no" },
            esc(b.note.as_deref().unwrap_or("")),
        );
    }
    html.push_str("</table>");
    html
}

/// Renders the report page, with the challengers table when given.
pub fn render_with(
    outcome: &TrainOutcome,
    card: &serde_json::Value,
    challengers: Option<&ChallengerReport>,
) -> String {
    let model = &outcome.model;
    let names = model.schema.names();
    let any: Vec<&ClassifierMetrics> = outcome
        .test
        .classifiers
        .iter()
        .filter(|c| c.mode == "any")
        .collect();
    let mid_horizon = model
        .classifiers
        .iter()
        .filter(|c| c.mode == "any")
        .nth(1)
        .or(model.classifiers.first());
    let per_mode: Vec<&ClassifierMetrics> = outcome
        .test
        .classifiers
        .iter()
        .filter(|c| mid_horizon.is_some_and(|m| m.horizon_days == c.horizon_days))
        .collect();
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>fieldpulse failure model {v}</title><style>body{{font-family:sans-serif;margin:24px;max-width:1200px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f4f4f4}}.plots svg{{margin:6px;border:1px solid #eee}}</style></head><body><h1>Failure model {v}</h1><p>Data fingerprint <code>{fp}</code>; {rows} sampled rows (stride {stride}); test = {n_test} held-out assets after {cal}.</p>",
        v = esc(&model.model_version),
        fp = esc(card["data_fingerprint"].as_str().unwrap_or("")),
        rows = outcome.n_rows,
        stride = outcome.stride,
        n_test = outcome.split.test_assets.len(),
        cal = esc(card["training_window"]["fit_until"].as_str().unwrap_or("")),
    );
    let labels = &outcome.labels;
    let _ = write!(
        html,
        "<p>Labels: {n_labelled} fit labels, {n_excluded} left out because their window ran past the asset's end of observation (or an uncoded failure made the mode unknown), {n_hard} hard negatives before dispatcher false alarms; {n_rul} fit RUL rows ({n_rul_out} left out).",
        n_labelled = labels.n_fit_labels,
        n_excluded = labels.n_fit_labels_excluded,
        n_hard = labels.n_fit_hard_negatives,
        n_rul = labels.n_fit_rul_rows,
        n_rul_out = labels.n_fit_rul_excluded,
    );
    if !labels.assets_without_history.is_empty() {
        let _ = write!(
            html,
            " {} telemetry assets have no Work Order history ({}): {}.",
            labels.n_assets_without_history,
            if labels.assets_without_history_excluded {
                "left out"
            } else {
                "trained on as never failing"
            },
            esc(&labels.assets_without_history.join(", ")),
        );
    }
    html.push_str("</p>");
    let telemetry = &card["telemetry"];
    if telemetry.is_object() {
        let count = |key: &str| telemetry[key].as_u64().unwrap_or(0);
        let rejected: Vec<String> = telemetry["rejected"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{} {}", esc(k), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        let _ = write!(
            html,
            "<p>Telemetry: {kind} ({layout}), {files} files in {chunks} chunks ({skipped} day partitions outside the window not read); {read} rows read, {rows} readings; {n_rej} rejected{why}; {outside} outside the window; {dups} duplicate readings (last kept); {missing} missing values.</p>",
            kind = esc(telemetry["kind"].as_str().unwrap_or("")),
            layout = esc(telemetry["layout"].as_str().unwrap_or("")),
            files = count("files"),
            chunks = count("chunks"),
            skipped = count("partitions_skipped"),
            read = count("rows_read"),
            rows = count("rows"),
            n_rej = telemetry["rejected"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum::<u64>()),
            why = if rejected.is_empty() {
                String::new()
            } else {
                format!(" ({})", rejected.join(", "))
            },
            outside = count("outside_window"),
            dups = count("duplicate_readings"),
            missing = count("missing_values"),
        );
        if let Some(warnings) = telemetry["warnings"].as_array() {
            for w in warnings.iter().filter_map(|w| w.as_str()) {
                let _ = write!(html, "<p>Telemetry warning: {}</p>", esc(w));
            }
        }
    }
    html.push_str("<h2>Test metrics</h2><table><tr><th>mode</th><th>horizon (d)</th><th>threshold</th><th>precision</th><th>recall</th><th>F1</th><th>AP</th><th>Brier</th><th>failures detected</th><th>median lead (d)</th><th>false alarms / asset-month</th></tr>");
    for c in &outcome.test.classifiers {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.4}</td><td>{}/{}</td><td>{}</td><td>{:.2}</td></tr>",
            esc(&c.mode),
            c.horizon_days,
            c.threshold,
            c.precision,
            c.recall,
            c.f1,
            c.average_precision,
            c.brier,
            c.n_failures_detected,
            c.n_failures,
            c.median_lead_days.map_or("–".to_string(), |d| format!("{d:.1}")),
            c.false_alarms_per_asset_month
        );
    }
    let _ = write!(
        html,
        "</table><p>RUL on test: RMSE {:.2} days, MAE {:.2} days over {} uncensored rows (cap {} days).</p>",
        outcome.test.rul_rmse_days, outcome.test.rul_mae_days, outcome.test.rul_rows, model.rul_cap_days
    );
    html.push_str(&boosters_table(outcome));
    html.push_str("<div class=\"plots\">");
    html.push_str(&calibration_chart(&any));
    html.push_str(&pr_chart(&per_mode));
    html.push_str(&rul_chart(&outcome.test, model.rul_cap_days));
    if let Some(c) = mid_horizon {
        html.push_str(&importance_chart(
            &names,
            &c.booster.normalized_importance(),
            &format!(
                "Feature importance: {} {}d classifier (gain)",
                c.mode, c.horizon_days
            ),
        ));
    }
    html.push_str(&importance_chart(
        &names,
        &model.rul.normalized_importance(),
        "Feature importance: RUL regressor (gain)",
    ));
    html.push_str("</div>");
    if let Some(ch) = challengers {
        html.push_str(&challengers_table(ch));
    }
    let _ = write!(
        html,
        "<h2>Model card</h2><pre>{}</pre></body></html>",
        esc(&serde_json::to_string_pretty(card).unwrap_or_default())
    );
    html
}
