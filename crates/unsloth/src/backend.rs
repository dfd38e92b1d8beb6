//! The backend extension trait and the small structs its ops exchange.

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};

pub use tb_kernels::Precision;
use tb_model::{CrossEntropyBackend, FrozenLinearBackend};

use crate::fallback;
use crate::ops::{cross_entropy, lora_linear, lora_mlp, lora_qkv};
use crate::packed_base::PackedWeight;
use crate::prim::{prim, tensor};

/// The frozen base of a LoRA projection: a dense tensor in Burn layout `[d_in, d_out]`, or a
/// 4-bit [`PackedWeight`] (HF layout `[d_out, d_in]`, dequantised tile by tile inside the
/// matmuls). A packed base is frozen by construction: no `dW` is ever computed for it.
#[derive(Clone, Debug)]
pub enum BaseWeight<T> {
    /// Dense weight, `[d_in, d_out]`; trainable when the tensor is tracked.
    Dense(T),
    /// Packed 4-bit weight, `[d_out, d_in]`.
    Packed(Arc<PackedWeight>),
}

impl<T> BaseWeight<T> {
    /// Applies `f` to a dense weight (a packed one is shared as is).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> BaseWeight<U> {
        match self {
            Self::Dense(t) => BaseWeight::Dense(f(t)),
            Self::Packed(p) => BaseWeight::Packed(p),
        }
    }

    /// The dense weight, if this base is dense.
    pub fn dense(&self) -> Option<&T> {
        match self {
            Self::Dense(t) => Some(t),
            Self::Packed(_) => None,
        }
    }
}

impl<B: Backend> BaseWeight<Tensor<B, 2>> {
    /// `[d_in, d_out]` (Burn layout) for either kind of base.
    pub fn dims(&self) -> [usize; 2] {
        match self {
            Self::Dense(t) => t.dims(),
            Self::Packed(p) => [p.d_in(), p.d_out()],
        }
    }
}

/// A frozen base weight with its LoRA adapter, all in Burn layout (`y = x·W + scale·(x·A)·B`).
///
/// # Shapes
/// - `w`: `[d_in, d_out]` (dense), or packed `[d_out, d_in]` (see [`BaseWeight`])
/// - `a`: `[d_in, r]`
/// - `b`: `[r, d_out]`
#[derive(Clone, Debug)]
pub struct LoraWeights<T> {
    /// Base weight (frozen in both trainers).
    pub w: BaseWeight<T>,
    /// LoRA down projection (PEFT `lora_A`, transposed).
    pub a: T,
    /// LoRA up projection (PEFT `lora_B`, transposed).
    pub b: T,
    /// LoRA scale, `alpha / r`.
    pub scale: f32,
}

/// Weight gradients of one LoRA linear.
#[derive(Clone, Debug)]
pub struct LoraGrads<T> {
    /// Gradient of the base weight, computed only when asked for (`[d_in, d_out]`; never for
    /// a packed base).
    pub dw: Option<T>,
    /// Gradient of `A`, `[d_in, r]`.
    pub da: T,
    /// Gradient of `B`, `[r, d_out]`.
    pub db: T,
}

/// What the LoRA-MLP forward keeps for its backward (`h = silu(gate)·up` is recomputed).
///
/// # Shapes
/// - `gate`, `up`: `[tokens, intermediate]` (pre-activation projections)
/// - `xa_gate`, `xa_up`: `[tokens, r]`; `ha_down`: `[tokens, r]`
#[derive(Clone, Debug)]
pub struct MlpSaved<T> {
    /// Gate projection before the activation.
    pub gate: T,
    /// Up projection.
    pub up: T,
    /// `x·A_gate`.
    pub xa_gate: T,
    /// `x·A_up`.
    pub xa_up: T,
    /// `h·A_down`.
    pub ha_down: T,
}

