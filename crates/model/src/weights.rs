//! Building a [`CausalLm`] from named HF tensors, whatever file they come from.
//!
//! The model asks for each tensor by its HF name and HF shape (`[out, in]` for projections);
//! linear weights are transposed once into Burn's `[in, out]` layout here. The source decides
//! where the data comes from (safetensors, GGUF) and reports missing or mis-shaped tensors.

use burn::prelude::*;

use crate::attention::Attention;
use crate::causal_lm::{CausalLm, Embedding};
use crate::checkpoint::SafetensorsCheckpoint;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::layer::DecoderLayer;
use crate::linear::Linear;
use crate::mlp::Mlp;
use crate::rms_norm::RmsNorm;
use crate::rope::RotaryEmbedding;

/// A tensor that HF checkpoints may carry but the model recomputes (ignored when loading).
pub fn is_ignorable(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
}

/// Every tensor name the model needs, with its HF shape, in a stable order.
pub fn expected_tensors(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let h = config.hidden_size;
    let q = config.num_attention_heads * config.head_dim;
    let kv = config.num_key_value_heads * config.head_dim;
    let ff = config.intermediate_size;
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![config.vocab_size, h],
    )];
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.extend([
            (format!("{p}.input_layernorm.weight"), vec![h]),
            (format!("{p}.self_attn.q_proj.weight"), vec![q, h]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.o_proj.weight"), vec![h, q]),
            (format!("{p}.post_attention_layernorm.weight"), vec![h]),
            (format!("{p}.mlp.gate_proj.weight"), vec![ff, h]),
            (format!("{p}.mlp.up_proj.weight"), vec![ff, h]),
            (format!("{p}.mlp.down_proj.weight"), vec![h, ff]),
        ]);
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !config.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![config.vocab_size, h]));
    }
    out
}

/// Source of HF-named f32 tensors: `fetch(name, hf_shape)` returns row-major data.
pub type FetchTensor<'a> = dyn FnMut(&str, &[usize]) -> Result<Vec<f32>> + 'a;

/// Takes the weights of chosen decoder projections while a model is built, in place of the
/// model: a trainer that keeps a frozen base in another form (4-bit blocks) receives each
/// weight as it is read and the model gets [`Linear::external`] projections, so no dense copy of
/// those weights ever exists beside the other form.
pub trait WeightSink {
    /// Whether the projection weight `name` (HF name, e.g.
    /// `model.layers.0.mlp.up_proj.weight`) goes to the sink.
    fn wants(&self, name: &str) -> bool;

    /// Receives weight `name` in HF layout, row-major `[d_out, d_in]`.
    ///
    /// # Errors
    /// A message the loader reports as [`Error::WeightSink`] naming the tensor.
    fn take(
        &mut self,
        name: &str,
        values: Vec<f32>,
        d_out: usize,
        d_in: usize,
    ) -> std::result::Result<(), String>;
}

/// The dtype a model's frozen matrices are held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightDtype {
    /// f32 (what the loaders decode every stored dtype to).
    #[default]
    F32,
    /// bf16: half the memory; the frozen-linear op multiplies it in bf16 where the CPU's
    /// `vdpbf16ps` is fast, else widens it exactly to f32 as it packs it.
    Bf16,
}

impl WeightDtype {
    /// Parses an experiment file's `[model] dtype` value (`f32` or `bf16`).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "f32" => Some(Self::F32),
            "bf16" => Some(Self::Bf16),
            _ => None,
        }
    }

    /// Burn's name for it.
    pub fn float_dtype(self) -> burn::tensor::FloatDType {
        match self {
            Self::F32 => burn::tensor::FloatDType::F32,
            Self::Bf16 => burn::tensor::FloatDType::BF16,
        }
    }

    /// `values` as tensor data of this dtype: each tensor is converted on its own while the
    /// model is built, so an f32 copy of the whole model never exists.
    fn data(self, values: Vec<f32>, shape: [usize; 2]) -> TensorData {
        match self {
            Self::F32 => TensorData::new(values, shape),
            Self::Bf16 => {
                let v: Vec<half::bf16> = values.iter().map(|&x| half::bf16::from_f32(x)).collect();
                drop(values);
                TensorData::new(v, shape)
            }
        }
    }
}

/// How a model is built from its tensors.
#[derive(Default)]
pub struct LoadOptions<'a> {
    /// The dtype of the frozen matrices: the decoder projections, the embeddings and the LM head
    /// (the norms stay f32; activations are f32 whatever this is).
    pub dtype: WeightDtype,
    /// Takes chosen decoder projections instead of the model (see [`WeightSink`]).
    pub sink: Option<&'a mut dyn WeightSink>,
}

impl std::fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("dtype", &self.dtype)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

/// Builds the model, asking `fetch` for every tensor of [`expected_tensors`].
pub fn build_model<B: Backend>(
    config: &ModelConfig,
    device: &B::Device,
    fetch: &mut FetchTensor<'_>,
) -> Result<CausalLm<B>> {
    build_model_with(config, device, fetch, LoadOptions::default())
}

