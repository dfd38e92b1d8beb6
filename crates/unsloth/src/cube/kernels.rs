//! CubeCL kernels of the fused ops (f32, contiguous row-major arrays).
//!
//! Row kernels ([`rms_norm_fwd_kernel`], [`cross_entropy_fwd_kernel`], ...) run one cube per
//! row and reduce across the cube in shared memory; elementwise kernels run one unit per
//! element (or per rotated pair); the attention kernels run one unit per (token, head), keep a
//! `head_dim` accumulator in registers and an online softmax, so nothing `[seq, seq]` exists.
//! Scores use a large negative sentinel instead of `-inf` (WGSL may fold `1/0` to zero).
//!
//! Each kernel's host side lives in [`super`]; the math is the same as the Flex kernels and
//! the tensor-op references in [`crate::fallback`].

use burn_cubecl::cubecl;
use cubecl::prelude::*;

/// Sum of `value` over the units of the cube (every unit gets the total).
#[cube]
fn cube_sum(value: f32, #[comptime] block: usize) -> f32 {
    let mut shared = SharedMemory::<f32>::new(block);
    let tid = UNIT_POS as usize;
    shared[tid] = value;
    sync_cube();
    let mut stride = CUBE_DIM as usize / 2;
    while stride > 0 {
        if tid < stride {
            shared[tid] += shared[tid + stride];
        }
        sync_cube();
        stride /= 2;
    }
    let total = shared[0];
    sync_cube();
    total
}

/// Maximum of `value` over the units of the cube (every unit gets it).
#[cube]
fn cube_max(value: f32, #[comptime] block: usize) -> f32 {
    let mut shared = SharedMemory::<f32>::new(block);
    let tid = UNIT_POS as usize;
    shared[tid] = value;
    sync_cube();
    let mut stride = CUBE_DIM as usize / 2;
    while stride > 0 {
        if tid < stride {
            shared[tid] = max(shared[tid], shared[tid + stride]);
        }
        sync_cube();
        stride /= 2;
    }
    let total = shared[0];
    sync_cube();
    total
}

/// RMSNorm forward, one cube per row: `y = x · inv_rms · w`.
#[cube(launch)]
pub(crate) fn rms_norm_fwd_kernel(
    x: &Array<f32>,
    w: &Array<f32>,
    y: &mut Array<f32>,
    inv_rms: &mut Array<f32>,
    rows: usize,
    d: usize,
    eps: f32,
    #[comptime] block: usize,
) {
    let row = CUBE_POS;
    if row < rows {
        let base = row * d;
        let tid = UNIT_POS as usize;
        let mut acc = 0.0f32;
        let mut i = tid;
        while i < d {
            let v = x[base + i];
            acc += v * v;
            i += block;
        }
        let total = cube_sum(acc, block);
        let inv = 1.0f32 / (total / f32::cast_from(d) + eps).sqrt();
        let mut i = tid;
        while i < d {
            y[base + i] = x[base + i] * inv * w[i];
            i += block;
        }
        if tid == 0 {
            inv_rms[row] = inv;
        }
    }
}

/// RMSNorm backward for `dx`, one cube per row:
/// `dx = (g − n · mean(g · n)) · inv_rms` with `g = dy · w`, `n = x · inv_rms`.
#[cube(launch)]
pub(crate) fn rms_norm_bwd_dx_kernel(
    dy: &Array<f32>,
    x: &Array<f32>,
    w: &Array<f32>,
    inv_rms: &Array<f32>,
    dx: &mut Array<f32>,
    rows: usize,
    d: usize,
    #[comptime] block: usize,
) {
    let row = CUBE_POS;
    if row < rows {
        let base = row * d;
        let inv = inv_rms[row];
        let tid = UNIT_POS as usize;
        let mut acc = 0.0f32;
        let mut i = tid;
        while i < d {
            acc += dy[base + i] * w[i] * x[base + i] * inv;
            i += block;
        }
        let mean = cube_sum(acc, block) / f32::cast_from(d);
        let mut i = tid;
        while i < d {
            let g = dy[base + i] * w[i];
            let n = x[base + i] * inv;
            dx[base + i] = (g - n * mean) * inv;
            i += block;
        }
    }
}

/// RMSNorm backward for the weight, one unit per column: `dw[j] = Σ_rows dy · x · inv_rms`.
#[cube(launch)]
pub(crate) fn rms_norm_bwd_dw_kernel(
    dy: &Array<f32>,
    x: &Array<f32>,
    inv_rms: &Array<f32>,
    dw: &mut Array<f32>,
    rows: usize,
    d: usize,
) {
    let j = ABSOLUTE_POS;
    if j < d {
        let mut acc = 0.0f32;
        for r in 0..rows {
            acc += dy[r * d + j] * x[r * d + j] * inv_rms[r];
        }
        dw[j] = acc;
    }
}

