//! Shared helpers: seeded random tensors and the relative-to-max-abs error check.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Inner backend.
pub type Inner = Flex;
/// Autodiff backend the tests differentiate on.
pub type Ad = Autodiff<Flex>;
/// Gradients of one backward pass.
pub type Grads = <Ad as AutodiffBackend>::Gradients;

/// Relative tolerance for f32 comparisons (error over the reference's max |value|).
pub const TOL: f32 = 1e-5;

/// A seeded generator.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Uniform values in [-1, 1).
pub fn values(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// A random constant tensor.
pub fn rand<const D: usize>(rng: &mut StdRng, shape: [usize; D]) -> Tensor<Ad, D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(values(rng, n), shape), &Default::default())
}

/// A random leaf that requires a gradient.
pub fn leaf<const D: usize>(rng: &mut StdRng, shape: [usize; D]) -> Tensor<Ad, D> {
    rand(rng, shape).require_grad()
}

/// An integer tensor from values.
pub fn ints<const D: usize>(values: Vec<i64>, shape: [usize; D]) -> Tensor<Ad, D, Int> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

/// `max |a − b| / max |b|`.
pub fn rel_err<const D: usize>(a: Tensor<Inner, D>, b: Tensor<Inner, D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let a = a.into_data().convert::<f32>().into_vec::<f32>().unwrap();
    let b = b.into_data().convert::<f32>().into_vec::<f32>().unwrap();
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    let err = a
        .iter()
        .zip(&b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    err / scale
}

/// Asserts `rel_err(got, want) <= TOL` and reports the measured error.
#[expect(clippy::print_stderr, reason = "tests report the measured error")]
pub fn assert_close<const D: usize>(what: &str, got: Tensor<Inner, D>, want: Tensor<Inner, D>) {
    let e = rel_err(got, want);
    eprintln!("rel_err {what:<40} {e:.3e}");
    assert!(e <= TOL, "{what}: relative error {e:.3e} > {TOL:.0e}");
}

/// Asserts that `t` got the same gradient in both backward passes.
pub fn assert_grad<const D: usize>(what: &str, t: &Tensor<Ad, D>, got: &Grads, want: &Grads) {
    let g = t
        .grad(got)
        .unwrap_or_else(|| panic!("{what}: fused pass gave no gradient"));
    let r = t
        .grad(want)
        .unwrap_or_else(|| panic!("{what}: reference gave no gradient"));
    assert_close(what, g, r);
}

/// `sum(out · r)`, so the upstream gradient is `r` (random, not all ones).
pub fn project<const D: usize>(out: Tensor<Ad, D>, r: Tensor<Ad, D>) -> Tensor<Ad, 1> {
    (out * r).sum()
}
