//! Bounds-checked strided matrix views: the operands of every entry point.
//!
//! A view is a slice plus `(rows, cols, row_stride, col_stride)`; element `(i, j)` is
//! `data[i·row_stride + j·col_stride]`. Construction checks that the last element lies inside the
//! slice, so the packing code can index freely. [`MatRef::t`] swaps the strides, which is how a
//! Hugging Face `[out, in]` weight becomes the `B = Wᵀ` of `y = x·Wᵀ` without a copy.

use half::bf16;

use crate::{Error, Result};

pub(crate) mod sealed {
    use crate::kernels::transpose::SrcLanes;
    use half::slice::HalfFloatSliceExt;

    /// Closes [`super::Element`] to f32 and bf16, and gives the packing code their storage.
    pub trait Sealed: Sized {
        /// A slice as transpose source lanes (bf16: its bits, read as k pairs or widened).
        fn lanes(data: &[Self]) -> SrcLanes<'_>;
    }
    impl Sealed for f32 {
        fn lanes(data: &[f32]) -> SrcLanes<'_> {
            SrcLanes::F32(data)
        }
    }
    impl Sealed for half::bf16 {
        fn lanes(data: &[half::bf16]) -> SrcLanes<'_> {
            SrcLanes::Pairs(data.reinterpret_cast())
        }
    }
}

/// An element type B may hold: `f32` or [`half::bf16`].
pub trait Element: Copy + Send + Sync + sealed::Sealed + 'static {
    /// The value as f32 (exact for both types).
    fn to_f32(self) -> f32;
    /// The value rounded to bf16 (round-to-nearest-even), as raw bits.
    fn to_bf16_bits(self) -> u16;
}

impl Element for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn to_bf16_bits(self) -> u16 {
        round_bf16_bits(self)
    }
}

impl Element for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn to_bf16_bits(self) -> u16 {
        self.to_bits()
    }
}

/// `x` rounded to the nearest bf16 (ties to even) and widened back: the value the bf16 paths
/// multiply.
#[inline(always)]
pub fn round_bf16(x: f32) -> f32 {
    f32::from_bits(u32::from(round_bf16_bits(x)) << 16)
}

/// `x` rounded to the nearest bf16 (ties to even; NaN stays a quiet NaN), as bits: the same
/// result as `half::bf16::from_f32`, written without branches so the packing loops stay cheap.
#[inline(always)]
pub(crate) fn round_bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16;
    let nan = (b >> 16) | 0x0040;
    (if x.is_nan() { nan } else { rounded }) as u16
}

