//! The frozen-linear op against plain matmuls: Flex (tb-kernels' GEMM) forward and input
//! gradient for f32 and bf16 weights in Burn's transposed-view layout, and under autodiff a
//! frozen weight gets no gradient while a trainable one still does.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tb_model::{frozen_linear, FrozenLinearBackend};

type Ad = Autodiff<Flex>;

fn random(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.cast(FloatDType::F32)
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap()
}

/// Largest error over the largest reference magnitude.
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
    got.iter()
        .zip(want)
        .fold(0.0f32, |m, (g, w)| m.max((g - w).abs()))
        / scale
}

/// `x·W` and `dy·Wᵀ` by triple loops, W given as HF `[out, in]` row-major.
fn naive(x: &[f32], w_hf: &[f32], rows: usize, d_in: usize, d_out: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; rows * d_out];
    for r in 0..rows {
        for o in 0..d_out {
            let mut acc = 0.0f64;
            for i in 0..d_in {
                acc += f64::from(x[r * d_in + i]) * f64::from(w_hf[o * d_in + i]);
            }
            y[r * d_out + o] = acc as f32;
        }
    }
    y
}

fn naive_bwd(dy: &[f32], w_hf: &[f32], rows: usize, d_in: usize, d_out: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; rows * d_in];
    for r in 0..rows {
        for i in 0..d_in {
            let mut acc = 0.0f64;
            for o in 0..d_out {
                acc += f64::from(dy[r * d_out + o]) * f64::from(w_hf[o * d_in + i]);
            }
            dx[r * d_in + i] = acc as f32;
        }
    }
    dx
}

/// Rounds to bf16 and back (what a bf16 weight holds).
fn bf16_round(v: &[f32]) -> Vec<f32> {
    v.iter()
        .map(|&x| half::bf16::from_f32(x).to_f32())
        .collect()
}

/// Burn-layout `[d_in, d_out]` weight as the loaders make it: HF `[out, in]` data, transposed.
fn weight<B: Backend>(w_hf: &[f32], d_in: usize, d_out: usize, dtype: DType) -> Tensor<B, 2> {
    let t = Tensor::<B, 2>::from_data(
        TensorData::new(w_hf.to_vec(), [d_out, d_in]),
        &Default::default(),
    );
    let t = if dtype == DType::F32 {
        t
    } else {
        t.cast(FloatDType::BF16)
    };
    t.transpose()
}

#[test]
fn flex_forward_and_backward_match_triple_loops() {
    let mut rng = StdRng::seed_from_u64(7);
    for (rows, d_in, d_out) in [(1, 1, 1), (7, 33, 5), (33, 257, 97), (577, 64, 31)] {
        let x = random(&mut rng, rows * d_in);
        let dy = random(&mut rng, rows * d_out);
        let w_hf = random(&mut rng, d_out * d_in);
        for dtype in [DType::F32, DType::BF16] {
            let w_used = if dtype == DType::F32 {
                w_hf.clone()
            } else {
                bf16_round(&w_hf)
            };
            let w = weight::<Flex>(&w_hf, d_in, d_out, dtype);
            let xt = Tensor::<Flex, 2>::from_data(
                TensorData::new(x.clone(), [rows, d_in]),
                &Default::default(),
            );
            let dyt = Tensor::<Flex, 2>::from_data(
                TensorData::new(dy.clone(), [rows, d_out]),
                &Default::default(),
            );
            let y = values(frozen_linear(xt, w.clone()));
            let dx = values(Tensor::<Flex, 2>::from_primitive(
                burn::tensor::TensorPrimitive::Float(Flex::frozen_linear_bwd(
                    dyt.into_primitive().tensor(),
                    w.into_primitive().tensor(),
                )),
            ));
            // A bf16 weight may multiply in bf16 (activations rounded too, f32 sums): allow
            // the activations' rounding, 2^-8 relative per product.
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
            let e = rel_err(&y, &naive(&x, &w_used, rows, d_in, d_out));
            assert!(e < tol, "{dtype:?} forward {rows}x{d_in}x{d_out}: {e}");
            let e = rel_err(&dx, &naive_bwd(&dy, &w_used, rows, d_in, d_out));
            assert!(e < tol, "{dtype:?} backward {rows}x{d_in}x{d_out}: {e}");
        }
    }
}

/// Which arithmetic a bf16 weight gets follows the ISA tb-kernels chose: bf16 products
/// (activations rounded to bf16, as PyTorch's bf16 autocast) on its `vdpbf16ps` kernel, else
/// f32 products of the widened weight. Each is checked against the triple loop of its own
/// operands, tightly enough that the other arithmetic fails.
#[test]
fn bf16_weight_arithmetic_follows_the_active_isa() {
    let (rows, d_in, d_out) = (37, 129, 45);
    let mut rng = StdRng::seed_from_u64(11);
    let x = random(&mut rng, rows * d_in);
    let w_hf = bf16_round(&random(&mut rng, d_out * d_in));
    let w = weight::<Flex>(&w_hf, d_in, d_out, DType::BF16);
    let xt = Tensor::<Flex, 2>::from_data(
        TensorData::new(x.clone(), [rows, d_in]),
        &Default::default(),
    );
    let y = values(frozen_linear(xt, w));
    let bf16_products = naive(&bf16_round(&x), &w_hf, rows, d_in, d_out);
    let f32_products = naive(&x, &w_hf, rows, d_in, d_out);
    let active = tb_kernels::Isa::active().expect("TB_GEMM_ISA names an ISA this CPU has");
    let (want, other) = if active == tb_kernels::Isa::Avx512Bf16 {
        (&bf16_products, &f32_products)
    } else {
        (&f32_products, &bf16_products)
    };
    let e = rel_err(&y, want);
    assert!(e < 1e-5, "{active}: {e} from its own arithmetic");
    assert!(
        rel_err(&y, other) > 1e-4,
        "{active}: the other arithmetic matched as closely"
    );
}

