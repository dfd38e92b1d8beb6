//! `tunebench eval-loss --run DIR`: the base model's eval loss on the eval examples the run's
//! own eval loss used (the run's resolved `config.toml`: same base, `max_seq_len`, eval file
//! and `eval_limit`; the PEFT-style trainer's batches and loss without any LoRA branch, on the
//! CPU whatever `[train] device` says), written to `DIR/base_eval_loss.json`
//! ([`tb_train::BaseEvalLoss`]) for the report's "before" column.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::backend::Autodiff;
use clap::Args;
use tb_model::weights::{LoadOptions, WeightDtype};
use tb_model::{CpuBackend, LoadedModel};
use tb_peft::PeftTrainer;
use tb_train::{BaseEvalLoss, ExperimentConfig};

/// Arguments of `eval-loss`.
#[derive(Args)]
pub struct EvalLossArgs {
    /// A finished or unfinished run folder (`runs/<id>`): its `config.toml` says which base
    /// and eval examples.
    #[arg(long)]
    pub run: PathBuf,
}

/// Measures the base model's eval loss for `args.run` and writes `base_eval_loss.json` there.
pub fn run_eval_loss(args: EvalLossArgs) -> Result<()> {
    let config_path = args.run.join("config.toml");
    let config = ExperimentConfig::load(&config_path)
        .with_context(|| format!("reading the config of run {}", args.run.display()))?;
    let dtype = WeightDtype::parse(&config.model.dtype).with_context(|| {
        format!(
            "{}: [model] dtype `{}` is not one of f32, bf16",
            config_path.display(),
            config.model.dtype
        )
    })?;
    type B = Autodiff<CpuBackend>;
    let device = Default::default();
    let options = LoadOptions { dtype, sink: None };
    let (model, tokenizer) = LoadedModel::<B>::load_with(&config.model.base, &device, options)
        .and_then(LoadedModel::into_parts)
        .with_context(|| format!("loading {}", config.model.base.display()))?;
    let (_, eval, _) = tb_train::session::load_examples(&config, &tokenizer)?;
    if eval.is_empty() {
        bail!(
            "{}: [data] eval gives no eval examples: nothing to measure",
            config_path.display()
        );
    }
    let mut trainer = PeftTrainer::<B> {
        model,
        pad_id: tokenizer.eos().map_or(0, |t| t.id),
        device,
        backend_name: "flex".into(),
    };
    let loss = tb_train::eval_loss(&mut trainer, &eval, config.train.micro_batch)?
        .context("the eval examples carry no loss-bearing token")?;
    let record = BaseEvalLoss {
        base: config.model.base.to_string_lossy().into_owned(),
        config_hash: config.hash(),
        eval_examples: eval.len(),
        eval_loss: loss,
    };
    let path = record.write(&args.run)?;
    tracing::info!(file = %path.display(), examples = eval.len(), loss, "base eval loss");
    println!(
        "base eval loss {loss:.4} (perplexity {:.2}) over {} eval examples: {}",
        record.perplexity(),
        eval.len(),
        path.display()
    );
    Ok(())
}
