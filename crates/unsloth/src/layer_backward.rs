//! A whole decoder layer with a hand-written backward, for checkpointed training: the forward
//! runs the fused kernels without any autodiff graph and keeps a [`LayerCheckpoint`]; the
//! backward recomputes what was not kept and chains the kernels' own backward passes in
//! reverse, returning the layer's input gradient and its LoRA gradients.
//!
//! Against recomputing the layer under Burn's autodiff, this
//! - never recomputes the two projections whose outputs only feed a residual sum (`o_proj` and
//!   `down_proj`): the checkpoint keeps the residual after attention (`mid`) beside the input,
//!   and their backward needs only `x·A` (a rank-`r` product);
//! - can keep the MLP's activations ([`Recompute::Attention`]) so only the attention half is
//!   recomputed, the "selective recomputation" trade of Korthikanti et al. (2022): the MLP
//!   holds about three quarters of a layer's FLOPs but its activations are cheap to keep;
//! - builds no graph and accumulates no gradient maps.
//!
//! Every adapted projection's base stays frozen (no `dW`), like both trainers. Layers with a
//! projection that has no LoRA branch are not handled here ([`LayerWeights::of`] gives `None`);
//! the trainer recomputes those under autodiff.

use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use tb_model::layer::DecoderLayer;
use tb_model::Projection;

use crate::backend::{FusedBackend, LoraGrads, LoraWeights, MlpSaved, Precision};
use crate::fused_model::{attention_precision, lora_weights};
use crate::packed_base::LayerBases;
use crate::prim::{prim, tensor};

/// What a checkpointed layer recomputes in the backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recompute {
    /// The whole layer (except `o_proj`/`down_proj` outputs): least memory.
    Layer,
    /// Only the attention half; the MLP's activations are kept.
    Attention,
}

/// The weights of one layer whose seven projections all carry a LoRA branch, as primitives.
pub struct LayerWeights<B: Backend> {
    /// q, k, v.
    qkv: [LoraWeights<FloatTensor<B>>; 3],
    /// o.
    o: LoraWeights<FloatTensor<B>>,
    /// gate, up, down.
    mlp: [LoraWeights<FloatTensor<B>>; 3],
    /// Input and post-attention RMSNorm weights.
    norms: [FloatTensor<B>; 2],
    /// Their epsilons.
    eps: [f32; 2],
    /// Attention heads, KV heads, head width.
    heads: [usize; 3],
    /// The attention products' arithmetic ([`crate::fused_model::attention_precision`]).
    precision: Precision,
}

impl<B: Backend> LayerWeights<B> {
    /// The layer's weights, or `None` when a projection has no LoRA branch.
    pub fn of(layer: &DecoderLayer<B>, bases: &LayerBases) -> Option<Self> {
        use Projection::{Down, Gate, Up, K, O, Q, V};
        let a = &layer.self_attn;
        let w =
            |p: Projection| lora_weights(layer.projection(p), bases.get(p)).map(|w| w.map(prim));
        Some(Self {
            qkv: [w(Q)?, w(K)?, w(V)?],
            o: w(O)?,
            mlp: [w(Gate)?, w(Up)?, w(Down)?],
            norms: [
                prim(layer.input_layernorm.weight.val()),
                prim(layer.post_attention_layernorm.weight.val()),
            ],
            eps: [
                layer.input_layernorm.eps as f32,
                layer.post_attention_layernorm.eps as f32,
            ],
            heads: [a.n_heads, a.n_kv_heads, a.head_dim],
            precision: attention_precision(layer),
        })
    }
}

/// The per-batch inputs every layer shares.
pub struct LayerInputs<B: Backend> {
    /// RoPE angles, `[rows, seq, head_dim / 2]` each.
    pub cos: Tensor<B, 3>,
    /// See `cos`.
    pub sin: Tensor<B, 3>,
    /// Example id of every token, `[rows, seq]`.
    pub segments: Tensor<B, 2, Int>,
}

/// What the forward keeps of one layer.
pub struct LayerCheckpoint<B: Backend> {
    /// Layer input, `[tokens, hidden]`.
    x: Tensor<B, 2>,
    /// Residual after attention, `x + o_proj(attention)`, `[tokens, hidden]`.
    mid: Tensor<B, 2>,
    /// The MLP's saved activations ([`Recompute::Attention`] only).
    mlp: Option<MlpSaved<FloatTensor<B>>>,
}

/// The attention half's forward state.
struct AttentionHalf<B: Backend> {
    /// Normed input.
    h: FloatTensor<B>,
    /// Its inverse RMS.
    inv: FloatTensor<B>,
    /// `h·A` of q, k, v.
    xa_qkv: [FloatTensor<B>; 3],
    /// Attention output before `o_proj`, `[tokens, heads · head_dim]`.
    a: Tensor<B, 2>,
    /// What the attention backward needs.
    saved: crate::backend::AttentionSaved<B>,
}

