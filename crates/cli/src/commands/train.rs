//! `tunebench train peft|unsloth --config FILE [--resume RUN_DIR]`; `train unsloth` also takes
//! `--gguf TYPES|none`; `train hf-peft --config FILE` trains with the HF+PEFT peer
//! (`benches/peers/hf_peft.py`) into the same kind of run folder.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use tb_report::peer_run::{PeerTrainPlan, PeerWatcher};
use tb_train::{ExperimentConfig, StepMetrics, TrainOutcome, TrainRequest};

/// Arguments of `train`.
#[derive(Args)]
pub struct TrainArgs {
    #[command(subcommand)]
    method: TrainMethod,
}

#[derive(Subcommand)]
enum TrainMethod {
    /// PEFT-style LoRA: autodiff, padded batches, PEFT adapter; merge separately.
    Peft(MethodArgs),
    /// Unsloth-style LoRA: fused ops with hand-written backward, packed batches, chunked loss;
    /// with GGUF types (the experiment's `[export] quants`, or `--gguf q4_k_m[,q8_0,f16]`) it
    /// also merges, writes the GGUFs and an Ollama Modelfile.
    Unsloth(UnslothArgs),
    /// Real HF transformers + PEFT (PyTorch on the CPU, `benches/peers/hf_peft.py`): the
    /// experiment's full schedule, metrics, PEFT's own adapter and the run summary in a run
    /// folder like the other methods'. No resume.
    HfPeft(HfPeftArgs),
}

/// Options of `train hf-peft`.
#[derive(Args)]
pub struct HfPeftArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Python interpreter for the peer (it moves itself into its venv, target/pyenv-hf-peer).
    #[arg(long, default_value = "python3")]
    python: String,
    /// The HF+PEFT peer script.
    #[arg(long, default_value = "benches/peers/hf_peft.py")]
    peer_script: PathBuf,
}

/// Options of `train unsloth`.
#[derive(Args)]
pub struct UnslothArgs {
    #[command(flatten)]
    common: MethodArgs,
    /// GGUF types to write after training (comma-separated: q4_k_m, q4_0, q8_0, f16, bf16,
    /// f32), replacing the experiment's `[export] quants`; `none` writes no GGUF (training only,
    /// as `bench train` measures it). Without it: the experiment's list (empty or no `[export]`
    /// section: no GGUF).
    #[arg(long, value_delimiter = ',', value_name = "TYPES")]
    gguf: Option<Vec<String>>,
}

/// The GGUF types `train unsloth` writes: `--gguf` when given (`none`: nothing), else the
/// experiment's `[export] quants`.
fn gguf_types(flag: Option<&[String]>, config: &ExperimentConfig) -> Result<Vec<String>> {
    let Some(flag) = flag else {
        return Ok(config.export.quants.clone());
    };
    let is_none = |q: &String| q.trim().eq_ignore_ascii_case("none");
    match flag {
        [only] if is_none(only) => Ok(Vec::new()),
        _ if flag.iter().any(is_none) => {
            bail!(
                "--gguf {}: `none` cannot be combined with GGUF types",
                flag.join(",")
            )
        }
        _ => Ok(flag.to_vec()),
    }
}

/// Options of the tunebench trainers.
#[derive(Args)]
pub struct MethodArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Continue this run folder (runs/ID) from its newest checkpoint.
    #[arg(long)]
    resume: Option<PathBuf>,
}

/// Options every training method takes.
#[derive(Args)]
pub struct RunArgs {
    /// Experiment file (TOML), e.g. configs/smollm2-135m.toml.
    #[arg(long)]
    config: PathBuf,
    /// Override `train.max_steps`.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Override `train.runs_dir`.
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// Override `data.eval_limit` (eval examples used for the eval loss; 0 = all).
    #[arg(long)]
    eval_limit: Option<usize>,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Print the outcome (run folder, adapter, summary, GGUFs, Modelfile) as one JSON line
    /// instead of the human-readable lines: what scripts and `demo`/`bench` read.
    #[arg(long)]
    json: bool,
}

