use burn::backend::{Autodiff, Flex};
use burn::tensor::Distribution;

use super::*;
use crate::test_values::{assert_close, values};

type A = Autodiff<Flex>;

/// Seeded scores `[2, 3, 5, 7]` and a mask with a causal pattern, one fully masked row and a
/// row with nothing masked.
fn inputs<B: Backend>(device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 4, Bool>) {
    B::seed(device, 7);
    let x = Tensor::<B, 4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 3.0), device);
    let mut m = vec![false; 2 * 3 * 5 * 7];
    for (r, row) in m.chunks_mut(7).enumerate() {
        let i = r % 5;
        for (j, v) in row.iter_mut().enumerate() {
            *v = j > i + 2;
        }
        if r == 11 {
            row.fill(true);
        }
        if r == 12 {
            row.fill(false);
        }
    }
    let mask = Tensor::<B, 4, Bool>::from_data(TensorData::new(m, [2, 3, 5, 7]), device);
    (x, mask)
}

#[test]
fn flex_kernel_matches_burns_softmax_and_zeroes_masked_positions() {
    let device = Default::default();
    let (x, mask) = inputs::<Flex>(&device);
    let scale = 0.125;
    let got = values(masked_softmax(x.clone(), mask.clone(), scale));
    let want = values(Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(
        default_fwd::<Flex>(
            x.into_primitive().tensor(),
            mask.clone().into_primitive(),
            scale,
        ),
    )));
    assert_close(&got, &want, 1e-6, "probs");
    let masked = mask.into_data().into_vec::<bool>().expect("bools");
    for (r, row) in got.chunks(7).enumerate() {
        let sum: f32 = row.iter().sum();
        if r == 11 {
            assert!(row.iter().all(|&p| p == 0.0), "fully masked row is zeros");
        } else {
            assert!((sum - 1.0).abs() < 1e-6, "row {r} sums to {sum}");
        }
    }
    for (p, m) in got.iter().zip(masked) {
        assert!(!m || *p == 0.0, "masked position has probability {p}");
    }
}

#[test]
fn flex_backward_matches_the_default_body() {
    let device = Default::default();
    let (x, mask) = inputs::<Flex>(&device);
    let y = masked_softmax(x, mask, 0.5);
    let dy = Tensor::<Flex, 4>::random(y.dims(), Distribution::Normal(0.0, 1.0), &device);
    let prim = |t: &Tensor<Flex, 4>| t.clone().into_primitive().tensor();
    let flex = <Flex as SoftmaxBackend>::masked_softmax_bwd(prim(&y), prim(&dy), 0.5);
    let default = default_bwd::<Flex>(prim(&y), prim(&dy), 0.5);
    let as_values = |p| values(Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(p)));
    assert_close(&as_values(flex), &as_values(default), 1e-6, "dscores");
}

/// The op's one backward node gives the gradient Burn's autodiff finds through the scale,
/// mask-fill and softmax chain (rows with at least one visible position).
#[test]
fn autodiff_gradient_matches_burns_chain() {
    let device = Default::default();
    let (x, mask) = inputs::<A>(&device);
    let x = x.detach().require_grad();
    let w = Tensor::<A, 4>::random(x.dims(), Distribution::Normal(0.0, 1.0), &device);
    let scale = 0.3;

    let ours = (masked_softmax(x.clone(), mask.clone(), scale) * w.clone()).sum();
    let g_ours = values(x.grad(&ours.backward()).expect("gradient of x"));

    let x2 = x.clone().detach().require_grad();
    let probs = softmax(
        x2.clone()
            .mul_scalar(scale)
            .mask_fill(mask.clone(), f32::NEG_INFINITY),
        3,
    );
    let theirs = (probs * w).sum();
    let g_burn = values(x2.grad(&theirs.backward()).expect("gradient of x"));
    for (r, (a, b)) in g_ours.chunks(7).zip(g_burn.chunks(7)).enumerate() {
        if r == 11 {
            assert!(
                a.iter().all(|&v| v == 0.0),
                "fully masked row has no gradient"
            );
            continue;
        }
        assert_close(a, b, 1e-5, "dx");
    }
}

#[test]
fn a_broadcast_mask_is_expanded() {
    let device = Default::default();
    let (x, mask) = inputs::<Flex>(&device);
    let one_head = mask.clone().narrow(1, 0, 1);
    let all_heads = one_head.clone().expand([2, 3, 5, 7]);
    let got = values(masked_softmax(x.clone(), one_head, 1.0));
    let want = values(masked_softmax(x, all_heads, 1.0));
    assert_eq!(got, want);
}
