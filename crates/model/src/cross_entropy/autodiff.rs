//! [`CrossEntropyBackend`] under [`Autodiff`]: one backward node whose parent is the logits;
//! the targets carry no gradient.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{FloatTensor, IntTensor};

use super::CrossEntropyBackend;

/// What the backward needs: the logits, the rows' logsumexp and the targets.
#[derive(Debug, Clone)]
struct Saved<B: CrossEntropyBackend> {
    logits: FloatTensor<B>,
    lse: FloatTensor<B>,
    targets: IntTensor<B>,
}

/// Backward of `nll = lse − logit[target]`.
#[derive(Debug)]
struct CrossEntropyBackward;

impl<B: CrossEntropyBackend> Backward<B, 1> for CrossEntropyBackward {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [logits_id] = ops.parents.map(|p| p.map(|n| n.id));
        let dnll = grads.consume::<B>(&ops.node);
        if let Some(id) = logits_id {
            let s = ops.state;
            grads.register::<B>(id, B::cross_entropy_bwd(s.logits, s.lse, s.targets, dnll));
        }
    }
}

impl<B: CrossEntropyBackend, C: CheckpointStrategy> CrossEntropyBackend for Autodiff<B, C> {
    fn cross_entropy_fwd(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (lse, nll) = B::cross_entropy_fwd(Self::inner(logits), targets);
        (Self::from_inner(lse), Self::from_inner(nll))
    }

    fn cross_entropy_bwd(
        logits: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        targets: IntTensor<Self>,
        dnll: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::cross_entropy_bwd(
            Self::inner(logits),
            Self::inner(lse),
            targets,
            Self::inner(dnll),
        ))
    }

    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        let inner = logits.primitive.clone();
        match CrossEntropyBackward
            .prepare::<C>([logits.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (lse, nll) = B::cross_entropy_fwd(inner.clone(), targets.clone());
                let saved = Saved {
                    logits: inner,
                    lse,
                    targets,
                };
                prep.finish(saved, nll)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::cross_entropy_fwd(inner, targets).1),
        }
    }
}
