//! Reference versions of the fused ops, built only from plain Burn tensor ops so Burn's own
//! autodiff differentiates them. The tests compare values and gradients of [`crate::ops`]
//! against these; they are also the "unfused" side of the benches.
//!
//! Shapes and conventions are those of the matching function in [`crate::ops`].

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, silu, softmax};

use crate::backend::{BaseWeight, LoraWeights};
use crate::ops::IGNORE_INDEX;
use crate::packed_base::PackedWeight;

/// A packed weight dequantised with the scalar reference, as a dense HF-layout
/// `[d_out, d_in]` tensor.
pub fn dequantized<B: Backend>(w: &PackedWeight, device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(
        TensorData::new(w.dequantize(), [w.d_out(), w.d_in()]),
        device,
    )
}

/// RMSNorm: `x / sqrt(mean(x²) + eps) · weight` over the last dimension.
///
/// # Shapes
/// - x: `[.., d]`, weight: `[d]`; output: `[.., d]`
pub fn rms_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Tensor<B, D> {
    let inv_rms = x
        .clone()
        .powi_scalar(2)
        .mean_dim(D - 1)
        .add_scalar(eps)
        .sqrt()
        .recip();
    (x * inv_rms) * weight.unsqueeze::<D>()
}

/// Rotate-half RoPE of one tensor: `x·cos + rotate_half(x)·sin`.
///
/// # Shapes
/// - x: `[batch, seq, heads, head_dim]`, cos, sin: `[batch, seq, head_dim / 2]`
/// - output: `[batch, seq, heads, head_dim]`
pub fn rope<B: Backend>(x: Tensor<B, 4>, cos: Tensor<B, 3>, sin: Tensor<B, 3>) -> Tensor<B, 4> {
    let d = x.dims()[3];
    let full = |t: Tensor<B, 3>| Tensor::cat(vec![t.clone(), t], 2).unsqueeze_dim::<4>(2);
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.clone().narrow(3, d / 2, d / 2);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * full(cos) + rotated * full(sin)
}

/// SwiGLU `silu(gate)·up`.
///
/// # Shapes
/// - gate, up, output: the same shape
pub fn swiglu<B: Backend, const D: usize>(gate: Tensor<B, D>, up: Tensor<B, D>) -> Tensor<B, D> {
    silu(gate) * up
}

/// LoRA linear `x·W + s·(x·A)·B`; a packed base is dequantised (scalar reference) into a
/// dense constant first.
///
/// # Shapes
/// - x: `[tokens, d_in]`; output: `[tokens, d_out]`
pub fn lora_linear<B: Backend>(x: Tensor<B, 2>, lora: &LoraWeights<Tensor<B, 2>>) -> Tensor<B, 2> {
    let w = match &lora.w {
        BaseWeight::Dense(w) => w.clone(),
        BaseWeight::Packed(p) => dequantized(p, &x.device()).transpose(),
    };
    x.clone().matmul(w)
        + x.matmul(lora.a.clone())
            .matmul(lora.b.clone())
            .mul_scalar(lora.scale)
}

/// LoRA-MLP `down(silu(gate(x))·up(x))`; weights are gate, up, down.
///
/// # Shapes
/// - x: `[tokens, hidden]`; output: `[tokens, hidden]`
pub fn lora_mlp<B: Backend>(
    x: Tensor<B, 2>,
    weights: &[LoraWeights<Tensor<B, 2>>; 3],
) -> Tensor<B, 2> {
    let [gate, up, down] = weights;
    let h = swiglu(lora_linear(x.clone(), gate), lora_linear(x, up));
    lora_linear(h, down)
}

/// LoRA-QKV: the three projections (q, k, v).
///
/// # Shapes
/// - x: `[tokens, hidden]`; outputs: `[tokens, out_i]`
pub fn lora_qkv<B: Backend>(
    x: Tensor<B, 2>,
    weights: &[LoraWeights<Tensor<B, 2>>; 3],
) -> (Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>) {
    let [q, k, v] = weights;
    (
        lora_linear(x.clone(), q),
        lora_linear(x.clone(), k),
        lora_linear(x, v),
    )
}

/// Mean cross-entropy of the full logits `hidden·w_lm` over non-ignored targets (0 when all are
/// ignored).
///
/// # Shapes
/// - hidden: `[tokens, d]`, w_lm: `[d, vocab]`, targets: `[tokens]`; output: `[1]`
pub fn linear_cross_entropy<B: Backend>(
    hidden: Tensor<B, 2>,
    w_lm: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let tokens = hidden.dims()[0];
    let logp = log_softmax(hidden.matmul(w_lm), 1);
    let valid = targets.clone().not_equal_elem(IGNORE_INDEX);
    let safe = targets.mask_fill(valid.clone().bool_not(), 0);
    let picked = logp.gather(1, safe.reshape([tokens, 1])).reshape([tokens]);
    let valid = valid.float();
    let count = valid.clone().sum().clamp_min(1.0);
    (picked * valid).sum().neg() / count
}

/// Packed causal GQA attention with an explicit `[seq, seq]` mask and softmax.
///
/// # Shapes
/// - q: `[batch, seq, heads, head_dim]`, k, v: `[batch, seq, kv_heads, head_dim]`
/// - segments: `[batch, seq]`; output: `[batch, seq, heads, head_dim]`
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    segments: Tensor<B, 2, Int>,
    scale: f32,
) -> Tensor<B, 4> {
    let [b, s, h, d] = q.dims();
    let kvh = k.dims()[2];
    let repeat = |t: Tensor<B, 4>| {
        t.swap_dims(1, 2)
            .reshape([b, kvh, 1, s, d])
            .expand([b, kvh, h / kvh, s, d])
            .reshape([b, h, s, d])
    };
    let device = q.device();
    let seg = segments
        .into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .unwrap_or_default();
    let mut blocked = Vec::with_capacity(b * s * s);
    for row in seg.chunks(s.max(1)) {
        for i in 0..s {
            for j in 0..s {
                blocked.push(j > i || row[i] != row[j]);
            }
        }
    }
    let mask = Tensor::<B, 1, Bool>::from_data(TensorData::new(blocked, [b * s * s]), &device)
        .reshape([b, 1, s, s]);
    let scores = q
        .swap_dims(1, 2)
        .matmul(repeat(k).swap_dims(2, 3))
        .mul_scalar(scale)
        .mask_fill(mask, f32::NEG_INFINITY);
    softmax(scores, 3).matmul(repeat(v)).swap_dims(1, 2)
}
