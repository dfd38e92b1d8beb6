//! The training loop both methods share: data order, gradient accumulation, clipping, AdamW,
//! the LR schedule, metrics, eval loss, checkpoints and resume, progress. A method plugs in
//! through [`Trainer`]: how batches are built and how one micro-batch's loss and gradients are
//! computed.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tb_data::{Batch, TokenizedExample};

use crate::checkpoint::{resume_point, save_checkpoint, LoopState};
use crate::config::ExperimentConfig;
use crate::error::{Error, Result};
use crate::optimizer::{clip_global_norm, AdamW, NamedTensor};
use crate::probe::{peak_rss_mib, rss_mib};
use crate::run_dir::{RunDir, StepMetrics};
use crate::schedule::LrSchedule;

/// Loss and gradients of one micro-batch.
#[derive(Debug)]
pub struct MicroStep {
    /// Summed (unscaled) cross-entropy over the batch's loss-bearing tokens.
    pub loss_sum: f64,
    /// Gradients of `loss_sum · loss_scale`, in [`Trainer::trainable`] order.
    pub grads: Vec<NamedTensor>,
}

/// What a training method provides to the shared loop.
pub trait Trainer {
    /// `peft` or `unsloth`.
    fn method(&self) -> &'static str;
    /// Backend name for reports (e.g. `flex`).
    fn backend(&self) -> String;
    /// Trainable tensors with their current values, in a fixed order (PEFT key names).
    fn trainable(&self) -> Vec<NamedTensor>;
    /// Replaces the trainable values (same order and shapes as [`Trainer::trainable`]).
    fn set_trainable(&mut self, values: &[NamedTensor]) -> Result<()>;
    /// Groups examples (already in training order) into micro-batches.
    fn batches(&self, examples: &[&TokenizedExample], micro_batch: usize) -> Vec<Batch>;
    /// Forward and backward of one micro-batch; `seed` seeds dropout for this micro-batch.
    fn micro_step(&mut self, batch: &Batch, loss_scale: f32, seed: u64) -> Result<MicroStep>;
    /// Summed cross-entropy of a batch without gradients (dropout off).
    fn eval_loss_sum(&mut self, batch: &Batch) -> Result<f64>;
}

/// How to run the loop.
#[derive(Debug, Clone, Default)]
pub struct LoopOptions {
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Continue the run in this folder from its newest checkpoint.
    pub resume: bool,
}

/// What the loop measured.
#[derive(Debug, Clone)]
pub struct LoopOutcome {
    /// Final trainable tensors.
    pub params: Vec<NamedTensor>,
    /// Optimizer steps done.
    pub steps: usize,
    /// Counters at the end.
    pub state: LoopState,
    /// Real tokens per second after warm-up.
    pub tokens_per_s: f64,
    /// Loss-bearing tokens per second after warm-up.
    pub loss_tokens_per_s: f64,
    /// Eval loss at the end.
    pub eval_loss: Option<f64>,
    /// Peak RSS, MiB.
    pub peak_rss_mib: f64,
}

/// Training order of an epoch: a seeded shuffle (same seed, same order; different per epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mix = seed
        ^ (epoch as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = rand::rngs::StdRng::seed_from_u64(mix);
    order.shuffle(&mut rng);
    order
}

/// The micro-batches of optimizer step `step`: `grad_accum` consecutive ones of its epoch (fewer
/// at an epoch's end). Every epoch holds as many micro-batches as the first.
fn step_micro_batches<T>(epochs: &[Vec<T>], step: usize, grad_accum: usize) -> &[T] {
    let accum = grad_accum.max(1);
    let steps_per_epoch = epochs[0].len().div_ceil(accum);
    let epoch = &epochs[step / steps_per_epoch];
    let start = (step % steps_per_epoch) * accum;
    &epoch[start..(start + accum).min(epoch.len())]
}

