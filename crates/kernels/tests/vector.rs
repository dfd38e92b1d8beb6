//! Every path of the vector primitives this CPU has (scalar, AVX2+FMA; the AVX-512 ISAs run the
//! AVX2 code) against the scalar reference and an f64 sum, on odd lengths.

mod common;

use common::{isas, values};
use tb_kernels::vector::{
    axpy, axpy_scalar, axpy_with_isa, dot, dot_scalar, dot_with_isa, exp_shifted_in_place,
    exp_shifted_in_place_scalar, exp_shifted_in_place_with_isa, exp_shifted_scaled,
    exp_shifted_scaled_scalar, exp_shifted_scaled_with_isa, logsumexp, max, max_scalar,
    max_with_isa, sigmoid_into, sum_exp_shifted, sum_exp_shifted_scalar, sum_exp_shifted_with_isa,
};

const LENS: [usize; 9] = [0, 1, 7, 8, 15, 16, 33, 257, 577];

/// The f64 dot product and the bound an f32 sum of these products stays within.
fn exact(a: &[f32], b: &[f32]) -> (f64, f64) {
    let sum = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let mag: f64 = a.iter().zip(b).map(|(x, y)| f64::from((x * y).abs())).sum();
    (sum, 1e-6 * (1.0 + mag))
}

#[test]
fn dot_matches_the_scalar_reference_on_every_path() {
    for isa in isas() {
        for n in LENS {
            let (a, b) = (values(n, 1), values(n, 2));
            let (want, bound) = exact(&a, &b);
            let reference = dot_scalar(&a, &b);
            let got = dot_with_isa(isa, &a, &b).unwrap();
            assert!((f64::from(reference) - want).abs() <= bound, "{isa} n={n}");
            assert!(
                (got - reference).abs() as f64 <= 2.0 * bound,
                "{isa} n={n}: {got} vs {reference}"
            );
            assert!((f64::from(got) - want).abs() <= bound, "{isa} n={n}");
        }
    }
}

#[test]
fn axpy_matches_the_scalar_reference_on_every_path() {
    for isa in isas() {
        for n in LENS {
            let x = values(n, 3);
            let mut got = values(n, 4);
            let mut want = got.clone();
            axpy_with_isa(isa, &mut got, 0.37, &x).unwrap();
            axpy_scalar(&mut want, 0.37, &x);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                // An FMA rounds once, the reference twice: at most one ulp of |acc| ≤ 1.4 apart.
                assert!((g - w).abs() <= 1e-6, "{isa} n={n} i={i}: {g} vs {w}");
            }
        }
    }
}

#[test]
fn the_default_path_works_over_the_common_length() {
    let (a, b) = (values(40, 5), values(33, 6));
    assert_eq!(dot(&a, &b), dot(&a[..33], &b));
    assert_eq!(dot_scalar(&a, &b), dot_scalar(&a[..33], &b));
    let mut acc = vec![1.0f32; 40];
    axpy(&mut acc, 2.0, &b);
    assert!(acc[33..].iter().all(|&v| v == 1.0));
    let mut reference = vec![1.0f32; 33];
    axpy_scalar(&mut reference, 2.0, &b);
    for (g, w) in acc.iter().zip(&reference) {
        assert!((g - w).abs() <= 1e-6);
    }
}