/// Rotate-half RoPE, one unit per rotated pair `(i, i + half)` of one head of one token.
/// `sign` is `1` for the forward and `−1` for the inverse rotation.
#[cube(launch)]
pub(crate) fn rope_kernel(
    x: &Array<f32>,
    cos: &Array<f32>,
    sin: &Array<f32>,
    out: &mut Array<f32>,
    pairs: usize,
    heads: usize,
    half: usize,
    sign: f32,
) {
    let pos = ABSOLUTE_POS;
    if pos < pairs {
        let i = pos % half;
        let token = pos / (half * heads);
        let base = (pos / half) * 2 * half;
        let c = cos[token * half + i];
        let s = sin[token * half + i] * sign;
        let x1 = x[base + i];
        let x2 = x[base + i + half];
        out[base + i] = x1 * c - x2 * s;
        out[base + i + half] = x2 * c + x1 * s;
    }
}

/// `1 / (1 + e^{−g})`.
#[cube]
fn sigmoid(g: f32) -> f32 {
    1.0f32 / (1.0f32 + (-g).exp())
}

/// SwiGLU forward `silu(gate) · up`, one unit per element.
#[cube(launch)]
pub(crate) fn swiglu_fwd_kernel(gate: &Array<f32>, up: &Array<f32>, h: &mut Array<f32>, n: usize) {
    let i = ABSOLUTE_POS;
    if i < n {
        let g = gate[i];
        h[i] = g * sigmoid(g) * up[i];
    }
}

/// SwiGLU backward, one unit per element.
#[cube(launch)]
pub(crate) fn swiglu_bwd_kernel(
    dh: &Array<f32>,
    gate: &Array<f32>,
    up: &Array<f32>,
    dgate: &mut Array<f32>,
    dup: &mut Array<f32>,
    n: usize,
) {
    let i = ABSOLUTE_POS;
    if i < n {
        let g = gate[i];
        let sig = sigmoid(g);
        let dsilu = sig * (1.0f32 + g * (1.0f32 - sig));
        dup[i] = dh[i] * g * sig;
        dgate[i] = dh[i] * up[i] * dsilu;
    }
}

/// Cross-entropy forward over one chunk of logits, one cube per row: the row's logsumexp and
/// the target's negative log-likelihood (0 for the ignore index).
#[cube(launch)]
pub(crate) fn cross_entropy_fwd_kernel(
    logits: &Array<f32>,
    targets: &Array<i32>,
    lse: &mut Array<f32>,
    nll: &mut Array<f32>,
    rows: usize,
    vocab: usize,
    ignore: i32,
    #[comptime] block: usize,
) {
    let row = CUBE_POS;
    if row < rows {
        let base = row * vocab;
        let tid = UNIT_POS as usize;
        let mut m = f32::new(-1.0e30);
        let mut i = tid;
        while i < vocab {
            m = max(m, logits[base + i]);
            i += block;
        }
        let m = cube_max(m, block);
        let mut acc = 0.0f32;
        let mut i = tid;
        while i < vocab {
            acc += (logits[base + i] - m).exp();
            i += block;
        }
        let l = m + cube_sum(acc, block).ln();
        if tid == 0 {
            let t = targets[row];
            lse[row] = l;
            if t == ignore {
                nll[row] = 0.0f32;
            } else {
                nll[row] = l - logits[base + usize::cast_from(t)];
            }
        }
    }
}

/// Cross-entropy backward over one chunk, one unit per logit:
/// `(softmax − onehot) · scale`, zero rows for ignored targets.
#[cube(launch)]
pub(crate) fn cross_entropy_bwd_kernel(
    logits: &Array<f32>,
    lse: &Array<f32>,
    targets: &Array<i32>,
    scale: &Array<f32>,
    grad: &mut Array<f32>,
    rows: usize,
    vocab: usize,
    ignore: i32,
) {
    let pos = ABSOLUTE_POS;
    if pos < rows * vocab {
        let row = pos / vocab;
        let col = pos % vocab;
        let t = targets[row];
        if t == ignore {
            grad[pos] = 0.0f32;
        } else {
            let p = (logits[pos] - lse[row]).exp();
            let hot = select(usize::cast_from(t) == col, 1.0f32, 0.0f32);
            grad[pos] = (p - hot) * scale[0];
        }
    }
}

/// Attention forward, one unit per (token, query head): online softmax over the visible keys
/// (`j <= i`, same segment), `head_dim` accumulator in registers.
#[cube(launch)]
pub(crate) fn attention_fwd_kernel(
    q: &Array<f32>,
    k: &Array<f32>,
    v: &Array<f32>,
    segments: &Array<i32>,
    out: &mut Array<f32>,
    lse: &mut Array<f32>,
    units: usize,
    seq: usize,
    heads: usize,
    kv_heads: usize,
    scale: f32,
    #[comptime] head_dim: usize,
) {
    let pos = ABSOLUTE_POS;
    if pos < units {
        let h = pos % heads;
        let token = pos / heads;
        let i = token % seq;
        let row0 = token - i;
        let kvh = h / (heads / kv_heads);
        let qb = pos * head_dim;
        let seg = segments[token];
        let mut acc = Array::<f32>::new(head_dim);
        for d in 0..head_dim {
            acc[d] = 0.0f32;
        }
        let mut m = f32::new(-1.0e30);
        let mut l = 0.0f32;
        for j in 0..i + 1 {
            let tj = row0 + j;
            if segments[tj] == seg {
                let kb = (tj * kv_heads + kvh) * head_dim;
                let mut s = 0.0f32;
                for d in 0..head_dim {
                    s += q[qb + d] * k[kb + d];
                }
                s *= scale;
                let m_new = max(m, s);
                let corr = (m - m_new).exp();
                let p = (s - m_new).exp();
                l = l * corr + p;
                for d in 0..head_dim {
                    acc[d] = acc[d] * corr + p * v[kb + d];
                }
                m = m_new;
            }
        }
        for d in 0..head_dim {
            out[qb + d] = acc[d] / l;
        }
        lse[pos] = m + l.ln();
    }
}

