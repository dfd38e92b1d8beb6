//! Matmuls against a packed 4-bit base that dequantise one tile at a time into a small
//! scratch buffer and multiply it with tb-kernels' GEMM (the frozen-base op's micro-kernels),
//! so no dense copy of the weight ever exists:
//! - forward `y = x·Wᵀ`: [`tb_kernels::gemm_by_weight_tiles`] over tiles of [`FWD_TILE_ROWS`]
//!   output rows (`64 × d_in` scratch);
//! - backward `dx = dy·W`: one rayon task per block column of `W` (64 columns for NF4, 256
//!   for Q4_K), accumulating over tiles of [`BWD_TILE_ROWS`] rows (`256 × block` scratch),
//!   writing rows of `dxᵀ`.
//!
//! Each task owns a disjoint slice of the transposed output, which one final pass turns into
//! the row-major result. All arithmetic is f32.

use rayon::prelude::*;

use tb_kernels::{gemm, gemm_by_weight_tiles, transpose, MatMut, MatRef, Precision};

use crate::packed_base::PackedWeight;

/// Output rows dequantised per forward tile.
pub(crate) const FWD_TILE_ROWS: usize = 64;
/// Weight rows dequantised per step of a backward block column.
pub(crate) const BWD_TILE_ROWS: usize = 256;

/// `y = x·Wᵀ` for row-major `x` `[tokens, d_in]`; returns row-major `[tokens, d_out]`.
pub(crate) fn forward(x: &[f32], tokens: usize, w: &PackedWeight) -> Vec<f32> {
    let (d_out, d_in) = (w.d_out(), w.d_in());
    assert_eq!(x.len(), tokens * d_in, "invariant: x is [tokens, d_in]");
    let all_blocks = 0..w.blocks_per_row();
    gemm_by_weight_tiles(x, tokens, d_in, d_out, FWD_TILE_ROWS, |r0, tile| {
        w.dequantize_tile(r0..r0 + tile.len() / d_in, all_blocks.clone(), tile)
    })
    .unwrap_or_else(|e| panic!("packed forward: {e}"))
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
                let lhs = MatRef::row_major(scratch, rows, width).map(MatRef::t);
                let rhs = MatRef::new(&dy[r0..], rows, tokens, 1, d_out);
                let done = lhs.and_then(|a| {
                    let c = MatMut::row_major(dst, width, tokens)?;
                    gemm(a, rhs?, c, 1.0, r0 > 0, Precision::F32)
                });
                if let Err(e) = done {
                    panic!("packed backward tile: {e}");
                }
            }
        });
    transpose(&dxt, d_in, tokens)
}
