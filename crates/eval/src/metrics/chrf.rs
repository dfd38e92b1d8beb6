//! chrF and chrF++ (Popović 2015, 2017) exactly as sacrebleu 2.x computes them.
//!
//! Defaults are sacrebleu's: character n-grams up to order 6, word n-grams up to order 0
//! (chrF) or 2 (chrF++), β = 2, whitespace removed before extracting character n-grams,
//! case kept, and "effective order" averaging (no ε-smoothing). Corpus scores sum the
//! per-segment n-gram statistics and compute one F-score, they are not a mean of
//! sentence scores.

use std::collections::HashMap;
use std::hash::Hash;

use super::text::{is_py_space, py_split};
use super::{check_lengths, MetricError};

/// sacrebleu's chrF punctuation set, split off the start or end of words for word n-grams.
const PUNCTS: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// A chrF configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chrf {
    /// Maximum character n-gram order (sacrebleu default 6).
    pub char_order: usize,
    /// Maximum word n-gram order: 0 for chrF, 2 for chrF++.
    pub word_order: usize,
    /// Recall weight β (sacrebleu default 2).
    pub beta: u32,
    /// Keep whitespace inside character n-grams (sacrebleu default `false`).
    pub whitespace: bool,
}

/// Per-order n-gram counts `[hypothesis, reference, matched]`, character orders first, then
/// word orders. Add statistics of several segments to get the corpus statistics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChrfStatistics {
    /// One `[hyp, ref, match]` triple per n-gram order.
    pub counts: Vec<[u64; 3]>,
}

impl ChrfStatistics {
    /// Adds another segment's statistics to these (element-wise).
    pub fn add(&mut self, other: &ChrfStatistics) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), [0; 3]);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            for k in 0..3 {
                a[k] += b[k];
            }
        }
    }
}

impl Default for Chrf {
    fn default() -> Self {
        Self::CHRF
    }
}

impl Chrf {
    /// chrF with sacrebleu's defaults (`chrF2`).
    pub const CHRF: Chrf = Chrf {
        char_order: 6,
        word_order: 0,
        beta: 2,
        whitespace: false,
    };

    /// chrF++ with sacrebleu's defaults (`chrF2++`, word order 2).
    pub const CHRF_PLUS_PLUS: Chrf = Chrf {
        word_order: 2,
        ..Self::CHRF
    };

    /// n-gram statistics of one hypothesis against one reference.
    pub fn statistics(&self, hypothesis: &str, reference: &str) -> ChrfStatistics {
        let hyp_chars = char_ngrams(hypothesis, self.char_order, self.whitespace);
        let ref_chars = char_ngrams(reference, self.char_order, self.whitespace);
        let mut counts: Vec<[u64; 3]> = hyp_chars
            .iter()
            .zip(&ref_chars)
            .map(|(h, r)| match_statistics(h, r))
            .collect();
        if self.word_order > 0 {
            let hyp_words = split_punctuation(hypothesis);
            let ref_words = split_punctuation(reference);
            for n in 1..=self.word_order {
                let h = word_ngrams(&hyp_words, n);
                let r = word_ngrams(&ref_words, n);
                counts.push(match_statistics(&h, &r));
            }
        }
        ChrfStatistics { counts }
    }

    /// The score (0–100) for already computed statistics.
    pub fn score_from_statistics(&self, statistics: &ChrfStatistics) -> f64 {
        const EPS: f64 = 1e-16;
        let factor = f64::from(self.beta * self.beta);
        let (mut avg_prec, mut avg_rec, mut effective_order) = (0.0_f64, 0.0_f64, 0_u32);
        for &[n_hyp, n_ref, n_match] in &statistics.counts {
            let prec = if n_hyp > 0 {
                n_match as f64 / n_hyp as f64
            } else {
                EPS
            };
            let rec = if n_ref > 0 {
                n_match as f64 / n_ref as f64
            } else {
                EPS
            };
            if n_hyp > 0 && n_ref > 0 {
                avg_prec += prec;
                avg_rec += rec;
                effective_order += 1;
            }
        }
        if effective_order == 0 {
            return 0.0;
        }
        avg_prec /= f64::from(effective_order);
        avg_rec /= f64::from(effective_order);
        if avg_prec + avg_rec == 0.0 {
            return 0.0;
        }
        100.0 * (1.0 + factor) * avg_prec * avg_rec / (factor * avg_prec + avg_rec)
    }

