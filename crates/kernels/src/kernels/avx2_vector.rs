//! AVX2+FMA code of the vector primitives ([`crate::vector`]). Each safe wrapper checks the
//! CPU itself and returns `None` where it lacks AVX2 or FMA, so callers fall back to the
//! scalar reference.

use std::arch::x86_64::*;

/// Whether this CPU has AVX2 and FMA (the standard library caches the CPUID answer).
#[inline]
fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// `Σ a[i]·b[i]` of equal-length slices; `None` without AVX2+FMA.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> Option<f32> {
    assert_eq!(a.len(), b.len(), "invariant: dot of equal lengths");
    // SAFETY: the CPU has AVX2 and FMA (checked first); the lengths are equal (asserted).
    available().then(|| unsafe { dot_fma(a, b) })
}

/// `acc[i] += alpha·x[i]` of equal-length slices; `None` (and `acc` untouched) without
/// AVX2+FMA.
#[inline]
pub(crate) fn axpy(acc: &mut [f32], alpha: f32, x: &[f32]) -> Option<()> {
    assert_eq!(acc.len(), x.len(), "invariant: axpy of equal lengths");
    // SAFETY: the CPU has AVX2 and FMA (checked first); the lengths are equal (asserted).
    available().then(|| unsafe { axpy_fma(acc, alpha, x) })
}

/// Two 8-wide FMA accumulators over 16 values per step, one more 8-wide step, then the
/// horizontal sum and the scalar tail.
///
/// # Safety
/// The CPU must support AVX2 and FMA, and `a.len() == b.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_fma(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n = a.len() = b.len(): both 8-float loads at i and i + 8 are in
        // bounds; loadu has no alignment requirement.
        unsafe {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            s1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                s1,
            );
        }
        i += 16;
    }
    if i + 8 <= n {
        // SAFETY: i + 8 <= n.
        unsafe {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
        }
        i += 8;
    }
    let s = _mm256_add_ps(s0, s1);
    let q = _mm_add_ps(_mm256_extractf128_ps::<1>(s), _mm256_castps256_ps128(s));
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let q = _mm_add_ss(q, _mm_shuffle_ps::<1>(q, q));
    let mut sum = _mm_cvtss_f32(q);
    for (x, y) in a[i..].iter().zip(&b[i..]) {
        sum += x * y;
    }
    sum
}

/// Eight lanes per step, then the scalar tail.
///
/// # Safety
/// The CPU must support AVX2 and FMA, and `acc.len() == x.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn axpy_fma(acc: &mut [f32], alpha: f32, x: &[f32]) {
    let n = acc.len();
    let va = _mm256_set1_ps(alpha);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n = acc.len() = x.len(): the loads and the store are in bounds.
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
