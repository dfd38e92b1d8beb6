//! The quantization damage study: the same weights as F16, Q8_0, Q4_K_M and Q4_0 GGUFs (made
//! with tb-gguf), each scored on the same items.
//!
//! Per type: reference-answer perplexity and teacher-forced top-1 accuracy (embedded engine,
//! completion tokens only), corpus chrF of greedy answers (embedded engine), embedded decode
//! speed, and, when an Ollama answers, Ollama's prompt/decode tokens/s and load time.
//!
//! Sources: an HF model directory (exported once per type, as `tunebench export gguf`), or a
//! GGUF. An F32/F16/BF16 GGUF is re-quantized as llama-quantize would; an already quantized GGUF
//! is first dequantised to an F32 GGUF, and the study then measures damage relative to those
//! dequantised weights (the report says so).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tb_data::Dataset;
use tb_gguf::{GgmlType, GgufFile, GgufWriter, QuantMix, TensorSpec};
use tb_model::OllamaTemplate;

use crate::engine::{GenerateSettings, Kernel, PerplexityTotals, Session};
use crate::evaluation::{create_ollama_model, to_role};
use crate::metrics::Chrf;
use crate::ollama::{ChatRequest, Message, OllamaClient, Options};

/// Settings of a study.
#[derive(Debug, Clone)]
pub struct DamageSettings {
    /// Quant types, in report order.
    pub types: Vec<QuantMix>,
    /// Items scored for perplexity (first N; `None` = all).
    pub ppl_items: Option<usize>,
    /// Items answered for chrF (first N; 0 = skip).
    pub chrf_items: usize,
    /// Most new tokens per answer.
    pub max_tokens: usize,
    /// Quantization threads (0 = all).
    pub threads: usize,
    /// Dot-product path.
    pub kernel: Kernel,
    /// Ollama `num_ctx`.
    pub num_ctx: u32,
    /// Items sent to Ollama for its speed figures.
    pub ollama_items: usize,
}

/// Ollama's speed on one file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OllamaSpeed {
    /// Mean prompt tokens/s.
    pub prompt_tokens_per_second: Option<f64>,
    /// Mean decode tokens/s.
    pub eval_tokens_per_second: Option<f64>,
    /// Load time of the first request.
    pub load_seconds: Option<f64>,
    /// Requests made.
    pub requests: usize,
}

/// One row of the study.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DamageRow {
    /// `F16`, `Q8_0`, `Q4_K_M`, `Q4_0`.
    pub quant: String,
    /// The GGUF.
    pub file: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Weight matrices per ggml type, e.g. `q4_K: 150, q6_K: 31`.
    pub weight_types: String,
    /// Token-weighted perplexity of the reference answers.
    pub perplexity: Option<f64>,
    /// Teacher-forced top-1 accuracy on reference tokens.
    pub top1_accuracy: Option<f64>,
    /// Items and tokens scored.
    pub ppl_items: usize,
    /// Completion tokens scored.
    pub ppl_tokens: usize,
    /// Corpus chrF of greedy answers.
    pub chrf: Option<f64>,
    /// Items answered for chrF.
    pub chrf_items: usize,
    /// Embedded decode tokens/s over those answers.
    pub embedded_decode_tokens_per_second: Option<f64>,
    /// Ollama, when reachable.
    pub ollama: Option<OllamaSpeed>,
    /// Errors met (the row is still reported).
    pub errors: Vec<String>,
    /// Seconds spent on the row.
    pub seconds: f64,
}

/// `damage.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DamageReport {
    /// The model source.
    pub source: PathBuf,
    /// A note on what the baseline is.
    pub baseline: String,
    /// Dataset file.
    pub dataset: PathBuf,
    /// Whether Ollama figures were collected, and from where.
    pub ollama: String,
    /// The server the Ollama figures come from (`ollama <version>`, `ollama-compat
    /// (llama.cpp)`; empty when there are none or the report predates the field).
    #[serde(default)]
    pub ollama_engine: String,
    /// Rows, one per type.
    pub rows: Vec<DamageRow>,
}

/// What stops a study.
#[derive(Debug, thiserror::Error)]
pub enum DamageError {
    /// Making a GGUF failed.
    #[error("{path}: {source}")]
    Gguf {
        /// The file being made or read.
        path: PathBuf,
        /// What tb-gguf said.
        #[source]
        source: tb_gguf::Error,
    },
    /// Exporting an HF directory failed.
    #[error("{path}: {source}")]
    Export {
        /// The HF directory.
        path: PathBuf,
        /// What the exporter reported.
        #[source]
        source: tb_model::Error,
    },
    /// Bad settings.
    #[error("{0}")]
    InvalidInput(String),
}

fn gguf_err(path: &Path) -> impl FnOnce(tb_gguf::Error) -> DamageError + '_ {
    move |source| DamageError::Gguf {
        path: path.to_path_buf(),
        source,
    }
}

