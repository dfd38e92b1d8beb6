//! Rotate-half RoPE kernels: one rayon task per token, all heads of that token; also the
//! split of the fused q|k|v projection into rotated heads and its backward, in one pass each.

use burn::backend::flex::FlexTensor;
use rayon::prelude::*;
use tb_kernels::vector::zeros;

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
    let mut y = zeros(b * s * h * d);
    if h * d > 0 {
        y.par_chunks_mut(h * d)
            .zip(xs.par_chunks(h * d))
            .enumerate()
            .for_each(|(t, (y_tok, x_tok))| {
                let c = &cs[t * half..(t + 1) * half];
                let sn = &ss[t * half..(t + 1) * half];
                rotate_heads(y_tok, x_tok, c, sn, sign);
            });
    }
    output(y, [b, s, h, d])
}

/// `y = rope(x)` for every `c.len() · 2`-wide head of one token's `x` (`inverse` when `sign` is
/// −1): `y1 = x1·c − x2·s`, `y2 = x2·c + x1·s`.
fn rotate_heads(y: &mut [f32], x: &[f32], c: &[f32], sn: &[f32], sign: f32) {
    let half = c.len();
    for (y_head, x_head) in y.chunks_mut(2 * half).zip(x.chunks(2 * half)) {
        let (x1, x2) = x_head.split_at(half);
        let (y1, y2) = y_head.split_at_mut(half);
        for i in 0..half {
            let si = sign * sn[i];
            y1[i] = x1[i] * c[i] - x2[i] * si;
            y2[i] = x2[i] * c[i] + x1[i] * si;
        }
    }
}

/// See [`crate::FusedBackend::qkv_heads_rope`]: one pass over the tokens, each token's row of
/// `qkv` read once and written as its rotated query heads, rotated key heads and value heads.
pub(crate) fn qkv_heads(
    qkv: FlexTensor,
    cos: FlexTensor,
    sin: FlexTensor,
    [heads, kv_heads, d]: [usize; 3],
) -> [FlexTensor; 3] {
    let qkv = F32View::new(qkv);
    let (cos, sin) = (F32View::new(cos), F32View::new(sin));
    let [rows, seq, half] = cos.dims();
    let (qw, kw) = (heads * d, kv_heads * d);
    let tokens = rows * seq;
    let (mut q, mut k, mut v) = (zeros(tokens * qw), zeros(tokens * kw), zeros(tokens * kw));
    if qw > 0 {
        let (cs, ss) = (cos.slice(), sin.slice());
        q.par_chunks_mut(qw)
            .zip(k.par_chunks_mut(kw.max(1)))
            .zip(v.par_chunks_mut(kw.max(1)))
            .zip(qkv.slice().par_chunks(qw + 2 * kw))
            .enumerate()
            .for_each(|(t, (((q_tok, k_tok), v_tok), row))| {
                let (c, sn) = (&cs[t * half..][..half], &ss[t * half..][..half]);
                rotate_heads(q_tok, &row[..qw], c, sn, 1.0);
                rotate_heads(k_tok, &row[qw..qw + kw], c, sn, 1.0);
                v_tok.copy_from_slice(&row[qw + kw..]);
            });
    }
    [
        output(q, [rows, seq, heads, d]),
        output(k, [rows, seq, kv_heads, d]),
        output(v, [rows, seq, kv_heads, d]),
    ]
}

/// See [`crate::FusedBackend::qkv_heads_rope_bwd`]: one pass writing each token's row of the
/// q|k|v gradient from its query, key (both rotated back) and value gradients.
pub(crate) fn qkv_heads_bwd(
    dq: FlexTensor,
    dk: FlexTensor,
    dv: FlexTensor,
    cos: FlexTensor,
    sin: FlexTensor,
) -> FlexTensor {
    let (dq, dk, dv) = (F32View::new(dq), F32View::new(dk), F32View::new(dv));
    let (cos, sin) = (F32View::new(cos), F32View::new(sin));
    let [rows, seq, heads, d] = dq.dims();
    let kv_heads = dk.dims::<4>()[2];
    let half = d / 2;
    let (qw, kw) = (heads * d, kv_heads * d);
    let tokens = rows * seq;
    let mut dqkv = zeros(tokens * (qw + 2 * kw));
    if qw > 0 {
        let (cs, ss) = (cos.slice(), sin.slice());
        dqkv.par_chunks_mut(qw + 2 * kw)
            .enumerate()
            .for_each(|(t, row)| {
                let (c, sn) = (&cs[t * half..][..half], &ss[t * half..][..half]);
                let (q_part, rest) = row.split_at_mut(qw);
                let (k_part, v_part) = rest.split_at_mut(kw);
                rotate_heads(q_part, &dq.slice()[t * qw..][..qw], c, sn, -1.0);
                rotate_heads(k_part, &dk.slice()[t * kw..][..kw], c, sn, -1.0);
                v_part.copy_from_slice(&dv.slice()[t * kw..][..kw]);
            });
    }
    output(dqkv, [tokens, qw + 2 * kw])
}
