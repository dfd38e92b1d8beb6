//! Model configuration for Llama-family decoders (`LlamaForCausalLM`, `MistralForCausalLM`).
//!
//! Read from an HF `config.json` ([`ModelConfig::from_hf_file`]) or from GGUF `llama.*` metadata
//! ([`ModelConfig::from_gguf`]). Every value is validated; an invalid or unsupported value is an
//! [`Error::Config`] naming the field.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// Which HF architecture the checkpoint declares. Both share one implementation; Mistral adds the
/// sliding-window attention mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// `LlamaForCausalLM` (`model_type` "llama").
    Llama,
    /// `MistralForCausalLM` (`model_type` "mistral").
    Mistral,
}

impl Architecture {
    /// The HF class name.
    pub fn hf_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
        }
    }

    /// The HF `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
        }
    }
}

/// Hyper-parameters of a Llama/Mistral decoder, named as in HF `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Architecture the checkpoint declares.
    pub architecture: Architecture,
    /// Width of the residual stream (`hidden_size`).
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP (`intermediate_size`).
    pub intermediate_size: usize,
    /// Number of decoder layers (`num_hidden_layers`).
    pub num_hidden_layers: usize,
    /// Number of query heads (`num_attention_heads`).
    pub num_attention_heads: usize,
    /// Number of key/value heads (`num_key_value_heads`; GQA when smaller than the query heads).
    pub num_key_value_heads: usize,
    /// Width of one head (`head_dim`, default `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// Epsilon of RMSNorm (`rms_norm_eps`).
    pub rms_norm_eps: f64,
    /// RoPE base frequency (`rope_theta`).
    pub rope_theta: f64,
    /// Longest position the model was trained for (`max_position_embeddings`).
    pub max_position_embeddings: usize,
    /// Sliding attention window in tokens (`sliding_window`; Mistral only, `None` = full causal).
    pub sliding_window: Option<usize>,
    /// Whether the LM head shares the embedding matrix (`tie_word_embeddings`).
    pub tie_word_embeddings: bool,
    /// Vocabulary size (`vocab_size`), rows of the embedding and LM head.
    pub vocab_size: usize,
    /// Beginning-of-sequence token id from the config (`bos_token_id`), if any.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token ids from the config (`eos_token_id`, int or list).
    pub eos_token_ids: Vec<u32>,
}

const LIMIT: usize = 1 << 24;

