//! RMSNorm kernels: one rayon task per row; the backward folds `dweight` per task and reduces.

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;
use tb_kernels::vector::zeros;

use super::{output, F32View};

/// `y = x · inv_rms · w`; returns `(y [rows, d], inv_rms [rows])`.
pub(crate) fn forward(x: FlexTensor, w: FlexTensor, eps: f32) -> (FlexTensor, FlexTensor) {
    let x = F32View::new(x);
    let w = F32View::new(w);
    let [rows, d] = x.dims();
    let (xs, ws) = (x.slice(), w.slice());
    let mut y = zeros(rows * d);
    let mut inv = vec![0.0f32; rows];
    if d > 0 {
        y.par_chunks_mut(d)
            .zip(inv.par_iter_mut())
            .zip(xs.par_chunks(d))
            .for_each(|((y_row, r_out), x_row)| {
                let mean_sq = x_row.iter().map(|v| v * v).sum::<f32>() / d as f32;
                let r = 1.0 / (mean_sq + eps).sqrt();
                *r_out = r;
                for ((yv, xv), wv) in y_row.iter_mut().zip(x_row).zip(ws) {
                    *yv = xv * r * wv;
                }
            });
    }
    (output(y, [rows, d]), output(inv, [rows]))
}

/// With `n = x·r` and `g = dy·w`: `dx = r·(g − n·mean(g·n))`, `dw = Σ_rows dy·n`.
pub(crate) fn backward(
    dy: FlexTensor,
    x: FlexTensor,
    w: FlexTensor,
    inv_rms: FlexTensor,
) -> (FlexTensor, FlexTensor) {
    let dy = F32View::new(dy);
    let x = F32View::new(x);
    let w = F32View::new(w);
    let inv = F32View::new(inv_rms);
    let [rows, d] = x.dims();
    let (dys, xs, ws, invs) = (dy.slice(), x.slice(), w.slice(), inv.slice());
    let mut dx = zeros(rows * d);
    let mut dw = vec![0.0f32; d];
    if d > 0 {
        dw = dx
            .par_chunks_mut(d)
            .zip(xs.par_chunks(d))
            .zip(dys.par_chunks(d))
            .zip(invs.par_iter())
            .fold(
                || vec![0.0f32; d],
                |mut acc, (((dx_row, x_row), dy_row), &r)| {
                    let mut dot = 0.0f32;
                    for ((xv, dyv), wv) in x_row.iter().zip(dy_row).zip(ws) {
                        dot += dyv * wv * xv * r;
                    }
                    let mean = dot / d as f32;
                    for j in 0..d {
                        let n = x_row[j] * r;
                        dx_row[j] = r * (dy_row[j] * ws[j] - n * mean);
                        acc[j] += dy_row[j] * n;
                    }
                    acc
                },
            )
            .reduce(
                || vec![0.0f32; d],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                },
            );
    }
    (output(dx, [rows, d]), output(dw, [d]))
}