/// Record ids of the first `steps` optimizer steps of a run whose micro-batches are
/// `micro_batch` consecutive examples of each epoch's [`epoch_order`] (the PEFT-style
/// trainer's padded batching): per step its micro-batches, as the training loop takes them
/// (`step_micro_batches`). A peer that trains on these sees the same batches.
pub fn step_batch_ids(
    examples: &[TokenizedExample],
    seed: u64,
    micro_batch: usize,
    grad_accum: usize,
    steps: usize,
) -> Vec<Vec<Vec<String>>> {
    if examples.is_empty() || steps == 0 {
        return Vec::new();
    }
    let epoch = |e: usize| -> Vec<Vec<String>> {
        epoch_order(examples.len(), seed, e)
            .chunks(micro_batch.max(1))
            .map(|c| c.iter().map(|&i| examples[i].id.clone()).collect())
            .collect()
    };
    let first = epoch(0);
    let steps_per_epoch = first.len().div_ceil(grad_accum.max(1));
    let mut epochs = vec![first];
    epochs.extend((1..steps.div_ceil(steps_per_epoch)).map(epoch));
    (0..steps)
        .map(|k| step_micro_batches(&epochs, k, grad_accum).to_vec())
        .collect()
}

/// Micro-batches of every epoch needed for the run, and the number of optimizer steps.
pub fn plan_steps<T: Trainer + ?Sized>(
    trainer: &T,
    config: &ExperimentConfig,
    examples: &[TokenizedExample],
) -> Result<(Vec<Vec<Batch>>, usize)> {
    let t = &config.train;
    let epoch_batches = |epoch: usize| {
        let order = epoch_order(examples.len(), t.seed, epoch);
        let ordered: Vec<&TokenizedExample> = order.iter().map(|&i| &examples[i]).collect();
        trainer.batches(&ordered, t.micro_batch)
    };
    let first = epoch_batches(0);
    if first.is_empty() {
        return Err(Error::ConfigValue {
            field: "data.train".into(),
            message: "no training examples left after tokenisation".into(),
        });
    }
    let steps_per_epoch = first.len().div_ceil(t.grad_accum);
    let total = if t.max_steps > 0 {
        t.max_steps
    } else {
        t.epochs * steps_per_epoch
    };
    let epochs_needed = total.div_ceil(steps_per_epoch);
    let mut epochs = vec![first];
    for e in 1..epochs_needed {
        epochs.push(epoch_batches(e));
    }
    Ok((epochs, total))
}

fn step_seed(seed: u64, step: usize, micro: usize) -> u64 {
    seed.wrapping_mul(0x100_0000_01B3)
        ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (micro as u64).wrapping_add(0xD1B5_4A32_D192_ED03)
}

/// Mean eval cross-entropy per loss-bearing token over the given examples.
pub fn eval_loss<T: Trainer + ?Sized>(
    trainer: &mut T,
    examples: &[TokenizedExample],
    micro_batch: usize,
) -> Result<Option<f64>> {
    if examples.is_empty() {
        return Ok(None);
    }
    let refs: Vec<&TokenizedExample> = examples.iter().collect();
    let (mut sum, mut count) = (0.0, 0usize);
    for batch in trainer.batches(&refs, micro_batch) {
        sum += trainer.eval_loss_sum(&batch)?;
        count += batch.loss_tokens;
    }
    Ok((count > 0).then(|| sum / count as f64))
}

/// The trainers' progress bar on stderr (hidden unless `show`): `total` steps, `done` already;
/// callers set its prefix to the method and its message to the step's loss and tokens/s.
pub fn progress_bar(total: usize, done: usize, show: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(total as u64),
        if show {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    let style = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} steps  {msg}  elapsed {elapsed}  eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_position(done as u64);
    bar
}

/// The progress bar's message after a step: its loss and tokens/s.
pub fn progress_message(loss: f64, tokens_per_s: f64) -> String {
    format!("loss {loss:.4}  {tokens_per_s:.0} tok/s")
}

/// Continues from the run's newest usable checkpoint (params, optimizer, counters; the trainer
/// gets the params), or from step 0 when it has none; the metrics log is cut back to that step.
fn restore<T: Trainer + ?Sized>(
    trainer: &mut T,
    run: &RunDir,
    params: &mut Vec<NamedTensor>,
    optimizer: &mut AdamW,
    state: &mut LoopState,
) -> Result<()> {
    match resume_point(&run.path, params, &state.config_hash)? {
        Some((dir, restored)) => {
            *params = restored.params;
            *optimizer = restored.optimizer;
            *state = restored.state;
            trainer.set_trainable(params)?;
            tracing::info!(step = state.step, checkpoint = %dir.display(), "resuming");
        }
        None => {
            tracing::warn!(run = %run.path.display(), "no checkpoint yet: starting from step 0");
        }
    }
    run.truncate_metrics(state.step)
}