/// Arguments across exp's whole range: ordinary logits, the subnormal and overflow edges,
/// exact zeros and infinities.
fn exp_arguments() -> Vec<f32> {
    let mut x: Vec<f32> = values(4099, 7).iter().map(|v| v * 30.0).collect();
    x.extend([
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        88.0,
        88.72,
        88.73,
        89.0,
        -87.3,
        -87.4,
        -95.0,
        -103.9,
        -104.0,
        -200.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    x.extend((0..400).map(|i| -110.0 + i as f32 * 0.5));
    x
}

/// f32::exp's value and the distance the SIMD polynomial may be from it: 2 ulp of the result
/// in the normal range, one step of the smallest subnormal below it.
fn exp_close(got: f32, x: f32) -> bool {
    let want = x.exp();
    if want.is_infinite() || want == 0.0 {
        return got == want || (want == 0.0 && got.abs() <= f32::from_bits(1));
    }
    let ulp = f32::from_bits(want.to_bits() + 1) - want;
    (got - want).abs() <= 2.0 * ulp.max(f32::from_bits(1))
}

#[test]
fn exp_matches_f32_exp_on_every_path_across_its_range() {
    let x = exp_arguments();
    for isa in isas() {
        for scale in [1.0f32, 0.25] {
            let mut got = vec![f32::NAN; x.len()];
            exp_shifted_scaled_with_isa(isa, &mut got, &x, 0.0, 1.0).unwrap();
            for (&g, &v) in got.iter().zip(&x) {
                assert!(
                    exp_close(g, v),
                    "{isa}: exp({v}) = {g}, f32::exp {}",
                    v.exp()
                );
            }
            let mut scaled = vec![0.0f32; x.len()];
            exp_shifted_scaled_with_isa(isa, &mut scaled, &x, 2.0, scale).unwrap();
            let mut reference = vec![0.0f32; x.len()];
            exp_shifted_scaled_scalar(&mut reference, &x, 2.0, scale);
            for ((&g, &w), &v) in scaled.iter().zip(&reference).zip(&x) {
                let tol = 4.0 * w.abs() * f32::EPSILON + 2.0 * f32::from_bits(1);
                assert!(
                    (g - w).abs() <= tol || (g == w),
                    "{isa}: exp({v} - 2)·{scale} = {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn softmax_sums_match_the_scalar_reference_on_every_path() {
    for isa in isas() {
        for n in LENS {
            let x: Vec<f32> = values(n, 8).iter().map(|v| v * 12.0).collect();
            let m = max_with_isa(isa, &x).unwrap();
            assert_eq!(m, max_scalar(&x), "{isa} n={n}");
            let shift = if n == 0 { 0.0 } else { m };
            let got = sum_exp_shifted_with_isa(isa, &x, shift).unwrap();
            let want: f64 = x.iter().map(|&v| f64::from(v - shift).exp()).sum();
            let reference = sum_exp_shifted_scalar(&x, shift);
            let bound = 1e-6 * (1.0 + want);
            assert!(
                (f64::from(got) - want).abs() <= bound,
                "{isa} n={n}: {got} vs {want}"
            );
            assert!((f64::from(reference) - want).abs() <= bound, "{isa} n={n}");
        }
    }
}

#[test]
fn nan_and_infinities_propagate_as_f32_math_does() {
    for isa in isas() {
        for at in [0usize, 5, 16, 20] {
            let mut x = values(21, 9);
            x[at] = f32::NAN;
            assert!(max_with_isa(isa, &x).unwrap().is_nan(), "{isa} NaN at {at}");
            assert!(
                sum_exp_shifted_with_isa(isa, &x, 0.0).unwrap().is_nan(),
                "{isa} {at}"
            );
            let mut out = vec![0.0f32; 21];
            exp_shifted_scaled_with_isa(isa, &mut out, &x, 0.0, 1.0).unwrap();
            assert!(out[at].is_nan() && out.iter().filter(|v| v.is_nan()).count() == 1);
        }
        let masked = [f32::NEG_INFINITY, 0.5, f32::NEG_INFINITY, 1.5];
        let s = sum_exp_shifted_with_isa(isa, &masked, 1.5).unwrap();
        assert!((s - (1.0 + (-1.0f32).exp())).abs() < 1e-6, "{isa}: {s}");
        assert_eq!(max_with_isa(isa, &[]).unwrap(), f32::NEG_INFINITY);
    }
    assert_eq!(logsumexp(&[f32::NEG_INFINITY; 3]), f32::NEG_INFINITY);
    assert!(logsumexp(&[1.0, f32::NAN]).is_nan());
    let lse = logsumexp(&[1000.0, 1000.0]);
    assert!((lse - (1000.0 + 2f32.ln())).abs() < 1e-3, "{lse}");
}

#[test]
fn the_default_softmax_path_agrees_with_the_reference() {
    let x: Vec<f32> = values(1031, 10).iter().map(|v| v * 20.0).collect();
    assert_eq!(max(&x), max_scalar(&x));
    let m = max(&x);
    let (s, r) = (sum_exp_shifted(&x, m), sum_exp_shifted_scalar(&x, m));
    assert!((s - r).abs() <= 1e-5 * r, "{s} vs {r}");
    let mut out = vec![0.0f32; 1031];
    exp_shifted_scaled(&mut out, &x, m, 0.5);
    let mut reference = vec![0.0f32; 1031];
    exp_shifted_scaled_scalar(&mut reference, &x, m, 0.5);
    for (g, w) in out.iter().zip(&reference) {
        assert!(
            (g - w).abs() <= 4.0 * w * f32::EPSILON + f32::from_bits(2),
            "{g} vs {w}"
        );
    }
    let lse = logsumexp(&x);
    let want = f64::from(m) + x.iter().map(|&v| f64::from(v - m).exp()).sum::<f64>().ln();
    assert!(
        (f64::from(lse) - want).abs() < 1e-5 * want.abs().max(1.0),
        "{lse} vs {want}"
    );
}

#[test]
fn exp_in_place_matches_the_reference_and_returns_the_sum() {
    for isa in isas() {
        for n in LENS {
            let x: Vec<f32> = values(n, 11).iter().map(|v| v * 15.0).collect();
            let (mut got, mut want) = (x.clone(), x.clone());
            let s = exp_shifted_in_place_with_isa(isa, &mut got, 3.0).unwrap();
            let r = exp_shifted_in_place_scalar(&mut want, 3.0);
            for ((g, w), v) in got.iter().zip(&want).zip(&x) {
                assert!(
                    exp_close(*g, v - 3.0),
                    "{isa} n={n}: exp({v} - 3) = {g} vs {w}"
                );
            }
            let exact: f64 = x.iter().map(|&v| f64::from(v - 3.0).exp()).sum();
            assert!(
                (f64::from(s) - exact).abs() <= 1e-6 * (1.0 + exact),
                "{isa} n={n}"
            );
            assert!(
                (f64::from(r) - exact).abs() <= 1e-6 * (1.0 + exact),
                "{isa} n={n}"
            );
        }
    }
    let mut x = values(19, 12);
    let s = exp_shifted_in_place(&mut x, 0.0);
    assert!((s - x.iter().sum::<f32>()).abs() < 1e-5);
}

#[test]
fn sigmoid_matches_f64_on_odd_lengths_and_saturates() {
    for n in LENS {
        let x: Vec<f32> = values(n, 9).iter().map(|v| v * 12.0).collect();
        let mut got = vec![f32::NAN; n];
        sigmoid_into(&mut got, &x);
        for (i, (&g, &x)) in got.iter().zip(&x).enumerate() {
            let want = 1.0 / (1.0 + (-f64::from(x)).exp());
            assert!(
                (f64::from(g) - want).abs() <= 2e-7,
                "n={n} i={i}: σ({x}) = {g}, not {want}"
            );
        }
    }
    let mut out = [0.0f32; 4];
    sigmoid_into(&mut out, &[-200.0, 200.0, 0.0, f32::NEG_INFINITY]);
    assert_eq!(out, [0.0, 1.0, 0.5, 0.0]);
}

/// Small buffers (one `memset`) and big ones (zeroed by rayon's threads) alike: the asked length,
/// every value a positive zero.
#[test]
fn zeros_gives_the_length_asked_all_positive_zeros() {
    for n in [0, 1, 1000, (1 << 16) - 1, 1 << 16, 3 * (1 << 16) + 7] {
        let v = tb_kernels::vector::zeros(n);
        assert_eq!(v.len(), n);
        assert!(v.iter().all(|x| x.to_bits() == 0), "n = {n}");
    }
}
