//! Errors of tb-report. Every variant that comes from a file names it (and the line, for
//! line-oriented files).

use std::path::PathBuf;

/// Everything that can go wrong while reading results or writing reports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON/JSONL/TOML file could not be parsed.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line (1 for whole-file formats such as `summary.json`).
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A file parsed but its content is unusable (e.g. a corrupt `history.parquet`).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do about it.
        message: String,
    },
    /// A polars operation failed.
    #[error("{context}: {source}")]
    Polars {
        /// What was being done.
        context: String,
        /// The polars error.
        #[source]
        source: polars::error::PolarsError,
    },
    /// A chart could not be drawn.
    #[error("chart {path}: {message}")]
    Chart {
        /// The chart file.
        path: PathBuf,
        /// The plotters error.
        message: String,
    },
    /// The HF+PEFT peer script could not start or failed.
    #[error("{command}: {message}")]
    Peer {
        /// The command line.
        command: String,
        /// What happened (the exit status and the end of its stderr).
        message: String,
    },
    /// Bad arguments (unknown method, nothing to report, ...).
    #[error("{0}")]
    Input(String),
    /// A file of tb-train's (the experiment file, a run's `serving.json`) could not be read.
    #[error(transparent)]
    Train(#[from] tb_train::Error),
}

/// Result alias of tb-report.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

pub(crate) fn polars(
    context: impl Into<String>,
) -> impl FnOnce(polars::error::PolarsError) -> Error {
    let context = context.into();
    move |source| Error::Polars { context, source }
}