/// Rewrites `src` with every tensor dequantised to F32 (metadata kept, file type F32).
fn dequantised_copy(src: &Path, dst: &Path) -> Result<(), DamageError> {
    let file = GgufFile::open(src).map_err(gguf_err(src))?;
    let mut md = file.metadata().clone();
    md.set("general.file_type", 0u32);
    let mut w = GgufWriter::new(md).map_err(gguf_err(dst))?;
    for t in file.tensors() {
        w.add_tensor(TensorSpec::new(t.name.clone(), GgmlType::F32, t.ne.clone()))
            .map_err(gguf_err(dst))?;
    }
    w.write_to_file(dst, |_, spec, sink| {
        sink.write_f32(&file.tensor_f32(&spec.name)?)
    })
    .map_err(gguf_err(dst))?;
    Ok(())
}

/// Writes one GGUF per type into `out_dir` from an HF directory or a GGUF. Returns the files
/// and a sentence describing the baseline.
pub fn make_quantized_files(
    source: &Path,
    out_dir: &Path,
    types: &[QuantMix],
    threads: usize,
) -> Result<(Vec<(QuantMix, PathBuf)>, String), DamageError> {
    std::fs::create_dir_all(out_dir)
        .map_err(|e| DamageError::InvalidInput(format!("{}: {e}", out_dir.display())))?;
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let mut files = Vec::new();
    if source.is_dir() {
        for &mix in types {
            let out = out_dir.join(format!("{stem}-{}.gguf", mix.name()));
            let t0 = Instant::now();
            tb_model::gguf_export::export_hf_dir(
                source,
                &out,
                tb_gguf::ExportOptions { mix, threads },
            )
            .map_err(|e| DamageError::Export {
                path: source.to_path_buf(),
                source: e,
            })?;
            tracing::info!(file = %out.display(), seconds = t0.elapsed().as_secs_f64(), "exported {}", mix.name());
            files.push((mix, out));
        }
        return Ok((
            files,
            format!("HF directory {} exported once per type", source.display()),
        ));
    }
    let file = GgufFile::open(source).map_err(gguf_err(source))?;
    let mut quantized: Vec<GgmlType> = file
        .tensors()
        .iter()
        .map(|t| t.ty)
        .filter(|t| t.is_quantized())
        .collect();
    quantized.sort();
    quantized.dedup();
    drop(file);
    let types_found = quantized
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join("/");
    let (base, baseline) = if !quantized.is_empty() {
        let ty = &types_found;
        let f32_copy = out_dir.join(format!("{stem}-dequantised-f32.gguf"));
        tracing::warn!(
            "{} is already quantized ({ty}); the study measures damage relative to its dequantised weights",
            source.display()
        );
        dequantised_copy(source, &f32_copy)?;
        (
            f32_copy,
            format!(
                "{} holds {ty} tensors: every type was made from its dequantised (F32) weights, so F16 is the baseline of those weights, not of the original checkpoint",
                source.display()
            ),
        )
    } else {
        (
            source.to_path_buf(),
            format!("{} re-quantized as llama-quantize would", source.display()),
        )
    };
    for &mix in types {
        let out = out_dir.join(format!("{stem}-{}.gguf", mix.name()));
        let t0 = Instant::now();
        tb_gguf::quantize_gguf(&base, &out, mix, threads).map_err(gguf_err(&base))?;
        tracing::info!(file = %out.display(), seconds = t0.elapsed().as_secs_f64(), "quantized to {}", mix.name());
        files.push((mix, out));
    }
    Ok((files, baseline))
}

fn ollama_speed(
    client: &OllamaClient,
    session: &Session,
    file: &Path,
    quant: &str,
    dataset: &Dataset,
    settings: &DamageSettings,
) -> Result<OllamaSpeed, String> {
    let name = format!("tunebench-damage-{}", quant.to_lowercase());
    let template = OllamaTemplate::for_tokenizer(session.tokenizer());
    create_ollama_model(client, &name, file, None, &template, settings.num_ctx)
        .map_err(|e| e.to_string())?;
    let mut speed = OllamaSpeed {
        prompt_tokens_per_second: None,
        eval_tokens_per_second: None,
        load_seconds: None,
        requests: 0,
    };
    let (mut p, mut e, mut np, mut ne) = (0.0, 0.0, 0usize, 0usize);
    for r in dataset.records.iter().take(settings.ollama_items) {
        let req = ChatRequest {
            model: name.clone(),
            messages: r
                .prompt_messages()
                .iter()
                .map(|m| Message::new(to_role(&m.role), m.content.clone()))
                .collect(),
            options: Some(Options {
                temperature: Some(0.0),
                seed: Some(42),
                num_predict: Some(settings.max_tokens as i32),
                num_ctx: Some(settings.num_ctx),
                ..Options::default()
            }),
            ..ChatRequest::default()
        };
        let resp = client.chat(&req).map_err(|e| e.to_string())?;
        if speed.requests == 0 {
            speed.load_seconds = resp.metrics.load().map(|d| d.as_secs_f64());
        }
        speed.requests += 1;
        if let Some(v) = resp.metrics.prompt_tokens_per_second() {
            p += v;
            np += 1;
        }
        if let Some(v) = resp.metrics.eval_tokens_per_second() {
            e += v;
            ne += 1;
        }
    }
    speed.prompt_tokens_per_second = (np > 0).then(|| p / np as f64);
    speed.eval_tokens_per_second = (ne > 0).then(|| e / ne as f64);
    Ok(speed)
}

