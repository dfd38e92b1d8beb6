//! The cross-entropy op against its definition: Burn's `log_softmax` + `gather` chain under
//! autodiff (loss and logits gradient) and an f64 computation, on Flex (the SIMD row kernels)
//! and under `Autodiff<Flex>`, with ignored and out-of-range targets.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use tb_model::cross_entropy;

type A = Autodiff<Flex>;

/// Seeded logits spread over ±`spread`, `[rows, vocab]` row-major.
fn logits(rows: usize, vocab: usize, spread: f32) -> Vec<f32> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..rows * vocab)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * spread
        })
        .collect()
}

/// The f64 NLL of each row (0 where the target is outside the vocabulary).
fn nll_f64(x: &[f32], vocab: usize, targets: &[i64]) -> Vec<f64> {
    x.chunks(vocab)
        .zip(targets)
        .map(|(row, &t)| {
            let m = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let lse = m + row
                .iter()
                .map(|&v| (f64::from(v) - m).exp())
                .sum::<f64>()
                .ln();
            usize::try_from(t)
                .ok()
                .filter(|&c| c < vocab)
                .map_or(0.0, |c| lse - f64::from(row[c]))
        })
        .collect()
}

/// Loss and logits gradient of `Σ_r w_r·nll_r` through Burn's log_softmax + gather (the
/// definition the op replaces), ignored rows masked.
fn reference(x: &[f32], rows: usize, vocab: usize, targets: &[i64], w: &[f32]) -> (f32, Vec<f32>) {
    let device = Default::default();
    let logits = Tensor::<A, 2>::from_data(TensorData::new(x.to_vec(), [rows, vocab]), &device)
        .require_grad();
    let (idx, mask): (Vec<i64>, Vec<f32>) = targets
        .iter()
        .zip(w)
        .map(|(&t, &w)| {
            if (0..vocab as i64).contains(&t) {
                (t, w)
            } else {
                (0, 0.0)
            }
        })
        .unzip();
    let idx = Tensor::<A, 2, Int>::from_data(TensorData::new(idx, [rows, 1]), &device);
    let mask = Tensor::<A, 1>::from_data(TensorData::new(mask, [rows]), &device);
    let picked = log_softmax(logits.clone(), 1)
        .gather(1, idx)
        .reshape([rows]);
    let loss = (picked * mask).sum().neg();
    let value = loss.clone().into_scalar();
    let grads = loss.backward();
    let g = logits.grad(&grads).expect("logits gradient");
    (
        value,
        g.into_data().into_vec::<f32>().expect("f32 gradient"),
    )
}

/// Loss and logits gradient of `Σ_r w_r·nll_r` through the op under autodiff.
fn through_op(x: &[f32], rows: usize, vocab: usize, targets: &[i64], w: &[f32]) -> (f32, Vec<f32>) {
    let device = Default::default();
    let logits = Tensor::<A, 2>::from_data(TensorData::new(x.to_vec(), [rows, vocab]), &device)
        .require_grad();
    let t = Tensor::<A, 1, Int>::from_data(TensorData::new(targets.to_vec(), [rows]), &device);
    let w = Tensor::<A, 1>::from_data(TensorData::new(w.to_vec(), [rows]), &device);
    let loss = (cross_entropy(logits.clone(), t) * w).sum();
    let value = loss.clone().into_scalar();
    let grads = loss.backward();
    let g = logits.grad(&grads).expect("logits gradient");
    (
        value,
        g.into_data().into_vec::<f32>().expect("f32 gradient"),
    )
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn loss_and_gradient_match_log_softmax_and_gather() {
    // vocab 257 and 9: SIMD bodies with scalar tails, and a row shorter than one vector.
    for (rows, vocab, spread) in [(7, 257, 8.0f32), (5, 9, 3.0), (3, 1031, 40.0)] {
        let x = logits(rows, vocab, spread);
        let targets: Vec<i64> = (0..rows as i64)
            .map(|r| match r % 4 {
                1 => -100,
                3 => vocab as i64 + 2,
                _ => (r * 37) % vocab as i64,
            })
            .collect();
        let w: Vec<f32> = (0..rows).map(|r| 0.5 + r as f32 * 0.25).collect();
        let (want, want_grad) = reference(&x, rows, vocab, &targets, &w);
        let (got, got_grad) = through_op(&x, rows, vocab, &targets, &w);
        assert!(
            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{rows}x{vocab}: {got} vs {want}"
        );
        let scale = want_grad.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&got_grad, &want_grad);
        assert!(
            diff <= 1e-5 * scale.max(1e-3),
            "{rows}x{vocab}: gradient off by {diff}"
        );
        for (r, &t) in targets.iter().enumerate() {
            if !(0..vocab as i64).contains(&t) {
                assert!(
                    got_grad[r * vocab..][..vocab].iter().all(|&g| g == 0.0),
                    "row {r}"
                );
            }
        }
        let exact = nll_f64(&x, vocab, &targets);
        let sum: f64 = exact.iter().zip(&w).map(|(n, &w)| n * f64::from(w)).sum();
        assert!(
            (f64::from(got) - sum).abs() <= 1e-5 * sum.max(1.0),
            "{got} vs f64 {sum}"
        );
    }
}

#[test]
fn per_row_values_match_f64_without_autodiff() {
    let (rows, vocab) = (6, 300);
    let x = logits(rows, vocab, 20.0);
    let targets = [0i64, 299, -100, 150, 300, 7];
    let device = Default::default();
    let l = Tensor::<Flex, 2>::from_data(TensorData::new(x.clone(), [rows, vocab]), &device);
    let t = Tensor::<Flex, 1, Int>::from_data(TensorData::new(targets.to_vec(), [rows]), &device);
    let got = cross_entropy(l, t).into_data().into_vec::<f32>().unwrap();
    for (r, (g, w)) in got.iter().zip(nll_f64(&x, vocab, &targets)).enumerate() {
        assert!(
            (f64::from(*g) - w).abs() <= 1e-5 * w.max(1.0),
            "row {r}: {g} vs {w}"
        );
    }
    assert_eq!(got[2], 0.0);
    assert_eq!(got[4], 0.0);
}

#[test]
fn masked_logits_and_nan_behave_as_log_softmax_does() {
    let (rows, vocab) = (2, 19);
    let mut x = logits(rows, vocab, 2.0);
    x[3] = f32::NEG_INFINITY;
    x[vocab + 5] = f32::NAN;
    let targets = [4i64, 1];
    let device = Default::default();
    let l = Tensor::<Flex, 2>::from_data(TensorData::new(x.clone(), [rows, vocab]), &device);
    let t = Tensor::<Flex, 1, Int>::from_data(TensorData::new(targets.to_vec(), [rows]), &device);
    let got = cross_entropy(l, t).into_data().into_vec::<f32>().unwrap();
    let want = nll_f64(&x, vocab, &targets);
    assert!(
        (f64::from(got[0]) - want[0]).abs() < 1e-5,
        "{} vs {}",
        got[0],
        want[0]
    );
    assert!(
        got[1].is_nan(),
        "a NaN logit must give a NaN loss, got {}",
        got[1]
    );
}
