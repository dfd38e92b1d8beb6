//! The crate's error type: every public entry point checks shapes, strides and lengths up front
//! and reports a mismatch here instead of panicking or reading out of bounds.

use crate::Isa;

/// What went wrong in a call to this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Two operands' dimensions do not fit together (e.g. A's columns ≠ B's rows, or C is not
    /// `m × n`).
    #[error("shape mismatch: {what} (expected {expected:?}, got {got:?})")]
    ShapeMismatch {
        /// Which pair of dimensions disagrees.
        what: &'static str,
        /// The `(rows, cols)` (or the single dimension, as `(d, d)`) that was required.
        expected: (usize, usize),
        /// The `(rows, cols)` that was passed.
        got: (usize, usize),
    },
    /// A strided view reaches past the end of its slice.
    #[error(
        "matrix view {rows}×{cols} with strides (row {row_stride}, col {col_stride}) needs \
         {needed} elements but the slice has {len}"
    )]
    ViewOutOfBounds {
        /// Rows of the view.
        rows: usize,
        /// Columns of the view.
        cols: usize,
        /// Distance between consecutive rows, in elements.
        row_stride: usize,
        /// Distance between consecutive columns, in elements.
        col_stride: usize,
        /// Elements the view reaches (last index + 1).
        needed: usize,
        /// Length of the slice.
        len: usize,
    },
    /// An output's rows would overlap: its row stride is smaller than its column count.
    #[error(
        "output row stride {row_stride} is smaller than its {cols} columns (rows would overlap)"
    )]
    OverlappingOutputRows {
        /// The row stride passed.
        row_stride: usize,
        /// The column count passed.
        cols: usize,
    },
    /// A dimension or stride product does not fit in `usize`.
    #[error("matrix size overflows usize")]
    SizeOverflow,
    /// `TB_GEMM_ISA` holds a value that names no ISA.
    #[error("TB_GEMM_ISA={value:?} is not one of scalar, avx2, avx512, avx512bf16 (or auto)")]
    UnknownIsa {
        /// The value found.
        value: String,
    },
    /// An ISA was asked for (by `TB_GEMM_ISA` or an explicit-ISA entry point) that this CPU
    /// lacks.
    #[error("GEMM ISA {requested} is not available on this CPU (best available: {detected})")]
    IsaUnavailable {
        /// The ISA asked for.
        requested: Isa,
        /// The best ISA this CPU has.
        detected: Isa,
    },
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
