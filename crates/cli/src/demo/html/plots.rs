//! Inline SVG plots for the report: time series in stacked panels sharing a
//! fleet-time axis, with labelled vertical markers ([`TimeChart`]), and a
//! histogram ([`Histogram`]).
//!
//! Every plot is one `<svg data-plot="kind">` whose first child is a
//! `<title>`; axes have ticks and units. Empty or non-finite input gives a
//! "no data" plot of the same kind, never a panic.

use std::fmt::Write;

use fieldpulse_simulator::time::{DAY_MS, HOUR_MS};

use super::markup::{clock_label, day_label, esc, num};

/// Drawing width of every plot (the page scales it down when narrower).
pub const WIDTH: f64 = 1160.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 20.0;
/// Title line and legend above the first panel.
const HEAD: f64 = 46.0;
const PANEL_GAP: f64 = 16.0;
/// Tick labels and the axis label under the last panel.
const FOOT: f64 = 44.0;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A line.
    Line,
    /// A dashed line (thresholds).
    Dashed,
    /// Steps (a value holds until the next one) with a dot at every point.
    StepDots,
}

/// One line of a panel: `(fleet time ms, value)`; a non-finite value breaks
/// the line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// CSS colour.
    pub color: &'static str,
    /// How it is drawn.
    pub style: Style,
    /// The points, in time order.
    pub points: Vec<(i64, f64)>,
    /// Hover text per point (`StepDots` only; empty for none).
    pub tips: Vec<String>,
    /// Points further apart than this are not joined (missing readings).
    pub max_gap_ms: Option<i64>,
}

/// One panel: a y axis and its series.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Axis label with its unit, e.g. `vib_rms (mm/s)`.
    pub y_label: String,
    /// Fixed y range; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
    /// Height in px.
    pub height: f64,
    /// The series.
    pub series: Vec<Series>,
}

/// A labelled vertical line across every panel.
#[derive(Debug, Clone)]
pub struct Marker {
    /// Fleet time, ms.
    pub t_ms: i64,
    /// Its label.
    pub label: String,
    /// CSS colour.
    pub color: &'static str,
    /// Dashed (context) rather than solid (an event).
    pub dashed: bool,
}

/// Stacked panels over one fleet-time axis.
#[derive(Debug, Clone)]
pub struct TimeChart {
    /// `data-plot` kind.
    pub kind: &'static str,
    /// The `<title>` and the heading drawn in the plot.
    pub title: String,
    /// Start of the time axis, ms.
    pub from_ms: i64,
    /// End of the time axis, ms.
    pub to_ms: i64,
    /// The panels, top to bottom.
    pub panels: Vec<Panel>,
    /// Vertical markers.
    pub markers: Vec<Marker>,
}

/// Counts of `values` in bins of `bin_width` from 0.
#[derive(Debug, Clone)]
pub struct Histogram {
    /// `data-plot` kind.
    pub kind: &'static str,
    /// The `<title>` and the heading drawn in the plot.
    pub title: String,
    /// x axis label with its unit.
    pub x_label: String,
    /// y axis label.
    pub y_label: String,
    /// Bin width in x units.
    pub bin_width: f64,
    /// The axis reaches at least this far.
    pub x_min_extent: f64,
    /// The values (non-finite and negative ones are left out).
    pub values: Vec<f64>,
    /// A labelled vertical line (e.g. the median).
    pub marker: Option<(f64, String)>,
}

/// A plot saying there is nothing to draw, with the kind and title a reader
/// (or a test) looks for.
pub fn no_data(kind: &str, title: &str, message: &str) -> String {
    let h = 90.0;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-plot="{kind}" data-empty="true" viewBox="0 0 {WIDTH} {h}" width="{WIDTH}" height="{h}" role="img"><title>{title}</title><text x="{LEFT}" y="20" class="ptitle">{title}</text><rect x="{LEFT}" y="30" width="{w}" height="50" fill="#fafafa" stroke="#ccc"/><text x="{cx}" y="60" text-anchor="middle" fill="#666">{message}</text></svg>"##,
        kind = esc(kind),
        title = esc(title),
        w = WIDTH - LEFT - RIGHT,
        cx = LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
        message = esc(message),
    )
}

