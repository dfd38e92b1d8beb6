//! Resuming an evaluation: which lines of an earlier `results.jsonl` a run keeps.
//!
//! A line is kept when its model and item belong to this run, it has no `error`, the same engine
//! kind answered it, and its [`AnswerKey`] equals the one this run would write: same GGUF bytes,
//! same LoRA adapter bytes (or no adapter on both sides), same item (conversation, reference, category, split), same `max_tokens`, `num_ctx`, `seed`,
//! `perplexity`, judge model and dot-product kernel. Every other line is answered again: failed
//! items are retried, mismatched ones re-answered (a warning gives the count), and lines of
//! models or items outside this run, or repeating a kept item, are dropped, so the finished file
//! holds each item of the run exactly once.
//!
//! The last line is dropped when it has no newline or does not parse: the process died while
//! writing it. Any other line that does not parse is an error naming file and line, since it
//! means the file is not what this module wrote. When a line is dropped, the file is rewritten
//! atomically with the kept lines, byte for byte, before new answers are appended.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tb_data::Record;
use tb_gguf::fsio::write_atomic;

use super::run::split_name;
use super::{EngineKind, Error, ItemResult, ModelSpec, Result, RunSettings};
use crate::engine::Kernel;
use crate::ollama::BlobDigest;

/// What an answer depends on besides the engine kind; stored with every line of
/// `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerKey {
    /// `sha256:<hex>` of the GGUF file (the digest Ollama gives its blob), so chat template and
    /// tokenizer, which live in the file, are covered too.
    pub model_digest: String,
    /// `sha256:<hex>` of the model's LoRA adapter GGUF; absent for a model without one (and in
    /// lines written before adapters existed, which had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_digest: Option<String>,
    /// `sha256:<hex>` of the item's conversation (roles and texts, reference included),
    /// category and split.
    pub item_digest: String,
    /// Most new tokens.
    pub max_tokens: usize,
    /// Ollama `num_ctx`.
    pub num_ctx: u32,
    /// Ollama `seed`.
    pub seed: i64,
    /// Whether the reference was also scored teacher-forced.
    pub perplexity: bool,
    /// The judge model, if answers were graded (absent in lines written without a judge).
    #[serde(default)]
    pub judge: Option<String>,
    /// Dot-product path of the embedded engine: `auto` or `scalar` (they may round differently,
    /// which can change a greedy answer).
    pub kernel: String,
}

/// The key every (model, item) of a run is answered with.
pub(super) struct Plan {
    engine: EngineKind,
    settings: RunSettings,
    /// By model name: the GGUF's digest and its adapter's (`None` inside when it has none);
    /// `None` when a file could not be read (the model then fails to load).
    model_digests: HashMap<String, Option<(String, Option<String>)>>,
    /// By item id.
    item_digests: HashMap<String, String>,
}

impl Plan {
    /// Hashes every model's GGUF and every item.
    pub(super) fn new(
        models: &[ModelSpec],
        records: &[&Record],
        engine: EngineKind,
        settings: &RunSettings,
    ) -> Self {
        let model_digests = models
            .iter()
            .map(|m| (m.name.clone(), model_digests(m)))
            .collect();
        let item_digests = records
            .iter()
            .map(|r| (r.id.clone(), item_digest(r)))
            .collect();
        Self {
            engine,
            settings: settings.clone(),
            model_digests,
            item_digests,
        }
    }

    /// The key of `id` answered by `model`; `None` outside the run or for an unreadable GGUF
    /// or adapter.
    pub(super) fn key(&self, model: &str, id: &str) -> Option<AnswerKey> {
        let s = &self.settings;
        let (model_digest, adapter_digest) = self.model_digests.get(model)?.clone()?;
        Some(AnswerKey {
            model_digest,
            adapter_digest,
            item_digest: self.item_digests.get(id)?.clone(),
            max_tokens: s.max_tokens,
            num_ctx: s.num_ctx,
            seed: s.seed,
            perplexity: s.perplexity,
            judge: s.judge.clone(),
            kernel: match s.kernel {
                Kernel::Auto => "auto",
                Kernel::Scalar => "scalar",
            }
            .to_owned(),
        })
    }

    fn verdict(&self, item: &ItemResult) -> Verdict {
        if !self.model_digests.contains_key(&item.model)
            || !self.item_digests.contains_key(&item.id)
        {
            Verdict::Outside
        } else if item.error.is_some() {
            Verdict::Failed
        } else if item.engine != self.engine
            || item.answered_with.is_none()
            || item.answered_with != self.key(&item.model, &item.id)
        {
            Verdict::Stale
        } else {
            Verdict::Keep
        }
    }
}

enum Verdict {
    Keep,
    Failed,
    Stale,
    Outside,
}

/// The digests of `m`'s GGUF and adapter; `None` when one of them cannot be read.
fn model_digests(m: &ModelSpec) -> Option<(String, Option<String>)> {
    let digest = |p: &Path| BlobDigest::of_file(p).ok().map(|d| d.as_str().to_owned());
    let adapter = match &m.adapter {
        Some(a) => Some(digest(a)?),
        None => None,
    };
    Some((digest(&m.gguf)?, adapter))
}

