//! One chunk's rows as read (compact columns), sorted by (asset, time) and
//! turned into wide rows; each asset's rows at its newest instant wait for
//! the next chunk (module docs of [`super`]).

use super::Layout;

/// Wide rows of one chunk, sorted by asset then time.
#[derive(Debug, Clone, Copy)]
pub struct RowBatch<'a> {
    /// Asset index of each row.
    pub asset: &'a [u32],
    /// Time of each row, epoch ms.
    pub ts_ms: &'a [i64],
    /// Row-major values, `n_values` per row (`NaN` = missing); empty in pass 1.
    pub values: &'a [f64],
    /// Values per row.
    pub n_values: usize,
}

impl RowBatch<'_> {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ts_ms.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.ts_ms.is_empty()
    }

    /// Values of row `i` (empty in pass 1).
    pub fn row(&self, i: usize) -> &[f64] {
        if self.n_values == 0 {
            return &[];
        }
        &self.values[i * self.n_values..(i + 1) * self.n_values]
    }
}

/// Rows as readers accept them: wide rows, or long readings.
#[derive(Debug, Default, Clone)]
pub(crate) struct RawRows {
    pub asset: Vec<u32>,
    pub ts: Vec<i64>,
    /// Long: tag id per row.
    pub tag: Vec<u32>,
    /// Long: one value per row; wide: `n_values` per row (pass 2 only).
    pub value: Vec<f64>,
}

impl RawRows {
    fn len(&self) -> usize {
        self.ts.len()
    }

    /// Room for `rows` more rows of `values_per_row` values, exactly (a
    /// chunk's buffers then hold one chunk, not up to twice that).
    pub(crate) fn reserve_exact(&mut self, rows: usize, long: bool, values_per_row: usize) {
        self.asset.reserve_exact(rows);
        self.ts.reserve_exact(rows);
        if long {
            self.tag.reserve_exact(rows);
        }
        self.value.reserve_exact(rows * values_per_row);
    }

    fn clear(&mut self) {
        self.asset.clear();
        self.ts.clear();
        self.tag.clear();
        self.value.clear();
    }
}

/// An asset whose readings went back in time across chunks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Regression {
    /// Provisional asset id.
    pub asset: u32,
}

/// Sorting, pivoting and holding back, chunk after chunk.
#[derive(Debug)]
pub(crate) struct Pipeline {
    layout: Layout,
    /// Values per raw row: wide `n`, long 1 (0 in pass 1).
    n_values: usize,
    /// Values per wide output row.
    n_out: usize,
    pending: RawRows,
    carry: RawRows,
    last_emitted: Vec<i64>,
    out_asset: Vec<u32>,
    out_ts: Vec<i64>,
    out_values: Vec<f64>,
    /// Long: output column of each tag id (`u32::MAX` = not wanted).
    tag_slot: Vec<u32>,
    stamp: Vec<u64>,
    cur_stamp: u64,
    /// Counting-sort bucket starts per asset.
    starts: Vec<usize>,
    order: Vec<u32>,
}

impl Pipeline {
    /// `n_values`: wide values per row, or 1 for long rows with values, 0
    /// without values.
    pub fn new(layout: Layout, n_values: usize) -> Self {
        Self {
            layout,
            n_values,
            n_out: if layout == Layout::Wide { n_values } else { 0 },
            pending: RawRows::default(),
            carry: RawRows::default(),
            last_emitted: Vec::new(),
            out_asset: Vec::new(),
            out_ts: Vec::new(),
            out_values: Vec::new(),
            tag_slot: Vec::new(),
            stamp: Vec::new(),
            cur_stamp: 0,
            starts: Vec::new(),
            order: Vec::new(),
        }
    }

    /// Long rows: which tags (ids into `tag_names`) become which output
    /// columns (`sensors` order).
    pub fn set_wanted_tags(&mut self, tag_names: &[String], sensors: &[String]) {
        self.tag_slot = tag_names
            .iter()
            .map(|t| {
                sensors
                    .iter()
                    .position(|s| s == t)
                    .map_or(u32::MAX, |p| p as u32)
            })
            .collect();
        self.n_out = sensors.len();
    }

    /// Where readers append the chunk's rows (after the held-back ones).
    pub fn pending(&mut self) -> &mut RawRows {
        &mut self.pending
    }

