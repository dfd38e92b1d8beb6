//! The ops on the plain (non-autodiff) backend: the trait's default `fused_*` methods must give
//! the same values as the autodiff path.

use burn::backend::Flex;
use burn::prelude::*;
use tb_unsloth::{ops, reference, BaseWeight, LoraWeights, Precision};

use crate::common::*;

fn plain<const D: usize>(t: &Tensor<Ad, D>) -> Tensor<Flex, D> {
    t.clone().inner()
}

#[test]
fn plain_flex_matches_reference() {
    let mut r = rng(100);
    let (t, hidden, inter, rank, vocab) = (9, 13, 21, 2, 31);
    let x = rand(&mut r, [t, hidden]);
    let mut lora = |d_in, d_out| LoraWeights {
        w: BaseWeight::Dense(plain(&rand(&mut r, [d_in, d_out]))),
        a: plain(&rand(&mut r, [d_in, rank])),
        b: plain(&rand(&mut r, [rank, d_out])),
        scale: 1.5,
    };
    let mlp = [
        lora(hidden, inter),
        lora(hidden, inter),
        lora(inter, hidden),
    ];
    let got = ops::lora_mlp(plain(&x), mlp.clone()).unwrap();
    assert_close("plain lora_mlp", got, reference::lora_mlp(plain(&x), &mlp));

    let w_lm = plain(&rand(&mut r, [hidden, vocab]));
    let targets: Tensor<Flex, 1, Int> = ints(
        (0..t as i64)
            .map(|i| if i == 4 { -100 } else { i * 3 % vocab as i64 })
            .collect(),
        [t],
    )
    .inner();
    let got = ops::linear_cross_entropy(plain(&x), w_lm.clone(), targets.clone(), 4).unwrap();
    let want = reference::linear_cross_entropy(plain(&x), w_lm, targets);
    assert_close("plain cross_entropy", got, want);

    let q = plain(&rand(&mut r, [1, 5, 2, 4]));
    let k = plain(&rand(&mut r, [1, 5, 1, 4]));
    let v = plain(&rand(&mut r, [1, 5, 1, 4]));
    let seg: Tensor<Flex, 2, Int> = ints(vec![0, 0, 1, 1, 1], [1, 5]).inner();
    let got = ops::attention(
        q.clone(),
        k.clone(),
        v.clone(),
        seg.clone(),
        None,
        Precision::F32,
    )
    .unwrap();
    assert_close(
        "plain attention",
        got,
        reference::attention(q, k, v, seg, 0.5),
    );
}

#[test]
fn half_precision_inputs_keep_their_dtype() {
    use burn::tensor::DType;
    let mut r = rng(101);
    let x32 = plain(&rand(&mut r, [5, 12]));
    let w32 = plain(&rand(&mut r, [12]));
    let x = x32.clone().cast(DType::BF16);
    let w = w32.clone().cast(DType::BF16);
    let y = ops::rms_norm(x, w, 1e-6).unwrap();
    assert_eq!(y.dtype(), DType::BF16);
    // bf16 keeps 8 significant bits: compare loosely against the f32 reference.
    let err = rel_err(y.cast(DType::F32), reference::rms_norm(x32, w32, 1e-6));
    assert!(err < 2e-2, "bf16 rms_norm error {err}");

    let g = plain(&rand(&mut r, [3, 7])).cast(DType::F16);
    let u = plain(&rand(&mut r, [3, 7])).cast(DType::F16);
    assert_eq!(ops::swiglu(g, u).unwrap().dtype(), DType::F16);
}
