//! Causal self-attention over packed rows with grouped-query heads. The forward keeps one
//! logsumexp per query row; the backward recomputes the scores block by block, so nothing
//! `[seq, seq]`-sized is kept between forward and backward.

use burn::prelude::*;

use crate::backend::{FusedBackend, Precision};
use crate::error::{expect_dims, FusedError, Result};
use crate::prim::{prim, tensor};

/// Packed causal attention: query `i` attends to key `j` when `j <= i` and
/// `segments[b][i] == segments[b][j]` (tokens of different examples never see each other).
/// Query head `h` uses key/value head `h / (heads / kv_heads)` (HF `repeat_kv`).
///
/// `scale` defaults to `1/sqrt(head_dim)`; `precision` is the products' arithmetic (see
/// [`FusedBackend::attention_fwd`]).
///
/// # Shapes
/// - q: `[batch, seq, heads, head_dim]`
/// - k, v: `[batch, seq, kv_heads, head_dim]`
/// - segments: `[batch, seq]`
/// - output: `[batch, seq, heads, head_dim]`
///
/// # Errors
/// [`FusedError`] when the shapes disagree or `heads` is not a multiple of `kv_heads`.
pub fn attention<B: FusedBackend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    segments: Tensor<B, 2, Int>,
    scale: Option<f32>,
    precision: Precision,
) -> Result<Tensor<B, 4>> {
    let [b, s, h, d] = q.dims();
    let [_, _, kvh, _] = k.dims();
    expect_dims("attention", "k", &k.dims(), &[b, s, kvh, d])?;
    expect_dims("attention", "v", &v.dims(), &[b, s, kvh, d])?;
    expect_dims("attention", "segments", &segments.dims(), &[b, s])?;
    if kvh == 0 || !h.is_multiple_of(kvh) {
        return Err(FusedError::Invalid {
            op: "attention",
            what: "heads must be a positive multiple of kv_heads",
        });
    }
    let scale = scale.unwrap_or(1.0 / (d as f32).sqrt());
    Ok(tensor(B::fused_attention(
        prim(q),
        prim(k),
        prim(v),
        segments.into_primitive(),
        scale,
        precision,
    )))
}
