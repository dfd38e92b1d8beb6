//! HF (transformers Llama/Mistral) ↔ GGUF tensor names, and the q/k rotary row permutation.
//!
//! Names follow gguf-py `constants.py TENSOR_NAMES` / `tensor_mapping.py` (the same table as
//! Ollama's `convert_llama.go`).
//!
//! # The q/k permutation
//!
//! HF stores `q_proj`/`k_proj` rows for `rotate_half` RoPE, which pairs head dims `(i, i+hd/2)`
//! ("NeoX" order). llama.cpp runs `llama` models with `LLAMA_ROPE_TYPE_NORM`, which rotates
//! *consecutive* pairs `(2i, 2i+1)` (Meta's original interleaved order). The converter therefore
//! reorders the rows of each head (`conversion/llama.py LlamaModel.permute`):
//!
//! ```text
//! W.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols)
//! ```
//!
//! i.e. within each head, new row `2i` = old row `i` and new row `2i+1` = old row `i + hd/2`.
//! It applies to `q_proj` with `n_head` and to `k_proj` with `n_head_kv` (weights and biases).
//! [`permute_qk`] does HF → GGUF; [`unpermute_qk`] undoes it (GGUF → HF).

use crate::error::{Error, Result};

const LAYER_MAP: &[(&str, &str)] = &[
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
];

const GLOBAL_MAP: &[(&str, &str)] = &[
    ("model.embed_tokens", "token_embd"),
    ("model.norm", "output_norm"),
    ("lm_head", "output"),
];

/// Whether the converter drops this HF tensor (`rotary_emb.inv_freq` buffers).
pub fn is_skipped_hf_tensor(hf: &str) -> bool {
    hf.ends_with(".rotary_emb.inv_freq")
}

fn split_suffix(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('.')
        .filter(|(_, s)| *s == "weight" || *s == "bias")
}

/// HF name → GGUF name (`model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`).
/// `None` for names outside the Llama/Mistral table (and for skipped tensors).
pub fn hf_to_gguf_name(hf: &str) -> Option<String> {
    let (base, suffix) = split_suffix(hf)?;
    if let Some((_, g)) = GLOBAL_MAP.iter().find(|(h, _)| *h == base) {
        return Some(format!("{g}.{suffix}"));
    }
    let rest = base.strip_prefix("model.layers.")?;
    let (layer, module) = rest.split_once('.')?;
    let n: u32 = layer.parse().ok()?;
    let (_, g) = LAYER_MAP.iter().find(|(h, _)| *h == module)?;
    Some(format!("blk.{n}.{g}.{suffix}"))
}

/// GGUF name → HF name (the inverse of [`hf_to_gguf_name`]).
pub fn gguf_to_hf_name(gguf: &str) -> Option<String> {
    let (base, suffix) = split_suffix(gguf)?;
    if let Some((h, _)) = GLOBAL_MAP.iter().find(|(_, g)| *g == base) {
        return Some(format!("{h}.{suffix}"));
    }
    let rest = base.strip_prefix("blk.")?;
    let (layer, module) = rest.split_once('.')?;
    let n: u32 = layer.parse().ok()?;
    let (h, _) = LAYER_MAP.iter().find(|(_, g)| *g == module)?;
    Some(format!("model.layers.{n}.{h}.{suffix}"))
}

/// Which heads count to permute a GGUF tensor with, if it needs the q/k permutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkKind {
    /// `attn_q`: permute with `n_head`.
    Query,
    /// `attn_k`: permute with `n_head_kv`.
    Key,
}

/// `Some(kind)` for `blk.N.attn_q.*` / `blk.N.attn_k.*` (weights and biases).
pub fn qk_kind(gguf: &str) -> Option<QkKind> {
    let (base, _) = split_suffix(gguf)?;
    if base.starts_with("blk.") && base.ends_with(".attn_q") {
        Some(QkKind::Query)
    } else if base.starts_with("blk.") && base.ends_with(".attn_k") {
        Some(QkKind::Key)
    } else {
        None
    }
}

fn check(len: usize, rows: usize, cols: usize, n_head: usize) -> Result<usize> {
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) {
        return Err(Error::InvalidArgument(format!(
            "q/k permutation: {rows} rows are not divisible into {n_head} heads of even size"
        )));
    }
    if rows.checked_mul(cols) != Some(len) {
        return Err(Error::InvalidArgument(format!(
            "q/k permutation: {len} values is not {rows} rows x {cols} cols"
        )));
    }
    Ok(rows / n_head)
}

/// HF → GGUF row order for a `[rows, cols]` row-major q or k weight (or a bias, `cols = 1`).
/// Within each head of `hd = rows / n_head` rows, new row `2i` = old row `i` and new row `2i+1`
/// = old row `i + hd/2`. Pass `n_head_kv` for k.
pub fn permute_qk<T: Copy>(w: &[T], rows: usize, cols: usize, n_head: usize) -> Result<Vec<T>> {
    let hd = check(w.len(), rows, cols, n_head)?;
    let half = hd / 2;
    let mut out = Vec::with_capacity(w.len());
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let old = h * hd + j * half + i;
                out.extend_from_slice(&w[old * cols..(old + 1) * cols]);
            }
        }
    }
    Ok(out)
}

