//! `base_eval_loss.json`: the base model's eval loss on the eval examples a run's own eval loss
//! uses (same experiment, same `eval_limit`, same batches), the "before" a report sets beside
//! the trained adapter's "after". `tunebench eval-loss --run DIR` writes it into the run folder;
//! tb-report reads it from there.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tb_gguf::fsio::write_atomic;

use crate::error::{io, Error, Result};

/// File name inside the run folder.
pub const BASE_EVAL_FILE: &str = "base_eval_loss.json";

/// The base model's eval loss, measured without any LoRA branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseEvalLoss {
    /// Base model path (the experiment's `[model] base`).
    pub base: String,
    /// Hash of the resolved config of the run it belongs to.
    pub config_hash: String,
    /// Eval examples the loss is averaged over.
    pub eval_examples: usize,
    /// Mean cross-entropy per loss-bearing token (nats).
    pub eval_loss: f64,
}

impl BaseEvalLoss {
    /// `exp(eval_loss)`.
    pub fn perplexity(&self) -> f64 {
        self.eval_loss.exp()
    }

    /// Writes `run/base_eval_loss.json` (temp file, then rename); returns its path.
    ///
    /// # Errors
    /// The file could not be written.
    pub fn write(&self, run: &Path) -> Result<PathBuf> {
        let path = run.join(BASE_EVAL_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }

    /// Reads `run/base_eval_loss.json`; `None` when the run has none (not measured).
    ///
    /// # Errors
    /// [`Error::Record`] naming the file and the missing or malformed field; [`Error::Json`]
    /// when the file is not a JSON object.
    pub fn load(run: &Path) -> Result<Option<Self>> {
        let path = run.join(BASE_EVAL_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| Error::Json {
                path: path.clone(),
                source,
            })?;
        let record = Self {
            base: field(&path, &value, "base")?,
            config_hash: field(&path, &value, "config_hash")?,
            eval_examples: field(&path, &value, "eval_examples")?,
            eval_loss: field(&path, &value, "eval_loss")?,
        };
        if !record.eval_loss.is_finite() || record.eval_loss < 0.0 {
            return Err(record_error(&path, "eval_loss", "not a finite loss ≥ 0"));
        }
        Ok(Some(record))
    }
}

fn record_error(path: &Path, field: &str, message: impl Into<String>) -> Error {
    Error::Record {
        path: path.to_path_buf(),
        field: field.into(),
        message: message.into(),
    }
}

/// One required field of a JSON object, typed; errors name the field.
fn field<T: DeserializeOwned>(path: &Path, value: &serde_json::Value, name: &str) -> Result<T> {
    let Some(object) = value.as_object() else {
        return Err(record_error(path, name, "the file is not a JSON object"));
    };
    let v = object
        .get(name)
        .ok_or_else(|| record_error(path, name, "missing"))?;
    serde_json::from_value(v.clone()).map_err(|e| record_error(path, name, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BaseEvalLoss {
        BaseEvalLoss {
            base: "models/smollm2-135m".into(),
            config_hash: "abc".into(),
            eval_examples: 20,
            eval_loss: 2.5,
        }
    }

    #[test]
    fn round_trips_and_a_missing_file_is_not_measured() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(BaseEvalLoss::load(dir.path()).unwrap(), None);
        let path = sample().write(dir.path()).unwrap();
        assert_eq!(path, dir.path().join(BASE_EVAL_FILE));
        assert_eq!(BaseEvalLoss::load(dir.path()).unwrap(), Some(sample()));
        assert!((sample().perplexity() - 2.5f64.exp()).abs() < 1e-12);
    }

    #[test]
    fn garbled_files_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BASE_EVAL_FILE);
        let cases = [
            (
                r#"{"base":"b","config_hash":"h","eval_examples":3}"#,
                "eval_loss",
            ),
            (
                r#"{"base":"b","config_hash":"h","eval_examples":3,"eval_loss":"x"}"#,
                "eval_loss",
            ),
            (
                r#"{"base":"b","config_hash":"h","eval_examples":-1,"eval_loss":1.0}"#,
                "eval_examples",
            ),
            (
                r#"{"base":"b","config_hash":"h","eval_examples":3,"eval_loss":-1.0}"#,
                "eval_loss",
            ),
            ("[1, 2]", "base"),
        ];
        for (text, named) in cases {
            std::fs::write(&path, text).unwrap();
            let err = BaseEvalLoss::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains(BASE_EVAL_FILE), "{text}: {err}");
            assert!(err.contains(&format!("`{named}`")), "{text}: {err}");
        }
        std::fs::write(&path, "{not json").unwrap();
        let err = BaseEvalLoss::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains(BASE_EVAL_FILE), "{err}");
    }
}
