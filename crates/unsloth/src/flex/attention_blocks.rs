//! Packed causal GQA attention as small GEMMs, one example at a time.
//!
//! Tokens of one packed example form a contiguous span of a row. For each span and key/value
//! head, the query heads of its group are processed one after the other, in blocks of
//! [`QUERY_BLOCK`] query rows: block `[r0, r1)` only sees keys `0..r1`, so its `[r1 − r0, r1]`
//! scores are formed with one GEMM, masked causally, turned into probabilities, and multiplied
//! back with another; the blocks above the diagonal are never computed (at 256 tokens, 5/8 of
//! the full `[L, L]` products remain). The backward recomputes the scores block by block
//! (nothing `[L, L]` outlives one head of one example) and forms `dV = Pᵀ·dO`, `dP = dO·Vᵀ`,
//! `dS = P∘(dP − δ)`, `dQ = s·dS·K` and `dK = s·dSᵀ·Q` as GEMMs too, `dV` and `dK` summed over
//! the query blocks. Tasks own disjoint outputs: one task per (example, key/value head),
//! results copied into place after the parallel section. The products run on tb-kernels'
//! caller-thread GEMM in the precision the op is given (bf16 for a model held in bf16, as
//! PyTorch's autocast runs attention); softmax, logsumexps and sums stay f32.
//!
//! This is the fast path of [`super::attention`]; the per-token kernels there handle rows
//! whose segments are not contiguous, and serve as its reference in the tests.

use std::ops::Range;

use rayon::prelude::*;
use tb_kernels::vector::{self, dot};
use tb_kernels::Precision;

use super::attention::Dims;
use super::strided_gemm::{gemm, Strided};

/// One example: tokens `start..start + len` of the flattened `[batch·seq]` token axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// First token (flattened index).
    pub start: usize,
    /// Number of tokens.
    pub len: usize,
}

/// The examples of each row as contiguous spans, or `None` when some row has a segment id
/// that comes back after another one (then only the per-token kernels apply).
pub(crate) fn spans(seg: &[i64], seq: usize) -> Option<Vec<Span>> {
    let mut out = Vec::new();
    for (r, row) in seg.chunks(seq.max(1)).enumerate() {
        let mut seen: Vec<i64> = Vec::new();
        let mut start = 0;
        for i in 1..=row.len() {
            if i == row.len() || row[i] != row[start] {
                if seen.contains(&row[start]) {
                    return None;
                }
                seen.push(row[start]);
                out.push(Span {
                    start: r * seq + start,
                    len: i - start,
                });
                start = i;
            }
        }
    }
    Some(out)
}

/// Views of head `head` (of `n_heads`) over the tokens of `span`: `[len, head_dim]`.
fn head_view<'a>(
    data: &'a [f32],
    dm: &Dims,
    span: Span,
    n_heads: usize,
    head: usize,
) -> Strided<'a> {
    Strided::new(
        data,
        dm.at(span.start, n_heads, head),
        [span.len, dm.head_dim],
        [n_heads * dm.head_dim, 1],
    )
}

/// Query rows per block of the causal products (see the module docs).
const QUERY_BLOCK: usize = 64;

/// The query blocks of an example of `len` tokens.
fn query_blocks(len: usize) -> impl Iterator<Item = Range<usize>> {
    (0..len)
        .step_by(QUERY_BLOCK)
        .map(move |r0| r0..(r0 + QUERY_BLOCK).min(len))
}

/// Causal softmax in place of the scores of query rows `r0..` against keys `0..width` (row
/// `r0 + n` keeps its first `r0 + n + 1` keys); returns each row's logsumexp.
fn causal_softmax(scores: &mut [f32], width: usize, r0: usize) -> Vec<f32> {
    scores
        .chunks_mut(width)
        .enumerate()
        .map(|(n, row)| {
            let (keep, future) = row.split_at_mut(r0 + n + 1);
            future.fill(0.0);
            let max = vector::max(keep);
            let sum = vector::exp_shifted_in_place(keep, max);
            keep.iter_mut().for_each(|x| *x /= sum);
            max + sum.ln()
        })
        .collect()
}

