//! Errors of tb-peft.

use std::path::PathBuf;

/// Everything that can go wrong with adapters, their configs and merging.
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
    /// Merging would produce NaN/Inf, or base and adapter disagree.
    #[error("merge: {0}")]
    Merge(String),
    /// Model loading failed.
    #[error(transparent)]
    Model(#[from] tb_model::Error),
    /// Shared training machinery failed.
    #[error(transparent)]
    Train(#[from] tb_train::Error),
    /// Dataset failure.
    #[error(transparent)]
    Data(#[from] tb_data::Error),
}

/// Result alias of tb-peft.
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
