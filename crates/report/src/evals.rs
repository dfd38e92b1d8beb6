//! Evaluation results written by `tunebench eval` (tb-eval), read with tb-eval's own types so
//! a field the evaluator renames or drops is an error naming the file and the field, never a
//! silent zero. Unknown fields are ignored. One evaluation folder may hold:
//!
//! - `summary.json` (`tunebench eval --model NAME=FILE.gguf ... --out DIR`):
//!   [`tb_eval::evaluation::Summary`];
//! - `results.jsonl`: one [`tb_eval::evaluation::ItemResult`] per line (used for latency, the
//!   per-split generalisation figure and the answers shown side by side);
//! - `damage.json` (`tunebench eval damage --out DIR`): [`tb_eval::damage::DamageReport`].
//!
//! Method and quant type of an evaluated model come from its name, else its GGUF file name: the
//! quant type is the first known ggml type token found (`Q4_K_M`, `Q8_0`, `F16`, ...; case does
//! not matter), the method is `unsloth`, `hf-peft`, `peft` or `base` when one of those words is
//! in the name (else the name without the quant token). So name models `peft-Q4_K_M` or
//! `unsloth-F16` when evaluating.

use std::path::Path;

use tb_eval::damage::DamageReport;
use tb_eval::evaluation::{ItemResult, Summary};

use crate::error::{Error, Result};
use crate::fsio::{median, read_json, read_json_lines};
use crate::serving::ADAPTER_SUFFIX;

/// The tensor type of a LoRA GGUF (its first tensor's; they share one), `?` when it cannot be
/// read.
fn lora_type(path: &Path) -> String {
    tb_gguf::GgufFile::open(path)
        .ok()
        .and_then(|g| {
            g.tensors()
                .first()
                .map(|t| t.ty.name().to_ascii_uppercase())
        })
        .unwrap_or_else(|| "?".into())
}

/// Quant types the parser knows, longest first so `Q4_K_M` wins over `Q4_K`.
const QUANTS: [&str; 15] = [
    "Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q6_K", "Q5_K", "Q4_K", "Q8_0", "Q5_0", "Q5_1", "Q4_0",
    "Q4_1", "BF16", "F16", "F32",
];

/// The quant type named in `text`, upper case, if any.
pub fn quant_in(text: &str) -> Option<String> {
    let upper = text.to_ascii_uppercase();
    QUANTS
        .iter()
        .find(|q| upper.contains(*q))
        .map(|q| q.to_string())
}

/// The method named in `text`: `hf-peft`, `unsloth`, `peft` or `base`, if any.
pub fn method_in(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    ["hf-peft", "hf_peft", "unsloth", "peft", "base"]
        .iter()
        .find(|m| lower.contains(*m))
        .map(|m| m.replace('_', "-"))
}

/// Quality of one model (method × quant type).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QualityRow {
    /// `peft`, `unsloth`, `hf-peft`, `base`, or the model name.
    pub method: String,
    /// `Q4_K_M`, `F16`, ... or `?`.
    pub quant: String,
    /// `ollama`, `embedded`, ...
    pub engine: String,
    /// Items scored.
    pub items: usize,
    /// Items that failed.
    pub failed: usize,
    /// Corpus chrF (0–100).
    pub chrf: Option<f64>,
    /// Corpus BLEU (0–100).
    pub bleu: Option<f64>,
    /// Mean ROUGE-L F1 (0–1).
    pub rouge_l: Option<f64>,
    /// Exact-match rate (0–1).
    pub exact_match: Option<f64>,
    /// Mean LLM-judge grade (1–5), when the evaluation had a judge.
    pub judge_score: Option<f64>,
    /// Reference-answer perplexity.
    pub perplexity: Option<f64>,
    /// Teacher-forced top-1 accuracy.
    pub top1_accuracy: Option<f64>,
    /// Mean sentence chrF of held-out items (from `results.jsonl`).
    pub chrf_heldout: Option<f64>,
    /// Mean sentence chrF of paraphrase items (from `results.jsonl`).
    pub chrf_paraphrase: Option<f64>,
    /// The model's lines of `results.jsonl` (failed items included), in file order; empty for
    /// the damage study. The "Answers side by side" section ([`crate::answers`]) shows them.
    pub answers: Vec<ItemResult>,
}

