//! One pre-norm decoder layer (HF `model.layers.N`).

use burn::prelude::*;

use crate::ModelBackend;

use crate::attention::{Attention, AttentionInputs};
use crate::cache::KvCache;
use crate::linear::Linear;
use crate::mlp::Mlp;
use crate::projection::Projection;
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

impl<B: Backend> DecoderLayer<B> {
    /// The module of projection `p`.
    pub fn projection(&self, p: Projection) -> &Linear<B> {
        let (a, m) = (&self.self_attn, &self.mlp);
        match p {
            Projection::Q => &a.q_proj,
            Projection::K => &a.k_proj,
            Projection::V => &a.v_proj,
            Projection::O => &a.o_proj,
            Projection::Gate => &m.gate_proj,
            Projection::Up => &m.up_proj,
            Projection::Down => &m.down_proj,
        }
    }

    /// The seven projections in [`Projection::ALL`] order.
    pub fn projections(&self) -> [(Projection, &Linear<B>); 7] {
        Projection::ALL.map(|p| (p, self.projection(p)))
    }

    /// The seven projections in [`Projection::ALL`] order, mutably (all at once, which one
    /// accessor per projection cannot give).
    pub fn projections_mut(&mut self) -> [(Projection, &mut Linear<B>); 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [
            (Projection::Q, &mut a.q_proj),
            (Projection::K, &mut a.k_proj),
            (Projection::V, &mut a.v_proj),
            (Projection::O, &mut a.o_proj),
            (Projection::Gate, &mut m.gate_proj),
            (Projection::Up, &mut m.up_proj),
            (Projection::Down, &mut m.down_proj),
        ]
    }
}

impl<B: ModelBackend> DecoderLayer<B> {
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
