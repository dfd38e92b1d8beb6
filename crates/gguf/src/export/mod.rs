//! Writing `llama`-architecture GGUFs from already-parsed input: a model (hyperparameters,
//! tokenizer files, tensors read one at a time) or a LoRA adapter.
//!
//! This crate owns the GGUF side only; reading HF `config.json`, safetensors and PEFT
//! `adapter_config.json` belongs to the crates that own those formats (tb-model's
//! `gguf_export::export_hf_dir`, tb-train's `lora::export_lora_adapter`), which call
//! [`export_llama`] and [`write_lora_adapter`].
//!
//! [`export_llama`] writes a GGUF the way `convert_hf_to_gguf.py` (+ `llama-quantize` for
//! quantized mixes) would:
//!
//! * keys typed as llama.cpp checks them (u32 ints, f32 floats, i32 token types, bool flags);
//! * tensor names per [`crate::naming`], q/k rows permuted for llama.cpp's RoPE
//!   ([`crate::permute_qk`], `n_head_kv` for k), tensors in llama.cpp's order
//!   ([`crate::mix::llama_tensor_order`]), 1-D tensors and norms F32;
//! * types from [`crate::mix::plan_tensor_types`]. A quantized mix first rounds every weight to
//!   the intermediate float type (F16, or BF16 for BF16 sources) and quantizes from that, so a
//!   Q4_K_M export is byte-identical to exporting F16 and running `llama-quantize`;
//! * RoPE: `rope_theta`, linear scaling as `llama.rope.scaling.*`, Llama-3.1 (`llama3`) scaling
//!   as the generated `rope_freqs.weight` tensor (as `convert_hf_to_gguf.py` does);
//! * tokenizer metadata per [`vocab`];
//! * a NaN or Inf weight aborts with an error naming the tensor; tensors are streamed one at a
//!   time into a temporary file renamed into place at the end, so a failure leaves no file.

mod hparams;
mod lora;
pub mod spm;
pub mod vocab;

use std::path::Path;

pub use hparams::{
    LlamaHparams, RopeScaling, SourceDtype, SourceError, SourceTensor, TensorSource,
};
pub use lora::{write_lora_adapter, LoraAdapterGguf, LoraPair, LoraTensorType, LoraWriteReport};
pub use vocab::TokenizerFiles;

use crate::error::{Error, Result};
use crate::mix::{llama_tensor_order, plan_tensor_types, ModelFacts, PlanInput, QuantMix};
use crate::naming::{hf_to_gguf_name, permute_qk, qk_kind, QkKind};
use crate::quantize::QuantizedTensor;
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

/// What [`export_llama`] wrote.
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

/// One tensor of the output, in file order.
struct Planned {
    /// Source name (empty for a generated tensor).
    source: String,
    /// Values of a generated tensor (`rope_freqs.weight`).
    generated: Option<Vec<f32>>,
    gguf: String,
    shape: Vec<usize>,
    ne: Vec<u64>,
    /// Heads of the q/k row permutation.
    qk: Option<usize>,
}

/// Maps the source's tensors to GGUF names and llama.cpp's order, adding `rope_freqs.weight`
/// for llama3 scaling.
fn plan(
    hp: &LlamaHparams,
    tensors: &[SourceTensor],
    source: &impl TensorSource,
) -> Result<Vec<Planned>> {
    let mut out = Vec::with_capacity(tensors.len() + 1);
    for t in tensors {
        let gguf = hf_to_gguf_name(&t.name).ok_or_else(|| {
            Error::convert(
                source.origin(&t.name),
                format!(
                    "unexpected tensor `{}` for a llama-architecture model",
                    t.name
                ),
            )
        })?;
        let qk = match qk_kind(&gguf) {
            Some(QkKind::Query) => Some(hp.n_head as usize),
            Some(QkKind::Key) => Some(hp.n_head_kv as usize),
            None => None,
        };
        out.push(Planned {
            source: t.name.clone(),
            generated: None,
            gguf,
            shape: t.shape.clone(),
            ne: t.shape.iter().rev().map(|&d| d as u64).collect(),
            qk,
        });
    }
    if let Some(f) = hp.rope_scaling.llama3_factors(hp.rope_theta, hp.head_dim) {
        out.push(Planned {
            source: String::new(),
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

/// The type each planned tensor starts from (as the F16/BF16 intermediate file would hold it)
/// and the type it is written as.
fn plan_types(
    hp: &LlamaHparams,
    planned: &[Planned],
    bf16_source: bool,
    mix: QuantMix,
) -> Result<(Vec<GgmlType>, Vec<GgmlType>)> {
    let intermediate = match mix {
        QuantMix::F32 | QuantMix::F16 | QuantMix::BF16 => None,
        _ if bf16_source => Some(GgmlType::BF16),
        _ => Some(GgmlType::F16),
    };
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
        n_layer: hp.n_layer,
        n_head: hp.n_head,
        n_head_kv: hp.n_head_kv,
        n_expert: 0,
    };
    let types = plan_tensor_types(mix, &facts, &inputs, false)?;
    Ok((src_types, types))
}

/// Reads, checks, permutes and encodes one planned tensor.
fn encode(
    p: &Planned,
    from: GgmlType,
    to: GgmlType,
    source: &impl TensorSource,
) -> Result<Vec<u8>> {
    let mut values = source.read_f32(&p.source).map_err(|e| Error::Source {
        tensor: p.source.clone(),
        source: e,
    })?;
    if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::convert(
            source.origin(&p.source),
            format!(
                "tensor `{}` ({}) has a non-finite value {} at index {pos}",
                p.source, p.gguf, values[pos]
            ),
        ));
    }
    let expected: usize = p.shape.iter().product();
    if values.len() != expected {
        return Err(Error::convert(
            source.origin(&p.source),
            format!(
                "tensor `{}` has {} values, its shape {:?} needs {expected}",
                p.source,
                values.len(),
                p.shape
            ),
        ));
    }
    if let Some(n_head) = p.qk {
        let cols = p.shape.get(1).copied().unwrap_or(1);
        values = permute_qk(&values, p.shape[0], cols, n_head)?;
    }
    if from != GgmlType::F32 && from != to {
        let rounded = crate::codec::quantize_to_vec(from, &values)?;
        values = crate::codec::dequantize_to_vec(from, &rounded)?;
    }
    let bytes = crate::codec::quantize_to_vec(to, &values)?;
    crate::codec::validate(to, &bytes).map_err(|message| Error::Validation {
        tensor: p.gguf.clone(),
        message: format!("encoded data validation failed: {message}"),
    })?;
    Ok(bytes)
}

/// Writes the model described by `hp`, `tokenizer` and `source` to the GGUF file `out` (see
/// the module docs).
pub fn export_llama(
    hp: &LlamaHparams,
    tokenizer: &TokenizerFiles,
    source: &impl TensorSource,
    out: &Path,
    opts: ExportOptions,
) -> Result<ExportReport> {
    let tensors = source.tensors();
    let planned = plan(hp, &tensors, source)?;
    let mut md = hp.metadata(opts.mix);
    vocab::add_tokenizer_metadata(tokenizer, hp.vocab_size, &mut md)?;
    let bf16_source = tensors.iter().any(|t| t.dtype == SourceDtype::BF16);
    let (src_types, types) = plan_types(hp, &planned, bf16_source, opts.mix)?;
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
            match &p.generated {
                Some(v) => sink.write_f32(v),
                None => sink.write_bytes(&encode(p, src_types[i], spec.ty, source)?),
            }
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
