//! `tunebench train hf-peft`: a full training run of the HF+PEFT peer (`benches/peers/hf_peft.py`
//! in its `--out RUN_DIR` mode), with the same run folder and outcome as tunebench's trainers.
//!
//! Rust owns the folder and its typed files: it creates `runs/<utc>-hf-peft/` with the resolved
//! `config.toml` ([`RunDir::create`]), runs the script on that `config.toml`, follows the
//! [`StepMetrics`] lines the script appends to `metrics.jsonl`, reads the script's totals from
//! [`PEER_RESULT_FILE`] ([`PeerRunResult`]) and writes `summary.json` ([`RunSummary`], the
//! machine probed here). The script writes the adapter with PEFT's own `save_pretrained` into
//! `adapter/`, which `tunebench merge` and `export lora-gguf` read like any PEFT adapter.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tb_train::{
    ExperimentConfig, Machine, MetricsTail, RunDir, RunSummary, StepMetrics, TrainData,
    TrainOutcome,
};

use crate::bench::{HF_PEFT, PEER_BACKEND};
use crate::error::{Error, Result};
use crate::fsio::read_json;

/// The script's totals file inside the run folder.
pub const PEER_RESULT_FILE: &str = "peer_result.json";

/// Lines of the script's stderr kept for the error when it fails.
const STDERR_TAIL: usize = 30;

/// How often the metrics file is read while the script runs.
const POLL: Duration = Duration::from_millis(250);

/// What the script writes to [`PEER_RESULT_FILE`] at the end of a full run: the totals
/// `summary.json` needs, counted as tunebench's trainers count them. Every field is required
/// (`eval_loss` may be `null`), so a renamed one is an error naming it; fields the script adds
/// later are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRunResult {
    /// Optimizer steps done.
    pub steps: usize,
    /// Seconds spent in training steps (eval excluded).
    pub train_s: f64,
    /// Real tokens trained.
    pub trained_tokens: usize,
    /// Loss-bearing tokens trained.
    pub loss_tokens: usize,
    /// Batch slots including padding.
    pub slots: usize,
    /// Real tokens per second after `[train] warmup_measure_steps`.
    pub tokens_per_s: f64,
    /// Loss-bearing tokens per second after the warm-up steps.
    pub loss_tokens_per_s: f64,
    /// Peak RSS of the script's process (`ru_maxrss`), MiB.
    pub peak_rss_mib: f64,
    /// Mean loss of the last step.
    pub final_train_loss: f64,
    /// Eval loss at the end (`null`: no eval set).
    pub eval_loss: Option<f64>,
    /// Trainable (LoRA) parameters.
    pub trainable_params: usize,
    /// Torch version.
    pub torch: String,
    /// Torch threads.
    pub threads: usize,
    /// What tokenisation did to the training set.
    pub data: TrainData,
}

impl PeerRunResult {
    /// Reads `run/peer_result.json`.
    ///
    /// # Errors
    /// [`Error::Io`], or [`Error::Parse`] naming the file and (in serde's message) the missing
    /// or malformed field.
    pub fn load(run: &Path) -> Result<Self> {
        read_json(&run.join(PEER_RESULT_FILE))
    }
}

/// How to run the peer.
#[derive(Debug, Clone)]
pub struct PeerTrainPlan {
    /// The experiment, validated, with the command line's overrides applied (what the run's
    /// `config.toml` holds and the script trains).
    pub config: ExperimentConfig,
    /// Python interpreter (the script moves itself into its venv).
    pub python: String,
    /// `benches/peers/hf_peft.py`.
    pub script: PathBuf,
}

/// What the caller sees while the peer trains (a progress bar, log lines).
pub trait PeerWatcher {
    /// The run folder exists and the script is starting.
    fn started(&mut self, _run: &Path) {}
    /// A metrics line the script appended.
    fn step(&mut self, _metrics: &StepMetrics) {}
    /// A line the script wrote to its stderr.
    fn stderr_line(&mut self, _line: &str) {}
}

/// A watcher that sees nothing.
#[derive(Debug, Default)]
pub struct NoWatcher;

impl PeerWatcher for NoWatcher {}

/// Refuses what the peer cannot train as the experiment asks.
fn check_supported(config: &ExperimentConfig) -> Result<()> {
    if !config.model.base_quant.is_none() {
        return Err(Error::Input(format!(
            "model.base_quant = \"{}\": the HF+PEFT peer trains a dense base; set base_quant = \"none\"",
            config.model.base_quant
        )));
    }
    if config.train.device != tb_train::DeviceKind::Cpu {
        return Err(Error::Input(format!(
            "train.device = \"{}\": the HF+PEFT peer trains with PyTorch on the CPU ({PEER_BACKEND})",
            config.train.device.name()
        )));
    }
    Ok(())
}

