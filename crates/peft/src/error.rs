//! Errors of tb-peft.

/// Everything that can go wrong while training or applying a PEFT-style adapter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Model loading failed.
    #[error(transparent)]
    Model(#[from] tb_model::Error),
    /// Shared training machinery (config, loop, adapter format, merge) failed.
    #[error(transparent)]
    Train(#[from] tb_train::Error),
    /// Dataset failure.
    #[error(transparent)]
    Data(#[from] tb_data::Error),
}

/// Result alias of tb-peft.
pub type Result<T> = std::result::Result<T, Error>;
