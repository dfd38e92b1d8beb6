//! `serving.json`: the way from a run's trained adapter to a model Ollama can serve, command
//! by command, with the seconds each took and the GGUF files it produced.
//!
//! The commands that take a run's output further record themselves here: `train unsloth
//! --gguf` (one command: merge, GGUFs and Modelfile), `merge` of a run's adapter and
//! `export gguf` of a run's merged folder (the PEFT way, two commands). The report reads it
//! for the "checkpoint to served model" columns.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tb_gguf::fsio::write_atomic;

use crate::error::{io, Error, Result};

/// File name inside the run folder.
pub const SERVING_FILE: &str = "serving.json";

/// One command on the way to a served model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServingStep {
    /// The command as a user types it (paths shortened to the run folder's names).
    pub command: String,
    /// Wall-clock seconds it took.
    pub seconds: f64,
    /// GGUF files it wrote (file names inside the run folder) and their sizes in bytes.
    #[serde(default)]
    pub ggufs: Vec<(String, u64)>,
    /// Whether it wrote an Ollama Modelfile.
    #[serde(default)]
    pub modelfile: bool,
}

/// `serving.json`: the steps in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServingPath {
    /// Steps in order.
    pub steps: Vec<ServingStep>,
}

impl ServingPath {
    /// Total seconds over the steps.
    pub fn seconds(&self) -> f64 {
        self.steps.iter().map(|s| s.seconds).sum()
    }

    /// Reads `run/serving.json`; a missing file is an empty path.
    ///
    /// # Errors
    /// [`Error::Json`] when the file exists but is not a serving path.
    pub fn load(run: &Path) -> Result<Self> {
        let path = run.join(SERVING_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|source| Error::Json { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io(&path)(e)),
        }
    }
}

/// The run folder `path` belongs to: `path` itself or its parent, whichever holds a run's
/// `config.toml` and `metrics.jsonl`.
pub fn run_folder_of(path: &Path) -> Option<PathBuf> {
    let is_run = |p: &Path| p.join("config.toml").is_file() && p.join("metrics.jsonl").is_file();
    [Some(path), path.parent()]
        .into_iter()
        .flatten()
        .find(|p| is_run(p))
        .map(Path::to_path_buf)
}

/// Appends `step` to `run/serving.json` (rewritten atomically).
///
/// # Errors
/// Reading or writing the file failed.
pub fn record_step(run: &Path, step: ServingStep) -> Result<()> {
    let mut serving = ServingPath::load(run)?;
    serving.steps.push(step);
    let path = run.join(SERVING_FILE);
    let text = serde_json::to_string_pretty(&serving).map_err(|source| Error::Json {
        path: path.clone(),
        source,
    })?;
    Ok(write_atomic(&path, text.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_accumulate_and_runs_are_found_from_their_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("20260101T000000Z-peft");
        std::fs::create_dir_all(run.join("adapter")).unwrap();
        assert_eq!(run_folder_of(&run.join("adapter")), None);
        std::fs::write(run.join("config.toml"), "").unwrap();
        std::fs::write(run.join("metrics.jsonl"), "").unwrap();
        assert_eq!(run_folder_of(&run.join("adapter")), Some(run.clone()));
        assert_eq!(run_folder_of(&run), Some(run.clone()));
        assert_eq!(run_folder_of(dir.path()), None);

        assert_eq!(ServingPath::load(&run).unwrap(), ServingPath::default());
        record_step(
            &run,
            ServingStep {
                command: "tunebench merge".into(),
                seconds: 1.5,
                ggufs: vec![],
                modelfile: false,
            },
        )
        .unwrap();
        record_step(
            &run,
            ServingStep {
                command: "tunebench export gguf --quant q4_k_m".into(),
                seconds: 2.0,
                ggufs: vec![("peft-Q4_K_M.gguf".into(), 1234)],
                modelfile: false,
            },
        )
        .unwrap();
        let s = ServingPath::load(&run).unwrap();
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.seconds(), 3.5);
        assert_eq!(s.steps[1].ggufs[0].1, 1234);

        std::fs::write(run.join(SERVING_FILE), "{not json").unwrap();
        let err = ServingPath::load(&run).unwrap_err().to_string();
        assert!(err.contains(SERVING_FILE), "{err}");
    }
}
