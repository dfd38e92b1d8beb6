//! `tunebench eval damage --model DIR|FILE.gguf --dataset FILE --out DIR [--config FILE]`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tb_eval::damage::{
    make_quantized_files, markdown_table, score_file, DamageReport, DamageSettings,
};
use tb_eval::evaluation::{resolve_engine, EngineChoice, EngineKind};
use tb_gguf::fsio::write_atomic;
use tb_gguf::QuantMix;

/// Arguments of `eval damage`.
#[derive(Args)]
pub struct DamageArgs {
    /// HF model directory, or a GGUF (F32/F16/BF16 is re-quantized; a quantized one is first
    /// dequantised to F32).
    #[arg(long)]
    model: PathBuf,
    /// Evaluation JSONL.
    #[arg(long)]
    dataset: PathBuf,
    /// Output directory (the GGUFs, damage.json, damage.md).
    #[arg(long)]
    out: PathBuf,
    /// Quant types, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "f16,q8_0,q4_k_m,q4_0", value_parser = crate::commands::export::parse_mix)]
    types: Vec<QuantMix>,
    /// Items scored for perplexity (default: all).
    #[arg(long)]
    ppl_items: Option<usize>,
    /// Items answered greedily for chrF (0 = skip).
    #[arg(long, default_value_t = 10)]
    chrf_items: usize,
    /// Experiment file whose `[eval]` section (max_new_tokens, num_ctx) gives the defaults of
    /// --max-tokens and --num-ctx.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Most new tokens per answer [default: the --config file's `[eval] max_new_tokens`, else
    /// 128].
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Ask Ollama (OLLAMA_HOST) for tokens/s when it answers.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    ollama: bool,
    /// Requests per type for Ollama's speed.
    #[arg(long, default_value_t = 3)]
    ollama_items: usize,
    /// Context window given to Ollama [default: the --config file's `[eval] num_ctx`, else
    /// 4096].
    #[arg(long)]
    num_ctx: Option<u32>,
    /// Quantization threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Use the plain scalar dot product.
    #[arg(long)]
    scalar: bool,
}

/// Runs the damage study and prints the table.
pub fn run_damage(a: DamageArgs) -> Result<()> {
    let limits = super::resolve_limits(
        a.max_tokens,
        a.num_ctx,
        super::eval_section(a.config.as_ref())?.as_ref(),
        super::Limits {
            max_tokens: 128,
            num_ctx: 4096,
        },
    )?;
    let dataset = tb_data::Dataset::load(&a.dataset)
        .with_context(|| format!("loading {}", a.dataset.display()))?;
    let (files, baseline) = make_quantized_files(&a.model, &a.out, &a.types, a.threads)
        .with_context(|| format!("making GGUFs from {}", a.model.display()))?;
    let engine = if a.ollama {
        resolve_engine(EngineChoice::Auto, None).context("probing Ollama")?
    } else {
        resolve_engine(EngineChoice::Embedded, None)?
    };
    let client = (engine.kind == EngineKind::Ollama)
        .then_some(engine.client.as_ref())
        .flatten();
    tracing::info!("Ollama: {}", engine.reason);
    let settings = DamageSettings {
        types: a.types.clone(),
        ppl_items: a.ppl_items,
        chrf_items: a.chrf_items,
        max_tokens: limits.max_tokens,
        threads: a.threads,
        kernel: super::kernel(a.scalar),
        num_ctx: limits.num_ctx,
        ollama_items: a.ollama_items,
    };
    let per_type = dataset.records.len().min(a.ppl_items.unwrap_or(usize::MAX))
        + dataset.records.len().min(a.chrf_items);
    let mut progress = super::ItemProgress::new((per_type * files.len()) as u64);
    let mut rows = Vec::new();
    for (mix, file) in &files {
        let row = score_file(mix.name(), file, &dataset, &settings, client, |msg| {
            progress.update(msg, !msg.ends_with("Ollama"));
        });
        for e in &row.errors {
            tracing::warn!(quant = mix.name(), "{e}");
        }
        tracing::info!(quant = mix.name(), perplexity = ?row.perplexity, chrf = ?row.chrf, seconds = row.seconds, "scored");
        rows.push(row);
    }
    progress.finish();
    let report = DamageReport {
        source: a.model.clone(),
        baseline,
        dataset: a.dataset.clone(),
        ollama: engine.reason.clone(),
        ollama_engine: client.map(|_| engine.name.clone()).unwrap_or_default(),
        rows,
    };
    let table = markdown_table(&report);
    write_atomic(
        &a.out.join("damage.json"),
        &serde_json::to_vec_pretty(&report)?,
    )?;
    write_atomic(&a.out.join("damage.md"), table.as_bytes())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{table}")?;
    let errors: usize = report.rows.iter().map(|r| r.errors.len()).sum();
    if errors > 0 {
        anyhow::bail!("{errors} errors during the study (see damage.json)");
    }
    Ok(())
}
