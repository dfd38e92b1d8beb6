//! RMSNorm as in HF `LlamaRMSNorm`: `w * x / sqrt(mean(x²) + eps)`.

use burn::module::Param;
use burn::prelude::*;

/// Root-mean-square layer norm with a learned scale and no bias.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Scale, `[d_model]` (HF `weight`).
    pub weight: Param<Tensor<B, 1>>,
    /// Epsilon added to the mean square.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Builds the norm from its scale vector.
    pub fn new(weight: Tensor<B, 1>, eps: f64) -> Self {
        Self {
            weight: crate::linear::frozen(weight),
            eps,
        }
    }

    /// Normalises the last dimension.
    ///
    /// # Shapes
    /// - input: `[batch, seq, d_model]`
    /// - output: `[batch, seq, d_model]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let inv_rms = x
            .clone()
            .powi_scalar(2)
            .mean_dim(2)
            .add_scalar(self.eps)
            .sqrt()
            .recip();
        let d = self.weight.shape().dims::<1>()[0];
        (x * inv_rms) * self.weight.val().reshape([1, 1, d])
    }
}
