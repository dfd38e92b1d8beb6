//! PEFT LoRA adapter → llama.cpp LoRA adapter GGUF (what Ollama's `ADAPTER` line loads).
//!
//! Layout, as `convert_lora_to_gguf.py` writes and `src/llama-adapter.cpp` checks it:
//! `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha` (f32),
//! `general.architecture` of the base; tensors `<base tensor name>.lora_a` with ggml
//! `ne = [in, r]` (PEFT's `lora_A.weight [r, in]` as is) and `.lora_b` with `ne = [r, out]`
//! (`lora_B.weight [out, r]`). The base's q/k RoPE row permutation is a permutation of output
//! rows, so it applies to B only (A's rows are the rank).
//!
//! Scale: llama.cpp applies `alpha / r` with `r = lora_b.ne[0]`. PEFT applies `alpha / r`, or
//! `alpha / sqrt(r)` with `use_rslora`; for rsLoRA we write `alpha * sqrt(r)` so that llama.cpp's
//! `alpha' / r` equals PEFT's scale.

use std::path::Path;

use serde_json::Value as Json;

use super::hf::{read_json, HfLlamaConfig, SafetensorsDir};
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::mix::llama_tensor_order;
use crate::naming::{hf_to_gguf_name, permute_qk, qk_kind, QkKind};
use crate::quantize::GGML_QNT_VERSION;
use crate::types::{GgmlType, LlamaFileType};
use crate::writer::{GgufWriter, TensorSpec};

/// What [`export_lora_adapter`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraExportReport {
    /// LoRA rank `r` of the adapter (inner width of every A/B pair written).
    pub r: u32,
    /// `lora_alpha` of the adapter.
    pub lora_alpha: f32,
    /// `adapter.lora.alpha` written (rsLoRA folded in).
    pub gguf_alpha: f32,
    /// Number of adapted base tensors.
    pub targets: usize,
    /// Bytes written.
    pub bytes_out: u64,
}

/// A tensor to write: its adapter name and, for B of q/k, the permutation `(rows, cols, heads)`.
struct Job {
    name: String,
    permute: Option<(usize, usize, usize)>,
}

struct Pair {
    gguf: String,
    a: String,
    b: String,
    in_f: usize,
    out_f: usize,
    qk: Option<usize>,
}

fn number(cfg: &Json, key: &str) -> Option<f64> {
    cfg.get(key).and_then(Json::as_f64)
}

