//! SwiGLU kernels, elementwise over chunks of the flat data.

use burn::backend::flex::FlexTensor;
use burn::tensor::TensorMetadata;
use rayon::prelude::*;
use tb_kernels::vector::{self, zeros};

use super::F32View;

const CHUNK: usize = 4096;

fn shaped(values: Vec<f32>, like: &FlexTensor) -> FlexTensor {
    FlexTensor::from_data(burn::tensor::TensorData::new(values, like.shape()))
}

/// `h = silu(g)·u`.
pub(crate) fn forward(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
    let shape_of = gate.clone();
    let g = F32View::new(gate);
    let u = F32View::new(up);
    let mut h = zeros(g.slice().len());
    h.par_chunks_mut(CHUNK)
        .zip(g.slice().par_chunks(CHUNK))
        .zip(u.slice().par_chunks(CHUNK))
        .for_each(|((h, g), u)| {
            vector::sigmoid_into(h, g);
            for ((h, &g), &u) in h.iter_mut().zip(g).zip(u) {
                *h = g * *h * u;
            }
        });
    shaped(h, &shape_of)
}

/// `dg = dh·u·σ(g)·(1 + g·(1 − σ(g)))`, `du = dh·silu(g)`.
pub(crate) fn backward(
    dh: FlexTensor,
    gate: FlexTensor,
    up: FlexTensor,
) -> (FlexTensor, FlexTensor) {
    let shape_of = gate.clone();
    let dh = F32View::new(dh);
    let g = F32View::new(gate);
    let u = F32View::new(up);
    let n = g.slice().len();
    let mut dg = zeros(n);
    let mut du = zeros(n);
    dg.par_chunks_mut(CHUNK)
        .zip(du.par_chunks_mut(CHUNK))
        .zip(dh.slice().par_chunks(CHUNK))
        .zip(g.slice().par_chunks(CHUNK).zip(u.slice().par_chunks(CHUNK)))
        .for_each(|(((dg, du), dh), (g, u))| {
            vector::sigmoid_into(dg, g);
            for i in 0..g.len() {
                let sig = dg[i];
                let silu = g[i] * sig;
                du[i] = dh[i] * silu;
                dg[i] = dh[i] * u[i] * sig * (1.0 + g[i] * (1.0 - sig));
            }
        });
    (shaped(dg, &shape_of), shaped(du, &shape_of))
}
