//! [`CrossEntropyBackend`] for Flex: one rayon task per row over the logits' contiguous f32
//! data, on tb-kernels' SIMD softmax primitives. Other float dtypes are computed in f32 and
//! returned in the logits' dtype.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::TensorMetadata;
use rayon::prelude::*;
use tb_kernels::vector;

use super::CrossEntropyBackend;
use crate::flex_f32::{contiguous_f32, f32s, into_dtype, ints, restore};

impl CrossEntropyBackend for Flex {
    fn cross_entropy_fwd(logits: FlexTensor, targets: FlexTensor) -> (FlexTensor, FlexTensor) {
        let dtype = logits.dtype();
        let logits = contiguous_f32(logits);
        let [rows, vocab] = logits.shape().dims();
        let x = f32s(&logits);
        let targets = ints(targets);
        let mut lse = vec![0.0f32; rows];
        let mut nll = vec![0.0f32; rows];
        if vocab > 0 {
            lse.par_iter_mut()
                .zip(nll.par_iter_mut())
                .zip(x.par_chunks(vocab))
                .zip(targets.par_iter())
                .for_each(|(((lse, nll), row), &t)| {
                    *lse = vector::logsumexp(row);
                    *nll = column(t, vocab).map_or(0.0, |c| *lse - row[c]);
                });
        }
        (restore(lse, [rows], dtype), restore(nll, [rows], dtype))
    }

    fn cross_entropy_bwd(
        logits: FlexTensor,
        lse: FlexTensor,
        targets: FlexTensor,
        dnll: FlexTensor,
    ) -> FlexTensor {
        let dtype = logits.dtype();
        let mut d = contiguous_f32(logits);
        let [_, vocab] = d.shape().dims();
        let (lse, dnll) = (contiguous_f32(lse), contiguous_f32(dnll));
        let targets = ints(targets);
        // The gradient overwrites the logits: in place when nothing else holds them (the
        // autodiff node's copy is consumed by this backward), else in a copy.
        if vocab > 0 {
            d.storage_mut::<f32>()
                .par_chunks_mut(vocab)
                .zip(f32s(&lse).par_iter().zip(f32s(&dnll).par_iter()))
                .zip(targets.par_iter())
                .for_each(|((row, (&lse, &g)), &t)| match column(t, vocab) {
                    Some(c) => {
                        vector::exp_shifted_in_place(row, lse);
                        row.iter_mut().for_each(|v| *v *= g);
                        row[c] -= g;
                    }
                    None => row.fill(0.0),
                });
        }
        into_dtype(d, dtype)
    }
}

/// The target's column, or `None` when it is outside `[0, vocab)`.
fn column(target: i64, vocab: usize) -> Option<usize> {
    usize::try_from(target).ok().filter(|&t| t < vocab)
}
