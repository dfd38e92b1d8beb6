//! `tunebench eval --model NAME=FILE.gguf ... [--adapter NAME=LORA.gguf ...] --dataset FILE --engine auto|ollama|embedded
//! [--config FILE] [--judge MODEL] [--per-split N] [--limit N] --out DIR|--resume DIR` and
//! `tunebench eval damage ...`.

mod damage;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::builder::RangedU64ValueParser;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tb_eval::engine::Kernel;
use tb_eval::evaluation::{
    resolve_engine, run_evaluation, select_items, EngineChoice, EngineKind, Error as EvalError,
    ModelSpec, RunSettings,
};
use tb_train::config::EvalSection;
use tb_train::ExperimentConfig;

/// Arguments of `eval`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: Option<EvalCommand>,
    /// Boxed: the arguments of a run are many, and `Command` holds one variant per subcommand.
    #[command(flatten)]
    run: Box<RunArgs>,
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
    /// A llama.cpp LoRA adapter GGUF for the --model named NAME, as NAME=LORA.gguf (repeat for
    /// several models): that model is evaluated as its GGUF plus the adapter (Ollama: the
    /// Modelfile's ADAPTER; the embedded engine applies it at run time).
    #[arg(long = "adapter", value_name = "NAME=LORA.gguf", value_parser = parse_adapter)]
    adapters: Vec<(String, PathBuf)>,
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
    /// Experiment file whose `[eval]` section (max_new_tokens, num_ctx) gives the defaults of
    /// --max-tokens and --num-ctx.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Most new tokens per answer [default: the --config file's `[eval] max_new_tokens`, else
    /// 256].
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Context window given to Ollama [default: the --config file's `[eval] num_ctx`, else
    /// 4096].
    #[arg(long)]
    num_ctx: Option<u32>,
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
    /// At most N items of each split (held-out, paraphrase, items without a split), spread over
    /// the split's categories: the first item of each category in file order, then the second,
    /// ... (answered in dataset order).
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    per_split: Option<usize>,
    /// Only the first N items (of the --per-split selection when given).
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
    Ok(ModelSpec::new(name, path))
}

fn parse_adapter(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NAME=LORA.gguf, got `{s}`")),
    }
}

/// Gives each `--adapter NAME=FILE` to the `--model` named NAME: an unknown name, a second
/// adapter for one model, or a path that is not a file is an error naming the flag.
fn attach_adapters(models: &mut [ModelSpec], adapters: Vec<(String, PathBuf)>) -> Result<()> {
    for (name, path) in adapters {
        let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
        let Some(m) = models.iter_mut().find(|m| m.name == name) else {
            bail!(
                "--adapter {name}={}: no --model is named `{name}` (models: {})",
                path.display(),
                names.join(", ")
            );
        };
        if let Some(first) = &m.adapter {
            bail!(
                "--adapter {name}={}: model `{name}` already has the adapter {}",
                path.display(),
                first.display()
            );
        }
        if !path.is_file() {
            bail!("--adapter {name}={}: not a file", path.display());
        }
        m.adapter = Some(path);
    }
    Ok(())
}

/// A duration for a reader: `45s`, `3m 07s`, `1h 05m`.
pub(crate) fn duration_text(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Answer length and context window of an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most new tokens per answer.
    pub max_tokens: usize,
    /// Ollama's `num_ctx`.
    pub num_ctx: u32,
}

/// The limits an evaluation runs with: each flag given on the command line, else the
/// experiment file's `[eval]` value (`max_new_tokens`, `num_ctx`) when `--config` is given, else
/// the command's own default.
pub(crate) fn resolve_limits(
    max_tokens: Option<usize>,
    num_ctx: Option<u32>,
    config: Option<&(PathBuf, EvalSection)>,
    defaults: Limits,
) -> Result<Limits> {
    let from_file = match config {
        Some((path, eval)) => Some(Limits {
            max_tokens: eval.max_new_tokens,
            num_ctx: u32::try_from(eval.num_ctx).with_context(|| {
                format!(
                    "{}: config field `eval.num_ctx`: {} does not fit Ollama's num_ctx",
                    path.display(),
                    eval.num_ctx
                )
            })?,
        }),
        None => None,
    }
    .unwrap_or(defaults);
    Ok(Limits {
        max_tokens: max_tokens.unwrap_or(from_file.max_tokens),
        num_ctx: num_ctx.unwrap_or(from_file.num_ctx),
    })
}

