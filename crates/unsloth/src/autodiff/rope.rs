//! RoPE of queries and keys under autodiff: the backward is the inverse rotation of the
//! output gradient, split back into queries and keys.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;

use super::{register, Ad};
use crate::backend::FusedBackend;
use crate::prim::{prim, tensor};

#[derive(Debug)]
struct RopeBackward;

impl<B: FusedBackend> Backward<B, 2> for RopeBackward {
    /// cos, sin and the number of query heads.
    type State = (FloatTensor<B>, FloatTensor<B>, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [q_id, k_id] = ops.parents.map(|p| p.map(|n| n.id));
        let dy = grads.consume::<B>(&ops.node);
        let (cos, sin, heads) = ops.state;
        let dx = tensor::<B, 4>(B::rope_fwd(dy, cos, sin, true));
        let all = dx.dims()[2];
        register::<B>(grads, q_id, prim(dx.clone().narrow(2, 0, heads)));
        register::<B>(grads, k_id, prim(dx.narrow(2, heads, all - heads)));
    }
}

pub(super) fn forward<B: FusedBackend, C: CheckpointStrategy>(
    q: FloatTensor<Ad<B, C>>,
    k: FloatTensor<Ad<B, C>>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
) -> FloatTensor<Ad<B, C>> {
    let heads = tensor::<B, 4>(q.primitive.clone()).dims()[2];
    let nodes = [q.node.clone(), k.node.clone()];
    let qk = Tensor::cat(
        vec![tensor::<B, 4>(q.primitive), tensor::<B, 4>(k.primitive)],
        2,
    );
    let y = B::rope_fwd(prim(qk), cos.clone(), sin.clone(), false);
    match RopeBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((cos, sin, heads), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}
