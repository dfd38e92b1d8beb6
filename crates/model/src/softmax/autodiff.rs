//! [`SoftmaxBackend`] under [`Autodiff`]: one backward node whose parent is the scores; the
//! mask carries no gradient and only the probabilities are kept.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{BoolTensor, FloatTensor};

use super::SoftmaxBackend;

/// What the backward needs: the probabilities and the scale.
#[derive(Debug, Clone)]
struct Saved<B: SoftmaxBackend> {
    probs: FloatTensor<B>,
    scale: f32,
}

/// Backward of the masked softmax.
#[derive(Debug)]
struct SoftmaxBackward;

impl<B: SoftmaxBackend> Backward<B, 1> for SoftmaxBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [scores_id] = ops.parents.map(|p| p.map(|n| n.id));
        let dprobs = grads.consume::<B>(&ops.node);
        if let Some(id) = scores_id {
            let s = ops.state;
            grads.register::<B>(id, B::masked_softmax_bwd(s.probs, dprobs, s.scale));
        }
    }
}

impl<B: SoftmaxBackend, C: CheckpointStrategy> SoftmaxBackend for Autodiff<B, C> {
    fn masked_softmax_fwd(
        scores: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::masked_softmax_fwd(Self::inner(scores), mask, scale))
    }

    fn masked_softmax_bwd(
        probs: FloatTensor<Self>,
        dprobs: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::masked_softmax_bwd(
            Self::inner(probs),
            Self::inner(dprobs),
            scale,
        ))
    }

    fn masked_softmax(
        scores: FloatTensor<Self>,
        mask: BoolTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let inner = scores.primitive.clone();
        match SoftmaxBackward
            .prepare::<C>([scores.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let probs = B::masked_softmax_fwd(inner, mask, scale);
                let saved = Saved {
                    probs: probs.clone(),
                    scale,
                };
                prep.finish(saved, probs)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::masked_softmax_fwd(inner, mask, scale)),
        }
    }
}
