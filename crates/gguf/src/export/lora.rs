//! llama.cpp's LoRA adapter GGUF (what Ollama's `ADAPTER` line loads), from already-read
//! A/B matrices.
//!
//! Layout, as `convert_lora_to_gguf.py` writes and `src/llama-adapter.cpp` checks it:
//! `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha` (f32),
//! `general.architecture` of the base; tensors `<base tensor name>.lora_a` with ggml
//! `ne = [in, r]` (PEFT's `lora_A.weight [r, in]` as is) and `.lora_b` with `ne = [r, out]`
//! (`lora_B.weight [out, r]`). The base's q/k RoPE row permutation is a permutation of output
//! rows, so it applies to B only (A's rows are the rank).
//!
//! Scale: llama.cpp applies `alpha / r` to each pair, with one `alpha` per file and `r` read
//! from that pair's B (`b.ne[0]`), so per-pair ranks are represented as they are. A pair whose
//! wanted scale differs from `alpha / r` (a per-module alpha, or rsLoRA with per-module ranks)
//! gets the ratio folded into its B, so that llama.cpp computes the wanted `scale · B · A`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::mix::llama_tensor_order;
use crate::naming::{hf_to_gguf_name, permute_qk, qk_kind, QkKind};
use crate::quantize::GGML_QNT_VERSION;
use crate::types::{GgmlType, LlamaFileType};
use crate::writer::{GgufWriter, TensorSpec};

/// Relative difference between a pair's wanted scale and llama.cpp's `alpha / r` below which
/// B is written unchanged (rounding noise of computing the same scale two ways).
const SCALE_TOLERANCE: f64 = 1e-6;

/// One adapted base tensor: its A and B (PEFT layout) and the scale `B · A` is applied with.
#[derive(Debug, Clone, Copy)]
pub struct LoraPair<'a> {
    /// HF name of the adapted base weight (`model.layers.0.self_attn.q_proj.weight`).
    pub target: &'a str,
    /// Name of A in the source (named in messages).
    pub a_name: &'a str,
    /// Name of B in the source (named in messages).
    pub b_name: &'a str,
    /// A, row-major `[r, in]`.
    pub a: &'a [f32],
    /// B, row-major `[out, r]`.
    pub b: &'a [f32],
    /// Rank of this pair.
    pub r: usize,
    /// Input width of the base weight.
    pub d_in: usize,
    /// Output width of the base weight.
    pub d_out: usize,
    /// The scale the adapter applies to `B · A` for this pair.
    pub scale: f64,
}

/// A LoRA adapter for a `llama`-architecture base.
#[derive(Debug, Clone)]
pub struct LoraAdapterGguf<'a> {
    /// `adapter.lora.alpha`.
    pub alpha: f32,
    /// Query heads of the base (q row permutation).
    pub n_head: usize,
    /// Key/value heads of the base (k row permutation).
    pub n_head_kv: usize,
    /// The adapted tensors, any order.
    pub pairs: Vec<LoraPair<'a>>,
    /// The adapter's weight file (named in messages).
    pub origin: PathBuf,
}

/// What [`write_lora_adapter`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraWriteReport {
    /// Number of adapted base tensors.
    pub targets: usize,
    /// Pairs whose B carries a folded scale factor (see the module docs).
    pub rescaled: usize,
    /// Bytes written.
    pub bytes_out: u64,
}

/// A tensor to write: its source name, values, and for B of q/k the permutation
/// `(rows, cols, heads)`.
struct Job<'a> {
    name: &'a str,
    values: &'a [f32],
    factor: Option<f32>,
    permute: Option<(usize, usize, usize)>,
}

