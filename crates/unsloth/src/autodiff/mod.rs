//! [`FusedBackend`] for [`Autodiff`]: every `fused_*` op records a hand-written backward
//! through Burn's [`Backward`](burn::backend::autodiff::ops::Backward) trait; the leaf kernels
//! run on the inner backend without tracking (no double backward).

mod attention;
mod cross_entropy;
mod lora;
mod rms_norm;
mod rope;
mod swiglu;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{FloatTensor, IntTensor};

use crate::backend::{AttentionSaved, FusedBackend, LoraWeights, Precision};
use crate::packed_base::PackedWeight;

/// Adds `grad` to the gradient of the parent `id` when that parent is tracked.
fn register<B: Backend>(grads: &mut Gradients, id: Option<NodeId>, grad: FloatTensor<B>) {
    if let Some(id) = id {
        grads.register::<B>(id, grad);
    }
}

type Ad<B, C> = Autodiff<B, C>;

fn inner<B: Backend, C: CheckpointStrategy>(t: FloatTensor<Ad<B, C>>) -> FloatTensor<B> {
    <Ad<B, C> as AutodiffBackend>::inner(t)
}

fn wrap<B: Backend, C: CheckpointStrategy>(t: FloatTensor<B>) -> FloatTensor<Ad<B, C>> {
    <Ad<B, C> as AutodiffBackend>::from_inner(t)
}

impl<B: FusedBackend, C: CheckpointStrategy> FusedBackend for Autodiff<B, C> {
    fn rms_norm_fwd(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (y, r) = B::rms_norm_fwd(inner::<B, C>(x), inner::<B, C>(weight), eps);
        (wrap::<B, C>(y), wrap::<B, C>(r))
    }

    fn rms_norm_bwd(
        dy: FloatTensor<Self>,
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        inv_rms: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dw) = B::rms_norm_bwd(
            inner::<B, C>(dy),
            inner::<B, C>(x),
            inner::<B, C>(weight),
            inner::<B, C>(inv_rms),
        );
        (wrap::<B, C>(dx), wrap::<B, C>(dw))
    }

    fn rope_fwd(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        inverse: bool,
    ) -> FloatTensor<Self> {
        wrap::<B, C>(B::rope_fwd(
            inner::<B, C>(x),
            inner::<B, C>(cos),
            inner::<B, C>(sin),
            inverse,
        ))
    }

    fn swiglu_fwd(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        wrap::<B, C>(B::swiglu_fwd(inner::<B, C>(gate), inner::<B, C>(up)))
    }

    fn swiglu_bwd(
        dh: FloatTensor<Self>,
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dg, du) = B::swiglu_bwd(inner::<B, C>(dh), inner::<B, C>(gate), inner::<B, C>(up));
        (wrap::<B, C>(dg), wrap::<B, C>(du))
    }

    fn chunk_cross_entropy_fwd(
        logits: FloatTensor<Self>,
        targets: IntTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (lse, nll) = B::chunk_cross_entropy_fwd(inner::<B, C>(logits), targets);
        (wrap::<B, C>(lse), wrap::<B, C>(nll))
    }

    fn chunk_cross_entropy_bwd(
        logits: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        targets: IntTensor<Self>,
        scale: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        wrap::<B, C>(B::chunk_cross_entropy_bwd(
            inner::<B, C>(logits),
            inner::<B, C>(lse),
            targets,
            inner::<B, C>(scale),
        ))
    }

    fn attention_fwd(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        segments: IntTensor<Self>,
        scale: f32,
        precision: Precision,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (out, lse) = B::attention_fwd(
            inner::<B, C>(q),
            inner::<B, C>(k),
            inner::<B, C>(v),
            segments,
            scale,
            precision,
        );
        (wrap::<B, C>(out), wrap::<B, C>(lse))
    }

    fn attention_bwd(
        dout: FloatTensor<Self>,
        saved: AttentionSaved<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let saved = AttentionSaved::<B> {
            q: inner::<B, C>(saved.q),
            k: inner::<B, C>(saved.k),
            v: inner::<B, C>(saved.v),
            out: inner::<B, C>(saved.out),
            lse: inner::<B, C>(saved.lse),
            segments: saved.segments,
            scale: saved.scale,
            precision: saved.precision,
        };
        let (dq, dk, dv) = B::attention_bwd(inner::<B, C>(dout), saved);
        (wrap::<B, C>(dq), wrap::<B, C>(dk), wrap::<B, C>(dv))
    }

    fn packed_linear_fwd(x: FloatTensor<Self>, w: &PackedWeight) -> FloatTensor<Self> {
        wrap::<B, C>(B::packed_linear_fwd(inner::<B, C>(x), w))
    }

    fn packed_linear_bwd(dy: FloatTensor<Self>, w: &PackedWeight) -> FloatTensor<Self> {
        wrap::<B, C>(B::packed_linear_bwd(inner::<B, C>(dy), w))
    }

    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f32,
    ) -> FloatTensor<Self> {
        rms_norm::forward::<B, C>(x, weight, eps)
    }

    fn fused_rope_qk(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        rope::forward::<B, C>(q, k, inner::<B, C>(cos), inner::<B, C>(sin))
    }

    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        swiglu::forward::<B, C>(gate, up)
    }

    fn fused_lora_linear(
        x: FloatTensor<Self>,
        lora: LoraWeights<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        lora::linear::<B, C>(x, lora)
    }

    fn fused_lora_mlp(
        x: FloatTensor<Self>,
        weights: [LoraWeights<FloatTensor<Self>>; 3],
    ) -> FloatTensor<Self> {
        lora::mlp::<B, C>(x, weights)
    }

    fn fused_lora_qkv(
        x: FloatTensor<Self>,
        weights: [LoraWeights<FloatTensor<Self>>; 3],
    ) -> FloatTensor<Self> {
        lora::qkv::<B, C>(x, weights)
    }

    fn fused_linear_cross_entropy(
        hidden: FloatTensor<Self>,
        w_lm: FloatTensor<Self>,
        targets: IntTensor<Self>,
        chunk: usize,
    ) -> FloatTensor<Self> {
        cross_entropy::forward::<B, C>(hidden, w_lm, targets, chunk)
    }

    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        segments: IntTensor<Self>,
        scale: f32,
        precision: Precision,
    ) -> FloatTensor<Self> {
        attention::forward::<B, C>(q, k, v, segments, scale, precision)
    }
}
