//! `RowBuffer`: the readings of consecutive log records, in long format,
//! waiting to be flushed; split by UTC day and sorted for the part files.
//! Pure: no IO, no clock.

use std::collections::HashMap;

use fieldpulse_proto::v1::Batch;

use super::layout::{day_of, DAY_MS};

/// One reading in long format. Strings are ids into the buffer's interner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// Timestamp, ms since the epoch (UTC).
    pub ts_ms: i64,
    /// The value.
    pub value: f64,
    /// Asset id (interned).
    pub asset: u32,
    /// Sensor name (interned).
    pub tag: u32,
    /// Gateway id (interned).
    pub gateway: u32,
}

/// The rows of one UTC day, sorted by (asset, ts, tag), ready to encode.
#[derive(Debug)]
pub struct DayRows<'a> {
    /// Days since 1970-01-01.
    pub day: i64,
    /// The rows.
    pub rows: &'a [Row],
    /// Resolves the interned ids of `rows`.
    pub strings: &'a Interner,
}

/// Strings seen in the buffer, each stored once.
#[derive(Debug, Default)]
pub struct Interner {
    strings: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.strings.len()).expect("fewer than 2^32 distinct names");
        self.strings.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }

    /// The string of an id.
    pub fn get(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }

    /// `rank[id]`: the position of each string in byte order (for sorting
    /// rows by name without comparing strings per row).
    fn ranks(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.strings.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| self.get(a).cmp(self.get(b)));
        let mut rank = vec![0; order.len()];
        for (pos, id) in order.into_iter().enumerate() {
            rank[id as usize] = pos as u32;
        }
        rank
    }
}

/// Readings of the records `first_offset..=last_offset`, not yet flushed.
#[derive(Debug, Default)]
pub struct RowBuffer {
    strings: Interner,
    rows: Vec<Row>,
    range: Option<(u64, u64)>,
    n_records: u64,
}

impl RowBuffer {
    /// Adds the readings of the record at `offset` (offsets only grow).
    pub fn push(&mut self, offset: u64, batch: &Batch) {
        debug_assert!(self.range.is_none_or(|(_, last)| offset > last));
        let gateway = self.strings.intern(&batch.gateway_id);
        for series in &batch.series {
            let asset = self.strings.intern(&series.asset_id);
            let tag = self.strings.intern(&series.sensor);
            self.rows.extend(series.points().map(|(ts_ms, value)| Row {
                ts_ms,
                value,
                asset,
                tag,
                gateway,
            }));
        }
        self.range = Some(match self.range {
            Some((first, _)) => (first, offset),
            None => (offset, offset),
        });
        self.n_records += 1;
    }

    /// Readings buffered.
    pub fn n_rows(&self) -> usize {
        self.rows.len()
    }

    /// Records buffered (some may hold no readings).
    pub fn n_records(&self) -> u64 {
        self.n_records
    }

    /// `(first, last)` offsets of the buffered records, if any.
    pub fn range(&self) -> Option<(u64, u64)> {
        self.range
    }

    /// True when no record is buffered.
    pub fn is_empty(&self) -> bool {
        self.range.is_none()
    }

    /// The rows split by UTC day (ascending), each day sorted by (asset,
    /// ts, tag); rows equal in all three keep their log order, so the same
    /// records always give the same files. Sorts the buffer in place.
    pub fn by_day(&mut self) -> Vec<DayRows<'_>> {
        let rank = self.strings.ranks();
        sort_rows(&mut self.rows, &rank);
        let mut days = Vec::new();
        let mut rest = self.rows.as_slice();
        while let Some(first) = rest.first() {
            let day = day_of(first.ts_ms);
            let n = rest.partition_point(|r| day_of(r.ts_ms) == day);
            let (rows, tail) = rest.split_at(n);
            days.push(DayRows {
                day,
                rows,
                strings: &self.strings,
            });
            rest = tail;
        }
        days
    }

    /// Empties the buffer (after a committed flush).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Sorts rows by (UTC day, asset, ts, tag), equal rows in their order: one
/// `u128` key per row (day, asset rank, ms of the day, tag rank, position)
/// sorted unstably, which is several times faster than comparing tuples;
/// buffers beyond the key's ranges take the comparison sort.
pub(super) fn sort_rows(rows: &mut Vec<Row>, rank: &[u32]) {
    const DAY_BITS: u32 = 20;
    const NAME_BITS: u32 = 24;
    let (min_day, max_day) = rows.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| {
        let day = day_of(r.ts_ms);
        (lo.min(day), hi.max(day))
    });
    let packable = rows.len() <= u32::MAX as usize
        && rank.len() <= 1 << NAME_BITS
        && max_day.saturating_sub(min_day) < 1 << DAY_BITS;
    if !packable {
        rows.sort_by_key(|r| {
            (
                day_of(r.ts_ms),
                rank[r.asset as usize],
                r.ts_ms,
                rank[r.tag as usize],
            )
        });
        return;
    }
    // Bits, high to low: day 20, asset 24, ms of the day 27 (< 86,400,000),
    // tag 24, position 32.
    let mut keys: Vec<u128> = rows
        .iter()
        .enumerate()
        .map(|(position, r)| {
            let day = (day_of(r.ts_ms) - min_day) as u128;
            let ms = r.ts_ms.rem_euclid(DAY_MS) as u128;
            day << 107
                | u128::from(rank[r.asset as usize]) << 83
                | ms << 56
                | u128::from(rank[r.tag as usize]) << 32
                | position as u128
        })
        .collect();
    keys.sort_unstable();
    *rows = keys
        .iter()
        .map(|k| rows[(*k & u128::from(u32::MAX)) as usize])
        .collect();
}