fn attention_half<B: FusedBackend>(
    w: &LayerWeights<B>,
    x: &Tensor<B, 2>,
    inputs: &LayerInputs<B>,
) -> AttentionHalf<B> {
    let [rows, seq] = inputs.segments.dims();
    let [heads, _, hd] = w.heads;
    let (h, inv) = B::rms_norm_fwd(prim(x.clone()), w.norms[0].clone(), w.eps[0]);
    let (qkv, xa_qkv) = B::lora_qkv_fwd(h.clone(), &w.qkv);
    let (cos, sin) = (prim(inputs.cos.clone()), prim(inputs.sin.clone()));
    let [q, k, v] = B::qkv_heads_rope(qkv, cos, sin, w.heads);
    let scale = 1.0 / (hd as f32).sqrt();
    let segments = inputs.segments.clone().into_primitive();
    let (out, lse) = B::attention_fwd(
        q.clone(),
        k.clone(),
        v.clone(),
        segments.clone(),
        scale,
        w.precision,
    );
    let a = tensor::<B, 4>(out.clone()).reshape([rows * seq, heads * hd]);
    AttentionHalf {
        h,
        inv,
        xa_qkv,
        a,
        saved: crate::backend::AttentionSaved {
            q,
            k,
            v,
            out,
            lse,
            segments,
            scale,
            precision: w.precision,
        },
    }
}

/// `x·A` of a LoRA branch (what its backward needs besides `x`).
fn xa<B: Backend>(x: &Tensor<B, 2>, w: &LoraWeights<FloatTensor<B>>) -> FloatTensor<B> {
    prim(x.clone().matmul(tensor::<B, 2>(w.a.clone())))
}

/// The layer forward without autodiff, keeping a checkpoint for [`backward`].
///
/// # Shapes
/// - x: `[tokens, hidden]` (`tokens = rows · seq` of `inputs`)
/// - output: `[tokens, hidden]`
pub fn forward<B: FusedBackend>(
    w: &LayerWeights<B>,
    x: Tensor<B, 2>,
    inputs: &LayerInputs<B>,
    recompute: Recompute,
) -> (Tensor<B, 2>, LayerCheckpoint<B>) {
    let half = attention_half(w, &x, inputs);
    let (o, _) = B::lora_linear_fwd(prim(half.a), &w.o);
    let mid = x.clone() + tensor::<B, 2>(o);
    let (h2, _) = B::rms_norm_fwd(prim(mid.clone()), w.norms[1].clone(), w.eps[1]);
    let (m, saved) = B::lora_mlp_fwd(h2, &w.mlp);
    let out = mid.clone() + tensor::<B, 2>(m);
    let mlp = (recompute == Recompute::Attention).then_some(saved);
    (out, LayerCheckpoint { x, mid, mlp })
}

/// LoRA gradients of a layer, in [`Projection::ALL`] order (`A`, `B` in Burn layout
/// `[d_in, r]`, `[r, d_out]`).
pub type LayerGrads<B> = [(FloatTensor<B>, FloatTensor<B>); 7];

/// The layer backward from its checkpoint: `dout` is the gradient of the layer output; returns
/// the input gradient (`None` when `want_dx` is false, e.g. for the first layer, whose input is
/// the frozen embedding) and the LoRA gradients.
///
/// # Shapes
/// - dout: `[tokens, hidden]`
/// - output: `[tokens, hidden]`
pub fn backward<B: FusedBackend>(
    w: &LayerWeights<B>,
    ckpt: LayerCheckpoint<B>,
    dout: Tensor<B, 2>,
    inputs: &LayerInputs<B>,
    want_dx: bool,
) -> (Option<Tensor<B, 2>>, LayerGrads<B>) {
    let LayerCheckpoint { x, mid, mlp } = ckpt;
    // MLP half: recompute what was not kept (never the down projection's output).
    let (h2, inv2) = B::rms_norm_fwd(prim(mid.clone()), w.norms[1].clone(), w.eps[1]);
    let saved = mlp.unwrap_or_else(|| {
        let [gate_w, up_w, down_w] = &w.mlp;
        let (gate, xa_gate) = B::lora_linear_fwd(h2.clone(), gate_w);
        let (up, xa_up) = B::lora_linear_fwd(h2.clone(), up_w);
        let h = tensor::<B, 2>(B::swiglu_fwd(gate.clone(), up.clone()));
        MlpSaved {
            ha_down: xa(&h, down_w),
            gate,
            up,
            xa_gate,
            xa_up,
        }
    });
    let (dh2, [g_gate, g_up, g_down]) =
        B::lora_mlp_bwd(prim(dout.clone()), h2, saved, &w.mlp, [false; 3]);
    let (dmid, _) = B::rms_norm_bwd(dh2, prim(mid), w.norms[1].clone(), inv2);
    let dmid = dout + tensor::<B, 2>(dmid);
    // Attention half, always recomputed (never the o projection's output).
    let half = attention_half(w, &x, inputs);
    let [heads, _, hd] = w.heads;
    let [rows, seq] = inputs.segments.dims();
    let xa_o = xa(&half.a, &w.o);
    let (da, g_o) = B::lora_linear_bwd(prim(dmid.clone()), prim(half.a), xa_o, &w.o, false);
    let da = tensor::<B, 2>(da).reshape([rows, seq, heads, hd]);
    let (dq, dk, dv) = B::attention_bwd(prim(da), half.saved);
    let (cos, sin) = (prim(inputs.cos.clone()), prim(inputs.sin.clone()));
    let dqkv = B::qkv_heads_rope_bwd(dq, dk, dv, cos, sin);
    let (dh1, [g_q, g_k, g_v]) = B::lora_qkv_bwd(dqkv, half.h, half.xa_qkv, &w.qkv, [false; 3]);
    let dx = want_dx.then(|| {
        let (dx, _) = B::rms_norm_bwd(dh1, prim(x), w.norms[0].clone(), half.inv);
        dmid + tensor::<B, 2>(dx)
    });
    let pair = |g: LoraGrads<FloatTensor<B>>| (g.da, g.db);
    (dx, [g_q, g_k, g_v, g_o, g_gate, g_up, g_down].map(pair))
}
