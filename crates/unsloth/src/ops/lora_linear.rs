//! LoRA linear `y = x·W + s·(x·A)·B` with a hand-written backward that computes `dx`, `dA` and
//! `dB` from the kept `x·A` and never forms a dense `dW` (unless the base weight is trainable).
//! A dense base multiplies through tb-model's frozen-linear op (the GEMM the PEFT-style trainer
//! uses too).
//! The base may be a packed 4-bit weight ([`BaseWeight::Packed`]): its terms go through
//! [`FusedBackend::packed_linear_fwd`]/[`FusedBackend::packed_linear_bwd`], and it never gets a
//! `dW`.

use burn::prelude::*;
use burn::tensor::ops::FloatTensor;

use super::flat_rows;
use crate::backend::{BaseWeight, FusedBackend, LoraGrads, LoraWeights};
use crate::error::{expect_dims, FusedError, Result};
use crate::prim::{prim, tensor};

/// Applies a LoRA-adapted linear to the last dimension.
///
/// # Shapes
/// - x: `[.., d_in]`; `lora`: w `[d_in, d_out]` (packed: `[d_out, d_in]`), a `[d_in, r]`,
///   b `[r, d_out]`
/// - output: `[.., d_out]`
///
/// # Errors
/// [`FusedError::Shape`] when the widths disagree.
pub fn lora_linear<B: FusedBackend, const D: usize>(
    x: Tensor<B, D>,
    lora: LoraWeights<Tensor<B, 2>>,
) -> Result<Tensor<B, D>> {
    let d_out = check_lora("lora_linear", x.dims()[D - 1], &lora)?;
    let (x, mut dims) = flat_rows(x);
    let y = B::fused_lora_linear(prim(x), lora.map(prim));
    dims[D - 1] = d_out;
    Ok(tensor::<B, 2>(y).reshape(dims))
}

/// Checks one LoRA weight triple against the input width; returns `d_out`.
pub(crate) fn check_lora<B: Backend>(
    op: &'static str,
    d_in: usize,
    lora: &LoraWeights<Tensor<B, 2>>,
) -> Result<usize> {
    let [w_in, d_out] = lora.w.dims();
    let [a_in, r] = lora.a.dims();
    expect_dims(op, "W rows vs input width", &[w_in], &[d_in])?;
    expect_dims(op, "A shape", &[a_in, r], &[d_in, r])?;
    expect_dims(op, "B shape", &lora.b.dims(), &[r, d_out])?;
    if r == 0 {
        return Err(FusedError::Invalid {
            op,
            what: "LoRA rank must be positive",
        });
    }
    Ok(d_out)
}

/// Forward over tensor ops: returns `(y, x·A)`.
pub(crate) fn forward_kernel<B: FusedBackend>(
    x: FloatTensor<B>,
    lora: &LoraWeights<FloatTensor<B>>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let x = tensor::<B, 2>(x);
    let xa = x.clone().matmul(tensor(lora.a.clone()));
    let branch = xa
        .clone()
        .mul_scalar(lora.scale)
        .matmul(tensor(lora.b.clone()));
    let y = match &lora.w {
        // The base GEMM accumulates onto the LoRA branch: no second output, no add pass.
        BaseWeight::Dense(w) => B::frozen_linear_fwd_add(prim(x), w.clone(), prim(branch)),
        BaseWeight::Packed(p) => prim(tensor::<B, 2>(B::packed_linear_fwd(prim(x), p)) + branch),
    };
    (y, prim(xa))
}

/// Backward over tensor ops:
/// `dxa = s·dy·Bᵀ`, `dB = s·(xa)ᵀ·dy`, `dA = xᵀ·dxa`, `dx = dy·Wᵀ + dxa·Aᵀ` (`dW = xᵀ·dy`
/// only for a dense base and `want_dw`).
pub(crate) fn backward_kernel<B: FusedBackend>(
    dy: FloatTensor<B>,
    x: FloatTensor<B>,
    xa: FloatTensor<B>,
    lora: &LoraWeights<FloatTensor<B>>,
    want_dw: bool,
) -> (FloatTensor<B>, LoraGrads<FloatTensor<B>>) {
    let dy = tensor::<B, 2>(dy);
    let x = tensor::<B, 2>(x);
    let a = tensor::<B, 2>(lora.a.clone());
    let b = tensor::<B, 2>(lora.b.clone());
    let s = lora.scale;

    let dxa = dy.clone().matmul(b.transpose()).mul_scalar(s);
    let db = tensor::<B, 2>(xa)
        .mul_scalar(s)
        .transpose()
        .matmul(dy.clone());
    let da = x.clone().transpose().matmul(dxa.clone());
    let dx_branch = dxa.matmul(a.transpose());
    let (dw, dx) = match &lora.w {
        BaseWeight::Dense(w) => (
            want_dw.then(|| prim(x.transpose().matmul(dy.clone()))),
            B::frozen_linear_bwd_add(prim(dy), w.clone(), prim(dx_branch)),
        ),
        BaseWeight::Packed(p) => (
            None,
            prim(tensor::<B, 2>(B::packed_linear_bwd(prim(dy), p)) + dx_branch),
        ),
    };
    (
        dx,
        LoraGrads {
            dw,
            da: prim(da),
            db: prim(db),
        },
    )
}
