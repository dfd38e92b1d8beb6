//! The f32 vector primitives shared by the CPU attention kernels (tb-unsloth) and the embedded
//! GGUF engine (tb-eval): [`dot`] (`Σ a[i]·b[i]`) and [`axpy`] (`acc[i] += alpha·x[i]`); and
//! the softmax pieces of both trainers' cross-entropy: [`max`], [`sum_exp_shifted`]
//! (`Σ exp(x[i] − shift)`), [`logsumexp`] and [`exp_shifted_scaled`]
//! (`out[i] = exp(x[i] − shift)·scale`) and [`exp_shifted_in_place`]. The SIMD `exp` is a polynomial within 2 ulp of
//! `f32::exp` (subnormals and overflow included); NaN propagates through all of them. Also
//! [`zeros`], the output buffers of the CPU kernels, zeroed in parallel when big.
//!
//! Two implementations each: the plain-Rust reference ([`dot_scalar`], [`axpy_scalar`]) and
//! AVX2+FMA code for x86-64, picked at run time (CPUID, cached by the standard library), so one
//! binary serves every CPU. There is no AVX-512 variant: on [`Isa::Avx512`] and
//! [`Isa::Avx512Bf16`] CPUs the AVX2 code runs. Every function works over the common length of
//! its two slices. `TB_GEMM_ISA` does not apply here; [`dot_with_isa`] and [`axpy_with_isa`]
//! pick a path explicitly (tests, benches).

use rayon::prelude::*;

use crate::{Isa, Result};

#[cfg(target_arch = "x86_64")]
use crate::kernels::avx2_vector;

/// Buffers of at least this many values are zeroed by all of rayon's threads.
const PAR_ZEROS_MIN: usize = 1 << 16;

/// `n` zeros, written in parallel for big buffers. A kernel's output buffer is allocated on the
/// calling thread before its parallel section; a reused heap block is zeroed there by one
/// `memset`, the other threads idle: the many-megabyte activation buffers of a training step
/// are cleared at the machine's full width instead.
pub fn zeros(n: usize) -> Vec<f32> {
    if n < PAR_ZEROS_MIN {
        return vec![0.0; n];
    }
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(0.0f32, n));
    v
}

/// `Σ a[i]·b[i]` over the common length, on the fastest path this CPU has.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if let Some(d) = avx2_vector::dot(a, b) {
        return d;
    }
    dot_scalar(a, b)
}

/// `acc[i] += alpha·x[i]` over the common length, on the fastest path this CPU has.
#[inline]
pub fn axpy(acc: &mut [f32], alpha: f32, x: &[f32]) {
    let n = acc.len().min(x.len());
    let (acc, x) = (&mut acc[..n], &x[..n]);
    #[cfg(target_arch = "x86_64")]
    if avx2_vector::axpy(acc, alpha, x).is_some() {
        return;
    }
    axpy_scalar(acc, alpha, x);
}

/// `max(x)`, NaN if any element is NaN, `-inf` for an empty slice; on the fastest path.
#[inline]
pub fn max(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(m) = avx2_vector::max(x) {
        return m;
    }
    max_scalar(x)
}

/// `Σ exp(x[i] − shift)` on the fastest path this CPU has.
#[inline]
pub fn sum_exp_shifted(x: &[f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(s) = avx2_vector::sum_exp_shifted(x, shift) {
        return s;
    }
    sum_exp_shifted_scalar(x, shift)
}

/// `ln Σ exp(x[i])`, computed as `m + ln Σ exp(x[i] − m)` with `m = max(x)`; `-inf` for an
/// empty or all-`-inf` slice, NaN if any element is NaN.
pub fn logsumexp(x: &[f32]) -> f32 {
    let m = max(x);
    if m == f32::NEG_INFINITY || m.is_nan() {
        return m;
    }
    m + sum_exp_shifted(x, m).ln()
}

/// `out[i] = exp(x[i] − shift)·scale` over the common length, on the fastest path.
#[inline]
pub fn exp_shifted_scaled(out: &mut [f32], x: &[f32], shift: f32, scale: f32) {
    let n = out.len().min(x.len());
    let (out, x) = (&mut out[..n], &x[..n]);
    #[cfg(target_arch = "x86_64")]
    if avx2_vector::exp_shifted_scaled(out, x, shift, scale).is_some() {
        return;
    }
    exp_shifted_scaled_scalar(out, x, shift, scale);
}

/// `x[i] = exp(x[i] − shift)` in place; returns `Σ x[i]` afterwards (a softmax's numerator
/// and denominator in one pass).
#[inline]
pub fn exp_shifted_in_place(x: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(s) = avx2_vector::exp_shifted_in_place(x, shift) {
        return s;
    }
    exp_shifted_in_place_scalar(x, shift)
}

/// `out[i] = σ(x[i]) = 1 / (1 + exp(−x[i]))`, the exponentials on [`exp_shifted_in_place`]'s
/// path.
pub fn sigmoid_into(out: &mut [f32], x: &[f32]) {
    for (o, &x) in out.iter_mut().zip(x) {
        *o = -x;
    }
    exp_shifted_in_place(out, 0.0);
    for o in out.iter_mut() {
        *o = 1.0 / (1.0 + *o);
    }
}

/// The reference [`exp_shifted_in_place`].
pub fn exp_shifted_in_place_scalar(x: &mut [f32], shift: f32) -> f32 {
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = (*v - shift).exp();
        sum += *v;
    }
    sum
}