/// Exports the PEFT adapter in `adapter_dir` (for the HF base model in `base_dir`) to `out`.
pub fn export_lora_adapter(
    adapter_dir: &Path,
    base_dir: &Path,
    out: &Path,
) -> Result<LoraExportReport> {
    let cfg_path = adapter_dir.join("adapter_config.json");
    if !cfg_path.is_file() {
        return Err(Error::convert(
            adapter_dir,
            "not a PEFT adapter: adapter_config.json is missing",
        ));
    }
    let acfg = read_json(&cfg_path)?;
    let bad = |m: String| Error::convert(&cfg_path, m);
    if let Some(t) = acfg.get("peft_type").and_then(Json::as_str) {
        if t != "LORA" {
            return Err(bad(format!(
                "peft_type is `{t}`, only LORA adapters can be exported"
            )));
        }
    }
    let r = number(&acfg, "r").ok_or_else(|| bad("`r` is missing".into()))? as u32;
    let lora_alpha =
        number(&acfg, "lora_alpha").ok_or_else(|| bad("`lora_alpha` is missing".into()))? as f32;
    if r == 0 {
        return Err(bad("`r` is 0".into()));
    }
    let flag = |k: &str| acfg.get(k).and_then(Json::as_bool).unwrap_or(false);
    if flag("use_dora") {
        return Err(bad(
            "DoRA adapters (use_dora) cannot be expressed as a llama.cpp LoRA".into(),
        ));
    }
    for k in ["rank_pattern", "alpha_pattern"] {
        if acfg
            .get(k)
            .and_then(Json::as_object)
            .is_some_and(|o| !o.is_empty())
        {
            return Err(bad(format!(
                "`{k}` is not supported (llama.cpp has one alpha and rank per adapter)"
            )));
        }
    }
    if acfg.get("modules_to_save").is_some_and(|m| !m.is_null()) {
        return Err(bad(
            "`modules_to_save` (full tensors in the adapter) is not supported".into(),
        ));
    }
    if let Some(b) = acfg
        .get("bias")
        .and_then(Json::as_str)
        .filter(|b| *b != "none")
    {
        return Err(bad(format!("bias = `{b}` is not supported")));
    }
    let gguf_alpha = if flag("use_rslora") {
        lora_alpha * (r as f32).sqrt()
    } else {
        lora_alpha
    };

    let base = HfLlamaConfig::from_dir(base_dir)?;
    let base_st = SafetensorsDir::open(base_dir)?;
    let st_path = adapter_dir.join("adapter_model.safetensors");
    if !st_path.is_file() {
        return Err(Error::convert(
            adapter_dir,
            "adapter_model.safetensors is missing",
        ));
    }
    let ad = SafetensorsDir::open_files(std::slice::from_ref(&st_path))?;
    let mismatch = |m: String| {
        Error::convert(
            &st_path,
            format!("{m} (adapter made for another base model?)"),
        )
    };

    let mut pairs: Vec<Pair> = Vec::new();
    for name in ad.tensors().keys() {
        let (module, which) = name
            .strip_suffix(".lora_A.weight")
            .map(|m| (m, 'a'))
            .or_else(|| name.strip_suffix(".lora_B.weight").map(|m| (m, 'b')))
            .ok_or_else(|| {
                Error::convert(
                    &st_path,
                    format!("unexpected tensor `{name}`: not a lora_A or lora_B weight"),
                )
            })?;
        if which == 'b' {
            continue;
        }
        let hf = module
            .strip_prefix("base_model.model.")
            .map(|m| format!("{m}.weight"))
            .ok_or_else(|| {
                Error::convert(
                    &st_path,
                    format!("unexpected tensor `{name}`: no `base_model.model.` prefix"),
                )
            })?;
        let gguf = hf_to_gguf_name(&hf)
            .filter(|g| g.starts_with("blk."))
            .ok_or_else(|| {
                Error::convert(
                    &st_path,
                    format!("`{name}` targets `{hf}`, which is not a Llama projection"),
                )
            })?;
        let base_t = base_st.tensors().get(&hf).ok_or_else(|| {
            mismatch(format!(
                "`{name}` targets `{hf}`, which the base model does not have"
            ))
        })?;
        let b_name = format!("{module}.lora_B.weight");
        let a_t = &ad.tensors()[name];
        let b_t = ad.tensors().get(&b_name).ok_or_else(|| {
            Error::convert(&st_path, format!("`{name}` has no matching `{b_name}`"))
        })?;
        let (out_f, in_f) = match base_t.shape.as_slice() {
            [o, i] => (*o, *i),
            s => return Err(mismatch(format!("base tensor `{hf}` has shape {s:?}"))),
        };
        let r = r as usize;
        if a_t.shape != [r, in_f] {
            return Err(mismatch(format!(
                "`{name}` has shape {:?}, expected [r={r}, in={in_f}] for base `{hf}` {:?}",
                a_t.shape, base_t.shape
            )));
        }
        if b_t.shape != [out_f, r] {
            return Err(mismatch(format!(
                "`{b_name}` has shape {:?}, expected [out={out_f}, r={r}] for base `{hf}` {:?}",
                b_t.shape, base_t.shape
            )));
        }
        let qk = match qk_kind(&gguf) {
            Some(QkKind::Query) => Some(base.n_head as usize),
            Some(QkKind::Key) => Some(base.n_head_kv as usize),
            None => None,
        };
        pairs.push(Pair {
            gguf,
            a: name.clone(),
            b: b_name,
            in_f,
            out_f,
            qk,
        });
    }
    for name in ad.tensors().keys() {
        if let Some(m) = name.strip_suffix(".lora_B.weight") {
            if !ad.tensors().contains_key(&format!("{m}.lora_A.weight")) {
                return Err(Error::convert(
                    &st_path,
                    format!("`{name}` has no matching lora_A"),
                ));
            }
        }
    }
    if pairs.is_empty() {
        return Err(Error::convert(&st_path, "no lora_A/lora_B tensors"));
    }
    pairs.sort_by(|x, y| llama_tensor_order(&x.gguf, &y.gguf));

    let mut md = Metadata::new();
    md.set("general.architecture", "llama");
    md.set("general.type", "adapter");
    md.set("adapter.type", "lora");
    md.set("adapter.lora.alpha", gguf_alpha);
    md.set("general.file_type", LlamaFileType::AllF32.id());
    md.set("general.quantization_version", GGML_QNT_VERSION);
    let mut w = GgufWriter::new(md)?;
    let mut jobs: Vec<Job> = Vec::new();
    for p in &pairs {
        w.add_tensor(TensorSpec::new(
            format!("{}.lora_a", p.gguf),
            GgmlType::F32,
            vec![p.in_f as u64, r as u64],
        ))?;
        jobs.push(Job {
            name: p.a.clone(),
            permute: None,
        });
        w.add_tensor(TensorSpec::new(
            format!("{}.lora_b", p.gguf),
            GgmlType::F32,
            vec![r as u64, p.out_f as u64],
        ))?;
        jobs.push(Job {
            name: p.b.clone(),
            permute: p.qk.map(|h| (p.out_f, r as usize, h)),
        });
    }
    let bytes_out = w.write_to_file(out, |i, spec, sink| {
        let Job { name, permute } = &jobs[i];
        let mut v = ad.read_f32(name)?;
        if let Some(pos) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::convert(
                &st_path,
                format!("tensor `{name}` has a non-finite value at index {pos}"),
            ));
        }
        if let Some((rows, cols, heads)) = *permute {
            v = permute_qk(&v, rows, cols, heads)?;
        }
        debug_assert_eq!(spec.ty, GgmlType::F32);
        sink.write_f32(&v)
    })?;
    Ok(LoraExportReport {
        r,
        lora_alpha,
        gguf_alpha,
        targets: pairs.len(),
        bytes_out,
    })
}
