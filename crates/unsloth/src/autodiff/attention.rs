//! Packed causal attention under autodiff: keeps q, k, v, the output and the per-row
//! logsumexp; the scores are recomputed in the backward.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::{FloatTensor, IntTensor};

use super::{register, Ad};
use crate::backend::{AttentionSaved, FusedBackend, Precision};

#[derive(Debug)]
struct AttentionBackward;

impl<B: FusedBackend> Backward<B, 3> for AttentionBackward {
    type State = AttentionSaved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [q_id, k_id, v_id] = ops.parents.map(|p| p.map(|n| n.id));
        let dout = grads.consume::<B>(&ops.node);
        let (dq, dk, dv) = B::attention_bwd(dout, ops.state);
        register::<B>(grads, q_id, dq);
        register::<B>(grads, k_id, dk);
        register::<B>(grads, v_id, dv);
    }
}

pub(super) fn forward<B: FusedBackend, C: CheckpointStrategy>(
    q: FloatTensor<Ad<B, C>>,
    k: FloatTensor<Ad<B, C>>,
    v: FloatTensor<Ad<B, C>>,
    segments: IntTensor<B>,
    scale: f32,
    precision: Precision,
) -> FloatTensor<Ad<B, C>> {
    match AttentionBackward
        .prepare::<C>([q.node.clone(), k.node.clone(), v.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, lse) = B::attention_fwd(
                q.primitive.clone(),
                k.primitive.clone(),
                v.primitive.clone(),
                segments.clone(),
                scale,
                precision,
            );
            let saved = AttentionSaved {
                q: q.primitive,
                k: k.primitive,
                v: v.primitive,
                out: out.clone(),
                lse,
                segments,
                scale,
                precision,
            };
            prep.finish(saved, out)
        }
        OpsKind::UnTracked(prep) => {
            let (q, k, v) = (q.primitive, k.primitive, v.primitive);
            prep.finish(B::attention_fwd(q, k, v, segments, scale, precision).0)
        }
    }
}
