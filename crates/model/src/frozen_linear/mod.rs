//! The frozen-base linear op shared by both trainers and by inference: `y = x·W` with a weight
//! that never gets a gradient, so its backward is only `dx = dy·Wᵀ`.
//!
//! It is a backend extension ([`FrozenLinearBackend`]) so each backend multiplies with what it
//! does best while the model code stays one: on Flex (the CPU) the op runs tb-kernels' GEMM,
//! which chooses its micro-kernel for the CPU at run time (AVX-512 BF16, AVX-512F, AVX2+FMA or
//! a scalar reference) and reads the weight in place, f32 or bf16, in any stride (the loaders
//! keep HF's `[out, in]` storage and view it transposed); a bf16 weight multiplies in bf16 where
//! the CPU's `vdpbf16ps` kernel is the fast one, else it is widened exactly as
//! it is packed. Under [`Autodiff`] a frozen weight
//! records one backward node with the input as its only parent; a weight that requires a
//! gradient falls back to Burn's own matmul, so `dW` is still there for whoever asks. Other
//! backends (CubeCL) use Burn's matmul in the input's dtype.
//!
//! [`Autodiff`]: burn::backend::Autodiff

mod autodiff;
#[cfg(feature = "cubecl")]
mod cube;
mod flex;

use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{TensorMetadata, TensorPrimitive};

/// Backends that multiply by a frozen weight (see the module docs).
///
/// The default bodies are plain Burn tensor ops, correct on any backend; a backend overrides
/// them with a faster kernel.
pub trait FrozenLinearBackend: Backend {
    /// `y = x·W`: the forward of a frozen projection.
    ///
    /// # Shapes
    /// - x: `[rows, d_in]`
    /// - w: `[d_in, d_out]` (Burn layout, any strides; f32 or bf16)
    /// - output: `[rows, d_out]`, in x's dtype
    fn frozen_linear_fwd(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        default_fwd::<Self>(x, w)
    }

    /// `dx = dy·Wᵀ`: the input gradient of a frozen projection.
    ///
    /// # Shapes
    /// - dy: `[rows, d_out]`
    /// - w: `[d_in, d_out]` (as in [`Self::frozen_linear_fwd`])
    /// - output: `[rows, d_in]`, in dy's dtype
    fn frozen_linear_bwd(dy: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        default_bwd::<Self>(dy, w)
    }

    /// `y = c + x·W`, `c` consumed: on Flex the GEMM accumulates into `c`'s buffer (in place
    /// when nothing else holds it), so a term added to the projection (a LoRA branch) costs
    /// neither another output buffer nor an add pass. Not recorded by autodiff.
    ///
    /// # Shapes
    /// - x: `[rows, d_in]`, w: `[d_in, d_out]`, c: `[rows, d_out]`
    /// - output: `[rows, d_out]`, in c's dtype
    fn frozen_linear_fwd_add(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        c: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        default_fwd_add::<Self>(x, w, c)
    }

    /// `dx = c + dy·Wᵀ`, `c` consumed as in [`Self::frozen_linear_fwd_add`].
    ///
    /// # Shapes
    /// - dy: `[rows, d_out]`, w: `[d_in, d_out]`, c: `[rows, d_in]`
    /// - output: `[rows, d_in]`, in c's dtype
    fn frozen_linear_bwd_add(
        dy: FloatTensor<Self>,
        w: FloatTensor<Self>,
        c: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        default_bwd_add::<Self>(dy, w, c)
    }

    /// `y = x·W` for the model: under autodiff it records `dx = dy·Wᵀ` (or, for a weight that
    /// requires a gradient, Burn's matmul with both gradients); elsewhere it is
    /// [`Self::frozen_linear_fwd`].
    ///
    /// # Shapes
    /// As [`Self::frozen_linear_fwd`].
    fn frozen_linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::frozen_linear_fwd(x, w)
    }
}

/// `x·W` through the backend's frozen-linear op.
///
/// # Shapes
/// - x: `[rows, d_in]`, w: `[d_in, d_out]`
/// - output: `[rows, d_out]`
pub fn frozen_linear<B: FrozenLinearBackend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    tensor(B::frozen_linear(prim(x), prim(w)))
}

/// [`FrozenLinearBackend::frozen_linear_fwd_add`]'s default: the product, then an add.
fn default_fwd_add<B: FrozenLinearBackend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    c: FloatTensor<B>,
) -> FloatTensor<B> {
    B::float_add(c, B::frozen_linear_fwd(x, w))
}

/// [`FrozenLinearBackend::frozen_linear_bwd_add`]'s default: the product, then an add.
fn default_bwd_add<B: FrozenLinearBackend>(
    dy: FloatTensor<B>,
    w: FloatTensor<B>,
    c: FloatTensor<B>,
) -> FloatTensor<B> {
    B::float_add(c, B::frozen_linear_bwd(dy, w))
}

/// `x·W` through Burn's matmul, with W cast to x's dtype.
fn default_fwd<B: Backend>(x: FloatTensor<B>, w: FloatTensor<B>) -> FloatTensor<B> {
    let dtype = x.dtype();
    prim(tensor::<B>(x).matmul(tensor::<B>(w).cast(dtype)))
}

/// `dy·Wᵀ` through Burn's matmul, with W cast to dy's dtype.
fn default_bwd<B: Backend>(dy: FloatTensor<B>, w: FloatTensor<B>) -> FloatTensor<B> {
    let dtype = dy.dtype();
    prim(tensor::<B>(dy).matmul(tensor::<B>(w).cast(dtype).transpose()))
}

/// Wraps a float primitive as a matrix.
fn tensor<B: Backend>(p: FloatTensor<B>) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// Unwraps a matrix into its primitive.
fn prim<B: Backend>(t: Tensor<B, 2>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}