/// `delta = Σ_d dout · out` per (token, query head), for the attention backward.
#[cube(launch)]
pub(crate) fn attention_delta_kernel(
    dout: &Array<f32>,
    out: &Array<f32>,
    delta: &mut Array<f32>,
    units: usize,
    #[comptime] head_dim: usize,
) {
    let pos = ABSOLUTE_POS;
    if pos < units {
        let b = pos * head_dim;
        let mut acc = 0.0f32;
        for d in 0..head_dim {
            acc += dout[b + d] * out[b + d];
        }
        delta[pos] = acc;
    }
}

/// Attention backward for `dq`, one unit per (token, query head): recomputes each visible
/// score from the saved logsumexp.
#[cube(launch)]
pub(crate) fn attention_dq_kernel(
    q: &Array<f32>,
    k: &Array<f32>,
    v: &Array<f32>,
    segments: &Array<i32>,
    dout: &Array<f32>,
    lse: &Array<f32>,
    delta: &Array<f32>,
    dq: &mut Array<f32>,
    units: usize,
    seq: usize,
    heads: usize,
    kv_heads: usize,
    scale: f32,
    #[comptime] head_dim: usize,
) {
    let pos = ABSOLUTE_POS;
    if pos < units {
        let h = pos % heads;
        let token = pos / heads;
        let i = token % seq;
        let row0 = token - i;
        let kvh = h / (heads / kv_heads);
        let qb = pos * head_dim;
        let seg = segments[token];
        let l = lse[pos];
        let dl = delta[pos];
        let mut acc = Array::<f32>::new(head_dim);
        for d in 0..head_dim {
            acc[d] = 0.0f32;
        }
        for j in 0..i + 1 {
            let tj = row0 + j;
            if segments[tj] == seg {
                let kb = (tj * kv_heads + kvh) * head_dim;
                let mut s = 0.0f32;
                let mut dp = 0.0f32;
                for d in 0..head_dim {
                    s += q[qb + d] * k[kb + d];
                    dp += dout[qb + d] * v[kb + d];
                }
                let p = (s * scale - l).exp();
                let ds = p * (dp - dl);
                for d in 0..head_dim {
                    acc[d] += ds * k[kb + d];
                }
            }
        }
        for d in 0..head_dim {
            dq[qb + d] = acc[d] * scale;
        }
    }
}

/// Attention backward for `dk` and `dv`, one unit per (token, key/value head): sums over the
/// later queries of the same segment and over the query heads of the group.
#[cube(launch)]
pub(crate) fn attention_dkdv_kernel(
    q: &Array<f32>,
    k: &Array<f32>,
    v: &Array<f32>,
    segments: &Array<i32>,
    dout: &Array<f32>,
    lse: &Array<f32>,
    delta: &Array<f32>,
    dk: &mut Array<f32>,
    dv: &mut Array<f32>,
    units: usize,
    seq: usize,
    heads: usize,
    kv_heads: usize,
    scale: f32,
    #[comptime] head_dim: usize,
) {
    let pos = ABSOLUTE_POS;
    if pos < units {
        let kvh = pos % kv_heads;
        let token = pos / kv_heads;
        let j = token % seq;
        let row0 = token - j;
        let group = heads / kv_heads;
        let kb = pos * head_dim;
        let seg = segments[token];
        let mut acc_k = Array::<f32>::new(head_dim);
        let mut acc_v = Array::<f32>::new(head_dim);
        for d in 0..head_dim {
            acc_k[d] = 0.0f32;
            acc_v[d] = 0.0f32;
        }
        for i in j..seq {
            let ti = row0 + i;
            if segments[ti] == seg {
                for g in 0..group {
                    let qpos = ti * heads + kvh * group + g;
                    let qb = qpos * head_dim;
                    let mut s = 0.0f32;
                    let mut dp = 0.0f32;
                    for d in 0..head_dim {
                        s += q[qb + d] * k[kb + d];
                        dp += dout[qb + d] * v[kb + d];
                    }
                    let p = (s * scale - lse[qpos]).exp();
                    let ds = p * (dp - delta[qpos]);
                    for d in 0..head_dim {
                        acc_v[d] += p * dout[qb + d];
                        acc_k[d] += ds * q[qb + d];
                    }
                }
            }
        }
        for d in 0..head_dim {
            dk[kb + d] = acc_k[d] * scale;
            dv[kb + d] = acc_v[d];
        }
    }
}
