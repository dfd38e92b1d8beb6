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

/// `max(row)` (NaN-propagating: a NaN anywhere gives NaN); `None` without AVX2+FMA.
#[inline]
pub(crate) fn max(row: &[f32]) -> Option<f32> {
    // SAFETY: the CPU has AVX2 and FMA (checked first).
    available().then(|| unsafe { max_avx2(row) })
}

/// `Σ exp(row[i] − shift)`; `None` without AVX2+FMA.
#[inline]
pub(crate) fn sum_exp_shifted(row: &[f32], shift: f32) -> Option<f32> {
    // SAFETY: the CPU has AVX2 and FMA (checked first).
    available().then(|| unsafe { sum_exp_fma(row, shift) })
}

/// `out[i] = exp(row[i] − shift)·scale` of equal-length slices; `None` (and `out` untouched)
/// without AVX2+FMA.
#[inline]
pub(crate) fn exp_shifted_scaled(
    out: &mut [f32],
    row: &[f32],
    shift: f32,
    scale: f32,
) -> Option<()> {
    assert_eq!(out.len(), row.len(), "invariant: exp of equal lengths");
    // SAFETY: the CPU has AVX2 and FMA (checked first); the lengths are equal (asserted).
    available().then(|| unsafe { exp_scaled_fma(out, row, shift, scale) })
}

/// Eight-lane `exp(x)`: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-6 polynomial for
/// `exp(r)` (Cephes' `expf` coefficients, ≤ 2 ulp), times `2ⁿ` applied as two exact powers of
/// two (`2^⌊n/2⌋·2^(n−⌊n/2⌋)`, each a normal float) so results near `f32::MAX` and in the
/// subnormal range come out as `f32::exp` gives them. Below −104 the result is 0, above 88.73
/// `+inf`, NaN stays NaN.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn exp8(x: __m256) -> __m256 {
    const HI: f32 = 88.722_84;
    const LO: f32 = -103.972_08;
    let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
    let over = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(HI));
    let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(LO));
    let xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(LO)), _mm256_set1_ps(HI));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        xc,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    // r = x − n·ln 2 in two steps (ln 2 split so that n·0.693359375 is exact).
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), xc);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let y = _mm256_fmadd_ps(
        p,
        _mm256_mul_ps(r, r),
        _mm256_add_ps(r, _mm256_set1_ps(1.0)),
    );
    let ni = _mm256_cvtps_epi32(n);
    let half = _mm256_srai_epi32::<1>(ni);
    let bias = _mm256_set1_epi32(127);
    let lo = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(half, bias)));
    let hi = _mm256_sub_epi32(ni, half);
    let hi = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(hi, bias)));
    let y = _mm256_mul_ps(_mm256_mul_ps(y, lo), hi);
    let y = _mm256_andnot_ps(under, y);
    let y = _mm256_blendv_ps(y, _mm256_set1_ps(f32::INFINITY), over);
    _mm256_blendv_ps(y, x, nan)
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn max_avx2(row: &[f32]) -> f32 {
    let n = row.len();
    let p = row.as_ptr();
    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut seen_nan = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n = row.len().
        let v = unsafe { _mm256_loadu_ps(p.add(i)) };
        seen_nan = _mm256_or_ps(seen_nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        m = _mm256_max_ps(m, v);
        i += 8;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 floats; storeu has no alignment requirement.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), m) };
    if _mm256_movemask_ps(seen_nan) != 0 {
        return f32::NAN;
    }
    let mut best = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &v in &row[i..] {
        if v.is_nan() {
            return f32::NAN;
        }
        best = best.max(v);
    }
    best
}

/// Two 8-lane partial sums, then the horizontal sum and the scalar tail.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn sum_exp_fma(row: &[f32], shift: f32) -> f32 {
    let n = row.len();
    let p = row.as_ptr();
    let vs = _mm256_set1_ps(shift);
    let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n: both loads are in bounds; exp8 needs AVX2+FMA (the caller's).
        unsafe {
            s0 = _mm256_add_ps(s0, exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vs)));
            s1 = _mm256_add_ps(s1, exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i + 8)), vs)));
        }
        i += 16;
    }
    if i + 8 <= n {
        // SAFETY: i + 8 <= n.
        unsafe { s0 = _mm256_add_ps(s0, exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vs))) };
        i += 8;
    }
    let s = _mm256_add_ps(s0, s1);
    let q = _mm_add_ps(_mm256_extractf128_ps::<1>(s), _mm256_castps256_ps128(s));
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let q = _mm_add_ss(q, _mm_shuffle_ps::<1>(q, q));
    let mut sum = _mm_cvtss_f32(q);
    for &v in &row[i..] {
        sum += (v - shift).exp();
    }
    sum
}

/// Eight lanes per step, then the scalar tail.
///
/// # Safety
/// The CPU must support AVX2 and FMA, and `out.len() == row.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_scaled_fma(out: &mut [f32], row: &[f32], shift: f32, scale: f32) {
    let n = out.len();
    let (vs, vk) = (_mm256_set1_ps(shift), _mm256_set1_ps(scale));
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n = out.len() = row.len(): the load and the store are in bounds.
        unsafe {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row.as_ptr().add(i)), vs));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_mul_ps(e, vk));
        }
        i += 8;
    }
    out[i..]
        .iter_mut()
        .zip(&row[i..])
        .for_each(|(o, &v)| *o = (v - shift).exp() * scale);
}

/// `x[i] = exp(x[i] − shift)` in place, returning `Σ x[i]` afterwards; `None` (and `x`
/// untouched) without AVX2+FMA.
#[inline]
pub(crate) fn exp_shifted_in_place(x: &mut [f32], shift: f32) -> Option<f32> {
    // SAFETY: the CPU has AVX2 and FMA (checked first).
    available().then(|| unsafe { exp_in_place_fma(x, shift) })
}

/// Eight lanes per step (one 8-lane sum), then the horizontal sum and the scalar tail.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_in_place_fma(x: &mut [f32], shift: f32) -> f32 {
    let n = x.len();
    let p = x.as_mut_ptr();
    let vs = _mm256_set1_ps(shift);
    let mut s = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n = x.len(): the load and the store are in bounds.
        unsafe {
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vs));
            _mm256_storeu_ps(p.add(i), e);
            s = _mm256_add_ps(s, e);
        }
        i += 8;
    }
    let q = _mm_add_ps(_mm256_extractf128_ps::<1>(s), _mm256_castps256_ps128(s));
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let q = _mm_add_ss(q, _mm_shuffle_ps::<1>(q, q));
    let mut sum = _mm_cvtss_f32(q);
    for v in &mut x[i..] {
        *v = (*v - shift).exp();
        sum += *v;
    }
    sum
}
