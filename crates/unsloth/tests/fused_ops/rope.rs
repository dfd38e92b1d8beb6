use tb_unsloth::{ops, reference};

use crate::common::*;

/// Positions of a packed row whose examples have the given lengths (restart at 0 each time).
fn packed_positions(lengths: &[usize]) -> Vec<i64> {
    lengths.iter().flat_map(|&n| 0..n as i64).collect()
}

#[test]
fn rope_qk_matches_reference_on_packed_positions() {
    let (b, s, h, kvh, d) = (2, 7, 4, 2, 10);
    let mut rng = rng(20);
    let mut pos = packed_positions(&[3, 4]);
    pos.extend(packed_positions(&[7]).iter().map(|p| p + 100));
    let positions = ints(pos, [b, s]);
    let (cos, sin) = ops::rope_cos_sin(positions, d, 10_000.0).unwrap();
    let q = leaf(&mut rng, [b, s, h, d]);
    let k = leaf(&mut rng, [b, s, kvh, d]);
    let rq = rand(&mut rng, [b, s, h, d]);
    let rk = rand(&mut rng, [b, s, kvh, d]);

    let (fq, fk) = ops::rope_qk(q.clone(), k.clone(), cos.clone(), sin.clone()).unwrap();
    let wq = reference::rope(q.clone(), cos.clone(), sin.clone());
    let wk = reference::rope(k.clone(), cos, sin);
    assert_close("rope q", fq.clone().inner(), wq.clone().inner());
    assert_close("rope k", fk.clone().inner(), wk.clone().inner());
    let g = (project(fq, rq.clone()) + project(fk, rk.clone())).backward();
    let gr = (project(wq, rq) + project(wk, rk)).backward();
    assert_grad("rope dq", &q, &g, &gr);
    assert_grad("rope dk", &k, &g, &gr);
}

#[test]
fn rope_matches_model_tables() {
    // Same angles as tb-model's RotaryEmbedding: position 5, head_dim 8, theta 1e4.
    let (cos, sin) = ops::rope_cos_sin(ints(vec![5], [1, 1]), 8, 10_000.0).unwrap();
    let cos = cos.into_data().into_vec::<f32>().unwrap();
    let sin = sin.into_data().into_vec::<f32>().unwrap();
    for i in 0..4 {
        let f = 1.0 / (10_000f64.powf((2 * i) as f64 / 8.0)) as f32;
        assert_eq!(cos[i], (5.0 * f).cos());
        assert_eq!(sin[i], (5.0 * f).sin());
    }
}
