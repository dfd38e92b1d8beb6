//! Rotate-half RoPE kernel: one rayon task per token, all heads of that token.

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;

use super::{output, F32View};

/// `y1 = x1·c − x2·s`, `y2 = x2·c + x1·s` for the pairs `(i, i + d/2)`; `inverse` negates `s`.
pub(crate) fn forward(
    x: FlexTensor,
    cos: FlexTensor,
    sin: FlexTensor,
    inverse: bool,
) -> FlexTensor {
    let x = F32View::new(x);
    let cos = F32View::new(cos);
    let sin = F32View::new(sin);
    let [b, s, h, d] = x.dims();
    let half = d / 2;
    let (xs, cs, ss) = (x.slice(), cos.slice(), sin.slice());
    let sign = if inverse { -1.0f32 } else { 1.0 };
    let mut y = vec![0.0f32; b * s * h * d];
    if h * d > 0 {
        y.par_chunks_mut(h * d)
            .zip(xs.par_chunks(h * d))
            .enumerate()
            .for_each(|(t, (y_tok, x_tok))| {
                let c = &cs[t * half..(t + 1) * half];
                let sn = &ss[t * half..(t + 1) * half];
                for (y_head, x_head) in y_tok.chunks_mut(d).zip(x_tok.chunks(d)) {
                    let (x1, x2) = x_head.split_at(half);
                    let (y1, y2) = y_head.split_at_mut(half);
                    for i in 0..half {
                        let si = sign * sn[i];
                        y1[i] = x1[i] * c[i] - x2[i] * si;
                        y2[i] = x2[i] * c[i] + x1[i] * si;
                    }
                }
            });
    }
    output(y, [b, s, h, d])
}
