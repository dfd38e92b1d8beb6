//! The separate merge step: `W' = W + scale · B · A` for every adapted projection of an HF
//! checkpoint, accumulated in f32 and written in the base's dtype (one rounding), with the
//! base's sharding, index and non-weight files (config, tokenizer, chat template) carried over.
//!
//! Nothing appears at the output path unless the whole merge succeeded: the adapter is checked
//! against the base (names and shapes) and for NaN/Inf first, each merged tensor is checked
//! before it is written, and the result is built in a temporary sibling folder that is renamed
//! at the end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use tb_model::checkpoint::{decode_f32, encode_f32};
use tb_model::checkpoint_writer::{write_safetensors_streamed, TensorHeader};
use tb_model::{ModelConfig, SafetensorsCheckpoint};

use crate::error::{io, Error, Result};
use crate::lora::{Adapter, ModuleAdapter};

/// What a merge did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergeReport {
    /// Projections that received an update.
    pub merged_tensors: usize,
    /// Tensors copied unchanged.
    pub copied_tensors: usize,
    /// Largest |scale · B·A| entry.
    pub max_abs_delta: f32,
    /// Output dtype (the base's).
    pub dtype: String,
    /// Shard files written.
    pub shards: Vec<String>,
    /// Seconds.
    pub seconds: f64,
}

/// `scale · B · A` in HF layout `[out, in]`, f32.
pub fn delta_weight(m: &ModuleAdapter, scale: f32) -> Vec<f32> {
    let (r, d_in) = (m.a.shape[0], m.a.shape[1]);
    let d_out = m.b.shape[0];
    let mut out = vec![0.0f32; d_out * d_in];
    out.par_chunks_mut(d_in).enumerate().for_each(|(o, row)| {
        for k in 0..r {
            let bk = m.b.data[o * r + k];
            let a_row = &m.a.data[k * d_in..(k + 1) * d_in];
            for (x, a) in row.iter_mut().zip(a_row) {
                *x += bk * a;
            }
        }
        row.iter_mut().for_each(|x| *x *= scale);
    });
    out
}

/// Shard file of every tensor (from the index, or the single `model.safetensors`).
fn shard_map(
    dir: &Path,
    checkpoint: &SafetensorsCheckpoint,
) -> Result<BTreeMap<String, Vec<String>>> {
    let index = dir.join("model.safetensors.index.json");
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(io(&index))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Merge(format!("{}: {e}", index.display())))?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::Merge(format!("{}: no weight_map", index.display())))?;
        for (name, file) in map {
            let file = file.as_str().unwrap_or_default().to_string();
            files.entry(file).or_default().push(name.clone());
        }
    } else {
        files.insert(
            "model.safetensors".into(),
            checkpoint.names().map(str::to_string).collect(),
        );
    }
    Ok(files)
}

/// The decoder projections of a checkpoint: HF module name → (in, out).
pub fn base_projections(
    checkpoint: &SafetensorsCheckpoint,
) -> Result<BTreeMap<String, (usize, usize)>> {
    let mut projections = BTreeMap::new();
    for name in checkpoint.names() {
        if let Some(module) = name.strip_suffix(".weight") {
            if module.contains(".self_attn.") || module.contains(".mlp.") {
                let shape = checkpoint.shape(name)?;
                if shape.len() == 2 {
                    projections.insert(module.to_string(), (shape[1], shape[0]));
                }
            }
        }
    }
    Ok(projections)
}

/// Merges the adapter folder `adapter_dir` into the HF checkpoint `base_dir`, writing a
/// complete HF model folder at `out` (which must not exist or be empty).
pub fn merge_into_dir(base_dir: &Path, adapter_dir: &Path, out: &Path) -> Result<MergeReport> {
    let adapter = Adapter::load(adapter_dir)?;
    merge_adapter(base_dir, &adapter, out)
}

