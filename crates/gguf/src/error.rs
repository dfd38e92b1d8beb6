//! The crate's error type.

use std::path::PathBuf;

use crate::types::GgmlType;

/// Everything that can go wrong while reading, writing or converting GGUF data.
///
/// Each variant names the key, tensor or byte offset involved, so a message is enough to find
/// the problem in the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation on a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "rename", ...).
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The first four bytes are not `GGUF`.
    #[error("bad magic {found:02x?}: not a GGUF file (expected \"GGUF\")")]
    BadMagic {
        /// The four bytes found at offset 0.
        found: [u8; 4],
    },
    /// The GGUF version is not 1, 2 or 3.
    #[error("unsupported GGUF version {0} (supported: 1, 2, 3)")]
    UnsupportedVersion(u32),
    /// The input ends before a field could be read.
    #[error(
        "truncated file: need {needed} bytes for {what} at offset {offset}, only {available} left"
    )]
    Truncated {
        /// The field being read.
        what: String,
        /// Byte offset of the field.
        offset: u64,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the input.
        available: u64,
    },
    /// A count, length or dimension is larger than this reader accepts.
    #[error("{what} = {value} at offset {offset} exceeds the limit {limit}")]
    LimitExceeded {
        /// The field being read.
        what: String,
        /// The value found.
        value: u64,
        /// The largest accepted value.
        limit: u64,
        /// Byte offset of the field.
        offset: u64,
    },
    /// Structurally invalid content (bad UTF-8, an unknown value type, a duplicate key, ...).
    #[error("invalid GGUF at offset {offset}: {message}")]
    Malformed {
        /// Byte offset where the problem was found.
        offset: u64,
        /// What is wrong, naming the key or tensor.
        message: String,
    },
    /// A tensor's data does not lie inside the file, or its shape/type/offset is inconsistent.
    #[error("tensor '{tensor}': {message}")]
    InvalidTensor {
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// A tensor uses a ggml type id this crate does not know.
    #[error("tensor '{tensor}' has unknown ggml type id {type_id}")]
    UnknownGgmlType {
        /// The tensor's name.
        tensor: String,
        /// The raw type id.
        type_id: u32,
    },
    /// An operation is not implemented for a ggml type (e.g. dequantizing IQ2_XXS).
    #[error("{op} is not supported for ggml type {ty}")]
    UnsupportedType {
        /// The operation.
        op: &'static str,
        /// The type.
        ty: GgmlType,
    },
    /// A metadata key is absent.
    #[error("missing metadata key '{0}'")]
    MissingKey(String),
    /// A metadata key has a different type than required.
    #[error("metadata key '{key}' has type {found}, expected {expected}")]
    WrongType {
        /// The key.
        key: String,
        /// The expected type, e.g. "u32" or "array of string".
        expected: &'static str,
        /// The type found in the file.
        found: String,
    },
    /// No tensor with this name exists.
    #[error("no tensor named '{0}'")]
    TensorNotFound(String),
    /// A caller passed inconsistent arguments (wrong buffer length, bad shape, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The writer's stream position drifted from the computed layout, or a producer returned
    /// the wrong number of bytes.
    #[error("writer: {0}")]
    Writer(String),
    /// Export input cannot be converted (unsupported tokenizer, NaN weight, a tensor the
    /// llama architecture does not have, ...).
    #[error("{path}: {message}")]
    Convert {
        /// The file or directory involved.
        path: PathBuf,
        /// What is wrong, naming the key or tensor.
        message: String,
    },
    /// A caller's [`crate::export::TensorSource`] could not read a tensor.
    #[error("reading tensor `{tensor}`: {source}")]
    Source {
        /// The tensor's source name.
        tensor: String,
        /// What the source reported.
        #[source]
        source: crate::export::SourceError,
    },
    /// Quantized data failed validation (NaN/Inf, as llama.cpp's `ggml_validate_row_data`).
    #[error("tensor '{tensor}': {message}")]
    Validation {
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::fsio::FileError> for Error {
    fn from(e: crate::fsio::FileError) -> Self {
        Error::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn convert(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Convert {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn tensor(tensor: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidTensor {
            tensor: tensor.into(),
            message: message.into(),
        }
    }
}
