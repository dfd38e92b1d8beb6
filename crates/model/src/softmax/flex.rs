//! [`SoftmaxBackend`] for Flex: one rayon task per block of rows over contiguous f32 data, the
//! exponentials on tb-kernels' SIMD `exp`. Other float dtypes are computed in f32 and returned
//! in their own dtype.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::TensorMetadata;
use rayon::prelude::*;
use tb_kernels::vector;

use super::SoftmaxBackend;
use crate::flex_f32::{contiguous_f32, f32s, into_dtype};

/// Rows per rayon task: enough work per task to amortise the split at attention row lengths.
const ROWS_PER_TASK: usize = 16;

impl SoftmaxBackend for Flex {
    fn masked_softmax_fwd(scores: FlexTensor, mask: FlexTensor, scale: f32) -> FlexTensor {
        let dtype = scores.dtype();
        let n = scores.shape().last().copied().unwrap_or(0);
        // The probabilities overwrite the scores: in place when nothing else holds them (the
        // attention's fresh q·kᵀ), else in a copy.
        let mut probs = contiguous_f32(scores);
        let mask = mask.to_contiguous();
        if n > 0 {
            probs
                .storage_mut::<f32>()
                .par_chunks_mut(n * ROWS_PER_TASK)
                .zip(mask.bytes().par_chunks(n * ROWS_PER_TASK))
                .for_each(|(x, m)| {
                    for (x, m) in x.chunks_mut(n).zip(m.chunks(n)) {
                        softmax_row(x, m, scale);
                    }
                });
        }
        into_dtype(probs, dtype)
    }

    fn masked_softmax_bwd(probs: FlexTensor, dprobs: FlexTensor, scale: f32) -> FlexTensor {
        let dtype = dprobs.dtype();
        let n = probs.shape().last().copied().unwrap_or(0);
        let y = contiguous_f32(probs);
        // The gradient overwrites dprobs (in place when nothing else holds them).
        let mut d = contiguous_f32(dprobs);
        if n > 0 {
            d.storage_mut::<f32>()
                .par_chunks_mut(n * ROWS_PER_TASK)
                .zip(f32s(&y).par_chunks(n * ROWS_PER_TASK))
                .for_each(|(dy, y)| {
                    for (dy, y) in dy.chunks_mut(n).zip(y.chunks(n)) {
                        softmax_row_bwd(dy, y, scale);
                    }
                });
        }
        into_dtype(d, dtype)
    }
}

/// One row in place: `x ← softmax(scale·x)` over the positions whose mask byte is 0, 0
/// elsewhere; all zeros when every position is masked.
pub(crate) fn softmax_row(x: &mut [f32], masked: &[u8], scale: f32) {
    for (x, &m) in x.iter_mut().zip(masked) {
        *x = if m == 0 {
            scale * *x
        } else {
            f32::NEG_INFINITY
        };
    }
    let max = vector::max(x);
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let inv = 1.0 / vector::exp_shifted_in_place(x, max);
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// One row of the backward in place: `dy ← scale·y ⊙ (dy − Σ dy ⊙ y)`.
pub(crate) fn softmax_row_bwd(dy: &mut [f32], y: &[f32], scale: f32) {
    let dot = vector::dot(dy, y);
    for (g, &y) in dy.iter_mut().zip(y) {
        *g = scale * y * (*g - dot);
    }
}
