//! Errors of tb-model.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is not valid JSON or does not have the expected shape.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A configuration value is missing, invalid or unsupported.
    #[error("{origin}: field `{field}`: {message}")]
    Config {
        /// Where the configuration came from (a file path or "GGUF metadata").
        origin: String,
        /// The offending field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A weight file is malformed (bad header, truncated data, unsupported dtype).
    #[error("{path}: {message}")]
    WeightFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("missing tensor `{name}` (looked in {location})")]
    MissingTensor {
        /// HF name of the tensor.
        name: String,
        /// Which files were searched.
        location: String,
    },
    /// The checkpoint has tensors the model does not use.
    #[error("unexpected tensor(s) in {location}: {names}")]
    ExtraTensors {
        /// Comma-separated names (at most a few).
        names: String,
        /// Which files.
        location: String,
    },
    /// A tensor has the wrong shape.
    #[error("tensor `{name}` in {location} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// HF name of the tensor.
        name: String,
        /// The file (or files) it was read from.
        location: String,
        /// The shape in the checkpoint.
        found: Vec<usize>,
        /// The shape the config implies.
        expected: Vec<usize>,
    },
    /// A tensor has a dtype we cannot load.
    #[error("tensor `{name}` in {path}: unsupported dtype {dtype} (supported: F32, F16, BF16)")]
    UnsupportedDtype {
        /// HF name of the tensor.
        name: String,
        /// The file.
        path: PathBuf,
        /// The dtype found.
        dtype: String,
    },
    /// Tokenizer files are missing or invalid.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed to parse or render.
    #[error("chat template: {0}")]
    ChatTemplate(String),
    /// An error from the GGUF reader.
    #[error(transparent)]
    Gguf(#[from] tb_gguf::Error),
    /// Invalid arguments to generation or forward passes.
    #[error("{0}")]
    InvalidInput(String),
    /// A [`crate::weights::WeightSink`] refused a weight handed to it while loading.
    #[error("tensor `{name}`: {message}")]
    WeightSink {
        /// HF name of the tensor.
        name: String,
        /// What the sink reported.
        message: String,
    },
}

/// Result alias of tb-model.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn config(
        origin: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::Config {
            origin: origin.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}
