//! `tunebench train peft|unsloth --config FILE [--resume RUN_DIR]`; `train unsloth` also takes
//! `--gguf TYPES|none`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
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
    /// with GGUF types (the experiment's `[export] quants`, or `--gguf q4_k_m[,q8_0,f16]`) it
    /// also merges, writes the GGUFs and an Ollama Modelfile.
    Unsloth(UnslothArgs),
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
    let common = match &args.method {
        TrainMethod::Peft(m) => m,
        TrainMethod::Unsloth(u) => &u.common,
    };
    let config = load_config(common)?;
    let gguf = match &args.method {
        TrainMethod::Peft(_) => {
            if !config.export.quants.is_empty() {
                tracing::info!(
                    quants = ?config.export.quants,
                    "[export] quants is for `train unsloth`; the PEFT way exports separately (`tunebench merge`, then `tunebench export gguf`)"
                );
            }
            Vec::new()
        }
        TrainMethod::Unsloth(u) => gguf_types(u.gguf.as_deref(), &config)?,
    };
    let request = TrainRequest {
        config,
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
