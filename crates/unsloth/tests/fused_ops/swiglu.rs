use tb_unsloth::{ops, reference};

use crate::common::*;

#[test]
fn swiglu_matches_reference() {
    for (seed, [t, i]) in [[7, 37], [1, 5000], [13, 3]].into_iter().enumerate() {
        let mut rng = rng(10 + seed as u64);
        // Wider range than [-1, 1) so the sigmoid saturates somewhere.
        let gate = (rand(&mut rng, [t, i]) * 8.0).detach().require_grad();
        let up = leaf(&mut rng, [t, i]);
        let r = rand(&mut rng, [t, i]);
        let h = ops::swiglu(gate.clone(), up.clone()).unwrap();
        let want = reference::swiglu(gate.clone(), up.clone());
        assert_close("swiglu h", h.clone().inner(), want.clone().inner());
        let g = project(h, r.clone()).backward();
        let gr = project(want, r).backward();
        assert_grad("swiglu dgate", &gate, &g, &gr);
        assert_grad("swiglu dup", &up, &g, &gr);
    }
}
