//! Every ISA path this CPU has, against `gemm_naive` and against the scalar path, on odd shapes
//! (m ∈ {1, 7, 33, 577}, n ∈ {1, 5, 31, 97}, k ∈ {1, 3, 257, 1000}), three operand layouts,
//! accumulate on/off, f32 and bf16 B, both precisions, per-call packing and a reused PackedB.

mod common;

use common::{isas, rel_err, rounded, to_bf16, values, TOL};
use half::bf16;
use tb_kernels::{
    gemm_naive, gemm_packed, gemm_with_isa, Element, Isa, MatMut, MatRef, PackedB, Precision,
};

const MS: [usize; 4] = [1, 7, 33, 577];
const NS: [usize; 4] = [1, 5, 31, 97];
const KS: [usize; 4] = [1, 3, 257, 1000];
/// Written into C's row padding; must survive every call.
const SENTINEL: f32 = 777.0;

/// How A and B are laid out in memory (the logical values are the same).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// A row-major; B = Wᵀ of a row-major `[n, k]` W (`y = x·Wᵀ`).
    WeightT,
    /// A column-major (a transposed view); B row-major `[k, n]` (`dx = dy·W`).
    Plain,
    /// Both with column stride 2 and padded rows (the general strided path).
    Strided,
}

const LAYOUTS: [Layout; 3] = [Layout::WeightT, Layout::Plain, Layout::Strided];

/// One layout's storage: data and `(row_stride, col_stride)` of A (`m × k`) and B (`k × n`).
struct Stored {
    a: Vec<f32>,
    a_strides: (usize, usize),
    b: Vec<f32>,
    b_strides: (usize, usize),
}

/// Lays out A (`m × k` row-major values) and W (`n × k` row-major: `B(p, j) = w[j·k + p]`).
fn store(layout: Layout, m: usize, n: usize, k: usize, a: &[f32], w: &[f32]) -> Stored {
    match layout {
        Layout::WeightT => Stored {
            a: a.to_vec(),
            a_strides: (k, 1),
            b: w.to_vec(),
            b_strides: (1, k),
        },
        Layout::Plain => {
            let mut at = vec![0.0; m * k];
            let mut b = vec![0.0; k * n];
            for i in 0..m {
                for p in 0..k {
                    at[p * m + i] = a[i * k + p];
                }
            }
            for j in 0..n {
                for p in 0..k {
                    b[p * n + j] = w[j * k + p];
                }
            }
            Stored {
                a: at,
                a_strides: (1, m),
                b,
                b_strides: (n, 1),
            }
        }
        Layout::Strided => {
            let (ars, brs) = (2 * k + 1, 2 * n + 1);
            let mut sa = vec![f32::NAN; m * ars];
            let mut sb = vec![f32::NAN; k * brs];
            for i in 0..m {
                for p in 0..k {
                    sa[i * ars + 2 * p] = a[i * k + p];
                }
            }
            for j in 0..n {
                for p in 0..k {
                    sb[p * brs + 2 * j] = w[j * k + p];
                }
            }
            Stored {
                a: sa,
                a_strides: (ars, 2),
                b: sb,
                b_strides: (brs, 2),
            }
        }
    }
}

/// A C buffer with row stride `n + 3`, the padding set to [`SENTINEL`].
fn padded(init: &[f32], m: usize, n: usize) -> (Vec<f32>, usize) {
    let rs = n + 3;
    let mut c = vec![SENTINEL; m * rs];
    for i in 0..m {
        c[i * rs..i * rs + n].copy_from_slice(&init[i * n..i * n + n]);
    }
    (c, rs)
}

/// The `m × n` values of a padded C, after checking its padding is untouched.
fn unpad(c: &[f32], m: usize, n: usize, rs: usize, what: &str) -> Vec<f32> {
    for i in 0..m {
        assert!(
            c[i * rs + n..(i + 1) * rs].iter().all(|&x| x == SENTINEL),
            "{what}: row padding of C was written"
        );
    }
    (0..m)
        .flat_map(|i| c[i * rs..i * rs + n].to_vec())
        .collect()
}

/// One multiplication through the blocked code: per-call packing or a PackedB.
#[allow(clippy::too_many_arguments)]
fn blocked<T: Element>(
    isa: Isa,
    a: MatRef<'_, f32>,
    b: MatRef<'_, T>,
    init: &[f32],
    alpha: f32,
    accumulate: bool,
    precision: Precision,
    packed: bool,
    what: &str,
) -> Vec<f32> {
    let (m, n) = (a.rows(), b.cols());
    let (mut c, rs) = padded(init, m, n);
    let cv = MatMut::new(&mut c, m, n, rs).unwrap();
    if packed {
        let pb = PackedB::with_isa(isa, b, precision).unwrap();
        assert_eq!(
            (pb.k(), pb.n(), pb.isa(), pb.precision()),
            (b.rows(), n, isa, precision)
        );
        gemm_packed(a, &pb, cv, alpha, accumulate).unwrap();
    } else {
        gemm_with_isa(isa, a, b, cv, alpha, accumulate, precision).unwrap();
    }
    unpad(&c, m, n, rs, what)
}

