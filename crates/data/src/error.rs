//! Errors of tb-data.

use std::path::PathBuf;

/// What can go wrong reading, validating or tokenising a dataset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A record is invalid; names the file, the 1-based line and the field.
    #[error("{path}:{line}: field `{field}`: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending field (`<json>` for syntax errors).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A line is not UTF-8 text or holds a NUL byte; names the file, the 1-based line and the
    /// 1-based byte column.
    #[error("{path}:{line}:{column}: {message}")]
    Text {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based byte column of the first offending byte.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The dataset holds no records.
    #[error("{path}: the dataset is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Tokenisation or chat formatting failed.
    #[error("record `{id}`: {source}")]
    Model {
        /// Record id.
        id: String,
        /// The tokenizer/template error.
        #[source]
        source: tb_model::Error,
    },
    /// Invalid settings (e.g. a zero sequence length).
    #[error("{0}")]
    Settings(String),
}

/// Result alias of tb-data.
pub type Result<T> = std::result::Result<T, Error>;
