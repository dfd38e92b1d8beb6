//! Evaluation runs: every model answers every selected dataset item ([`select_items`]: all, or
//! a per-split sample) through Ollama or the embedded engine, answers are scored against the
//! references, and results are written as they come.
//!
//! Output, in the run directory:
//! - `results.jsonl`: one [`ItemResult`] per line, written and synced after each item, so a
//!   crash loses at most the item in flight. A failed item is a line with `error` set; the run
//!   goes on. Each line records what the answer depends on ([`AnswerKey`]).
//! - `summary.json`: one [`ModelSummary`] per model plus the engine used and why, written to a
//!   temporary file and renamed into place. It is computed from the items as `results.jsonl`
//!   holds them, in dataset order, so a resumed run ends with the metrics of an uninterrupted one.
//!
//! An output folder whose `results.jsonl` holds results is refused unless
//! [`RunSettings::resume`] is set; then the run continues it, keeping the lines answered with the
//! same [`AnswerKey`] and engine (`resume.rs` has the rules).
//!
//! A model may be a base GGUF plus a llama.cpp LoRA adapter GGUF ([`ModelSpec::adapter`]):
//! Ollama gets both blobs (`/api/create` with `files` and `adapters`, Modelfile `ADAPTER`), the
//! embedded engine applies the adapter at run time ([`crate::engine::LoraAdapter`]). The adapter
//! is checked against its base before any work ([`Error::Adapter`]).
//!
//! Engine choice ([`EngineChoice::Auto`]): Ollama when `GET /api/version` answers at
//! `OLLAMA_HOST`, else the embedded engine. Perplexity always comes from the embedded engine
//! (Ollama cannot score given text), when asked for. With [`RunSettings::judge`], a model on the
//! same Ollama grades every answer against its reference ([`crate::judge`]); that needs the
//! Ollama engine.

mod ollama_model;
mod resolve;
mod resume;
mod run;
mod select;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use ollama_model::{create_ollama_model, create_request};
pub use resolve::{resolve_engine, ResolvedEngine};
pub use resume::AnswerKey;
pub use run::run_evaluation;
pub(crate) use run::to_role;
pub use select::select_items;

use crate::engine::Kernel;
use crate::judge::Judgement;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// Ollama's HTTP API (or tools/ollama-compat).
    Ollama,
    /// The embedded GGUF engine.
    Embedded,
}

impl EngineKind {
    /// The name results files use: `ollama` or `embedded`.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Ollama => "ollama",
            EngineKind::Embedded => "embedded",
        }
    }
}

/// A model to evaluate.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSpec {
    /// Name used in results (and, sanitised, as the Ollama model name).
    pub name: String,
    /// Its GGUF file (the base, when there is an adapter).
    pub gguf: PathBuf,
    /// A llama.cpp LoRA adapter GGUF (`general.type = "adapter"`, `adapter.type = "lora"`)
    /// applied on top of `gguf`: the pair is evaluated as one model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<PathBuf>,
}

impl ModelSpec {
    /// The model `name` in the GGUF `gguf`, without an adapter.
    pub fn new(name: impl Into<String>, gguf: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            gguf: gguf.into(),
            adapter: None,
        }
    }
}

