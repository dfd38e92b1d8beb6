//! Chunked fused linear + cross-entropy: `mean over non-ignored targets of
//! CE(hidden·W_lm, target)`, computed `chunk` tokens at a time so the `[tokens, vocab]` logits
//! never exist at once, and only for the rows whose target carries a loss. When gradients are
//! wanted the forward turns each chunk's logits straight into `d_hidden` (and `d_W_lm` when the
//! head is trainable) while they exist; the backward only scales those by the upstream gradient.

use burn::prelude::*;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::IndexingUpdateOp;

use crate::backend::{CeGradients, CeSaved, FusedBackend};
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

/// Row ranges `[start, start + len)` of the chunks.
fn chunks(rows: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..rows)
        .step_by(chunk)
        .map(move |start| (start, chunk.min(rows - start)))
}

/// Indices of the rows whose target is not [`IGNORE_INDEX`] (read on the host: the batch's
/// targets are small).
fn loss_rows<B: Backend>(targets: &Tensor<B, 1, Int>) -> Vec<i64> {
    targets
        .clone()
        .into_data()
        .iter::<i64>()
        .enumerate()
        .filter(|&(_, t)| t != IGNORE_INDEX)
        .map(|(i, _)| i as i64)
        .collect()
}

/// Forward over the frozen-linear op and the cross-entropy leaf kernels: only the loss-bearing
/// rows go through the head; with `grads` each chunk's logits also become
/// `dlogits = (softmax − onehot)/count` and then `dh = dlogits·Wᵀ` (and `dW += hᵀ·dlogits`)
/// before the chunk is dropped.
pub(crate) fn forward_kernel<B: FusedBackend>(
    hidden: FloatTensor<B>,
    w_lm: FloatTensor<B>,
    targets: IntTensor<B>,
    chunk: usize,
    grads: CeGradients,
) -> (FloatTensor<B>, CeSaved<B>) {
    let hidden = tensor::<B, 2>(hidden);
    let w = tensor::<B, 2>(w_lm);
    let targets = Tensor::<B, 1, Int>::from_primitive(targets);
    let device = hidden.device();
    let [tokens, d] = hidden.dims();
    let vocab = w.dims()[1];
    let keep = loss_rows(&targets);
    let count = keep.len();
    let (rows, hidden, targets) = if count == tokens {
        (None, hidden, targets)
    } else {
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(keep, [count]), &device);
        let h = hidden.select(0, idx.clone());
        let t = targets.select(0, idx.clone());
        (Some(idx), h, t)
    };
    let scale = Tensor::<B, 1>::from_floats([1.0 / count.max(1) as f32], &device);
    let backward = grads != CeGradients::None;
    let mut nll = Vec::new();
    let mut dh = Vec::new();
    let mut dw: Option<Tensor<B, 2>> = None;
    for (start, len) in chunks(count, chunk) {
        let h = hidden.clone().narrow(0, start, len);
        let logits = tensor::<B, 2>(B::frozen_linear_fwd(prim(h.clone()), prim(w.clone())));
        let t = targets.clone().narrow(0, start, len);
        let (lse, n) = B::chunk_cross_entropy_fwd(prim(logits.clone()), t.clone().into_primitive());
        nll.push(tensor::<B, 1>(n));
        if !backward {
            continue;
        }
        let dlogits = tensor::<B, 2>(B::chunk_cross_entropy_bwd(
            prim(logits),
            lse,
            t.into_primitive(),
            prim(scale.clone()),
        ));
        if grads == CeGradients::HiddenAndHead {
            let part = h.transpose().matmul(dlogits.clone());
            dw = Some(match dw {
                Some(acc) => acc + part,
                None => part,
            });
        }
        dh.push(tensor::<B, 2>(B::frozen_linear_bwd(
            prim(dlogits),
            prim(w.clone()),
        )));
    }
    let loss = if nll.is_empty() {
        Tensor::<B, 1>::zeros([1], &device)
    } else {
        Tensor::cat(nll, 0).sum() * scale
    };
    let saved = CeSaved {
        rows: rows.map(Tensor::into_primitive),
        tokens,
        d,
        d_hidden: prim(if dh.is_empty() {
            Tensor::<B, 2>::zeros([0, d], &device)
        } else {
            Tensor::cat(dh, 0)
        }),
        d_w_lm: (grads == CeGradients::HiddenAndHead)
            .then(|| prim(dw.unwrap_or_else(|| Tensor::zeros([d, vocab], &device)))),
    };
    (prim(loss), saved)
}

/// Backward: `dh = dloss·saved.d_hidden` scattered into the loss-bearing rows (zero elsewhere),
/// `dW = dloss·saved.d_w_lm`.
pub(crate) fn backward_kernel<B: FusedBackend>(
    dloss: FloatTensor<B>,
    saved: CeSaved<B>,
) -> (FloatTensor<B>, Option<FloatTensor<B>>) {
    let dloss = tensor::<B, 1>(dloss);
    let d_rows = tensor::<B, 2>(saved.d_hidden) * dloss.clone().reshape([1, 1]);
    let dh = match saved.rows {
        None => d_rows,
        Some(_) if d_rows.dims()[0] == 0 => {
            Tensor::zeros([saved.tokens, saved.d], &d_rows.device())
        }
        Some(rows) => {
            let rows = Tensor::<B, 1, Int>::from_primitive(rows);
            Tensor::<B, 2>::zeros([saved.tokens, saved.d], &d_rows.device()).select_assign(
                0,
                rows,
                d_rows,
                IndexingUpdateOp::Add,
            )
        }
    };
    let dw = saved
        .d_w_lm
        .map(|dw| prim(tensor::<B, 2>(dw) * dloss.reshape([1, 1])));
    (prim(dh), dw)
}