impl ModelConfig {
    /// Reads and validates an HF `config.json`.
    pub fn from_hf_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_hf_json(&value, &path.display().to_string())
    }

    /// Validates an HF `config.json` already parsed; `origin` names it in errors.
    pub fn from_hf_json(v: &Value, origin: &str) -> Result<Self> {
        let err = |field: &str, msg: String| Error::config(origin, field, msg);
        let obj = v
            .as_object()
            .ok_or_else(|| err("<root>", "expected a JSON object".into()))?;

        let model_type = obj.get("model_type").and_then(Value::as_str);
        let arch_name = match obj.get("architectures") {
            Some(Value::Array(a)) if !a.is_empty() => a[0].as_str().map(str::to_owned),
            Some(Value::Array(_)) => return Err(err("architectures", "is empty".into())),
            Some(other) => {
                return Err(err(
                    "architectures",
                    format!("expected a list, found {other}"),
                ))
            }
            None => None,
        };
        let architecture = match (arch_name.as_deref(), model_type) {
            (Some("LlamaForCausalLM"), _) | (None, Some("llama")) => Architecture::Llama,
            (Some("MistralForCausalLM"), _) | (None, Some("mistral")) => Architecture::Mistral,
            (Some(other), _) => {
                return Err(err(
                    "architectures",
                    format!("unsupported architecture `{other}` (supported: LlamaForCausalLM, MistralForCausalLM)"),
                ))
            }
            (None, Some(other)) => {
                return Err(err(
                    "model_type",
                    format!("unsupported model_type `{other}` (supported: llama, mistral)"),
                ))
            }
            (None, None) => {
                return Err(err(
                    "architectures",
                    "missing (and no model_type either)".into(),
                ))
            }
        };

        let req_usize = |field: &str| -> Result<usize> {
            match obj.get(field) {
                None | Some(Value::Null) => Err(err(field, "missing".into())),
                Some(v) => v.as_u64().map(|x| x as usize).ok_or_else(|| {
                    err(field, format!("expected a non-negative integer, found {v}"))
                }),
            }
        };
        let opt_usize = |field: &str| -> Result<Option<usize>> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(|x| Some(x as usize)).ok_or_else(|| {
                    err(field, format!("expected a non-negative integer, found {v}"))
                }),
            }
        };
        let opt_f64 = |field: &str| -> Result<Option<f64>> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| err(field, format!("expected a number, found {v}"))),
            }
        };
        let opt_bool = |field: &str| -> Result<Option<bool>> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_bool()
                    .map(Some)
                    .ok_or_else(|| err(field, format!("expected true or false, found {v}"))),
            }
        };
        let token_ids = |field: &str| -> Result<Vec<u32>> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_u64()
                            .and_then(|x| u32::try_from(x).ok())
                            .ok_or_else(|| err(field, format!("expected token ids, found {x}")))
                    })
                    .collect(),
                Some(v) => v
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .map(|x| vec![x])
                    .ok_or_else(|| err(field, format!("expected a token id, found {v}"))),
            }
        };

        if let Some(act) = obj.get("hidden_act").and_then(Value::as_str) {
            if act != "silu" {
                return Err(err(
                    "hidden_act",
                    format!("unsupported activation `{act}` (only silu)"),
                ));
            }
        }
        for flag in ["attention_bias", "mlp_bias"] {
            if opt_bool(flag)? == Some(true) {
                return Err(err(flag, "bias in projections is not supported".into()));
            }
        }
        // transformers < 5 writes `rope_theta` + `rope_scaling`; 5.x writes `rope_parameters`
        // {rope_theta, rope_type}. Only plain ("default") RoPE is supported.
        for field in ["rope_scaling", "rope_parameters"] {
            if let Some(params) = obj.get(field).filter(|v| !v.is_null()) {
                let kind = params
                    .get("rope_type")
                    .or_else(|| params.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                if kind != "default" {
                    return Err(err(
                        field,
                        format!("RoPE scaling `{kind}` is not supported (found {params})"),
                    ));
                }
            }
        }
        let rope_theta = match obj
            .get("rope_parameters")
            .and_then(|p| p.get("rope_theta"))
            .filter(|v| !v.is_null())
        {
            Some(v) => Some(v.as_f64().ok_or_else(|| {
                err(
                    "rope_parameters.rope_theta",
                    format!("expected a number, found {v}"),
                )
            })?),
            None => opt_f64("rope_theta")?,
        };

        let hidden_size = req_usize("hidden_size")?;
        let num_attention_heads = req_usize("num_attention_heads")?;
        let head_dim = match opt_usize("head_dim")? {
            Some(h) => h,
            None if num_attention_heads > 0 => hidden_size / num_attention_heads,
            None => 0,
        };
        let sliding_window = match architecture {
            Architecture::Mistral => opt_usize("sliding_window")?,
            Architecture::Llama => None,
        };
        let config = ModelConfig {
            architecture,
            hidden_size,
            intermediate_size: req_usize("intermediate_size")?,
            num_hidden_layers: req_usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads: opt_usize("num_key_value_heads")?.unwrap_or(num_attention_heads),
            head_dim,
            rms_norm_eps: opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta: rope_theta.unwrap_or(10_000.0),
            max_position_embeddings: opt_usize("max_position_embeddings")?.unwrap_or(2048),
            sliding_window,
            tie_word_embeddings: opt_bool("tie_word_embeddings")?.unwrap_or(false),
            vocab_size: req_usize("vocab_size")?,
            bos_token_id: token_ids("bos_token_id")?.first().copied(),
            eos_token_ids: token_ids("eos_token_id")?,
        };
        config.validate(origin)?;
        Ok(config)
    }

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
        let head_dim = match md.opt_u32("llama.attention.key_length")? {
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
            rms_norm_eps: md.get_f32("llama.attention.layer_norm_rms_epsilon")? as f64,
            rope_theta: md.opt_f32("llama.rope.freq_base")?.unwrap_or(10_000.0) as f64,
            max_position_embeddings: u("llama.context_length")?,
            sliding_window: None,
            tie_word_embeddings: file.tensor("output.weight").is_err(),
            vocab_size,
            bos_token_id: md.opt_u32("tokenizer.ggml.bos_token_id")?,
            eos_token_ids: eos.into_iter().collect(),
        };
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks internal consistency; `origin` names the source in errors.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let err = |field: &str, msg: String| Err(Error::config(origin, field, msg));
        for (field, value) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if value == 0 {
                return err(field, "must be greater than 0".into());
            }
            if value > LIMIT {
                return err(field, format!("{value} is implausibly large"));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return err(
                "num_key_value_heads",
                format!(
                    "{} query heads are not a multiple of {} key/value heads",
                    self.num_attention_heads, self.num_key_value_heads
                ),
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            return err(
                "head_dim",
                format!("{} must be even for RoPE", self.head_dim),
            );
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return err(
                "rms_norm_eps",
                format!("{} is not in (0, 1)", self.rms_norm_eps),
            );
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return err(
                "rope_theta",
                format!("{} must be a finite number > 1", self.rope_theta),
            );
        }
        if self.sliding_window == Some(0) {
            return err("sliding_window", "must be greater than 0 when set".into());
        }
        for (field, id) in self
            .bos_token_id
            .iter()
            .map(|id| ("bos_token_id", *id))
            .chain(self.eos_token_ids.iter().map(|id| ("eos_token_id", *id)))
        {
            if id as usize >= self.vocab_size {
                return err(
                    field,
                    format!(
                        "token id {id} is outside the vocabulary ({})",
                        self.vocab_size
                    ),
                );
            }
        }
        Ok(())
    }

    /// Query heads per key/value head.
    pub fn gqa_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Writes the config as an HF `config.json` object.
    pub fn to_hf_json(&self, torch_dtype: &str) -> Value {
        let mut v = serde_json::json!({
            "architectures": [self.architecture.hf_class()],
            "model_type": self.architecture.model_type(),
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "vocab_size": self.vocab_size,
            "attention_bias": false,
            "mlp_bias": false,
            "rope_scaling": null,
            "torch_dtype": torch_dtype,
        });
        if let Some(obj) = v.as_object_mut() {
            if let Some(b) = self.bos_token_id {
                obj.insert("bos_token_id".into(), b.into());
            }
            match self.eos_token_ids.as_slice() {
                [] => {}
                [one] => {
                    obj.insert("eos_token_id".into(), (*one).into());
                }
                many => {
                    obj.insert("eos_token_id".into(), many.to_vec().into());
                }
            }
            if self.architecture == Architecture::Mistral {
                obj.insert(
                    "sliding_window".into(),
                    self.sliding_window.map(Value::from).unwrap_or(Value::Null),
                );
            }
        }
        v
    }

    /// Number of parameters of the full model.
    pub fn parameter_count(&self) -> usize {
        let h = self.hidden_size;
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let per_layer = h * q + 2 * h * kv + q * h + 3 * h * self.intermediate_size + 2 * h;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * h
        };
        self.vocab_size * h + self.num_hidden_layers * per_layer + h + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turkcell() -> Value {
        serde_json::json!({
            "architectures": ["MistralForCausalLM"], "model_type": "mistral",
            "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_act": "silu",
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 4096,
            "max_position_embeddings": 32768, "tie_word_embeddings": false,
            "torch_dtype": "float16", "vocab_size": 48353, "bos_token_id": 1, "eos_token_id": 2
        })
    }

    #[test]
    fn reads_turkcell_config() {
        let c = ModelConfig::from_hf_json(&turkcell(), "config.json").unwrap();
        assert_eq!(c.architecture, Architecture::Mistral);
        assert_eq!(c.head_dim, 128);
        assert_eq!(c.gqa_groups(), 4);
        assert_eq!(c.sliding_window, Some(4096));
        assert_eq!(c.vocab_size, 48353);
        assert_eq!(c.eos_token_ids, vec![2]);
        // 7.38B parameters (Ollama shows "7.38B") for Mistral-7B with a 48 353-token vocabulary.
        assert_eq!(c.parameter_count(), 7_375_695_872);
        let back = ModelConfig::from_hf_json(&c.to_hf_json("float16"), "rt").unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn rejects_bad_fields_by_name() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "num_key_value_heads",
                serde_json::json!(7),
                "num_key_value_heads",
            ),
            ("hidden_size", serde_json::json!("big"), "hidden_size"),
            ("hidden_act", serde_json::json!("gelu"), "hidden_act"),
            (
                "architectures",
                serde_json::json!(["GPT2LMHeadModel"]),
                "architectures",
            ),
            (
                "rope_scaling",
                serde_json::json!({"type": "linear", "factor": 2.0}),
                "rope_scaling",
            ),
            (
                "rope_parameters",
                serde_json::json!({"rope_type": "yarn", "rope_theta": 1e6}),
                "rope_parameters",
            ),
            ("rms_norm_eps", serde_json::json!(0), "rms_norm_eps"),
            ("eos_token_id", serde_json::json!(50000), "eos_token_id"),
            ("vocab_size", serde_json::json!(0), "vocab_size"),
        ];
        for (field, value, expect) in cases {
            let mut v = turkcell();
            v[field] = value;
            let e = ModelConfig::from_hf_json(&v, "config.json")
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("`{expect}`")), "{field}: {e}");
        }
        let mut v = turkcell();
        v.as_object_mut().unwrap().remove("vocab_size");
        let e = ModelConfig::from_hf_json(&v, "config.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`vocab_size`: missing"), "{e}");
    }

    #[test]
    fn llama_ignores_sliding_window_and_reads_eos_list() {
        let v = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
            "sliding_window": 8, "eos_token_id": [1, 2], "tie_word_embeddings": true
        });
        let c = ModelConfig::from_hf_json(&v, "x").unwrap();
        assert_eq!(c.sliding_window, None);
        assert_eq!(c.num_key_value_heads, 4);
        assert_eq!(c.eos_token_ids, vec![1, 2]);
        assert!(c.tie_word_embeddings);
        // transformers 5 layout
        let mut v5 = v.clone();
        v5["rope_parameters"] = serde_json::json!({"rope_theta": 500.0, "rope_type": "default"});
        assert_eq!(
            ModelConfig::from_hf_json(&v5, "x").unwrap().rope_theta,
            500.0
        );
    }
}