/// Ticks at multiples of a 1-2-2.5-5 step covering `[lo, hi]`: the widened
/// range and the ticks. A degenerate or non-finite range is widened first.
pub fn nice_ticks(lo: f64, hi: f64, max_ticks: usize) -> ((f64, f64), Vec<f64>) {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
        (lo.min(hi), lo.max(hi))
    } else {
        (0.0, 1.0)
    };
    if hi - lo < 1e-9 * lo.abs().max(1.0) {
        let pad = (lo.abs() * 0.05).max(0.5);
        lo -= pad;
        hi += pad;
    }
    let raw = (hi - lo) / max_ticks.max(2) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| (hi - lo) / s <= max_ticks as f64)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    let ticks: Vec<f64> = (0..=((last - first) as usize).min(100))
        .map(|i| (first + i as f64) * step)
        .collect();
    ((first * step, last * step), ticks)
}

/// Decimals a tick step needs.
fn decimals(ticks: &[f64]) -> usize {
    let step = match ticks {
        [a, b, ..] => (b - a).abs(),
        _ => 1.0,
    };
    if step <= 0.0 || !step.is_finite() {
        return 0;
    }
    let d = (-step.log10()).ceil().max(0.0) as usize;
    // 2.5 steps need one more.
    if (step * 10f64.powi(d as i32)).fract().abs() > 1e-6 {
        (d + 1).min(4)
    } else {
        d.min(4)
    }
}

/// Time ticks: the step (ms) from a fixed ladder that gives at most
/// `max_ticks`, and the ticks (UTC-aligned multiples) inside the range.
pub fn time_ticks(from_ms: i64, to_ms: i64, max_ticks: i64) -> (i64, Vec<i64>) {
    const LADDER: [i64; 11] = [
        HOUR_MS,
        2 * HOUR_MS,
        3 * HOUR_MS,
        6 * HOUR_MS,
        12 * HOUR_MS,
        DAY_MS,
        2 * DAY_MS,
        7 * DAY_MS,
        14 * DAY_MS,
        28 * DAY_MS,
        91 * DAY_MS,
    ];
    let span = (to_ms - from_ms).max(1);
    let step = LADDER
        .iter()
        .copied()
        .find(|s| span / s <= max_ticks)
        .unwrap_or_else(|| (span / max_ticks.max(1)).max(DAY_MS));
    let mut t = from_ms.div_euclid(step) * step;
    if t < from_ms {
        t += step;
    }
    let mut ticks = Vec::new();
    while t <= to_ms && ticks.len() < 200 {
        ticks.push(t);
        t += step;
    }
    (step, ticks)
}

/// Linear map of `[d0, d1]` onto `[r0, r1]` (the middle of the range when
/// the domain is empty).
pub fn scale(v: f64, (d0, d1): (f64, f64), (r0, r1): (f64, f64)) -> f64 {
    if (d1 - d0).abs() < f64::EPSILON || !v.is_finite() {
        return (r0 + r1) / 2.0;
    }
    r0 + (v - d0) / (d1 - d0) * (r1 - r0)
}

fn svg_open(out: &mut String, kind: &str, title: &str, height: f64) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-plot="{kind}" viewBox="0 0 {WIDTH} {height:.0}" width="{WIDTH}" height="{height:.0}" role="img"><title>{title}</title><text x="{LEFT}" y="18" class="ptitle">{title}</text>"#,
        kind = esc(kind),
        title = esc(title),
    );
}