/// Scores one file. Errors on single items are recorded in the row.
pub fn score_file(
    quant: &str,
    file: &Path,
    dataset: &Dataset,
    settings: &DamageSettings,
    ollama: Option<&OllamaClient>,
    mut on_progress: impl FnMut(&str),
) -> DamageRow {
    let t0 = Instant::now();
    let mut row = DamageRow {
        quant: quant.to_owned(),
        file: file.to_path_buf(),
        bytes: std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
        weight_types: String::new(),
        perplexity: None,
        top1_accuracy: None,
        ppl_items: 0,
        ppl_tokens: 0,
        chrf: None,
        chrf_items: 0,
        embedded_decode_tokens_per_second: None,
        ollama: None,
        errors: Vec::new(),
        seconds: 0.0,
    };
    let session = match Session::open(file) {
        Ok(s) => s,
        Err(e) => {
            row.errors.push(e.to_string());
            return row;
        }
    };
    row.weight_types = session
        .model()
        .weight_types()
        .iter()
        .map(|(t, n)| format!("{t}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut totals = PerplexityTotals::default();
    for r in dataset
        .records
        .iter()
        .take(settings.ppl_items.unwrap_or(usize::MAX))
    {
        on_progress(&format!("{quant}: perplexity {}", r.id));
        match session.perplexity(r, settings.kernel) {
            Ok(p) => totals.add(&p),
            Err(e) => row.errors.push(e.to_string()),
        }
    }
    row.perplexity = totals.perplexity();
    row.top1_accuracy = totals.top1_accuracy();
    row.ppl_items = totals.items;
    row.ppl_tokens = totals.tokens;
    let gen = GenerateSettings {
        max_tokens: settings.max_tokens,
        kernel: settings.kernel,
        ..GenerateSettings::default()
    };
    let (mut hyps, mut refs) = (Vec::new(), Vec::new());
    let (mut tokens, mut secs) = (0usize, 0f64);
    for r in dataset.records.iter().take(settings.chrf_items) {
        on_progress(&format!("{quant}: answering {}", r.id));
        match session.chat(&r.prompt_messages(), &gen) {
            Ok(c) => {
                if c.tokens.len() > 1 {
                    tokens += c.tokens.len() - 1;
                    secs += c.decode_seconds;
                }
                hyps.push(c.text);
                refs.push(r.reference().to_owned());
            }
            Err(e) => row.errors.push(e.to_string()),
        }
    }
    row.chrf_items = hyps.len();
    row.chrf = (!hyps.is_empty())
        .then(|| Chrf::default().corpus_score(&hyps, &refs).ok())
        .flatten();
    row.embedded_decode_tokens_per_second = (secs > 0.0).then(|| tokens as f64 / secs);
    if let Some(client) = ollama {
        on_progress(&format!("{quant}: Ollama"));
        match ollama_speed(client, &session, file, quant, dataset, settings) {
            Ok(s) => row.ollama = Some(s),
            Err(e) => row.errors.push(format!("Ollama: {e}")),
        }
    }
    row.seconds = t0.elapsed().as_secs_f64();
    row
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "–".into())
}

/// The study as a Markdown table.
pub fn markdown_table(report: &DamageReport) -> String {
    let mut s = String::from(
        "| quant | size MiB | perplexity | top-1 | chrF | embedded tok/s | Ollama prompt tok/s | Ollama decode tok/s |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &report.rows {
        let o = r.ollama.as_ref();
        s.push_str(&format!(
            "| {} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
            r.quant,
            r.bytes as f64 / (1 << 20) as f64,
            opt(r.perplexity, 3),
            opt(r.top1_accuracy.map(|x| 100.0 * x), 1),
            opt(r.chrf, 2),
            opt(r.embedded_decode_tokens_per_second, 1),
            opt(o.and_then(|o| o.prompt_tokens_per_second), 1),
            opt(o.and_then(|o| o.eval_tokens_per_second), 1),
        ));
    }
    s.push_str(&format!(
        "\nPerplexity over {} reference answers ({} tokens, completion only); chrF over {} greedy answers. Baseline: {}. Ollama: {}.\n",
        report.rows.first().map(|r| r.ppl_items).unwrap_or(0),
        report.rows.first().map(|r| r.ppl_tokens).unwrap_or(0),
        report.rows.first().map(|r| r.chrf_items).unwrap_or(0),
        report.baseline,
        report.ollama
    ));
    s
}
