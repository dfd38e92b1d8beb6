//! Cross-entropy kernels over one chunk of logits, one rayon task per row, on tb-kernels'
//! SIMD softmax primitives.

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;
use tb_kernels::vector;
use tb_model::flex_f32::ints;

use super::{output, F32View};
use crate::ops::IGNORE_INDEX;

/// The target's column, or `None` for ignored (or out-of-range) targets.
fn column(target: i64, vocab: usize) -> Option<usize> {
    if target == IGNORE_INDEX {
        return None;
    }
    usize::try_from(target).ok().filter(|&t| t < vocab)
}

/// Returns `(lse [rows], nll [rows])`, `nll = lse − logit[target]` (0 when ignored).
pub(crate) fn forward(logits: FlexTensor, targets: FlexTensor) -> (FlexTensor, FlexTensor) {
    let logits = F32View::new(logits);
    let [rows, vocab] = logits.dims();
    let targets = ints(targets);
    let mut lse = vec![0.0f32; rows];
    let mut nll = vec![0.0f32; rows];
    if vocab > 0 {
        lse.par_iter_mut()
            .zip(nll.par_iter_mut())
            .zip(logits.slice().par_chunks(vocab))
            .zip(targets.par_iter())
            .for_each(|(((lse, nll), row), &t)| {
                *lse = vector::logsumexp(row);
                *nll = column(t, vocab).map_or(0.0, |c| *lse - row[c]);
            });
    }
    (output(lse, [rows]), output(nll, [rows]))
}

/// `dlogits = (exp(logits − lse) − onehot(target)) · scale`, zero rows where ignored.
pub(crate) fn backward(
    logits: FlexTensor,
    lse: FlexTensor,
    targets: FlexTensor,
    scale: FlexTensor,
) -> FlexTensor {
    let logits = F32View::new(logits);
    let lse = F32View::new(lse);
    let scale = F32View::new(scale).slice().first().copied().unwrap_or(0.0);
    let [rows, vocab] = logits.dims();
    let targets = ints(targets);
    let mut d = vec![0.0f32; rows * vocab];
    if vocab > 0 {
        d.par_chunks_mut(vocab)
            .zip(logits.slice().par_chunks(vocab))
            .zip(lse.slice().par_iter())
            .zip(targets.par_iter())
            .for_each(|(((d_row, row), &lse), &t)| {
                if let Some(c) = column(t, vocab) {
                    vector::exp_shifted_scaled(d_row, row, lse, scale);
                    d_row[c] -= scale;
                }
            });
    }
    output(d, [rows, vocab])
}