#[test]
fn autodiff_frozen_weight_gives_input_gradient_only() {
    let mut rng = StdRng::seed_from_u64(11);
    let (rows, d_in, d_out) = (9, 40, 23);
    let x = random(&mut rng, rows * d_in);
    let w_hf = random(&mut rng, d_out * d_in);
    let dev = Default::default();

    // Reference: Burn's matmul with a tracked input.
    let xr =
        Tensor::<Ad, 2>::from_data(TensorData::new(x.clone(), [rows, d_in]), &dev).require_grad();
    let wr = weight::<Ad>(&w_hf, d_in, d_out, DType::F32);
    let loss = xr.clone().matmul(wr).powi_scalar(2).sum();
    let g = loss.backward();
    let want = values(xr.grad(&g).unwrap());

    let xt =
        Tensor::<Ad, 2>::from_data(TensorData::new(x.clone(), [rows, d_in]), &dev).require_grad();
    let wt = weight::<Ad>(&w_hf, d_in, d_out, DType::F32);
    let loss = frozen_linear(xt.clone(), wt.clone()).powi_scalar(2).sum();
    let g = loss.backward();
    let got = values(xt.grad(&g).unwrap());
    let e = rel_err(&got, &want);
    assert!(e < 1e-5, "input gradient: {e}");
    assert!(
        wt.grad(&g).is_none(),
        "a frozen weight must not get a gradient"
    );

    // A trainable weight falls back to Burn's matmul and gets its gradient.
    let w_leaf = Tensor::<Ad, 2>::from_data(TensorData::new(w_hf.clone(), [d_out, d_in]), &dev)
        .transpose()
        .require_grad();
    let xt = Tensor::<Ad, 2>::from_data(TensorData::new(x, [rows, d_in]), &dev);
    let loss = frozen_linear(xt, w_leaf.clone()).sum();
    let g = loss.backward();
    let dw = values(w_leaf.grad(&g).expect("a trainable weight gets dW"));
    assert_eq!(dw.len(), d_in * d_out);
}

/// `c + x·W` and `c + dy·Wᵀ` (the GEMM accumulating into c) equal the plain op plus c, for f32
/// and bf16 weights, with c both unshared (overwritten in place) and still held elsewhere
/// (left as it was).
#[test]
fn accumulating_variants_add_the_product_to_c() {
    let mut rng = StdRng::seed_from_u64(19);
    let (rows, d_in, d_out) = (33, 65, 47);
    let device = Default::default();
    let mat = |v: Vec<f32>, r: usize, c: usize| {
        Tensor::<Flex, 2>::from_data(TensorData::new(v, [r, c]), &device)
    };
    let prim = |t: &Tensor<Flex, 2>| t.clone().into_primitive().tensor();
    let wrap = |p| Tensor::<Flex, 2>::from_primitive(burn::tensor::TensorPrimitive::Float(p));
    let x = mat(random(&mut rng, rows * d_in), rows, d_in);
    let dy = mat(random(&mut rng, rows * d_out), rows, d_out);
    let c_out = random(&mut rng, rows * d_out);
    let c_in = random(&mut rng, rows * d_in);
    let w_hf = random(&mut rng, d_out * d_in);
    for dtype in [DType::F32, DType::BF16] {
        let w = weight::<Flex>(&w_hf, d_in, d_out, dtype);
        let plus = |a: Vec<f32>, b: &[f32]| a.iter().zip(b).map(|(a, b)| a + b).collect::<Vec<_>>();
        let want_y = plus(
            values(wrap(Flex::frozen_linear_fwd(prim(&x), prim(&w)))),
            &c_out,
        );
        let want_dx = plus(
            values(wrap(Flex::frozen_linear_bwd(prim(&dy), prim(&w)))),
            &c_in,
        );
        let y = values(wrap(Flex::frozen_linear_fwd_add(
            prim(&x),
            prim(&w),
            mat(c_out.clone(), rows, d_out).into_primitive().tensor(),
        )));
        assert!(rel_err(&y, &want_y) < 1e-6, "{dtype:?} forward");
        let held = mat(c_in.clone(), rows, d_in);
        let dx = values(wrap(Flex::frozen_linear_bwd_add(
            prim(&dy),
            prim(&w),
            prim(&held),
        )));
        assert!(rel_err(&dx, &want_dx) < 1e-6, "{dtype:?} backward");
        assert_eq!(values(held), c_in, "a shared accumulator is not written");
    }
}
