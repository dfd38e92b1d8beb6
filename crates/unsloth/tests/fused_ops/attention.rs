use burn::prelude::*;
use tb_unsloth::{ops, reference, Precision};

use crate::common::*;

struct Case {
    batch: usize,
    seq: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    segments: Vec<i64>,
}

fn check(seed: u64, c: Case) {
    let mut rng = rng(seed);
    let q = leaf(&mut rng, [c.batch, c.seq, c.heads, c.head_dim]);
    let k = leaf(&mut rng, [c.batch, c.seq, c.kv_heads, c.head_dim]);
    let v = leaf(&mut rng, [c.batch, c.seq, c.kv_heads, c.head_dim]);
    let q = (q * 2.0).detach().require_grad();
    let r = rand(&mut rng, [c.batch, c.seq, c.heads, c.head_dim]);
    let seg = ints(c.segments, [c.batch, c.seq]);
    let scale = 1.0 / (c.head_dim as f32).sqrt();
    let out = ops::attention(
        q.clone(),
        k.clone(),
        v.clone(),
        seg.clone(),
        None,
        Precision::F32,
    )
    .unwrap();
    let want = reference::attention(q.clone(), k.clone(), v.clone(), seg, scale);
    assert_close("attention out", out.clone().inner(), want.clone().inner());
    let g = project(out, r.clone()).backward();
    let gr = project(want, r).backward();
    assert_grad("attention dq", &q, &g, &gr);
    assert_grad("attention dk", &k, &g, &gr);
    assert_grad("attention dv", &v, &g, &gr);
}

#[test]
fn attention_packed_gqa_matches_reference() {
    check(
        80,
        Case {
            batch: 2,
            seq: 7,
            heads: 4,
            kv_heads: 2,
            head_dim: 6,
            segments: vec![0, 0, 0, 1, 1, 1, 1, 5, 5, 5, 5, 5, 9, 9],
        },
    );
}

#[test]
fn attention_plain_causal_mha_matches_reference() {
    check(
        81,
        Case {
            batch: 1,
            seq: 13,
            heads: 3,
            kv_heads: 3,
            head_dim: 5,
            segments: vec![0; 13],
        },
    );
}

#[test]
fn attention_mqa_single_token_segments() {
    check(
        82,
        Case {
            batch: 1,
            seq: 5,
            heads: 6,
            kv_heads: 1,
            head_dim: 8,
            segments: vec![0, 1, 2, 2, 3],
        },
    );
}

/// Segments that come back within a row (not what packing makes, but a valid input) take the
/// per-token kernels; contiguous ones take the per-example GEMM path. Both must match.
#[test]
fn attention_interleaved_segments_use_the_token_kernels_and_match_reference() {
    check(
        85,
        Case {
            batch: 2,
            seq: 6,
            heads: 4,
            kv_heads: 2,
            head_dim: 5,
            segments: vec![0, 1, 0, 1, 1, 0, 4, 4, 4, 4, 4, 4],
        },
    );
}

/// Spans longer than the GEMM blocking and the 64-row causal query blocks (two and three
/// blocks, odd last blocks) on the per-example GEMM path.
#[test]
fn attention_long_packed_rows_match_reference() {
    let mut segments = vec![0i64; 70];
    segments.extend(vec![1i64; 150]);
    segments.extend(vec![2i64; 3]);
    check(
        86,
        Case {
            batch: 1,
            seq: 223,
            heads: 6,
            kv_heads: 2,
            head_dim: 17,
            segments,
        },
    );
}

#[test]
fn attention_examples_do_not_leak() {
    // Changing the first example's keys must not change the second example's outputs.
    let mut r = rng(83);
    let (s, h, d) = (6, 2, 4);
    let q = rand(&mut r, [1, s, h, d]);
    let k = rand(&mut r, [1, s, h, d]);
    let v = rand(&mut r, [1, s, h, d]);
    let seg = ints(vec![0, 0, 0, 1, 1, 1], [1, s]);
    let out1 = ops::attention(
        q.clone(),
        k.clone(),
        v.clone(),
        seg.clone(),
        None,
        Precision::F32,
    )
    .unwrap();
    let k2 = k
        .clone()
        .slice_assign([0..1, 0..3, 0..h, 0..d], rand(&mut r, [1, 3, h, d]));
    let out2 = ops::attention(q, k2, v, seg, None, Precision::F32).unwrap();
    let tail = |o: Tensor<Ad, 4>| o.narrow(1, 3, 3).inner();
    assert_eq!(rel_err(tail(out1), tail(out2)), 0.0);
}

#[test]
fn attention_rejects_bad_groups() {
    let mut r = rng(84);
    let q = rand(&mut r, [1, 3, 3, 4]);
    let k = rand(&mut r, [1, 3, 2, 4]);
    let v = rand(&mut r, [1, 3, 2, 4]);
    assert!(ops::attention(q, k, v, ints(vec![0; 3], [1, 3]), None, Precision::F32).is_err());
}

/// bf16 products (a model held in bf16): values and gradients within bf16 rounding of the f32
/// reference on packed spans of one and two query blocks, and genuinely rounded (they differ
/// from the f32 products).
#[test]
fn attention_bf16_products_stay_within_bf16_rounding_of_the_reference() {
    let mut segments = vec![0i64; 70];
    segments.extend(vec![1i64; 30]);
    let (b, s, h, kvh, d) = (1, 100, 4, 2, 16);
    let mut rng = rng(87);
    let q = leaf(&mut rng, [b, s, h, d]);
    let k = leaf(&mut rng, [b, s, kvh, d]);
    let v = leaf(&mut rng, [b, s, kvh, d]);
    let r = rand(&mut rng, [b, s, h, d]);
    let seg = ints(segments, [b, s]);
    let scale = 1.0 / (d as f32).sqrt();
    let run = |precision| {
        let out = ops::attention(
            q.clone(),
            k.clone(),
            v.clone(),
            seg.clone(),
            None,
            precision,
        );
        out.unwrap()
    };
    let (bf16, f32_out) = (run(Precision::Bf16), run(Precision::F32));
    let want = reference::attention(q.clone(), k.clone(), v.clone(), seg.clone(), scale);
    let e = rel_err(bf16.clone().inner(), want.clone().inner());
    assert!(e < 2e-2, "bf16 attention out: relative error {e:.3e}");
    let e_f32 = rel_err(bf16.clone().inner(), f32_out.inner());
    assert!(
        e_f32 > 1e-5,
        "bf16 products equal the f32 ones ({e_f32:.3e}): nothing rounded"
    );
    let g = project(bf16, r.clone()).backward();
    let gr = project(want, r).backward();
    for (what, t) in [("dq", &q), ("dk", &k), ("dv", &v)] {
        let e = rel_err(t.grad(&g).unwrap(), t.grad(&gr).unwrap());
        assert!(e < 3e-2, "bf16 attention {what}: relative error {e:.3e}");
    }
}
