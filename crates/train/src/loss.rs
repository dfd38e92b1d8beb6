//! Plain causal-LM cross-entropy over shifted targets with an ignore index, built from Burn
//! tensor ops (it materialises log-probabilities over the vocabulary; the Unsloth-style trainer
//! replaces it with a chunked fused loss).

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use tb_data::IGNORE;

/// Summed cross-entropy over the tokens whose target is not [`IGNORE`].
///
/// # Shapes
/// - logits: `[batch, seq, vocab]`
/// - targets: `batch * seq` values, row-major
/// - output: `[1]`
pub fn cross_entropy_sum<B: Backend>(logits: Tensor<B, 3>, targets: &[i64]) -> Tensor<B, 1> {
    let [b, s, v] = logits.dims();
    let device = logits.device();
    let n = b * s;
    debug_assert_eq!(targets.len(), n);
    let index: Vec<i64> = targets
        .iter()
        .map(|&t| if t == IGNORE { 0 } else { t })
        .collect();
    let weight: Vec<f32> = targets
        .iter()
        .map(|&t| if t == IGNORE { 0.0 } else { 1.0 })
        .collect();
    let index =
        Tensor::<B, 1, Int>::from_data(TensorData::new(index, [n]), &device).reshape([n, 1]);
    let weight = Tensor::<B, 1>::from_data(TensorData::new(weight, [n]), &device);
    let logp = log_softmax(logits.reshape([n, v]), 1);
    let picked = logp.gather(1, index).reshape([n]);
    (picked * weight).sum().neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    type B = burn::backend::Flex;

    #[test]
    fn matches_hand_computed_values_and_ignores_masked_tokens() {
        let device = Default::default();
        let logits = Tensor::<B, 3>::from_data(
            TensorData::new(vec![0.0f32, 1.0, 2.0, 3.0, 1.0, 0.0], [1, 2, 3]),
            &device,
        );
        let lse0 = (1.0f64 + 1f64.exp() + 2f64.exp()).ln();
        let got: f32 = cross_entropy_sum(logits.clone(), &[2, IGNORE]).into_scalar();
        assert!((f64::from(got) - (lse0 - 2.0)).abs() < 1e-5);
        let lse1 = (3f64.exp() + 1f64.exp() + 1.0).ln();
        let got: f32 = cross_entropy_sum(logits, &[2, 0]).into_scalar();
        assert!((f64::from(got) - (lse0 - 2.0 + lse1 - 3.0)).abs() < 1e-5);
    }
}
