//! The Flex kernels against the tensor-op fallbacks that other backends use by default.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorPrimitive;
use tb_unsloth::{fallback, AttentionSaved, FusedBackend, Precision};

use crate::common::*;

fn p<const D: usize>(t: &Tensor<Flex, D>) -> FloatTensor<Flex> {
    t.clone().into_primitive().tensor()
}

fn t<const D: usize>(p: FloatTensor<Flex>) -> Tensor<Flex, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

fn r<const D: usize>(rng: &mut rand::rngs::StdRng, shape: [usize; D]) -> Tensor<Flex, D> {
    rand(rng, shape).inner()
}

#[test]
fn elementwise_kernels_match_fallbacks() {
    let mut g = rng(110);
    let (x, w, dy) = (r(&mut g, [6, 37]), r(&mut g, [37]), r(&mut g, [6, 37]));
    let (y, inv) = Flex::rms_norm_fwd(p(&x), p(&w), 1e-5);
    let (y2, inv2) = fallback::rms_norm_fwd::<Flex>(p(&x), p(&w), 1e-5);
    assert_close("fallback rms y", t::<2>(y), t::<2>(y2));
    assert_close("fallback rms inv", t::<1>(inv.clone()), t::<1>(inv2));
    let (dx, dw) = Flex::rms_norm_bwd(p(&dy), p(&x), p(&w), inv.clone());
    let (dx2, dw2) = fallback::rms_norm_bwd::<Flex>(p(&dy), p(&x), p(&w), inv);
    assert_close("fallback rms dx", t::<2>(dx), t::<2>(dx2));
    assert_close("fallback rms dw", t::<1>(dw), t::<1>(dw2));

    let (q, cos, sin) = (
        r(&mut g, [2, 5, 3, 8]),
        r(&mut g, [2, 5, 4]),
        r(&mut g, [2, 5, 4]),
    );
    for inverse in [false, true] {
        let a = Flex::rope_fwd(p(&q), p(&cos), p(&sin), inverse);
        let b = fallback::rope_fwd::<Flex>(p(&q), p(&cos), p(&sin), inverse);
        assert_close("fallback rope", t::<4>(a), t::<4>(b));
    }

    let (ga, up, dh) = (
        r(&mut g, [3, 4, 9]),
        r(&mut g, [3, 4, 9]),
        r(&mut g, [3, 4, 9]),
    );
    let a = Flex::swiglu_fwd(p(&ga), p(&up));
    let b = fallback::swiglu_fwd::<Flex>(p(&ga), p(&up));
    assert_close("fallback swiglu", t::<3>(a), t::<3>(b));
    let (dg, du) = Flex::swiglu_bwd(p(&dh), p(&ga), p(&up));
    let (dg2, du2) = fallback::swiglu_bwd::<Flex>(p(&dh), p(&ga), p(&up));
    assert_close("fallback swiglu dgate", t::<3>(dg), t::<3>(dg2));
    assert_close("fallback swiglu dup", t::<3>(du), t::<3>(du2));
}

#[test]
fn attention_kernels_match_fallbacks() {
    let mut g = rng(112);
    let (q, k, v) = (
        r(&mut g, [2, 7, 4, 6]),
        r(&mut g, [2, 7, 2, 6]),
        r(&mut g, [2, 7, 2, 6]),
    );
    let dout = r(&mut g, [2, 7, 4, 6]);
    let seg = ints(vec![0, 0, 0, 1, 1, 1, 1, 5, 5, 5, 5, 5, 9, 9], [2, 7]).inner();
    let scale = 0.4;
    let seg_p = seg.clone().into_primitive();
    let (out, lse) = Flex::attention_fwd(p(&q), p(&k), p(&v), seg_p, scale, Precision::F32);
    let (out2, lse2) =
        fallback::attention_fwd::<Flex>(p(&q), p(&k), p(&v), seg.clone().into_primitive(), scale);
    assert_close("fallback attention out", t::<4>(out.clone()), t::<4>(out2));
    assert_close("fallback attention lse", t::<3>(lse.clone()), t::<3>(lse2));
    let saved = AttentionSaved::<Flex> {
        q: p(&q),
        k: p(&k),
        v: p(&v),
        out,
        lse,
        segments: seg.into_primitive(),
        scale,
        precision: Precision::F32,
    };
    let (dq, dk, dv) = Flex::attention_bwd(p(&dout), saved.clone());
    let (dq2, dk2, dv2) = fallback::attention_bwd::<Flex>(p(&dout), saved);
    assert_close("fallback attention dq", t::<4>(dq), t::<4>(dq2));
    assert_close("fallback attention dk", t::<4>(dk), t::<4>(dk2));
    assert_close("fallback attention dv", t::<4>(dv), t::<4>(dv2));
}

/// The one-pass split of q|k|v into rotated heads (and its backward) against the narrow / cat /
/// RoPE composition, with angle tables that are views (as the trainer passes them); and the
/// backward is the forward's adjoint: `⟨f(x), g⟩ = ⟨x, f*(g)⟩`.
#[test]
fn qkv_heads_rope_matches_the_composition_and_its_adjoint() {
    let mut g = rng(113);
    let ([rows, seq], [heads, kvh, d]) = ([2, 5], [6, 2, 8]);
    let width = (heads + 2 * kvh) * d;
    let qkv = r(&mut g, [rows * seq, width]);
    let table = r(&mut g, [rows, seq, d]);
    let (cos, sin) = (
        table.clone().narrow(2, 0, d / 2),
        table.narrow(2, d / 2, d / 2),
    );
    let got = Flex::qkv_heads_rope(p(&qkv), p(&cos), p(&sin), [heads, kvh, d]);
    let want = fallback::qkv_heads_rope::<Flex>(p(&qkv), p(&cos), p(&sin), [heads, kvh, d]);
    for (what, (a, b)) in ["q", "k", "v"]
        .iter()
        .zip(got.clone().into_iter().zip(want))
    {
        assert_close(&format!("qkv heads {what}"), t::<4>(a), t::<4>(b));
    }
    let (dq, dk, dv) = (
        r(&mut g, [rows, seq, heads, d]),
        r(&mut g, [rows, seq, kvh, d]),
        r(&mut g, [rows, seq, kvh, d]),
    );
    let back = Flex::qkv_heads_rope_bwd(p(&dq), p(&dk), p(&dv), p(&cos), p(&sin));
    let back2 = fallback::qkv_heads_rope_bwd::<Flex>(p(&dq), p(&dk), p(&dv), p(&cos), p(&sin));
    assert_close("qkv heads backward", t::<2>(back.clone()), t::<2>(back2));
    let [q, k, v] = got.map(t::<4>);
    let lhs = (q * dq).sum() + (k * dk).sum() + (v * dv).sum();
    let rhs = (qkv * t::<2>(back)).sum();
    let (lhs, rhs) = (lhs.into_scalar(), rhs.into_scalar());
    assert!(
        (lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0),
        "adjoint: {lhs} vs {rhs}"
    );
}
