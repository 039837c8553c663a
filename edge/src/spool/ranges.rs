//! A set of record ids stored as disjoint half-open ranges.
//!
//! The spool tracks uncut and acked records this way: records arrive with
//! consecutive ids, so a set of millions of records is usually a handful of ranges.

use std::{collections::BTreeMap, ops::Range};

/// A set of `u64` ids as disjoint, non-adjacent half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start -> end (exclusive). Invariant: ranges are non-empty, disjoint and not
    /// adjacent (adjacent ranges are merged).
    ranges: BTreeMap<u64, u64>,
    n_ids: u64,
}

impl RangeSet {
    /// Number of ids in the set.
    pub fn len(&self) -> u64 {
        self.n_ids
    }

    /// True if the set holds no id.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if `id` is in the set.
    pub fn contains(&self, id: u64) -> bool {
        self.ranges
            .range(..=id)
            .next_back()
            .is_some_and(|(_, &end)| id < end)
    }

    /// The ranges in ascending order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Range<u64>> + '_ {
        self.ranges.iter().map(|(&start, &end)| start..end)
    }

    /// Adds every id of `range`.
    pub fn insert(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let (mut start, mut end) = (range.start, range.end);
        // Merge with a range that starts before and reaches `start`.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
                self.ranges.remove(&s);
                self.n_ids -= e - s;
            }
        }
        // Merge with every range that starts inside or right after the new one.
        while let Some((&s, &e)) = self.ranges.range(start..=end).next() {
            end = end.max(e);
            self.ranges.remove(&s);
            self.n_ids -= e - s;
        }
        self.ranges.insert(start, end);
        self.n_ids += end - start;
    }

    /// Removes every id of `range`.
    pub fn remove(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        let overlapping: Vec<(u64, u64)> = self
            .ranges
            .range(..range.end)
            .rev()
            .take_while(|(_, &e)| e > range.start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in overlapping {
            self.ranges.remove(&s);
            self.n_ids -= e - s;
            if s < range.start {
                self.ranges.insert(s, range.start);
                self.n_ids += range.start - s;
            }
            if e > range.end {
                self.ranges.insert(range.end, e);
                self.n_ids += e - range.end;
            }
        }
    }

    /// Removes every id below `id`.
    pub fn remove_below(&mut self, id: u64) {
        self.remove(0..id);
    }

    /// Up to `n` ids from the low end, as ranges in ascending order.
    pub fn lowest(&self, n: u64) -> Vec<Range<u64>> {
        let mut left = n;
        let mut out = Vec::new();
        for (&s, &e) in &self.ranges {
            if left == 0 {
                break;
            }
            let take = (e - s).min(left);
            out.push(s..s + take);
            left -= take;
        }
        out
    }

    /// Up to `n` ids from the high end, as ranges in ascending order.
    pub fn highest(&self, n: u64) -> Vec<Range<u64>> {
        let mut left = n;
        let mut out = Vec::new();
        for (&s, &e) in self.ranges.iter().rev() {
            if left == 0 {
                break;
            }
            let take = (e - s).min(left);
            out.push(e - take..e);
            left -= take;
        }
        out.reverse();
        out
    }
}

/// Compresses ascending ids into ranges.
pub fn ids_to_ranges(ids: impl IntoIterator<Item = u64>) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for id in ids {
        match out.last_mut() {
            Some(last) if last.end == id => last.end = id + 1,
            _ => out.push(id..id + 1),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn range_set_behaves_like_a_set_of_ids(
            ops in proptest::collection::vec((any::<bool>(), 0u64..60, 0u64..12), 0..40),
        ) {
            let mut set = RangeSet::default();
            let mut model = BTreeSet::new();
            for (insert, start, len) in ops {
                if insert {
                    set.insert(start..start + len);
                    model.extend(start..start + len);
                } else {
                    set.remove(start..start + len);
                    for id in start..start + len {
                        model.remove(&id);
                    }
                }
                prop_assert_eq!(set.len(), model.len() as u64);
                let flat: Vec<u64> = set.iter().flatten().collect();
                let expected: Vec<u64> = model.iter().copied().collect();
                prop_assert_eq!(&flat, &expected);
                let lowest: Vec<u64> = set.lowest(5).into_iter().flatten().collect();
                prop_assert_eq!(lowest, expected.iter().copied().take(5).collect::<Vec<_>>());
                let highest: Vec<u64> = set.highest(5).into_iter().flatten().collect();
                let skip = expected.len().saturating_sub(5);
                prop_assert_eq!(highest, expected[skip..].to_vec());
                for id in 0..75 {
                    prop_assert_eq!(set.contains(id), model.contains(&id));
                }
            }
        }
    }

    #[test]
    fn ids_to_ranges_merges_consecutive_ids() {
        assert_eq!(ids_to_ranges([1, 2, 3, 7, 9, 10]), vec![1..4, 7..8, 9..11]);
        assert!(ids_to_ranges([]).is_empty());
    }
}