/// Forward and backward over the micro-batches of optimizer step `step` (0-based): the mean
/// loss per loss-bearing token and the gradients summed over the micro-batches, each scaled by
/// one over the step's loss-bearing tokens (so accumulation equals one large batch).
fn accumulate<T: Trainer + ?Sized>(
    trainer: &mut T,
    params: &[NamedTensor],
    micro: &[&Batch],
    seed: u64,
    step: usize,
) -> Result<(f64, Vec<NamedTensor>)> {
    let loss_tokens: usize = micro.iter().map(|b| b.loss_tokens).sum();
    let scale = 1.0 / loss_tokens.max(1) as f32;
    let mut grads: Vec<NamedTensor> = params
        .iter()
        .map(|p| NamedTensor::zeros(p.name.clone(), p.shape.clone()))
        .collect();
    let mut loss_sum = 0.0;
    for (m, batch) in micro.iter().enumerate() {
        let out = trainer.micro_step(batch, scale, step_seed(seed, step, m))?;
        loss_sum += out.loss_sum;
        if out.grads.len() != grads.len() {
            return Err(Error::Method(format!(
                "trainer returned {} gradients for {} trainable tensors",
                out.grads.len(),
                grads.len()
            )));
        }
        for (acc, g) in grads.iter_mut().zip(&out.grads) {
            acc.data.iter_mut().zip(&g.data).for_each(|(a, b)| *a += b);
        }
    }
    let loss = loss_sum / loss_tokens.max(1) as f64;
    if !loss.is_finite() {
        return Err(Error::NotFinite {
            step: step + 1,
            what: "the loss".into(),
        });
    }
    Ok((loss, grads))
}

