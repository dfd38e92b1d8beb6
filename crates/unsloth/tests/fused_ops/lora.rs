use burn::prelude::*;
use rand::rngs::StdRng;
use tb_unsloth::{ops, reference, BaseWeight, LoraWeights};

use crate::common::*;

/// LoRA weights; the base weight is a constant (frozen) unless `train_w`.
fn lora(
    rng: &mut StdRng,
    d_in: usize,
    r: usize,
    d_out: usize,
    train_w: bool,
) -> LoraWeights<Tensor<Ad, 2>> {
    let w = rand(rng, [d_in, d_out]);
    LoraWeights {
        w: BaseWeight::Dense(if train_w { w.require_grad() } else { w }),
        a: leaf(rng, [d_in, r]),
        b: leaf(rng, [r, d_out]),
        scale: 2.0 / r as f32,
    }
}

fn assert_lora_grads(name: &str, l: &LoraWeights<Tensor<Ad, 2>>, g: &Grads, gr: &Grads) {
    assert_grad(&format!("{name} dA"), &l.a, g, gr);
    assert_grad(&format!("{name} dB"), &l.b, g, gr);
    let w = l.w.dense().expect("dense base");
    if w.is_require_grad() {
        assert_grad(&format!("{name} dW"), w, g, gr);
    } else {
        assert!(w.grad(g).is_none(), "{name}: frozen W got a gradient");
    }
}

#[test]
fn lora_linear_matches_reference() {
    for (seed, (b, s, d_in, r, d_out, train_w)) in [
        (2, 7, 37, 3, 29, false),
        (1, 5, 64, 16, 64, true),
        (3, 1, 5, 1, 2, false),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = rng(30 + seed as u64);
        let x = leaf(&mut rng, [b, s, d_in]);
        let l = lora(&mut rng, d_in, r, d_out, train_w);
        let rr = rand(&mut rng, [b, s, d_out]);
        let y = ops::lora_linear(x.clone(), l.clone()).unwrap();
        let want =
            reference::lora_linear(x.clone().reshape([b * s, d_in]), &l).reshape([b, s, d_out]);
        assert_close("lora_linear y", y.clone().inner(), want.clone().inner());
        let g = project(y, rr.clone()).backward();
        let gr = project(want, rr).backward();
        assert_grad("lora_linear dx", &x, &g, &gr);
        assert_lora_grads("lora_linear", &l, &g, &gr);
    }
}

#[test]
fn lora_mlp_matches_reference() {
    for (seed, (t, hidden, inter, r, train_w)) in [(7, 37, 53, 3, false), (11, 16, 40, 4, true)]
        .into_iter()
        .enumerate()
    {
        let mut rng = rng(40 + seed as u64);
        let x = leaf(&mut rng, [t, hidden]);
        let w = [
            lora(&mut rng, hidden, r, inter, train_w),
            lora(&mut rng, hidden, r, inter, false),
            lora(&mut rng, inter, r, hidden, train_w),
        ];
        let rr = rand(&mut rng, [t, hidden]);
        let y = ops::lora_mlp(x.clone(), w.clone()).unwrap();
        let want = reference::lora_mlp(x.clone(), &w);
        assert_close("lora_mlp y", y.clone().inner(), want.clone().inner());
        let g = project(y, rr.clone()).backward();
        let gr = project(want, rr).backward();
        assert_grad("lora_mlp dx", &x, &g, &gr);
        for (name, l) in ["lora_mlp gate", "lora_mlp up", "lora_mlp down"]
            .iter()
            .zip(&w)
        {
            assert_lora_grads(name, l, &g, &gr);
        }
    }
}

