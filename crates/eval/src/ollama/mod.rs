//! A blocking client for Ollama's HTTP API (`docs/api.md` in ollama/ollama).
//!
//! One [`OllamaClient`] per server. Every call has a timeout; transient failures (nothing
//! listening yet, timeouts, 502/503/504, a 500 that is not one of Ollama's permanent errors,
//! a cut stream on a call that is safe to repeat) are retried with exponential backoff up to
//! [`ClientConfig::max_retries`] times; 4xx answers never are. Errors are [`Error`]s that carry
//! Ollama's own error text, the number of retries and the time spent.

mod blob;
mod client;
mod error;
mod host;
mod retry;
mod types;

pub use blob::BlobDigest;
pub use client::{ClientConfig, OllamaClient};
pub use error::{Error, ErrorKind, Result};
pub use host::{parse_ollama_host, DEFAULT_PORT};
pub use types::{
    ChatRequest, ChatResponse, CreateRequest, GenerateRequest, GenerateResponse, GenerationMetrics,
    Message, ModelDetails, ModelSummary, Options, ProgressResponse, Role, ShowResponse,
};
