//! An attempt of the demo: `<runs_dir>/<utc>/` holds each trainer's runs (`peft/`, `unsloth/`),
//! their outcomes, the evaluation (`eval/`) and the damage study (`damage/`);
//! `<runs_dir>/demo-state.json` names the attempt in progress. A demo that was interrupted
//! (killed, a failed step, a reboot) continues its attempt when run again with the same
//! settings: finished steps are reused, a trainer's run is resumed from its newest checkpoint
//! and the evaluation from its `results.jsonl`. A finished attempt, other settings or
//! `--restart` start a new one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tb_gguf::fsio::write_atomic;
use tb_train::run_dir::{file_sha256, utc_stamp};
use tb_train::TrainOutcome;

/// What makes two demo runs the same experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoSettings {
    /// `--quick`.
    pub quick: bool,
    /// The experiment file, as given.
    pub config: PathBuf,
    /// SHA-256 of the experiment file's bytes.
    pub config_sha256: String,
    /// The dataset folder, as given.
    pub dataset: PathBuf,
}

impl DemoSettings {
    /// The settings of this invocation.
    pub fn new(quick: bool, config: &Path, dataset: &Path) -> Result<Self> {
        let (_, config_sha256) = file_sha256(config)?;
        Ok(Self {
            quick,
            config: config.to_path_buf(),
            config_sha256,
            dataset: dataset.to_path_buf(),
        })
    }
}

/// `<runs_dir>/demo-state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DemoState {
    /// The attempt folder.
    attempt: PathBuf,
    /// The settings it was started with.
    settings: DemoSettings,
    /// Whether it reached its report.
    finished: bool,
}

/// The attempt this demo invocation works in.
pub struct Attempt {
    /// `<runs_dir>/<utc>/`.
    pub dir: PathBuf,
    state_file: PathBuf,
    settings: DemoSettings,
}

impl Attempt {
    /// Continues the unfinished attempt of `runs_dir` with the same settings, or starts one.
    pub fn open(runs_dir: &Path, settings: DemoSettings, restart: bool) -> Result<Self> {
        let state_file = runs_dir.join("demo-state.json");
        let previous: Option<DemoState> = read_json_if_present(&state_file)?;
        if let Some(p) = previous.filter(|p| !p.finished && p.attempt.is_dir()) {
            if restart {
                println!(
                    "   --restart: leaving the interrupted demo in {}",
                    p.attempt.display()
                );
            } else if p.settings == settings {
                println!(
                    "   continuing the interrupted demo in {} (--restart starts over)",
                    p.attempt.display()
                );
                return Ok(Self {
                    dir: p.attempt,
                    state_file,
                    settings,
                });
            } else {
                println!(
                    "   the interrupted demo in {} used other settings: starting a new one",
                    p.attempt.display()
                );
            }
        }
        let stamp = utc_stamp();
        let mut dir = runs_dir.join(&stamp);
        for n in 1.. {
            if !dir.exists() {
                break;
            }
            dir = runs_dir.join(format!("{stamp}-{n}"));
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let attempt = Self {
            dir,
            state_file,
            settings,
        };
        attempt.record(false)?;
        Ok(attempt)
    }

    /// Writes `demo-state.json`.
    fn record(&self, finished: bool) -> Result<()> {
        let state = DemoState {
            attempt: self.dir.clone(),
            settings: self.settings.clone(),
            finished,
        };
        write_json(&self.state_file, &state)
    }

    /// Marks the attempt finished: the next demo starts a new one.
    pub fn finish(&self) -> Result<()> {
        self.record(true)
    }

    /// Where `method`'s trainer puts its run.
    pub fn runs_of(&self, method: &str) -> PathBuf {
        self.dir.join(method)
    }

    /// The outcome of `method`'s training when this attempt finished it.
    pub fn outcome(&self, method: &str) -> Result<Option<TrainOutcome>> {
        read_json_if_present(&self.outcome_file(method))
    }

    /// Keeps `method`'s outcome for a later continuation.
    pub fn keep_outcome(&self, method: &str, outcome: &TrainOutcome) -> Result<()> {
        write_json(&self.outcome_file(method), outcome)
    }

    /// `<attempt>/<method>-outcome.json`.
    fn outcome_file(&self, method: &str) -> PathBuf {
        self.dir.join(format!("{method}-outcome.json"))
    }

    /// The run folder an interrupted training of `method` left in this attempt, if any.
    pub fn unfinished_run(&self, method: &str) -> Result<Option<PathBuf>> {
        let runs = self.runs_of(method);
        if !runs.is_dir() {
            return Ok(None);
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(&runs)
            .with_context(|| format!("listing {}", runs.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("config.toml").is_file())
            .collect();
        found.sort();
        Ok(found.pop())
    }
}

/// A JSON file's value, or `None` when the file does not exist.
fn read_json_if_present<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let read = || format!("reading {}", path.display());
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(read)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(read),
    }
}

/// Writes a value as pretty JSON, atomically.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(value)?)?;
    Ok(())
}
