//! The attention softmax as one op: `probs = softmax(scale·scores)` along the last dim with
//! masked positions excluded (probability 0; a row with every position masked is all zeros).
//!
//! PyTorch runs an eager attention's scale, mask and softmax as three kernels and its SDPA as
//! one; Burn's `softmax` alone is five tensor ops (max, subtract, exp, sum, divide) that under
//! autodiff each write a score-sized tensor and record a backward node, with a scalar `exp`
//! per element. This op is one pass per row forward (tb-kernels' SIMD exp on Flex) and one
//! backward node, `dscores = scale·probs ⊙ (dprobs − Σ dprobs ⊙ probs)`, that keeps only the
//! probabilities. Other backends (CubeCL) use the default bodies, plain Burn tensor ops.

mod autodiff;
#[cfg(feature = "cubecl")]
mod cube;
mod flex;

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::ops::{BoolTensor, FloatTensor};
use burn::tensor::{Shape, TensorMetadata, TensorPrimitive};

/// Backends with the masked softmax op (see the module docs). The default bodies are plain
/// Burn tensor ops, correct on any backend.
pub trait SoftmaxBackend: Backend {
    /// `softmax(scale·scores)` over the last dim, 0 where `mask` is true.
    ///
    /// # Shapes
    /// - scores: `[.., n]`, mask: the same shape
    /// - output: the same shape
    fn masked_softmax_fwd(
        scores: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        default_fwd::<Self>(scores, mask, scale)
    }

    /// `dscores = scale·probs ⊙ (dprobs − Σ_last dprobs ⊙ probs)`.
    ///
    /// # Shapes
    /// - probs, dprobs: `[.., n]`
    /// - output: the same shape
    fn masked_softmax_bwd(
        probs: FloatTensor<Self>,
        dprobs: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        default_bwd::<Self>(probs, dprobs, scale)
    }

    /// The op for the model: under autodiff it records the backward above with the scores as
    /// the only parent; elsewhere it is [`Self::masked_softmax_fwd`].
    ///
    /// # Shapes
    /// As [`Self::masked_softmax_fwd`].
    fn masked_softmax(
        scores: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        Self::masked_softmax_fwd(scores, mask, scale)
    }
}

/// `softmax(scale·scores)` along the last dim with the positions where `mask` is true
/// excluded, through the backend's op. A mask of another shape is broadcast to the scores'.
///
/// # Shapes
/// - scores: `[.., n]`, mask: broadcastable to it
/// - output: the scores' shape
pub fn masked_softmax<B: SoftmaxBackend, const D: usize>(
    scores: Tensor<B, D>,
    mask: Tensor<B, D, Bool>,
    scale: f32,
) -> Tensor<B, D> {
    let dims = scores.dims();
    let mask = if mask.dims() == dims {
        mask
    } else {
        mask.expand(dims)
    };
    Tensor::from_primitive(TensorPrimitive::Float(B::masked_softmax(
        scores.into_primitive().tensor(),
        mask.into_primitive(),
        scale,
    )))
}

/// `[rows, n]` view of a `[.., n]` primitive, and its shape.
fn rows_of<B: Backend>(t: FloatTensor<B>) -> (Tensor<B, 2>, Shape) {
    let shape = t.shape();
    let n = shape.last().copied().unwrap_or(1).max(1);
    let rows = shape.num_elements() / n;
    let t = B::float_reshape(t, Shape::new([rows, n]));
    (Tensor::from_primitive(TensorPrimitive::Float(t)), shape)
}

/// A `[rows, n]` result back in the `[.., n]` shape.
fn unrows<B: Backend>(t: Tensor<B, 2>, shape: Shape) -> FloatTensor<B> {
    B::float_reshape(t.into_primitive().tensor(), shape)
}

/// Burn's softmax of the scaled, masked scores; masked positions (and fully masked rows, which
/// Burn's softmax makes NaN) set to 0.
fn default_fwd<B: Backend>(
    scores: FloatTensor<B>,
    mask: BoolTensor<B>,
    scale: f32,
) -> FloatTensor<B> {
    let (x, shape) = rows_of::<B>(scores);
    let mask = Tensor::<B, 2, Bool>::from_primitive(B::bool_reshape(mask, Shape::new(x.dims())));
    let probs = softmax(
        x.mul_scalar(scale)
            .mask_fill(mask.clone(), f32::NEG_INFINITY),
        1,
    )
    .mask_fill(mask, 0.0);
    unrows(probs, shape)
}

/// The softmax backward with Burn's ops.
fn default_bwd<B: Backend>(
    probs: FloatTensor<B>,
    dprobs: FloatTensor<B>,
    scale: f32,
) -> FloatTensor<B> {
    let (y, shape) = rows_of::<B>(probs);
    let (dy, _) = rows_of::<B>(dprobs);
    let dot = (dy.clone() * y.clone()).sum_dim(1);
    unrows((y * (dy - dot)).mul_scalar(scale), shape)
}

#[cfg(test)]
mod tests;
