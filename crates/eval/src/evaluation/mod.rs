//! Evaluation runs: every model answers every dataset item (through Ollama or the embedded
//! engine), answers are scored against the references, and results are written as they come.
//!
//! Output, in the run directory:
//! - `results.jsonl`: one [`ItemResult`] per line, written and flushed after each item, so a
//!   crash loses nothing already answered. A failed item is a line with `error` set; the run
//!   goes on.
//! - `summary.json`: one [`ModelSummary`] per model plus the engine used and why, written to a
//!   temporary file and renamed into place.
//!
//! Engine choice ([`EngineChoice::Auto`]): Ollama when `GET /api/version` answers at
//! `OLLAMA_HOST`, else the embedded engine. Perplexity always comes from the embedded engine
//! (Ollama cannot score given text), when asked for.

mod ollama_model;
mod run;

use std::path::PathBuf;

use serde::Serialize;

pub use ollama_model::{create_ollama_model, ollama_template, OllamaTemplate};
pub(crate) use run::to_role;
pub use run::{resolve_engine, run_evaluation, ResolvedEngine};

use crate::engine::Kernel;

/// Which engine answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// Ollama if reachable, else embedded.
    Auto,
    /// Ollama only (an unreachable server is an error).
    Ollama,
    /// The embedded GGUF engine.
    Embedded,
}

/// The engine that actually ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Ollama's HTTP API (or tools/ollama-compat).
    Ollama,
    /// The embedded GGUF engine.
    Embedded,
}

/// A model to evaluate.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSpec {
    /// Name used in results (and, sanitised, as the Ollama model name).
    pub name: String,
    /// Its GGUF file.
    pub gguf: PathBuf,
}

/// Settings of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    /// Most new tokens per answer.
    pub max_tokens: usize,
    /// Ollama `num_ctx`.
    pub num_ctx: u32,
    /// Ollama `seed` (answers are greedy: temperature 0).
    pub seed: i64,
    /// Also score the reference answers teacher-forced with the embedded engine.
    pub perplexity: bool,
    /// Only the first N items.
    pub limit: Option<usize>,
    /// Dot-product path of the embedded engine.
    #[serde(skip)]
    pub kernel: Kernel,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            num_ctx: 4096,
            seed: 42,
            perplexity: false,
            limit: None,
            kernel: Kernel::Auto,
        }
    }
}

/// Scores of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// Sentence chrF (0–100, sacrebleu's definition).
    pub chrf: f64,
    /// ROUGE-L F1 (0–1, Turkish casefolding).
    pub rouge_l: f64,
    /// Normalised exact match.
    pub exact_match: bool,
}

/// Teacher-forced score of the reference answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ItemPerplexity {
    /// Perplexity over the completion tokens.
    pub perplexity: f64,
    /// Summed NLL (nats).
    pub nll: f64,
    /// Completion tokens scored.
    pub tokens: usize,
    /// Tokens where the model's top-1 was the reference.
    pub top1_hits: usize,
}

/// Timings of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Wall-clock seconds for the answer (request or local generation).
    pub seconds: f64,
    /// Prompt tokens.
    pub prompt_tokens: Option<u64>,
    /// Generated tokens.
    pub eval_tokens: Option<u64>,
    /// Prefill speed.
    pub prompt_tokens_per_second: Option<f64>,
    /// Decode speed.
    pub eval_tokens_per_second: Option<f64>,
    /// Model load time reported by Ollama.
    pub load_seconds: Option<f64>,
}

/// One line of `results.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct ItemResult {
    /// Model name.
    pub model: String,
    /// Engine that answered.
    pub engine: EngineKind,
    /// Record id.
    pub id: String,
    /// Record category.
    pub category: String,
    /// `heldout`, `paraphrase` or absent.
    pub split: Option<&'static str>,
    /// The user-side text.
    pub prompt: String,
    /// The reference answer.
    pub reference: String,
    /// The model's answer (absent on failure).
    pub answer: Option<String>,
    /// `stop` or `length`.
    pub done_reason: Option<String>,
    /// Scores (absent on failure).
    pub scores: Option<Scores>,
    /// Reference perplexity (when asked for).
    pub perplexity: Option<ItemPerplexity>,
    /// Timings.
    pub timings: Timings,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Per-model aggregate in `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    /// Model name.
    pub name: String,
    /// Its GGUF.
    pub gguf: PathBuf,
    /// Items attempted.
    pub items: usize,
    /// Items that failed.
    pub failed: usize,
    /// Corpus chrF over answered items.
    pub chrf: Option<f64>,
    /// Mean ROUGE-L F1.
    pub rouge_l: Option<f64>,
    /// Exact-match rate.
    pub exact_match: Option<f64>,
    /// Token-weighted reference perplexity.
    pub perplexity: Option<f64>,
    /// Teacher-forced top-1 accuracy on reference tokens.
    pub top1_accuracy: Option<f64>,
    /// Generated tokens over decode seconds, all items.
    pub eval_tokens_per_second: Option<f64>,
    /// Prompt tokens over prefill seconds, all items.
    pub prompt_tokens_per_second: Option<f64>,
    /// Wall-clock seconds for the model.
    pub seconds: f64,
    /// Why the model could not be evaluated at all, if so.
    pub error: Option<String>,
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Dataset file.
    pub dataset: PathBuf,
    /// Engine used.
    pub engine: EngineKind,
    /// Why that engine (e.g. "Ollama 0.12.3 answered at http://127.0.0.1:11434").
    pub engine_reason: String,
    /// Settings.
    pub settings: RunSettings,
    /// Per model.
    pub models: Vec<ModelSummary>,
    /// Failed items, all models.
    pub failed_items: usize,
    /// Items attempted, all models.
    pub total_items: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Errors that stop a run (per-item failures are recorded instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing results failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Ollama was required but is not reachable, or the client could not be built.
    #[error("Ollama: {0}")]
    Ollama(#[from] crate::ollama::Error),
    /// Bad arguments (no models, duplicate names, ...).
    #[error("{0}")]
    InvalidInput(String),
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        io(source)
    })
}
