//! Leaf kernels written with plain tensor ops: the defaults of [`crate::FusedBackend`] for
//! backends that do not provide their own kernel for an op (Flex and the CubeCL backends
//! override them). They
//! give the same results as the Flex kernels; the attention backward here materialises the
//! `[seq, seq]` probabilities of one call (it still keeps nothing `[seq, seq]` between forward
//! and backward), and the packed-base matmuls dequantise the whole weight for the call, on the device, from
//! a packed copy uploaded once.
//!
//! Shapes are those of the matching [`crate::FusedBackend`] method.

use burn::prelude::*;
use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Shape, TensorMetadata};

use crate::backend::{AttentionSaved, FusedBackend};
use crate::packed_base::PackedWeight;
use crate::prim::{prim, tensor};

/// See [`crate::FusedBackend::rms_norm_fwd`].
pub fn rms_norm_fwd<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    eps: f32,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let x = tensor::<B, 2>(x);
    let rows = x.dims()[0];
    let inv = x
        .clone()
        .powi_scalar(2)
        .mean_dim(1)
        .add_scalar(eps)
        .sqrt()
        .recip();
    let y = x * inv.clone() * tensor::<B, 1>(weight).unsqueeze::<2>();
    (prim(y), prim(inv.reshape([rows])))
}

/// See [`crate::FusedBackend::rms_norm_bwd`].
pub fn rms_norm_bwd<B: Backend>(
    dy: FloatTensor<B>,
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    inv_rms: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let dy = tensor::<B, 2>(dy);
    let [rows, d] = dy.dims();
    let inv = tensor::<B, 1>(inv_rms).reshape([rows, 1]);
    let n = tensor::<B, 2>(x) * inv.clone();
    let g = dy.clone() * tensor::<B, 1>(weight).unsqueeze::<2>();
    let mean = (g.clone() * n.clone()).mean_dim(1);
    let dx = (g - n.clone() * mean) * inv;
    let dw = (dy * n).sum_dim(0).reshape([d]);
    (prim(dx), prim(dw))
}

/// See [`crate::FusedBackend::rope_fwd`].
pub fn rope_fwd<B: Backend>(
    x: FloatTensor<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
    inverse: bool,
) -> FloatTensor<B> {
    let x = tensor::<B, 4>(x);
    let d = x.dims()[3];
    let full = |t: FloatTensor<B>| {
        let t = tensor::<B, 3>(t);
        Tensor::cat(vec![t.clone(), t], 2).unsqueeze_dim::<4>(2)
    };
    let sin = if inverse { full(sin).neg() } else { full(sin) };
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.clone().narrow(3, d / 2, d / 2);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    prim(x * full(cos) + rotated * sin)
}

/// See [`crate::FusedBackend::qkv_heads_rope`]: narrows and reshapes, then the backend's
/// [`crate::FusedBackend::rope_fwd`] on queries and keys together.
pub fn qkv_heads_rope<B: FusedBackend>(
    qkv: FloatTensor<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
    [heads, kv_heads, hd]: [usize; 3],
) -> [FloatTensor<B>; 3] {
    let [rows, seq, _] = cos.shape().dims();
    let qkv = tensor::<B, 2>(qkv);
    let (qw, kw) = (heads * hd, kv_heads * hd);
    let part = |start: usize, width: usize, n: usize| {
        qkv.clone()
            .narrow(1, start, width)
            .reshape([rows, seq, n, hd])
    };
    let (q, k, v) = (
        part(0, qw, heads),
        part(qw, kw, kv_heads),
        part(qw + kw, kw, kv_heads),
    );
    let qk = tensor::<B, 4>(B::rope_fwd(
        prim(Tensor::cat(vec![q, k], 2)),
        cos,
        sin,
        false,
    ));
    [
        prim(qk.clone().narrow(2, 0, heads)),
        prim(qk.narrow(2, heads, kv_heads)),
        prim(v),
    ]
}

