//! `tunebench train peft|unsloth --config FILE [--resume RUN_DIR]`.

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
    /// Continue this run folder (runs/<id>) from its newest checkpoint.
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
        TrainMethod::Unsloth(u) => {
            let config = load_config(&u.common)?;
            let request = tb_unsloth::UnslothRequest {
                config,
                resume: u.common.resume.clone(),
                progress: !u.common.no_progress
                    && std::io::IsTerminal::is_terminal(&std::io::stderr()),
                gguf: u.gguf.clone(),
            };
            let out = tb_unsloth::train_unsloth(&request).context("training (unsloth)")?;
            let s = &out.summary;
            println!("run:            {}", out.run.display());
            println!("adapter:        {}", out.run.join("adapter").display());
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
            if let Some(m) = &out.modelfile {
                println!("modelfile:      {}", m.display());
                println!(
                    "checkpoint -> servable GGUF + Modelfile in {:.1} s; serve with: ollama create NAME -f {}",
                    out.export_s,
                    m.display()
                );
            }
            Ok(())
        }
    }
}
