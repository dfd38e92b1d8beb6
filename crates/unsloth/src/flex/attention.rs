//! Packed causal GQA attention kernels for Flex.
//!
//! When every example of a packed row is one contiguous span of tokens (what tb-data's
//! packing produces), the work goes to [`super::attention_blocks`], which runs it as small
//! GEMMs per example and head. Otherwise the per-token kernels below run (flash-attention
//! style): the forward runs one rayon task per query token, keeps a score row of at most `seq` floats
//! per task and stores one logsumexp per (token, head). The backward recomputes the scores in
//! two passes so that no two tasks write the same row: one over query tokens (`dq`) and one
//! over key tokens (`dk`, `dv`, summed over the query heads of each key/value head). The
//! per-token kernels multiply in f32 whatever the precision asked for; the span GEMMs honour it.

use burn::backend::flex::{Flex, FlexTensor};
use rayon::prelude::*;
use tb_kernels::vector::{axpy, dot, zeros};
use tb_kernels::Precision;
use tb_model::flex_f32::ints;

use super::attention_blocks::{self as blocks, spans};
use super::{output, F32View};
use crate::backend::AttentionSaved;

/// Dimensions shared by the passes.
pub(crate) struct Dims {
    pub(crate) batch: usize,
    pub(crate) seq: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
}

impl Dims {
    /// Query heads per key/value head.
    pub(crate) fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Offset of the `head_dim` vector of head `head` of token `tok` in a `[.., heads, d]` tensor.
    pub(crate) fn at(&self, tok: usize, heads: usize, head: usize) -> usize {
        (tok * heads + head) * self.head_dim
    }
}

/// Returns `(out [b, s, h, d], lse [b, s, h])`.
pub(crate) fn forward(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    segments: FlexTensor,
    scale: f32,
    precision: Precision,
) -> (FlexTensor, FlexTensor) {
    let q = F32View::new(q);
    let k = F32View::new(k);
    let v = F32View::new(v);
    let [batch, seq, heads, head_dim] = q.dims();
    let [_, _, kv_heads, _] = k.dims();
    let dm = Dims {
        batch,
        seq,
        heads,
        kv_heads,
        head_dim,
    };
    let seg = ints(segments);
    let (qs, ks, vs) = (q.slice(), k.slice(), v.slice());
    let mut out = zeros(batch * seq * heads * head_dim);
    let mut lse = vec![0.0f32; batch * seq * heads];
    if heads * head_dim > 0 {
        if let Some(spans) = spans(&seg, seq) {
            let (o, l) = (&mut out, &mut lse);
            blocks::forward(&dm, &spans, qs, ks, vs, scale, precision, o, l);
            return (
                output(out, [batch, seq, heads, head_dim]),
                output(lse, [batch, seq, heads]),
            );
        }
        out.par_chunks_mut(heads * head_dim)
            .zip(lse.par_chunks_mut(heads))
            .enumerate()
            .for_each(|(tok, (o_tok, l_tok))| {
                let row0 = tok - tok % seq;
                let keys = row0..=tok;
                let mut scores = vec![f32::NEG_INFINITY; keys.clone().count()];
                for hh in 0..heads {
                    let g = hh / dm.group();
                    let qv = &qs[dm.at(tok, heads, hh)..][..head_dim];
                    let mut max = f32::NEG_INFINITY;
                    for (sc, j) in scores.iter_mut().zip(keys.clone()) {
                        *sc = if seg[j] == seg[tok] {
                            dot(qv, &ks[dm.at(j, kv_heads, g)..][..head_dim]) * scale
                        } else {
                            f32::NEG_INFINITY
                        };
                        max = max.max(*sc);
                    }
                    let o = &mut o_tok[hh * head_dim..][..head_dim];
                    let mut sum = 0.0f32;
                    for (&sc, j) in scores.iter().zip(keys.clone()) {
                        if sc != f32::NEG_INFINITY {
                            let p = (sc - max).exp();
                            sum += p;
                            axpy(o, p, &vs[dm.at(j, kv_heads, g)..][..head_dim]);
                        }
                    }
                    o.iter_mut().for_each(|x| *x /= sum);
                    l_tok[hh] = max + sum.ln();
                }
            });
    }
    (
        output(out, [batch, seq, heads, head_dim]),
        output(lse, [batch, seq, heads]),
    )
}