/// One task per (example span, key/value head): the unit of parallel work of both passes.
fn tasks(spans: &[Span], kv_heads: usize) -> Vec<(Span, usize)> {
    spans
        .iter()
        .flat_map(|&s| (0..kv_heads).map(move |g| (s, g)))
        .collect()
}

/// What one (span, key/value head) task of the forward produces: per query head of the group,
/// `[len, head_dim]` outputs and `len` logsumexps.
struct ForwardBlock {
    out: Vec<Vec<f32>>,
    lse: Vec<Vec<f32>>,
}

/// Forward over spans; writes `out` (`[tokens, heads, d]`) and `lse` (`[tokens, heads]`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    dm: &Dims,
    spans: &[Span],
    qs: &[f32],
    ks: &[f32],
    vs: &[f32],
    scale: f32,
    precision: Precision,
    out: &mut [f32],
    lse: &mut [f32],
) {
    let (heads, kvh, d, group) = (dm.heads, dm.kv_heads, dm.head_dim, dm.group());
    let tasks = tasks(spans, kvh);
    let blocks: Vec<ForwardBlock> = tasks
        .par_iter()
        .map(|&(span, g)| {
            let l = span.len;
            let k = head_view(ks, dm, span, kvh, g);
            let v = head_view(vs, dm, span, kvh, g);
            let mut scores = vec![0.0f32; QUERY_BLOCK.min(l) * l];
            let mut block = ForwardBlock {
                out: Vec::with_capacity(group),
                lse: Vec::with_capacity(group),
            };
            for hh in g * group..(g + 1) * group {
                let q = head_view(qs, dm, span, heads, hh);
                let mut o = vec![0.0f32; l * d];
                let mut row_lse = Vec::with_capacity(l);
                for rows in query_blocks(l) {
                    let (w, n) = (rows.end, rows.len());
                    let sc = &mut scores[..n * w];
                    gemm(
                        sc,
                        false,
                        q.rows(rows.clone()),
                        k.rows(0..w).t(),
                        scale,
                        precision,
                    );
                    row_lse.extend(causal_softmax(sc, w, rows.start));
                    let p = Strided::new(sc, 0, [n, w], [w, 1]);
                    gemm(
                        &mut o[rows.start * d..rows.end * d],
                        false,
                        p,
                        v.rows(0..w),
                        1.0,
                        precision,
                    );
                }
                block.out.push(o);
                block.lse.push(row_lse);
            }
            block
        })
        .collect();
    for (&(span, g), block) in tasks.iter().zip(blocks) {
        for (n, (o, l)) in block.out.iter().zip(&block.lse).enumerate() {
            let hh = g * group + n;
            for i in 0..span.len {
                let tok = span.start + i;
                out[dm.at(tok, heads, hh)..][..d].copy_from_slice(&o[i * d..][..d]);
                lse[tok * heads + hh] = l[i];
            }
        }
    }
}

/// What one (span, key/value head) task of the backward produces.
struct BackwardBlock {
    /// Per query head of the group, `[len, head_dim]`.
    dq: Vec<Vec<f32>>,
    /// `[len, head_dim]`, summed over the group.
    dk: Vec<f32>,
    /// `[len, head_dim]`, summed over the group.
    dv: Vec<f32>,
}

/// Saved forward tensors and the output gradient, all flat.
pub(crate) struct Saved<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub out: &'a [f32],
    pub lse: &'a [f32],
    pub dout: &'a [f32],
    pub scale: f32,
    /// The products' arithmetic (as in the forward, so the recomputed scores match its
    /// logsumexps).
    pub precision: Precision,
}

