//! Errors of tb-train.

use std::path::PathBuf;

/// Everything that can go wrong while configuring or running a training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The experiment file is not valid TOML or has unknown/mistyped keys.
    #[error("{path}: {message}")]
    ConfigSyntax {
        /// The experiment file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A config value is out of range or inconsistent.
    #[error("config field `{field}`: {message}")]
    ConfigValue {
        /// Dotted key, e.g. `optimizer.lr`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A value of an experiment file is out of range or inconsistent.
    #[error("{path}: config field `{field}`: {message}")]
    ConfigFileValue {
        /// The experiment file.
        path: PathBuf,
        /// Dotted key, e.g. `optimizer.lr`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint is missing, incomplete or does not belong to this run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The loss or a gradient became NaN/Inf.
    #[error("step {step}: {what} is not finite")]
    NotFinite {
        /// Optimizer step.
        step: usize,
        /// Which value.
        what: String,
    },
    /// A metrics or summary file could not be encoded.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        source: serde_json::Error,
    },
    /// The dataset could not be loaded or tokenised.
    #[error(transparent)]
    Data(#[from] tb_data::Error),
    /// The model could not be loaded.
    #[error(transparent)]
    Model(#[from] tb_model::Error),
    /// `adapter_config.json` is malformed or holds a value we do not support.
    #[error("{path}: field `{field}`: {message}")]
    AdapterConfig {
        /// The config file (or `<config>` for in-memory configs).
        path: PathBuf,
        /// The PEFT field name.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// `adapter_model.safetensors` is malformed or does not fit the base model.
    #[error("{path}: {message}")]
    Adapter {
        /// The adapter file or folder.
        path: PathBuf,
        /// What is wrong (names the tensor and both shapes where relevant).
        message: String,
    },
    /// Merging would produce NaN/Inf, or base and adapter disagree.
    #[error("merge: {0}")]
    Merge(String),
    /// Writing a GGUF (model or LoRA adapter) failed.
    #[error("writing {path}: {source}")]
    Export {
        /// The GGUF being written.
        path: PathBuf,
        /// What the exporter reported (tb-gguf's errors arrive wrapped as
        /// [`tb_model::Error::Gguf`]); boxed to keep this enum small.
        source: Box<tb_model::Error>,
    },
    /// A record file tunebench wrote (e.g. `base_eval_loss.json`) has a missing or malformed
    /// field.
    #[error("{path}: field `{field}`: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A trainer-specific failure (adapter shapes, kernels, ...).
    #[error("{0}")]
    Method(String),
}

/// Result alias of tb-train.
pub type Result<T> = std::result::Result<T, Error>;

impl From<tb_gguf::fsio::FileError> for Error {
    fn from(e: tb_gguf::fsio::FileError) -> Self {
        Error::Io {
            path: e.path,
            source: e.source,
        }
    }
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
