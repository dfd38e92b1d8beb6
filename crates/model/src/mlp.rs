//! SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.

use burn::prelude::*;

use crate::linear::Linear;
use crate::silu::silu;
use crate::ModelBackend;

/// The MLP of a Llama/Mistral layer (HF `mlp`).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `gate_proj`, `[hidden, intermediate]`.
    pub gate_proj: Linear<B>,
    /// `up_proj`, `[hidden, intermediate]`.
    pub up_proj: Linear<B>,
    /// `down_proj`, `[intermediate, hidden]`.
    pub down_proj: Linear<B>,
}

impl<B: ModelBackend> Mlp<B> {
    /// # Shapes
    /// - input: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}