/// Returns `(dq, dk, dv)`.
pub(crate) fn backward(
    dout: FlexTensor,
    saved: AttentionSaved<Flex>,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let scale = saved.scale;
    let d_o = F32View::new(dout);
    let q = F32View::new(saved.q);
    let k = F32View::new(saved.k);
    let v = F32View::new(saved.v);
    let o = F32View::new(saved.out);
    let lse = F32View::new(saved.lse);
    let seg = ints(saved.segments);
    let [batch, seq, heads, head_dim] = q.dims();
    let [_, _, kv_heads, _] = k.dims();
    let dm = Dims {
        batch,
        seq,
        heads,
        kv_heads,
        head_dim,
    };
    let (dos, qs, ks, vs, lses) = (d_o.slice(), q.slice(), k.slice(), v.slice(), lse.slice());
    let tokens = dm.batch * dm.seq;
    let mut dq = zeros(tokens * heads * head_dim);
    let mut dk = zeros(tokens * kv_heads * head_dim);
    let mut dv = zeros(tokens * kv_heads * head_dim);
    if heads * head_dim == 0 {
        return (
            output(dq, [batch, seq, heads, head_dim]),
            output(dk, [batch, seq, kv_heads, head_dim]),
            output(dv, [batch, seq, kv_heads, head_dim]),
        );
    }
    if let Some(spans) = spans(&seg, seq) {
        let saved = blocks::Saved {
            q: qs,
            k: ks,
            v: vs,
            out: o.slice(),
            lse: lses,
            dout: dos,
            scale,
            precision: saved.precision,
        };
        blocks::backward(&dm, &spans, &saved, &mut dq, &mut dk, &mut dv);
        return (
            output(dq, [batch, seq, heads, head_dim]),
            output(dk, [batch, seq, kv_heads, head_dim]),
            output(dv, [batch, seq, kv_heads, head_dim]),
        );
    }
    // Rows whose segments interleave: per-token kernels.
    // delta[tok, h] = dO · O, the row term of the softmax backward.
    let delta: Vec<f32> = dos
        .par_chunks(head_dim)
        .zip(o.slice().par_chunks(head_dim))
        .map(|(a, b)| dot(a, b))
        .collect();
    // p and ds of the pair (query token i, head hh) × (key token j, kv head g).
    let pair = |i: usize, hh: usize, j: usize, g: usize| {
        let qi = &qs[dm.at(i, heads, hh)..][..head_dim];
        let doi = &dos[dm.at(i, heads, hh)..][..head_dim];
        let kj = &ks[dm.at(j, kv_heads, g)..][..head_dim];
        let vj = &vs[dm.at(j, kv_heads, g)..][..head_dim];
        let p = (dot(qi, kj) * scale - lses[i * heads + hh]).exp();
        let ds = p * (dot(doi, vj) - delta[i * heads + hh]);
        (p, ds)
    };

    dq.par_chunks_mut(heads * head_dim)
        .enumerate()
        .for_each(|(i, dq_tok)| {
            let row0 = i - i % seq;
            for hh in 0..heads {
                let g = hh / dm.group();
                let dq_h = &mut dq_tok[hh * head_dim..][..head_dim];
                for j in (row0..=i).filter(|&j| seg[j] == seg[i]) {
                    let (_, ds) = pair(i, hh, j, g);
                    axpy(dq_h, scale * ds, &ks[dm.at(j, kv_heads, g)..][..head_dim]);
                }
            }
        });

    dk.par_chunks_mut(kv_heads * head_dim)
        .zip(dv.par_chunks_mut(kv_heads * head_dim))
        .enumerate()
        .for_each(|(j, (dk_tok, dv_tok))| {
            let row_end = j - j % seq + seq;
            for g in 0..kv_heads {
                let dk_g = &mut dk_tok[g * head_dim..][..head_dim];
                let dv_g = &mut dv_tok[g * head_dim..][..head_dim];
                for hh in g * dm.group()..(g + 1) * dm.group() {
                    for i in (j..row_end).filter(|&i| seg[i] == seg[j]) {
                        let (p, ds) = pair(i, hh, j, g);
                        axpy(dv_g, p, &dos[dm.at(i, heads, hh)..][..head_dim]);
                        axpy(dk_g, scale * ds, &qs[dm.at(i, heads, hh)..][..head_dim]);
                    }
                }
            }
        });

    (
        output(dq, [batch, seq, heads, head_dim]),
        output(dk, [batch, seq, kv_heads, head_dim]),
        output(dv, [batch, seq, kv_heads, head_dim]),
    )
}
