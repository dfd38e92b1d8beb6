//! `tunebench data check DATASET --model DIR`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tb_data::stats::LengthSummary;
use tb_data::{tokenize_records, Dataset, Truncation};
use tb_model::{CpuBackend, ModelDir};

/// Arguments of `data check`.
#[derive(Args)]
pub struct DataCheckArgs {
    /// JSONL dataset.
    pub dataset: PathBuf,
    /// Model directory whose tokenizer and chat template to use.
    #[arg(long)]
    pub model: PathBuf,
    /// Longest example in tokens.
    #[arg(long, default_value_t = 1024)]
    pub max_seq_len: usize,
    /// What to do with longer examples.
    #[arg(long, value_enum, default_value = "right")]
    pub truncation: TruncationArg,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--truncation` values.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum TruncationArg {
    /// Keep the first max-seq-len tokens.
    Right,
    /// Leave long examples out.
    Drop,
}

/// Validates and reports.
pub fn run_data_check(args: DataCheckArgs) -> Result<()> {
    let dataset = Dataset::load(&args.dataset)?;
    let tokenizer = ModelDir::open(&args.model)
        .and_then(|d| d.tokenizer())
        .or_else(|_| {
            tb_model::LoadedModel::<CpuBackend>::load(&args.model, &Default::default())
                .and_then(|m| m.into_parts())
                .map(|(_, tokenizer)| tokenizer)
        })
        .with_context(|| format!("loading the tokenizer of {}", args.model.display()))?;
    let truncation = match args.truncation {
        TruncationArg::Right => Truncation::Right,
        TruncationArg::Drop => Truncation::Drop,
    };
    let (_, report) = tokenize_records(&tokenizer, &dataset.records, args.max_seq_len, truncation)?;
    let mut categories: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &dataset.records {
        *categories.entry(r.category.as_str()).or_default() += 1;
    }
    let lengths = LengthSummary::of(&report.lengths);
    let coverage = report.completion_tokens as f64 / report.total_tokens.max(1) as f64;
    if args.json {
        let doc = serde_json::json!({
            "dataset": args.dataset, "records": report.records, "kept": report.kept,
            "truncated": report.truncated, "dropped": report.dropped,
            "token_lengths": lengths, "completion_tokens": report.completion_tokens,
            "total_tokens": report.total_tokens, "mask_coverage": coverage,
            "categories": categories,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("dataset      {}", args.dataset.display());
    println!(
        "records      {} (kept {}, truncated {}, dropped {})",
        report.records, report.kept, report.truncated, report.dropped
    );
    if let Some(l) = lengths {
        println!(
            "tokens       min {} / median {} / mean {:.1} / p95 {} / max {} (limit {})",
            l.min, l.median, l.mean, l.p95, l.max, args.max_seq_len
        );
    }
    println!(
        "loss mask    {} of {} tokens carry loss ({:.1}%)",
        report.completion_tokens,
        report.total_tokens,
        100.0 * coverage
    );
    println!("categories");
    for (c, n) in categories {
        println!("  {c:<20} {n}");
    }
    Ok(())
}
