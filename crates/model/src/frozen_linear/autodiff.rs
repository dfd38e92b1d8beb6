//! [`FrozenLinearBackend`] under [`Autodiff`]: a frozen weight records a single backward node
//! whose only parent is the input.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;

use super::{prim, tensor, FrozenLinearBackend};

/// Backward of `y = x·W` for a frozen `W`: `dx = dy·Wᵀ`.
#[derive(Debug)]
struct FrozenLinearBackward;

impl<B: FrozenLinearBackend> Backward<B, 1> for FrozenLinearBackward {
    /// The frozen weight.
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_id] = ops.parents.map(|p| p.map(|n| n.id));
        let dy = grads.consume::<B>(&ops.node);
        if let Some(id) = x_id {
            grads.register::<B>(id, B::frozen_linear_bwd(dy, ops.state));
        }
    }
}

impl<B: FrozenLinearBackend, C: CheckpointStrategy> FrozenLinearBackend for Autodiff<B, C> {
    fn frozen_linear_fwd(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::frozen_linear_fwd(Self::inner(x), Self::inner(w)))
    }

    fn frozen_linear_bwd(dy: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::frozen_linear_bwd(Self::inner(dy), Self::inner(w)))
    }

    fn frozen_linear_fwd_add(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        c: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::frozen_linear_fwd_add(
            Self::inner(x),
            Self::inner(w),
            Self::inner(c),
        ))
    }

    fn frozen_linear_bwd_add(
        dy: FloatTensor<Self>,
        w: FloatTensor<Self>,
        c: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::from_inner(B::frozen_linear_bwd_add(
            Self::inner(dy),
            Self::inner(w),
            Self::inner(c),
        ))
    }

    fn frozen_linear(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        if !w.node.requirement.is_none() {
            // A trainable weight: Burn's matmul records both gradients.
            let dtype = burn::tensor::TensorMetadata::dtype(&x);
            return prim(tensor::<Self>(x).matmul(tensor::<Self>(w).cast(dtype)));
        }
        let w = Self::inner(w);
        let y = B::frozen_linear_fwd(x.primitive, w.clone());
        match FrozenLinearBackward
            .prepare::<C>([x.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(w, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}