/// Backward over spans; writes `dq` (`[tokens, heads, d]`), `dk` and `dv`
/// (`[tokens, kv_heads, d]`).
pub(crate) fn backward(
    dm: &Dims,
    spans: &[Span],
    s: &Saved<'_>,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let (heads, kvh, d, group) = (dm.heads, dm.kv_heads, dm.head_dim, dm.group());
    let tasks = tasks(spans, kvh);
    let blocks: Vec<BackwardBlock> = tasks
        .par_iter()
        .map(|&(span, g)| {
            let l = span.len;
            let k = head_view(s.k, dm, span, kvh, g);
            let v = head_view(s.v, dm, span, kvh, g);
            let mut p = vec![0.0f32; QUERY_BLOCK.min(l) * l];
            let mut ds = vec![0.0f32; QUERY_BLOCK.min(l) * l];
            let mut block = BackwardBlock {
                dq: Vec::with_capacity(group),
                dk: vec![0.0f32; l * d],
                dv: vec![0.0f32; l * d],
            };
            for hh in g * group..(g + 1) * group {
                let q = head_view(s.q, dm, span, heads, hh);
                let d_o = head_view(s.dout, dm, span, heads, hh);
                let mut dq_h = vec![0.0f32; l * d];
                for rows in query_blocks(l) {
                    let (w, n) = (rows.end, rows.len());
                    let (qb, dob) = (q.rows(rows.clone()), d_o.rows(rows.clone()));
                    let (pb, dsb) = (&mut p[..n * w], &mut ds[..n * w]);
                    let pr = s.precision;
                    gemm(pb, false, qb, k.rows(0..w).t(), s.scale, pr);
                    for (r, row) in pb.chunks_mut(w).enumerate() {
                        let i = rows.start + r;
                        let row_lse = s.lse[(span.start + i) * heads + hh];
                        let (keep, future) = row.split_at_mut(i + 1);
                        vector::exp_shifted_in_place(keep, row_lse);
                        future.fill(0.0);
                    }
                    let pm = Strided::new(pb, 0, [n, w], [w, 1]);
                    gemm(&mut block.dv[..w * d], true, pm.t(), dob, 1.0, pr);
                    gemm(dsb, false, dob, v.rows(0..w).t(), 1.0, pr);
                    for (r, (ds_row, p_row)) in dsb.chunks_mut(w).zip(pb.chunks(w)).enumerate() {
                        let at = dm.at(span.start + rows.start + r, heads, hh);
                        let delta = dot(&s.dout[at..][..d], &s.out[at..][..d]);
                        ds_row
                            .iter_mut()
                            .zip(p_row)
                            .for_each(|(x, &pv)| *x = pv * (*x - delta));
                    }
                    let dsm = Strided::new(dsb, 0, [n, w], [w, 1]);
                    let dq_rows = &mut dq_h[rows.start * d..rows.end * d];
                    gemm(dq_rows, false, dsm, k.rows(0..w), s.scale, pr);
                    gemm(&mut block.dk[..w * d], true, dsm.t(), qb, s.scale, pr);
                }
                block.dq.push(dq_h);
            }
            block
        })
        .collect();
    for (&(span, g), block) in tasks.iter().zip(blocks) {
        for i in 0..span.len {
            let tok = span.start + i;
            for (n, dq_h) in block.dq.iter().enumerate() {
                let hh = g * group + n;
                dq[dm.at(tok, heads, hh)..][..d].copy_from_slice(&dq_h[i * d..][..d]);
            }
            dk[dm.at(tok, kvh, g)..][..d].copy_from_slice(&block.dk[i * d..][..d]);
            dv[dm.at(tok, kvh, g)..][..d].copy_from_slice(&block.dv[i * d..][..d]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_split_rows_into_examples_and_refuse_interleaved_segments() {
        let seg = [0, 0, 1, 1, 1, 7, 7, 7, 7, 7];
        assert_eq!(
            spans(&seg, 5),
            Some(vec![
                Span { start: 0, len: 2 },
                Span { start: 2, len: 3 },
                Span { start: 5, len: 5 },
            ])
        );
        assert_eq!(spans(&[0, 1, 0, 2], 4), None);
        // the same id in two different rows is two examples
        assert_eq!(
            spans(&[3, 3, 3, 3], 2),
            Some(vec![Span { start: 0, len: 2 }, Span { start: 2, len: 2 }])
        );
    }
}