/// Number of elements a `rows × cols` view with these strides reaches (last index + 1).
fn extent(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Result<usize> {
    if rows == 0 || cols == 0 {
        return Ok(0);
    }
    (rows - 1)
        .checked_mul(row_stride)
        .and_then(|r| {
            (cols - 1)
                .checked_mul(col_stride)
                .and_then(|c| r.checked_add(c))
        })
        .and_then(|last| last.checked_add(1))
        .ok_or(Error::SizeOverflow)
}

/// A read-only strided `rows × cols` matrix view.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

impl<'a, T: Copy> MatRef<'a, T> {
    /// A view with element `(i, j)` at `data[i·row_stride + j·col_stride]`. Errors if the view
    /// reaches past `data` or its extent overflows. Strides may be 0 (broadcast).
    pub fn new(
        data: &'a [T],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self> {
        let needed = extent(rows, cols, row_stride, col_stride)?;
        if needed > data.len() {
            return Err(Error::ViewOutOfBounds {
                rows,
                cols,
                row_stride,
                col_stride,
                needed,
                len: data.len(),
            });
        }
        Ok(Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        })
    }

    /// A dense row-major `rows × cols` view (`data.len()` must be at least `rows·cols`).
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose, viewing the same data: for a `[out, in]` weight `W`, `W.t()` is the
    /// `in × out` B of `y = x·Wᵀ`.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            data: self.data,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Distance between rows, in elements.
    pub fn row_stride(&self) -> usize {
        self.row_stride
    }

    /// Distance between columns, in elements.
    pub fn col_stride(&self) -> usize {
        self.col_stride
    }

    /// Element `(i, j)`, or `None` outside the view.
    pub fn get(&self, i: usize, j: usize) -> Option<T> {
        (i < self.rows && j < self.cols)
            .then(|| self.data[i * self.row_stride + j * self.col_stride])
    }

    /// The rows `rows` (a non-empty range inside the view) as a view of the same data.
    pub(crate) fn row_range(self, rows: std::ops::Range<usize>) -> Self {
        assert!(
            rows.start < rows.end && rows.end <= self.rows,
            "invariant: row range inside the view"
        );
        Self {
            data: &self.data[rows.start * self.row_stride..],
            rows: rows.len(),
            ..self
        }
    }

    /// The columns `cols` (a non-empty range inside the view) as a view of the same data.
    pub(crate) fn col_range(self, cols: std::ops::Range<usize>) -> Self {
        assert!(
            cols.start < cols.end && cols.end <= self.cols,
            "invariant: column range inside the view"
        );
        Self {
            data: &self.data[cols.start * self.col_stride..],
            cols: cols.len(),
            ..self
        }
    }

    /// Element `(i, j)`; the caller keeps `i < rows`, `j < cols` (checked by the slice index).
    #[inline(always)]
    pub(crate) fn at(&self, i: usize, j: usize) -> T {
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

/// The mutable row-major output C: `rows × cols`, rows `row_stride` elements apart, columns
/// contiguous.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> MatMut<'a> {
    /// A view with element `(i, j)` at `data[i·row_stride + j]`. Errors if rows would overlap
    /// (`row_stride < cols` with more than one row) or the view reaches past `data`.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Result<Self> {
        if rows > 1 && cols > 0 && row_stride < cols {
            return Err(Error::OverlappingOutputRows { row_stride, cols });
        }
        let needed = extent(rows, cols, row_stride, 1)?;
        if needed > data.len() {
            return Err(Error::ViewOutOfBounds {
                rows,
                cols,
                row_stride,
                col_stride: 1,
                needed,
                len: data.len(),
            });
        }
        Ok(Self {
            data,
            rows,
            cols,
            row_stride,
        })
    }

    /// A dense row-major `rows × cols` output.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Distance between rows, in elements.
    pub fn row_stride(&self) -> usize {
        self.row_stride
    }

    /// The columns `cols` (a range inside the view) as an output of their own, borrowing this
    /// one.
    pub(crate) fn cols_mut(&mut self, cols: std::ops::Range<usize>) -> MatMut<'_> {
        assert!(
            cols.start <= cols.end && cols.end <= self.cols,
            "invariant: column range inside the output"
        );
        let start = cols.start.min(self.data.len());
        MatMut {
            data: &mut self.data[start..],
            rows: self.rows,
            cols: cols.len(),
            row_stride: self.row_stride,
        }
    }

    /// The rows as disjoint `cols`-long slices (safe splitting: the checks in [`MatMut::new`]
    /// guarantee they fit and do not overlap).
    pub(crate) fn into_rows(self) -> Vec<&'a mut [f32]> {
        let (rows, cols, stride) = (self.rows, self.cols, self.row_stride);
        let mut out = Vec::with_capacity(rows);
        let mut rest: &'a mut [f32] = self.data;
        for r in 0..rows {
            let take = if r + 1 < rows { stride } else { cols };
            let (row, tail) = std::mem::take(&mut rest).split_at_mut(take);
            out.push(&mut row[..cols]);
            rest = tail;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The branch-free rounding agrees with `half` on a spread of bit patterns and the specials.
    #[test]
    fn bf16_rounding_matches_half() {
        let specials = [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MAX,
            f32::MIN_POSITIVE,
            1.0 + f32::EPSILON,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xff80_0001),
            f32::from_bits(0x3f80_8000),
            f32::from_bits(0x3f81_8000),
            f32::from_bits(0x0000_8000),
        ];
        let spread = (0..=u32::MAX / 7919).map(|i| f32::from_bits(i.wrapping_mul(7919)));
        for x in specials.into_iter().chain(spread) {
            let want = bf16::from_f32(x);
            let got = round_bf16_bits(x);
            if want.is_nan() {
                assert!(bf16::from_bits(got).is_nan(), "{:#x}", x.to_bits());
            } else {
                assert_eq!(got, want.to_bits(), "{:#x}", x.to_bits());
            }
        }
    }
}