/// The `[eval]` section of `--config FILE`, when given.
pub(crate) fn eval_section(config: Option<&PathBuf>) -> Result<Option<(PathBuf, EvalSection)>> {
    let Some(path) = config else {
        return Ok(None);
    };
    let c = ExperimentConfig::load(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some((path.clone(), c.eval)))
}

pub(crate) fn kernel(scalar: bool) -> Kernel {
    if scalar {
        Kernel::Scalar
    } else {
        Kernel::Auto
    }
}

/// Progress over the items of an evaluation: an indicatif bar (items n/N, rate, ETA) when
/// stderr is a terminal, else a `tracing` line at most every [`LOG_EVERY`] and at the end.
pub(crate) struct ItemProgress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    started: Instant,
    logged: Instant,
}

/// How often a non-terminal progress line is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl ItemProgress {
    /// Progress over `total` items.
    pub(crate) fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{elapsed_precise} [{bar:20}] {pos}/{len} items, eta {eta} {wide_msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            total,
            done: 0,
            started: now,
            logged: now,
        }
    }

    /// Shows `msg` as the work in hand; `advance` counts one more item done.
    pub(crate) fn update(&mut self, msg: &str, advance: bool) {
        if advance {
            self.done += 1;
        }
        match &self.bar {
            Some(bar) => {
                bar.set_message(msg.to_owned());
                bar.set_position(self.done);
            }
            None if advance && (self.logged.elapsed() >= LOG_EVERY || self.done == self.total) => {
                self.logged = Instant::now();
                let elapsed = self.started.elapsed().as_secs_f64();
                let left = self.total.saturating_sub(self.done) as f64;
                tracing::info!(
                    "{}/{} items, eta {} ({msg})",
                    self.done,
                    self.total,
                    duration_text(elapsed / self.done as f64 * left)
                );
            }
            None => {}
        }
    }

    /// Clears the bar.
    pub(crate) fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Runs `eval` (or `eval damage`).
