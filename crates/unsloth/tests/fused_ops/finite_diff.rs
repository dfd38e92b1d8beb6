//! The hand-written backward passes against central finite differences of the fused forward,
//! independent of Burn's autodiff (a wrong backward that matched a wrong reference would fail).

use burn::prelude::*;
use rand::Rng;
use tb_unsloth::{ops, BaseWeight, LoraWeights, Precision};

use crate::common::*;

const STEP: f32 = 1e-2;
const FD_TOL: f32 = 5e-3;

/// Checks `d f / d x` at a few coordinates; `f` maps the input to a scalar loss.
fn fd_check<const D: usize>(
    what: &str,
    shape: [usize; D],
    seed: u64,
    f: impl Fn(Tensor<Ad, D>) -> Tensor<Ad, 1>,
) {
    let mut r = rng(seed);
    let n: usize = shape.iter().product();
    let x0 = values(&mut r, n);
    let make =
        |v: Vec<f32>| Tensor::<Ad, D>::from_data(TensorData::new(v, shape), &Default::default());
    let x = make(x0.clone()).require_grad();
    let grads = f(x.clone()).backward();
    let analytic = x
        .grad(&grads)
        .unwrap()
        .into_data()
        .into_vec::<f32>()
        .unwrap();
    let scale = analytic.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for _ in 0..12 {
        let c = r.random_range(0..n);
        let mut plus = x0.clone();
        plus[c] += STEP;
        let mut minus = x0.clone();
        minus[c] -= STEP;
        let fd = (f(make(plus)).into_scalar() - f(make(minus)).into_scalar()) / (2.0 * STEP);
        let err = (fd - analytic[c]).abs() / scale;
        assert!(
            err < FD_TOL,
            "{what}[{c}]: finite difference {fd} vs backward {} (rel {err:.2e})",
            analytic[c]
        );
    }
}

#[test]
fn attention_backward_matches_finite_differences() {
    let (b, s, h, kvh, d) = (1, 6, 4, 2, 5);
    let mut r = rng(90);
    let k = rand(&mut r, [b, s, kvh, d]);
    let v = rand(&mut r, [b, s, kvh, d]);
    let up = rand(&mut r, [b, s, h, d]);
    let seg = ints(vec![0, 0, 1, 1, 1, 1], [b, s]);
    fd_check("attention dq", [b, s, h, d], 91, |q| {
        let out =
            ops::attention(q, k.clone(), v.clone(), seg.clone(), None, Precision::F32).unwrap();
        project(out, up.clone())
    });
    let q = rand(&mut r, [b, s, h, d]);
    fd_check("attention dk", [b, s, kvh, d], 92, |k| {
        let out =
            ops::attention(q.clone(), k, v.clone(), seg.clone(), None, Precision::F32).unwrap();
        project(out, up.clone())
    });
}

#[test]
fn lora_mlp_backward_matches_finite_differences() {
    let (t, hidden, inter, rank) = (5, 7, 11, 3);
    let mut r = rng(93);
    let mut lora = |d_in, d_out| LoraWeights {
        w: BaseWeight::Dense(rand(&mut r, [d_in, d_out])),
        a: rand(&mut r, [d_in, rank]),
        b: rand(&mut r, [rank, d_out]),
        scale: 0.5,
    };
    let w = [
        lora(hidden, inter),
        lora(hidden, inter),
        lora(inter, hidden),
    ];
    let up = rand(&mut r, [t, hidden]);
    fd_check("lora_mlp dx", [t, hidden], 94, |x| {
        project(ops::lora_mlp(x, w.clone()).unwrap(), up.clone())
    });
    let x = rand(&mut r, [t, hidden]);
    fd_check("lora_mlp dA_gate", [hidden, rank], 95, |a| {
        let mut w = w.clone();
        w[0].a = a;
        project(ops::lora_mlp(x.clone(), w).unwrap(), up.clone())
    });
}

#[test]
fn rms_norm_backward_matches_finite_differences() {
    let mut r = rng(96);
    let w = rand(&mut r, [9]);
    let up = rand(&mut r, [4, 9]);
    fd_check("rms_norm dx", [4, 9], 97, |x| {
        project(ops::rms_norm(x, w.clone(), 1e-6).unwrap(), up.clone())
    });
}
