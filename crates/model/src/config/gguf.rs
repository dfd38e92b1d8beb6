//! [`ModelConfig`] from GGUF `llama.*` metadata.

use super::{Architecture, ModelConfig, RopeScaling};
use crate::error::{Error, Result};

impl ModelConfig {
    /// Builds the config from GGUF `llama.*` metadata (llama.cpp's key names and types).
    ///
    /// `has_output` says whether the file has a separate `output.weight` (else the embeddings are
    /// tied, as llama.cpp falls back to `token_embd`).
    pub fn from_gguf(file: &tb_gguf::GgufFile) -> Result<Self> {
        let origin = "GGUF metadata";
        let md = file.metadata();
        let arch = md.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(Error::config(
                origin,
                "general.architecture",
                format!("unsupported architecture `{arch}` (supported: llama)"),
            ));
        }
        let u = |key: &str| -> Result<usize> { Ok(md.get_u32(key)? as usize) };
        let hidden_size = u("llama.embedding_length")?;
        let num_attention_heads = u("llama.attention.head_count")?;
        let num_key_value_heads = match md.opt_u32("llama.attention.head_count_kv")? {
            Some(v) => v as usize,
            None => num_attention_heads,
        };
        let key_length = md.opt_u32("llama.attention.key_length")?;
        let head_dim = match key_length {
            Some(v) => v as usize,
            None if num_attention_heads > 0 => hidden_size / num_attention_heads,
            None => 0,
        };
        if let Some(rot) = md.opt_u32("llama.rope.dimension_count")? {
            if rot as usize != head_dim {
                return Err(Error::config(
                    origin,
                    "llama.rope.dimension_count",
                    format!("partial rotary embeddings ({rot} of {head_dim}) are not supported"),
                ));
            }
        }
        if let Some(kind) = md.get("llama.rope.scaling.type") {
            let is_none = matches!(md.get_str("llama.rope.scaling.type"), Ok("none"));
            if !is_none {
                return Err(Error::config(
                    origin,
                    "llama.rope.scaling.type",
                    format!("RoPE scaling is not supported (found {kind:?})"),
                ));
            }
        }
        let vocab_size = match md.opt_u32("llama.vocab_size")? {
            Some(v) => v as usize,
            None => md.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        let eos = md.opt_u32("tokenizer.ggml.eos_token_id")?;
        let config = ModelConfig {
            architecture: Architecture::Llama,
            hidden_size,
            intermediate_size: u("llama.feed_forward_length")?,
            num_hidden_layers: u("llama.block_count")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            explicit_head_dim: key_length.is_some(),
            rms_norm_eps: md.get_f32("llama.attention.layer_norm_rms_epsilon")? as f64,
            rope_theta: md.opt_f32("llama.rope.freq_base")?.unwrap_or(10_000.0) as f64,
            rope_scaling: RopeScaling::None,
            max_position_embeddings: u("llama.context_length")?,
            sliding_window: None,
            tie_word_embeddings: file.tensor("output.weight").is_err(),
            vocab_size,
            bos_token_id: md.opt_u32("tokenizer.ggml.bos_token_id")?,
            eos_token_ids: eos.into_iter().collect(),
            // The tokenizer metadata carries these; the config holds what config.json would.
            pad_token_id: None,
            unk_token_id: None,
        };
        config.validate(origin)?;
        Ok(config)
    }
}
