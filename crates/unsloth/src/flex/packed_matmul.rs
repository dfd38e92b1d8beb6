//! Matmuls against a packed 4-bit base that dequantise one tile at a time into a small
//! scratch buffer and multiply it with the `gemm` crate, so no dense copy of the weight ever
//! exists:
//! - forward `y = x·Wᵀ`: one rayon task per tile of [`FWD_TILE_ROWS`] output rows
//!   (`64 × d_in` scratch), writing rows of `yᵀ`;
//! - backward `dx = dy·W`: one rayon task per block column of `W` (64 columns for NF4, 256
//!   for Q4_K), accumulating over tiles of [`BWD_TILE_ROWS`] rows (`256 × block` scratch),
//!   writing rows of `dxᵀ`.
//!
//! Each task owns a disjoint slice of the transposed output, which one final pass turns into
//! the row-major result. All arithmetic is f32.

use rayon::prelude::*;

use crate::packed_base::PackedWeight;

/// Output rows dequantised per forward tile.
pub(crate) const FWD_TILE_ROWS: usize = 64;
/// Weight rows dequantised per step of a backward block column.
pub(crate) const BWD_TILE_ROWS: usize = 256;

/// A strided read-only matrix view: element `(i, j)` is `data[offset + i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    offset: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// A row-major `[rows, cols]` matrix.
    fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, 0, rows, cols, cols, 1)
    }

    /// Checks that every element lies inside `data` (the `gemm` call below relies on it).
    fn new(data: &'a [f32], offset: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            let last = offset + (rows - 1) * rs + (cols - 1) * cs;
            assert!(last < data.len(), "invariant: view inside its slice");
        }
        Self {
            data,
            offset,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The transpose (same data).
    fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// `dst = lhs·rhs` (or `dst += lhs·rhs` when `accumulate`), `dst` row-major
/// `[lhs.rows, rhs.cols]`, single-threaded (the callers parallelise over tiles).
fn gemm(dst: &mut [f32], accumulate: bool, lhs: View<'_>, rhs: View<'_>) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "invariant: inner dimensions agree");
    assert_eq!(dst.len(), m * n, "invariant: destination is [m, n]");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    let isz = |x: usize| isize::try_from(x).expect("invariant: strides fit in isize");
    // SAFETY: `View::new` checked that every element of lhs and rhs lies inside its slice; dst
    // is an exclusively borrowed row-major [m, n] buffer (checked above), so it aliases neither.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            isz(n),
            accumulate,
            lhs.data.as_ptr().add(lhs.offset),
            isz(lhs.cs),
            isz(lhs.rs),
            rhs.data.as_ptr().add(rhs.offset),
            isz(rhs.cs),
            isz(rhs.rs),
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Row-major `[cols, rows]` transpose of a row-major `[rows, cols]` matrix (parallel over the
/// output rows).
fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; src.len()];
    if rows == 0 || cols == 0 {
        return out;
    }
    out.par_chunks_mut(rows).enumerate().for_each(|(c, dst)| {
        for (r, v) in dst.iter_mut().enumerate() {
            *v = src[r * cols + c];
        }
    });
    out
}

/// `y = x·Wᵀ` for row-major `x` `[tokens, d_in]`; returns row-major `[tokens, d_out]`.
pub(crate) fn forward(x: &[f32], tokens: usize, w: &PackedWeight) -> Vec<f32> {
    let (d_out, d_in) = (w.d_out(), w.d_in());
    assert_eq!(x.len(), tokens * d_in, "invariant: x is [tokens, d_in]");
    if tokens == 0 {
        return Vec::new();
    }
    let xt = View::row_major(x, tokens, d_in).t();
    let all_blocks = 0..w.blocks_per_row();
    let mut yt = vec![0.0; d_out * tokens];
    yt.par_chunks_mut(FWD_TILE_ROWS * tokens)
        .enumerate()
        .for_each_init(Vec::new, |scratch, (tile, dst)| {
            let r0 = tile * FWD_TILE_ROWS;
            let rows = dst.len() / tokens;
            scratch.resize(rows * d_in, 0.0);
            w.dequantize_tile(r0..r0 + rows, all_blocks.clone(), scratch);
            // yᵀ[r0.., :] = W[r0.., :] · xᵀ
            gemm(dst, false, View::row_major(scratch, rows, d_in), xt);
        });
    transpose(&yt, d_out, tokens)
}

/// `dx = dy·W` for row-major `dy` `[tokens, d_out]`; returns row-major `[tokens, d_in]`.
pub(crate) fn backward(dy: &[f32], tokens: usize, w: &PackedWeight) -> Vec<f32> {
    let (d_out, d_in) = (w.d_out(), w.d_in());
    assert_eq!(dy.len(), tokens * d_out, "invariant: dy is [tokens, d_out]");
    if tokens == 0 {
        return Vec::new();
    }
    let bs = w.format().block_size();
    let mut dxt = vec![0.0; d_in * tokens];
    dxt.par_chunks_mut(bs * tokens)
        .enumerate()
        .for_each_init(Vec::new, |scratch, (block, dst)| {
            let width = dst.len() / tokens;
            for r0 in (0..d_out).step_by(BWD_TILE_ROWS) {
                let rows = BWD_TILE_ROWS.min(d_out - r0);
                scratch.resize(rows * width, 0.0);
                w.dequantize_tile(r0..r0 + rows, block..block + 1, scratch);
                // dxᵀ[cols, :] += W[r0.., cols]ᵀ · dy[:, r0..]ᵀ
                let lhs = View::row_major(scratch, rows, width).t();
                let rhs = View::new(dy, r0, rows, tokens, 1, d_out);
                gemm(dst, r0 > 0, lhs, rhs);
            }
        });
    transpose(&dxt, d_in, tokens)
}
