//! Run directories `runs/<utc-timestamp>-<method>/`: the resolved config, the metrics log
//! (`metrics.jsonl`, one line per logged step), `summary.json`, checkpoints and artifacts.
//! A run never overwrites another: a clash in the timestamp gets a numeric suffix.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tb_gguf::fsio::write_atomic;

use crate::config::ExperimentConfig;
use crate::error::{io, Error, Result};
use crate::probe::Machine;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimizer step (1-based).
    pub step: usize,
    /// Epochs done, fractional.
    pub epoch: f64,
    /// Mean cross-entropy over the loss-bearing tokens of this step.
    pub loss: f64,
    /// Learning rate used for this step's update.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Real (non-padding) tokens in this step.
    pub tokens: usize,
    /// Loss-bearing tokens in this step.
    pub loss_tokens: usize,
    /// Tokens in this step including padding.
    pub slots: usize,
    /// Real tokens per second of this step.
    pub tokens_per_s: f64,
    /// Seconds since training started (checkpoint/eval time excluded).
    pub elapsed_s: f64,
    /// Resident memory after the step, MiB.
    pub rss_mib: f64,
    /// Eval loss, when computed at this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
}

/// A file the run produced, with its digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Path relative to the run directory.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// `peft` or `unsloth`.
    pub method: String,
    /// Run id (the folder name).
    pub run_id: String,
    /// Experiment name.
    pub name: String,
    /// Hash of the resolved config.
    pub config_hash: String,
    /// Base model path.
    pub base: String,
    /// Backend (e.g. `flex`).
    pub backend: String,
    /// Optimizer steps done.
    pub steps: usize,
    /// Wall time of the whole run, seconds (loading, training, eval, saving).
    pub wall_s: f64,
    /// Seconds spent in training steps.
    pub train_s: f64,
    /// Real tokens trained.
    pub trained_tokens: usize,
    /// Loss-bearing tokens trained.
    pub loss_tokens: usize,
    /// Batch slots including padding.
    pub slots: usize,
    /// Real tokens per second after the warm-up steps.
    pub tokens_per_s: f64,
    /// Loss-bearing tokens per second after the warm-up steps.
    pub loss_tokens_per_s: f64,
    /// Share of batch slots that were padding.
    pub padding_fraction: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: f64,
    /// Mean loss of the last logged step.
    pub final_train_loss: f64,
    /// Eval loss at the end, when an eval set was given.
    pub eval_loss: Option<f64>,
    /// Trainable parameters.
    pub trainable_params: usize,
    /// What tokenisation did to the training examples (absent in summaries written before it
    /// was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<TrainData>,
    /// Where it ran.
    pub machine: Machine,
    /// Produced files.
    pub artifacts: Vec<Artifact>,
}

/// What tokenisation did to a run's training set at its `max_seq_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainData {
    /// The experiment's `[data] max_seq_len`.
    pub max_seq_len: usize,
    /// Training records read (after `[data] limit`).
    pub records: usize,
    /// Examples trained on.
    pub kept: usize,
    /// Kept examples cut to `max_seq_len` (an answer may have lost its end).
    pub truncated: usize,
    /// Records left out (too long under `truncation = "drop"`, or no answer token left).
    pub dropped: usize,
}

/// An open run directory.
#[derive(Debug)]
pub struct RunDir {
    /// The folder.
    pub path: PathBuf,
    /// Its folder name, `<utc>-<method>[-N]`: the run id reports and history use.
    pub id: String,
}

/// The current UTC time as `YYYYMMDDTHHMMSSZ`, the stem of run and attempt folders.
pub fn utc_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    now.format(&format).unwrap_or_else(|_| "run".into())
}