fn legend(out: &mut String, entries: &[(String, &'static str, bool)]) {
    let mut x = LEFT;
    for (label, color, dashed) in entries {
        let dash = if *dashed {
            r#" stroke-dasharray="5 3""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" y1="33" x2="{:.1}" y2="33" stroke="{color}" stroke-width="2.5"{dash}/><text x="{:.1}" y="37" class="legend">{}</text>"#,
            x + 18.0,
            x + 22.0,
            esc(label)
        );
        x += 32.0 + 6.5 * label.chars().count() as f64;
    }
}

impl TimeChart {
    /// The chart as one `<svg>`.
    pub fn to_svg(&self) -> String {
        let has_points = self.panels.iter().any(|p| {
            p.series
                .iter()
                .any(|s| s.points.iter().any(|(_, y)| y.is_finite()))
        });
        if self.to_ms <= self.from_ms || !has_points {
            return no_data(self.kind, &self.title, "no data");
        }
        let panels_h: f64 = self.panels.iter().map(|p| p.height.max(40.0)).sum::<f64>()
            + PANEL_GAP * (self.panels.len().saturating_sub(1)) as f64;
        let height = HEAD + panels_h + FOOT;
        let mut out = String::new();
        svg_open(&mut out, self.kind, &self.title, height);
        let mut entries: Vec<(String, &'static str, bool)> = Vec::new();
        for s in self.panels.iter().flat_map(|p| &p.series) {
            if !entries
                .iter()
                .any(|(l, c, _)| *l == s.label && *c == s.color)
            {
                entries.push((s.label.clone(), s.color, s.style == Style::Dashed));
            }
        }
        legend(&mut out, &entries);
        let x_range = (LEFT, WIDTH - RIGHT);
        let x_domain = (self.from_ms as f64, self.to_ms as f64);
        let px = |t: i64| scale(t as f64, x_domain, x_range);
        let (_, tticks) = time_ticks(self.from_ms, self.to_ms, 12);
        let sub_day = tticks.windows(2).any(|w| w[1] - w[0] < DAY_MS);
        let mut top = HEAD;
        for panel in &self.panels {
            let h = panel.height.max(40.0);
            let bottom = top + h;
            let (lo, hi) = panel.y_range.unwrap_or_else(|| data_range(&panel.series));
            let ((lo, hi), yticks) = nice_ticks(lo, hi, 5);
            let py = |v: f64| scale(v, (lo, hi), (bottom, top));
            let _ = write!(
                out,
                r##"<rect x="{LEFT}" y="{top:.1}" width="{:.1}" height="{h:.1}" fill="#fff" stroke="#999"/>"##,
                WIDTH - LEFT - RIGHT
            );
            let d = decimals(&yticks);
            for v in &yticks {
                let y = py(*v);
                let _ = write!(
                    out,
                    r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><line x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="#666"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
                    WIDTH - RIGHT,
                    LEFT - 4.0,
                    LEFT - 6.0,
                    y + 4.0,
                    num(*v, d)
                );
            }
            for t in &tticks {
                let x = px(*t);
                let _ = write!(
                    out,
                    r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#f0f0f0"/>"##
                );
            }
            let _ = write!(
                out,
                r#"<text x="16" y="{mid:.1}" text-anchor="middle" transform="rotate(-90 16 {mid:.1})" class="axis">{}</text>"#,
                esc(&panel.y_label),
                mid = (top + bottom) / 2.0
            );
            for s in &panel.series {
                series_svg(&mut out, s, &px, &py);
            }
            top = bottom + PANEL_GAP;
        }
        let bottom = top - PANEL_GAP;
        for t in &tticks {
            let x = px(*t);
            let label = if sub_day && t.rem_euclid(DAY_MS) != 0 {
                clock_label(*t)
            } else {
                day_label(*t)
            };
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="#666"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"##,
                bottom + 4.0,
                bottom + 16.0,
                esc(&label)
            );
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis">fleet time (UTC)</text>"#,
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
            bottom + 34.0
        );
        let shown: Vec<&Marker> = self
            .markers
            .iter()
            .filter(|m| (self.from_ms..=self.to_ms).contains(&m.t_ms))
            .collect();
        let labels: Vec<(f64, f64)> = shown
            .iter()
            .map(|m| (px(m.t_ms), text_width(&m.label)))
            .collect();
        for (m, (tx, anchor, row)) in shown.iter().zip(place_labels(&labels)) {
            let x = px(m.t_ms);
            let dash = if m.dashed {
                r#" stroke-dasharray="4 3""#
            } else {
                ""
            };
            // Labels inside the top panel, in rows so neighbours do not
            // overlap, with a white halo over the lines.
            let y = HEAD + 13.0 + 14.0 * row as f64;
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{HEAD}" x2="{x:.1}" y2="{bottom:.1}" stroke="{c}" stroke-width="2"{dash}><title>{l}</title></line><text x="{tx:.1}" y="{y:.1}" text-anchor="{anchor}" class="marker" fill="{c}" stroke="#fff" stroke-width="3" paint-order="stroke">{l}</text>"##,
                c = m.color,
                l = esc(&m.label),
            );
        }
        out.push_str("</svg>");
        out
    }
}

/// Approximate width of a marker label (12 px, bold).
fn text_width(label: &str) -> f64 {
    7.0 * label.chars().count() as f64
}

/// Where marker labels go: for each `(line x, label width)`, the text x,
/// its anchor (right of the line, or left of it near the right edge) and
/// the first row (of 4) where it overlaps no label placed before it.
fn place_labels(labels: &[(f64, f64)]) -> Vec<(f64, &'static str, usize)> {
    const ROWS: usize = 4;
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| labels[a].0.total_cmp(&labels[b].0));
    let mut taken: Vec<Vec<(f64, f64)>> = vec![Vec::new(); ROWS];
    let mut out = vec![(0.0, "start", 0); labels.len()];
    for i in order {
        let (x, w) = labels[i];
        let (tx, anchor, span) = if x + 4.0 + w > WIDTH - RIGHT {
            (x - 4.0, "end", (x - 4.0 - w, x - 4.0))
        } else {
            (x + 4.0, "start", (x + 4.0, x + 4.0 + w))
        };
        let row = (0..ROWS)
            .find(|&r| {
                taken[r]
                    .iter()
                    .all(|&(a, b)| span.1 + 6.0 < a || span.0 > b + 6.0)
            })
            .unwrap_or(i % ROWS);
        taken[row].push(span);
        out[i] = (tx, anchor, row);
    }
    out
}

