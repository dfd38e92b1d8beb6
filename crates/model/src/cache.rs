//! Key/value cache for incremental decoding of [`crate::CausalLm`], in the backend's tensors.
//! The embedded GGUF engine (tb-eval) runs without Burn and keeps its own `F32KvCache` of host
//! vectors.

use burn::prelude::*;

/// Keys and values of every layer for the tokens seen so far (after RoPE, before GQA repeat).
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `n_layers` layers.
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
            len: 0,
        }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends this step's keys/values for `layer` and returns the full keys/values.
    ///
    /// # Shapes
    /// - k, v: `[batch, kv_heads, new, head_dim]`
    /// - output: `[batch, kv_heads, cached + new, head_dim]`
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (k, v) = match self.layers[layer].take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        (k, v)
    }

    /// Records that `n` positions were added (call once per forward, after all layers).
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
