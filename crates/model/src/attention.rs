//! Multi-head self-attention with grouped-query heads and rotate-half RoPE (HF `self_attn`).

use burn::prelude::*;

use crate::cache::KvCache;
use crate::linear::Linear;
use crate::rope::RotaryEmbedding;
use crate::softmax::masked_softmax;
use crate::ModelBackend;

/// Attention of one decoder layer.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// `q_proj`, `[hidden, heads * head_dim]`.
    pub q_proj: Linear<B>,
    /// `k_proj`, `[hidden, kv_heads * head_dim]`.
    pub k_proj: Linear<B>,
    /// `v_proj`, `[hidden, kv_heads * head_dim]`.
    pub v_proj: Linear<B>,
    /// `o_proj`, `[heads * head_dim, hidden]`.
    pub o_proj: Linear<B>,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

/// Per-forward inputs shared by all layers.
pub struct AttentionInputs<B: Backend> {
    /// RoPE tables for the query heads.
    pub rope_q: RopeTables<B>,
    /// RoPE tables for the key heads (the query tables when the counts match).
    pub rope_k: RopeTables<B>,
    /// `true` where attention is not allowed, `[batch, heads, seq, past + seq]`: one copy per
    /// query head made once per forward, so no layer's masking (forward and backward)
    /// broadcasts it again.
    pub mask: Tensor<B, 4, Bool>,
}

/// RoPE cos/sin tables laid out as the projections' outputs, `[batch, seq, heads, head_dim]`
/// (token-major), materialised per head once per forward: a table broadcast over the heads
/// would send every layer's RoPE products (forward and backward) down Flex's strided
/// element-wise path, an order of magnitude slower than its contiguous one.
#[derive(Clone)]
pub struct RopeTables<B: Backend> {
    /// cos, `[batch, seq, heads, head_dim]`.
    pub cos: Tensor<B, 4>,
    /// sin, `[batch, seq, heads, head_dim]`.
    pub sin: Tensor<B, 4>,
}

impl<B: Backend> RopeTables<B> {
    /// Tables for `heads` heads from per-token tables.
    ///
    /// # Shapes
    /// - cos, sin: `[batch, seq, 1, head_dim]`
    pub fn per_head(cos: Tensor<B, 4>, sin: Tensor<B, 4>, heads: usize) -> Self {
        Self {
            cos: cos.repeat_dim(2, heads),
            sin: sin.repeat_dim(2, heads),
        }
    }
}

impl<B: ModelBackend> Attention<B> {
    /// # Shapes
    /// - x: `[batch, seq, hidden]`
    /// - output: `[batch, seq, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        inputs: &AttentionInputs<B>,
        cache: Option<(&mut KvCache<B>, usize)>,
    ) -> Tensor<B, 3> {
        let [b, s, _] = x.dims();
        let (h, kvh, d) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let split = |t: Tensor<B, 3>, heads: usize| t.reshape([b, s, heads, d]);
        // RoPE on the token-major layout (contiguous), then heads first for the products.
        let rope = |t: Tensor<B, 4>, r: &RopeTables<B>| {
            contiguous_grad(RotaryEmbedding::apply(t, &r.cos, &r.sin)).swap_dims(1, 2)
        };
        let q = rope(split(self.q_proj.forward(x.clone()), h), &inputs.rope_q);
        let k = rope(split(self.k_proj.forward(x.clone()), kvh), &inputs.rope_k);
        let v = split(self.v_proj.forward(x), kvh).swap_dims(1, 2);
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v),
            None => (k, v),
        };
        let k = repeat_kv(k, h / kvh);
        let v = repeat_kv(v, h / kvh);

        let scores = q.matmul(k.swap_dims(2, 3));
        let probs = masked_softmax(scores, inputs.mask.clone(), 1.0 / (d as f32).sqrt());
        let out = probs.matmul(v).swap_dims(1, 2).reshape([b, s, h * d]);
        self.o_proj.forward(out)
    }
}

/// The identity, whose backward hands on a contiguous gradient. The gradient that comes back
/// through the heads-first transpose is a strided view, and RoPE's four products on it would
/// run Flex's strided element-wise path (several times its contiguous one); reshaping through
/// the flat shape makes the backward copy it once instead. Forward, both reshapes are views
/// of contiguous data.
///
/// # Shapes
/// - input, output: `[batch, seq, heads, head_dim]`
fn contiguous_grad<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let dims = x.dims();
    x.reshape([dims.iter().product::<usize>()]).reshape(dims)
}

/// Repeats each key/value head `groups` times so head `i` of the queries uses kv head
/// `i / groups` (HF `repeat_kv`).
///
/// # Shapes
/// - input: `[batch, kv_heads, seq, head_dim]`
/// - output: `[batch, kv_heads * groups, seq, head_dim]`
pub fn repeat_kv<B: Backend>(x: Tensor<B, 4>, groups: usize) -> Tensor<B, 4> {
    if groups == 1 {
        return x;
    }
    let [b, kvh, s, d] = x.dims();
    x.reshape([b, kvh, 1, s, d])
        .expand([b, kvh, groups, s, d])
        .reshape([b, kvh * groups, s, d])
}