/// Min and max of the finite values (`(0, 1)` when there are none).
fn data_range(series: &[Series]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for (_, y) in series.iter().flat_map(|s| &s.points) {
        if y.is_finite() {
            lo = lo.min(*y);
            hi = hi.max(*y);
        }
    }
    if lo.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

fn series_svg(out: &mut String, s: &Series, px: &dyn Fn(i64) -> f64, py: &dyn Fn(f64) -> f64) {
    let mut d = String::new();
    let mut pen_down = false;
    let mut last_t = i64::MIN;
    for (t, y) in &s.points {
        if !y.is_finite() {
            pen_down = false;
            continue;
        }
        if s.max_gap_ms
            .is_some_and(|gap| t.saturating_sub(last_t) > gap)
        {
            pen_down = false;
        }
        last_t = *t;
        if pen_down && s.style == Style::StepDots {
            let _ = write!(d, " H{:.1}", px(*t));
        }
        let _ = write!(
            d,
            "{}{:.1} {:.1}",
            if pen_down { " L" } else { " M" },
            px(*t),
            py(*y)
        );
        pen_down = true;
    }
    let dash = if s.style == Style::Dashed {
        r#" stroke-dasharray="5 3""#
    } else {
        ""
    };
    if !d.is_empty() {
        let _ = write!(
            out,
            r#"<path d="{}" fill="none" stroke="{}" stroke-width="1.6" stroke-linejoin="round"{dash}/>"#,
            d.trim_start(),
            s.color
        );
    }
    if s.style == Style::StepDots {
        for (i, (t, y)) in s.points.iter().enumerate() {
            if !y.is_finite() {
                continue;
            }
            let tip = s.tips.get(i).map(String::as_str).unwrap_or_default();
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}</title></circle>"#,
                px(*t),
                py(*y),
                s.color,
                esc(tip)
            );
        }
    }
}

