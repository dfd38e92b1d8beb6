//! [`ModelConfig`] from an HF `config.json`: the one parser of that file in tunebench.

use std::path::Path;

use serde_json::{Map, Value};

use super::{Architecture, ModelConfig, RopeScaling};
use crate::error::{Error, Result};

/// Typed access to the fields of a `config.json` object; every error names the field.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    origin: &'a str,
}

impl Fields<'_> {
    fn err(&self, field: &str, msg: String) -> Error {
        Error::config(self.origin, field, msg)
    }

    fn present(&self, field: &str) -> Option<&Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn opt_usize(&self, field: &str) -> Result<Option<usize>> {
        self.present(field)
            .map(|v| {
                v.as_u64().map(|x| x as usize).ok_or_else(|| {
                    self.err(field, format!("expected a non-negative integer, found {v}"))
                })
            })
            .transpose()
    }

    fn req_usize(&self, field: &str) -> Result<usize> {
        self.opt_usize(field)?
            .ok_or_else(|| self.err(field, "missing".into()))
    }

    fn opt_f64(&self, field: &str) -> Result<Option<f64>> {
        self.present(field)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| self.err(field, format!("expected a number, found {v}")))
            })
            .transpose()
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>> {
        self.present(field)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| self.err(field, format!("expected true or false, found {v}")))
            })
            .transpose()
    }

    /// A token id or a list of them (`eos_token_id` may be either).
    fn token_ids(&self, field: &str) -> Result<Vec<u32>> {
        let id = |x: &Value| x.as_u64().and_then(|x| u32::try_from(x).ok());
        match self.present(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    id(x).ok_or_else(|| self.err(field, format!("expected token ids, found {x}")))
                })
                .collect(),
            Some(v) => id(v)
                .map(|x| vec![x])
                .ok_or_else(|| self.err(field, format!("expected a token id, found {v}"))),
        }
    }

    /// A token id the model never uses itself (`pad_token_id`, `unk_token_id`): read when it
    /// is a valid id, ignored otherwise, as llama.cpp's converter does.
    fn lenient_token_id(&self, field: &str) -> Option<u32> {
        match self.present(field)? {
            Value::Array(a) => a.first()?.as_u64(),
            v => v.as_u64(),
        }
        .and_then(|x| u32::try_from(x).ok())
    }
}

fn architecture(f: &Fields<'_>) -> Result<Architecture> {
    let model_type = f.obj.get("model_type").and_then(Value::as_str);
    let arch_name = match f.obj.get("architectures") {
        Some(Value::Array(a)) if !a.is_empty() => a[0].as_str().map(str::to_owned),
        Some(Value::Array(_)) => return Err(f.err("architectures", "is empty".into())),
        Some(other) => {
            return Err(f.err("architectures", format!("expected a list, found {other}")))
        }
        None => None,
    };
    match (arch_name.as_deref(), model_type) {
        (Some("LlamaForCausalLM"), _) | (None, Some("llama")) => Ok(Architecture::Llama),
        (Some("MistralForCausalLM"), _) | (None, Some("mistral")) => Ok(Architecture::Mistral),
        (Some(other), _) => Err(f.err(
            "architectures",
            format!("unsupported architecture `{other}` (supported: LlamaForCausalLM, MistralForCausalLM)"),
        )),
        (None, Some(other)) => Err(f.err(
            "model_type",
            format!("unsupported model_type `{other}` (supported: llama, mistral)"),
        )),
        (None, None) => Err(f.err(
            "architectures",
            "missing (and no model_type either)".into(),
        )),
    }
}

/// Activation and projection biases the model does not implement.
fn check_unsupported(f: &Fields<'_>) -> Result<()> {
    if let Some(act) = f.obj.get("hidden_act").and_then(Value::as_str) {
        if act != "silu" {
            return Err(f.err(
                "hidden_act",
                format!("unsupported activation `{act}` (only silu)"),
            ));
        }
    }
    for flag in ["attention_bias", "mlp_bias"] {
        if f.opt_bool(flag)? == Some(true) {
            return Err(f.err(flag, "bias in projections is not supported".into()));
        }
    }
    Ok(())
}

