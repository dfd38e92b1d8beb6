//! Rotate-half RoPE (HF Llama/Mistral layout) applied to queries and keys in one op.
//!
//! Positions come per token, so packed rows whose positions restart at every example work as
//! they are: build `cos`/`sin` with [`rope_cos_sin`] from the packed position ids.

use burn::prelude::*;

use crate::backend::FusedBackend;
use crate::error::{expect_dims, FusedError, Result};
use crate::prim::{prim, tensor};

/// cos and sin of `position · theta^(-2i/head_dim)` for `i < head_dim/2`, computed in f32 as HF
/// does.
///
/// # Shapes
/// - positions: `[batch, seq]`
/// - output: two tensors `[batch, seq, head_dim / 2]`
///
/// # Errors
/// [`FusedError::Invalid`] when `head_dim` is odd or zero.
pub fn rope_cos_sin<B: Backend>(
    positions: Tensor<B, 2, Int>,
    head_dim: usize,
    theta: f64,
) -> Result<(Tensor<B, 3>, Tensor<B, 3>)> {
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(FusedError::Invalid {
            op: "rope_cos_sin",
            what: "head_dim must be even and positive",
        });
    }
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / (theta.powf((2 * i) as f64 / head_dim as f64)) as f32)
        .collect();
    let device = positions.device();
    let inv_freq = Tensor::<B, 1>::from_data(TensorData::new(inv_freq, [half]), &device);
    let angle = positions.float().unsqueeze_dim::<3>(2) * inv_freq.reshape([1, 1, half]);
    Ok((angle.clone().cos(), angle.sin()))
}

/// Rotates queries and keys by the per-token angles.
///
/// # Shapes
/// - q: `[batch, seq, heads, head_dim]`, k: `[batch, seq, kv_heads, head_dim]`
/// - cos, sin: `[batch, seq, head_dim / 2]`
/// - output: (`q` `[batch, seq, heads, head_dim]`, `k` `[batch, seq, kv_heads, head_dim]`)
///
/// # Errors
/// [`FusedError::Shape`] when the shapes disagree.
pub fn rope_qk<B: FusedBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    cos: Tensor<B, 3>,
    sin: Tensor<B, 3>,
) -> Result<(Tensor<B, 4>, Tensor<B, 4>)> {
    let [b, s, h, d] = q.dims();
    let [kb, ks, kvh, kd] = k.dims();
    expect_dims("rope_qk", "k vs q", &[kb, ks, kd], &[b, s, d])?;
    if !d.is_multiple_of(2) {
        return Err(FusedError::Invalid {
            op: "rope_qk",
            what: "head_dim must be even",
        });
    }
    expect_dims("rope_qk", "cos", &cos.dims(), &[b, s, d / 2])?;
    expect_dims("rope_qk", "sin", &sin.dims(), &[b, s, d / 2])?;
    let qk = tensor::<B, 4>(B::fused_rope_qk(prim(q), prim(k), prim(cos), prim(sin)));
    Ok((qk.clone().narrow(2, 0, h), qk.narrow(2, h, kvh)))
}
