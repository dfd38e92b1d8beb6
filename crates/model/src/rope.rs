//! Rotary position embeddings in HF's rotate-half form.
//!
//! HF Llama/Mistral rotate the pairs `(i, i + d/2)` of each head ("NeoX" style). llama.cpp's
//! LLAMA arch rotates consecutive pairs instead, which is why its converter permutes the q/k rows;
//! GGUF import undoes that permutation so this module serves both.

use burn::prelude::*;

/// Precomputed cos/sin tables for positions `0..max_positions`.
#[derive(Module, Debug)]
pub struct RotaryEmbedding<B: Backend> {
    /// `cat(cos(p·f), cos(p·f))`, `[max_positions, head_dim]`.
    cos: Tensor<B, 2>,
    /// `cat(sin(p·f), sin(p·f))`, `[max_positions, head_dim]`.
    sin: Tensor<B, 2>,
}

impl<B: Backend> RotaryEmbedding<B> {
    /// Builds the tables as HF does: `inv_freq[i] = theta^(-2i/d)` in f32, angle `p · inv_freq`
    /// in f32.
    pub fn new(head_dim: usize, max_positions: usize, theta: f64, device: &B::Device) -> Self {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / (theta.powf((2 * i) as f64 / head_dim as f64)) as f32)
            .collect();
        let mut cos = Vec::with_capacity(max_positions * head_dim);
        let mut sin = Vec::with_capacity(max_positions * head_dim);
        for p in 0..max_positions {
            for _ in 0..2 {
                for f in &inv_freq {
                    let angle = p as f32 * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let shape = [max_positions, head_dim];
        Self {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Number of positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// cos and sin for the given positions, ready to broadcast over heads.
    ///
    /// # Shapes
    /// - positions: `[batch, seq]`
    /// - output: two tensors `[batch, 1, seq, head_dim]`
    pub fn tables(&self, positions: Tensor<B, 2, Int>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, s] = positions.dims();
        let d = self.cos.dims()[1];
        let flat = positions.reshape([b * s]);
        let cos = self
            .cos
            .clone()
            .select(0, flat.clone())
            .reshape([b, 1, s, d]);
        let sin = self.sin.clone().select(0, flat).reshape([b, 1, s, d]);
        (cos, sin)
    }

    /// Rotates `x` by the angles in `cos`/`sin` (from [`Self::tables`]; broadcast over the
    /// heads, or repeated per head).
    ///
    /// Attention calls it on the projections' own row-major `[batch, seq, heads, head_dim]`
    /// layout with the tables repeated per head
    /// ([`RopeTables`](crate::attention::RopeTables)), so every product, forward and backward,
    /// reads two contiguous operands of one shape: Flex's fast element-wise path (a table
    /// broadcast over the heads, or a head-major view, falls back to strided iteration).
    ///
    /// # Shapes
    /// - x: `[batch, heads, seq, head_dim]` or `[batch, seq, heads, head_dim]`
    /// - cos, sin: x's shape, or x's with 1 heads (broadcast)
    /// - output: x's shape
    pub fn apply(x: Tensor<B, 4>, cos: &Tensor<B, 4>, sin: &Tensor<B, 4>) -> Tensor<B, 4> {
        let d = x.dims()[3];
        let x1 = x.clone().narrow(3, 0, d / 2);
        let x2 = x.clone().narrow(3, d / 2, d / 2);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos.clone() + rotated * sin.clone()
    }
}