/// What the attention forward keeps for its backward: the inputs, the output and one
/// logsumexp per query row (no `[seq, seq]` state).
///
/// # Shapes
/// - `q`, `out`: `[batch, seq, heads, head_dim]`
/// - `k`, `v`: `[batch, seq, kv_heads, head_dim]`
/// - `lse`: `[batch, seq, heads]`
/// - `segments`: `[batch, seq]`
#[derive(Clone, Debug)]
pub struct AttentionSaved<B: Backend> {
    /// Queries (after RoPE).
    pub q: FloatTensor<B>,
    /// Keys (after RoPE).
    pub k: FloatTensor<B>,
    /// Values.
    pub v: FloatTensor<B>,
    /// Forward output.
    pub out: FloatTensor<B>,
    /// Logsumexp of the scaled, masked scores of each query row.
    pub lse: FloatTensor<B>,
    /// Example id of each token; tokens only see earlier tokens of the same example.
    pub segments: IntTensor<B>,
    /// Score scale, usually `1/sqrt(head_dim)`.
    pub scale: f32,
    /// The arithmetic of the score and value products (see [`FusedBackend::attention_fwd`]).
    pub precision: Precision,
}

/// What the chunked linear + cross-entropy forward keeps for its backward: the gradients
/// themselves, computed chunk by chunk while the logits exist (for an upstream gradient of 1),
/// so the backward only scales them and never recomputes a logit.
///
/// Only loss-bearing rows (target not [`crate::ops::IGNORE_INDEX`]) go through the LM head;
/// the other rows' gradient is zero.
///
/// # Shapes
/// - `rows`: `[n]` (indices into the op's `tokens` rows); `d_hidden`: `[n, d]`;
///   `d_w_lm`: `[d, vocab]`
#[derive(Clone, Debug)]
pub struct CeSaved<B: Backend> {
    /// Rows of the input that carry a loss; `None` when every row does.
    pub rows: Option<IntTensor<B>>,
    /// Row count of the op's input.
    pub tokens: usize,
    /// Width of the hidden states.
    pub d: usize,
    /// `∂loss/∂hidden` of the loss-bearing rows.
    pub d_hidden: FloatTensor<B>,
    /// `∂loss/∂w_lm`, present when the head was trainable.
    pub d_w_lm: Option<FloatTensor<B>>,
}

/// Which gradients the chunked linear + cross-entropy forward prepares for the backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CeGradients {
    /// Loss only (evaluation, untracked inputs).
    None,
    /// `∂loss/∂hidden`.
    Hidden,
    /// `∂loss/∂hidden` and `∂loss/∂w_lm`.
    HiddenAndHead,
}

/// Backend extension with Unsloth-style fused ops.
///
/// Three groups of methods:
/// 1. *leaf kernels* (`*_fwd`, `*_bwd`): Rust kernels on Flex; every other backend gets the
///    tensor-op versions in [`crate::fallback`] until it provides its own;
/// 2. *composite kernels* written once over tensor ops and the leaf kernels (LoRA projections,
///    the chunked linear + cross-entropy); a backend may override them with faster code;
/// 3. *differentiable ops* (`fused_*`): on a plain backend they run the forward only; on
///    [`burn::backend::Autodiff`] they record a hand-written backward.
///
/// Call the ops through [`crate::ops`], which checks shapes and reshapes for you. The leaf
/// kernels expect validated shapes and, on Flex, compute in f32.
pub trait FusedBackend: FrozenLinearBackend + CrossEntropyBackend {
    /// RMSNorm forward: `y = x · inv_rms · weight`, `inv_rms = 1/sqrt(mean(x²) + eps)`.
    ///
    /// # Shapes
    /// - x: `[rows, d]`, weight: `[d]`
    /// - output: (`y` `[rows, d]`, `inv_rms` `[rows]`)
    fn rms_norm_fwd(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        fallback::rms_norm_fwd::<Self>(x, weight, eps)
    }