pub fn run_eval(args: EvalArgs) -> Result<()> {
    if let Some(EvalCommand::Damage(a)) = args.command {
        return damage::run_damage(a);
    }
    let a = *args.run;
    let Some(dataset_path) = a.dataset else {
        bail!("--dataset is required");
    };
    let (out, resume) = match (a.out, a.resume) {
        (Some(out), _) => (out, false),
        (None, Some(dir)) => (dir, true),
        (None, None) => bail!("--out DIR (or --resume DIR) is required"),
    };
    let mut models = a.models;
    for m in &models {
        if !m.gguf.is_file() {
            bail!("model `{}`: {} is not a file", m.name, m.gguf.display());
        }
    }
    attach_adapters(&mut models, a.adapters)?;
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
    let limits = resolve_limits(
        a.max_tokens,
        a.num_ctx,
        eval_section(a.config.as_ref())?.as_ref(),
        Limits {
            max_tokens: 256,
            num_ctx: 4096,
        },
    )?;
    tracing::info!(
        max_tokens = limits.max_tokens,
        num_ctx = limits.num_ctx,
        "answer limits"
    );
    let settings = RunSettings {
        max_tokens: limits.max_tokens,
        num_ctx: limits.num_ctx,
        seed: a.seed,
        perplexity: a.perplexity,
        judge: a.judge,
        per_split: a.per_split,
        limit: a.limit,
        kernel: kernel(a.scalar),
        resume,
    };
    let n_items = select_items(&dataset, &settings)
        .context("selecting the items")?
        .len();
    let mut progress = ItemProgress::new((n_items * models.len()) as u64);
    let summary = run_evaluation(&models, &dataset, &engine, &settings, &out, |item| {
        progress.update(&format!("{} {}", item.model, item.id), true);
    })
    .map_err(|e| match e {
        EvalError::ExistingResults { .. } => anyhow!(
            "{e}: pass --resume {} to continue that evaluation, or choose another --out",
            out.display()
        ),
        e => anyhow::Error::new(e).context(format!("evaluating into {}", out.display())),
    })?;
    progress.finish();
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
            load_seconds = ?m.load_seconds.map(|v| (v * 1000.0).round() / 1000.0),
            failed = m.failed,
            "done"
        );
    }
    tracing::info!(
        out = %out.display(),
        engine = %summary.engine_name,
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{attach_adapters, duration_text, resolve_limits, Limits};
    use tb_eval::evaluation::ModelSpec;
    use tb_train::config::EvalSection;

    const DEFAULTS: Limits = Limits {
        max_tokens: 256,
        num_ctx: 4096,
    };

    fn file(max_new_tokens: usize, num_ctx: usize) -> (PathBuf, EvalSection) {
        (
            PathBuf::from("exp.toml"),
            EvalSection {
                max_new_tokens,
                num_ctx,
            },
        )
    }

    #[test]
    fn without_a_config_the_flags_or_the_command_defaults_apply() {
        assert_eq!(
            resolve_limits(None, None, None, DEFAULTS).unwrap(),
            DEFAULTS
        );
        let l = resolve_limits(Some(9), Some(100), None, DEFAULTS).unwrap();
        assert_eq!((l.max_tokens, l.num_ctx), (9, 100));
    }

    #[test]
    fn the_config_gives_the_defaults_and_each_flag_overrides_its_key() {
        let c = file(77, 1234);
        let l = resolve_limits(None, None, Some(&c), DEFAULTS).unwrap();
        assert_eq!((l.max_tokens, l.num_ctx), (77, 1234));
        let l = resolve_limits(Some(5), None, Some(&c), DEFAULTS).unwrap();
        assert_eq!((l.max_tokens, l.num_ctx), (5, 1234));
        let l = resolve_limits(None, Some(512), Some(&c), DEFAULTS).unwrap();
        assert_eq!((l.max_tokens, l.num_ctx), (77, 512));
    }

    #[test]
    fn a_num_ctx_beyond_u32_is_an_error_naming_file_and_field() {
        let c = file(8, u32::MAX as usize + 1);
        let e = format!(
            "{:#}",
            resolve_limits(None, None, Some(&c), DEFAULTS).unwrap_err()
        );
        assert!(e.contains("exp.toml") && e.contains("eval.num_ctx"), "{e}");
        // An explicit --num-ctx still needs a file that makes sense.
        assert!(resolve_limits(None, Some(1), Some(&c), DEFAULTS).is_err());
    }

    #[test]
    fn adapters_go_to_the_model_of_their_name_and_unknown_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let lora = dir.path().join("lora.gguf");
        std::fs::write(&lora, b"x").unwrap();
        let mut models = vec![ModelSpec::new("a", "a.gguf"), ModelSpec::new("b", "b.gguf")];
        attach_adapters(&mut models, vec![("b".into(), lora.clone())]).unwrap();
        assert_eq!(
            (&models[0].adapter, &models[1].adapter),
            (&None, &Some(lora.clone()))
        );

        let e = attach_adapters(&mut models, vec![("c".into(), lora.clone())]).unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("--adapter c=") && e.contains("no --model is named `c`"),
            "{e}"
        );
        let e = attach_adapters(&mut models, vec![("b".into(), lora.clone())]).unwrap_err();
        assert!(e.to_string().contains("already has the adapter"), "{e}");
        let missing = dir.path().join("missing.gguf");
        let e = attach_adapters(&mut models, vec![("a".into(), missing)]).unwrap_err();
        assert!(e.to_string().contains("missing.gguf: not a file"), "{e}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(4.4), "4s");
        assert_eq!(duration_text(187.0), "3m 07s");
        assert_eq!(duration_text(3900.0), "1h 05m");
        assert_eq!(duration_text(f64::NAN), "?");
    }
}
