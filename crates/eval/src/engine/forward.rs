//! The forward pass of llama.cpp's `llama` graph over encoded weights (plus a LoRA adapter's
//! deltas where one is applied), with a KV cache.

use rayon::prelude::*;

use super::matmul::Kernel;
use super::model::{EngineModel, LayerRefs};
use super::{Error, Result};

/// Keys and values of every layer for the positions seen so far, as f32 host vectors
/// (batch 1, `[positions, kv_heads·head_dim]` per layer).
///
/// A type of its own beside tb-model's [`tb_model::KvCache`] because the engine runs without
/// Burn: that cache holds a backend's tensors (`[batch, kv_heads, positions, head_dim]`) for
/// `CausalLm`, this one plain `Vec<f32>`s its attention loop indexes directly.
#[derive(Debug, Clone)]
pub struct F32KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

impl F32KvCache {
    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything (keeps the allocations).
    pub fn clear(&mut self) {
        self.k.iter_mut().for_each(Vec::clear);
        self.v.iter_mut().for_each(Vec::clear);
        self.len = 0;
    }
}

/// `x · w / sqrt(mean(x²) + eps)` per row, the sum of squares in f64 as ggml does.
fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let d = w.len();
    let mut out = vec![0f32; x.len()];
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let sum: f64 = row.iter().map(|&v| v as f64 * v as f64).sum();
        let mean = (sum / d as f64) as f32;
        let scale = 1.0 / (mean + eps).sqrt();
        for ((o, &v), &g) in o.iter_mut().zip(row).zip(w) {
            *o = v * scale * g;
        }
    }
    out
}