    /// RMSNorm backward from the kept `inv_rms`.
    ///
    /// # Shapes
    /// - dy, x: `[rows, d]`, weight: `[d]`, inv_rms: `[rows]`
    /// - output: (`dx` `[rows, d]`, `dweight` `[d]`)
    fn rms_norm_bwd(
        dy: FloatTensor<Self>,
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        inv_rms: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        fallback::rms_norm_bwd::<Self>(dy, x, weight, inv_rms)
    }

    /// Rotate-half RoPE (HF layout): pairs `(i, i + d/2)` rotate by the angle whose cos/sin are
    /// given per token. `inverse` rotates by minus the angle, which is the backward pass.
    ///
    /// # Shapes
    /// - x: `[batch, seq, heads, head_dim]`
    /// - cos, sin: `[batch, seq, head_dim / 2]`
    /// - output: `[batch, seq, heads, head_dim]`
    fn rope_fwd(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        inverse: bool,
    ) -> FloatTensor<Self> {
        fallback::rope_fwd::<Self>(x, cos, sin, inverse)
    }

    /// The fused q|k|v projection output split into heads, queries and keys rotated by RoPE:
    /// what the attention takes. `dims` is `[heads, kv_heads, head_dim]`.
    ///
    /// # Shapes
    /// - qkv: `[rows · seq, (heads + 2·kv_heads) · head_dim]`
    /// - cos, sin: `[rows, seq, head_dim / 2]`
    /// - output: q `[rows, seq, heads, head_dim]`, k and v `[rows, seq, kv_heads, head_dim]`
    fn qkv_heads_rope(
        qkv: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        dims: [usize; 3],
    ) -> [FloatTensor<Self>; 3] {
        fallback::qkv_heads_rope::<Self>(qkv, cos, sin, dims)
    }

    /// Backward of [`Self::qkv_heads_rope`]: the gradients of q and k rotated back (inverse
    /// RoPE) and all three joined into the q|k|v projection's layout.
    ///
    /// # Shapes
    /// - dq `[rows, seq, heads, head_dim]`, dk and dv `[rows, seq, kv_heads, head_dim]`
    /// - cos, sin: `[rows, seq, head_dim / 2]`
    /// - output: `[rows · seq, (heads + 2·kv_heads) · head_dim]`
    fn qkv_heads_rope_bwd(
        dq: FloatTensor<Self>,
        dk: FloatTensor<Self>,
        dv: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        fallback::qkv_heads_rope_bwd::<Self>(dq, dk, dv, cos, sin)
    }

    /// SwiGLU forward `silu(gate) · up`.
    ///
    /// # Shapes
    /// - gate, up, output: the same shape
    fn swiglu_fwd(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        fallback::swiglu_fwd::<Self>(gate, up)
    }

    /// SwiGLU backward.
    ///
    /// # Shapes
    /// - dh, gate, up: the same shape; output: (`dgate`, `dup`) of that shape
    fn swiglu_bwd(
        dh: FloatTensor<Self>,
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        fallback::swiglu_bwd::<Self>(dh, gate, up)
    }

    /// Cross-entropy over one chunk of logits: logsumexp per row and the negative
    /// log-likelihood of the target (0 where the target is the ignore index -100 or otherwise
    /// outside the vocabulary). By default tb-model's cross-entropy op (on Flex its SIMD row
    /// kernel), which the PEFT-style trainer's loss runs too.
    ///
    /// # Shapes
    /// - logits: `[rows, vocab]`, targets: `[rows]`
    /// - output: (`lse` `[rows]`, `nll` `[rows]`)
    fn chunk_cross_entropy_fwd(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        <Self as CrossEntropyBackend>::cross_entropy_fwd(logits, targets)
    }

    /// Gradient of the summed NLL of one chunk times `scale`: `(softmax - onehot) · scale`, zero
    /// rows for ignored targets. By default tb-model's cross-entropy backward with every row's
    /// upstream gradient `scale` (on Flex it overwrites the logits when nothing else holds them).
    ///
    /// # Shapes
    /// - logits: `[rows, vocab]`, lse, targets: `[rows]`, scale: `[1]`
    /// - output: `[rows, vocab]`
    fn chunk_cross_entropy_bwd(
        logits: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        targets: IntTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let rows = tensor::<Self, 1>(lse.clone()).dims()[0];
        let dnll = tensor::<Self, 1>(scale).expand([rows]);
        <Self as CrossEntropyBackend>::cross_entropy_bwd(logits, lse, targets, prim(dnll))
    }

