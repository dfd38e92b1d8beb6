//! One pre-norm decoder layer (HF `model.layers.N`).

use burn::prelude::*;

use crate::frozen_linear::FrozenLinearBackend;

use crate::attention::{Attention, AttentionInputs};
use crate::cache::KvCache;
use crate::mlp::Mlp;
use crate::rms_norm::RmsNorm;

/// `x + attn(norm(x))`, then `x + mlp(norm(x))`.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// `input_layernorm`.
    pub input_layernorm: RmsNorm<B>,
    /// `self_attn`.
    pub self_attn: Attention<B>,
    /// `post_attention_layernorm`.
    pub post_attention_layernorm: RmsNorm<B>,
    /// `mlp`.
    pub mlp: Mlp<B>,
}

impl<B: FrozenLinearBackend> DecoderLayer<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        inputs: &AttentionInputs<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), inputs, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}
