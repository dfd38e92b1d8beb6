//! Plain causal-LM cross-entropy over shifted targets with an ignore index, on the full
//! `[tokens, vocab]` logits (the Unsloth-style trainer replaces it with a chunked fused loss
//! over the loss-bearing rows only).

use burn::prelude::*;
use tb_model::{cross_entropy, CrossEntropyBackend};

/// Summed cross-entropy over the tokens whose target is not [`tb_data::IGNORE`] (tb-model's
/// one-op cross-entropy, as `F.cross_entropy(..., reduction="sum")`).
///
/// # Shapes
/// - logits: `[batch, seq, vocab]`
/// - targets: `batch * seq` values, row-major
/// - output: `[1]`
pub fn cross_entropy_sum<B: CrossEntropyBackend>(
    logits: Tensor<B, 3>,
    targets: &[i64],
) -> Tensor<B, 1> {
    let [b, s, v] = logits.dims();
    let n = b * s;
    debug_assert_eq!(targets.len(), n);
    let targets =
        Tensor::<B, 1, Int>::from_data(TensorData::new(targets.to_vec(), [n]), &logits.device());
    cross_entropy(logits.reshape([n, v]), targets).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tb_data::IGNORE;
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
