//! LoRA-QKV: the q, k and v projections of one attention layer, each with LoRA, in one op with
//! a hand-derived backward (Unsloth's `LoRA_QKV`). The three outputs travel as one tensor,
//! concatenated on the last dimension, because a Burn autodiff op has a single output node.

use burn::prelude::*;
use burn::tensor::ops::FloatTensor;

use super::flat_rows;
use super::lora_linear::check_lora;
use crate::backend::{BaseWeight, FusedBackend, LoraGrads, LoraWeights};
use crate::error::Result;
use crate::prim::{prim, tensor};

/// Applies the q, k and v projections (in that order in `weights`).
///
/// # Shapes
/// - x: `[.., hidden]`
/// - each projection: w `[hidden, out_i]`, a `[hidden, r]`, b `[r, out_i]`
/// - output: `([.., q_out], [.., k_out], [.., v_out])`
///
/// # Errors
/// [`crate::FusedError::Shape`] when the widths disagree.
pub fn lora_qkv<B: FusedBackend, const D: usize>(
    x: Tensor<B, D>,
    weights: [LoraWeights<Tensor<B, 2>>; 3],
) -> Result<(Tensor<B, D>, Tensor<B, D>, Tensor<B, D>)> {
    let hidden = x.dims()[D - 1];
    let mut outs = [0; 3];
    for (o, w) in outs.iter_mut().zip(&weights) {
        *o = check_lora("lora_qkv", hidden, w)?;
    }
    let (x, dims) = flat_rows(x);
    let y = tensor::<B, 2>(B::fused_lora_qkv(prim(x), weights.map(|w| w.map(prim))));
    let part = |start: usize, len: usize| {
        let mut d = dims;
        d[D - 1] = len;
        y.clone().narrow(1, start, len).reshape(d)
    };
    Ok((
        part(0, outs[0]),
        part(outs[0], outs[1]),
        part(outs[0] + outs[1], outs[2]),
    ))
}

/// Forward: three LoRA linears, outputs concatenated.
pub(crate) fn forward_kernel<B: FusedBackend>(
    x: FloatTensor<B>,
    weights: &[LoraWeights<FloatTensor<B>>; 3],
) -> (FloatTensor<B>, [FloatTensor<B>; 3]) {
    let [q, k, v] = weights.each_ref().map(|w| B::lora_linear_fwd(x.clone(), w));
    let y = Tensor::cat(
        vec![
            tensor::<B, 2>(q.0),
            tensor::<B, 2>(k.0),
            tensor::<B, 2>(v.0),
        ],
        1,
    );
    (prim(y), [q.1, k.1, v.1])
}

/// Backward: splits `dy`, runs the three LoRA backwards and sums their input gradients.
pub(crate) fn backward_kernel<B: FusedBackend>(
    dy: FloatTensor<B>,
    x: FloatTensor<B>,
    xa: [FloatTensor<B>; 3],
    weights: &[LoraWeights<FloatTensor<B>>; 3],
    want_dw: [bool; 3],
) -> (FloatTensor<B>, [LoraGrads<FloatTensor<B>>; 3]) {
    let dy = tensor::<B, 2>(dy);
    let widths = weights.each_ref().map(|w| match &w.w {
        BaseWeight::Dense(t) => tensor::<B, 2>(t.clone()).dims()[1],
        BaseWeight::Packed(p) => p.d_out(),
    });
    let starts = [0, widths[0], widths[0] + widths[1]];
    let [q, k, v] = [0, 1, 2].map(|i| {
        let dy_i = dy.clone().narrow(1, starts[i], widths[i]);
        B::lora_linear_bwd(
            prim(dy_i),
            x.clone(),
            xa[i].clone(),
            &weights[i],
            want_dw[i],
        )
    });
    let dx = tensor::<B, 2>(q.0) + tensor::<B, 2>(k.0) + tensor::<B, 2>(v.0);
    (prim(dx), [q.1, k.1, v.1])
}