/// Settings of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSettings {
    /// Most new tokens per answer.
    pub max_tokens: usize,
    /// Ollama `num_ctx`.
    pub num_ctx: u32,
    /// Ollama `seed` (answers are greedy: temperature 0).
    pub seed: i64,
    /// Also score the reference answers teacher-forced with the embedded engine.
    pub perplexity: bool,
    /// The Ollama model that grades every answer 1–5 against its reference ([`crate::judge`]);
    /// needs the Ollama engine.
    pub judge: Option<String>,
    /// At most N items of each split, spread over its categories ([`select_items`] has the
    /// rule); `None`: every item.
    #[serde(default)]
    pub per_split: Option<usize>,
    /// Only the first N items (of the [`Self::per_split`] selection when that is set).
    pub limit: Option<usize>,
    /// Dot-product path of the embedded engine (not written: `summary.json` reads back
    /// [`Kernel::Auto`]).
    #[serde(skip)]
    pub kernel: Kernel,
    /// Continue the run whose `results.jsonl` is already in the output folder: keep the items
    /// answered with the same [`AnswerKey`], answer the rest. When false, an output folder that
    /// holds results is an error ([`Error::ExistingResults`]). Not written: `summary.json`
    /// counts the kept items instead ([`Summary::resumed_items`]).
    #[serde(skip)]
    pub resume: bool,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            num_ctx: 4096,
            seed: 42,
            perplexity: false,
            judge: None,
            per_split: None,
            limit: None,
            kernel: Kernel::Auto,
            resume: false,
        }
    }
}

/// Scores of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Sentence chrF (0–100, sacrebleu's definition).
    #[serde(deserialize_with = "f64_or_nan")]
    pub chrf: f64,
    /// ROUGE-L F1 (0–1, Turkish casefolding).
    #[serde(deserialize_with = "f64_or_nan")]
    pub rouge_l: f64,
    /// Normalised exact match.
    pub exact_match: bool,
}

/// Teacher-forced score of the reference answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ItemPerplexity {
    /// Perplexity over the completion tokens.
    #[serde(deserialize_with = "f64_or_nan")]
    pub perplexity: f64,
    /// Summed NLL (nats).
    #[serde(deserialize_with = "f64_or_nan")]
    pub nll: f64,
    /// Completion tokens scored.
    pub tokens: usize,
    /// Tokens where the model's top-1 was the reference.
    pub top1_hits: usize,
}

/// Timings of one answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Wall-clock seconds for the answer (request or local generation).
    #[serde(deserialize_with = "f64_or_nan")]
    pub seconds: f64,
    /// Prompt tokens.
    pub prompt_tokens: Option<u64>,
    /// Generated tokens.
    pub eval_tokens: Option<u64>,
    /// Prefill speed.
    pub prompt_tokens_per_second: Option<f64>,
    /// Decode speed.
    pub eval_tokens_per_second: Option<f64>,
    /// Model load time: Ollama's `load_duration` of the request; for the embedded engine, the
    /// seconds spent opening the model (and applying its adapter), on the first item answered
    /// after it was opened (`None` on the others).
    pub load_seconds: Option<f64>,
}

/// Reads a number that JSON holds as `null` as NaN: serde_json writes NaN and ±inf as `null`, and
/// a line must read back (the summary is computed from lines read back).
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One line of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub split: Option<String>,
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
    /// The judge's grade (with [`RunSettings::judge`]).
    #[serde(default)]
    pub judge: Option<Judgement>,
    /// Timings.
    pub timings: Timings,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// What the answer depends on; a resumed run keeps the line only when this matches its own
    /// (a line without it, e.g. when the GGUF could not be read, is never kept).
    #[serde(default)]
    pub answered_with: Option<AnswerKey>,
}

/// Per-model aggregate in `summary.json`. Every field is written; the `Option`s are `null` when
/// there is nothing to measure (no answered item, no perplexity or judge asked for).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSummary {
    /// Model name.
    pub name: String,
    /// Its GGUF (the base, when there is an adapter).
    pub gguf: PathBuf,
    /// The LoRA adapter GGUF applied on top of `gguf`, if any.
    #[serde(default)]
    pub adapter: Option<PathBuf>,
    /// Seconds to load the model for its first answer: Ollama's `load_duration` of the model's
    /// first request, or the embedded engine's time to open the model and apply the adapter.
    /// From the first item answered in this invocation, else (a model whose items were all
    /// kept by a resume) the first kept item that recorded one.
    #[serde(default)]
    pub load_seconds: Option<f64>,
    /// Items attempted.
    pub items: usize,
    /// Items that failed.
    pub failed: usize,
    /// Items kept from an earlier, interrupted run of the same folder (not answered again).
    pub resumed: usize,
    /// Corpus chrF over answered items.
    pub chrf: Option<f64>,
    /// Corpus BLEU over answered items (0–100, sacrebleu's `corpus_bleu`: 13a tokens, exp
    /// smoothing).
    pub bleu: Option<f64>,
    /// Mean ROUGE-L F1.
    pub rouge_l: Option<f64>,
    /// Exact-match rate.
    pub exact_match: Option<f64>,
    /// Mean judge grade (1–5) over the graded items.
    pub judge_score: Option<f64>,
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