/// Trains the experiment with the HF+PEFT peer in a new run folder and returns the outcome
/// (`summary.json` written).
///
/// # Errors
/// The run folder cannot be created; the script cannot start or exits with a failure
/// ([`Error::Peer`], with the end of its stderr); its result file is missing or malformed
/// ([`Error::Parse`] naming file and field); it wrote no adapter ([`Error::Invalid`]).
pub fn train_hf_peft(plan: &PeerTrainPlan, watcher: &mut dyn PeerWatcher) -> Result<TrainOutcome> {
    let started = Instant::now();
    let config = &plan.config;
    check_supported(config)?;
    let run = RunDir::create(&config.train.runs_dir, HF_PEFT, config)?;
    tracing::info!(run = %run.path.display(), "run folder");
    watcher.started(&run.path);
    let mut cmd = Command::new(&plan.python);
    cmd.arg(&plan.script)
        .arg("--config")
        .arg(run.path.join("config.toml"))
        .arg("--out")
        .arg(&run.path);
    run_script(&mut cmd, &run.path, watcher)?;
    let result = PeerRunResult::load(&run.path)?;
    let adapter = run.path.join("adapter");
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        if !adapter.join(file).is_file() {
            return Err(Error::Invalid {
                path: adapter.join(file),
                message: "the peer finished without writing it (PEFT's save_pretrained)".into(),
            });
        }
    }
    tracing::info!(torch = %result.torch, threads = result.threads, "HF+PEFT peer done");
    let summary = summarize(config, &run, &result, started)?;
    run.write_summary(&summary)?;
    Ok(TrainOutcome {
        run: run.path.clone(),
        adapter,
        summary,
        ggufs: Vec::new(),
        modelfile: None,
        export_s: None,
    })
}

/// `summary.json` of a finished peer run.
fn summarize(
    config: &ExperimentConfig,
    run: &RunDir,
    r: &PeerRunResult,
    started: Instant,
) -> Result<RunSummary> {
    Ok(RunSummary {
        method: HF_PEFT.into(),
        run_id: run.id.clone(),
        name: config.name.clone(),
        config_hash: config.hash(),
        base: config.model.base.to_string_lossy().into_owned(),
        backend: PEER_BACKEND.into(),
        steps: r.steps,
        wall_s: started.elapsed().as_secs_f64(),
        train_s: r.train_s,
        trained_tokens: r.trained_tokens,
        loss_tokens: r.loss_tokens,
        slots: r.slots,
        tokens_per_s: r.tokens_per_s,
        loss_tokens_per_s: r.loss_tokens_per_s,
        padding_fraction: 1.0 - r.trained_tokens as f64 / r.slots.max(1) as f64,
        peak_rss_mib: r.peak_rss_mib,
        final_train_loss: r.final_train_loss,
        eval_loss: r.eval_loss,
        trainable_params: r.trainable_params,
        data: Some(r.data),
        machine: Machine::probe(),
        artifacts: run.artifacts("adapter")?,
    })
}

/// Lines of a child's pipe, read on their own thread.
fn line_reader(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs the script to its end, passing its stderr lines and new metrics lines to `watcher`.
fn run_script(cmd: &mut Command, run: &Path, watcher: &mut dyn PeerWatcher) -> Result<()> {
    let shown = format!("{cmd:?}");
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Peer {
            command: shown.clone(),
            message: format!("could not start: {e}"),
        })?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(Error::Peer {
            command: shown,
            message: "started without its stdout and stderr pipes".into(),
        });
    };
    let (out, err) = (line_reader(out), line_reader(err));
    let mut metrics = MetricsTail::new(run.join("metrics.jsonl"));
    let mut tail: Vec<String> = Vec::new();
    let status = loop {
        let exited = child.try_wait().map_err(|e| Error::Peer {
            command: shown.clone(),
            message: format!("waiting for it: {e}"),
        })?;
        for m in metrics.poll() {
            watcher.step(&m);
        }
        if let Some(status) = exited {
            break status;
        }
        drain(&err, &mut tail, watcher, POLL);
        out.try_iter()
            .for_each(|l| tracing::debug!(line = %l, "peer stdout"));
    };
    // The readers end with the pipes: take what is left.
    for line in err.iter() {
        watcher.stderr_line(&line);
        push_tail(&mut tail, line);
    }
    for m in metrics.poll() {
        watcher.step(&m);
    }
    if status.success() {
        return Ok(());
    }
    Err(Error::Peer {
        command: shown,
        message: format!("{status}; its stderr ends with:\n{}", tail.join("\n")),
    })
}

/// Waits up to `wait` for stderr lines, then takes every line already there.
fn drain(
    err: &Receiver<String>,
    tail: &mut Vec<String>,
    watcher: &mut dyn PeerWatcher,
    wait: Duration,
) {
    match err.recv_timeout(wait) {
        Ok(line) => {
            watcher.stderr_line(&line);
            push_tail(tail, line);
        }
        // The script closed its stderr before exiting: wait without it.
        Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        Err(RecvTimeoutError::Timeout) => {}
    }
    for line in err.try_iter() {
        watcher.stderr_line(&line);
        push_tail(tail, line);
    }
}

fn push_tail(tail: &mut Vec<String>, line: String) {
    if tail.len() == STDERR_TAIL {
        tail.remove(0);
    }
    tail.push(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stderr_tail_keeps_the_last_lines() {
        let mut tail = Vec::new();
        for i in 0..STDERR_TAIL + 5 {
            push_tail(&mut tail, i.to_string());
        }
        assert_eq!(tail.len(), STDERR_TAIL);
        assert_eq!(tail[0], "5");
    }
}