impl Histogram {
    /// The histogram as one `<svg>`.
    pub fn to_svg(&self) -> String {
        let values: Vec<f64> = self
            .values
            .iter()
            .copied()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .collect();
        if values.is_empty() || !self.bin_width.is_finite() || self.bin_width <= 0.0 {
            return no_data(self.kind, &self.title, "no data: nothing to count");
        }
        let max = values.iter().copied().fold(self.x_min_extent, f64::max);
        // The last bin is closed: a value on the axis' end counts in it.
        let n_bins = ((max / self.bin_width).ceil() as usize).clamp(1, 500);
        let mut counts = vec![0usize; n_bins];
        for v in &values {
            let i = ((v / self.bin_width) as usize).min(n_bins - 1);
            counts[i] += 1;
        }
        let x_hi = n_bins as f64 * self.bin_width;
        let panel_h = 220.0;
        let height = HEAD + panel_h + FOOT;
        let (top, bottom) = (HEAD, HEAD + panel_h);
        let mut out = String::new();
        svg_open(&mut out, self.kind, &self.title, height);
        let y_max = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
        let ((_, y_hi), yticks) = nice_ticks(0.0, y_max, y_max.min(5.0) as usize);
        let yticks: Vec<f64> = yticks.into_iter().filter(|v| v.fract() == 0.0).collect();
        let px = |v: f64| scale(v, (0.0, x_hi), (LEFT, WIDTH - RIGHT));
        let py = |v: f64| scale(v, (0.0, y_hi), (bottom, top));
        let _ = write!(
            out,
            r##"<rect x="{LEFT}" y="{top:.1}" width="{:.1}" height="{panel_h:.1}" fill="#fff" stroke="#999"/>"##,
            WIDTH - LEFT - RIGHT
        );
        for v in &yticks {
            let y = py(*v);
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                num(*v, 0)
            );
        }
        for (i, n) in counts.iter().enumerate() {
            let (x0, x1) = (
                px(i as f64 * self.bin_width),
                px((i + 1) as f64 * self.bin_width),
            );
            let y = py(*n as f64);
            let _ = write!(
                out,
                r##"<rect class="bar" x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="#3b82c4"><title>{}–{}: {n}</title></rect>"##,
                x0 + 1.0,
                (x1 - x0 - 2.0).max(1.0),
                bottom - y,
                num(i as f64 * self.bin_width, 0),
                num((i + 1) as f64 * self.bin_width, 0),
            );
        }
        // Ticks on bin edges, at most 15 of them.
        let every = n_bins.div_ceil(14);
        let xticks: Vec<f64> = (0..=n_bins)
            .step_by(every)
            .map(|i| i as f64 * self.bin_width)
            .collect();
        for v in &xticks {
            let x = px(*v);
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="#666"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" class="tick">{}</text>"##,
                bottom + 4.0,
                bottom + 16.0,
                num(*v, decimals(&xticks))
            );
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" class="axis">{}</text><text x="16" y="{mid:.1}" text-anchor="middle" transform="rotate(-90 16 {mid:.1})" class="axis">{}</text>"#,
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
            bottom + 34.0,
            esc(&self.x_label),
            esc(&self.y_label),
            mid = (top + bottom) / 2.0
        );
        if let Some((v, label)) = self.marker.as_ref().filter(|(v, _)| v.is_finite()) {
            let x = px(v.clamp(0.0, x_hi));
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#d97706" stroke-width="2" stroke-dasharray="5 3"/><text x="{:.1}" y="{:.1}" class="marker" fill="#b45309" stroke="#fff" stroke-width="3" paint-order="stroke">{}</text>"##,
                x + 4.0,
                top + 14.0,
                esc(label)
            );
        }
        out.push_str("</svg>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(points: Vec<(i64, f64)>) -> TimeChart {
        TimeChart {
            kind: "timeline",
            title: "pump <1> & \"friends\"".into(),
            from_ms: 0,
            to_ms: 4 * DAY_MS,
            panels: vec![Panel {
                y_label: "temp_c (°C)".into(),
                y_range: None,
                height: 120.0,
                series: vec![Series {
                    label: "temp_c".into(),
                    color: "#1f77b4",
                    style: Style::Line,
                    points,
                    tips: Vec::new(),
                    max_gap_ms: None,
                }],
            }],
            markers: vec![Marker {
                t_ms: DAY_MS,
                label: "Case opened <x>".into(),
                color: "#d97706",
                dashed: false,
            }],
        }
    }

    #[test]
    fn scale_maps_domain_onto_range_and_survives_an_empty_domain() {
        assert_eq!(scale(5.0, (0.0, 10.0), (100.0, 200.0)), 150.0);
        // Inverted range (SVG y grows downwards).
        assert_eq!(scale(10.0, (0.0, 10.0), (200.0, 100.0)), 100.0);
        assert_eq!(scale(3.0, (2.0, 2.0), (0.0, 10.0)), 5.0);
        assert_eq!(scale(f64::NAN, (0.0, 1.0), (0.0, 10.0)), 5.0);
    }

    #[test]
    fn nice_ticks_cover_the_range_with_round_steps() {
        let ((lo, hi), ticks) = nice_ticks(0.13, 0.87, 5);
        assert!(lo <= 0.13 && hi >= 0.87, "{lo} {hi}");
        assert_eq!(ticks.first().copied(), Some(lo));
        assert_eq!(ticks.last().copied(), Some(hi));
        assert!(ticks.len() <= 7, "{ticks:?}");
        let step = ticks[1] - ticks[0];
        assert!((step - 0.2).abs() < 1e-9, "{ticks:?}");
        // Degenerate and non-finite ranges still give ticks.
        let ((lo, hi), ticks) = nice_ticks(3.0, 3.0, 5);
        assert!(lo < 3.0 && hi > 3.0 && ticks.len() >= 2);
        let (_, ticks) = nice_ticks(f64::NAN, f64::INFINITY, 5);
        assert!(ticks.len() >= 2);
        assert_eq!(decimals(&[0.0, 0.25, 0.5]), 2);
        assert_eq!(decimals(&[0.0, 50.0]), 0);
    }

    #[test]
    fn time_ticks_are_utc_aligned_and_bounded() {
        let (step, ticks) = time_ticks(DAY_MS / 2, 10 * DAY_MS + 1, 12);
        assert_eq!(step, DAY_MS);
        assert_eq!(ticks.first().copied(), Some(DAY_MS));
        assert_eq!(ticks.len(), 10);
        let (step, ticks) = time_ticks(0, 36 * HOUR_MS, 12);
        assert_eq!(step, 3 * HOUR_MS);
        assert_eq!(ticks.len(), 13);
        let (_, ticks) = time_ticks(5, 5, 12);
        assert!(ticks.len() <= 1);
    }

    #[test]
    fn a_time_chart_has_its_kind_title_axes_and_escaped_labels() {
        let svg = chart(vec![
            (0, 20.0),
            (DAY_MS, 22.0),
            (2 * DAY_MS, f64::NAN),
            (3 * DAY_MS, 30.0),
        ])
        .to_svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"data-plot="timeline""#));
        assert!(svg.contains("<title>pump &lt;1&gt; &amp; &quot;friends&quot;</title>"));
        assert!(svg.contains("Case opened &lt;x&gt;"));
        assert!(svg.contains("temp_c (°C)") && svg.contains("fleet time (UTC)"));
        assert!(svg.contains(">Jan 2<"), "day ticks: {svg}");
        // The gap splits the line into two sub-paths.
        let path = svg.split("<path d=\"").nth(1).unwrap();
        let path = &path[..path.find('"').unwrap()];
        assert_eq!(path.matches('M').count(), 2, "{path}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(!svg.contains("data-empty"));
    }

    #[test]
    fn a_time_gap_breaks_the_line() {
        let mut c = chart(vec![
            (0, 1.0),
            (HOUR_MS, 2.0),
            (2 * DAY_MS, 3.0),
            (2 * DAY_MS + HOUR_MS, 2.0),
        ]);
        c.panels[0].series[0].max_gap_ms = Some(DAY_MS / 2);
        let svg = c.to_svg();
        let path = svg.split("<path d=\"").nth(1).unwrap();
        assert_eq!(path[..path.find('"').unwrap()].matches('M').count(), 2);
    }

    #[test]
    fn a_step_series_holds_each_value_until_the_next() {
        let mut c = chart(vec![(0, 1.0), (2 * DAY_MS, 3.0)]);
        c.panels[0].series[0].style = Style::StepDots;
        c.panels[0].series[0].tips = vec!["first".into(), "<second>".into()];
        let svg = c.to_svg();
        let path = svg.split("<path d=\"").nth(1).unwrap();
        let path = &path[..path.find('"').unwrap()];
        // Move, horizontal to the second point's x, then up to its value.
        assert_eq!(path.matches('H').count(), 1, "{path}");
        assert!(
            svg.contains("<title>first</title>") && svg.contains("<title>&lt;second&gt;</title>")
        );
        assert_eq!(svg.matches("<circle").count(), 2);
    }

    #[test]
    fn marker_labels_take_free_rows_and_stay_inside() {
        // Two labels at the same spot, one far away, one at the right edge.
        let placed = place_labels(&[
            (100.0, 120.0),
            (110.0, 120.0),
            (600.0, 120.0),
            (WIDTH - 30.0, 120.0),
        ]);
        assert_eq!(placed[0], (104.0, "start", 0));
        assert_eq!(placed[1].2, 1);
        assert_eq!(placed[2].2, 0);
        assert_eq!(placed[3], (WIDTH - 34.0, "end", 0));
        assert!(place_labels(&[]).is_empty());
    }

    #[test]
    fn empty_or_degenerate_inputs_give_a_no_data_plot() {
        for svg in [
            chart(Vec::new()).to_svg(),
            chart(vec![(0, f64::NAN)]).to_svg(),
            TimeChart {
                to_ms: 0,
                ..chart(vec![(0, 1.0)])
            }
            .to_svg(),
        ] {
            assert!(svg.contains(r#"data-plot="timeline""#), "{svg}");
            assert!(svg.contains(r#"data-empty="true""#), "{svg}");
            assert!(svg.contains("<title>pump &lt;1&gt;"));
        }
        // A constant series is drawn, not divided by zero.
        let svg = chart(vec![(0, 5.0), (DAY_MS, 5.0)]).to_svg();
        assert!(!svg.contains("NaN") && !svg.contains("data-empty"), "{svg}");
    }

    #[test]
    fn histogram_counts_values_into_bins() {
        let h = Histogram {
            kind: "lead-time",
            title: "lead".into(),
            x_label: "hours".into(),
            y_label: "failures".into(),
            bin_width: 24.0,
            x_min_extent: 72.0,
            values: vec![1.0, 23.9, 24.0, 100.0, f64::NAN, -3.0],
            marker: Some((24.0, "median 24 h".into())),
        };
        let svg = h.to_svg();
        assert!(svg.contains(r#"data-plot="lead-time""#));
        // Bins [0,24) [24,48) [48,72) [72,96) [96,120): 2, 1, 0, 0, 1.
        let titles: Vec<&str> = svg
            .split("<rect class=\"bar\"")
            .skip(1)
            .map(|b| &b[b.find("<title>").unwrap() + 7..b.find("</title>").unwrap()])
            .collect();
        assert_eq!(
            titles,
            ["0–24: 2", "24–48: 1", "48–72: 0", "72–96: 0", "96–120: 1"]
        );
        assert!(svg.contains("median 24 h"));
        let empty = Histogram {
            values: vec![f64::NAN],
            ..h
        }
        .to_svg();
        assert!(empty.contains(r#"data-empty="true""#));
        assert!(empty.contains(r#"data-plot="lead-time""#));
    }
}
