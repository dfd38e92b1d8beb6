//! Chat formatting and tokenisation with completion-only loss masks.
//!
//! A record is rendered through the model's chat template; only the tokens of assistant turns
//! (their text and the template's end-of-turn tokens) carry loss. The spans are found by
//! rendering each prefix of the conversation: the assistant turn `i` covers the tokens between
//! `render(messages[..i], add_generation_prompt = true)` and `render(messages[..=i])`.

use serde::Serialize;
use tb_model::{ChatMessage, TextTokenizer};

use crate::error::{Error, Result};
use crate::record::Record;

/// A tokenised example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedExample {
    /// Record id.
    pub id: String,
    /// Token ids of the whole conversation.
    pub input_ids: Vec<u32>,
    /// `true` for tokens the model is trained to predict (assistant tokens).
    pub loss_mask: Vec<bool>,
    /// Whether the example was cut to fit `max_seq_len`.
    pub truncated: bool,
}

impl TokenizedExample {
    /// Number of loss-bearing tokens.
    pub fn completion_tokens(&self) -> usize {
        self.loss_mask.iter().filter(|m| **m).count()
    }
}

/// What to do with examples longer than `max_seq_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Keep the first `max_seq_len` tokens (an answer may lose its end).
    Right,
    /// Leave the example out.
    Drop,
}

/// Counts from tokenising a dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TokenizeReport {
    /// Records seen.
    pub records: usize,
    /// Examples kept.
    pub kept: usize,
    /// Examples cut to `max_seq_len`.
    pub truncated: usize,
    /// Examples dropped (too long under [`Truncation::Drop`], or no completion token left).
    pub dropped: usize,
    /// Token count of each kept example, in order.
    pub lengths: Vec<usize>,
    /// Loss-bearing tokens in all kept examples.
    pub completion_tokens: usize,
    /// All tokens in all kept examples.
    pub total_tokens: usize,
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Tokenises one record with its completion-only mask (no truncation).
pub fn tokenize_record(tokenizer: &TextTokenizer, record: &Record) -> Result<TokenizedExample> {
    let wrap = |source| Error::Model {
        id: record.id.clone(),
        source,
    };
    let messages = record.messages();
    let full = tokenizer.encode_chat(&messages, false).map_err(wrap)?;
    let mut mask = vec![false; full.len()];
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let before: &[ChatMessage] = &messages[..i];
        let prompt = tokenizer.encode_chat(before, true).map_err(wrap)?;
        let upto = tokenizer
            .encode_chat(&messages[..=i], false)
            .map_err(wrap)?;
        let start = common_prefix(&prompt, &full);
        let end = common_prefix(&upto, &full).max(start);
        for flag in &mut mask[start..end] {
            *flag = true;
        }
    }
    Ok(TokenizedExample {
        id: record.id.clone(),
        input_ids: full,
        loss_mask: mask,
        truncated: false,
    })
}

/// Tokenises every record, applying the truncation policy.
pub fn tokenize_records(
    tokenizer: &TextTokenizer,
    records: &[Record],
    max_seq_len: usize,
    truncation: Truncation,
) -> Result<(Vec<TokenizedExample>, TokenizeReport)> {
    if max_seq_len < 2 {
        return Err(Error::Settings(format!(
            "max_seq_len must be at least 2, got {max_seq_len}"
        )));
    }
    let mut report = TokenizeReport {
        records: records.len(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let mut ex = tokenize_record(tokenizer, record)?;
        if ex.input_ids.len() > max_seq_len {
            match truncation {
                Truncation::Drop => {
                    report.dropped += 1;
                    continue;
                }
                Truncation::Right => {
                    ex.input_ids.truncate(max_seq_len);
                    ex.loss_mask.truncate(max_seq_len);
                    ex.truncated = true;
                }
            }
        }
        // Token 0 is never predicted; an example with nothing to learn is useless.
        if ex.loss_mask.iter().skip(1).all(|m| !m) {
            report.dropped += 1;
            continue;
        }
        report.truncated += usize::from(ex.truncated);
        report.kept += 1;
        report.lengths.push(ex.input_ids.len());
        report.completion_tokens += ex.completion_tokens();
        report.total_tokens += ex.input_ids.len();
        out.push(ex);
    }
    Ok((out, report))
}
