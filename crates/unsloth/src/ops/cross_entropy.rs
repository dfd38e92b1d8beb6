//! Chunked fused linear + cross-entropy: `mean over non-ignored targets of
//! CE(hidden·W_lm, target)`, computed `chunk` tokens at a time so the `[tokens, vocab]` logits
//! never exist at once. The forward keeps one logsumexp per token; the backward recomputes each
//! chunk's logits and turns them straight into `d_hidden` (and `d_W_lm` when it is trainable).

use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};

use crate::backend::{CeSaved, FusedBackend};
use crate::error::{expect_dims, FusedError, Result};
use crate::prim::{prim, tensor};

/// Target id that contributes nothing to the loss (PyTorch/HF convention).
pub const IGNORE_INDEX: i64 = -100;

/// Mean cross-entropy of `hidden·w_lm` against `targets`, skipping [`IGNORE_INDEX`]; 0 when
/// every target is ignored.
///
/// # Shapes
/// - hidden: `[.., d]`, w_lm: `[d, vocab]`, targets: `[..]` (the leading dims of hidden)
/// - output: `[1]`
///
/// # Errors
/// [`FusedError`] on shape mismatch, zero tokens or a zero chunk size.
pub fn linear_cross_entropy<B: FusedBackend, const D: usize, const DT: usize>(
    hidden: Tensor<B, D>,
    w_lm: Tensor<B, 2>,
    targets: Tensor<B, DT, Int>,
    chunk: usize,
) -> Result<Tensor<B, 1>> {
    let dims = hidden.dims();
    expect_dims(
        "linear_cross_entropy",
        "targets vs hidden leading dims",
        &targets.dims(),
        &dims[..D - 1],
    )?;
    expect_dims(
        "linear_cross_entropy",
        "w_lm rows vs hidden width",
        &[w_lm.dims()[0]],
        &[dims[D - 1]],
    )?;
    let (hidden, _) = super::flat_rows(hidden);
    let tokens = hidden.dims()[0];
    if chunk == 0 || tokens == 0 {
        return Err(FusedError::Invalid {
            op: "linear_cross_entropy",
            what: "chunk size and token count must be positive",
        });
    }
    let targets = targets.reshape([tokens]);
    Ok(tensor(B::fused_linear_cross_entropy(
        prim(hidden),
        prim(w_lm),
        targets.into_primitive(),
        chunk,
    )))
}

/// Token ranges `[start, start + len)` of the chunks.
fn chunks(tokens: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..tokens)
        .step_by(chunk)
        .map(move |start| (start, chunk.min(tokens - start)))
}

/// Number of non-ignored targets, at least 1, as a `[1]` tensor.
fn valid_count<B: Backend>(targets: &Tensor<B, 1, Int>) -> Tensor<B, 1> {
    targets
        .clone()
        .not_equal_elem(IGNORE_INDEX)
        .float()
        .sum()
        .clamp_min(1.0)
}

/// Forward over the backend's matmul and the cross-entropy leaf kernel.
pub(crate) fn forward_kernel<B: FusedBackend>(
    hidden: FloatTensor<B>,
    w_lm: FloatTensor<B>,
    targets: IntTensor<B>,
    chunk: usize,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let hidden = tensor::<B, 2>(hidden);
    let w = tensor::<B, 2>(w_lm);
    let targets = Tensor::<B, 1, Int>::from_primitive(targets);
    let tokens = hidden.dims()[0];
    let mut lse = Vec::new();
    let mut nll = Vec::new();
    for (start, len) in chunks(tokens, chunk) {
        let logits = hidden.clone().narrow(0, start, len).matmul(w.clone());
        let t = targets.clone().narrow(0, start, len);
        let (l, n) = B::cross_entropy_fwd(prim(logits), t.into_primitive());
        lse.push(tensor::<B, 1>(l));
        nll.push(tensor::<B, 1>(n));
    }
    let loss = Tensor::cat(nll, 0).sum() / valid_count(&targets);
    (prim(loss), prim(Tensor::cat(lse, 0)))
}

/// Backward: per chunk, `dlogits = (softmax − onehot)·dloss/count`, `dh = dlogits·Wᵀ`,
/// `dW += hᵀ·dlogits`.
pub(crate) fn backward_kernel<B: FusedBackend>(
    dloss: FloatTensor<B>,
    saved: CeSaved<B>,
    want_dw: bool,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    let hidden = tensor::<B, 2>(saved.hidden);
    let w = tensor::<B, 2>(saved.w_lm);
    let w_t = w.clone().transpose();
    let targets = Tensor::<B, 1, Int>::from_primitive(saved.targets);
    let lse = tensor::<B, 1>(saved.lse);
    let scale = tensor::<B, 1>(dloss) / valid_count(&targets);
    let tokens = hidden.dims()[0];
    let mut dh = Vec::new();
    let mut dw: Option<Tensor<B, 2>> = None;
    for (start, len) in chunks(tokens, saved.chunk) {
        let h = hidden.clone().narrow(0, start, len);
        let logits = h.clone().matmul(w.clone());
        let dlogits = tensor::<B, 2>(B::cross_entropy_bwd(
            prim(logits),
            prim(lse.clone().narrow(0, start, len)),
            targets.clone().narrow(0, start, len).into_primitive(),
            prim(scale.clone()),
        ));
        if want_dw {
            let part = h.transpose().matmul(dlogits.clone());
            dw = Some(match dw {
                Some(acc) => acc + part,
                None => part,
            });
        }
        dh.push(dlogits.matmul(w_t.clone()));
    }
    (prim(Tensor::cat(dh, 0)), dw.map(prim))
}
