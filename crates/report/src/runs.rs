//! Training results: run folders written by the trainers (`runs/<utc>-<method>/` with
//! `config.toml`, `metrics.jsonl`, `summary.json`, see [`tb_train::RunDir`]) and the JSON lines
//! printed by the HF+PEFT peer (`benches/peers/hf_peft.py`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tb_train::{BaseEvalLoss, RunSummary, ServingPath, StepMetrics};

use crate::error::{io, Result};
use crate::fsio::{read_json, read_json_lines};

/// One finished training run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The run folder.
    pub dir: PathBuf,
    /// `summary.json`.
    pub summary: RunSummary,
    /// `metrics.jsonl` (empty when the file is absent).
    pub metrics: Vec<StepMetrics>,
    /// `config.toml`, verbatim, when present.
    pub config_toml: Option<String>,
    /// `serving.json`: the commands from the trained adapter to a servable GGUF (empty when
    /// the run was never taken that far).
    pub serving: ServingPath,
    /// `base_eval_loss.json`: the base model's eval loss on this run's eval examples (`None`:
    /// not measured).
    pub base_eval: Option<BaseEvalLoss>,
}

/// Reads one run folder. `summary.json` is required; `metrics.jsonl`, `config.toml`,
/// `serving.json` and `base_eval_loss.json` are optional. Errors name the file (and the line,
/// for `metrics.jsonl`, or the field, for `base_eval_loss.json`).
pub fn load_run(dir: &Path) -> Result<Run> {
    let summary: RunSummary = read_json(&dir.join("summary.json"))?;
    let metrics_path = dir.join("metrics.jsonl");
    let metrics = if metrics_path.exists() {
        read_metrics(&metrics_path)?
    } else {
        tracing::warn!(run = %dir.display(), "no metrics.jsonl: no loss curve for this run");
        Vec::new()
    };
    let config_path = dir.join("config.toml");
    let config_toml = if config_path.exists() {
        Some(std::fs::read_to_string(&config_path).map_err(io(&config_path))?)
    } else {
        None
    };
    let serving = ServingPath::load(dir)?;
    let base_eval = BaseEvalLoss::load(dir)?;
    Ok(Run {
        dir: dir.to_path_buf(),
        summary,
        metrics,
        config_toml,
        serving,
        base_eval,
    })
}

/// Reads a `metrics.jsonl`; a malformed line is an error naming the file and line.
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>> {
    read_json_lines(path)
}

/// Every run folder directly under `runs_dir` that has a `summary.json`, oldest first (folder
/// names start with a UTC timestamp). Folders without one (unfinished or crashed runs) are
/// skipped with a warning; a folder whose files are malformed is an error.
pub fn find_runs(runs_dir: &Path) -> Result<Vec<Run>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs_dir)
        .map_err(io(runs_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut runs = Vec::new();
    for dir in dirs {
        if !dir.join("summary.json").exists() {
            tracing::warn!(run = %dir.display(), "skipped: no summary.json (unfinished run?)");
            continue;
        }
        runs.push(load_run(&dir)?);
    }
    Ok(runs)
}

/// One result line of the HF+PEFT peer (`benches/peers/hf_peft.py` prints it; this is its one
/// Rust type). A field the script always prints is required, so a renamed one is an error naming
/// it; fields the script adds later are ignored. `tokens_per_s` and `peak_rss_mib` are what the
/// report compares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerResult {
    /// Method name (`hf-peft`).
    pub method: String,
    /// Measured optimizer steps (after one warm-up step).
    pub steps: usize,
    /// Seconds of the measured steps.
    pub seconds: f64,
    /// Real tokens trained in the measured steps.
    pub tokens: usize,
    /// Loss-bearing tokens in the measured steps.
    pub loss_tokens: usize,
    /// Real tokens per second.
    pub tokens_per_s: f64,
    /// Loss-bearing tokens per second.
    pub loss_tokens_per_s: f64,
    /// Peak RSS of the peer process, MiB.
    pub peak_rss_mib: f64,
    /// Loss of the first measured step.
    pub first_loss: Option<f64>,
    /// Loss of the last measured step.
    pub last_loss: Option<f64>,
    /// Torch threads.
    pub threads: usize,
    /// Torch version.
    pub torch: String,
    /// Examples per step.
    pub micro_batch: usize,
    /// Longest example.
    pub max_seq_len: usize,
    /// An id given by the bench driver (`bench-<stamp>-hf-peft-<k>`); the script does not print
    /// it, so it reads as empty from the script's line.
    #[serde(default)]
    pub run_id: String,
}

/// Parses the peer's stdout: the last line that is a JSON object is the result. `None`: no such
/// line.
///
/// # Errors
/// That line is not a [`PeerResult`] (serde's message names the missing or malformed field).
pub fn parse_peer_output(stdout: &str) -> Result<Option<PeerResult>, serde_json::Error> {
    stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .transpose()
}

/// Reads a JSON-lines file of peer results (one object per line); errors name file and line.
pub fn load_peers(path: &Path) -> Result<Vec<PeerResult>> {
    let mut peers: Vec<PeerResult> = read_json_lines(path)?;
    for p in &mut peers {
        if p.method.is_empty() {
            p.method = "hf-peft".into();
        }
    }
    Ok(peers)
}
