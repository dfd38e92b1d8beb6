//! PEFT LoRA adapter → llama.cpp LoRA adapter GGUF (what Ollama's `ADAPTER` line loads).
//!
//! The adapter folder is read by [`Adapter::load`] (this crate's one reader of
//! `adapter_config.json` and `adapter_model.safetensors`) and checked against the base exactly
//! as [`crate::merge`] checks it, so an adapter that merges also exports, and one that does not
//! fit is refused with the same message. tb-gguf writes the file
//! ([`tb_gguf::write_lora_adapter`]); this converter lives here because tb-train owns the PEFT
//! format and depends on tb-gguf.
//!
//! Scale. PEFT applies `alpha_m / r_m` per module (`alpha_m / sqrt(r_m)` with rsLoRA), where
//! `rank_pattern` and `alpha_pattern` may set `r_m` and `alpha_m` per module; llama.cpp applies
//! `alpha / r_m` with one `alpha` per file and `r_m` read from each pair. The file's alpha is
//! `lora_alpha` (`lora_alpha · sqrt(r)` with rsLoRA, so that the default rank needs no change);
//! per-module ranks are then represented as they are, and a module whose PEFT scale still
//! differs (its own alpha, or rsLoRA at another rank) gets the ratio folded into its B. The
//! exported adapter therefore applies the same `scale · B · A` as [`crate::merge`].

use std::path::Path;

use tb_gguf::export::{write_lora_adapter, LoraAdapterGguf, LoraPair, LoraTensorType};
use tb_model::{ModelConfig, SafetensorsCheckpoint};

use super::adapter::{Adapter, ADAPTER_WEIGHTS};
use crate::error::{Error, Result};
use crate::merge::base_projections;

/// What [`export_lora_adapter`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraExportReport {
    /// `r` of `adapter_config.json` (modules may differ through `rank_pattern`).
    pub r: usize,
    /// `lora_alpha` of the adapter.
    pub lora_alpha: f64,
    /// `adapter.lora.alpha` written (rsLoRA folded in).
    pub gguf_alpha: f32,
    /// Number of adapted base tensors.
    pub targets: usize,
    /// Modules whose B carries their scale's ratio to llama.cpp's `alpha / r` (per-module
    /// alpha, or rsLoRA at a per-module rank).
    pub rescaled: usize,
    /// Bytes written.
    pub bytes_out: u64,
}

/// The `adapter.lora.alpha` written for an adapter config: `lora_alpha`, times `sqrt(r)` with
/// rsLoRA so that llama.cpp's `alpha / r` equals PEFT's `lora_alpha / sqrt(r)`.
pub fn gguf_alpha(config: &super::LoraConfig) -> f32 {
    let alpha = config.lora_alpha as f32;
    if config.use_rslora {
        alpha * (config.r as f32).sqrt()
    } else {
        alpha
    }
}

/// Exports the PEFT adapter in `adapter_dir` (for the HF base model in `base_dir`) to `out`,
/// every A and B as `tensor_type`; nothing is written unless every check passes (a value that
/// overflows F16 is an error naming the tensor).
pub fn export_lora_adapter(
    adapter_dir: &Path,
    base_dir: &Path,
    out: &Path,
    tensor_type: LoraTensorType,
) -> Result<LoraExportReport> {
    let adapter = Adapter::load(adapter_dir)?;
    let base = ModelConfig::from_hf_file(base_dir.join("config.json"))?;
    let checkpoint = SafetensorsCheckpoint::open(base_dir)?;
    adapter.check_against(&base_projections(&checkpoint)?)?;
    let config = &adapter.config;
    let alpha = gguf_alpha(config);
    let targets: Vec<String> = adapter
        .modules
        .keys()
        .map(|m| format!("{m}.weight"))
        .collect();
    let pairs = adapter
        .modules
        .iter()
        .zip(&targets)
        .map(|((module, m), target)| LoraPair {
            target,
            a_name: &m.a.name,
            b_name: &m.b.name,
            a: &m.a.data,
            b: &m.b.data,
            r: m.a.shape[0],
            d_in: m.a.shape[1],
            d_out: m.b.shape[0],
            scale: config.scale_for(module),
        })
        .collect();
    let gguf = LoraAdapterGguf {
        alpha,
        n_head: base.num_attention_heads,
        n_head_kv: base.num_key_value_heads,
        pairs,
        tensor_type,
        origin: adapter.dir.join(ADAPTER_WEIGHTS),
    };
    let written = write_lora_adapter(&gguf, out).map_err(|source| Error::Export {
        path: out.to_path_buf(),
        source: Box::new(source.into()),
    })?;
    Ok(LoraExportReport {
        r: config.r,
        lora_alpha: config.lora_alpha,
        gguf_alpha: alpha,
        targets: written.targets,
        rescaled: written.rescaled,
        bytes_out: written.bytes_out,
    })
}