fn check_pair(p: &LoraPair<'_>, origin: &Path) -> Result<()> {
    for (name, v, want, shape) in [
        (p.a_name, p.a, p.r * p.d_in, [p.r, p.d_in]),
        (p.b_name, p.b, p.d_out * p.r, [p.d_out, p.r]),
    ] {
        if v.len() != want {
            return Err(Error::convert(
                origin,
                format!(
                    "tensor `{name}` has {} values, shape {shape:?} needs {want}",
                    v.len()
                ),
            ));
        }
        if let Some(pos) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::convert(
                origin,
                format!("tensor `{name}` has a non-finite value at index {pos}"),
            ));
        }
    }
    if p.r == 0 || !p.scale.is_finite() {
        return Err(Error::convert(
            origin,
            format!(
                "`{}`: rank {} and scale {} are not usable",
                p.target, p.r, p.scale
            ),
        ));
    }
    Ok(())
}

/// Writes `adapter` to the GGUF file `out` (atomically).
pub fn write_lora_adapter(adapter: &LoraAdapterGguf<'_>, out: &Path) -> Result<LoraWriteReport> {
    let origin = adapter.origin.as_path();
    if adapter.pairs.is_empty() {
        return Err(Error::convert(origin, "no lora_A/lora_B tensors"));
    }
    let mut named = Vec::with_capacity(adapter.pairs.len());
    for p in &adapter.pairs {
        check_pair(p, origin)?;
        let gguf = hf_to_gguf_name(p.target)
            .filter(|g| g.starts_with("blk."))
            .ok_or_else(|| {
                Error::convert(
                    origin,
                    format!(
                        "`{}` targets `{}`, which is not a Llama projection",
                        p.a_name, p.target
                    ),
                )
            })?;
        named.push((gguf, p));
    }
    named.sort_by(|x, y| llama_tensor_order(&x.0, &y.0));

    let mut md = Metadata::new();
    md.set("general.architecture", "llama");
    md.set("general.type", "adapter");
    md.set("adapter.type", "lora");
    md.set("adapter.lora.alpha", adapter.alpha);
    md.set("general.file_type", LlamaFileType::AllF32.id());
    md.set("general.quantization_version", GGML_QNT_VERSION);
    let mut w = GgufWriter::new(md)?;
    let mut jobs: Vec<Job<'_>> = Vec::with_capacity(2 * named.len());
    let mut rescaled = 0;
    for (gguf, p) in &named {
        let applied = f64::from(adapter.alpha) / p.r as f64;
        let ratio = p.scale / applied;
        let factor = ((ratio - 1.0).abs() > SCALE_TOLERANCE).then_some(ratio as f32);
        rescaled += usize::from(factor.is_some());
        let heads = match qk_kind(gguf) {
            Some(QkKind::Query) => Some(adapter.n_head),
            Some(QkKind::Key) => Some(adapter.n_head_kv),
            None => None,
        };
        w.add_tensor(TensorSpec::new(
            format!("{gguf}.lora_a"),
            GgmlType::F32,
            vec![p.d_in as u64, p.r as u64],
        ))?;
        jobs.push(Job {
            name: p.a_name,
            values: p.a,
            factor: None,
            permute: None,
        });
        w.add_tensor(TensorSpec::new(
            format!("{gguf}.lora_b"),
            GgmlType::F32,
            vec![p.r as u64, p.d_out as u64],
        ))?;
        jobs.push(Job {
            name: p.b_name,
            values: p.b,
            factor,
            permute: heads.map(|h| (p.d_out, p.r, h)),
        });
    }
    let bytes_out = w.write_to_file(out, |i, _spec, sink| {
        let job = &jobs[i];
        let mut v = match job.factor {
            Some(f) => job.values.iter().map(|x| x * f).collect(),
            None => job.values.to_vec(),
        };
        if let Some((rows, cols, heads)) = job.permute {
            v = permute_qk(&v, rows, cols, heads)?;
        }
        if let Some(pos) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::convert(
                origin,
                format!(
                    "tensor `{}` overflows at index {pos} once its scale is folded in",
                    job.name
                ),
            ));
        }
        sink.write_f32(&v)
    })?;
    Ok(LoraWriteReport {
        targets: named.len(),
        rescaled,
        bytes_out,
    })
}