/// Runs (or resumes) training in `run`, writing metrics and checkpoints; returns the outcome.
pub fn run_training<T: Trainer + ?Sized>(
    trainer: &mut T,
    config: &ExperimentConfig,
    train: &[TokenizedExample],
    eval: &[TokenizedExample],
    run: &RunDir,
    options: &LoopOptions,
) -> Result<LoopOutcome> {
    let t = &config.train;
    let (epochs, total) = plan_steps(trainer, config, train)?;
    let steps_per_epoch = epochs[0].len().div_ceil(t.grad_accum);
    let schedule = LrSchedule::new(&config.optimizer, total);
    let mut params = trainer.trainable();
    let mut optimizer = AdamW::new((&config.optimizer).into(), &params);
    let mut state = LoopState {
        step: 0,
        config_hash: config.hash(),
        train_s: 0.0,
        trained_tokens: 0,
        loss_tokens: 0,
        slots: 0,
        measured_tokens: 0,
        measured_loss_tokens: 0,
        measured_s: 0.0,
        last_loss: f64::NAN,
    };
    if options.resume {
        restore(trainer, run, &mut params, &mut optimizer, &mut state)?;
    }
    let bar = progress_bar(total, state.step, options.progress);
    bar.set_prefix(trainer.method());
    let mut eval_result = None;
    while state.step < total {
        let step = state.step;
        let micro: Vec<&Batch> = step_micro_batches(&epochs, step, t.grad_accum)
            .iter()
            .collect();
        let loss_tokens: usize = micro.iter().map(|b| b.loss_tokens).sum();
        let tokens: usize = micro.iter().map(|b| b.real_tokens).sum();
        let slots: usize = micro.iter().map(|b| b.rows * b.seq_len).sum();
        let started = Instant::now();
        let (loss, mut grads) = accumulate(trainer, &params, &micro, t.seed, step)?;
        let grad_norm = clip_global_norm(&mut grads, config.optimizer.max_grad_norm);
        if !grad_norm.is_finite() {
            return Err(Error::NotFinite {
                step: step + 1,
                what: "the gradient norm".into(),
            });
        }
        let lr = schedule.lr(step);
        optimizer.update(&mut params, &grads, lr)?;
        trainer.set_trainable(&params)?;
        let seconds = started.elapsed().as_secs_f64();
        state.step += 1;
        state.train_s += seconds;
        state.trained_tokens += tokens;
        state.loss_tokens += loss_tokens;
        state.slots += slots;
        state.last_loss = loss;
        if step >= t.warmup_measure_steps || total <= t.warmup_measure_steps {
            state.measured_tokens += tokens;
            state.measured_loss_tokens += loss_tokens;
            state.measured_s += seconds;
        }
        let mut eval_now = None;
        if t.eval_every > 0 && state.step.is_multiple_of(t.eval_every) && state.step < total {
            eval_now = eval_loss(trainer, eval, t.micro_batch)?;
        }
        if state.step == total {
            eval_now = eval_loss(trainer, eval, t.micro_batch)?;
            eval_result = eval_now;
        }
        if state.step.is_multiple_of(t.log_every) || state.step == total || eval_now.is_some() {
            run.append_metrics(&StepMetrics {
                step: state.step,
                epoch: state.step as f64 / steps_per_epoch as f64,
                loss,
                lr,
                grad_norm,
                tokens,
                loss_tokens,
                slots,
                tokens_per_s: tokens as f64 / seconds.max(1e-9),
                elapsed_s: state.train_s,
                rss_mib: rss_mib().unwrap_or(0.0),
                eval_loss: eval_now,
            })?;
        }
        if t.checkpoint_every > 0
            && state.step.is_multiple_of(t.checkpoint_every)
            && state.step < total
        {
            save_checkpoint(&run.path, &params, &optimizer, &state)?;
        }
        bar.set_position(state.step as u64);
        bar.set_message(progress_message(loss, tokens as f64 / seconds.max(1e-9)));
    }
    if eval_result.is_none() && state.step == total && !eval.is_empty() {
        eval_result = eval_loss(trainer, eval, t.micro_batch)?;
    }
    bar.finish();
    let tokens_per_s = state.measured_tokens as f64 / state.measured_s.max(1e-9);
    let loss_tokens_per_s = state.measured_loss_tokens as f64 / state.measured_s.max(1e-9);
    Ok(LoopOutcome {
        params,
        steps: state.step,
        tokens_per_s,
        loss_tokens_per_s,
        eval_loss: eval_result,
        peak_rss_mib: peak_rss_mib().unwrap_or(0.0),
        state,
    })
}

/// Path of the adapter folder inside a run.
pub fn adapter_dir(run: &RunDir) -> PathBuf {
    run.path.join("adapter")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(id: &str) -> TokenizedExample {
        TokenizedExample {
            id: id.into(),
            input_ids: vec![1, 2],
            loss_mask: vec![false, true],
            truncated: false,
        }
    }

    /// Steps take `grad_accum` micro-batches of consecutive examples of each epoch's order, a
    /// short last micro-batch and a short last step at an epoch's end, then the next epoch's
    /// order: the grouping `run_training` uses for padded batches.
    #[test]
    fn step_batch_ids_follow_the_epoch_orders() {
        let examples: Vec<_> = (0..10).map(|i| example(&format!("e{i}"))).collect();
        let steps = step_batch_ids(&examples, 7, 3, 3, 4);
        let ids = |epoch: usize, from: usize, to: usize| -> Vec<String> {
            epoch_order(10, 7, epoch)[from..to]
                .iter()
                .map(|&i| format!("e{i}"))
                .collect()
        };
        assert_eq!(steps.len(), 4);
        assert_eq!(steps[0], vec![ids(0, 0, 3), ids(0, 3, 6), ids(0, 6, 9)]);
        assert_eq!(steps[1], vec![ids(0, 9, 10)]);
        assert_eq!(steps[2], vec![ids(1, 0, 3), ids(1, 3, 6), ids(1, 6, 9)]);
        assert_eq!(steps[3], vec![ids(1, 9, 10)]);
        assert_ne!(
            ids(0, 0, 10),
            ids(1, 0, 10),
            "epochs are shuffled differently"
        );
        assert!(step_batch_ids(&[], 7, 3, 1, 4).is_empty());
    }
}
