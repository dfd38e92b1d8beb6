//! Answer-quality metrics for Turkish text.
//!
//! chrF/chrF++ and BLEU follow sacrebleu 2.x exactly (same n-gram extraction, whitespace
//! handling, smoothing and corpus aggregation), so numbers are comparable with published
//! sacrebleu scores; `tests/metrics_vs_sacrebleu.rs` checks them against a committed fixture.
//! ROUGE-L and exact match use a tokeniser and normaliser that keep Turkish letters and
//! casefold the Turkish way (`İ`→`i`, `I`→`ı`), which Google's `rouge_score` does not.

pub mod bleu;
pub mod chrf;
pub mod exact;
pub mod rouge;
pub mod text;

pub use bleu::{Bleu, BleuScore, Smoothing};
pub use chrf::{Chrf, ChrfStatistics};
pub use exact::{exact_match, normalize_answer, AnswerLength};
pub use rouge::{rouge_l, rouge_l_corpus, rouge_tokenize, RougeScore};
pub use text::turkish_casefold;

/// Errors from corpus-level metric functions.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetricError {
    /// The hypothesis and reference lists have different lengths.
    #[error("{hypotheses} hypotheses but {references} references: every hypothesis needs exactly one reference")]
    LengthMismatch {
        /// Number of hypotheses given.
        hypotheses: usize,
        /// Number of references given.
        references: usize,
    },
}

pub(crate) fn check_lengths(hypotheses: usize, references: usize) -> Result<(), MetricError> {
    if hypotheses == references {
        Ok(())
    } else {
        Err(MetricError::LengthMismatch {
            hypotheses,
            references,
        })
    }
}
