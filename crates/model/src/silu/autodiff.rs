//! [`SiluBackend`] under [`Autodiff`]: one backward node whose parent is the input, which is
//! all it keeps.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;

use super::SiluBackend;

/// Backward of `y = x·σ(x)`; the state is `x`.
#[derive(Debug)]
struct SiluBackward;

impl<B: SiluBackend> Backward<B, 1> for SiluBackward {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_id] = ops.parents.map(|p| p.map(|n| n.id));
        let dy = grads.consume::<B>(&ops.node);
        if let Some(id) = x_id {
            grads.register::<B>(id, B::silu_bwd(ops.state, dy));
        }
    }
}

impl<B: SiluBackend, C: CheckpointStrategy> SiluBackend for Autodiff<B, C> {
    fn silu_fwd(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::silu_fwd(Self::inner(x)))
    }

    fn silu_bwd(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::silu_bwd(Self::inner(x), Self::inner(dy)))
    }

    fn silu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let inner = x.primitive.clone();
        match SiluBackward
            .prepare::<C>([x.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::silu_fwd(inner.clone());
                prep.finish(inner, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::silu_fwd(inner)),
        }
    }
}
