//! [`AlignedVec`]: a growable buffer whose first element sits on a 64-byte
//! (cache line) boundary.
//!
//! State blocks are read and written in whole vectors of lanes. `Vec<f64>`
//! only promises 8-byte alignment (large allocations typically land 16 bytes
//! past a page boundary), so every 32- or 64-byte lane access would straddle
//! two cache lines and cost two accesses instead of one. This keeps
//! a little slack in a plain `Vec` and starts the data at the first aligned
//! element: no `unsafe`, no allocator tricks.

/// Cache line size the start is aligned to.
pub const ALIGN_BYTES: usize = 64;

/// A growable, zero-initialised buffer of `T` that starts on a 64-byte
/// boundary. Meant for primitive numbers (`f32`, `f64`): `T`'s size must
/// divide 64.
#[derive(Debug)]
pub struct AlignedVec<T> {
    buf: Vec<T>,
    off: usize,
    len: usize,
}

impl<T: Copy + Default> AlignedVec<T> {
    /// Elements of slack: enough to reach the next boundary from any start.
    const SLACK: usize = ALIGN_BYTES / std::mem::size_of::<T>();

    /// An empty buffer.
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            off: 0,
            len: 0,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `extra` default (zero) elements, keeping the start aligned.
    pub fn grow(&mut self, extra: usize) {
        let old = self.len;
        let before = self.buf.as_ptr();
        self.buf.resize(old + extra + Self::SLACK, T::default());
        if self.buf.as_ptr() != before || old == 0 {
            // Reallocated: the old contents moved with the buffer, but the
            // aligned start may now be at a different offset.
            let off = Self::aligned_offset(self.buf.as_ptr());
            if off != self.off {
                self.buf.copy_within(self.off..self.off + old, off);
                self.off = off;
            }
        }
        self.buf[self.off + old..self.off + old + extra].fill(T::default());
        self.len = old + extra;
        // The elements end the buffer (the capacity keeps the slack), so the
        // slices below need no end check.
        self.buf.truncate(self.off + self.len);
    }

    /// The elements.
    #[inline]
    pub fn as_slice(&self) -> &[T] {
        // `off <= buf.len()` always holds; `get` instead of indexing keeps a
        // panic branch out of every row's state access.
        self.buf.get(self.off..).unwrap_or_default()
    }

    /// The elements, mutably.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.buf.get_mut(self.off..).unwrap_or_default()
    }

    /// Elements `index * stride..(index + 1) * stride`, mutably: one range
    /// check on the buffer, where slicing [`Self::as_mut_slice`] costs its
    /// offset's clamp and a second check (about 6 instructions a row for
    /// each state block the row loop visits).
    ///
    /// # Panics
    /// If the block is not within the elements.
    #[inline]
    pub fn block_mut(&mut self, index: usize, stride: usize) -> &mut [T] {
        let start = self.off + index * stride;
        &mut self.buf[start..start + stride]
    }

    fn aligned_offset(ptr: *const T) -> usize {
        let size = std::mem::size_of::<T>();
        let mis = (ptr as usize) % ALIGN_BYTES;
        if mis == 0 {
            0
        } else {
            (ALIGN_BYTES - mis) / size
        }
    }
}

impl<T: Copy + Default> Default for AlignedVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Default> Clone for AlignedVec<T> {
    /// A copy in its own, again aligned, allocation (a derived `Clone` would
    /// keep the offset that suited the original allocation).
    fn clone(&self) -> Self {
        let mut out = Self::new();
        out.grow(self.len);
        out.as_mut_slice().copy_from_slice(self.as_slice());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_aligned<T>(s: &[T]) -> bool {
        (s.as_ptr() as usize).is_multiple_of(ALIGN_BYTES)
    }

    #[test]
    fn contents_survive_growth_and_the_start_stays_aligned() {
        let mut v: AlignedVec<f64> = AlignedVec::new();
        for step in 0..200 {
            v.grow(13);
            let n = v.len();
            v.as_mut_slice()[n - 1] = step as f64;
            assert!(is_aligned(v.as_slice()));
            // The slices end at the elements (not at the allocation's slack).
            assert_eq!(v.as_slice().len(), n);
        }
        for step in 0..200 {
            assert_eq!(v.as_slice()[step * 13 + 12], step as f64);
            assert_eq!(v.as_slice()[step * 13], 0.0);
        }
        let c = v.clone();
        assert!(is_aligned(c.as_slice()));
        assert_eq!(c.as_slice(), v.as_slice());
    }

    #[test]
    fn f32_buffers_align_too() {
        let mut v: AlignedVec<f32> = AlignedVec::new();
        v.grow(5);
        assert!(is_aligned(v.as_slice()));
        assert_eq!(v.as_slice(), &[0.0; 5]);
    }
}
