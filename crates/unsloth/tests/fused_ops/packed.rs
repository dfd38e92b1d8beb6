//! Packed 4-bit bases: the tiled matmuls against a dense matmul on the dequantised weight, and
//! the fused LoRA ops with a packed base against the reference on the dequantised weight.

use std::sync::Arc;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use burn::tensor::TensorPrimitive;
use rand::rngs::StdRng;
use tb_unsloth::packed_base::{PackedWeight, QuantFormat};
use tb_unsloth::{fallback, ops, reference, BaseWeight, FusedBackend, LoraWeights};

use crate::common::*;

/// A random packed weight `[d_out, d_in]` (HF layout).
fn packed(rng: &mut StdRng, format: QuantFormat, d_out: usize, d_in: usize) -> Arc<PackedWeight> {
    let w = values(rng, d_out * d_in);
    Arc::new(PackedWeight::pack("test.weight", format, &w, d_out, d_in).unwrap())
}

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

fn wrap<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

/// `[d_out, d_in]` shapes that give several forward tiles (64 rows), two backward row tiles
/// (256 rows) and, for NF4, a padded last block.
fn shapes(format: QuantFormat) -> [(usize, usize); 2] {
    match format {
        QuantFormat::Nf4 => [(300, 200), (5, 64)],
        QuantFormat::Q4K => [(300, 512), (70, 256)],
    }
}

/// The device layout (codes eight to a word, per-group scale and offset) dequantised with tensor
/// ops gives the scalar reference's values bit for bit, and is uploaded once per device.
#[test]
fn device_copy_dequantises_to_the_reference_values() {
    let mut rng = rng(199);
    for format in [QuantFormat::Nf4, QuantFormat::Q4K] {
        for (d_out, d_in) in shapes(format) {
            let w = packed(&mut rng, format, d_out, d_in);
            let dev = Default::default();
            let got = w.device_copy::<Flex>(&dev).dense();
            assert_eq!(got.dims(), [d_out, d_in]);
            let got = got.into_data().into_vec::<f32>().unwrap();
            let want = w.dequantize();
            for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    r.to_bits(),
                    "{format} [{d_out}, {d_in}] value [{}, {}]: {g} vs {r}",
                    i / d_in,
                    i % d_in
                );
            }
            let _again = w.device_copy::<Flex>(&dev);
            assert_eq!(
                w.device_copies(),
                1,
                "{format}: a second call reuses the copy"
            );
        }
    }
}

#[test]
fn packed_matmuls_match_a_dense_matmul_on_the_dequantised_weight() {
    let mut rng = rng(200);
    for format in [QuantFormat::Nf4, QuantFormat::Q4K] {
        for (d_out, d_in) in shapes(format) {
            let w = packed(&mut rng, format, d_out, d_in);
            let dense = reference::dequantized::<Flex>(&w, &Default::default());
            for tokens in [1, 7, 33] {
                let what = format!("{format} [{d_out}, {d_in}] x {tokens} tokens");
                let x = rand(&mut rng, [tokens, d_in]).inner();
                let dy = rand(&mut rng, [tokens, d_out]).inner();
                let want_y = x.clone().matmul(dense.clone().transpose());
                let want_dx = dy.clone().matmul(dense.clone());
                // Flex's tiled kernel.
                let y = wrap::<Flex, 2>(Flex::packed_linear_fwd(prim(x.clone()), &w));
                let dx = wrap::<Flex, 2>(Flex::packed_linear_bwd(prim(dy.clone()), &w));
                assert_close(&format!("tiled fwd {what}"), y, want_y.clone());
                assert_close(&format!("tiled bwd {what}"), dx, want_dx.clone());
                // The trait's default body (other backends).
                let y = wrap::<Flex, 2>(fallback::packed_linear_fwd::<Flex>(prim(x.clone()), &w));
                let dx = wrap::<Flex, 2>(fallback::packed_linear_bwd::<Flex>(prim(dy.clone()), &w));
                assert_close(&format!("default fwd {what}"), y, want_y.clone());
                assert_close(&format!("default bwd {what}"), dx, want_dx);
                // Through the autodiff backend (delegates to Flex).
                let xa: Tensor<Ad, 2> = Tensor::from_inner(x);
                let y = wrap::<Ad, 2>(Ad::packed_linear_fwd(prim(xa), &w));
                assert_close(&format!("autodiff fwd {what}"), y.inner(), want_y);
            }
        }
    }
}

/// A LoRA projection with a packed base, and the same projection with the dequantised base as
/// a dense constant (sharing the `A`/`B` leaves).
fn packed_pair(
    rng: &mut StdRng,
    format: QuantFormat,
    d_in: usize,
    r: usize,
    d_out: usize,
) -> (LoraWeights<Tensor<Ad, 2>>, LoraWeights<Tensor<Ad, 2>>) {
    let w = packed(rng, format, d_out, d_in);
    let dense = reference::dequantized::<Ad>(&w, &Default::default()).transpose();
    let (a, b) = (leaf(rng, [d_in, r]), leaf(rng, [r, d_out]));
    let scale = 2.0 / r as f32;
    (
        LoraWeights {
            w: BaseWeight::Packed(w),
            a: a.clone(),
            b: b.clone(),
            scale,
        },
        LoraWeights {
            w: BaseWeight::Dense(dense),
            a,
            b,
            scale,
        },
    )
}

