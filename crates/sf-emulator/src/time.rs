//! Dates and datetimes in Salesforce's wire formats, without a calendar
//! dependency: days since the Unix epoch for `date`, milliseconds for
//! `datetime`, and an injectable [`Clock`] so tests are reproducible.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `YYYY-MM-DD` into days since the epoch.
pub fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&s[0..4])?;
    let m = digits(&s[5..7])?;
    let d = digits(&s[8..10])?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(i64::from(y), m) {
        return None;
    }
    i32::try_from(days_from_civil(i64::from(y), m, d)).ok()
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses an ISO-8601 datetime with `Z` or an offset (`+01:00`, `+0100`) into
/// epoch milliseconds: `2026-05-01T17:50:19Z`, `2026-05-01T17:50:19.000+0000`.
pub fn parse_datetime(s: &str) -> Option<i64> {
    if s.len() < 20 || s.as_bytes()[10] != b'T' {
        return None;
    }
    let days = i64::from(parse_date(&s[..10])?);
    let rest = &s[11..];
    let b = rest.as_bytes();
    if b.len() < 9 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let hh = digits(&rest[0..2])?;
    let mm = digits(&rest[3..5])?;
    let ss = digits(&rest[6..8])?;
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut tail = &rest[8..];
    let mut millis = 0i64;
    if let Some(frac) = tail.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let digits_str = &frac[..n];
        let mut ms = String::from(&digits_str[..n.min(3)]);
        while ms.len() < 3 {
            ms.push('0');
        }
        millis = ms.parse().ok()?;
        tail = &frac[n..];
    }
    let offset_min: i64 = if tail == "Z" {
        0
    } else {
        let sign = match tail.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let t = &tail[1..];
        let (h, m) = match t.len() {
            5 if t.as_bytes()[2] == b':' => (digits(&t[0..2])?, digits(&t[3..5])?),
            4 => (digits(&t[0..2])?, digits(&t[2..4])?),
            _ => return None,
        };
        sign * i64::from(h * 60 + m)
    };
    let secs =
        days * 86_400 + i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss) - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// Formats days since the epoch as `YYYY-MM-DD`.
pub fn format_date(days: i32) -> String {
    let (y, m, d) = civil_from_days(i64::from(days));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Formats epoch milliseconds the way REST returns datetimes: `2026-05-01T17:50:19.000+0000`.
pub fn format_datetime(ms: i64) -> String {
    let (date, time) = split_ms(ms);
    format!("{date}T{time}+0000")
}

/// Formats epoch milliseconds the way Bulk CSV returns datetimes: `2026-05-01T17:50:19.000Z`.
pub fn format_datetime_z(ms: i64) -> String {
    let (date, time) = split_ms(ms);
    format!("{date}T{time}Z")
}

fn split_ms(ms: i64) -> (String, String) {
    let days = ms.div_euclid(DAY_MS);
    let rem = ms.rem_euclid(DAY_MS);
    let date = format_date(days as i32);
    let (h, m, s, f) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    (date, format!("{h:02}:{m:02}:{s:02}.{f:03}"))
}

/// The emulator's clock: wall time plus an adjustable offset, so tests can
/// move time forward (session expiry, locator expiry) without sleeping.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Current time in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        wall + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance(&self, ms: i64) {
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Today's date as days since the epoch (UTC).
    pub fn today(&self) -> i32 {
        self.now_ms().div_euclid(DAY_MS) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_civil_conversion() {
        for s in ["1970-01-01", "2000-02-29", "2026-05-01", "1969-12-31"] {
            assert_eq!(format_date(parse_date(s).unwrap()), s);
        }
        assert!(parse_date("2026-02-30").is_none());
        assert!(parse_date("2026-5-01").is_none());
    }

    #[test]
    fn datetimes_accept_z_and_offsets() {
        let z = parse_datetime("2026-05-01T17:50:19Z").unwrap();
        assert_eq!(parse_datetime("2026-05-01T17:50:19.000+0000"), Some(z));
        assert_eq!(parse_datetime("2026-05-01T19:50:19+02:00"), Some(z));
        assert_eq!(format_datetime(z), "2026-05-01T17:50:19.000+0000");
        assert!(parse_datetime("2026-05-01 17:50:19Z").is_none());
    }
}
