//! `y = x·Wᵀ` against a weight that exists only a tile of rows at a time (a quantized weight
//! dequantised on the fly): `xᵀ` is packed once as B, each task fills a `rows × k` scratch tile
//! of W (the A operand) and multiplies it into its own rows of `yᵀ`, and one parallel transpose
//! makes the row-major result. Only the scratch tiles ever hold W in f32.

use rayon::prelude::*;

use crate::{gemm_packed, MatMut, MatRef, PackedB, Precision, Result};

/// `y = x·Wᵀ` with `x` row-major `[m, k]` and W `[n, k]` given by `fill(r0, tile)`, which writes
/// W's rows `r0..r0 + tile.len() / k` row-major into `tile` (at most `tile_rows` rows).
///
/// # Shapes
/// - x: `[m, k]` row-major
/// - output: `[m, n]` row-major
pub fn gemm_by_weight_tiles(
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    tile_rows: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync,
) -> Result<Vec<f32>> {
    if m == 0 || n == 0 {
        return Ok(vec![0.0; m * n]);
    }
    let xt = PackedB::new(MatRef::row_major(x, m, k)?.t(), Precision::F32)?;
    let mut yt = vec![0.0f32; n * m];
    yt.par_chunks_mut(tile_rows.max(1) * m)
        .enumerate()
        .try_for_each_init(Vec::new, |scratch, (tile, dst)| {
            let rows = dst.len() / m;
            scratch.resize(rows * k, 0.0);
            fill(tile * tile_rows.max(1), scratch);
            // yᵀ[r0.., :] = W[r0.., :] · xᵀ
            let a = MatRef::row_major(scratch, rows, k)?;
            gemm_packed(a, &xt, MatMut::row_major(dst, rows, m)?, 1.0, false)
        })?;
    Ok(transpose(&yt, n, m))
}

/// Row-major `[cols, rows]` transpose of a row-major `[rows, cols]` matrix (parallel over the
/// output rows).
pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_give_the_plain_product() {
        let (m, k, n) = (5, 37, 70);
        let x: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 - 6.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 * 0.5 - 1.5).collect();
        let y = gemm_by_weight_tiles(&x, m, k, n, 16, |r0, tile| {
            tile.copy_from_slice(&w[r0 * k..r0 * k + tile.len()]);
        })
        .unwrap();
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum();
                assert!((y[i * n + j] - want).abs() < 1e-3, "({i}, {j})");
            }
        }
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
