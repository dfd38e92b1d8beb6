//! SwiGLU activation `silu(gate) · up` with a fused backward.

use burn::prelude::*;

use crate::backend::FusedBackend;
use crate::error::{expect_dims, Result};
use crate::prim::{prim, tensor};

/// `silu(gate) · up`, elementwise.
///
/// # Shapes
/// - gate, up, output: the same shape
///
/// # Errors
/// [`crate::FusedError::Shape`] when the shapes differ.
pub fn swiglu<B: FusedBackend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Result<Tensor<B, D>> {
    expect_dims("swiglu", "gate vs up", &gate.dims(), &up.dims())?;
    Ok(tensor(B::fused_swiglu(prim(gate), prim(up))))
}