/// See [`crate::FusedBackend::qkv_heads_rope_bwd`].
pub fn qkv_heads_rope_bwd<B: FusedBackend>(
    dq: FloatTensor<B>,
    dk: FloatTensor<B>,
    dv: FloatTensor<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
) -> FloatTensor<B> {
    let [rows, seq, heads, hd] = dq.shape().dims();
    let kv_heads = dk.shape().dims::<4>()[2];
    let tokens = rows * seq;
    let dqk = Tensor::cat(vec![tensor::<B, 4>(dq), tensor::<B, 4>(dk)], 2);
    let dqk = tensor::<B, 4>(B::rope_fwd(prim(dqk), cos, sin, true));
    let dqk = dqk.reshape([tokens, (heads + kv_heads) * hd]);
    let dv = tensor::<B, 4>(dv).reshape([tokens, kv_heads * hd]);
    prim(Tensor::cat(vec![dqk, dv], 1))
}

/// Flattens a primitive of any rank to 1-D; returns it with its original shape.
fn flat<B: Backend>(t: FloatTensor<B>) -> (Tensor<B, 1>, Shape) {
    let shape = t.shape();
    let n = shape.num_elements();
    (tensor::<B, 1>(B::float_reshape(t, Shape::new([n]))), shape)
}

/// Restores the shape taken by [`flat`].
fn unflat<B: Backend>(t: Tensor<B, 1>, shape: Shape) -> FloatTensor<B> {
    B::float_reshape(prim(t), shape)
}

/// See [`crate::FusedBackend::swiglu_fwd`].
pub fn swiglu_fwd<B: Backend>(gate: FloatTensor<B>, up: FloatTensor<B>) -> FloatTensor<B> {
    let (g, shape) = flat::<B>(gate);
    let (u, _) = flat::<B>(up);
    unflat(silu(g) * u, shape)
}

/// See [`crate::FusedBackend::swiglu_bwd`].
pub fn swiglu_bwd<B: Backend>(
    dh: FloatTensor<B>,
    gate: FloatTensor<B>,
    up: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (g, shape) = flat::<B>(gate);
    let (dh, _) = flat::<B>(dh);
    let (u, _) = flat::<B>(up);
    let sig = sigmoid(g.clone());
    let silu = g.clone() * sig.clone();
    let dsilu = sig.clone() * (g * (sig.neg().add_scalar(1.0))).add_scalar(1.0);
    let du = dh.clone() * silu;
    let dg = dh * u * dsilu;
    (unflat(dg, shape.clone()), unflat(du, shape))
}

/// `true` where query `i` may not see key `j`, `[batch, 1, seq, seq]`.
fn blocked<B: Backend>(segments: IntTensor<B>) -> Tensor<B, 4, Bool> {
    let seg = Tensor::<B, 2, Int>::from_primitive(segments);
    let [b, s] = seg.dims();
    let device = seg.device();
    let pos = Tensor::<B, 1, Int>::arange(0..s as i64, &device);
    let future = pos
        .clone()
        .reshape([1, 1, 1, s])
        .expand([b, 1, s, s])
        .greater(pos.reshape([1, 1, s, 1]).expand([b, 1, s, s]));
    let other = seg
        .clone()
        .reshape([b, 1, s, 1])
        .expand([b, 1, s, s])
        .not_equal(seg.reshape([b, 1, 1, s]).expand([b, 1, s, s]));
    future.bool_or(other)
}

/// `[batch, seq, kv_heads, d]` → `[batch, heads, seq, d]` (each kv head repeated).
fn repeat_kv<B: Backend>(t: Tensor<B, 4>, heads: usize) -> Tensor<B, 4> {
    let [b, s, kvh, d] = t.dims();
    t.swap_dims(1, 2)
        .reshape([b, kvh, 1, s, d])
        .expand([b, kvh, heads / kvh, s, d])
        .reshape([b, heads, s, d])
}

/// `[batch, heads, seq, d]` → `[batch, seq, kv_heads, d]`, summing each group of heads.
fn sum_groups<B: Backend>(t: Tensor<B, 4>, kv_heads: usize) -> Tensor<B, 4> {
    let [b, h, s, d] = t.dims();
    t.reshape([b, kv_heads, h / kv_heads, s, d])
        .sum_dim(2)
        .reshape([b, kv_heads, s, d])
        .swap_dims(1, 2)
}

