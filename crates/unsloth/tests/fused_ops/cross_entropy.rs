use rand::Rng;
use tb_unsloth::ops::IGNORE_INDEX;
use tb_unsloth::{ops, reference};

use crate::common::*;

#[test]
fn linear_cross_entropy_matches_reference() {
    for (seed, (tokens, d, vocab, chunk, train_w)) in [
        (14, 37, 101, 5, false),
        (9, 64, 512, 4, true),
        (7, 8, 3, 7, false),
        (5, 16, 33, 64, true),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = rng(60 + seed as u64);
        let hidden = (rand(&mut rng, [tokens, d]) * 3.0).detach().require_grad();
        let w = rand(&mut rng, [d, vocab]);
        let w = if train_w { w.require_grad() } else { w };
        let t: Vec<i64> = (0..tokens)
            .map(|i| {
                if i % 3 == 1 {
                    IGNORE_INDEX
                } else {
                    rng.random_range(0..vocab as i64)
                }
            })
            .collect();
        let targets = ints(t, [tokens]);
        let loss =
            ops::linear_cross_entropy(hidden.clone(), w.clone(), targets.clone(), chunk).unwrap();
        let want = reference::linear_cross_entropy(hidden.clone(), w.clone(), targets);
        assert_close(
            "cross_entropy loss",
            loss.clone().inner(),
            want.clone().inner(),
        );
        let g = (loss * 1.7).backward();
        let gr = (want * 1.7).backward();
        assert_grad("cross_entropy d_hidden", &hidden, &g, &gr);
        if train_w {
            assert_grad("cross_entropy d_w_lm", &w, &g, &gr);
        } else {
            assert!(w.grad(&g).is_none(), "frozen lm head got a gradient");
        }
    }
}

#[test]
fn linear_cross_entropy_batched_and_all_ignored() {
    let mut rng = rng(70);
    let hidden = leaf(&mut rng, [2, 3, 6]);
    let w = rand(&mut rng, [6, 11]);
    let targets = ints(vec![IGNORE_INDEX; 6], [2, 3]);
    let loss = ops::linear_cross_entropy(hidden.clone(), w, targets, 4).unwrap();
    assert_eq!(loss.clone().into_scalar(), 0.0);
    let g = loss.backward();
    let dh = hidden.grad(&g).unwrap().abs().max().into_scalar();
    assert_eq!(dh, 0.0);
}

#[test]
fn linear_cross_entropy_rejects_zero_chunk() {
    let mut rng = rng(71);
    let hidden = rand(&mut rng, [3, 6]);
    let w = rand(&mut rng, [6, 11]);
    assert!(ops::linear_cross_entropy(hidden, w, ints(vec![0, 1, 2], [3]), 0).is_err());
}
