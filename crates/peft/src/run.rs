//! `tunebench train peft`: load the base, tokenise the dataset, attach LoRA, run the shared
//! loop, save the PEFT adapter and the run summary.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::backend::Autodiff;
use tb_data::{tokenize_records, Dataset, Split, TokenizedExample};
use tb_model::{CpuBackend, LoadedModel, TextTokenizer};
use tb_train::{run_training, ExperimentConfig, LoopOptions, Machine, RunDir, RunSummary, Trainer};

use tb_train::lora::{attach_lora, save_adapter, LoraConfig};

use crate::error::Result;
use crate::trainer::PeftTrainer;

/// What to run.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The experiment.
    pub config: ExperimentConfig,
    /// Continue this run folder from its newest checkpoint instead of starting a new run.
    pub resume: Option<PathBuf>,
    /// Draw a progress bar.
    pub progress: bool,
}

/// Tokenised training and eval examples of an experiment.
pub fn load_examples(
    config: &ExperimentConfig,
    tokenizer: &TextTokenizer,
) -> Result<(Vec<TokenizedExample>, Vec<TokenizedExample>)> {
    let d = &config.data;
    let train = Dataset::load(&d.train)?;
    let mut records = train.records;
    if d.limit > 0 && d.limit < records.len() {
        let order = tb_train::trainer::epoch_order(records.len(), config.train.seed, usize::MAX);
        let mut picked: Vec<_> = order[..d.limit].to_vec();
        picked.sort_unstable();
        records = picked.into_iter().map(|i| records[i].clone()).collect();
    }
    let (train, report) = tokenize_records(tokenizer, &records, d.max_seq_len, d.truncation)?;
    tracing::info!(
        kept = report.kept,
        truncated = report.truncated,
        dropped = report.dropped,
        tokens = report.total_tokens,
        loss_tokens = report.completion_tokens,
        "training set tokenised"
    );
    let eval = match &d.eval {
        None => Vec::new(),
        Some(path) => {
            let ds = Dataset::load(path)?;
            let mut held: Vec<_> = ds
                .records
                .into_iter()
                .filter(|r| r.split != Some(Split::Paraphrase))
                .collect();
            if d.eval_limit > 0 {
                held.truncate(d.eval_limit);
            }
            tokenize_records(tokenizer, &held, d.max_seq_len, d.truncation)?.0
        }
    };
    Ok((train, eval))
}

/// Trains a PEFT-style LoRA on the CPU backend and returns the run folder and its summary.
///
/// Dropout draws from the backend's process-wide RNG, reseeded from the experiment seed before
/// every micro-batch: one training per process is deterministic; two trainings running at the
/// same time in one process are not.
pub fn train_peft(request: &TrainRequest) -> Result<(PathBuf, RunSummary)> {
    type B = Autodiff<CpuBackend>;
    let started = Instant::now();
    let config = &request.config;
    let device = Default::default();
    let loaded = LoadedModel::<B>::load(&config.model.base, &device)?;
    let (train, eval) = load_examples(config, &loaded.tokenizer)?;
    let base_name = config.model.base.to_string_lossy().into_owned();
    let lora = LoraConfig::from_experiment(&config.lora, Some(base_name.clone()));
    lora.validate(Path::new("<experiment [lora]>"))?;
    let (model, modules) = attach_lora(loaded.model, &lora, config.train.seed, &device)?;
    tracing::info!(modules = modules.len(), "LoRA attached");
    let pad_id = loaded.tokenizer.eos().map_or(0, |t| t.id);
    let mut trainer = PeftTrainer::<B> {
        model,
        pad_id,
        device,
        backend_name: "flex".into(),
    };
    let run = match &request.resume {
        Some(dir) => RunDir::open(dir)?,
        None => RunDir::create(&config.train.runs_dir, "peft", config)?,
    };
    tracing::info!(run = %run.path.display(), "run folder");
    let options = LoopOptions {
        progress: request.progress,
        resume: request.resume.is_some(),
    };
    let outcome = run_training(&mut trainer, config, &train, &eval, &run, &options)?;
    let adapter_dir = run.path.join("adapter");
    save_adapter(&adapter_dir, &lora, &outcome.params)?;
    let trainable_params = outcome.params.iter().map(|t| t.data.len()).sum();
    let summary = RunSummary {
        method: trainer.method().into(),
        run_id: run.id.clone(),
        name: config.name.clone(),
        config_hash: config.hash(),
        base: base_name,
        backend: trainer.backend(),
        steps: outcome.steps,
        wall_s: started.elapsed().as_secs_f64(),
        train_s: outcome.state.train_s,
        trained_tokens: outcome.state.trained_tokens,
        loss_tokens: outcome.state.loss_tokens,
        slots: outcome.state.slots,
        tokens_per_s: outcome.tokens_per_s,
        loss_tokens_per_s: outcome.loss_tokens_per_s,
        padding_fraction: 1.0
            - outcome.state.trained_tokens as f64 / outcome.state.slots.max(1) as f64,
        peak_rss_mib: outcome.peak_rss_mib,
        final_train_loss: outcome.state.last_loss,
        eval_loss: outcome.eval_loss,
        trainable_params,
        machine: Machine::probe(),
        artifacts: run.artifacts("adapter")?,
    };
    run.write_summary(&summary)?;
    Ok((run.path.clone(), summary))
}
