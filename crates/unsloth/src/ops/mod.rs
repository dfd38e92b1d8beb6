//! The fused ops, one module per op: a checked, tensor-level entry point (the function named
//! after the module) plus, for the matmul-shaped ops, the kernel written over tensor ops.

pub mod attention;
pub mod cross_entropy;
pub mod lora_linear;
pub mod lora_mlp;
pub mod lora_qkv;
pub mod rms_norm;
pub mod rope;
pub mod swiglu;

pub use attention::attention;
pub use cross_entropy::{linear_cross_entropy, IGNORE_INDEX};
pub use lora_linear::lora_linear;
pub use lora_mlp::lora_mlp;
pub use lora_qkv::lora_qkv;
pub use rms_norm::rms_norm;
pub use rope::{rope_cos_sin, rope_qk};
pub use swiglu::swiglu;

/// Flattens all leading dimensions: `[.., d]` → `[rows, d]`.
pub(crate) fn flat_rows<B: burn::prelude::Backend, const D: usize>(
    x: burn::prelude::Tensor<B, D>,
) -> (burn::prelude::Tensor<B, 2>, [usize; D]) {
    let dims = x.dims();
    let d = dims[D - 1];
    let rows = dims[..D - 1].iter().product();
    (x.reshape([rows, d]), dims)
}
