//! RMSNorm (HF `LlamaRMSNorm`) whose forward keeps the inverse RMS of each row for the backward.

use burn::prelude::*;

use super::flat_rows;
use crate::backend::FusedBackend;
use crate::error::{expect_dims, Result};
use crate::prim::{prim, tensor};

/// Normalises the last dimension: `x · inv_rms · weight` with `inv_rms = 1/sqrt(mean(x²)+eps)`.
///
/// # Shapes
/// - x: `[.., d]`, weight: `[d]`
/// - output: `[.., d]`
///
/// # Errors
/// [`crate::FusedError::Shape`] when `weight` is not `[d]`.
pub fn rms_norm<B: FusedBackend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 1>,
    eps: f64,
) -> Result<Tensor<B, D>> {
    expect_dims(
        "rms_norm",
        "weight width",
        &weight.dims(),
        &[x.dims()[D - 1]],
    )?;
    let (x, dims) = flat_rows(x);
    let y = B::fused_rms_norm(prim(x), prim(weight), eps as f32);
    Ok(tensor::<B, 2>(y).reshape(dims))
}