    fn append_carry(&mut self) {
        let (p, c) = (&mut self.pending, &self.carry);
        p.asset.extend_from_slice(&c.asset);
        p.ts.extend_from_slice(&c.ts);
        p.tag.extend_from_slice(&c.tag);
        p.value.extend_from_slice(&c.value);
    }

    /// Sorts the pending rows, turns them into wide rows (all of them when
    /// `flush`, else all but each asset's newest instant) and returns the
    /// duplicate readings found.
    ///
    /// # Errors
    /// [`Regression`] when an asset's rows go back before rows already
    /// handed out.
    pub fn finish_chunk(&mut self, flush: bool, n_assets: usize) -> Result<u64, Regression> {
        if self.last_emitted.len() < n_assets {
            self.last_emitted.resize(n_assets, i64::MIN);
        }
        self.out_asset.clear();
        self.out_ts.clear();
        self.out_values.clear();
        self.carry.clear();
        self.sort_pending();
        let mut dups = 0u64;
        let order = std::mem::take(&mut self.order);
        let n = order.len();
        let mut i = 0;
        let res = loop {
            if i >= n {
                break Ok(());
            }
            let a = self.pending.asset[order[i] as usize];
            let mut j = i + 1;
            while j < n && self.pending.asset[order[j] as usize] == a {
                j += 1;
            }
            if self.pending.ts[order[i] as usize] <= self.last_emitted[a as usize] {
                break Err(Regression { asset: a });
            }
            let tail_ts = self.pending.ts[order[j - 1] as usize];
            let mut emit_end = j;
            if !flush {
                while emit_end > i && self.pending.ts[order[emit_end - 1] as usize] == tail_ts {
                    emit_end -= 1;
                }
            }
            match self.layout {
                Layout::Wide => self.pivot_wide(a, &order[i..emit_end]),
                Layout::Long => dups += self.pivot_long(a, &order[i..emit_end]),
            }
            for &r in &order[emit_end..j] {
                self.hold(r as usize);
            }
            if emit_end > i {
                self.last_emitted[a as usize] = self.pending.ts[order[emit_end - 1] as usize];
            }
            i = j;
        };
        self.order = order;
        // The held-back rows start the next chunk; `pending` keeps its
        // capacity (one chunk) and `carry` stays small.
        self.pending.clear();
        self.append_carry();
        res.map(|()| dups)
    }

