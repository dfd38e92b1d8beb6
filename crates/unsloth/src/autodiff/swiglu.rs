//! SwiGLU under autodiff: keeps `gate` and `up`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use super::{register, Ad};
use crate::backend::FusedBackend;

#[derive(Debug)]
struct SwigluBackward;

impl<B: FusedBackend> Backward<B, 2> for SwigluBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [g_id, u_id] = ops.parents.map(|p| p.map(|n| n.id));
        let dh = grads.consume::<B>(&ops.node);
        let (gate, up) = ops.state;
        let (dg, du) = B::swiglu_bwd(dh, gate, up);
        register::<B>(grads, g_id, dg);
        register::<B>(grads, u_id, du);
    }
}

pub(super) fn forward<B: FusedBackend, C: CheckpointStrategy>(
    gate: FloatTensor<Ad<B, C>>,
    up: FloatTensor<Ad<B, C>>,
) -> FloatTensor<Ad<B, C>> {
    match SwigluBackward
        .prepare::<C>([gate.node.clone(), up.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let h = B::swiglu_fwd(gate.primitive.clone(), up.primitive.clone());
            prep.finish((gate.primitive, up.primitive), h)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::swiglu_fwd(gate.primitive, up.primitive)),
    }
}