/// `summary.json`, read back by tb-report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Dataset file.
    pub dataset: PathBuf,
    /// Engine used.
    pub engine: EngineKind,
    /// Why that engine (e.g. "Ollama 0.12.3 answered at http://127.0.0.1:11434").
    pub engine_reason: String,
    /// What answered, for reports: `ollama <version>` for Ollama, `ollama-compat (llama.cpp)`
    /// for tools/ollama-compat (a version ending in `-compat`), `embedded` for the embedded
    /// engine ([`ResolvedEngine::name`]).
    #[serde(default)]
    pub engine_name: String,
    /// Settings.
    pub settings: RunSettings,
    /// Per model.
    pub models: Vec<ModelSummary>,
    /// Failed items, all models.
    pub failed_items: usize,
    /// Items attempted, all models.
    pub total_items: usize,
    /// Items kept from an earlier, interrupted run of the same folder, all models.
    pub resumed_items: usize,
    /// Wall-clock seconds of this invocation.
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
    /// A model's LoRA adapter is not a LoRA GGUF, or does not fit its base.
    #[error("model `{model}`: {source}")]
    Adapter {
        /// The model name.
        model: String,
        /// What the engine found (names the file, and the tensor when there is one).
        #[source]
        source: crate::engine::Error,
    },
    /// Resuming a folder that holds no `results.jsonl`.
    #[error("{dir} is not an evaluation run: it has no results.jsonl")]
    NotAnEvaluation {
        /// The folder.
        dir: PathBuf,
    },
    /// A new run into a folder whose `results.jsonl` already holds results.
    #[error("{path} already holds evaluation results")]
    ExistingResults {
        /// The results file.
        path: PathBuf,
    },
    /// A line of an earlier `results.jsonl`, other than the last, is not an [`ItemResult`].
    #[error("{path}:{line}: not an evaluation result ({message}); only a cut-off last line is repaired on resume")]
    BadResultsLine {
        /// The results file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What the parser said.
        message: String,
    },
}

/// `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<tb_gguf::fsio::FileError> for Error {
    fn from(e: tb_gguf::fsio::FileError) -> Self {
        Error::Io {
            path: e.path,
            source: e.source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_with_non_finite_numbers_reads_back() {
        let item = ItemResult {
            model: "m".into(),
            engine: EngineKind::Embedded,
            id: "x".into(),
            category: "c".into(),
            split: None,
            prompt: "p".into(),
            reference: "r".into(),
            answer: Some("a".into()),
            done_reason: None,
            scores: Some(Scores {
                chrf: f64::NAN,
                rouge_l: 0.5,
                exact_match: false,
            }),
            perplexity: Some(ItemPerplexity {
                perplexity: f64::INFINITY,
                nll: f64::INFINITY,
                tokens: 3,
                top1_hits: 0,
            }),
            judge: None,
            timings: Timings::default(),
            error: None,
            answered_with: None,
        };
        let back: ItemResult =
            serde_json::from_str(&serde_json::to_string(&item).unwrap()).unwrap();
        assert!(back.scores.unwrap().chrf.is_nan());
        assert!(back.perplexity.unwrap().nll.is_nan());
        assert_eq!(back.scores.unwrap().rouge_l, 0.5);
    }
}