/// Merges an adapter (read from disk or held in memory) into the HF checkpoint `base_dir`.
pub fn merge_adapter(base_dir: &Path, adapter: &Adapter, out: &Path) -> Result<MergeReport> {
    let started = Instant::now();
    if base_dir.is_file() {
        return Err(Error::Merge(format!(
            "{}: merge needs an HF model folder (config.json + safetensors); import a GGUF first with `tunebench import-gguf`",
            base_dir.display()
        )));
    }
    if out.exists() && std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(Error::Merge(format!(
            "{}: output folder exists and is not empty; refusing to overwrite",
            out.display()
        )));
    }
    // The base must be a model we understand (this also names bad config fields).
    ModelConfig::from_hf_file(base_dir.join("config.json"))?;
    let checkpoint = SafetensorsCheckpoint::open(base_dir)?;
    // Names and shapes first: an adapter for another base says what differs.
    adapter.check_against(&base_projections(&checkpoint)?)?;
    for m in adapter.modules.values() {
        for t in [&m.a, &m.b] {
            if let Some(i) = t.data.iter().position(|x| !x.is_finite()) {
                return Err(Error::Merge(format!(
                    "adapter tensor `{}` holds a non-finite value ({}) at index {i}; nothing was written",
                    t.name, t.data[i]
                )));
            }
        }
    }
    let dtype = checkpoint.dominant_dtype()?;
    let shards = shard_map(base_dir, &checkpoint)?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(".merge-")
        .tempdir_in(parent)
        .map_err(io(parent))?;
    let mut report = MergeReport {
        merged_tensors: 0,
        copied_tensors: 0,
        max_abs_delta: 0.0,
        dtype: dtype.torch_name().into(),
        shards: shards.keys().cloned().collect(),
        seconds: 0.0,
    };
    for (file, names) in &shards {
        // Headers first, then one tensor at a time: a 7B base is merged in the memory of its
        // largest tensor, not of its largest shard.
        let headers = names
            .iter()
            .map(|name| {
                Ok(TensorHeader {
                    name: name.clone(),
                    dtype: checkpoint.dtype(name)?,
                    shape: checkpoint.shape(name)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        write_safetensors_streamed(&tmp.path().join(file), &headers, |_, header| {
            merge_one(&checkpoint, adapter, header, out, &mut report)
        })?;
    }
    copy_side_files(base_dir, tmp.path())?;
    let kept = tmp.keep();
    if out.exists() {
        std::fs::remove_dir(out).map_err(io(out))?;
    }
    std::fs::rename(&kept, out).map_err(io(out))?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The bytes to write for one base tensor: merged with its adapter module (accumulated in f32,
/// rounded once to the stored dtype) or copied unchanged.
fn merge_one(
    checkpoint: &SafetensorsCheckpoint,
    adapter: &Adapter,
    header: &TensorHeader,
    out: &Path,
    report: &mut MergeReport,
) -> Result<Vec<u8>> {
    let name = header.name.as_str();
    let module = name.strip_suffix(".weight").unwrap_or(name);
    let Some(m) = adapter.modules.get(module) else {
        report.copied_tensors += 1;
        return Ok(checkpoint.read_raw(name)?);
    };
    let scale = adapter.config.scale_for(module) as f32;
    let delta = delta_weight(m, scale);
    let mut w = decode_f32(&checkpoint.read_raw(name)?, header.dtype);
    for (x, d) in w.iter_mut().zip(&delta) {
        *x += d;
        report.max_abs_delta = report.max_abs_delta.max(d.abs());
    }
    if let Some(i) = w.iter().position(|x| !x.is_finite()) {
        return Err(Error::Merge(format!(
            "merged `{name}` is not finite at index {i}; nothing was written to {}",
            out.display()
        )));
    }
    report.merged_tensors += 1;
    Ok(encode_f32(&w, header.dtype))
}

/// Copies everything but the weights (config, generation config, tokenizer files, chat
/// template, shard index) from the base folder.
fn copy_side_files(base: &Path, dest: &Path) -> Result<Vec<PathBuf>> {
    let mut copied = Vec::new();
    for entry in std::fs::read_dir(base).map_err(io(base))? {
        let entry = entry.map_err(io(base))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_file() || name.ends_with(".safetensors") || name.ends_with(".bin") {
            continue;
        }
        let target = dest.join(&name);
        std::fs::copy(&path, &target).map_err(io(&path))?;
        copied.push(target);
    }
    Ok(copied)
}
