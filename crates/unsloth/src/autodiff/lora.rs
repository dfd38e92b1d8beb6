//! LoRA linear, LoRA-MLP and LoRA-QKV under autodiff. The base weights are parents like the
//! adapters, so a frozen base (untracked) costs no `dW`; a trainable one gets it. A packed base
//! has no autodiff node: an untracked leaf stands in as its parent, so it never gets a `dW`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::tensor::ops::FloatTensor;

use super::{register, wrap, Ad};
use crate::backend::{BaseWeight, FusedBackend, LoraGrads, LoraWeights, MlpSaved};

type Lora<B> = LoraWeights<FloatTensor<B>>;

/// Registers the gradients of one projection whose parents are `[w, a, b]`.
fn register_lora<B: FusedBackend>(
    grads: &mut Gradients,
    ids: [Option<NodeId>; 3],
    g: LoraGrads<FloatTensor<B>>,
) {
    let [w_id, a_id, b_id] = ids;
    if let Some(dw) = g.dw {
        register::<B>(grads, w_id, dw);
    }
    register::<B>(grads, a_id, g.da);
    register::<B>(grads, b_id, g.db);
}

/// Splits the ten parents `[x, w0, a0, b0, w1, a1, b1, w2, a2, b2]`.
fn split10(ids: [Option<NodeId>; 10]) -> (Option<NodeId>, [[Option<NodeId>; 3]; 3]) {
    let [x, w0, a0, b0, w1, a1, b1, w2, a2, b2] = ids;
    (x, [[w0, a0, b0], [w1, a1, b1], [w2, a2, b2]])
}

/// The autodiff tensor whose node is the base's parent slot: the dense weight itself, or for a
/// packed base a fresh untracked leaf (sharing `x`'s data; only its node is used).
fn base_parent<B: FusedBackend, C: CheckpointStrategy>(
    w: &BaseWeight<FloatTensor<Ad<B, C>>>,
    x: &FloatTensor<Ad<B, C>>,
) -> FloatTensor<Ad<B, C>> {
    match w {
        BaseWeight::Dense(t) => t.clone(),
        BaseWeight::Packed(_) => wrap::<B, C>(x.primitive.clone()),
    }
}

fn primitives<B: FusedBackend, C: CheckpointStrategy>(
    weights: [LoraWeights<FloatTensor<Ad<B, C>>>; 3],
) -> [Lora<B>; 3] {
    weights.map(|w| w.map(|t| t.primitive))
}

#[derive(Debug)]
struct LinearBackward;

impl<B: FusedBackend> Backward<B, 4> for LinearBackward {
    /// x, x·A, weights.
    type State = (FloatTensor<B>, FloatTensor<B>, Lora<B>);

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_id, w_id, a_id, b_id] = ops.parents.map(|p| p.map(|n| n.id));
        let dy = grads.consume::<B>(&ops.node);
        let (x, xa, lora) = ops.state;
        let (dx, g) = B::lora_linear_bwd(dy, x, xa, &lora, w_id.is_some());
        register::<B>(grads, x_id, dx);
        register_lora::<B>(grads, [w_id, a_id, b_id], g);
    }
}

pub(super) fn linear<B: FusedBackend, C: CheckpointStrategy>(
    x: FloatTensor<Ad<B, C>>,
    lora: LoraWeights<FloatTensor<Ad<B, C>>>,
) -> FloatTensor<Ad<B, C>> {
    let nodes = [
        x.node.clone(),
        base_parent::<B, C>(&lora.w, &x).node,
        lora.a.node.clone(),
        lora.b.node.clone(),
    ];
    let lora = lora.map(|t| t.primitive);
    match LinearBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (y, xa) = B::lora_linear_fwd(x.primitive.clone(), &lora);
            prep.finish((x.primitive, xa, lora), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::lora_linear_fwd(x.primitive, &lora).0),
    }
}

#[derive(Debug)]
struct MlpBackward;

impl<B: FusedBackend> Backward<B, 10> for MlpBackward {
    /// x, the forward's saved tensors, weights (gate, up, down).
    type State = (FloatTensor<B>, MlpSaved<FloatTensor<B>>, [Lora<B>; 3]);

    fn backward(self, ops: Ops<Self::State, 10>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x_id, ids) = split10(ops.parents.map(|p| p.map(|n| n.id)));
        let dout = grads.consume::<B>(&ops.node);
        let (x, saved, weights) = ops.state;
        let want = ids.map(|i| i[0].is_some());
        let (dx, g) = B::lora_mlp_bwd(dout, x, saved, &weights, want);
        register::<B>(grads, x_id, dx);
        for (ids, g) in ids.into_iter().zip(g) {
            register_lora::<B>(grads, ids, g);
        }
    }
}

pub(super) fn mlp<B: FusedBackend, C: CheckpointStrategy>(
    x: FloatTensor<Ad<B, C>>,
    weights: [LoraWeights<FloatTensor<Ad<B, C>>>; 3],
) -> FloatTensor<Ad<B, C>> {
    let [g, u, d] = &weights;
    let nodes = [
        x.node.clone(),
        base_parent::<B, C>(&g.w, &x).node,
        g.a.node.clone(),
        g.b.node.clone(),
        base_parent::<B, C>(&u.w, &x).node,
        u.a.node.clone(),
        u.b.node.clone(),
        base_parent::<B, C>(&d.w, &x).node,
        d.a.node.clone(),
        d.b.node.clone(),
    ];
    let weights = primitives::<B, C>(weights);
    match MlpBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (y, saved) = B::lora_mlp_fwd(x.primitive.clone(), &weights);
            prep.finish((x.primitive, saved, weights), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::lora_mlp_fwd(x.primitive, &weights).0),
    }
}

#[derive(Debug)]
struct QkvBackward;

impl<B: FusedBackend> Backward<B, 10> for QkvBackward {
    /// x, the three x·A, weights (q, k, v).
    type State = (FloatTensor<B>, [FloatTensor<B>; 3], [Lora<B>; 3]);

    fn backward(self, ops: Ops<Self::State, 10>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x_id, ids) = split10(ops.parents.map(|p| p.map(|n| n.id)));
        let dy = grads.consume::<B>(&ops.node);
        let (x, xa, weights) = ops.state;
        let want = ids.map(|i| i[0].is_some());
        let (dx, g) = B::lora_qkv_bwd(dy, x, xa, &weights, want);
        register::<B>(grads, x_id, dx);
        for (ids, g) in ids.into_iter().zip(g) {
            register_lora::<B>(grads, ids, g);
        }
    }
}

pub(super) fn qkv<B: FusedBackend, C: CheckpointStrategy>(
    x: FloatTensor<Ad<B, C>>,
    weights: [LoraWeights<FloatTensor<Ad<B, C>>>; 3],
) -> FloatTensor<Ad<B, C>> {
    let [q, k, v] = &weights;
    let nodes = [
        x.node.clone(),
        base_parent::<B, C>(&q.w, &x).node,
        q.a.node.clone(),
        q.b.node.clone(),
        base_parent::<B, C>(&k.w, &x).node,
        k.a.node.clone(),
        k.b.node.clone(),
        base_parent::<B, C>(&v.w, &x).node,
        v.a.node.clone(),
        v.b.node.clone(),
    ];
    let weights = primitives::<B, C>(weights);
    match QkvBackward.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (y, xa) = B::lora_qkv_fwd(x.primitive.clone(), &weights);
            prep.finish((x.primitive, xa, weights), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::lora_qkv_fwd(x.primitive, &weights).0),
    }
}
