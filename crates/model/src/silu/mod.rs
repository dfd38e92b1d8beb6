//! SiLU as one op, `y = x·σ(x)`, as PyTorch's `F.silu` is one kernel with its own backward.
//! Burn's `silu` is a sigmoid and a product: under autodiff two backward nodes, a scalar `exp`
//! per element and an extra activation-sized tensor kept per MLP. This op keeps only its input
//! and its backward is `dx = dy·σ(x)·(1 + x·(1 − σ(x)))`, both passes on tb-kernels' SIMD exp
//! on Flex; other backends (CubeCL) use the default bodies, plain Burn tensor ops.

mod autodiff;
#[cfg(feature = "cubecl")]
mod cube;
mod flex;

use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorPrimitive;

/// Backends with the SiLU op (see the module docs). The default bodies are plain Burn tensor
/// ops, correct on any backend.
pub trait SiluBackend: Backend {
    /// `y = x·σ(x)`, elementwise.
    ///
    /// # Shapes
    /// - x, output: any shape, the same
    fn silu_fwd(x: FloatTensor<Self>) -> FloatTensor<Self> {
        default_fwd::<Self>(x)
    }

    /// `dx = dy·σ(x)·(1 + x·(1 − σ(x)))`, elementwise.
    ///
    /// # Shapes
    /// - x, dy, output: the same shape
    fn silu_bwd(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        default_bwd::<Self>(x, dy)
    }

    /// The op for the model: under autodiff it records the backward above with `x` as the only
    /// parent; elsewhere it is [`Self::silu_fwd`].
    ///
    /// # Shapes
    /// As [`Self::silu_fwd`].
    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::silu_fwd(x)
    }
}

/// `x·σ(x)` through the backend's op.
///
/// # Shapes
/// - x, output: any shape, the same
pub fn silu<B: SiluBackend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::silu(x.into_primitive().tensor())))
}

fn float<B: Backend>(t: FloatTensor<B>) -> Tensor<B, 1> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// `x·σ(x)` with Burn's ops (any rank: elementwise, so the rank is irrelevant).
fn default_fwd<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let x = float::<B>(x);
    (x.clone() * sigmoid(x)).into_primitive().tensor()
}

/// The SiLU backward with Burn's ops.
fn default_bwd<B: Backend>(x: FloatTensor<B>, dy: FloatTensor<B>) -> FloatTensor<B> {
    let (x, dy) = (float::<B>(x), float::<B>(dy));
    let s = sigmoid(x.clone());
    let slope = s.clone() * (x * (s.ones_like() - s.clone()) + 1.0);
    (dy * slope).into_primitive().tensor()
}

#[cfg(test)]
mod tests;
