//! tunebench evaluation: answer-quality metrics that handle Turkish ([`metrics`]), a
//! blocking client for Ollama's HTTP API ([`ollama`]), and an opt-in LLM judge ([`judge`]).
//!
//! The crate does not depend on Burn; the embedded GGUF engine is a separate piece.

pub mod judge;
pub mod metrics;
pub mod ollama;

pub use ollama::{ClientConfig, OllamaClient};