    /// Causal attention over packed rows with grouped-query heads: query `i` sees key `j` when
    /// `j <= i` and both tokens have the same segment id.
    ///
    /// `precision` is the arithmetic of the score (`Q·Kᵀ`) and value (`P·V`) products and of
    /// their backward products where a backend multiplies f32 activations (Flex): bf16 for a
    /// model held in bf16, as PyTorch's bf16 autocast runs attention (sums and softmax in f32
    /// either way). Backends that multiply in their tensors' own dtype (CubeCL, the Burn-op
    /// defaults) ignore it.
    ///
    /// # Shapes
    /// - q: `[batch, seq, heads, head_dim]`, k, v: `[batch, seq, kv_heads, head_dim]`
    /// - segments: `[batch, seq]`
    /// - output: (`out` `[batch, seq, heads, head_dim]`, `lse` `[batch, seq, heads]`)
    fn attention_fwd(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        segments: IntTensor<Self>,
        scale: f32,
        precision: Precision,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let _ = precision;
        fallback::attention_fwd::<Self>(q, k, v, segments, scale)
    }

    /// Attention backward: recomputes the scores block by block from `saved.lse`.
    ///
    /// # Shapes
    /// - dout: `[batch, seq, heads, head_dim]`
    /// - output: (`dq`, `dk`, `dv`) shaped like q, k, v
    fn attention_bwd(
        dout: FloatTensor<Self>,
        saved: AttentionSaved<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        fallback::attention_bwd::<Self>(dout, saved)
    }

    /// Matmul against a packed frozen base: `y = x·Wᵀ` with `W` the packed `[d_out, d_in]`
    /// weight (the base term of a LoRA projection).
    ///
    /// This default, for backends without a tiled kernel (the CubeCL backends), keeps the packed
    /// weight on the device ([`PackedWeight::device_copy`], uploaded once) and dequantises the
    /// **whole** weight there into a transient dense tensor for the duration of the call, as
    /// bitsandbytes does on a GPU (the packed weight stays the only copy between calls). Flex
    /// overrides it with a kernel that dequantises 64 output rows at a
    /// time and never holds a dense copy.
    ///
    /// # Shapes
    /// - x: `[tokens, d_in]`
    /// - output: `[tokens, d_out]`
    fn packed_linear_fwd(x: FloatTensor<Self>, w: &PackedWeight) -> FloatTensor<Self> {
        fallback::packed_linear_fwd::<Self>(x, w)
    }

    /// Input gradient through a packed frozen base: `dx = dy·W` (no weight gradient: the base
    /// is frozen). Same default as [`Self::packed_linear_fwd`] (a transient dense copy); Flex
    /// dequantises one block column, 256 rows at a time.
    ///
    /// # Shapes
    /// - dy: `[tokens, d_out]`
    /// - output: `[tokens, d_in]`
    fn packed_linear_bwd(dy: FloatTensor<Self>, w: &PackedWeight) -> FloatTensor<Self> {
        fallback::packed_linear_bwd::<Self>(dy, w)
    }

    /// LoRA linear forward; also returns `x·A` for the backward.
    ///
    /// # Shapes
    /// - x: `[tokens, d_in]`
    /// - output: (`y` `[tokens, d_out]`, `xa` `[tokens, r]`)
    fn lora_linear_fwd(
        x: FloatTensor<Self>,
        lora: &LoraWeights<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        lora_linear::forward_kernel::<Self>(x, lora)
    }

