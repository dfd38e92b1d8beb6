//! Model configuration for Llama-family decoders (`LlamaForCausalLM`, `MistralForCausalLM`).
//!
//! Read from an HF `config.json` ([`ModelConfig::from_hf_file`], the one parser of that file)
//! or from GGUF `llama.*` metadata ([`ModelConfig::from_gguf`]). Every value is validated; an
//! invalid or unsupported value is an [`Error::Config`] naming the field.
//!
//! The config carries what the file says even where the Burn model cannot compute it (RoPE
//! scaling): GGUF export writes it, and [`ModelConfig::require_plain_rope`] refuses it where a
//! model is built.

mod gguf;
mod hf;

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

/// RoPE scaling of an HF config (`rope_scaling` / `rope_parameters`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum RopeScaling {
    /// Plain RoPE (`rope_type` "default" or absent).
    #[default]
    None,
    /// Linear position interpolation (`rope_type` "linear").
    Linear {
        /// `factor`.
        factor: f64,
    },
    /// Llama 3.1+ frequency-dependent scaling (`rope_type` "llama3").
    Llama3 {
        /// `factor` (default 8).
        factor: f64,
        /// `low_freq_factor` (default 1).
        low_freq_factor: f64,
        /// `high_freq_factor` (default 4).
        high_freq_factor: f64,
        /// `original_max_position_embeddings` (default 8192).
        original_max_position_embeddings: f64,
    },
}

impl RopeScaling {
    /// The HF `rope_type`.
    pub fn kind(&self) -> &'static str {
        match self {
            RopeScaling::None => "default",
            RopeScaling::Linear { .. } => "linear",
            RopeScaling::Llama3 { .. } => "llama3",
        }
    }

    /// Checks the factors (finite, positive; llama3's high factor above its low factor).
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let factors: &[(&str, f64)] = match self {
            RopeScaling::None => &[],
            RopeScaling::Linear { factor } => &[("factor", *factor)],
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                if high_freq_factor <= low_freq_factor {
                    return Err(format!(
                        "`high_freq_factor` {high_freq_factor} must be above `low_freq_factor` {low_freq_factor}"
                    ));
                }
                &[
                    ("factor", *factor),
                    ("low_freq_factor", *low_freq_factor),
                    ("high_freq_factor", *high_freq_factor),
                    (
                        "original_max_position_embeddings",
                        *original_max_position_embeddings,
                    ),
                ]
            }
        };
        match factors.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            Some((key, v)) => Err(format!("`{key}` must be a finite number > 0, found {v}")),
            None => Ok(()),
        }
    }

    /// The object HF writes for this scaling (`null` for none).
    pub fn to_hf_json(&self) -> Value {
        match *self {
            RopeScaling::None => Value::Null,
            RopeScaling::Linear { factor } => {
                serde_json::json!({"rope_type": "linear", "factor": factor})
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => serde_json::json!({
                "rope_type": "llama3",
                "factor": factor,
                "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            }),
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
    /// Whether the source states `head_dim` (`config.json` `head_dim`, GGUF
    /// `llama.attention.key_length`); written back only then.
    #[serde(default)]
    pub explicit_head_dim: bool,
    /// Epsilon of RMSNorm (`rms_norm_eps`).
    pub rms_norm_eps: f64,
    /// RoPE base frequency (`rope_theta`).
    pub rope_theta: f64,
    /// RoPE scaling (`rope_scaling` / `rope_parameters`).
    #[serde(default)]
    pub rope_scaling: RopeScaling,
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
    /// Padding token id from the config (`pad_token_id`), if it is a valid id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Unknown-token id from the config (`unk_token_id`), if it is a valid id.
    #[serde(default)]
    pub unk_token_id: Option<u32>,
}

const LIMIT: usize = 1 << 24;

impl ModelConfig {
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

    /// Refuses RoPE scaling, which the Burn model does not compute: building a model from such
    /// a config would silently run it with plain RoPE. `origin` names the config in the error.
    pub fn require_plain_rope(&self, origin: &str) -> Result<()> {
        match &self.rope_scaling {
            RopeScaling::None => Ok(()),
            other => Err(Error::config(
                origin,
                "rope_scaling",
                format!(
                    "RoPE scaling `{}` is not supported by the Burn model (training, inference); only `export gguf` writes it (found {})",
                    other.kind(),
                    other.to_hf_json()
                ),
            )),
        }
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
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "vocab_size": self.vocab_size,
            "attention_bias": false,
            "mlp_bias": false,
            "rope_scaling": self.rope_scaling.to_hf_json(),
            "torch_dtype": torch_dtype,
        });
        if let Some(obj) = v.as_object_mut() {
            if self.explicit_head_dim {
                obj.insert("head_dim".into(), self.head_dim.into());
            }
            if let Some(b) = self.bos_token_id {
                obj.insert("bos_token_id".into(), b.into());
            }
            if let Some(p) = self.pad_token_id {
                obj.insert("pad_token_id".into(), p.into());
            }
            if let Some(u) = self.unk_token_id {
                obj.insert("unk_token_id".into(), u.into());
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
                serde_json::json!({"type": "linear"}),
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

    /// config.json's rope scaling: read (export writes it), refused where the Burn model is
    /// built, with the field named, before any weight is read.
    #[test]
    fn linear_rope_scaling_is_read_but_no_model_is_built_from_it() {
        let mut v = turkcell();
        v["rope_scaling"] = serde_json::json!({"type": "linear", "factor": 2.0});
        let c = ModelConfig::from_hf_json(&v, "config.json").unwrap();
        assert_eq!(c.rope_scaling, RopeScaling::Linear { factor: 2.0 });
        let back = ModelConfig::from_hf_json(&c.to_hf_json("float16"), "rt").unwrap();
        assert_eq!(back, c);
        let mut fetched = 0;
        let built = crate::weights::build_model::<crate::CpuBackend>(
            &c,
            &Default::default(),
            &mut |_, _| {
                fetched += 1;
                Err(Error::InvalidInput("no weights here".into()))
            },
        );
        let Err(e) = built else {
            panic!("a linear-scaled config must not build");
        };
        let e = e.to_string();
        assert_eq!(fetched, 0);
        assert!(
            e.contains("`rope_scaling`") && e.contains("`linear`") && e.contains("not supported"),
            "{e}"
        );
        // llama3 in the transformers 5 layout, defaults filled in
        let mut v5 = turkcell();
        v5["rope_parameters"] =
            serde_json::json!({"rope_type": "llama3", "factor": 8.0, "rope_theta": 5e5});
        let c = ModelConfig::from_hf_json(&v5, "x").unwrap();
        assert_eq!(c.rope_theta, 5e5);
        assert_eq!(
            c.rope_scaling,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0
            }
        );
        assert!(c.require_plain_rope("x").is_err());
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
