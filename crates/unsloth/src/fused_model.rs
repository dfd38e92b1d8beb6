//! The decoder forward written with the fused ops, over tb-model's weights (same module tree and
//! HF names as the PEFT-style trainer, so the two train exactly the same parameters):
//! RMSNorm → LoRA-QKV → RoPE(Q, K) → packed causal attention → LoRA-O → residual → RMSNorm →
//! LoRA-MLP (SwiGLU) → residual, and the chunked linear + cross-entropy on top. The
//! `[tokens, vocab]` logits and the `[seq, seq]` attention weights are never kept.
//!
//! The bases of adapted projections come from the module, or from [`PackedBases`] when the
//! trainer packed them to 4 bits ([`crate::packed_base::PackingSink`]); pass
//! [`PackedBases::dense`] for a dense model.

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::DType;
use tb_data::Batch;
use tb_model::layer::DecoderLayer;
use tb_model::{CausalLm, Linear, Projection};

use crate::backend::{BaseWeight, FusedBackend, LoraWeights, Precision};
use crate::error::{FusedError, Result};
use crate::ops;
use crate::packed_base::{LayerBases, PackedBases, PackedWeight};

/// Tokens per chunk of the fused cross-entropy (bounds the transient logits to
/// `chunk × vocab` floats).
pub const DEFAULT_CE_CHUNK: usize = 256;

/// The LoRA weights of an adapted projection, its base packed (`packed`) or dense.
pub(crate) fn lora_weights<B: Backend>(
    lin: &Linear<B>,
    packed: Option<&Arc<PackedWeight>>,
) -> Option<LoraWeights<Tensor<B, 2>>> {
    lin.lora.as_ref().map(|l| LoraWeights {
        w: match packed {
            Some(p) => BaseWeight::Packed(Arc::clone(p)),
            None => BaseWeight::Dense(lin.weight.val()),
        },
        a: l.lora_a.val(),
        b: l.lora_b.val(),
        scale: l.scale as f32,
    })
}

/// The arithmetic of activation products beside a weight of dtype `weight` (attention, LoRA
/// adapters): bf16 where the weight is bf16 and the CPU multiplies bf16 fast
/// ([`Precision::for_bf16_model`]), as PyTorch's bf16 autocast does; f32 otherwise.
pub(crate) fn product_precision(weight: DType) -> Precision {
    match weight {
        DType::BF16 => Precision::for_bf16_model(),
        _ => Precision::F32,
    }
}

/// The arithmetic of a layer's attention products: [`product_precision`] of its query weight.
pub(crate) fn attention_precision<B: Backend>(layer: &DecoderLayer<B>) -> Precision {
    product_precision(layer.self_attn.q_proj.weight.val().dtype())
}

/// One projection: fused LoRA linear when adapted, a plain matmul otherwise.
fn project<B: FusedBackend>(
    x: Tensor<B, 3>,
    lin: &Linear<B>,
    packed: Option<&Arc<PackedWeight>>,
) -> Result<Tensor<B, 3>> {
    match (lora_weights(lin, packed), packed) {
        (Some(w), _) => ops::lora_linear(x, w),
        (None, None) => Ok(lin.forward(x)),
        (None, Some(_)) => Err(FusedError::Invalid {
            op: "decoder_layer",
            what: "a packed base without a LoRA branch (only adapted projections are packed)",
        }),
    }
}

/// Token ids, positions and segment ids of a batch as tensors.
///
/// # Shapes
/// - outputs: `[rows, seq]` each
pub fn batch_tensors<B: Backend>(
    batch: &Batch,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let (rows, seq) = (batch.rows, batch.seq_len);
    let make = |v: Vec<i64>| {
        Tensor::<B, 1, Int>::from_data(TensorData::new(v, [rows * seq]), device)
            .reshape([rows, seq])
    };
    let ids = make(batch.input_ids.iter().map(|&t| i64::from(t)).collect());
    let pos = make(batch.positions.iter().map(|&p| i64::from(p)).collect());
    let seg = make(
        batch
            .segments
            .iter()
            .flat_map(|row| row.iter().map(|&s| i64::from(s)))
            .collect(),
    );
    (ids, pos, seg)
}

/// RoPE angles for the fused op: `[rows, seq, head_dim / 2]` each.
pub fn rope_angles<B: Backend>(
    model: &CausalLm<B>,
    positions: Tensor<B, 2, Int>,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let [rows, seq] = positions.dims();
    let (cos, sin) = model.rope.tables(positions);
    let d = cos.dims()[3];
    // tb-model's tables hold rotate-half angles duplicated over both halves.
    (
        cos.reshape([rows, seq, d]).narrow(2, 0, d / 2),
        sin.reshape([rows, seq, d]).narrow(2, 0, d / 2),
    )
}

