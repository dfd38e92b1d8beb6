//! tunebench evaluation: answer-quality metrics that handle Turkish ([`metrics`]), a
//! blocking client for Ollama's HTTP API ([`ollama`]), an opt-in LLM judge ([`judge`]), and the
//! embedded GGUF engine ([`engine`]) used for perplexity and when no Ollama is reachable, and a
//! local `tools/ollama-compat` server ([`compat`]) for machines without Ollama.
//!
//! The engine's hot path does not use Burn (tb-model is used for its tokenizer and chat
//! template only).

pub mod compat;
pub mod damage;
pub mod engine;
pub mod evaluation;
pub mod judge;
pub mod metrics;
pub mod ollama;

pub use ollama::{ClientConfig, OllamaClient};
