//! Training results: run folders written by the trainers (`runs/<utc>-<method>/` with
//! `config.toml`, `metrics.jsonl`, `summary.json`, see [`tb_train::RunDir`]) and the JSON lines
//! printed by the HF+PEFT peer (`benches/peers/hf_peft.py`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tb_train::{RunSummary, ServingPath, StepMetrics};

use crate::error::{io, Error, Result};

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
}

/// Reads one run folder. `summary.json` is required; `metrics.jsonl` and `config.toml` are
/// optional. Errors name the file (and the line, for `metrics.jsonl`).
pub fn load_run(dir: &Path) -> Result<Run> {
    let summary_path = dir.join("summary.json");
    let text = std::fs::read_to_string(&summary_path).map_err(io(&summary_path))?;
    let summary: RunSummary = serde_json::from_str(&text).map_err(|e| Error::Parse {
        path: summary_path.clone(),
        line: e.line(),
        message: e.to_string(),
    })?;
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
    Ok(Run {
        dir: dir.to_path_buf(),
        summary,
        metrics,
        config_toml,
        serving,
    })
}

/// Reads a `metrics.jsonl`; a malformed line is an error naming the file and line.
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let m = serde_json::from_str(&line).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push(m);
    }
    Ok(out)
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

/// One result line of the HF+PEFT peer. Every field has a default so older or newer peers
/// still load; `tokens_per_s` and `peak_rss_mib` are what the report compares.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
    /// An id given by the bench driver (`bench-<stamp>-hf-peft-<k>`); empty from the script.
    pub run_id: String,
}

/// Parses the peer's stdout: the last line that is a JSON object is the result.
pub fn parse_peer_output(stdout: &str) -> Option<PeerResult> {
    stdout
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str(l).ok())
}

/// Reads a JSON-lines file of peer results (one object per line); errors name file and line.
pub fn load_peers(path: &Path) -> Result<Vec<PeerResult>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut p: PeerResult = serde_json::from_str(line).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        if p.method.is_empty() {
            p.method = "hf-peft".into();
        }
        out.push(p);
    }
    Ok(out)
}
