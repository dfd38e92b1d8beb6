//! Matrix products against weights that stay in their ggml blocks.
//!
//! A [`QuantMatrix`] borrows a weight's encoded bytes straight from the memory-mapped GGUF.
//! [`QuantMatrix::matmul`] computes `y = x · Wᵀ` for a batch of activation rows: the output
//! rows of `W` are split across rayon tasks, and each task dequantises one weight row at a time
//! (tb-gguf's block decoders, the ports of ggml's `dequantize_row_*`) into a small scratch
//! buffer and dots it with every activation row. Nothing but that scratch row is ever
//! materialised in f32, so memory stays at the size of the file.
//!
//! Two dot products: [`dot_scalar`] (plain Rust, eight partial sums) and, on x86-64 CPUs with
//! AVX2 and FMA, an intrinsic path picked at run time. [`Kernel`] selects one explicitly; the
//! tests run both and compare.

use rayon::prelude::*;
use tb_gguf::codec::{
    BlockBF16, BlockCodec, BlockF32, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0,
    BlockQ5_1, BlockQ6K, BlockQ8_0,
};
use tb_gguf::GgmlType;

/// Decodes one row of encoded blocks into f32.
pub type RowDecoder = fn(&[u8], &mut [f32]);

/// Which dot product the matmuls use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernel {
    /// AVX2+FMA when the CPU has it, else scalar.
    #[default]
    Auto,
    /// Plain Rust only (the reference path).
    Scalar,
}

impl Kernel {
    fn use_simd(self) -> bool {
        match self {
            Kernel::Scalar => false,
            Kernel::Auto => simd_available(),
        }
    }
}

/// Whether the AVX2+FMA dot product can run on this CPU.
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
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

/// Plain dot product with eight partial sums (the reference path).
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let chunks = n / 16;
    // SAFETY: every load reads 8 floats at an offset below `chunks * 16 <= n` of slices that
    // hold at least `n` elements; unaligned loads are used.
    unsafe {
        let mut s0 = _mm256_setzero_ps();
        let mut s1 = _mm256_setzero_ps();
        let pa = a.as_ptr();
        let pb = b.as_ptr();
        for i in 0..chunks {
            let o = i * 16;
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(o)), _mm256_loadu_ps(pb.add(o)), s0);
            s1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(o + 8)),
                _mm256_loadu_ps(pb.add(o + 8)),
                s1,
            );
        }
        let s = _mm256_add_ps(s0, s1);
        let hi = _mm256_extractf128_ps(s, 1);
        let lo = _mm256_castps256_ps128(s);
        let q = _mm_add_ps(hi, lo);
        let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
        let mut sum = _mm_cvtss_f32(q);
        for i in chunks * 16..n {
            sum += a[i] * b[i];
        }
        sum
    }
}

/// Dot product on the chosen path.
#[inline]
pub fn dot(a: &[f32], b: &[f32], simd: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only true when `simd_available()` said AVX2 and FMA are present.
        return unsafe { dot_avx2(a, b) };
    }
    let _ = simd;
    dot_scalar(a, b)
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

/// Output rows handed to one rayon task.
const ROWS_PER_TASK: usize = 16;

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
        let simd = kernel.use_simd();
        let cols = self.cols;
        let rb = self.row_bytes();
        // Computed transposed ([rows, n]) so every task writes one contiguous slice.
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
                        *y = dot(&w, &x[t * cols..(t + 1) * cols], simd);
                    }
                }
            });
        if n == 1 {
            return yt;
        }
        let mut y = vec![0f32; n * self.rows];
        for r in 0..self.rows {
            for t in 0..n {
                y[t * self.rows + r] = yt[r * n + t];
            }
        }
        y
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
    fn simd_dot_matches_scalar() {
        let mut s = 7;
        for n in [1, 7, 16, 31, 64, 257] {
            let a: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
            let b: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let d0 = dot(&a, &b, false);
            let d1 = dot(&a, &b, simd_available());
            assert!((d0 as f64 - exact).abs() < 1e-5, "{n}: {d0} vs {exact}");
            assert!((d1 as f64 - exact).abs() < 1e-5, "{n}: {d1} vs {exact}");
        }
    }

    #[test]
    fn matmul_equals_dequantised_product_for_every_type() {
        let (rows, cols, n) = (37, 256, 3);
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
                            "{ty} {kernel:?}: {got} vs {want}"
                        );
                    }
                }
            }
        }
        assert!(row_decoder(GgmlType::IQ2_XS).is_none());
    }
}