/// RoPE on adjacent pairs `(2i, 2i+1)` of every head (llama.cpp's `LLAMA_ROPE_TYPE_NORM`; the
/// GGUF's q/k rows are permuted for it), angles computed in f32 as ggml does.
fn rope(x: &mut [f32], n_heads: usize, hd: usize, pos0: usize, theta_base: f32) {
    let theta_scale = theta_base.powf(-2.0 / hd as f32);
    let width = n_heads * hd;
    let mut cs = vec![(0f32, 0f32); hd / 2];
    for (t, row) in x.chunks_exact_mut(width).enumerate() {
        let mut theta = (pos0 + t) as f32;
        for c in cs.iter_mut() {
            *c = (theta.cos(), theta.sin());
            theta *= theta_scale;
        }
        for head in row.chunks_exact_mut(hd) {
            for (pair, &(cos, sin)) in head.chunks_exact_mut(2).zip(&cs) {
                let (x0, x1) = (pair[0], pair[1]);
                pair[0] = x0 * cos - x1 * sin;
                pair[1] = x0 * sin + x1 * cos;
            }
        }
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

impl EngineModel {
    /// An empty cache for this model.
    pub fn new_cache(&self) -> F32KvCache {
        F32KvCache {
            k: vec![Vec::new(); self.hyper.n_layer],
            v: vec![Vec::new(); self.hyper.n_layer],
            len: 0,
        }
    }

    /// Runs `tokens` after what `cache` holds and appends them to it.
    ///
    /// # Shapes
    /// - `tokens`: `[n]`, `n >= 1`
    /// - `logits_for`: `[m]` indices into `tokens` whose next-token logits are wanted
    /// - returns logits `[m, n_vocab]`
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut F32KvCache,
        logits_for: &[usize],
        kernel: Kernel,
    ) -> Result<Vec<f32>> {
        let h = &self.hyper;
        let n = tokens.len();
        if n == 0 {
            return Err(Error::InvalidInput("no tokens to run".into()));
        }
        if cache.len + n > h.n_ctx {
            return Err(Error::InvalidInput(format!(
                "{} positions exceed the model's context length {}",
                cache.len + n,
                h.n_ctx
            )));
        }
        let d = h.n_embd;
        let embd = self.matrix(&self.token_embd);
        let mut x = vec![0f32; n * d];
        for (&t, row) in tokens.iter().zip(x.chunks_exact_mut(d)) {
            if t as usize >= h.n_vocab {
                return Err(Error::InvalidInput(format!(
                    "token id {t} is outside the {}-token vocabulary",
                    h.n_vocab
                )));
            }
            embd.row_into(t as usize, row);
        }
        if let Some(&bad) = logits_for.iter().find(|&&i| i >= n) {
            return Err(Error::InvalidInput(format!(
                "logits asked for position {bad} of a {n}-token chunk"
            )));
        }
        for (li, layer) in self.layers.iter().enumerate() {
            self.layer(li, layer, &mut x, n, cache, kernel);
        }
        cache.len += n;
        if logits_for.is_empty() {
            return Ok(Vec::new());
        }
        let mut picked = Vec::with_capacity(logits_for.len() * d);
        for &i in logits_for {
            picked.extend_from_slice(&x[i * d..(i + 1) * d]);
        }
        let normed = rms_norm(&picked, &self.output_norm, h.rms_eps);
        Ok(self.project(&self.output, &normed, logits_for.len(), kernel))
    }

    /// One decoder layer, in place on the residual stream `x` (`[n, n_embd]`).
    fn layer(
        &self,
        li: usize,
        l: &LayerRefs,
        x: &mut [f32],
        n: usize,
        cache: &mut F32KvCache,
        kernel: Kernel,
    ) {
        let h = &self.hyper;
        let (hd, nh, nkv) = (h.head_dim, h.n_head, h.n_head_kv);
        let hn = rms_norm(x, &l.attn_norm, h.rms_eps);
        let mut q = self.project(&l.wq, &hn, n, kernel);
        let mut k = self.project(&l.wk, &hn, n, kernel);
        let v = self.project(&l.wv, &hn, n, kernel);
        let past = cache.len;
        rope(&mut q, nh, hd, past, h.rope_theta);
        rope(&mut k, nkv, hd, past, h.rope_theta);
        cache.k[li].extend_from_slice(&k);
        cache.v[li].extend_from_slice(&v);
        let (kc, vc) = (&cache.k[li], &cache.v[li]);
        let kv_w = nkv * hd;
        let group = nh / nkv;
        let scale = 1.0 / (hd as f32).sqrt();
        let dot = kernel.dot();
        let mut attn = vec![0f32; n * nh * hd];
        attn.par_chunks_mut(hd).enumerate().for_each(|(i, out)| {
            let (t, head) = (i / nh, i % nh);
            let g = head / group;
            let qv = &q[t * nh * hd + head * hd..][..hd];
            let upto = past + t + 1;
            let mut scores: Vec<f32> = (0..upto)
                .map(|j| dot(qv, &kc[j * kv_w + g * hd..][..hd]) * scale)
                .collect();
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f64;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s as f64;
            }
            let inv = (1.0 / sum) as f32;
            for (j, &w) in scores.iter().enumerate() {
                let vv = &vc[j * kv_w + g * hd..][..hd];
                for (o, &val) in out.iter_mut().zip(vv) {
                    *o += w * inv * val;
                }
            }
        });
        let o = self.project(&l.wo, &attn, n, kernel);
        x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
        let hn = rms_norm(x, &l.ffn_norm, h.rms_eps);
        let gate = self.project(&l.gate, &hn, n, kernel);
        let up = self.project(&l.up, &hn, n, kernel);
        let act: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| silu(g) * u).collect();
        let down = self.project(&l.down, &act, n, kernel);
        x.iter_mut().zip(&down).for_each(|(a, b)| *a += b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_rotates_adjacent_pairs() {
        // position 1, theta_base 10000, hd 4: pair 0 angle 1 rad, pair 1 angle 0.01 rad
        let mut x = vec![1.0, 0.0, 1.0, 0.0];
        rope(&mut x, 1, 4, 1, 10000.0);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
        assert!((x[2] - 0.01f32.cos()).abs() < 1e-6 && (x[3] - 0.01f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn rms_norm_normalises() {
        let y = rms_norm(&[3.0, 4.0], &[1.0, 2.0], 0.0);
        let s = (12.5f32).sqrt();
        assert!((y[0] - 3.0 / s).abs() < 1e-6 && (y[1] - 8.0 / s).abs() < 1e-6);
    }
}