/// Scaled, masked scores `[batch, heads, seq, seq]` and the head-major q, k, v.
fn scores<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    segments: IntTensor<B>,
    scale: f32,
) -> [Tensor<B, 4>; 4] {
    let q = tensor::<B, 4>(q).swap_dims(1, 2);
    let h = q.dims()[1];
    let k = repeat_kv(tensor::<B, 4>(k), h);
    let v = repeat_kv(tensor::<B, 4>(v), h);
    let s = q
        .clone()
        .matmul(k.clone().swap_dims(2, 3))
        .mul_scalar(scale)
        .mask_fill(blocked::<B>(segments), f32::NEG_INFINITY);
    [s, q, k, v]
}

/// See [`crate::FusedBackend::attention_fwd`].
pub fn attention_fwd<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    segments: IntTensor<B>,
    scale: f32,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let [s, _, _, v] = scores::<B>(q, k, v, segments, scale);
    let max = s.clone().max_dim(3);
    let lse = (s.clone() - max.clone()).exp().sum_dim(3).log() + max;
    let p = (s - lse.clone()).exp();
    let out = p.matmul(v).swap_dims(1, 2);
    let [b, h, seq, _] = lse.dims();
    (prim(out), prim(lse.reshape([b, h, seq]).swap_dims(1, 2)))
}

/// See [`crate::FusedBackend::attention_bwd`].
pub fn attention_bwd<B: Backend>(
    dout: FloatTensor<B>,
    saved: AttentionSaved<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let kvh = tensor::<B, 4>(saved.k.clone()).dims()[2];
    let scale = saved.scale;
    let [s, q, k, v] = scores::<B>(saved.q, saved.k, saved.v, saved.segments, scale);
    let lse = tensor::<B, 3>(saved.lse)
        .swap_dims(1, 2)
        .unsqueeze_dim::<4>(3);
    let p = (s - lse).exp();
    let d_o = tensor::<B, 4>(dout).swap_dims(1, 2);
    let o = tensor::<B, 4>(saved.out).swap_dims(1, 2);
    let delta = (d_o.clone() * o).sum_dim(3);
    let dv = p.clone().swap_dims(2, 3).matmul(d_o.clone());
    let dp = d_o.matmul(v.swap_dims(2, 3));
    let ds = p * (dp - delta) * scale;
    let dq = ds.clone().matmul(k).swap_dims(1, 2);
    let dk = ds.swap_dims(2, 3).matmul(q);
    (
        prim(dq),
        prim(sum_groups(dk, kvh)),
        prim(sum_groups(dv, kvh)),
    )
}

/// The packed weight dequantised on `like`'s device from its cached device copy
/// ([`PackedWeight::device_copy`]: uploaded once, still 4-bit), in `like`'s dtype: a transient
/// dense copy, dropped when the calling op returns.
fn dense_packed<B: Backend>(w: &PackedWeight, like: &Tensor<B, 2>) -> Tensor<B, 2> {
    w.device_copy::<B>(&like.device())
        .dense()
        .cast(like.dtype())
}

/// See [`crate::FusedBackend::packed_linear_fwd`] (whole-weight dequantisation on the device per call).
pub fn packed_linear_fwd<B: Backend>(x: FloatTensor<B>, w: &PackedWeight) -> FloatTensor<B> {
    let x = tensor::<B, 2>(x);
    let dense = dense_packed(w, &x);
    prim(x.matmul(dense.transpose()))
}

/// See [`crate::FusedBackend::packed_linear_bwd`] (whole-weight dequantisation on the device per call).
pub fn packed_linear_bwd<B: Backend>(dy: FloatTensor<B>, w: &PackedWeight) -> FloatTensor<B> {
    let dy = tensor::<B, 2>(dy);
    let dense = dense_packed(w, &dy);
    prim(dy.matmul(dense))
}