    /// LoRA linear backward: `dx`, `dA`, `dB`, and `dW` only when `want_dw`.
    ///
    /// # Shapes
    /// - dy: `[tokens, d_out]`, x: `[tokens, d_in]`, xa: `[tokens, r]`
    /// - output: `dx` `[tokens, d_in]` and the weight gradients
    fn lora_linear_bwd(
        dy: FloatTensor<Self>,
        x: FloatTensor<Self>,
        xa: FloatTensor<Self>,
        lora: &LoraWeights<FloatTensor<Self>>,
        want_dw: bool,
    ) -> (FloatTensor<Self>, LoraGrads<FloatTensor<Self>>) {
        lora_linear::backward_kernel::<Self>(dy, x, xa, lora, want_dw)
    }

    /// LoRA-MLP forward, `down(silu(gate(x)) · up(x))` with LoRA on all three projections
    /// (weights in the order gate, up, down).
    ///
    /// # Shapes
    /// - x: `[tokens, hidden]`; output: `[tokens, hidden]` and the saved state
    fn lora_mlp_fwd(
        x: FloatTensor<Self>,
        weights: &[LoraWeights<FloatTensor<Self>>; 3],
    ) -> (FloatTensor<Self>, MlpSaved<FloatTensor<Self>>) {
        lora_mlp::forward_kernel::<Self>(x, weights)
    }

    /// LoRA-MLP backward; `want_dw[i]` asks for the base-weight gradient of projection `i`.
    ///
    /// # Shapes
    /// - dout, x: `[tokens, hidden]`; output: `dx` `[tokens, hidden]` and the weight gradients
    fn lora_mlp_bwd(
        dout: FloatTensor<Self>,
        x: FloatTensor<Self>,
        saved: MlpSaved<FloatTensor<Self>>,
        weights: &[LoraWeights<FloatTensor<Self>>; 3],
        want_dw: [bool; 3],
    ) -> (FloatTensor<Self>, [LoraGrads<FloatTensor<Self>>; 3]) {
        lora_mlp::backward_kernel::<Self>(dout, x, saved, weights, want_dw)
    }

    /// LoRA-QKV forward: the three projections (order q, k, v) concatenated on the last dim.
    ///
    /// # Shapes
    /// - x: `[tokens, hidden]`
    /// - output: `[tokens, q_out + k_out + v_out]` and the three `x·A` (`[tokens, r]`)
    fn lora_qkv_fwd(
        x: FloatTensor<Self>,
        weights: &[LoraWeights<FloatTensor<Self>>; 3],
    ) -> (FloatTensor<Self>, [FloatTensor<Self>; 3]) {
        lora_qkv::forward_kernel::<Self>(x, weights)
    }

    /// LoRA-QKV backward.
    ///
    /// # Shapes
    /// - dy: `[tokens, q_out + k_out + v_out]`, x: `[tokens, hidden]`
    /// - output: `dx` `[tokens, hidden]` and the weight gradients
    fn lora_qkv_bwd(
        dy: FloatTensor<Self>,
        x: FloatTensor<Self>,
        xa: [FloatTensor<Self>; 3],
        weights: &[LoraWeights<FloatTensor<Self>>; 3],
        want_dw: [bool; 3],
    ) -> (FloatTensor<Self>, [LoraGrads<FloatTensor<Self>>; 3]) {
        lora_qkv::backward_kernel::<Self>(dy, x, xa, weights, want_dw)
    }

    /// Chunked linear + cross-entropy forward: the mean NLL over non-ignored targets, computed
    /// `chunk` loss-bearing rows at a time. With `grads` other than [`CeGradients::None`] it
    /// also turns each chunk's logits into the gradients, before the chunk is dropped
    /// (Liger-style), so no `[tokens, vocab]` tensor and no logit recompute.
    ///
    /// # Shapes
    /// - hidden: `[tokens, d]`, w_lm: `[d, vocab]`, targets: `[tokens]`
    /// - output: (`loss` `[1]`, what the backward needs; its gradients are empty (`[0, d]`,
    ///   no head gradient) with [`CeGradients::None`])
    fn linear_cross_entropy_fwd(
        hidden: FloatTensor<Self>,
        w_lm: FloatTensor<Self>,
        targets: IntTensor<Self>,
        chunk: usize,
        grads: CeGradients,
    ) -> (FloatTensor<Self>, CeSaved<Self>) {
        cross_entropy::forward_kernel::<Self>(hidden, w_lm, targets, chunk, grads)
    }

