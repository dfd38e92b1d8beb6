use tb_unsloth::{ops, reference};

use crate::common::*;

#[test]
fn rms_norm_matches_reference() {
    for (seed, [b, s, d]) in [[2, 7, 37], [1, 3, 64], [3, 1, 5]].into_iter().enumerate() {
        let mut rng = rng(seed as u64);
        let x = leaf(&mut rng, [b, s, d]);
        let w = leaf(&mut rng, [d]);
        let r = rand(&mut rng, [b, s, d]);
        let y = ops::rms_norm(x.clone(), w.clone(), 1e-6).unwrap();
        let want = reference::rms_norm(x.clone(), w.clone(), 1e-6);
        assert_close("rms_norm y", y.clone().inner(), want.clone().inner());
        let g = project(y, r.clone()).backward();
        let gr = project(want, r).backward();
        assert_grad("rms_norm dx", &x, &g, &gr);
        assert_grad("rms_norm dweight", &w, &g, &gr);
    }
}

#[test]
fn rms_norm_rejects_wrong_weight() {
    let mut rng = rng(9);
    let x = rand(&mut rng, [2, 5]);
    let w = rand(&mut rng, [4]);
    assert!(ops::rms_norm(x, w, 1e-6).is_err());
}