/// One scaling object (`rope_parameters` or `rope_scaling`) read as `field`.
fn rope_scaling(f: &Fields<'_>, field: &str, params: &Value) -> Result<RopeScaling> {
    let kind = params
        .get("rope_type")
        .or_else(|| params.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let number = |key: &str, default: Option<f64>| -> Result<f64> {
        match params.get(key).filter(|v| !v.is_null()) {
            Some(v) => v.as_f64().ok_or_else(|| {
                f.err(
                    &format!("{field}.{key}"),
                    format!("expected a number, found {v}"),
                )
            }),
            None => {
                default.ok_or_else(|| f.err(field, format!("{kind} RoPE scaling without `{key}`")))
            }
        }
    };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: number("factor", None)?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: number("factor", Some(8.0))?,
            low_freq_factor: number("low_freq_factor", Some(1.0))?,
            high_freq_factor: number("high_freq_factor", Some(4.0))?,
            original_max_position_embeddings: number(
                "original_max_position_embeddings",
                Some(8192.0),
            )?,
        },
        other => {
            return Err(f.err(
                field,
                format!("RoPE scaling `{other}` is not supported (supported: default, linear, llama3; found {params})"),
            ))
        }
    };
    scaling
        .check()
        .map_err(|m| f.err(field, format!("{m} (found {params})")))?;
    Ok(scaling)
}

/// `rope_theta` and the scaling. transformers < 5 writes `rope_theta` + `rope_scaling`; 5.x
/// writes `rope_parameters` {rope_theta, rope_type, ...}.
fn rope(f: &Fields<'_>) -> Result<(f64, RopeScaling)> {
    let mut scaling = RopeScaling::None;
    for field in ["rope_parameters", "rope_scaling"] {
        if let Some(params) = f.present(field) {
            scaling = rope_scaling(f, field, params)?;
            if scaling != RopeScaling::None {
                break;
            }
        }
    }
    let theta = match f
        .present("rope_parameters")
        .and_then(|p| p.get("rope_theta"))
        .filter(|v| !v.is_null())
    {
        Some(v) => Some(v.as_f64().ok_or_else(|| {
            f.err(
                "rope_parameters.rope_theta",
                format!("expected a number, found {v}"),
            )
        })?),
        None => f.opt_f64("rope_theta")?,
    };
    Ok((theta.unwrap_or(10_000.0), scaling))
}

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
    ///
    /// RoPE scaling `linear` and `llama3` are read (GGUF export writes them); building a Burn
    /// model from such a config is refused ([`ModelConfig::require_plain_rope`]).
    pub fn from_hf_json(v: &Value, origin: &str) -> Result<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::config(origin, "<root>", "expected a JSON object"))?;
        let f = Fields { obj, origin };
        let architecture = architecture(&f)?;
        check_unsupported(&f)?;
        let (rope_theta, rope_scaling) = rope(&f)?;
        let hidden_size = f.req_usize("hidden_size")?;
        let num_attention_heads = f.req_usize("num_attention_heads")?;
        let explicit_head_dim = f.opt_usize("head_dim")?;
        let head_dim = match explicit_head_dim {
            Some(h) => h,
            None if num_attention_heads > 0 => hidden_size / num_attention_heads,
            None => 0,
        };
        let sliding_window = match architecture {
            Architecture::Mistral => f.opt_usize("sliding_window")?,
            Architecture::Llama => None,
        };
        let config = ModelConfig {
            architecture,
            hidden_size,
            intermediate_size: f.req_usize("intermediate_size")?,
            num_hidden_layers: f.req_usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads: f
                .opt_usize("num_key_value_heads")?
                .unwrap_or(num_attention_heads),
            head_dim,
            explicit_head_dim: explicit_head_dim.is_some(),
            rms_norm_eps: f.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: f.opt_usize("max_position_embeddings")?.unwrap_or(2048),
            sliding_window,
            tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            vocab_size: f.req_usize("vocab_size")?,
            bos_token_id: f.token_ids("bos_token_id")?.first().copied(),
            eos_token_ids: f.token_ids("eos_token_id")?,
            pad_token_id: f.lenient_token_id("pad_token_id"),
            unk_token_id: f.lenient_token_id("unk_token_id"),
        };
        config.validate(origin)?;
        Ok(config)
    }
}
