//! HF → GGUF: export a Llama/Mistral model directory, or a PEFT LoRA adapter, as GGUF.
//!
//! [`export_hf_dir`] reads `config.json`, the safetensors weights and the tokenizer files and
//! writes a `llama`-architecture GGUF the way `convert_hf_to_gguf.py` (+ `llama-quantize` for
//! quantized mixes) would:
//!
//! * keys typed as llama.cpp checks them (u32 ints, f32 floats, i32 token types, bool flags);
//! * tensor names per [`crate::naming`], q/k rows permuted for llama.cpp's RoPE
//!   ([`crate::permute_qk`], `n_head_kv` for k), tensors in llama.cpp's order
//!   ([`crate::mix::llama_tensor_order`]), 1-D tensors and norms F32;
//! * types from [`crate::mix::plan_tensor_types`]. A quantized mix first rounds every weight to
//!   the intermediate float type (F16, or BF16 for BF16 checkpoints) and quantizes from that,
//!   so a Q4_K_M export is byte-identical to exporting F16 and running `llama-quantize`;
//! * RoPE: `rope_theta`, linear scaling as `llama.rope.scaling.*`, Llama-3.1 (`llama3`) scaling
//!   as the generated `rope_freqs.weight` tensor (as `convert_hf_to_gguf.py` does); other rope
//!   types are an error. A `sliding_window` is logged as a warning: llama.cpp's `llama`
//!   architecture has no sliding-window attention;
//! * tokenizer metadata per [`vocab`];
//! * a NaN or Inf weight aborts with an error naming the tensor; tensors are streamed one at a
//!   time into a temporary file renamed into place at the end, so a failure leaves no file.
//!
//! [`export_lora_adapter`] writes llama.cpp's LoRA adapter GGUF (Ollama's `ADAPTER`).

pub mod hf;
mod lora;
pub mod spm;
pub mod vocab;

use std::path::Path;

pub use hf::{HfLlamaConfig, RopeScaling, SafetensorsDir};
pub use lora::{export_lora_adapter, LoraExportReport};

use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::mix::{llama_tensor_order, plan_tensor_types, ModelFacts, PlanInput, QuantMix};
use crate::naming::{hf_to_gguf_name, is_skipped_hf_tensor, permute_qk, qk_kind, QkKind};
use crate::quantize::{QuantizedTensor, GGML_QNT_VERSION};
use crate::types::GgmlType;
use crate::writer::{GgufWriter, TensorSpec};

/// How to export.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// Target mix.
    pub mix: QuantMix,
    /// Worker threads for quantization (0 = all cores).
    pub threads: usize,
}

/// What [`export_hf_dir`] wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// Tensors in file order (`from` is the intermediate type a quantized mix started from).
    pub tensors: Vec<QuantizedTensor>,
    /// Bytes written.
    pub bytes_out: u64,
    /// `tokenizer.ggml.model` written.
    pub tokenizer_model: String,
    /// `tokenizer.ggml.pre` written.
    pub tokenizer_pre: String,
}

struct Planned {
    /// HF name (empty for a generated tensor).
    hf: String,
    /// Values of a generated tensor (`rope_freqs.weight`).
    generated: Option<Vec<f32>>,
    gguf: String,
    shape: Vec<usize>,
    ne: Vec<u64>,
    qk: Option<usize>,
}

/// The `llama.*` and `general.*` keys for `cfg`.
pub fn model_metadata(cfg: &HfLlamaConfig, name: &str, mix: QuantMix) -> Metadata {
    let mut md = Metadata::new();
    md.set("general.architecture", "llama");
    md.set("general.type", "model");
    md.set("general.name", name);
    md.set("llama.block_count", cfg.n_layer);
    md.set("llama.context_length", cfg.n_ctx);
    md.set("llama.embedding_length", cfg.n_embd);
    md.set("llama.feed_forward_length", cfg.n_ff);
    md.set("llama.attention.head_count", cfg.n_head);
    md.set("llama.attention.head_count_kv", cfg.n_head_kv);
    md.set("llama.rope.freq_base", cfg.rope_theta);
    md.set("llama.attention.layer_norm_rms_epsilon", cfg.rms_eps);
    if let RopeScaling::Linear(f) = cfg.rope_scaling {
        md.set("llama.rope.scaling.type", "linear");
        md.set("llama.rope.scaling.factor", f);
    }
    if cfg.explicit_head_dim {
        md.set("llama.attention.key_length", cfg.head_dim);
        md.set("llama.attention.value_length", cfg.head_dim);
    }
    md.set("general.file_type", mix.file_type().id());
    md.set("llama.vocab_size", cfg.vocab_size);
    md.set("llama.rope.dimension_count", cfg.head_dim);
    md.set("general.quantization_version", GGML_QNT_VERSION);
    md
}