fn load_config(args: &RunArgs, resume: Option<&Path>) -> Result<ExperimentConfig> {
    let mut config = match resume {
        // A resumed run uses the config it was started with.
        Some(run) => ExperimentConfig::load(run.join("config.toml"))
            .with_context(|| format!("reading the config of run {}", run.display()))?,
        None => ExperimentConfig::load(&args.config)
            .with_context(|| format!("reading {}", args.config.display()))?,
    };
    if resume.is_none() {
        if let Some(n) = args.max_steps {
            config.train.max_steps = n;
        }
        if let Some(dir) = &args.runs_dir {
            config.train.runs_dir = dir.clone();
        }
        if let Some(n) = args.eval_limit {
            config.data.eval_limit = n;
        }
        config.validate().with_context(|| {
            format!("{} with the command-line overrides", args.config.display())
        })?;
    }
    Ok(config)
}

/// Runs `train`.
pub fn run_train(args: TrainArgs) -> Result<()> {
    match &args.method {
        TrainMethod::Peft(m) => run_trainer(m, None),
        TrainMethod::Unsloth(u) => run_trainer(&u.common, Some(u.gguf.as_deref())),
        TrainMethod::HfPeft(h) => run_hf_peft(h),
    }
}

/// One of tunebench's trainers: PEFT-style (`gguf` is `None`) or Unsloth-style (`gguf`: its
/// `--gguf` flag, when given).
fn run_trainer(common: &MethodArgs, gguf: Option<Option<&[String]>>) -> Result<()> {
    let config = load_config(&common.run, common.resume.as_deref())?;
    let types = match gguf {
        None => {
            if !config.export.quants.is_empty() {
                tracing::info!(
                    quants = ?config.export.quants,
                    "[export] quants is for `train unsloth`; the PEFT way exports separately (`tunebench merge`, then `tunebench export gguf`)"
                );
            }
            Vec::new()
        }
        Some(flag) => gguf_types(flag, &config)?,
    };
    let request = TrainRequest {
        config,
        resume: common.resume.clone(),
        progress: show_progress(&common.run),
        gguf: types,
    };
    let outcome = match gguf {
        None => tb_peft::train_peft(&request).context("training (peft)")?,
        Some(_) => tb_unsloth::train_unsloth(&request).context("training (unsloth)")?,
    };
    print_result(&outcome, common.run.json)
}

/// Whether to draw the progress bar: not hidden by `--no-progress`, and stderr is a terminal.
fn show_progress(args: &RunArgs) -> bool {
    !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// The outcome as one JSON line (`--json`) or as lines for a reader.
fn print_result(outcome: &TrainOutcome, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(outcome)?);
    } else {
        print_outcome(outcome);
    }
    Ok(())
}

/// `train hf-peft`: the peer trains in a run folder tb-report creates; the trainers' progress
/// bar follows the metrics it appends, its stderr passes through above the bar.
fn run_hf_peft(args: &HfPeftArgs) -> Result<()> {
    let config = load_config(&args.run, None)?;
    if !config.export.quants.is_empty() {
        tracing::info!(
            quants = ?config.export.quants,
            "[export] quants is for `train unsloth`; merge a PEFT adapter with `tunebench merge`, then `tunebench export gguf`"
        );
    }
    let total = planned_steps(&config);
    let plan = PeerTrainPlan {
        config,
        python: args.python.clone(),
        script: args.peer_script.clone(),
    };
    let bar = tb_train::progress_bar(total, 0, show_progress(&args.run));
    bar.set_prefix(tb_report::bench::HF_PEFT);
    let mut watcher = PeerProgress { bar: bar.clone() };
    let outcome = tb_report::train_hf_peft(&plan, &mut watcher).context("training (hf-peft)")?;
    bar.finish();
    print_result(&outcome, args.run.json)
}

