//! What every training command does around the loop: load and tokenise the experiment's data,
//! and turn the loop's outcome into the run summary.

use std::path::Path;
use std::time::Instant;

use tb_data::{tokenize_records, Dataset, Split, TokenizedExample};
use tb_model::TextTokenizer;

use crate::config::ExperimentConfig;
use crate::error::Result;
use crate::probe::Machine;
use crate::run_dir::{RunDir, RunSummary};
use crate::trainer::LoopOutcome;

/// Tokenised training and eval examples of an experiment.
pub fn load_examples(
    config: &ExperimentConfig,
    tokenizer: &TextTokenizer,
) -> Result<(Vec<TokenizedExample>, Vec<TokenizedExample>)> {
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

/// Builds `summary.json` for a finished run; `artifacts` are paths inside the run folder (files
/// or folders) to list with their SHA-256.
pub fn summarize(
    method: &str,
    backend: &str,
    config: &ExperimentConfig,
    run: &RunDir,
    outcome: &LoopOutcome,
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
        machine: Machine::probe(),
        artifacts: listed,
    })
}

/// Whether a path is an HF model folder (as opposed to a GGUF file).
pub fn is_hf_dir(path: &Path) -> bool {
    path.is_dir() && path.join("config.json").is_file()
}