fn item_digest(r: &Record) -> String {
    let messages: Vec<(String, String)> = r
        .messages()
        .into_iter()
        .map(|m| (m.role, m.content))
        .collect();
    let canonical = serde_json::json!([r.category, split_name(r.split), messages]);
    BlobDigest::of_bytes(canonical.to_string().as_bytes())
        .as_str()
        .to_owned()
}

/// Items kept from an earlier run, by (model, id).
#[derive(Default)]
pub(super) struct Previous {
    kept: HashMap<(String, String), ItemResult>,
}

impl Previous {
    /// Takes the kept answer of `id` by `model`, if any.
    pub(super) fn take(&mut self, model: &str, id: &str) -> Option<ItemResult> {
        self.kept.remove(&(model.to_owned(), id.to_owned()))
    }
}

/// Checks `out` before any work: a fresh run refuses a `results.jsonl` that holds results, a
/// resumed one needs `results.jsonl` to exist.
pub(super) fn check_out(out: &Path, resume: bool) -> Result<()> {
    let path = out.join("results.jsonl");
    if resume && !path.is_file() {
        return Err(Error::NotAnEvaluation {
            dir: out.to_path_buf(),
        });
    }
    if !resume && std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
        return Err(Error::ExistingResults { path });
    }
    Ok(())
}

/// Opens `out/results.jsonl` for appending: a new empty file for a fresh run or, when
/// `resume`, the earlier file reduced to the lines `plan` keeps. Call [`check_out`] first.
pub(super) fn open_results(out: &Path, resume: bool, plan: &Plan) -> Result<(File, Previous)> {
    let path = out.join("results.jsonl");
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    if !resume {
        std::fs::create_dir_all(out).map_err(|source| Error::Io {
            path: out.to_path_buf(),
            source,
        })?;
        let file = File::create(&path).map_err(io)?;
        return Ok((file, Previous::default()));
    }
    let bytes = std::fs::read(&path).map_err(io)?;
    let (previous, kept, changed) = sort_lines(&path, &bytes, plan)?;
    if changed {
        write_atomic(&path, &kept)?;
    }
    // The summary of the earlier run describes lines that may be gone now; the run writes a new
    // one when it ends.
    let summary = out.join("summary.json");
    match std::fs::remove_file(&summary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::Io {
                path: summary,
                source: e,
            })
        }
        _ => {}
    }
    let file = OpenOptions::new().append(true).open(&path).map_err(io)?;
    Ok((file, previous))
}

/// Counts of what happened to the earlier lines.
#[derive(Default)]
struct Tally {
    failed: usize,
    stale: usize,
    outside: usize,
    /// 1-based line dropped because it was cut off.
    cut: Option<usize>,
}

/// Splits the earlier file into kept items and the bytes to keep; `true` when a line was
/// dropped (the file must be rewritten).
fn sort_lines(path: &Path, bytes: &[u8], plan: &Plan) -> Result<(Previous, Vec<u8>, bool)> {
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // The piece after the last newline: empty for a whole file, else a line cut off mid-write.
    let tail = lines.pop().unwrap_or_default();
    let mut tally = Tally {
        cut: (!tail.is_empty()).then_some(lines.len() + 1),
        ..Tally::default()
    };
    let mut previous = Previous::default();
    let mut kept = Vec::new();
    let last = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        let item: ItemResult = match serde_json::from_slice(line) {
            Ok(item) => item,
            Err(_) if i + 1 == last && tally.cut.is_none() => {
                tally.cut = Some(i + 1);
                continue;
            }
            Err(e) => {
                return Err(Error::BadResultsLine {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: parse_message(&e),
                })
            }
        };
        let key = (item.model.clone(), item.id.clone());
        match plan.verdict(&item) {
            Verdict::Keep if !previous.kept.contains_key(&key) => {
                kept.extend_from_slice(line);
                kept.push(b'\n');
                previous.kept.insert(key, item);
            }
            Verdict::Keep | Verdict::Outside => tally.outside += 1,
            Verdict::Failed => tally.failed += 1,
            Verdict::Stale => tally.stale += 1,
        }
    }
    report(path, &tally, previous.kept.len());
    let changed = tally.cut.is_some() || tally.failed + tally.stale + tally.outside > 0;
    Ok((previous, kept, changed))
}

/// serde_json's message with the position inside the line as a column only (the line number
/// it gives counts within the one line parsed).
fn parse_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => format!("{} at column {}", &text[..at], e.column()),
        None => text,
    }
}

fn report(path: &Path, tally: &Tally, kept: usize) {
    let file = path.display();
    if let Some(line) = tally.cut {
        tracing::warn!("{file}: dropped line {line}, cut off when the earlier run stopped");
    }
    if tally.stale > 0 {
        tracing::warn!(
            "{file}: {} items were answered with another model or adapter file or other settings \
             (engine, max_tokens, num_ctx, seed, perplexity, kernel or the item's text differ); answering \
             them again",
            tally.stale
        );
    }
    if tally.failed > 0 {
        tracing::warn!("{file}: retrying {} failed items", tally.failed);
    }
    if tally.outside > 0 {
        tracing::warn!(
            "{file}: dropped {} lines of models or items not in this run, or repeated",
            tally.outside
        );
    }
    tracing::info!("{file}: resuming with {kept} items already answered");
}