/// Steps the run will take: `max_steps`, else epochs over the training records in batches of
/// `micro_batch × grad_accum` (assuming tokenisation drops none; the bar grows if it is short).
fn planned_steps(config: &ExperimentConfig) -> usize {
    let t = &config.train;
    if t.max_steps > 0 {
        return t.max_steps;
    }
    let records = tb_data::Dataset::load(&config.data.train).map_or(0, |d| d.records.len());
    let records = match config.data.limit {
        0 => records,
        n => records.min(n),
    };
    t.epochs
        * records
            .div_ceil(t.micro_batch.max(1))
            .div_ceil(t.grad_accum.max(1))
}

/// The progress of a peer run: the bar (hidden when not drawn) and the peer's stderr.
struct PeerProgress {
    bar: ProgressBar,
}

impl PeerWatcher for PeerProgress {
    fn step(&mut self, m: &StepMetrics) {
        if self.bar.length().is_some_and(|n| n < m.step as u64) {
            self.bar.set_length(m.step as u64);
        }
        self.bar.set_position(m.step as u64);
        self.bar
            .set_message(tb_train::progress_message(m.loss, m.tokens_per_s));
    }

    fn stderr_line(&mut self, line: &str) {
        if self.bar.is_hidden() {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        } else {
            self.bar.println(line);
        }
    }
}

/// The outcome for a reader.
fn print_outcome(out: &TrainOutcome) {
    let s = &out.summary;
    println!("run:            {}", out.run.display());
    println!("adapter:        {}", out.adapter.display());
    println!(
        "steps {}  trained tokens {} ({} loss-bearing)  {:.1} tokens/s  peak RSS {:.0} MiB  padding {:.1}%",
        s.steps,
        s.trained_tokens,
        s.loss_tokens,
        s.tokens_per_s,
        s.peak_rss_mib,
        100.0 * s.padding_fraction
    );
    match s.eval_loss {
        Some(e) => println!(
            "final train loss {:.4}  eval loss {e:.4}",
            s.final_train_loss
        ),
        None => println!("final train loss {:.4}", s.final_train_loss),
    }
    for g in &out.ggufs {
        println!("gguf:           {}", g.display());
    }
    if let (Some(m), Some(seconds)) = (&out.modelfile, out.export_s) {
        println!("modelfile:      {}", m.display());
        println!(
            "checkpoint -> servable GGUF + Modelfile in {seconds:.1} s; serve with: ollama create NAME -f {}",
            m.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::gguf_types;
    use tb_train::ExperimentConfig;

    fn config(quants: &str) -> ExperimentConfig {
        ExperimentConfig::parse(&format!(
            "[model]\nbase = \"m\"\n[data]\ntrain = \"t.jsonl\"\n[train]\nmax_steps = 1\n{quants}"
        ))
        .unwrap()
    }

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn the_experiment_list_applies_without_the_flag() {
        let c = config("[export]\nquants = [\"q8_0\", \"f16\"]\n");
        assert_eq!(gguf_types(None, &c).unwrap(), list(&["q8_0", "f16"]));
        // No [export] section, or an empty list: no GGUF.
        assert!(gguf_types(None, &config("")).unwrap().is_empty());
        let empty = config("[export]\nquants = []\n");
        assert!(gguf_types(None, &empty).unwrap().is_empty());
    }

    #[test]
    fn the_flag_replaces_the_list_and_none_clears_it() {
        let c = config("[export]\nquants = [\"q8_0\"]\n");
        let flag = list(&["f16"]);
        assert_eq!(gguf_types(Some(&flag), &c).unwrap(), flag);
        for none in ["none", "NONE", " none "] {
            assert!(gguf_types(Some(&list(&[none])), &c).unwrap().is_empty());
        }
        let mixed = list(&["none", "q4_k_m"]);
        let e = gguf_types(Some(&mixed), &c).unwrap_err().to_string();
        assert!(e.contains("none") && e.contains("q4_k_m"), "{e}");
    }
}