#[test]
fn lora_qkv_matches_reference() {
    let (b, s, hidden, r) = (2, 7, 37, 3);
    let (q_out, kv_out) = (4 * 6, 2 * 6);
    let mut rng = rng(50);
    let x = leaf(&mut rng, [b, s, hidden]);
    let w = [
        lora(&mut rng, hidden, r, q_out, false),
        lora(&mut rng, hidden, r, kv_out, true),
        lora(&mut rng, hidden, r, kv_out, false),
    ];
    let rs = [q_out, kv_out, kv_out].map(|o| rand(&mut rng, [b, s, o]));
    let (q, k, v) = ops::lora_qkv(x.clone(), w.clone()).unwrap();
    let (wq, wk, wv) = reference::lora_qkv(x.clone().reshape([b * s, hidden]), &w);
    let flat = |t: Tensor<Ad, 3>| {
        let [b, s, o] = t.dims();
        t.reshape([b * s, o])
    };
    let (q, k, v) = (flat(q), flat(k), flat(v));
    assert_close("lora_qkv q", q.clone().inner(), wq.clone().inner());
    assert_close("lora_qkv k", k.clone().inner(), wk.clone().inner());
    assert_close("lora_qkv v", v.clone().inner(), wv.clone().inner());
    let [r0, r1, r2] = rs.map(flat);
    let g = (project(q, r0.clone()) + project(k, r1.clone()) + project(v, r2.clone())).backward();
    let gr = (project(wq, r0) + project(wk, r1) + project(wv, r2)).backward();
    assert_grad("lora_qkv dx", &x, &g, &gr);
    for (name, l) in ["lora_qkv q", "lora_qkv k", "lora_qkv v"].iter().zip(&w) {
        assert_lora_grads(name, l, &g, &gr);
    }
}

#[test]
fn lora_rejects_mismatched_rank() {
    let mut rng = rng(51);
    let x = rand(&mut rng, [3, 8]);
    let mut l = lora(&mut rng, 8, 2, 5, false);
    l.b = rand(&mut rng, [3, 5]);
    assert!(ops::lora_linear(x, l).is_err());
}

/// A bf16 base (a model held in bf16): the output and every gradient within bf16 rounding of the
/// f32 reference on the same (bf16-valued) weights; where this CPU multiplies bf16 fast, the
/// adapter's products are bf16 too (autocast's arithmetic), so they differ from f32 products.
#[test]
fn lora_linear_on_a_bf16_base_stays_within_bf16_rounding() {
    use burn::tensor::FloatDType;
    let (t, d_in, r, d_out) = (33, 48, 8, 40);
    let mut rng = rng(37);
    let x = leaf(&mut rng, [t, d_in]);
    let wide = lora(&mut rng, d_in, r, d_out, false);
    let w16 = wide.w.dense().unwrap().clone().cast(FloatDType::BF16);
    let exact = LoraWeights {
        w: BaseWeight::Dense(w16.clone().cast(FloatDType::F32)),
        ..wide.clone()
    };
    let bf16 = LoraWeights {
        w: BaseWeight::Dense(w16),
        ..wide
    };
    let rr = rand(&mut rng, [t, d_out]);
    let y = ops::lora_linear(x.clone(), bf16.clone()).unwrap();
    let want = reference::lora_linear(x.clone(), &exact);
    let e = rel_err(y.clone().inner(), want.clone().inner());
    assert!(e < 2e-2, "bf16-base lora_linear y: relative error {e:.3e}");
    if tb_unsloth::Precision::for_bf16_model() == tb_unsloth::Precision::Bf16 {
        assert!(
            e > 1e-5,
            "bf16 products equal the f32 ones ({e:.3e}): nothing rounded"
        );
    }
    let g = project(y, rr.clone()).backward();
    let gr = project(want, rr).backward();
    for (what, got, want) in [
        ("dx", x.grad(&g), x.grad(&gr)),
        ("dA", bf16.a.grad(&g), exact.a.grad(&gr)),
        ("dB", bf16.b.grad(&g), exact.b.grad(&gr)),
    ] {
        let e = rel_err(got.unwrap(), want.unwrap());
        assert!(
            e < 3e-2,
            "bf16-base lora_linear {what}: relative error {e:.3e}"
        );
    }
}