/// One decoder layer with the fused ops; `bases` holds the layer's packed bases (slot
/// [`Projection::index`]).
///
/// # Shapes
/// - x: `[rows, seq, hidden]`; cos, sin: `[rows, seq, head_dim / 2]`; segments: `[rows, seq]`
/// - output: `[rows, seq, hidden]`
pub fn decoder_layer<B: FusedBackend>(
    layer: &DecoderLayer<B>,
    bases: &LayerBases,
    x: Tensor<B, 3>,
    cos: &Tensor<B, 3>,
    sin: &Tensor<B, 3>,
    segments: &Tensor<B, 2, Int>,
) -> Result<Tensor<B, 3>> {
    use Projection::{Down, Gate, Up, K, O, Q, V};
    let lora = |p: Projection| lora_weights(layer.projection(p), bases.get(p));
    let proj = |x, p: Projection| project(x, layer.projection(p), bases.get(p));
    let [rows, seq, _] = x.dims();
    let attn = &layer.self_attn;
    let (heads, kv_heads, hd) = (attn.n_heads, attn.n_kv_heads, attn.head_dim);
    let h = ops::rms_norm(
        x.clone(),
        layer.input_layernorm.weight.val(),
        layer.input_layernorm.eps,
    )?;
    let (q, k, v) = match (lora(Q), lora(K), lora(V)) {
        (Some(q), Some(k), Some(v)) => ops::lora_qkv(h, [q, k, v])?,
        _ => (proj(h.clone(), Q)?, proj(h.clone(), K)?, proj(h, V)?),
    };
    let q = q.reshape([rows, seq, heads, hd]);
    let k = k.reshape([rows, seq, kv_heads, hd]);
    let v = v.reshape([rows, seq, kv_heads, hd]);
    let (q, k) = ops::rope_qk(q, k, cos.clone(), sin.clone())?;
    let precision = attention_precision(layer);
    let a = ops::attention(q, k, v, segments.clone(), None, precision)?;
    let a = a.reshape([rows, seq, heads * hd]);
    let x = x + proj(a, O)?;
    let post = &layer.post_attention_layernorm;
    let h = ops::rms_norm(x.clone(), post.weight.val(), post.eps)?;
    let m = match (lora(Gate), lora(Up), lora(Down)) {
        (Some(g), Some(u), Some(dn)) => ops::lora_mlp(h, [g, u, dn])?,
        _ => {
            let g = proj(h.clone(), Gate)?;
            let u = proj(h, Up)?;
            proj(ops::swiglu(g, u)?, Down)?
        }
    };
    Ok(x + m)
}

/// Final hidden states (after `model.norm`) with the fused ops.
///
/// # Shapes
/// - ids, positions, segments: `[rows, seq]`
/// - output: `[rows, seq, hidden]`
pub fn hidden_states<B: FusedBackend>(
    model: &CausalLm<B>,
    bases: &PackedBases,
    ids: Tensor<B, 2, Int>,
    positions: Tensor<B, 2, Int>,
    segments: Tensor<B, 2, Int>,
) -> Result<Tensor<B, 3>> {
    let (cos, sin) = rope_angles(model, positions);
    let mut x = model.embed_tokens.forward(ids);
    for (l, layer) in model.layers.iter().enumerate() {
        x = decoder_layer(layer, bases.layer(l), x, &cos, &sin, &segments)?;
    }
    ops::rms_norm(x, model.norm.weight.val(), model.norm.eps)
}

/// Mean cross-entropy of final-norm(`x`) against `targets` (the model's head part).
///
/// # Shapes
/// - x: `[rows, seq, hidden]` (output of the last layer, before `model.norm`)
/// - output: `[1]`
pub fn head_loss_mean<B: FusedBackend>(
    model: &CausalLm<B>,
    x: Tensor<B, 3>,
    targets: &[i64],
    chunk: usize,
) -> Result<Tensor<B, 1>> {
    let device = x.device();
    let [r, s, d] = x.dims();
    let hidden = ops::rms_norm(x, model.norm.weight.val(), model.norm.eps)?;
    let targets =
        Tensor::<B, 1, Int>::from_data(TensorData::new(targets.to_vec(), [r * s]), &device);
    ops::linear_cross_entropy(
        hidden.reshape([r * s, d]),
        lm_head_weight(model),
        targets,
        chunk,
    )
}

/// The LM head in Burn layout `[hidden, vocab]` (the embedding transposed when tied).
pub fn lm_head_weight<B: Backend>(model: &CausalLm<B>) -> Tensor<B, 2> {
    match &model.lm_head {
        Some(head) => head.weight.val(),
        None => model.embed_tokens.weight.val().transpose(),
    }
}

/// Mean cross-entropy over the batch's loss-bearing targets, with the fused ops throughout.
///
/// # Shapes
/// - output: `[1]`
pub fn loss_mean<B: FusedBackend>(
    model: &CausalLm<B>,
    bases: &PackedBases,
    batch: &Batch,
    chunk: usize,
    device: &B::Device,
) -> Result<Tensor<B, 1>> {
    let (ids, positions, segments) = batch_tensors::<B>(batch, device);
    let hidden = hidden_states(model, bases, ids, positions, segments)?;
    let n = batch.rows * batch.seq_len;
    let targets =
        Tensor::<B, 1, Int>::from_data(TensorData::new(batch.targets.clone(), [n]), device);
    let [r, s, d] = hidden.dims();
    ops::linear_cross_entropy(
        hidden.reshape([r * s, d]),
        lm_head_weight(model),
        targets,
        chunk,
    )
}
