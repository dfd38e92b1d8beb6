//! The two vector primitives of the attention kernels, `dot` and `axpy`: AVX2 + FMA code when
//! the CPU has it (checked once at run time, so one binary serves every x86-64), else portable
//! code with eight independent partial sums. The portable versions are also the reference the
//! tests compare the SIMD ones against.

/// `Σ a[i]·b[i]` over the common length.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        return unsafe { avx2::dot(&a[..n], &b[..n]) };
    }
    dot_portable(&a[..n], &b[..n])
}

/// `acc[i] += alpha·x[i]` over the common length.
#[inline]
pub(crate) fn axpy(acc: &mut [f32], alpha: f32, x: &[f32]) {
    let n = acc.len().min(x.len());
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        unsafe { avx2::axpy(&mut acc[..n], alpha, &x[..n]) };
        return;
    }
    axpy_portable(&mut acc[..n], alpha, &x[..n]);
}

/// Portable dot product with eight independent partial sums (a plain `sum()` is a serial
/// chain of dependent adds the compiler may not reorder).
pub(crate) fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a8, a_tail) = a.split_at(a.len() - a.len() % 8);
    let (b8, b_tail) = b.split_at(a8.len());
    for (x, y) in a8.chunks_exact(8).zip(b8.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Portable `acc += alpha·x`.
pub(crate) fn axpy_portable(acc: &mut [f32], alpha: f32, x: &[f32]) {
    acc.iter_mut().zip(x).for_each(|(a, v)| *a += alpha * v);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_castps256_ps128, _mm256_extractf128_ps, _mm256_fmadd_ps,
        _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps, _mm_add_ps,
        _mm_cvtss_f32, _mm_hadd_ps,
    };

    /// Whether this CPU has AVX2 and FMA (std caches the CPUID answer).
    #[inline]
    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }

    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_hadd_ps(s, s);
        _mm_cvtss_f32(_mm_hadd_ps(s, s))
    }

    /// Dot product of equal-length slices, two 8-wide FMA accumulators.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        let n = a.len();
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n, so both 8-float loads are in bounds of a and b.
            unsafe {
                s0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                    s0,
                );
                s1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                    _mm256_loadu_ps(b.as_ptr().add(i + 8)),
                    s1,
                );
            }
            i += 16;
        }
        if i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                s0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                    s0,
                );
            }
            i += 8;
        }
        let tail: f32 = a[i..].iter().zip(&b[i..]).map(|(x, y)| x * y).sum();
        hsum(_mm256_add_ps(s0, s1)) + tail
    }

    /// `acc += alpha·x` on equal-length slices.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn axpy(acc: &mut [f32], alpha: f32, x: &[f32]) {
        debug_assert_eq!(acc.len(), x.len());
        let n = acc.len();
        let va = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n, so the loads and the store are in bounds.
            unsafe {
                let p = acc.as_mut_ptr().add(i);
                let r = _mm256_fmadd_ps(va, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(p));
                _mm256_storeu_ps(p, r);
            }
            i += 8;
        }
        acc[i..]
            .iter_mut()
            .zip(&x[i..])
            .for_each(|(a, v)| *a += alpha * v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut k = seed;
        (0..n)
            .map(|_| {
                k = k.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (k >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn dot_and_axpy_match_the_portable_reference_on_odd_lengths() {
        for n in [0, 1, 7, 8, 9, 15, 16, 17, 31, 64, 65, 127, 576] {
            let (a, b) = (data(n, 1), data(n, 2));
            let (fast, reference) = (dot(&a, &b), dot_portable(&a, &b));
            let exact: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            let bound = 1e-5 * (1.0 + a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum::<f32>());
            assert!(
                (fast - reference).abs() <= bound,
                "n={n}: {fast} vs {reference}"
            );
            assert!((f64::from(fast) - exact).abs() <= f64::from(bound), "n={n}");

            let mut acc_fast = data(n, 3);
            let mut acc_ref = acc_fast.clone();
            axpy(&mut acc_fast, 0.37, &a);
            axpy_portable(&mut acc_ref, 0.37, &a);
            for (i, (x, y)) in acc_fast.iter().zip(&acc_ref).enumerate() {
                assert!((x - y).abs() <= 1e-6, "n={n} i={i}: {x} vs {y}");
            }
        }
    }
}
