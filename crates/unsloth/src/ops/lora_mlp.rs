//! LoRA-MLP: `down(silu(gate(x)) · up(x))` with LoRA on gate, up and down, in one op with a
//! hand-derived backward (Unsloth's `LoRA_MLP`). The forward keeps the two pre-activation
//! projections and the three `·A` products; `h` is recomputed in the backward.

use burn::prelude::*;
use burn::tensor::ops::FloatTensor;

use super::flat_rows;
use super::lora_linear::check_lora;
use crate::backend::{FusedBackend, LoraGrads, LoraWeights, MlpSaved};
use crate::error::{expect_dims, Result};
use crate::prim::{prim, tensor};

/// Applies the LoRA-adapted SwiGLU MLP; `weights` are gate, up, down.
///
/// # Shapes
/// - x: `[.., hidden]`
/// - gate, up: w `[hidden, inter]`, a `[hidden, r]`, b `[r, inter]`
/// - down: w `[inter, hidden]`, a `[inter, r]`, b `[r, hidden]`
/// - output: `[.., hidden]`
///
/// # Errors
/// [`crate::FusedError::Shape`] when the widths disagree.
pub fn lora_mlp<B: FusedBackend, const D: usize>(
    x: Tensor<B, D>,
    weights: [LoraWeights<Tensor<B, 2>>; 3],
) -> Result<Tensor<B, D>> {
    let hidden = x.dims()[D - 1];
    let [gate, up, down] = &weights;
    let inter = check_lora("lora_mlp", hidden, gate)?;
    expect_dims(
        "lora_mlp",
        "up width vs gate width",
        &[check_lora("lora_mlp", hidden, up)?],
        &[inter],
    )?;
    expect_dims(
        "lora_mlp",
        "down output vs hidden",
        &[check_lora("lora_mlp", inter, down)?],
        &[hidden],
    )?;
    let (x, dims) = flat_rows(x);
    let y = B::fused_lora_mlp(prim(x), weights.map(|w| w.map(prim)));
    Ok(tensor::<B, 2>(y).reshape(dims))
}

/// Forward over the LoRA-linear and SwiGLU kernels.
pub(crate) fn forward_kernel<B: FusedBackend>(
    x: FloatTensor<B>,
    weights: &[LoraWeights<FloatTensor<B>>; 3],
) -> (FloatTensor<B>, MlpSaved<FloatTensor<B>>) {
    let [gate_w, up_w, down_w] = weights;
    let (gate, xa_gate) = B::lora_linear_fwd(x.clone(), gate_w);
    let (up, xa_up) = B::lora_linear_fwd(x, up_w);
    let h = B::swiglu_fwd(gate.clone(), up.clone());
    let (out, ha_down) = B::lora_linear_fwd(h, down_w);
    let saved = MlpSaved {
        gate,
        up,
        xa_gate,
        xa_up,
        ha_down,
    };
    (out, saved)
}

/// Backward: down-projection backward on the recomputed `h`, SwiGLU backward, then the gate
/// and up backward whose input gradients add up.
pub(crate) fn backward_kernel<B: FusedBackend>(
    dout: FloatTensor<B>,
    x: FloatTensor<B>,
    saved: MlpSaved<FloatTensor<B>>,
    weights: &[LoraWeights<FloatTensor<B>>; 3],
    want_dw: [bool; 3],
) -> (FloatTensor<B>, [LoraGrads<FloatTensor<B>>; 3]) {
    let [gate_w, up_w, down_w] = weights;
    let h = B::swiglu_fwd(saved.gate.clone(), saved.up.clone());
    let (dh, g_down) = B::lora_linear_bwd(dout, h, saved.ha_down, down_w, want_dw[2]);
    let (dgate, dup) = B::swiglu_bwd(dh, saved.gate, saved.up);
    let (dx_gate, g_gate) = B::lora_linear_bwd(dgate, x.clone(), saved.xa_gate, gate_w, want_dw[0]);
    let (dx_up, g_up) = B::lora_linear_bwd(dup, x, saved.xa_up, up_w, want_dw[1]);
    let dx = tensor::<B, 2>(dx_gate) + tensor::<B, 2>(dx_up);
    (prim(dx), [g_gate, g_up, g_down])
}
