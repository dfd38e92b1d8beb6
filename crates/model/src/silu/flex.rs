//! [`SiluBackend`] for Flex: rayon over chunks of the contiguous f32 data, σ on tb-kernels'
//! SIMD exp. Other float dtypes are computed in f32 and returned in their own dtype.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use rayon::prelude::*;
use tb_kernels::vector;

use super::SiluBackend;
use crate::flex_f32::{contiguous_f32, f32s, into_dtype};

/// Elements per rayon task.
const CHUNK: usize = 4096;

impl SiluBackend for Flex {
    fn silu_fwd(x: FlexTensor) -> FlexTensor {
        let dtype = x.dtype();
        // y overwrites x: in place when nothing else holds x (inference), else in a copy (under
        // autodiff the backward keeps x).
        let mut y = contiguous_f32(x);
        y.storage_mut::<f32>().par_chunks_mut(CHUNK).for_each(|x| {
            let mut s = [0.0f32; CHUNK];
            let s = &mut s[..x.len()];
            vector::sigmoid_into(s, x);
            for (x, s) in x.iter_mut().zip(s.iter()) {
                *x *= s;
            }
        });
        into_dtype(y, dtype)
    }

    fn silu_bwd(x: FlexTensor, dy: FlexTensor) -> FlexTensor {
        let dtype = dy.dtype();
        let x = contiguous_f32(x);
        // dx overwrites dy (in place when nothing else holds it).
        let mut d = contiguous_f32(dy);
        d.storage_mut::<f32>()
            .par_chunks_mut(CHUNK)
            .zip(f32s(&x).par_chunks(CHUNK))
            .for_each(|(g, x)| {
                let mut s = [0.0f32; CHUNK];
                let s = &mut s[..x.len()];
                vector::sigmoid_into(s, x);
                for ((g, &x), &s) in g.iter_mut().zip(x).zip(s.iter()) {
                    *g *= s * (1.0 + x * (1.0 - s));
                }
            });
        into_dtype(d, dtype)
    }
}
