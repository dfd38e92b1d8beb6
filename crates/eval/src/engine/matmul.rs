//! Matrix products against weights that stay in their ggml blocks.
//!
//! A [`QuantMatrix`] borrows a weight's encoded bytes straight from the memory-mapped GGUF.
//! [`QuantMatrix::matmul`] computes `y = x · Wᵀ` for a batch of activation rows: the output
//! rows of `W` are split across rayon tasks, and each task dequantises one weight row at a time
//! (tb-gguf's block decoders, the ports of ggml's `dequantize_row_*`) into a small scratch
//! buffer and dots it with every activation row. Nothing but that scratch row is ever
//! materialised in f32, so memory stays at the size of the file.
//!
//! A batch of a few rows (decoding) takes tb-kernels' dot products ([`tb_kernels::vector`]):
//! the scalar reference, or the fastest path the CPU has. A batch of [`GEMM_MIN_ROWS`] or more
//! (a prompt's prefill, a perplexity pass) packs the activations once as tb-kernels' GEMM
//! operand and multiplies a block of [`GEMM_ROWS_PER_TASK`] dequantised weight rows at a time by
//! them — the same register-blocked micro-kernels as the trainers' frozen-base op, with the
//! scratch block the only f32 copy of the weight. [`Kernel::Scalar`] keeps the dot-product
//! reference for every batch; the tests run both and compare.

use rayon::prelude::*;
use tb_gguf::codec::{
    BlockBF16, BlockCodec, BlockF32, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0,
    BlockQ5_1, BlockQ6K, BlockQ8_0,
};
use tb_gguf::GgmlType;

/// Decodes one row of encoded blocks into f32.
pub type RowDecoder = fn(&[u8], &mut [f32]);

/// Which dot product the matmuls and the attention use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    /// The fastest path the CPU has ([`tb_kernels::vector::dot`]: AVX2+FMA, else scalar).
    #[default]
    Auto,
    /// The plain-Rust reference only ([`tb_kernels::vector::dot_scalar`]).
    Scalar,
}

impl Kernel {
    /// The dot product this kernel stands for.
    pub fn dot(self) -> fn(&[f32], &[f32]) -> f32 {
        match self {
            Kernel::Auto => tb_kernels::vector::dot,
            Kernel::Scalar => tb_kernels::vector::dot_scalar,
        }
    }
}

fn decode_blocks<B: BlockCodec>(src: &[u8], dst: &mut [f32]) {
    let blocks: &[B] = bytemuck::cast_slice(src);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(B::BLOCK_SIZE)) {
        b.dequantize_block(y);
    }
}

fn decode_f16(src: &[u8], dst: &mut [f32]) {
    for (c, y) in src.chunks_exact(2).zip(dst.iter_mut()) {
        *y = half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32();
    }
}

/// The row decoder for `ty`, or `None` when the engine cannot run that type.
pub fn row_decoder(ty: GgmlType) -> Option<RowDecoder> {
    Some(match ty {
        GgmlType::F32 => decode_blocks::<BlockF32>,
        GgmlType::F16 => decode_f16,
        GgmlType::BF16 => decode_blocks::<BlockBF16>,
        GgmlType::Q4_0 => decode_blocks::<BlockQ4_0>,
        GgmlType::Q4_1 => decode_blocks::<BlockQ4_1>,
        GgmlType::Q5_0 => decode_blocks::<BlockQ5_0>,
        GgmlType::Q5_1 => decode_blocks::<BlockQ5_1>,
        GgmlType::Q8_0 => decode_blocks::<BlockQ8_0>,
        GgmlType::Q4_K => decode_blocks::<BlockQ4K>,
        GgmlType::Q5_K => decode_blocks::<BlockQ5K>,
        GgmlType::Q6_K => decode_blocks::<BlockQ6K>,
        _ => return None,
    })
}

/// A weight matrix `[rows, cols]` (PyTorch order; GGUF `ne = [cols, rows]`) in its encoded form.
#[derive(Clone, Copy)]
pub struct QuantMatrix<'a> {
    /// Encoded type.
    pub ty: GgmlType,
    /// Output features (rows).
    pub rows: usize,
    /// Input features (row length).
    pub cols: usize,
    /// `rows` consecutive encoded rows.
    pub data: &'a [u8],
    /// Decoder for one row.
    pub decode: RowDecoder,
}

/// Output rows handed to one rayon task on the dot-product path.
const ROWS_PER_TASK: usize = 16;

