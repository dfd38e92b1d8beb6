//! What every training command does around the loop: load the base and attach LoRA, load and
//! tokenise the experiment's data, open the run folder, and turn the loop's outcome into the
//! run summary.

use std::path::Path;
use std::time::Instant;

use burn::prelude::Backend;
use tb_data::{tokenize_records, Dataset, Split, TokenizedExample};
use tb_model::weights::{LoadOptions, WeightDtype, WeightSink};
use tb_model::{CausalLm, LoadedModel, TextTokenizer};

use crate::config::ExperimentConfig;
use crate::error::{Error, Result};
use crate::lora::{attach_lora, LoraConfig};
use crate::probe::Machine;
use crate::run_dir::{RunDir, RunSummary, TrainData};
use crate::trainer::LoopOutcome;

/// Tokenised training and eval examples of an experiment, and what tokenisation did to the
/// training set.
pub fn load_examples(
    config: &ExperimentConfig,
    tokenizer: &TextTokenizer,
) -> Result<(Vec<TokenizedExample>, Vec<TokenizedExample>, TrainData)> {
    let d = &config.data;
    let train = Dataset::load(&d.train)?;
    let mut records = train.records;
    if d.limit > 0 && d.limit < records.len() {
        let order = crate::trainer::epoch_order(records.len(), config.train.seed, usize::MAX);
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
    let data = TrainData {
        max_seq_len: d.max_seq_len,
        records: report.records,
        kept: report.kept,
        truncated: report.truncated,
        dropped: report.dropped,
    };
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
    Ok((train, eval, data))
}

/// Record ids of the first `steps` optimizer steps the PEFT-style trainer takes for `config`
/// (per step its micro-batches; see [`crate::trainer::step_batch_ids`]), from the experiment's
/// training set tokenised with its base's tokenizer: what `bench train` hands the HF+PEFT peer
/// so that both train on the same examples in the same padded batches.
pub fn padded_step_ids(config: &ExperimentConfig, steps: usize) -> Result<Vec<Vec<Vec<String>>>> {
    let tokenizer = tb_model::ModelDir::open(&config.model.base)?.tokenizer()?;
    let (train, _, _) = load_examples(config, &tokenizer)?;
    let t = &config.train;
    Ok(crate::trainer::step_batch_ids(
        &train,
        t.seed,
        t.micro_batch,
        t.grad_accum,
        steps,
    ))
}

/// Builds `summary.json` for a finished run (`data`: what tokenisation did to its training set, as
/// [`load_examples`] reported it); `artifacts` are paths inside the run folder (files
/// or folders) to list with their SHA-256.
#[allow(clippy::too_many_arguments)]
pub fn summarize(
    method: &str,
    backend: &str,
    config: &ExperimentConfig,
    run: &RunDir,
    outcome: &LoopOutcome,
    data: TrainData,
    started: Instant,
    artifacts: &[&str],
) -> Result<RunSummary> {
    let mut listed = Vec::new();
    for a in artifacts {
        if run.path.join(a).exists() {
            listed.extend(run.artifacts(a)?);
        }
    }
    let s = &outcome.state;
    Ok(RunSummary {
        method: method.into(),
        run_id: run.id.clone(),
        name: config.name.clone(),
        config_hash: config.hash(),
        base: config.model.base.to_string_lossy().into_owned(),
        backend: backend.into(),
        steps: outcome.steps,
        wall_s: started.elapsed().as_secs_f64(),
        train_s: s.train_s,
        trained_tokens: s.trained_tokens,
        loss_tokens: s.loss_tokens,
        slots: s.slots,
        tokens_per_s: outcome.tokens_per_s,
        loss_tokens_per_s: outcome.loss_tokens_per_s,
        padding_fraction: 1.0 - s.trained_tokens as f64 / s.slots.max(1) as f64,
        peak_rss_mib: outcome.peak_rss_mib,
        final_train_loss: s.last_loss,
        eval_loss: outcome.eval_loss,
        trainable_params: outcome.params.iter().map(|t| t.data.len()).sum(),
        data: Some(data),
        machine: Machine::probe().on_device(config.train.device),
        artifacts: listed,
    })
}

/// Whether a path is an HF model folder (as opposed to a GGUF file).
pub fn is_hf_dir(path: &Path) -> bool {
    path.is_dir() && path.join("config.json").is_file()
}

/// A training session prepared from an experiment: the base with fresh LoRA branches, the
/// tokenised data, the PEFT config the adapter will be saved with, and the run folder.
pub struct Prepared<B: Backend> {
    /// The base model, frozen, with LoRA branches on the targeted projections.
    pub model: CausalLm<B>,
    /// The base's tokenizer and chat template.
    pub tokenizer: TextTokenizer,
    /// Token id used for padding (the end-of-sequence token, else 0).
    pub pad_id: u32,
    /// Tokenised training examples.
    pub train: Vec<TokenizedExample>,
    /// Tokenised eval examples.
    pub eval: Vec<TokenizedExample>,
    /// What tokenisation did to the training set (the run summary's `data`).
    pub data: TrainData,
    /// The adapter's PEFT config (`base_model_name_or_path` is the experiment's base).
    pub lora: LoraConfig,
    /// The run folder: new, or the one being resumed.
    pub run: RunDir,
}

/// Loads the base, tokenises the data, attaches LoRA as `[lora]` says and creates the run
/// folder `<runs_dir>/<utc>-<method>` (or opens `resume`).
///
/// # Errors
/// Whatever loading the model or data, validating `[lora]` or opening the run folder reports.
pub fn prepare<B: Backend>(
    config: &ExperimentConfig,
    method: &str,
    resume: Option<&Path>,
    device: &B::Device,
) -> Result<Prepared<B>> {
    prepare_with(config, method, resume, device, None)
}

/// [`prepare`], loading the base through `sink`: the projections it wants go to it as they are
/// read and stay empty in the model (see [`tb_model::weights::WeightSink`]; the LoRA branches
/// still get their widths).
///
/// # Errors
/// As [`prepare`], plus what the sink reports (naming the tensor).
pub fn prepare_with<B: Backend>(
    config: &ExperimentConfig,
    method: &str,
    resume: Option<&Path>,
    device: &B::Device,
    sink: Option<&mut dyn WeightSink>,
) -> Result<Prepared<B>> {
    let dtype = WeightDtype::parse(&config.model.dtype).ok_or_else(|| Error::ConfigValue {
        field: "model.dtype".into(),
        message: format!("`{}` is not one of f32, bf16", config.model.dtype),
    })?;
    let options = LoadOptions { dtype, sink };
    let (model, tokenizer) =
        LoadedModel::<B>::load_with(&config.model.base, device, options)?.into_parts()?;
    let (train, eval, data) = load_examples(config, &tokenizer)?;
    let base_name = config.model.base.to_string_lossy().into_owned();
    let lora = LoraConfig::from_experiment(&config.lora, Some(base_name));
    lora.validate(Path::new("<experiment [lora]>"))?;
    let (model, modules) = attach_lora(model, &lora, config.train.seed, device)?;
    tracing::info!(method, modules = modules.len(), "LoRA attached");
    let pad_id = tokenizer.eos().map_or(0, |t| t.id);
    let run = match resume {
        Some(dir) => RunDir::open(dir)?,
        None => RunDir::create(&config.train.runs_dir, method, config)?,
    };
    tracing::info!(run = %run.path.display(), "run folder");
    Ok(Prepared {
        model,
        tokenizer,
        pad_id,
        train,
        eval,
        data,
        lora,
        run,
    })
}
