//! `tunebench train peft --config FILE [--resume RUN_DIR]`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tb_train::ExperimentConfig;

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
}

/// Options shared by the training methods.
#[derive(Args)]
pub struct MethodArgs {
    /// Experiment file (TOML), e.g. configs/smollm2-135m.toml.
    #[arg(long)]
    config: PathBuf,
    /// Continue this run folder (runs/<id>) from its newest checkpoint.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Override `train.max_steps`.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Override `train.runs_dir`.
    #[arg(long)]
    runs_dir: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
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
        config.validate()?;
    }
    Ok(config)
}

/// Runs `train`.
pub fn run_train(args: TrainArgs) -> Result<()> {
    match args.method {
        TrainMethod::Peft(m) => {
            let config = load_config(&m)?;
            let request = tb_peft::TrainRequest {
                config,
                resume: m.resume.clone(),
                progress: !m.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let (dir, s) = tb_peft::train_peft(&request).context("training (peft)")?;
            println!("run:            {}", dir.display());
            println!("adapter:        {}", dir.join("adapter").display());
            println!(
                "steps {}  trained tokens {} ({} loss-bearing)  {:.1} tokens/s  peak RSS {:.0} MiB",
                s.steps, s.trained_tokens, s.loss_tokens, s.tokens_per_s, s.peak_rss_mib
            );
            match s.eval_loss {
                Some(e) => println!(
                    "final train loss {:.4}  eval loss {e:.4}",
                    s.final_train_loss
                ),
                None => println!("final train loss {:.4}", s.final_train_loss),
            }
            Ok(())
        }
    }
}
