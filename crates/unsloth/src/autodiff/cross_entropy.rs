//! Chunked linear + cross-entropy under autodiff: the forward prepares the gradients (for an
//! upstream gradient of 1) while each chunk's logits exist; the backward scales them.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::{FloatTensor, IntTensor};

use super::{register, Ad};
use crate::backend::{CeGradients, CeSaved, FusedBackend};

#[derive(Debug)]
struct CrossEntropyBackward;

impl<B: FusedBackend> Backward<B, 2> for CrossEntropyBackward {
    type State = CeSaved<B>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [h_id, w_id] = ops.parents.map(|p| p.map(|n| n.id));
        let dloss = grads.consume::<B>(&ops.node);
        let (dh, dw) = B::linear_cross_entropy_bwd(dloss, ops.state);
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
            let wanted = if w_lm.node.requirement.is_none() {
                CeGradients::Hidden
            } else {
                CeGradients::HiddenAndHead
            };
            let (loss, saved) = B::linear_cross_entropy_fwd(
                hidden.primitive,
                w_lm.primitive,
                targets,
                chunk,
                wanted,
            );
            prep.finish(saved, loss)
        }
        OpsKind::UnTracked(prep) => prep.finish(
            B::linear_cross_entropy_fwd(
                hidden.primitive,
                w_lm.primitive,
                targets,
                chunk,
                CeGradients::None,
            )
            .0,
        ),
    }
}