fn assert_adapter_grads(name: &str, l: &LoraWeights<Tensor<Ad, 2>>, g: &Grads, gr: &Grads) {
    assert_grad(&format!("{name} dA"), &l.a, g, gr);
    assert_grad(&format!("{name} dB"), &l.b, g, gr);
}

#[test]
fn lora_linear_with_a_packed_base_matches_reference() {
    for (seed, (format, t, d_in, r, d_out)) in [
        (QuantFormat::Nf4, 7, 100, 3, 70),
        (QuantFormat::Q4K, 13, 256, 4, 96),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = rng(210 + seed as u64);
        let x = leaf(&mut rng, [t, d_in]);
        let (p, d) = packed_pair(&mut rng, format, d_in, r, d_out);
        let rr = rand(&mut rng, [t, d_out]);
        let y = ops::lora_linear(x.clone(), p.clone()).unwrap();
        let want = reference::lora_linear(x.clone(), &d);
        let name = format!("packed {format} lora_linear");
        assert_close(
            &format!("{name} y"),
            y.clone().inner(),
            want.clone().inner(),
        );
        let g = project(y, rr.clone()).backward();
        let gr = project(want, rr).backward();
        assert_grad(&format!("{name} dx"), &x, &g, &gr);
        assert_adapter_grads(&name, &p, &g, &gr);
    }
}

#[test]
fn lora_mlp_with_packed_bases_matches_reference() {
    for (seed, (format, t, hidden, inter, r)) in [
        (QuantFormat::Nf4, 7, 100, 130, 3),
        (QuantFormat::Q4K, 9, 256, 512, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = rng(220 + seed as u64);
        let x = leaf(&mut rng, [t, hidden]);
        let pairs = [
            packed_pair(&mut rng, format, hidden, r, inter),
            packed_pair(&mut rng, format, hidden, r, inter),
            packed_pair(&mut rng, format, inter, r, hidden),
        ];
        let p = pairs.clone().map(|(p, _)| p);
        let d = pairs.map(|(_, d)| d);
        let rr = rand(&mut rng, [t, hidden]);
        let y = ops::lora_mlp(x.clone(), p.clone()).unwrap();
        let want = reference::lora_mlp(x.clone(), &d);
        let name = format!("packed {format} lora_mlp");
        assert_close(
            &format!("{name} y"),
            y.clone().inner(),
            want.clone().inner(),
        );
        let g = project(y, rr.clone()).backward();
        let gr = project(want, rr).backward();
        assert_grad(&format!("{name} dx"), &x, &g, &gr);
        for (proj, l) in ["gate", "up", "down"].iter().zip(&p) {
            assert_adapter_grads(&format!("{name} {proj}"), l, &g, &gr);
        }
    }
}

#[test]
fn lora_qkv_with_packed_bases_matches_reference() {
    for (seed, (format, t, hidden)) in [(QuantFormat::Nf4, 11, 72), (QuantFormat::Q4K, 5, 256)]
        .into_iter()
        .enumerate()
    {
        let (q_out, kv_out, r) = (4 * 16, 2 * 16, 3);
        let mut rng = rng(230 + seed as u64);
        let x = leaf(&mut rng, [t, hidden]);
        // k keeps a dense base: packed and dense bases mix in one op.
        let (kd, kd_ref) = {
            let w = rand(&mut rng, [hidden, kv_out]);
            let (a, b) = (leaf(&mut rng, [hidden, r]), leaf(&mut rng, [r, kv_out]));
            let l = LoraWeights {
                w: BaseWeight::Dense(w),
                a,
                b,
                scale: 0.5,
            };
            (l.clone(), l)
        };
        let (qp, qd) = packed_pair(&mut rng, format, hidden, r, q_out);
        let (vp, vd) = packed_pair(&mut rng, format, hidden, r, kv_out);
        let p = [qp, kd, vp];
        let d = [qd, kd_ref, vd];
        let rs = [q_out, kv_out, kv_out].map(|o| rand(&mut rng, [t, o]));
        let (q, k, v) = ops::lora_qkv(x.clone(), p.clone()).unwrap();
        let (wq, wk, wv) = reference::lora_qkv(x.clone(), &d);
        let name = format!("packed {format} lora_qkv");
        assert_close(&format!("{name} q"), q.clone().inner(), wq.clone().inner());
        assert_close(&format!("{name} k"), k.clone().inner(), wk.clone().inner());
        assert_close(&format!("{name} v"), v.clone().inner(), wv.clone().inner());
        let [r0, r1, r2] = rs;
        let g =
            (project(q, r0.clone()) + project(k, r1.clone()) + project(v, r2.clone())).backward();
        let gr = (project(wq, r0) + project(wk, r1) + project(wv, r2)).backward();
        assert_grad(&format!("{name} dx"), &x, &g, &gr);
        for (proj, l) in ["q", "k", "v"].iter().zip(&p) {
            assert_adapter_grads(&format!("{name} {proj}"), l, &g, &gr);
        }
    }
}

#[test]
fn packed_base_rejects_a_mismatched_input_width() {
    let mut rng = rng(240);
    let (p, _) = packed_pair(&mut rng, QuantFormat::Nf4, 64, 2, 8);
    let x = rand(&mut rng, [3, 65]);
    assert!(ops::lora_linear(x, p).is_err());
}
