//! Every path of the vector primitives this CPU has (scalar, AVX2+FMA; the AVX-512 ISAs run the
//! AVX2 code) against the scalar reference and an f64 sum, on odd lengths.

mod common;

use common::{isas, values};
use tb_kernels::vector::{axpy, axpy_scalar, axpy_with_isa, dot, dot_scalar, dot_with_isa};

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
