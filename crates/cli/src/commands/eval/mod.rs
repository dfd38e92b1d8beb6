//! `tunebench eval --model NAME=FILE.gguf ... --dataset FILE --engine auto|ollama|embedded
//! [--judge MODEL] --out DIR|--resume DIR` and `tunebench eval damage ...`.

mod damage;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tb_eval::engine::Kernel;
use tb_eval::evaluation::{
    resolve_engine, run_evaluation, EngineChoice, EngineKind, Error as EvalError, ModelSpec,
    RunSettings,
};

/// Arguments of `eval`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: Option<EvalCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Quantization damage study: F16/Q8_0/Q4_K_M/Q4_0 of the same weights, scored alike.
    Damage(damage::DamageArgs),
}

/// Engine choice on the command line.
#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    /// Ollama if `/api/version` answers at OLLAMA_HOST, else embedded.
    Auto,
    /// Ollama only.
    Ollama,
    /// The embedded GGUF engine.
    Embedded,
}

#[derive(Args)]
struct RunArgs {
    /// A model as NAME=FILE.gguf (repeat for several).
    #[arg(long = "model", required = true, value_parser = parse_model)]
    models: Vec<ModelSpec>,
    /// Evaluation JSONL (tb-data schema).
    #[arg(long, required = true)]
    dataset: Option<PathBuf>,
    /// Which engine answers.
    #[arg(long, value_enum, default_value = "auto")]
    engine: EngineArg,
    /// Output directory (results.jsonl, summary.json); one that already holds results is refused.
    #[arg(long, conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the evaluation in DIR (an earlier --out, e.g. one that was killed): items already
    /// answered with the same model file and settings are kept, the rest (failed ones included)
    /// are answered.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Most new tokens per answer.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Context window given to Ollama.
    #[arg(long, default_value_t = 4096)]
    num_ctx: u32,
    /// Seed given to Ollama (answers are greedy, temperature 0).
    #[arg(long, default_value_t = 42)]
    seed: i64,
    /// Also score reference answers teacher-forced (embedded engine): perplexity, top-1.
    #[arg(long)]
    perplexity: bool,
    /// Have MODEL, a model on the same Ollama, grade every answer 1–5 against its reference
    /// (LLM-as-judge; needs the Ollama engine).
    #[arg(long, value_name = "MODEL")]
    judge: Option<String>,
    /// Only the first N items.
    #[arg(long)]
    limit: Option<usize>,
    /// Use the plain scalar dot product in the embedded engine.
    #[arg(long)]
    scalar: bool,
}

fn parse_model(s: &str) -> Result<ModelSpec, String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=FILE.gguf, got `{s}`"))?;
    if name.is_empty() || path.is_empty() {
        return Err(format!("expected NAME=FILE.gguf, got `{s}`"));
    }
    Ok(ModelSpec {
        name: name.to_owned(),
        gguf: PathBuf::from(path),
    })
}

pub(crate) fn kernel(scalar: bool) -> Kernel {
    if scalar {
        Kernel::Scalar
    } else {
        Kernel::Auto
    }
}

pub(crate) fn bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} items ({per_sec}) {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Runs `eval` (or `eval damage`).
pub fn run_eval(args: EvalArgs) -> Result<()> {
    if let Some(EvalCommand::Damage(a)) = args.command {
        return damage::run_damage(a);
    }
    let a = args.run;
    let Some(dataset_path) = a.dataset else {
        bail!("--dataset is required");
    };
    let (out, resume) = match (a.out, a.resume) {
        (Some(out), _) => (out, false),
        (None, Some(dir)) => (dir, true),
        (None, None) => bail!("--out DIR (or --resume DIR) is required"),
    };
    for m in &a.models {
        if !m.gguf.is_file() {
            bail!("model `{}`: {} is not a file", m.name, m.gguf.display());
        }
    }
    let dataset = tb_data::Dataset::load(&dataset_path)
        .with_context(|| format!("loading {}", dataset_path.display()))?;
    let choice = match a.engine {
        EngineArg::Auto => EngineChoice::Auto,
        EngineArg::Ollama => EngineChoice::Ollama,
        EngineArg::Embedded => EngineChoice::Embedded,
    };
    let engine = resolve_engine(choice, None).context("choosing the engine")?;
    match engine.kind {
        EngineKind::Ollama => tracing::info!("engine: Ollama ({})", engine.reason),
        EngineKind::Embedded => tracing::info!("engine: embedded ({})", engine.reason),
    }
    let settings = RunSettings {
        max_tokens: a.max_tokens,
        num_ctx: a.num_ctx,
        seed: a.seed,
        perplexity: a.perplexity,
        judge: a.judge,
        limit: a.limit,
        kernel: kernel(a.scalar),
        resume,
    };
    let n_items = dataset.records.len().min(a.limit.unwrap_or(usize::MAX));
    let progress = bar((n_items * a.models.len()) as u64);
    let summary = run_evaluation(&a.models, &dataset, &engine, &settings, &out, |item| {
        progress.set_message(format!("{} {}", item.model, item.id));
        progress.inc(1);
    })
    .map_err(|e| match e {
        EvalError::ExistingResults { .. } => anyhow!(
            "{e}: pass --resume {} to continue that evaluation, or choose another --out",
            out.display()
        ),
        e => anyhow::Error::new(e).context(format!("evaluating into {}", out.display())),
    })?;
    progress.finish_and_clear();
    for m in &summary.models {
        tracing::info!(
            model = %m.name,
            chrf = ?m.chrf.map(|v| (v * 100.0).round() / 100.0),
            bleu = ?m.bleu.map(|v| (v * 100.0).round() / 100.0),
            rouge_l = ?m.rouge_l.map(|v| (v * 1000.0).round() / 1000.0),
            exact_match = ?m.exact_match,
            judge_score = ?m.judge_score.map(|v| (v * 100.0).round() / 100.0),
            perplexity = ?m.perplexity.map(|v| (v * 1000.0).round() / 1000.0),
            eval_tokens_per_second = ?m.eval_tokens_per_second.map(|v| (v * 10.0).round() / 10.0),
            failed = m.failed,
            "done"
        );
    }
    tracing::info!(
        out = %out.display(),
        engine = ?summary.engine,
        resumed = summary.resumed_items,
        "wrote results.jsonl and summary.json"
    );
    if summary.failed_items > 0 {
        bail!(
            "{} of {} items failed (see {})",
            summary.failed_items,
            summary.total_items,
            out.join("results.jsonl").display()
        );
    }
    Ok(())
}