/// [`build_model`] with [`LoadOptions`]: the frozen matrices in `options.dtype`, and the
/// decoder projections `options.sink` wants handed to it instead of the model.
pub fn build_model_with<B: Backend>(
    config: &ModelConfig,
    device: &B::Device,
    fetch: &mut FetchTensor<'_>,
    options: LoadOptions<'_>,
) -> Result<CausalLm<B>> {
    config.require_plain_rope("model config")?;
    let LoadOptions { dtype, mut sink } = options;
    let matrix = |fetch: &mut FetchTensor<'_>, name: &str, rows: usize, cols: usize| {
        let data = fetch(name, &[rows, cols])?;
        Ok::<_, Error>(Tensor::<B, 2>::from_data(
            dtype.data(data, [rows, cols]),
            (device, dtype.float_dtype().into()),
        ))
    };
    let h = config.hidden_size;
    let q = config.num_attention_heads * config.head_dim;
    let kv = config.num_key_value_heads * config.head_dim;
    let ff = config.intermediate_size;
    let eps = config.rms_norm_eps;

    let mut linear = |fetch: &mut FetchTensor<'_>, name: String, out: usize, inp: usize| {
        if let Some(sink) = sink.as_deref_mut().filter(|s| s.wants(&name)) {
            let values = fetch(&name, &[out, inp])?;
            sink.take(&name, values, out, inp)
                .map_err(|message| Error::WeightSink {
                    name: name.clone(),
                    message,
                })?;
            return Ok(Linear::external(inp, out, device));
        }
        // HF [out, in] -> Burn [in, out]
        Ok::<_, Error>(Linear::from_weight(
            matrix(fetch, &name, out, inp)?.transpose(),
        ))
    };
    let embed = matrix(fetch, "model.embed_tokens.weight", config.vocab_size, h)?;
    let mut layers = Vec::with_capacity(config.num_hidden_layers);
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let input_norm = fetch(&format!("{p}.input_layernorm.weight"), &[h])?;
        let self_attn = Attention {
            q_proj: linear(fetch, format!("{p}.self_attn.q_proj.weight"), q, h)?,
            k_proj: linear(fetch, format!("{p}.self_attn.k_proj.weight"), kv, h)?,
            v_proj: linear(fetch, format!("{p}.self_attn.v_proj.weight"), kv, h)?,
            o_proj: linear(fetch, format!("{p}.self_attn.o_proj.weight"), h, q)?,
            n_heads: config.num_attention_heads,
            n_kv_heads: config.num_key_value_heads,
            head_dim: config.head_dim,
        };
        let post_norm = fetch(&format!("{p}.post_attention_layernorm.weight"), &[h])?;
        let mlp = Mlp {
            gate_proj: linear(fetch, format!("{p}.mlp.gate_proj.weight"), ff, h)?,
            up_proj: linear(fetch, format!("{p}.mlp.up_proj.weight"), ff, h)?,
            down_proj: linear(fetch, format!("{p}.mlp.down_proj.weight"), h, ff)?,
        };
        layers.push(DecoderLayer {
            input_layernorm: RmsNorm::new(
                Tensor::from_data(TensorData::new(input_norm, [h]), device),
                eps,
            ),
            self_attn,
            post_attention_layernorm: RmsNorm::new(
                Tensor::from_data(TensorData::new(post_norm, [h]), device),
                eps,
            ),
            mlp,
        });
    }
    let norm = fetch("model.norm.weight", &[h])?;
    let lm_head = if config.tie_word_embeddings {
        None
    } else {
        Some(linear(
            fetch,
            "lm_head.weight".into(),
            config.vocab_size,
            h,
        )?)
    };
    Ok(CausalLm {
        embed_tokens: Embedding {
            weight: crate::linear::frozen(embed),
        },
        layers,
        norm: RmsNorm::new(Tensor::from_data(TensorData::new(norm, [h]), device), eps),
        lm_head,
        rope: RotaryEmbedding::new(
            config.head_dim,
            config.max_position_embeddings.min(MAX_ROPE_TABLE),
            config.rope_theta,
            device,
        ),
        sliding_window: config.sliding_window,
    })
}

/// RoPE tables are built for at most this many positions (longer contexts are not trained or
/// evaluated here; 32k × 128 × 2 tables would cost 32 MB for nothing).
pub const MAX_ROPE_TABLE: usize = 8192;

/// Loads every tensor from a safetensors checkpoint, rejecting missing, extra and mis-shaped
/// tensors by name.
pub fn load_safetensors<B: Backend>(
    config: &ModelConfig,
    checkpoint: &SafetensorsCheckpoint,
    device: &B::Device,
) -> Result<CausalLm<B>> {
    load_safetensors_with(config, checkpoint, device, LoadOptions::default())
}

/// [`load_safetensors`] with [`LoadOptions`] (see [`build_model_with`]).
pub fn load_safetensors_with<B: Backend>(
    config: &ModelConfig,
    checkpoint: &SafetensorsCheckpoint,
    device: &B::Device,
    options: LoadOptions<'_>,
) -> Result<CausalLm<B>> {
    let expected = expected_tensors(config);
    let extra: Vec<&str> = checkpoint
        .names()
        .filter(|n| !is_ignorable(n) && !expected.iter().any(|(e, _)| e == n))
        .collect();
    if !extra.is_empty() {
        let shown: Vec<&str> = extra.iter().take(5).copied().collect();
        let more = if extra.len() > 5 {
            format!(" and {} more", extra.len() - 5)
        } else {
            String::new()
        };
        return Err(Error::ExtraTensors {
            names: format!("{}{more}", shown.join(", ")),
            location: checkpoint.location().to_owned(),
        });
    }
    // Check every name and shape before converting any data, so a bad checkpoint fails fast.
    for (name, shape) in &expected {
        let found = checkpoint.shape(name)?;
        if &found != shape {
            return Err(Error::ShapeMismatch {
                name: name.clone(),
                location: checkpoint.location().to_owned(),
                found,
                expected: shape.clone(),
            });
        }
        checkpoint.dtype(name)?;
    }
    build_model_with(
        config,
        device,
        &mut |name, shape| checkpoint.tensor_f32(name, shape),
        options,
    )
}
