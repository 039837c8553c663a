//! Text into HTML and SVG: escaping, numbers and fleet-time labels.

use fieldpulse_simulator::time::{civil_from_days, DAY_MS};

/// `s` escaped for HTML text and attribute values (also valid in SVG).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Nov 20` (UTC).
pub fn day_label(ms: i64) -> String {
    let (_, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let month = MONTHS.get(m.saturating_sub(1) as usize).unwrap_or(&"?");
    format!("{month} {d}")
}

/// `Nov 20 14:00` (UTC).
pub fn datetime_label(ms: i64) -> String {
    format!("{} {}", day_label(ms), clock_label(ms))
}

/// `14:00` (UTC).
pub fn clock_label(ms: i64) -> String {
    let minutes = ms.rem_euclid(DAY_MS) / 60_000;
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// `x` with `decimals` digits, or `-` when it is not finite.
pub fn num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "-".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert('x') & "y"</script>"#),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(esc("pump-0001 ü"), "pump-0001 ü");
    }

    #[test]
    fn fleet_time_labels_are_utc() {
        // 2026-11-20T14:30Z
        let ms = 20_777 * DAY_MS + 14 * 3_600_000 + 30 * 60_000;
        assert_eq!(day_label(ms), "Nov 20");
        assert_eq!(datetime_label(ms), "Nov 20 14:30");
        assert_eq!(num(f64::NAN, 1), "-");
        assert_eq!(num(0.456, 2), "0.46");
    }
}