    /// Chunked linear + cross-entropy backward: scales the saved gradients by `dloss` and
    /// scatters the loss-bearing rows back into `[tokens, d]`.
    ///
    /// # Shapes
    /// - dloss: `[1]`
    /// - output: `d_hidden` `[tokens, d]` and `d_w_lm` `[d, vocab]` when it was prepared
    fn linear_cross_entropy_bwd(
        dloss: FloatTensor<Self>,
        saved: CeSaved<Self>,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>) {
        cross_entropy::backward_kernel::<Self>(dloss, saved)
    }

    /// Differentiable RMSNorm (see [`Self::rms_norm_fwd`]).
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        Self::rms_norm_fwd(x, weight, eps).0
    }

    /// Differentiable RoPE of queries and keys in one op; the output holds the rotated queries
    /// followed by the rotated keys on the heads dimension.
    ///
    /// # Shapes
    /// - q: `[batch, seq, heads, head_dim]`, k: `[batch, seq, kv_heads, head_dim]`
    /// - cos, sin: `[batch, seq, head_dim / 2]`
    /// - output: `[batch, seq, heads + kv_heads, head_dim]`
    fn fused_rope_qk(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let qk = Tensor::cat(vec![tensor::<Self, 4>(q), tensor::<Self, 4>(k)], 2);
        Self::rope_fwd(prim(qk), cos, sin, false)
    }

    /// Differentiable SwiGLU (see [`Self::swiglu_fwd`]).
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::swiglu_fwd(gate, up)
    }

    /// Differentiable LoRA linear (see [`Self::lora_linear_fwd`]).
    fn fused_lora_linear(
        x: FloatTensor<Self>,
        lora: LoraWeights<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        Self::lora_linear_fwd(x, &lora).0
    }

    /// Differentiable LoRA-MLP (see [`Self::lora_mlp_fwd`]).
    fn fused_lora_mlp(
        x: FloatTensor<Self>,
        weights: [LoraWeights<FloatTensor<Self>>; 3],
    ) -> FloatTensor<Self> {
        Self::lora_mlp_fwd(x, &weights).0
    }

    /// Differentiable LoRA-QKV (see [`Self::lora_qkv_fwd`]).
    fn fused_lora_qkv(
        x: FloatTensor<Self>,
        weights: [LoraWeights<FloatTensor<Self>>; 3],
    ) -> FloatTensor<Self> {
        Self::lora_qkv_fwd(x, &weights).0
    }

    /// Differentiable chunked linear + cross-entropy (see
    /// [`Self::linear_cross_entropy_fwd`]).
    fn fused_linear_cross_entropy(
        hidden: FloatTensor<Self>,
        w_lm: FloatTensor<Self>,
        targets: IntTensor<Self>,
        chunk: usize,
    ) -> FloatTensor<Self> {
        Self::linear_cross_entropy_fwd(hidden, w_lm, targets, chunk, CeGradients::None).0
    }

    /// Differentiable packed causal attention (see [`Self::attention_fwd`]).
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        segments: IntTensor<Self>,
        scale: f32,
        precision: Precision,
    ) -> FloatTensor<Self> {
        Self::attention_fwd(q, k, v, segments, scale, precision).0
    }
}

impl<T> LoraWeights<T> {
    /// Applies `f` to the three tensors, keeping the scale (e.g. tensor ↔ primitive).
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> LoraWeights<U> {
        LoraWeights {
            w: self.w.map(&mut f),
            a: f(self.a),
            b: f(self.b),
            scale: self.scale,
        }
    }
}