/// Every shape × layout × accumulate × ISA × packing mode for one B type and precision.
fn sweep<T: Element>(precision: Precision, convert: fn(&[f32]) -> Vec<T>, b_is_bf16: bool) {
    let isas = isas();
    let mut checked = 0usize;
    for (si, (&m, (&n, &k))) in MS
        .iter()
        .flat_map(|m| {
            NS.iter()
                .flat_map(move |n| KS.iter().map(move |k| (m, (n, k))))
        })
        .enumerate()
    {
        let seed = 1000 * si as u64;
        let (a, w, init) = (
            values(m * k, seed),
            values(n * k, seed + 1),
            values(m * n, seed + 2),
        );
        // The values the product should see: bf16-rounded where the precision or B's type
        // rounds them.
        let a_ref = if precision == Precision::Bf16 {
            rounded(&a)
        } else {
            a.clone()
        };
        let rounds_b = precision == Precision::Bf16 || b_is_bf16;
        let w_ref = if rounds_b { rounded(&w) } else { w.clone() };
        for accumulate in [false, true] {
            let alpha = if accumulate { 0.5 } else { -1.25 };
            let mut want = init.clone();
            gemm_naive(
                MatRef::row_major(&a_ref, m, k).unwrap(),
                MatRef::row_major(&w_ref, n, k).unwrap().t(),
                MatMut::row_major(&mut want, m, n).unwrap(),
                alpha,
                accumulate,
            )
            .unwrap();
            for layout in LAYOUTS {
                let st = store(layout, m, n, k, &a, &w);
                let bdata = convert(&st.b);
                let av = MatRef::new(&st.a, m, k, st.a_strides.0, st.a_strides.1).unwrap();
                let bv = MatRef::new(&bdata, k, n, st.b_strides.0, st.b_strides.1).unwrap();
                for packed in [false, true] {
                    let mut scalar: Option<Vec<f32>> = None;
                    for &isa in &isas {
                        let what = format!(
                            "{isa} {precision:?} bf16B={b_is_bf16} m={m} n={n} k={k} \
                             {layout:?} acc={accumulate} packed={packed}"
                        );
                        let got = blocked(
                            isa, av, bv, &init, alpha, accumulate, precision, packed, &what,
                        );
                        let e = rel_err(&got, &want);
                        assert!(e <= TOL, "{what}: rel. error {e:e} vs gemm_naive");
                        match &scalar {
                            None => scalar = Some(got),
                            Some(s) => {
                                let e = rel_err(&got, s);
                                assert!(e <= TOL, "{what}: rel. error {e:e} vs the scalar path");
                            }
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 64 * 2 * LAYOUTS.len() * 2 * isas.len());
}

fn same(v: &[f32]) -> Vec<f32> {
    v.to_vec()
}

#[test]
fn f32_b_f32_precision_all_paths() {
    sweep::<f32>(Precision::F32, same, false);
}

#[test]
fn bf16_b_f32_precision_all_paths() {
    sweep::<bf16>(Precision::F32, to_bf16, true);
}

#[test]
fn f32_b_bf16_precision_all_paths() {
    sweep::<f32>(Precision::Bf16, same, false);
}

#[test]
fn bf16_b_bf16_precision_all_paths() {
    sweep::<bf16>(Precision::Bf16, to_bf16, true);
}

/// Shapes big enough for several k blocks, several MC/NC blocks and both thread splits (over n
/// for the wide one, over m for the tall one), both precisions.
#[test]
fn multi_block_and_threaded_shapes() {
    let isas = isas();
    for &(m, n, k) in &[(33, 2100, 700), (700, 40, 600), (300, 300, 1030)] {
        let (a, w) = (values(m * k, 7), values(n * k, 8));
        let init = values(m * n, 9);
        for precision in [Precision::F32, Precision::Bf16] {
            let (ar, wr) = match precision {
                Precision::F32 => (a.clone(), w.clone()),
                Precision::Bf16 => (rounded(&a), rounded(&w)),
            };
            let mut want = init.clone();
            gemm_naive(
                MatRef::row_major(&ar, m, k).unwrap(),
                MatRef::row_major(&wr, n, k).unwrap().t(),
                MatMut::row_major(&mut want, m, n).unwrap(),
                1.0,
                true,
            )
            .unwrap();
            let av = MatRef::row_major(&a, m, k).unwrap();
            let bv = MatRef::row_major(&w, n, k).unwrap().t();
            for &isa in &isas {
                for packed in [false, true] {
                    let what = format!("{isa} {precision:?} {m}×{k}×{n} packed={packed}");
                    let got = blocked(isa, av, bv, &init, 1.0, true, precision, packed, &what);
                    let e = rel_err(&got, &want);
                    assert!(e <= TOL, "{what}: rel. error {e:e}");
                }
            }
        }
    }
}

/// One PackedB, several A's of different heights: each product matches the naive one.
#[test]
fn packed_b_is_reused_across_calls() {
    let (n, k) = (97, 257);
    let w = values(n * k, 11);
    let wb = to_bf16(&w);
    for isa in isas() {
        for precision in [Precision::F32, Precision::Bf16] {
            let pb = PackedB::with_isa(isa, MatRef::row_major(&wb, n, k).unwrap().t(), precision)
                .unwrap();
            assert!(pb.packed_bytes() >= n * k * 2);
            for (round, m) in [1usize, 577, 33, 577].into_iter().enumerate() {
                let a = values(m * k, 20 + round as u64);
                let ar = if precision == Precision::Bf16 {
                    rounded(&a)
                } else {
                    a.clone()
                };
                let mut want = vec![0.0; m * n];
                let wr = rounded(&w);
                gemm_naive(
                    MatRef::row_major(&ar, m, k).unwrap(),
                    MatRef::row_major(&wr, n, k).unwrap().t(),
                    MatMut::row_major(&mut want, m, n).unwrap(),
                    1.0,
                    false,
                )
                .unwrap();
                let mut got = vec![f32::NAN; m * n];
                gemm_packed(
                    MatRef::row_major(&a, m, k).unwrap(),
                    &pb,
                    MatMut::row_major(&mut got, m, n).unwrap(),
                    1.0,
                    false,
                )
                .unwrap();
                let e = rel_err(&got, &want);
                assert!(
                    e <= TOL,
                    "{isa} {precision:?} call {round} m={m}: rel. error {e:e}"
                );
            }
        }
    }
}

/// The checks can fail: one perturbed element, or the bf16 rounding left out, is caught.
#[test]
fn comparisons_detect_errors() {
    let (m, n, k) = (33, 31, 257);
    let (a, w) = (values(m * k, 3), values(n * k, 4));
    let av = MatRef::row_major(&a, m, k).unwrap();
    let bv = MatRef::row_major(&w, n, k).unwrap().t();
    let mut exact = vec![0.0; m * n];
    gemm_naive(
        av,
        bv,
        MatMut::row_major(&mut exact, m, n).unwrap(),
        1.0,
        false,
    )
    .unwrap();
    let mut perturbed = exact.clone();
    perturbed[m * n / 2] += 1e-3;
    assert!(rel_err(&perturbed, &exact) > TOL);
    for isa in isas() {
        let mut got = vec![0.0; m * n];
        let cv = MatMut::row_major(&mut got, m, n).unwrap();
        gemm_with_isa(isa, av, bv, cv, 1.0, false, Precision::Bf16).unwrap();
        let e = rel_err(&got, &exact);
        assert!(
            e > 1e-4,
            "{isa}: bf16 precision should differ from f32 products (got {e:e})"
        );
    }
}

/// k = 0 gives alpha·0 (+ C); empty m or n writes nothing.
#[test]
fn degenerate_sizes() {
    for isa in isas() {
        for precision in [Precision::F32, Precision::Bf16] {
            let empty: [f32; 0] = [];
            let mut c = vec![5.0; 6];
            let run = |c: &mut [f32], acc: bool| {
                gemm_with_isa(
                    isa,
                    MatRef::row_major(&empty, 2, 0).unwrap(),
                    MatRef::row_major(&empty, 0, 3).unwrap(),
                    MatMut::row_major(c, 2, 3).unwrap(),
                    1.0,
                    acc,
                    precision,
                )
                .unwrap()
            };
            run(&mut c, true);
            assert_eq!(c, vec![5.0; 6]);
            run(&mut c, false);
            assert_eq!(c, vec![0.0; 6]);
            let a = [1.0f32; 4];
            let mut none: [f32; 0] = [];
            gemm_with_isa(
                isa,
                MatRef::row_major(&a, 0, 4).unwrap(),
                MatRef::row_major(&a, 4, 1).unwrap(),
                MatMut::row_major(&mut none, 0, 1).unwrap(),
                1.0,
                false,
                precision,
            )
            .unwrap();
        }
    }
}