/// Inference speed of one model (method × quant type × engine).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpeedRow {
    /// As in [`QualityRow::method`].
    pub method: String,
    /// As in [`QualityRow::quant`].
    pub quant: String,
    /// Engine that produced the figures.
    pub engine: String,
    /// Prompt (prefill) tokens/s.
    pub prompt_tokens_per_s: Option<f64>,
    /// Decode tokens/s.
    pub decode_tokens_per_s: Option<f64>,
    /// Model load time, s.
    pub load_s: Option<f64>,
    /// Median seconds per answer.
    pub latency_median_s: Option<f64>,
    /// GGUF size, bytes (the base GGUF's when a LoRA GGUF was applied to it).
    pub gguf_bytes: Option<u64>,
    /// Tensor type of the LoRA GGUF served unmerged on the GGUF (`F16`, ...), if any.
    pub adapter_type: Option<String>,
    /// Size of that LoRA GGUF, bytes.
    pub adapter_bytes: Option<u64>,
}

/// What one evaluation folder contributed.
#[derive(Debug, Clone, Default)]
pub struct EvalResults {
    /// Quality rows.
    pub quality: Vec<QualityRow>,
    /// Speed rows.
    pub speed: Vec<SpeedRow>,
    /// Engine sentences (`engine_reason`, damage `ollama`), for the environment section.
    pub engine_notes: Vec<String>,
}