    /// Sentence-level score (0–100) of one hypothesis against one reference.
    pub fn sentence_score(&self, hypothesis: &str, reference: &str) -> f64 {
        self.score_from_statistics(&self.statistics(hypothesis, reference))
    }

    /// Corpus-level score (0–100): statistics summed over segments, then one F-score.
    pub fn corpus_score<H: AsRef<str>, R: AsRef<str>>(
        &self,
        hypotheses: &[H],
        references: &[R],
    ) -> Result<f64, MetricError> {
        check_lengths(hypotheses.len(), references.len())?;
        let mut total = ChrfStatistics::default();
        for (h, r) in hypotheses.iter().zip(references) {
            total.add(&self.statistics(h.as_ref(), r.as_ref()));
        }
        Ok(self.score_from_statistics(&total))
    }
}

/// Counts of every character n-gram of orders 1..=max_order, over code points like Python.
fn char_ngrams(
    line: &str,
    max_order: usize,
    include_whitespace: bool,
) -> Vec<HashMap<String, u64>> {
    let chars: Vec<char> = if include_whitespace {
        line.chars().collect()
    } else {
        line.chars().filter(|&c| !is_py_space(c)).collect()
    };
    (1..=max_order)
        .map(|n| {
            let mut counter = HashMap::new();
            for window in chars.windows(n) {
                *counter
                    .entry(window.iter().collect::<String>())
                    .or_insert(0) += 1;
            }
            counter
        })
        .collect()
}

/// Word n-grams of order `n`, joined with single spaces like sacrebleu.
fn word_ngrams(words: &[&str], n: usize) -> HashMap<String, u64> {
    let mut counter = HashMap::new();
    for window in words.windows(n) {
        *counter.entry(window.join(" ")).or_insert(0) += 1;
    }
    counter
}

/// `[hyp_count, ref_count, match_count]`; sacrebleu reports a hypothesis count of 0 when the
/// reference has no n-grams of that order.
fn match_statistics<K: Eq + Hash>(hyp: &HashMap<K, u64>, reference: &HashMap<K, u64>) -> [u64; 3] {
    let mut hyp_count = 0;
    let mut match_count = 0;
    for (ngram, &count) in hyp {
        hyp_count += count;
        if let Some(&r) = reference.get(ngram) {
            match_count += count.min(r);
        }
    }
    let ref_count = reference.values().sum();
    [
        if reference.is_empty() { 0 } else { hyp_count },
        ref_count,
        match_count,
    ]
}

/// sacrebleu's `_remove_punctuation`: whitespace tokens, with one punctuation character split
/// off the end of a word, or else off its start.
fn split_punctuation(sentence: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for word in py_split(sentence) {
        let mut chars = word.chars();
        let (first, last) = (chars.next(), chars.next_back());
        match (first, last) {
            (Some(_), None) => out.push(word),
            (Some(f), Some(l)) => {
                if PUNCTS.contains(l) {
                    let cut = word.len() - l.len_utf8();
                    out.extend([&word[..cut], &word[cut..]]);
                } else if PUNCTS.contains(f) {
                    let cut = f.len_utf8();
                    out.extend([&word[..cut], &word[cut..]]);
                } else {
                    out.push(word);
                }
            }
            (None, _) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_strings_score_100() {
        let s = "Kargo takibi için sipariş numaranızı girin.";
        assert!((Chrf::CHRF.sentence_score(s, s) - 100.0).abs() < 1e-9);
        assert!((Chrf::CHRF_PLUS_PLUS.sentence_score(s, s) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn empty_hypothesis_scores_zero() {
        assert_eq!(Chrf::CHRF.sentence_score("", "Merhaba dünya"), 0.0);
    }

    #[test]
    fn punctuation_is_split_from_word_edges() {
        assert_eq!(
            split_punctuation("Merhaba, (dünya) !"),
            ["Merhaba", ",", "(dünya", ")", "!"]
        );
    }

    #[test]
    fn corpus_length_mismatch_is_an_error() {
        assert!(Chrf::CHRF.corpus_score(&["a"], &["a", "b"]).is_err());
    }
}
