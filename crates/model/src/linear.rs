//! Bias-free linear projection stored in Burn's `[d_input, d_output]` layout.
//!
//! HF and GGUF store `[out, in]`; loaders transpose once when building the module.

use burn::module::Param;
use burn::prelude::*;

/// `y = x · W` without bias (all Llama/Mistral projections are bias-free).
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// Weight, `[d_input, d_output]` (the transpose of HF's `weight`).
    pub weight: Param<Tensor<B, 2>>,
}

impl<B: Backend> Linear<B> {
    /// Wraps a weight given in Burn layout `[d_input, d_output]`.
    pub fn from_weight(weight: Tensor<B, 2>) -> Self {
        Self {
            weight: Param::from_tensor(weight),
        }
    }

    /// Input width.
    pub fn d_input(&self) -> usize {
        self.weight.shape().dims::<2>()[0]
    }

    /// Output width.
    pub fn d_output(&self) -> usize {
        self.weight.shape().dims::<2>()[1]
    }

    /// Applies the projection to the last dimension.
    ///
    /// # Shapes
    /// - input: `[batch, seq, d_input]`
    /// - output: `[batch, seq, d_output]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, d] = x.dims();
        let y = x.reshape([b * s, d]).matmul(self.weight.val());
        y.reshape([b, s, self.d_output()])
    }
}
