//! `tunebench train peft|unsloth --config FILE [--resume RUN_DIR]`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tb_train::{ExperimentConfig, TrainOutcome, TrainRequest};

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
    /// `--gguf q4_k_m[,q8_0,f16]` also merges, writes the GGUFs and an Ollama Modelfile.
    Unsloth(UnslothArgs),
}

/// Options of `train unsloth`.
#[derive(Args)]
pub struct UnslothArgs {
    #[command(flatten)]
    common: MethodArgs,
    /// GGUF types to write after training (comma-separated: q4_k_m, q4_0, q8_0, f16, bf16, f32).
    #[arg(long, value_delimiter = ',')]
    gguf: Vec<String>,
}

/// Options shared by the training methods.
#[derive(Args)]
pub struct MethodArgs {
    /// Experiment file (TOML), e.g. configs/smollm2-135m.toml.
    #[arg(long)]
    config: PathBuf,
    /// Continue this run folder (runs/ID) from its newest checkpoint.
    #[arg(long)]
    resume: Option<PathBuf>,
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

fn load_config(args: &MethodArgs) -> Result<ExperimentConfig> {
    let mut config = match &args.resume {
        // A resumed run uses the config it was started with.
        Some(run) => ExperimentConfig::load(run.join("config.toml"))
            .with_context(|| format!("reading the config of run {}", run.display()))?,
        None => ExperimentConfig::load(&args.config)
            .with_context(|| format!("reading {}", args.config.display()))?,
    };
    if args.resume.is_none() {
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
    let (common, gguf) = match &args.method {
        TrainMethod::Peft(m) => (m, Vec::new()),
        TrainMethod::Unsloth(u) => (&u.common, u.gguf.clone()),
    };
    let request = TrainRequest {
        config: load_config(common)?,
        resume: common.resume.clone(),
        progress: !common.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        gguf,
    };
    let outcome = match &args.method {
        TrainMethod::Peft(_) => tb_peft::train_peft(&request).context("training (peft)")?,
        TrainMethod::Unsloth(_) => {
            tb_unsloth::train_unsloth(&request).context("training (unsloth)")?
        }
    };
    if common.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        print_outcome(&outcome);
    }
    Ok(())
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