impl RunDir {
    /// Creates `runs_dir/<utc>-<method>/` (never reusing an existing folder) and writes the
    /// resolved config into it.
    pub fn create(runs_dir: &Path, method: &str, config: &ExperimentConfig) -> Result<Self> {
        std::fs::create_dir_all(runs_dir).map_err(io(runs_dir))?;
        let stem = format!("{}-{method}", utc_stamp());
        for n in 0..1000 {
            let id = if n == 0 {
                stem.clone()
            } else {
                format!("{stem}-{n}")
            };
            let path = runs_dir.join(&id);
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let dir = Self { path, id };
                    write_atomic(&dir.path.join("config.toml"), config.to_toml().as_bytes())?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Err(Error::Method(format!(
            "{}: could not find a free run folder name",
            runs_dir.display()
        )))
    }

    /// Opens an existing run (for resuming).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.join("config.toml").is_file() {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: "not a run directory (no config.toml)".into(),
            });
        }
        let id = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            path: path.to_path_buf(),
            id,
        })
    }

    /// `metrics.jsonl`.
    pub fn metrics_path(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }

    /// Appends one metrics line and flushes it.
    pub fn append_metrics(&self, m: &StepMetrics) -> Result<()> {
        let path = self.metrics_path();
        let line = serde_json::to_string(m).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        writeln!(f, "{line}").map_err(io(&path))?;
        Ok(())
    }

    /// Reads the metrics log.
    pub fn read_metrics(&self) -> Result<Vec<StepMetrics>> {
        read_metrics(&self.metrics_path())
    }

    /// Keeps only the metrics up to `step` (used when resuming from a checkpoint), each kept
    /// line byte for byte. A last line cut short by a kill mid-append is dropped with a
    /// warning; a bad line elsewhere is an error naming it.
    pub fn truncate_metrics(&self, step: usize) -> Result<()> {
        let path = self.metrics_path();
        if !path.exists() {
            return Ok(());
        }
        let mut text = String::new();
        for (line, m) in read_metrics_lines(&path, true)? {
            if m.step <= step {
                text.push_str(&line);
                text.push('\n');
            }
        }
        Ok(write_atomic(&path, text.as_bytes())?)
    }

    /// Writes `summary.json` atomically.
    pub fn write_summary(&self, summary: &RunSummary) -> Result<()> {
        let path = self.path.join("summary.json");
        let text = serde_json::to_string_pretty(summary).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        Ok(write_atomic(&path, text.as_bytes())?)
    }

    /// Size and SHA-256 of a file inside the run directory (or a folder's files, one each).
    pub fn artifacts(&self, relative: &str) -> Result<Vec<Artifact>> {
        let full = self.path.join(relative);
        let mut files = Vec::new();
        if full.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(&full)
                .map_err(io(&full))?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(full);
        }
        files
            .into_iter()
            .map(|p| {
                let (bytes, sha256) = file_sha256(&p)?;
                let path = p
                    .strip_prefix(&self.path)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                Ok(Artifact {
                    path,
                    bytes,
                    sha256,
                })
            })
            .collect()
    }
}

/// Reads a `metrics.jsonl`; a bad line is an error naming its number.
pub fn read_metrics(path: &Path) -> Result<Vec<StepMetrics>> {
    Ok(read_metrics_lines(path, false)?
        .into_iter()
        .map(|(_, m)| m)
        .collect())
}

/// Follows a `metrics.jsonl` another process is appending to: each [`MetricsTail::poll`] gives
/// the steps whose lines were completed since the last one. A line still being written (no
/// newline yet) waits for the next poll; a file shorter than what was read was cut back (a
/// resumed run drops the steps after its checkpoint) and is read again from the start; a line
/// that does not parse is skipped here ([`read_metrics`] reports it once the run is over).
#[derive(Debug, Clone)]
pub struct MetricsTail {
    path: PathBuf,
    offset: u64,
}

impl MetricsTail {
    /// Follows `path` from its start (the file need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            offset: 0,
        }
    }

    /// The steps logged since the last call.
    pub fn poll(&mut self) -> Vec<StepMetrics> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = if len < self.offset { 0 } else { self.offset };
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(start)).is_err() || file.read_to_end(&mut bytes).is_err() {
            self.offset = start;
            return Vec::new();
        }
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.offset = start + complete as u64;
        String::from_utf8_lossy(&bytes[..complete])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Each line of a `metrics.jsonl` with what it holds; with `torn_tail`, a last line without its
/// newline that does not parse (a write cut short) is dropped instead of being an error.
fn read_metrics_lines(path: &Path, torn_tail: bool) -> Result<Vec<(String, StepMetrics)>> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(m) => out.push((line.trim_end_matches('\r').to_string(), m)),
            Err(_) if torn_tail && i + 1 == lines.len() => {
                tracing::warn!(file = %path.display(), line = i + 1, "dropping a metrics line cut short");
            }
            Err(e) => {
                return Err(Error::ConfigSyntax {
                    path: path.to_path_buf(),
                    message: format!("line {}: {e}", i + 1),
                })
            }
        }
    }
    Ok(out)
}

/// Size and hex SHA-256 of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<(u64, String)> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut f, &mut hasher).map_err(io(path))?;
    Ok((bytes, hex(&hasher.finalize())))
}

/// Hex SHA-256 of bytes in memory (what [`file_sha256`] gives for a file holding them).
pub fn bytes_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