    /// The wide rows of the last finished chunk.
    pub fn batch(&self) -> RowBatch<'_> {
        RowBatch {
            asset: &self.out_asset,
            ts_ms: &self.out_ts,
            values: &self.out_values,
            n_values: self.n_out,
        }
    }

    /// Renames the output rows' assets (provisional id → profile index).
    ///
    /// # Errors
    /// The provisional id of an asset the profile does not know.
    pub fn map_assets(&mut self, canonical: &[u32]) -> Result<(), Regression> {
        for a in &mut self.out_asset {
            match canonical.get(*a as usize) {
                Some(&c) => *a = c,
                None => return Err(Regression { asset: *a }),
            }
        }
        Ok(())
    }

    /// Stable order of the pending rows by (asset, time): a counting sort
    /// by asset (ids are dense), then each asset's rows sorted by time only
    /// when they are not in time order already (the usual case), so a chunk
    /// costs O(rows).
    fn sort_pending(&mut self) {
        let p = &self.pending;
        let n = p.len();
        self.order.clear();
        if n == 0 {
            return;
        }
        let n_assets = p.asset.iter().copied().max().unwrap_or(0) as usize + 1;
        self.starts.clear();
        self.starts.resize(n_assets + 1, 0);
        for &a in &p.asset {
            self.starts[a as usize + 1] += 1;
        }
        for k in 0..n_assets {
            self.starts[k + 1] += self.starts[k];
        }
        self.order.reserve_exact(n);
        self.order.resize(n, 0);
        let mut next = self.starts[..n_assets].to_vec();
        for (i, &a) in p.asset.iter().enumerate() {
            self.order[next[a as usize]] = i as u32;
            next[a as usize] += 1;
        }
        for k in 0..n_assets {
            let bucket = &mut self.order[self.starts[k]..self.starts[k + 1]];
            if !bucket.is_sorted_by_key(|&i| p.ts[i as usize]) {
                bucket.sort_by_key(|&i| p.ts[i as usize]);
            }
        }
    }

    fn pivot_wide(&mut self, asset: u32, rows: &[u32]) {
        let nv = self.n_values;
        for &r in rows {
            let r = r as usize;
            self.out_asset.push(asset);
            self.out_ts.push(self.pending.ts[r]);
            if nv > 0 {
                self.out_values
                    .extend_from_slice(&self.pending.value[r * nv..(r + 1) * nv]);
            }
        }
    }

    /// Long readings of one asset (sorted by time) into one wide row per
    /// instant; a repeated tag within an instant is a duplicate, the last
    /// non-missing value wins.
    fn pivot_long(&mut self, asset: u32, rows: &[u32]) -> u64 {
        let mut dups = 0;
        let with_values = self.n_values > 0;
        let n_out = self.n_out;
        let mut k = 0;
        while k < rows.len() {
            let t = self.pending.ts[rows[k] as usize];
            self.cur_stamp += 1;
            self.out_asset.push(asset);
            self.out_ts.push(t);
            let base = self.out_values.len();
            if with_values {
                self.out_values.resize(base + n_out, f64::NAN);
            }
            while k < rows.len() && self.pending.ts[rows[k] as usize] == t {
                let r = rows[k] as usize;
                let tag = self.pending.tag[r] as usize;
                if tag >= self.stamp.len() {
                    self.stamp.resize(tag + 1, 0);
                }
                if self.stamp[tag] == self.cur_stamp {
                    dups += 1;
                } else {
                    self.stamp[tag] = self.cur_stamp;
                }
                if with_values {
                    let slot = self.tag_slot.get(tag).copied().unwrap_or(u32::MAX);
                    let v = self.pending.value[r];
                    if slot != u32::MAX && !v.is_nan() {
                        self.out_values[base + slot as usize] = v;
                    }
                }
                k += 1;
            }
        }
        dups
    }

    /// Moves pending row `r` to the rows held for the next chunk.
    fn hold(&mut self, r: usize) {
        let (p, c) = (&self.pending, &mut self.carry);
        c.asset.push(p.asset[r]);
        c.ts.push(p.ts[r]);
        match self.layout {
            Layout::Long => {
                c.tag.push(p.tag[r]);
                if self.n_values > 0 {
                    c.value.push(p.value[r]);
                }
            }
            Layout::Wide => {
                let nv = self.n_values;
                c.value.extend_from_slice(&p.value[r * nv..(r + 1) * nv]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long(rows: &[(u32, i64, u32, f64)]) -> RawRows {
        let mut r = RawRows::default();
        for &(a, t, tag, v) in rows {
            r.asset.push(a);
            r.ts.push(t);
            r.tag.push(tag);
            r.value.push(v);
        }
        r
    }

    #[test]
    fn long_readings_pivot_per_instant_and_the_newest_instant_waits_for_the_next_chunk() {
        let mut p = Pipeline::new(Layout::Long, 1);
        p.set_wanted_tags(&["a".into(), "b".into()], &["a".into(), "b".into()]);
        // Chunk 1: asset 0 at t=1 (a, b), t=2 (a only so far); a duplicate
        // `a` at t=1 (last wins).
        *p.pending() = long(&[
            (0, 2, 0, 5.0),
            (0, 1, 0, 1.0),
            (0, 1, 1, 2.0),
            (0, 1, 0, 3.0),
        ]);
        let dups = p.finish_chunk(false, 1).expect("chunk 1");
        assert_eq!(dups, 1);
        let b = p.batch();
        assert_eq!((b.ts_ms, b.values), (&[1][..], &[3.0, 2.0][..]));
        // Chunk 2 completes t=2 with `b`, and flushes.
        p.pending().asset.push(0);
        p.pending().ts.push(2);
        p.pending().tag.push(1);
        p.pending().value.push(6.0);
        p.finish_chunk(true, 1).expect("chunk 2");
        let b = p.batch();
        assert_eq!((b.ts_ms, b.values), (&[2][..], &[5.0, 6.0][..]));
        // Chunk 3 goes back in time.
        *p.pending() = long(&[(0, 2, 0, 1.0)]);
        assert!(p.finish_chunk(true, 1).is_err());
    }
}
