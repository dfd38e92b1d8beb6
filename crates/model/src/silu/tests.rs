use burn::backend::{Autodiff, Flex};
use burn::tensor::Distribution;

use super::*;
use crate::test_values::{assert_close, values};

type A = Autodiff<Flex>;

#[test]
fn flex_forward_and_backward_match_the_default_bodies() {
    let device = Default::default();
    Flex::seed(&device, 11);
    // 3·5·4099 elements: more than one rayon chunk, and a ragged last one.
    let x = Tensor::<Flex, 3>::random([3, 5, 4099], Distribution::Normal(0.0, 6.0), &device);
    let dy = Tensor::<Flex, 3>::random(x.dims(), Distribution::Normal(0.0, 1.0), &device);
    let prim = |t: &Tensor<Flex, 3>| t.clone().into_primitive().tensor();
    let as_values = |p| values(Tensor::<Flex, 3>::from_primitive(TensorPrimitive::Float(p)));
    assert_close(
        &values(silu(x.clone())),
        &as_values(default_fwd::<Flex>(prim(&x))),
        1e-6,
        "y",
    );
    assert_close(
        &as_values(<Flex as SiluBackend>::silu_bwd(prim(&x), prim(&dy))),
        &as_values(default_bwd::<Flex>(prim(&x), prim(&dy))),
        1e-6,
        "dx",
    );
}

/// The op's backward node gives the gradient Burn's autodiff finds through `x·sigmoid(x)`.
#[test]
fn autodiff_gradient_matches_burns_silu() {
    let device = Default::default();
    A::seed(&device, 5);
    let x = Tensor::<A, 2>::random([7, 33], Distribution::Normal(0.0, 4.0), &device).require_grad();
    let w = Tensor::<A, 2>::random([7, 33], Distribution::Normal(0.0, 1.0), &device);
    let ours = (silu(x.clone()) * w.clone()).sum();
    let g_ours = values(x.grad(&ours.backward()).expect("gradient"));
    let x2 = x.clone().detach().require_grad();
    let theirs = (burn::tensor::activation::silu(x2.clone()) * w).sum();
    let g_burn = values(x2.grad(&theirs.backward()).expect("gradient"));
    assert_close(&g_ours, &g_burn, 1e-5, "dx");
}