/// Activation rows from which [`QuantMatrix::matmul`] runs tb-kernels' GEMM instead of dots.
pub const GEMM_MIN_ROWS: usize = 4;

/// Weight rows dequantised and multiplied per task on the GEMM path.
pub const GEMM_ROWS_PER_TASK: usize = 64;

impl QuantMatrix<'_> {
    /// Bytes of one encoded row.
    pub fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }

    /// Row `r` dequantised into `out` (`cols` values).
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let rb = self.row_bytes();
        (self.decode)(&self.data[r * rb..(r + 1) * rb], out);
    }

    /// `y = x · Wᵀ`.
    ///
    /// # Shapes
    /// - `x`: `[n, cols]` row-major
    /// - returns `[n, rows]` row-major
    pub fn matmul(&self, x: &[f32], n: usize, kernel: Kernel) -> Vec<f32> {
        debug_assert_eq!(x.len(), n * self.cols);
        if kernel == Kernel::Auto && n >= GEMM_MIN_ROWS {
            let fill = |r0: usize, tile: &mut [f32]| {
                for (i, row) in tile.chunks_exact_mut(self.cols).enumerate() {
                    self.row_into(r0 + i, row);
                }
            };
            match tb_kernels::gemm_by_weight_tiles(
                x,
                n,
                self.cols,
                self.rows,
                GEMM_ROWS_PER_TASK,
                fill,
            ) {
                Ok(y) => return y,
                // Shapes are checked above; an unavailable forced ISA falls back to dots.
                Err(e) => {
                    tracing::debug!(error = %e, "engine GEMM unavailable, using dot products")
                }
            }
        }
        // Computed transposed ([rows, n]) so every task writes one contiguous slice.
        let yt = self.matmul_t_dots(x, n, kernel);
        if n == 1 {
            return yt;
        }
        tb_kernels::transpose(&yt, self.rows, n)
    }

    /// `(x · Wᵀ)ᵀ` by dot products, one weight row at a time.
    fn matmul_t_dots(&self, x: &[f32], n: usize, kernel: Kernel) -> Vec<f32> {
        let dot = kernel.dot();
        let cols = self.cols;
        let rb = self.row_bytes();
        let mut yt = vec![0f32; self.rows * n];
        yt.par_chunks_mut(ROWS_PER_TASK * n)
            .enumerate()
            .for_each(|(task, out)| {
                let mut w = vec![0f32; cols];
                let r0 = task * ROWS_PER_TASK;
                for (i, out_row) in out.chunks_exact_mut(n).enumerate() {
                    let r = r0 + i;
                    (self.decode)(&self.data[r * rb..(r + 1) * rb], &mut w);
                    for (t, y) in out_row.iter_mut().enumerate() {
                        *y = dot(&w, &x[t * cols..(t + 1) * cols]);
                    }
                }
            });
        yt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    }

    #[test]
    fn matmul_equals_dequantised_product_for_every_type() {
        for n in [3, GEMM_MIN_ROWS, 37] {
            matmul_matches_for_every_type(n);
        }
        assert!(row_decoder(GgmlType::IQ2_XS).is_none());
    }

    /// Both kernels against the f64 product of the dequantised weight, for `n` activation rows
    /// (the dot path below [`GEMM_MIN_ROWS`], tb-kernels' GEMM from there on).
    fn matmul_matches_for_every_type(n: usize) {
        let (rows, cols) = (137, 256);
        let mut s = 11;
        let w: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut s)).collect();
        let x: Vec<f32> = (0..n * cols).map(|_| lcg(&mut s)).collect();
        for ty in [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::BF16,
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
        ] {
            let data = tb_gguf::codec::quantize_to_vec(ty, &w).unwrap();
            let deq = tb_gguf::codec::dequantize_to_vec(ty, &data).unwrap();
            let m = QuantMatrix {
                ty,
                rows,
                cols,
                data: &data,
                decode: row_decoder(ty).unwrap(),
            };
            for kernel in [Kernel::Scalar, Kernel::Auto] {
                let y = m.matmul(&x, n, kernel);
                for t in 0..n {
                    for r in 0..rows {
                        let want: f64 = (0..cols)
                            .map(|c| deq[r * cols + c] as f64 * x[t * cols + c] as f64)
                            .sum();
                        let got = y[t * rows + r] as f64;
                        assert!(
                            (got - want).abs() < 1e-4,
                            "{ty} {kernel:?} n={n}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