fn plan(dir: &Path, cfg: &HfLlamaConfig, st: &SafetensorsDir) -> Result<Vec<Planned>> {
    let mut out = Vec::new();
    for (hf, t) in st.tensors() {
        if is_skipped_hf_tensor(hf) || (cfg.tied_embeddings && hf == "lm_head.weight") {
            continue;
        }
        let path = st.path_of(t);
        let gguf = hf_to_gguf_name(hf).ok_or_else(|| {
            Error::convert(
                path,
                format!("unexpected tensor `{hf}` for a {} model", cfg.architecture),
            )
        })?;
        let want = cfg.expected_shape(hf).ok_or_else(|| {
            Error::convert(
                path,
                format!(
                    "tensor `{hf}` does not belong to a {}-layer model",
                    cfg.n_layer
                ),
            )
        })?;
        if t.shape != want {
            return Err(Error::convert(
                path,
                format!(
                    "tensor `{hf}` has shape {:?}, config.json implies {want:?}",
                    t.shape
                ),
            ));
        }
        let qk = match qk_kind(&gguf) {
            Some(QkKind::Query) => Some(cfg.n_head as usize),
            Some(QkKind::Key) => Some(cfg.n_head_kv as usize),
            None => None,
        };
        let ne = t.shape.iter().rev().map(|&d| d as u64).collect();
        out.push(Planned {
            hf: hf.clone(),
            generated: None,
            gguf,
            shape: t.shape.clone(),
            ne,
            qk,
        });
    }
    for req in cfg.required_tensors() {
        if !st.tensors().contains_key(&req) {
            return Err(Error::convert(dir, format!("missing tensor `{req}`")));
        }
    }
    if let Some(f) = cfg
        .rope_scaling
        .llama3_factors(cfg.rope_theta, cfg.head_dim)
    {
        out.push(Planned {
            hf: String::new(),
            ne: vec![f.len() as u64],
            shape: vec![f.len()],
            generated: Some(f),
            gguf: "rope_freqs.weight".into(),
            qk: None,
        });
    }
    out.sort_by(|a, b| llama_tensor_order(&a.gguf, &b.gguf));
    Ok(out)
}

/// Exports the HF model directory `dir` to the GGUF file `out` (see the module docs).
pub fn export_hf_dir(dir: &Path, out: &Path, opts: ExportOptions) -> Result<ExportReport> {
    let cfg = HfLlamaConfig::from_dir(dir)?;
    if let Some(w) = cfg.sliding_window.filter(|&w| w < cfg.n_ctx) {
        tracing::warn!(
            sliding_window = w,
            context = cfg.n_ctx,
            "llama.cpp's llama architecture has no sliding-window attention: outputs differ from HF beyond {w} tokens"
        );
    }
    let st = SafetensorsDir::open(dir)?;
    let planned = plan(dir, &cfg, &st)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let mut md = model_metadata(&cfg, &name, opts.mix);
    vocab::add_tokenizer_metadata(dir, &cfg, &mut md)?;

    let bf16_source = st
        .tensors()
        .values()
        .any(|t| t.dtype == safetensors::Dtype::BF16);
    let intermediate = match opts.mix {
        QuantMix::F32 | QuantMix::F16 | QuantMix::BF16 => None,
        _ if bf16_source => Some(GgmlType::BF16),
        _ => Some(GgmlType::F16),
    };
    // Source types as the F16/BF16 intermediate file would hold them.
    let src_types: Vec<GgmlType> = planned
        .iter()
        .map(|p| {
            if p.ne.len() <= 1 || p.gguf.ends_with("_norm.weight") {
                GgmlType::F32
            } else {
                intermediate.unwrap_or(GgmlType::F32)
            }
        })
        .collect();
    let inputs: Vec<PlanInput<'_>> = planned
        .iter()
        .zip(&src_types)
        .map(|(p, &ty)| PlanInput {
            name: &p.gguf,
            ty,
            ne: &p.ne,
        })
        .collect();
    let facts = ModelFacts {
        arch: "llama".into(),
        n_layer: cfg.n_layer,
        n_head: cfg.n_head,
        n_head_kv: cfg.n_head_kv,
        n_expert: 0,
    };
    let types = plan_tensor_types(opts.mix, &facts, &inputs, false)?;
    let mut writer = GgufWriter::new(md)?;
    for (p, &ty) in planned.iter().zip(&types) {
        if !ty.has_codec() {
            return Err(Error::UnsupportedType { op: "quantize", ty });
        }
        writer.add_tensor(TensorSpec::new(p.gguf.clone(), ty, p.ne.clone()))?;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| {
            Error::InvalidArgument(format!("cannot start {} threads: {e}", opts.threads))
        })?;
    let bytes_out = pool.install(|| {
        writer.write_to_file(out, |i, spec, sink| {
            let p = &planned[i];
            if let Some(v) = &p.generated {
                return sink.write_f32(v);
            }
            let path = st.path_of(&st.tensors()[&p.hf]);
            let mut values = st.read_f32(&p.hf)?;
            if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::convert(
                    path,
                    format!(
                        "tensor `{}` ({}) has a non-finite value {} at index {pos}",
                        p.hf, p.gguf, values[pos]
                    ),
                ));
            }
            if let Some(n_head) = p.qk {
                let cols = p.shape.get(1).copied().unwrap_or(1);
                values = permute_qk(&values, p.shape[0], cols, n_head)?;
            }
            let from = src_types[i];
            if from != GgmlType::F32 && from != spec.ty {
                let rounded = crate::codec::quantize_to_vec(from, &values)?;
                values = crate::codec::dequantize_to_vec(from, &rounded)?;
            }
            let bytes = crate::codec::quantize_to_vec(spec.ty, &values)?;
            crate::codec::validate(spec.ty, &bytes).map_err(|message| Error::Validation {
                tensor: spec.name.clone(),
                message: format!("encoded data validation failed: {message}"),
            })?;
            sink.write_bytes(&bytes)
        })
    })?;
    let md = writer.metadata();
    let text = |k: &str| {
        md.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    Ok(ExportReport {
        tensors: planned
            .iter()
            .zip(&src_types)
            .zip(&types)
            .map(|((p, &from), &to)| QuantizedTensor {
                name: p.gguf.clone(),
                from,
                to,
                ne: p.ne.clone(),
            })
            .collect(),
        bytes_out,
        tokenizer_model: text("tokenizer.ggml.model"),
        tokenizer_pre: text("tokenizer.ggml.pre"),
    })
}