/// [`exp_shifted_in_place`] on an explicit ISA, as [`dot_with_isa`] picks it.
pub fn exp_shifted_in_place_with_isa(isa: Isa, x: &mut [f32], shift: f32) -> Result<f32> {
    if simd_path(isa)? {
        #[cfg(target_arch = "x86_64")]
        if let Some(s) = avx2_vector::exp_shifted_in_place(x, shift) {
            return Ok(s);
        }
    }
    Ok(exp_shifted_in_place_scalar(x, shift))
}

/// The reference [`max`].
pub fn max_scalar(x: &[f32]) -> f32 {
    let mut m = f32::NEG_INFINITY;
    for &v in x {
        if v.is_nan() {
            return f32::NAN;
        }
        m = m.max(v);
    }
    m
}

/// The reference [`sum_exp_shifted`] (`f32::exp`, summed in order).
pub fn sum_exp_shifted_scalar(x: &[f32], shift: f32) -> f32 {
    x.iter().map(|&v| (v - shift).exp()).sum()
}

/// The reference [`exp_shifted_scaled`].
pub fn exp_shifted_scaled_scalar(out: &mut [f32], x: &[f32], shift: f32, scale: f32) {
    out.iter_mut()
        .zip(x)
        .for_each(|(o, &v)| *o = (v - shift).exp() * scale);
}

/// [`max`] on an explicit ISA, as [`dot_with_isa`] picks it.
pub fn max_with_isa(isa: Isa, x: &[f32]) -> Result<f32> {
    if simd_path(isa)? {
        #[cfg(target_arch = "x86_64")]
        if let Some(m) = avx2_vector::max(x) {
            return Ok(m);
        }
    }
    Ok(max_scalar(x))
}

/// [`sum_exp_shifted`] on an explicit ISA, as [`dot_with_isa`] picks it.
pub fn sum_exp_shifted_with_isa(isa: Isa, x: &[f32], shift: f32) -> Result<f32> {
    if simd_path(isa)? {
        #[cfg(target_arch = "x86_64")]
        if let Some(s) = avx2_vector::sum_exp_shifted(x, shift) {
            return Ok(s);
        }
    }
    Ok(sum_exp_shifted_scalar(x, shift))
}

/// [`exp_shifted_scaled`] on an explicit ISA, as [`dot_with_isa`] picks it.
pub fn exp_shifted_scaled_with_isa(
    isa: Isa,
    out: &mut [f32],
    x: &[f32],
    shift: f32,
    scale: f32,
) -> Result<()> {
    let n = out.len().min(x.len());
    let (out, x) = (&mut out[..n], &x[..n]);
    if simd_path(isa)? {
        #[cfg(target_arch = "x86_64")]
        if avx2_vector::exp_shifted_scaled(out, x, shift, scale).is_some() {
            return Ok(());
        }
    }
    exp_shifted_scaled_scalar(out, x, shift, scale);
    Ok(())
}

/// The reference dot product: eight independent partial sums (a plain `sum()` is one serial
/// chain of dependent adds the compiler may not reorder), added pairwise.
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

/// The reference `acc[i] += alpha·x[i]`.
pub fn axpy_scalar(acc: &mut [f32], alpha: f32, x: &[f32]) {
    acc.iter_mut().zip(x).for_each(|(a, v)| *a += alpha * v);
}

/// [`dot`] on an explicit ISA: [`Isa::Scalar`] runs [`dot_scalar`], every other ISA the AVX2
/// code. An error if this CPU lacks the ISA.
pub fn dot_with_isa(isa: Isa, a: &[f32], b: &[f32]) -> Result<f32> {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    if simd_path(isa)? {
        #[cfg(target_arch = "x86_64")]
        if let Some(d) = avx2_vector::dot(a, b) {
            return Ok(d);
        }
    }
    Ok(dot_scalar(a, b))
}

/// [`axpy`] on an explicit ISA, as [`dot_with_isa`] picks it.
pub fn axpy_with_isa(isa: Isa, acc: &mut [f32], alpha: f32, x: &[f32]) -> Result<()> {
    let n = acc.len().min(x.len());
    let (acc, x) = (&mut acc[..n], &x[..n]);
    if simd_path(isa)? {
        #[cfg(target_arch = "x86_64")]
        if avx2_vector::axpy(acc, alpha, x).is_some() {
            return Ok(());
        }
    }
    axpy_scalar(acc, alpha, x);
    Ok(())
}

/// Whether `isa` (which this CPU must have) runs the SIMD code, which needs AVX2 and FMA.
fn simd_path(isa: Isa) -> Result<bool> {
    match isa.require()? {
        Isa::Scalar => Ok(false),
        _ => Isa::Avx2.require().map(|_| true),
    }
}