fn split_name(name: &str, gguf: Option<&Path>) -> (String, String) {
    let file = gguf
        .and_then(|p| p.file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let quant = quant_in(name)
        .or_else(|| quant_in(&file))
        .unwrap_or_else(|| "?".into());
    let method = method_in(name)
        .or_else(|| gguf.and_then(|p| method_in(&p.to_string_lossy())))
        .unwrap_or_else(|| name.to_string());
    (method, quant)
}

/// Reads an evaluation folder (`summary.json`, `results.jsonl`, `damage.json`; at least one
/// of `summary.json` and `damage.json` must be there).
pub fn load_eval_dir(dir: &Path) -> Result<EvalResults> {
    let mut out = EvalResults::default();
    let summary_path = dir.join("summary.json");
    let damage_path = dir.join("damage.json");
    if !summary_path.exists() && !damage_path.exists() {
        return Err(Error::Invalid {
            path: dir.to_path_buf(),
            message: "not an evaluation folder: neither summary.json nor damage.json".into(),
        });
    }
    if summary_path.exists() {
        add_summary(&summary_path, &dir.join("results.jsonl"), &mut out)?;
    }
    if damage_path.exists() {
        add_damage(&damage_path, &mut out)?;
    }
    Ok(out)
}

/// The quality and speed rows of an evaluation's `summary.json` (with its `results.jsonl`).
fn add_summary(summary_path: &Path, results: &Path, out: &mut EvalResults) -> Result<()> {
    let s: Summary = read_json(summary_path)?;
    let items = read_items(results)?;
    // Which server answered (`ollama-compat (llama.cpp)`, `ollama 0.12.3`), where recorded.
    let engine = if s.engine_name.is_empty() {
        s.engine.as_str().to_string()
    } else {
        s.engine_name.clone()
    };
    out.engine_notes.push(s.engine_reason);
    for m in &s.models {
        if let Some(e) = &m.error {
            tracing::warn!(model = %m.name, "evaluation failed: {e}");
        }
        let (mut method, quant) = split_name(&m.name, Some(&m.gguf));
        if m.adapter.is_some() {
            method.push_str(ADAPTER_SUFFIX);
        }
        // Answered items only; a score or time JSON held as `null` (NaN) is no figure.
        let mine: Vec<&ItemResult> = items
            .iter()
            .filter(|i| i.model == m.name && i.error.is_none())
            .collect();
        let split_chrf = |split: &str| {
            let v: Vec<f64> = mine
                .iter()
                .filter(|i| i.split.as_deref() == Some(split))
                .filter_map(|i| i.scores.map(|s| s.chrf))
                .filter(|c| c.is_finite())
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let seconds: Vec<f64> = mine
            .iter()
            .map(|i| i.timings.seconds)
            .filter(|t| t.is_finite())
            .collect();
        let load = m.load_seconds.or_else(|| {
            items
                .iter()
                .filter(|i| i.model == m.name)
                .find_map(|i| i.timings.load_seconds)
        });
        out.quality.push(QualityRow {
            method: method.clone(),
            quant: quant.clone(),
            engine: engine.clone(),
            items: m.items,
            failed: m.failed,
            chrf: m.chrf,
            bleu: m.bleu,
            rouge_l: m.rouge_l,
            exact_match: m.exact_match,
            judge_score: m.judge_score,
            perplexity: m.perplexity,
            top1_accuracy: m.top1_accuracy,
            chrf_heldout: split_chrf("heldout"),
            chrf_paraphrase: split_chrf("paraphrase"),
            answers: items
                .iter()
                .filter(|i| i.model == m.name)
                .cloned()
                .collect(),
        });
        out.speed.push(SpeedRow {
            method,
            quant,
            engine: engine.clone(),
            prompt_tokens_per_s: m.prompt_tokens_per_second,
            decode_tokens_per_s: m.eval_tokens_per_second,
            load_s: load,
            latency_median_s: median(&seconds),
            gguf_bytes: std::fs::metadata(&m.gguf).ok().map(|md| md.len()),
            adapter_type: m.adapter.as_deref().map(lora_type),
            adapter_bytes: m
                .adapter
                .as_deref()
                .and_then(|a| std::fs::metadata(a).ok())
                .map(|md| md.len()),
        });
    }
    Ok(())
}

/// The rows of a damage study's `damage.json`.
fn add_damage(damage_path: &Path, out: &mut EvalResults) -> Result<()> {
    let d: DamageReport = read_json(damage_path)?;
    let method = method_in(&d.source.to_string_lossy()).unwrap_or_else(|| "base".into());
    out.engine_notes.push(format!("damage study: {}", d.ollama));
    let ollama_engine = if d.ollama_engine.is_empty() {
        "ollama".to_string()
    } else {
        d.ollama_engine.clone()
    };
    for r in d.rows {
        let quant = quant_in(&r.quant).unwrap_or(r.quant.clone());
        out.quality.push(QualityRow {
            method: method.clone(),
            quant: quant.clone(),
            engine: "embedded".into(),
            items: r.ppl_items.max(r.chrf_items),
            failed: 0,
            chrf: r.chrf,
            perplexity: r.perplexity,
            top1_accuracy: r.top1_accuracy,
            ..QualityRow::default()
        });
        out.speed.push(SpeedRow {
            method: method.clone(),
            quant: quant.clone(),
            engine: "embedded".into(),
            decode_tokens_per_s: r.embedded_decode_tokens_per_second,
            gguf_bytes: Some(r.bytes),
            ..SpeedRow::default()
        });
        if let Some(o) = r.ollama {
            out.speed.push(SpeedRow {
                method: method.clone(),
                quant,
                engine: ollama_engine.clone(),
                prompt_tokens_per_s: o.prompt_tokens_per_second,
                decode_tokens_per_s: o.eval_tokens_per_second,
                load_s: o.load_seconds,
                gguf_bytes: Some(r.bytes),
                ..SpeedRow::default()
            });
        }
    }
    Ok(())
}

fn read_items(path: &Path) -> Result<Vec<ItemResult>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    read_json_lines(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_method_and_quant() {
        assert_eq!(
            split_name("peft-q4_k_m", None),
            ("peft".into(), "Q4_K_M".into())
        );
        assert_eq!(
            split_name("m", Some(Path::new("runs/x-unsloth/smol-Q8_0.gguf"))),
            ("unsloth".into(), "Q8_0".into())
        );
        assert_eq!(quant_in("hf-peft"), None);
        assert_eq!(method_in("HF_PEFT-F16").as_deref(), Some("hf-peft"));
    }
}
