//! A model with its tokenizer: greedy chat generation and teacher-forced perplexity.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use tb_data::record::Record;
use tb_model::generation::{argmax, pick, Sampling};
use tb_model::gguf_tokenizer::GgufVocab;
use tb_model::{ChatMessage, TextTokenizer};

use super::matmul::Kernel;
use super::model::EngineModel;
use super::{Error, Result};

/// Token texts llama.cpp also treats as end-of-generation when the vocabulary has them
/// (`llama_vocab` auto-detects these as EOG).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
];

/// Settings of one generation.
#[derive(Debug, Clone)]
pub struct GenerateSettings {
    /// Most new tokens.
    pub max_tokens: usize,
    /// Dot-product path.
    pub kernel: Kernel,
    /// Token selection (greedy, or seeded temperature + top-p as `tb_model` samples).
    pub sampling: Sampling,
}

impl Default for GenerateSettings {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            kernel: Kernel::Auto,
            sampling: Sampling::Greedy,
        }
    }
}

/// A greedy answer and its timings.
#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    /// New token ids (the stop token excluded).
    pub tokens: Vec<u32>,
    /// Decoded answer (special tokens dropped).
    pub text: String,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// `"stop"` (a stop token) or `"length"` (`max_tokens` reached), as Ollama's `done_reason`.
    pub done_reason: &'static str,
    /// Seconds spent on the prompt (prefill).
    pub prompt_seconds: f64,
    /// Seconds spent producing the new tokens after the first.
    pub decode_seconds: f64,
}

impl Completion {
    /// Decode speed: tokens after the first per second of decoding.
    pub fn decode_tokens_per_second(&self) -> Option<f64> {
        (self.tokens.len() > 1 && self.decode_seconds > 0.0)
            .then(|| (self.tokens.len() - 1) as f64 / self.decode_seconds)
    }
}

/// One scored position of a teacher-forced pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TokenScore {
    /// The reference token.
    pub target: u32,
    /// Its natural-log probability.
    pub logprob: f64,
    /// The model's most likely token there (ties: the lowest id).
    pub top1: u32,
}

/// Teacher-forced score of one item's completion tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Perplexity {
    /// Summed negative log-likelihood (nats).
    pub nll: f64,
    /// Completion tokens scored.
    pub tokens: usize,
    /// Of those, where the model's top-1 was the reference token.
    pub top1_hits: usize,
}

impl Perplexity {
    /// `exp(nll / tokens)`, `None` when nothing was scored.
    pub fn perplexity(&self) -> Option<f64> {
        (self.tokens > 0).then(|| (self.nll / self.tokens as f64).exp())
    }
}

/// Perplexity summed over many items.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PerplexityTotals {
    /// Summed negative log-likelihood (nats).
    pub nll: f64,
    /// Completion tokens scored.
    pub tokens: usize,
    /// Top-1 hits.
    pub top1_hits: usize,
    /// Items scored.
    pub items: usize,
}

impl PerplexityTotals {
    /// Adds one item.
    pub fn add(&mut self, p: &Perplexity) {
        self.nll += p.nll;
        self.tokens += p.tokens;
        self.top1_hits += p.top1_hits;
        self.items += 1;
    }

    /// Token-weighted perplexity.
    pub fn perplexity(&self) -> Option<f64> {
        (self.tokens > 0).then(|| (self.nll / self.tokens as f64).exp())
    }

    /// Fraction of completion tokens predicted exactly.
    pub fn top1_accuracy(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.top1_hits as f64 / self.tokens as f64)
    }
}

fn log_softmax_at(row: &[f32], target: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    row[target] as f64 - max - sum.ln()
}

/// An [`EngineModel`] with the tokenizer and chat template stored in its GGUF.
pub struct Session {
    model: EngineModel,
    tokenizer: TextTokenizer,
    stop_ids: Vec<u32>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("model", &self.model)
            .field("stop_ids", &self.stop_ids)
            .finish()
    }
}