/// GGUF → HF row order: the inverse of [`permute_qk`] (used when importing a GGUF into the HF
/// layout). Within each head, new row `i` = old row `2i` and new row `i + hd/2` = old row
/// `2i+1`.
pub fn unpermute_qk<T: Copy>(w: &[T], rows: usize, cols: usize, n_head: usize) -> Result<Vec<T>> {
    let hd = check(w.len(), rows, cols, n_head)?;
    let half = hd / 2;
    let mut out = Vec::with_capacity(w.len());
    for h in 0..n_head {
        for j in 0..2 {
            for i in 0..half {
                let old = h * hd + 2 * i + j;
                out.extend_from_slice(&w[old * cols..(old + 1) * cols]);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let cases = [
            ("model.embed_tokens.weight", "token_embd.weight"),
            ("model.norm.weight", "output_norm.weight"),
            ("lm_head.weight", "output.weight"),
            (
                "model.layers.0.input_layernorm.weight",
                "blk.0.attn_norm.weight",
            ),
            (
                "model.layers.12.self_attn.q_proj.weight",
                "blk.12.attn_q.weight",
            ),
            (
                "model.layers.12.self_attn.q_proj.bias",
                "blk.12.attn_q.bias",
            ),
            (
                "model.layers.3.self_attn.k_proj.weight",
                "blk.3.attn_k.weight",
            ),
            (
                "model.layers.3.self_attn.v_proj.weight",
                "blk.3.attn_v.weight",
            ),
            (
                "model.layers.3.self_attn.o_proj.weight",
                "blk.3.attn_output.weight",
            ),
            (
                "model.layers.3.post_attention_layernorm.weight",
                "blk.3.ffn_norm.weight",
            ),
            (
                "model.layers.31.mlp.gate_proj.weight",
                "blk.31.ffn_gate.weight",
            ),
            ("model.layers.31.mlp.up_proj.weight", "blk.31.ffn_up.weight"),
            (
                "model.layers.31.mlp.down_proj.weight",
                "blk.31.ffn_down.weight",
            ),
        ];
        for (hf, g) in cases {
            assert_eq!(hf_to_gguf_name(hf).as_deref(), Some(g), "{hf}");
            assert_eq!(gguf_to_hf_name(g).as_deref(), Some(hf), "{g}");
        }
        assert!(is_skipped_hf_tensor(
            "model.layers.0.self_attn.rotary_emb.inv_freq"
        ));
        assert_eq!(
            hf_to_gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"),
            None
        );
        assert_eq!(hf_to_gguf_name("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(qk_kind("blk.0.attn_q.weight"), Some(QkKind::Query));
        assert_eq!(qk_kind("blk.0.attn_k.bias"), Some(QkKind::Key));
        assert_eq!(qk_kind("blk.0.attn_v.weight"), None);
    }

    #[test]
    fn permutation_matches_the_numpy_reshape() {
        // 2 heads of hd = 4 rows, 1 col: rows [0..8) -> per head [0, 2, 1, 3]
        let w: Vec<u32> = (0..8).collect();
        let p = permute_qk(&w, 8, 1, 2).unwrap();
        assert_eq!(p, [0, 2, 1, 3, 4, 6, 5, 7]);
        // hd = 8: [0,4,1,5,2,6,3,7]
        let w: Vec<u32> = (0..8).collect();
        assert_eq!(permute_qk(&w, 8, 1, 1).unwrap(), [0, 4, 1, 5, 2, 6, 3, 7]);
        // rows carry their columns along
        let w: Vec<u32> = (0..24).collect(); // 8 rows x 3 cols
        let p = permute_qk(&w, 8, 3, 1).unwrap();
        assert_eq!(&p[3..6], &[12, 13, 14]); // new row 1 = old row 4
    }

    #[test]
    fn unpermute_inverts_permute() {
        for (rows, cols, heads) in [(64, 5, 4), (32, 7, 2), (128, 3, 8), (16, 1, 1)] {
            let w: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let p = permute_qk(&w, rows, cols, heads).unwrap();
            assert_ne!(p, w);
            assert_eq!(unpermute_qk(&p, rows, cols, heads).unwrap(), w);
            assert_eq!(
                permute_qk(
                    &unpermute_qk(&w, rows, cols, heads).unwrap(),
                    rows,
                    cols,
                    heads
                )
                .unwrap(),
                w
            );
        }
        assert!(permute_qk(&[0f32; 12], 6, 2, 2).is_err()); // hd = 3 is odd
        assert!(permute_qk(&[0f32; 10], 8, 1, 2).is_err()); // wrong length
    }
}
