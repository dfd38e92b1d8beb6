//! Chunked linear + cross-entropy under autodiff: keeps the inputs and one logsumexp per token.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::{FloatTensor, IntTensor};

use super::{register, Ad};
use crate::backend::{CeSaved, FusedBackend};

#[derive(Debug)]
struct CrossEntropyBackward;

impl<B: FusedBackend> Backward<B, 2> for CrossEntropyBackward {
    type State = CeSaved<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [h_id, w_id] = ops.parents.map(|p| p.map(|n| n.id));
        let dloss = grads.consume::<B>(&ops.node);
        let (dh, dw) = B::linear_cross_entropy_bwd(dloss, ops.state, w_id.is_some());
        register::<B>(grads, h_id, dh);
        if let Some(dw) = dw {
            register::<B>(grads, w_id, dw);
        }
    }
}

pub(super) fn forward<B: FusedBackend, C: CheckpointStrategy>(
    hidden: FloatTensor<Ad<B, C>>,
    w_lm: FloatTensor<Ad<B, C>>,
    targets: IntTensor<B>,
    chunk: usize,
) -> FloatTensor<Ad<B, C>> {
    match CrossEntropyBackward
        .prepare::<C>([hidden.node.clone(), w_lm.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (loss, lse) = B::linear_cross_entropy_fwd(
                hidden.primitive.clone(),
                w_lm.primitive.clone(),
                targets.clone(),
                chunk,
            );
            let saved = CeSaved {
                hidden: hidden.primitive,
                w_lm: w_lm.primitive,
                targets,
                lse,
                chunk,
            };
            prep.finish(saved, loss)
        }
        OpsKind::UnTracked(prep) => prep.finish(
            B::linear_cross_entropy_fwd(hidden.primitive, w_lm.primitive, targets, chunk).0,
        ),
    }
}