impl Session {
    /// Opens the GGUF at `path` and rebuilds its tokenizer.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_adapter(path, None)
    }

    /// [`Session::open`] with the LoRA adapter GGUF `adapter` applied to the model
    /// ([`EngineModel::open_with_adapter`]); the tokenizer and template come from the base.
    pub fn open_with_adapter(path: impl AsRef<Path>, adapter: Option<&Path>) -> Result<Self> {
        let path = path.as_ref();
        let model = EngineModel::open_with_adapter(path, adapter)?;
        let wrap = |source| Error::Model {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        let vocab = GgufVocab::from_gguf(model.gguf()).map_err(wrap)?;
        let tokenizer = vocab.build().map_err(wrap)?;
        let mut stop_ids = tokenizer.stop_ids().to_vec();
        for text in EOG_TEXTS {
            if let Some(id) = tokenizer.inner().token_to_id(text) {
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        Ok(Self {
            model,
            tokenizer,
            stop_ids,
        })
    }

    /// The model.
    pub fn model(&self) -> &EngineModel {
        &self.model
    }

    /// The tokenizer (with the GGUF's chat template).
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Token ids that end generation.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    fn model_err(&self, source: tb_model::Error) -> Error {
        Error::Model {
            path: self.model.path().to_path_buf(),
            source: Box::new(source),
        }
    }

    /// The chat prompt for `messages` (template applied, generation prompt added).
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        self.tokenizer
            .encode_chat(messages, true)
            .map_err(|e| self.model_err(e))
    }

    /// Continuation of `prompt` until a stop token or `max_tokens`.
    pub fn generate(&self, prompt: &[u32], settings: &GenerateSettings) -> Result<Completion> {
        self.generate_streaming(prompt, settings, |_| {})
    }

    /// [`Session::generate`], calling `on_token` with each new token id as it is produced.
    pub fn generate_streaming(
        &self,
        prompt: &[u32],
        settings: &GenerateSettings,
        mut on_token: impl FnMut(u32),
    ) -> Result<Completion> {
        if prompt.is_empty() {
            return Err(Error::InvalidInput("the prompt has no tokens".into()));
        }
        let mut rng = settings.sampling.rng().map_err(|e| self.model_err(e))?;
        let mut cache = self.model.new_cache();
        let t0 = Instant::now();
        let mut logits =
            self.model
                .forward(prompt, &mut cache, &[prompt.len() - 1], settings.kernel)?;
        let prompt_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut tokens = Vec::new();
        let mut done_reason = "length";
        let limit = self.model.hyper().n_ctx;
        while tokens.len() < settings.max_tokens {
            let next = pick(&logits, settings.sampling, &mut rng);
            if self.stop_ids.contains(&next) {
                done_reason = "stop";
                break;
            }
            tokens.push(next);
            on_token(next);
            if tokens.len() == settings.max_tokens || cache.len() >= limit {
                break;
            }
            logits = self
                .model
                .forward(&[next], &mut cache, &[0], settings.kernel)?;
        }
        let decode_seconds = t1.elapsed().as_secs_f64();
        let text = self
            .tokenizer
            .decode(&tokens, true)
            .map_err(|e| self.model_err(e))?;
        Ok(Completion {
            tokens,
            text,
            prompt_tokens: prompt.len(),
            done_reason,
            prompt_seconds,
            decode_seconds,
        })
    }

    /// Greedy answer to a conversation.
    pub fn chat(
        &self,
        messages: &[ChatMessage],
        settings: &GenerateSettings,
    ) -> Result<Completion> {
        let prompt = self.chat_prompt(messages)?;
        self.generate(&prompt, settings)
    }

    /// Teacher-forced scores of `ids[i]` for every `i >= 1` with `mask[i]`.
    ///
    /// # Shapes
    /// - `ids`, `mask`: `[n]`
    /// - returns one [`TokenScore`] per scored position, in order
    pub fn score(&self, ids: &[u32], mask: &[bool], kernel: Kernel) -> Result<Vec<TokenScore>> {
        if ids.len() != mask.len() {
            return Err(Error::InvalidInput(format!(
                "{} token ids but {} mask entries",
                ids.len(),
                mask.len()
            )));
        }
        let rows: Vec<usize> = (1..ids.len()).filter(|&i| mask[i]).map(|i| i - 1).collect();
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut cache = self.model.new_cache();
        let logits = self.model.forward(ids, &mut cache, &rows, kernel)?;
        let v = self.model.hyper().n_vocab;
        Ok(rows
            .iter()
            .zip(logits.chunks_exact(v))
            .map(|(&r, row)| {
                let target = ids[r + 1];
                TokenScore {
                    target,
                    logprob: log_softmax_at(row, target as usize),
                    top1: argmax(row),
                }
            })
            .collect())
    }

    /// Perplexity of a record's reference answer(s): the conversation through the chat template,
    /// completion-only mask from tb-data, scored teacher-forced.
    pub fn perplexity(&self, record: &Record, kernel: Kernel) -> Result<Perplexity> {
        let ex = tb_data::tokenize::tokenize_record(&self.tokenizer, record).map_err(|source| {
            Error::Data {
                id: record.id.clone(),
                source: Box::new(source),
            }
        })?;
        let scores = self.score(&ex.input_ids, &ex.loss_mask, kernel)?;
        Ok(Perplexity {
            nll: -scores.iter().map(|s| s.logprob).sum::<f64>(),
            tokens: scores.len(),
            top1_hits: scores.iter().filter(|s| s.top1 == s.target).count(),
        })
    }
}
