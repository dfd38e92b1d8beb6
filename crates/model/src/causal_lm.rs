//! The full decoder with its LM head (HF `LlamaForCausalLM` / `MistralForCausalLM`).

use burn::module::Param;
use burn::prelude::*;

use crate::attention::{AttentionInputs, RopeTables};
use crate::cache::KvCache;
use crate::frozen_linear::frozen_linear;
use crate::layer::DecoderLayer;
use crate::linear::Linear;
use crate::mask::MaskBuilder;
use crate::projection::Projection;
use crate::rms_norm::RmsNorm;
use crate::rope::RotaryEmbedding;
use crate::ModelBackend;

/// Token embeddings (HF `model.embed_tokens`).
#[derive(Module, Debug)]
pub struct Embedding<B: Backend> {
    /// `[vocab, hidden]`, HF layout.
    pub weight: Param<Tensor<B, 2>>,
}

impl<B: Backend> Embedding<B> {
    /// The rows of `ids`, as f32 (the table may be held in bf16).
    ///
    /// # Shapes
    /// - ids: `[batch, seq]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, s] = ids.dims();
        let hidden = self.weight.shape().dims::<2>()[1];
        let rows = self.weight.val().select(0, ids.reshape([b * s]));
        // Activations are f32 whatever dtype the frozen table is held in.
        let rows = if rows.dtype() == burn::tensor::DType::F32 {
            rows
        } else {
            rows.cast(burn::tensor::FloatDType::F32)
        };
        rows.reshape([b, s, hidden])
    }
}

/// A Llama/Mistral causal language model.
#[derive(Module, Debug)]
pub struct CausalLm<B: Backend> {
    /// `model.embed_tokens`.
    pub embed_tokens: Embedding<B>,
    /// `model.layers`.
    pub layers: Vec<DecoderLayer<B>>,
    /// `model.norm`.
    pub norm: RmsNorm<B>,
    /// `lm_head` in Burn layout `[hidden, vocab]`; `None` when tied to the embeddings.
    pub lm_head: Option<Linear<B>>,
    /// RoPE tables.
    pub rope: RotaryEmbedding<B>,
    /// Sliding attention window, if any.
    pub sliding_window: Option<usize>,
}

/// What one forward pass needs besides the token ids.
pub struct ForwardOptions<B: Backend> {
    /// Position of each token, `[batch, seq]` (restarting per example when packed).
    pub positions: Tensor<B, 2, Int>,
    /// `true` where attention is not allowed, `[batch, 1, seq, past + seq]`.
    pub mask: Tensor<B, 4, Bool>,
}

impl<B: ModelBackend> CausalLm<B> {
    /// Plain causal forward from position 0 (no cache).
    ///
    /// # Shapes
    /// - ids: `[batch, seq]`
    /// - output: logits `[batch, seq, vocab]`
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [b, s] = ids.dims();
        let device = ids.device();
        let options = self.causal_options(b, s, 0, &device);
        self.forward_with(ids, &options, None)
    }

    /// Positions and mask for `seq` new tokens after `past` cached ones.
    pub fn causal_options(
        &self,
        batch: usize,
        seq: usize,
        past: usize,
        device: &B::Device,
    ) -> ForwardOptions<B> {
        let positions = Tensor::<B, 1, Int>::arange(past as i64..(past + seq) as i64, device)
            .reshape([1, seq])
            .repeat_dim(0, batch);
        let mask = MaskBuilder::causal(batch, seq, past, self.sliding_window, device);
        ForwardOptions { positions, mask }
    }

    /// Final hidden states (after `model.norm`), before the LM head.
    ///
    /// # Shapes
    /// - ids: `[batch, seq]`
    /// - output: `[batch, seq, hidden]`
    pub fn hidden_states(
        &self,
        ids: Tensor<B, 2, Int>,
        options: &ForwardOptions<B>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let seq = ids.dims()[1];
        let (cos, sin) = self.rope.tables(options.positions.clone());
        let (heads, kv_heads) = self
            .layers
            .first()
            .map_or((1, 1), |l| (l.self_attn.n_heads, l.self_attn.n_kv_heads));
        let (cos, sin) = (cos.swap_dims(1, 2), sin.swap_dims(1, 2));
        let rope_q = RopeTables::per_head(cos.clone(), sin.clone(), heads);
        let rope_k = if kv_heads == heads {
            rope_q.clone()
        } else {
            RopeTables::per_head(cos, sin, kv_heads)
        };
        let inputs = AttentionInputs {
            rope_q,
            rope_k,
            mask: options.mask.clone().repeat_dim(1, heads),
        };
        let mut x = self.embed_tokens.forward(ids);
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| (c, i));
            x = layer.forward(x, &inputs, layer_cache);
        }
        if let Some(c) = cache {
            c.advance(seq);
        }
        self.norm.forward(x)
    }

    /// Logits for hidden states.
    ///
    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`
    /// - output: `[batch, seq, vocab]`
    pub fn lm_logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [b, s, h] = hidden.dims();
                let w = self.embed_tokens.weight.val();
                let vocab = w.dims()[0];
                frozen_linear(hidden.reshape([b * s, h]), w.transpose()).reshape([b, s, vocab])
            }
        }
    }

    /// Forward with explicit positions/mask and an optional KV cache.
    ///
    /// # Shapes
    /// - ids: `[batch, seq]`
    /// - output: logits `[batch, seq, vocab]`
    pub fn forward_with(
        &self,
        ids: Tensor<B, 2, Int>,
        options: &ForwardOptions<B>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        self.lm_logits(self.hidden_states(ids, options, cache))
    }
}

impl<B: Backend> CausalLm<B> {
    /// Number of decoder layers.
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Every decoder projection with its HF module name (`model.layers.{i}.self_attn.q_proj`,
    /// ..., `model.layers.{i}.mlp.down_proj`), in layer order, then [`Projection::ALL`] order.
    /// The output layer (`lm_head`) is not included.
    pub fn projections(&self) -> Vec<(String, &Linear<B>)> {
        let mut out = Vec::with_capacity(self.layers.len() * Projection::ALL.len());
        for (i, l) in self.layers.iter().enumerate() {
            out.extend(l.projections().map(|(p, lin)| (p.hf_module(i), lin)));
        }
        out
    }

    /// Mutable access to the projections, same names and order as [`CausalLm::projections`].
    pub fn projections_mut(&mut self) -> Vec<(String, &mut Linear<B>)> {
        let mut out = Vec::with_capacity(self.layers.len() * Projection::ALL.len());
        for (i, l) in self.layers.iter_mut().enumerate() {
            out.extend(l.projections_mut().map(|(p, lin)| (p.hf_module(i), lin)));
        }
        out
    }
}
