//! RMSNorm under autodiff: keeps `x`, `weight` and `inv_rms`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use super::{register, Ad};
use crate::backend::FusedBackend;

#[derive(Debug)]
struct RmsNormBackward;

impl<B: FusedBackend> Backward<B, 2> for RmsNormBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_id, w_id] = ops.parents.map(|p| p.map(|n| n.id));
        let dy = grads.consume::<B>(&ops.node);
        let (x, w, inv_rms) = ops.state;
        let (dx, dw) = B::rms_norm_bwd(dy, x, w, inv_rms);
        register::<B>(grads, x_id, dx);
        register::<B>(grads, w_id, dw);
    }
}

pub(super) fn forward<B: FusedBackend, C: CheckpointStrategy>(
    x: FloatTensor<Ad<B, C>>,
    w: FloatTensor<Ad<B, C>>,
    eps: f32,
) -> FloatTensor<Ad<B, C>> {
    match RmsNormBackward
        .prepare::<C>([x.node.clone(), w.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (y, inv_rms) = B::rms_norm_fwd(x.primitive.clone(), w.primitive.clone(), eps);
            prep.finish((x.primitive, w.primitive, inv_rms), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::rms_norm_fwd(x.primitive, w.primitive, eps).0),
    }
}
