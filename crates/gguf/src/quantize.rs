//! Whole-file re-quantization, as llama.cpp's `llama_model_quantize` without an importance
//! matrix: read an F32/F16/BF16 GGUF, pick each tensor's type with [`crate::mix`], convert
//! through f32 with the reference quantizers, and write a new GGUF.
//!
//! What is reproduced from `src/llama-quant.cpp`:
//! * tensors are written in llama.cpp's order ([`llama_tensor_order`]) with `n_dims` as
//!   `ggml_n_dims` (trailing 1s dropped);
//! * all input KVs are copied, then `general.quantization_version = 2` and
//!   `general.file_type = ftype` are (re)appended, both u32, and `split.*` keys are removed;
//! * tensors already in their target type are copied byte for byte; quantized sources are
//!   refused ("requantizing ... is disabled"), as with default `llama_model_quantize` params;
//! * output is checked like `ggml_validate_row_data` (no NaN/Inf scales or values).

use std::path::Path;

use crate::codec;
use crate::error::{Error, Result};
use crate::mix::{
    ggml_n_dims, llama_tensor_order, plan_tensor_types, ModelFacts, PlanInput, QuantMix,
};
use crate::reader::{GgufFile, TensorInfo};
use crate::types::GgmlType;
use crate::writer::{GgufWriter, TensorSpec};

/// `GGML_QNT_VERSION`, written as `general.quantization_version`.
pub const GGML_QNT_VERSION: u32 = 2;

/// Elements converted at once (bounds the f32 scratch to 64 MiB per slab).
const SLAB_ELEMENTS: u64 = 16 << 20;

/// What [`quantize_gguf`] did to one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizedTensor {
    /// Tensor name.
    pub name: String,
    /// Type in the input.
    pub from: GgmlType,
    /// Type in the output.
    pub to: GgmlType,
    /// Dims (ggml order).
    pub ne: Vec<u64>,
}

/// Summary of a [`quantize_gguf`] run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantizeReport {
    /// Per tensor, in output order.
    pub tensors: Vec<QuantizedTensor>,
    /// Bytes of the input file.
    pub bytes_in: u64,
    /// Bytes of the output file.
    pub bytes_out: u64,
}

/// Re-quantizes the GGUF at `in_path` into `out_path` with `mix`, using `threads` worker
/// threads (0 = all cores). See the module docs for what matches `llama_model_quantize`.
pub fn quantize_gguf(
    in_path: impl AsRef<Path>,
    out_path: impl AsRef<Path>,
    mix: QuantMix,
    threads: usize,
) -> Result<QuantizeReport> {
    let input = GgufFile::open(in_path.as_ref())?;
    let facts = ModelFacts::from_metadata(input.metadata())?;

    let mut order: Vec<&TensorInfo> = input.tensors().iter().collect();
    order.sort_by(|a, b| llama_tensor_order(&a.name, &b.name));
    let normalized: Vec<Vec<u64>> = order
        .iter()
        .map(|t| t.ne[..ggml_n_dims(&t.ne).min(t.ne.len())].to_vec())
        .collect();
    let plan_in: Vec<PlanInput<'_>> = order
        .iter()
        .zip(&normalized)
        .map(|(t, ne)| PlanInput {
            name: &t.name,
            ty: t.ty,
            ne,
        })
        .collect();
    let targets = plan_tensor_types(mix, &facts, &plan_in, false)?;

    for (t, &to) in order.iter().zip(&targets) {
        if t.ty != to && t.ty.is_quantized() {
            return Err(Error::tensor(
                &t.name,
                format!(
                    "requantizing from type {} is disabled (source must be F32/F16/BF16)",
                    t.ty
                ),
            ));
        }
        if t.ty != to && !to.has_codec() {
            return Err(Error::UnsupportedType {
                op: "quantize",
                ty: to,
            });
        }
    }

    let mut md = input.metadata().clone();
    md.set_last("general.quantization_version", GGML_QNT_VERSION);
    md.set_last("general.file_type", mix.file_type().id());
    for k in ["split.no", "split.count", "split.tensors.count"] {
        md.remove(k);
    }
    let mut writer = GgufWriter::new(md)?;
    for ((t, ne), &to) in order.iter().zip(&normalized).zip(&targets) {
        writer.add_tensor(TensorSpec::new(t.name.clone(), to, ne.clone()))?;
    }

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start {threads} threads: {e}")))?;

    let out_path = out_path.as_ref();
    let bytes_out = pool.install(|| {
        writer.write_to_file(out_path, |i, spec, sink| {
            let src = order[i];
            let data = input.data_of(src)?;
            if src.ty == spec.ty {
                return sink.write_bytes(data);
            }
            tracing::debug!(tensor = %spec.name, from = %src.ty, to = %spec.ty, "quantizing");
            let ne0 = src.row_len();
            let rows = src.n_rows();
            let rows_per_slab = (SLAB_ELEMENTS / ne0.max(1)).max(1);
            let src_row = src.ty.row_size(ne0).unwrap_or(0) as usize;
            let mut r = 0;
            while r < rows {
                let n = rows_per_slab.min(rows - r);
                let bytes = &data[r as usize * src_row..(r + n) as usize * src_row];
                let values = codec::dequantize_to_vec(src.ty, bytes)?;
                let out = codec::quantize_to_vec(spec.ty, &values)?;
                codec::validate(spec.ty, &out).map_err(|message| Error::Validation {
                    tensor: spec.name.clone(),
                    message: format!("quantized data validation failed: {message}"),
                })?;
                sink.write_bytes(&out)?;
                r += n;
            }
            Ok(())
        })
    })?;

    let tensors = order
        .iter()
        .zip(&normalized)
        .zip(&targets)
        .map(|((t, ne), &to)| QuantizedTensor {
            name: t.name.clone(),
            from: t.ty,
            to,
            ne: ne.clone(),
        })
        .collect();
    Ok(QuantizeReport {
        tensors,
        bytes_in: input.as_bytes().len() as u64,
        bytes_out,
    })
}
