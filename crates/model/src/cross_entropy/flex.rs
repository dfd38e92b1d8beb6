//! [`CrossEntropyBackend`] for Flex: one rayon task per row over the logits' contiguous f32
//! data, on tb-kernels' SIMD softmax primitives. Other float dtypes are computed in f32 and
//! returned in the logits' dtype.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{DType, FloatDType, TensorData, TensorMetadata};
use rayon::prelude::*;
use tb_kernels::vector;

use super::CrossEntropyBackend;

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
        let logits = contiguous_f32(logits);
        let [rows, vocab] = logits.shape().dims();
        let x = f32s(&logits);
        let (lse, dnll) = (contiguous_f32(lse), contiguous_f32(dnll));
        let targets = ints(targets);
        let mut d = vec![0.0f32; rows * vocab];
        if vocab > 0 {
            d.par_chunks_mut(vocab)
                .zip(x.par_chunks(vocab))
                .zip(f32s(&lse).par_iter().zip(f32s(&dnll).par_iter()))
                .zip(targets.par_iter())
                .for_each(|(((d_row, row), (&lse, &g)), &t)| {
                    if let Some(c) = column(t, vocab) {
                        vector::exp_shifted_scaled(d_row, row, lse, g);
                        d_row[c] -= g;
                    }
                });
        }
        restore(d, [rows, vocab], dtype)
    }
}

/// The target's column, or `None` when it is outside `[0, vocab)`.
fn column(target: i64, vocab: usize) -> Option<usize> {
    usize::try_from(target).ok().filter(|&t| t < vocab)
}

/// The tensor as contiguous f32.
fn contiguous_f32(t: FlexTensor) -> FlexTensor {
    let t = if t.dtype() == DType::F32 {
        t
    } else {
        Flex::float_cast(t, FloatDType::F32)
    };
    t.to_contiguous()
}

/// The values of a contiguous f32 tensor.
fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("invariant: made contiguous f32 by contiguous_f32")
}

/// Integer tensor values as `i64`.
fn ints(t: FlexTensor) -> Vec<i64> {
    t.into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .expect("invariant: converted to i64")
}

/// Row-major f32 values as a Flex tensor of `dtype`.
fn restore<const D: usize>(values: Vec<f32>, shape: [usize; D], dtype: DType) -> FlexTensor {
    let t = FlexTensor::from_data(TensorData::new(values, shape));
    if dtype == DType::F32 {
        t
    } else {
        Flex::float_cast(t, FloatDType::from(dtype))
    }
}
