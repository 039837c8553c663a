//! Exact-membership sets of committed batch seqs, one per `(gateway, spool_epoch)`.

use std::collections::BTreeMap;

/// The set of committed seqs of one `(gateway, spool_epoch)`.
///
/// Stored as `contiguous` (every seq in `1..=contiguous` is present) plus the
/// disjoint, non-adjacent ranges above it. Seqs usually arrive nearly in
/// order, so the set stays a handful of ranges even when a gap never fills
/// (a batch the edge dropped under its `drop_oldest` policy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqSet {
    contiguous: u64,
    /// `start -> end` (inclusive), all starts > `contiguous + 1`.
    ranges: BTreeMap<u64, u64>,
}

impl SeqSet {
    /// The highest seq at or below which every seq is present (0 when none).
    pub fn contiguous(&self) -> u64 {
        self.contiguous
    }

    /// True when `seq` was inserted before.
    pub fn contains(&self, seq: u64) -> bool {
        if seq <= self.contiguous {
            return true;
        }
        self.ranges
            .range(..=seq)
            .next_back()
            .is_some_and(|(_, end)| seq <= *end)
    }

    /// Inserts `seq`; returns false when it was already present.
    pub fn insert(&mut self, seq: u64) -> bool {
        if self.contains(seq) {
            return false;
        }
        let mut start = seq;
        let mut end = seq;
        // Merge with the range ending right below.
        if let Some((&prev_start, &prev_end)) = self.ranges.range(..seq).next_back() {
            if prev_end.checked_add(1) == Some(seq) {
                self.ranges.remove(&prev_start);
                start = prev_start;
            }
        }
        // Merge with the range starting right above.
        if let Some(next_start) = seq.checked_add(1) {
            if let Some(next_end) = self.ranges.remove(&next_start) {
                end = next_end;
            }
        }
        if start == self.contiguous + 1 {
            self.contiguous = end;
        } else {
            self.ranges.insert(start, end);
        }
        true
    }

    /// Rebuilds a set from [`SeqSet::contiguous`] and [`SeqSet::ranges`]
    /// (a persisted snapshot); `None` when the ranges are not ascending,
    /// disjoint, non-adjacent and above `contiguous + 1`.
    pub fn from_parts(contiguous: u64, ranges: &[(u64, u64)]) -> Option<Self> {
        let mut set = Self {
            contiguous,
            ranges: BTreeMap::new(),
        };
        // Each range must start at least two above the previous end.
        let mut floor = contiguous.saturating_add(2);
        for &(start, end) in ranges {
            if start < floor || end < start {
                return None;
            }
            set.ranges.insert(start, end);
            floor = end.saturating_add(2);
        }
        Some(set)
    }

    /// The ranges kept above `contiguous`, ascending, as `(start, end)`
    /// inclusive.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().map(|(&start, &end)| (start, end))
    }

    /// Number of disjoint ranges kept above `contiguous` (a memory gauge).
    pub fn n_ranges(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn delayed_seq_below_highest_is_not_a_duplicate() {
        let mut set = SeqSet::default();
        assert!(set.insert(1));
        assert!(set.insert(5));
        assert!(!set.contains(3));
        assert!(set.insert(3));
        assert!(!set.insert(5));
        assert_eq!(set.contiguous(), 1);
    }

    #[test]
    fn filling_the_gap_advances_contiguous_and_compacts() {
        let mut set = SeqSet::default();
        for seq in [2, 4, 3, 1] {
            set.insert(seq);
        }
        assert_eq!(set.contiguous(), 4);
        assert_eq!(set.n_ranges(), 0);
    }

    proptest! {
        #[test]
        fn seq_set_matches_a_plain_set(seqs in proptest::collection::vec(1u64..200, 0..300)) {
            let mut set = SeqSet::default();
            let mut model = BTreeSet::new();
            for seq in seqs {
                prop_assert_eq!(set.insert(seq), model.insert(seq));
            }
            for seq in 0..=201 {
                prop_assert_eq!(set.contains(seq), seq == 0 || model.contains(&seq));
            }
            let expected_contiguous = (1..).take_while(|s| model.contains(s)).last().unwrap_or(0);
            prop_assert_eq!(set.contiguous(), expected_contiguous);
            let ranges: Vec<_> = set.ranges().collect();
            prop_assert_eq!(SeqSet::from_parts(set.contiguous(), &ranges), Some(set));
        }
    }
}
