//! BLEU (Papineni et al. 2002) exactly as sacrebleu 2.x computes it.
//!
//! Tokenisation is sacrebleu's default `13a` (mteval-v13a). [`Bleu::corpus`] is
//! `sacrebleu.corpus_bleu` (exp smoothing, no effective order); [`Bleu::sentence`] is
//! `sacrebleu.sentence_bleu` (exp smoothing with effective order). Scores are 0–100.

use std::collections::HashMap;

use super::text::py_split;
use super::{check_lengths, MetricError};

/// Highest n-gram order (sacrebleu's `max_ngram_order`).
pub const MAX_ORDER: usize = 4;

/// A smoothing method for zero n-gram matches (sacrebleu's `smooth_method`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smoothing {
    /// No smoothing: a zero precision makes the score 0.
    None,
    /// Replace zero counts by this value (sacrebleu default 0.1).
    Floor(f64),
    /// Add this value to counts and totals of orders ≥ 2 (sacrebleu default 1).
    AddK(f64),
    /// NIST/mteval "exp" smoothing: the k-th zero precision becomes 1 / (2^k · total).
    Exp,
}

/// A BLEU configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bleu {
    /// The smoothing method.
    pub smoothing: Smoothing,
    /// Stop at the highest order the hypothesis has n-grams for (sentence BLEU).
    pub effective_order: bool,
}

/// A BLEU score with its sufficient statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct BleuScore {
    /// The score, 0–100.
    pub score: f64,
    /// Matched n-grams per order (1..=4).
    pub counts: [u64; MAX_ORDER],
    /// Hypothesis n-grams per order.
    pub totals: [u64; MAX_ORDER],
    /// Precision per order in percent, after smoothing.
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty.
    pub brevity_penalty: f64,
    /// Hypothesis length in tokens.
    pub sys_len: u64,
    /// Reference length in tokens.
    pub ref_len: u64,
}

impl Bleu {
    /// sacrebleu's `corpus_bleu` defaults: exp smoothing, no effective order.
    pub const fn corpus() -> Self {
        Self {
            smoothing: Smoothing::Exp,
            effective_order: false,
        }
    }

    /// sacrebleu's `sentence_bleu` defaults: exp smoothing with effective order.
    pub const fn sentence() -> Self {
        Self {
            smoothing: Smoothing::Exp,
            effective_order: true,
        }
    }

    /// Score of one hypothesis against one reference.
    pub fn sentence_score(&self, hypothesis: &str, reference: &str) -> BleuScore {
        let stats = segment_statistics(hypothesis, reference);
        self.compute(stats)
    }

    /// Corpus score: statistics summed over segments, then one BLEU.
    pub fn corpus_score<H: AsRef<str>, R: AsRef<str>>(
        &self,
        hypotheses: &[H],
        references: &[R],
    ) -> Result<BleuScore, MetricError> {
        check_lengths(hypotheses.len(), references.len())?;
        let mut total = Statistics::default();
        for (h, r) in hypotheses.iter().zip(references) {
            total.add(&segment_statistics(h.as_ref(), r.as_ref()));
        }
        Ok(self.compute(total))
    }

    fn compute(&self, stats: Statistics) -> BleuScore {
        let Statistics {
            sys_len,
            ref_len,
            counts,
            totals,
        } = stats;
        let brevity_penalty = if sys_len >= ref_len {
            1.0
        } else if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        };
        let mut precisions = [0.0; MAX_ORDER];
        let mut result = BleuScore {
            score: 0.0,
            counts,
            totals,
            precisions,
            brevity_penalty,
            sys_len,
            ref_len,
        };
        if counts.iter().all(|&c| c == 0) {
            return result;
        }
        let mut correct = counts.map(|c| c as f64);
        let mut total = totals.map(|t| t as f64);
        let mut smooth_mteval = 1.0;
        let mut eff_order = MAX_ORDER;
        for n in 1..=MAX_ORDER {
            if let Smoothing::AddK(k) = self.smoothing {
                if n > 1 {
                    correct[n - 1] += k;
                    total[n - 1] += k;
                }
            }
            if total[n - 1] == 0.0 {
                break;
            }
            if self.effective_order {
                eff_order = n;
            }
            if correct[n - 1] == 0.0 {
                match self.smoothing {
                    Smoothing::Exp => {
                        smooth_mteval *= 2.0;
                        precisions[n - 1] = 100.0 / (smooth_mteval * total[n - 1]);
                    }
                    Smoothing::Floor(v) => precisions[n - 1] = 100.0 * v / total[n - 1],
                    Smoothing::None | Smoothing::AddK(_) => {}
                }
            } else {
                precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1];
            }
        }
        let log_sum: f64 = precisions[..eff_order]
            .iter()
            .map(|&p| floored_log(p))
            .sum();
        result.score = brevity_penalty * (log_sum / eff_order as f64).exp();
        result.precisions = precisions;
        result
    }
}

/// sacrebleu's `my_log`: log, with log(0) floored to -9999999999.
fn floored_log(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Statistics {
    sys_len: u64,
    ref_len: u64,
    counts: [u64; MAX_ORDER],
    totals: [u64; MAX_ORDER],
}

impl Statistics {
    fn add(&mut self, o: &Statistics) {
        self.sys_len += o.sys_len;
        self.ref_len += o.ref_len;
        for n in 0..MAX_ORDER {
            self.counts[n] += o.counts[n];
            self.totals[n] += o.totals[n];
        }
    }
}

fn segment_statistics(hypothesis: &str, reference: &str) -> Statistics {
    let hyp = tokenize_13a(hypothesis.trim_end_matches(super::text::is_py_space));
    let refr = tokenize_13a(reference.trim_end_matches(super::text::is_py_space));
    let hyp_tokens: Vec<&str> = py_split(&hyp).collect();
    let ref_tokens: Vec<&str> = py_split(&refr).collect();
    let ref_ngrams = ngram_counts(&ref_tokens);
    let mut stats = Statistics {
        sys_len: hyp_tokens.len() as u64,
        ref_len: ref_tokens.len() as u64,
        ..Statistics::default()
    };
    for (ngram, count) in ngram_counts(&hyp_tokens) {
        let n = ngram.len() - 1;
        stats.totals[n] += count;
        if let Some(&r) = ref_ngrams.get(&ngram) {
            stats.counts[n] += count.min(r);
        }
    }
    stats
}

fn ngram_counts<'a>(tokens: &[&'a str]) -> HashMap<Vec<&'a str>, u64> {
    let mut counts = HashMap::new();
    for n in 1..=MAX_ORDER {
        for window in tokens.windows(n) {
            *counts.entry(window.to_vec()).or_insert(0) += 1;
        }
    }
    counts
}

/// sacrebleu's `13a` tokeniser (mteval-v13a): tokens joined by single spaces.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let chars: Vec<char> = format!(" {line} ").chars().collect();
    // Rule 1: pad every ASCII punctuation character except ' , - . (and digits/letters).
    let mut step: Vec<char> = Vec::with_capacity(chars.len() * 2);
    for &c in &chars {
        if is_13a_symbol(c) {
            step.extend([' ', c, ' ']);
        } else {
            step.push(c);
        }
    }
    // Rules 2–4 are `re.sub` passes: left-to-right, non-overlapping two-character matches.
    let step = sub_pairs(
        &step,
        |a, b| !a.is_ascii_digit() && matches!(b, '.' | ','),
        |a, b| vec![a, ' ', b, ' '],
    );
    let step = sub_pairs(
        &step,
        |a, b| matches!(a, '.' | ',') && !b.is_ascii_digit(),
        |a, b| vec![' ', a, ' ', b],
    );
    let step = sub_pairs(
        &step,
        |a, b| a.is_ascii_digit() && b == '-',
        |a, b| vec![a, ' ', b, ' '],
    );
    let joined: String = step.into_iter().collect();
    py_split(&joined).collect::<Vec<_>>().join(" ")
}

/// The character class `[\{-\~\[-\` -\&\(-\+\:-\@\/]` of 13a's first rule.
fn is_13a_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

fn sub_pairs(
    chars: &[char],
    matches: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char) -> Vec<char>,
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 2);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && matches(chars[i], chars[i + 1]) {
            out.extend(replace(chars[i], chars[i + 1]));
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a_matches_sacrebleu() {
        assert_eq!(
            tokenize_13a("Fiyat 3.5 TL, değil mi?"),
            "Fiyat 3.5 TL , değil mi ?"
        );
        assert_eq!(tokenize_13a("(İade) 14-gün"), "( İade ) 14 - gün");
        assert_eq!(tokenize_13a("a.,b"), "a . , b");
    }

    #[test]
    fn identical_sentence_scores_100() {
        let s = "Siparişiniz yarın kargoya verilecek.";
        assert!((Bleu::sentence().sentence_score(s, s).score - 100.0).abs() < 1e-9);
    }

    #[test]
    fn empty_hypothesis_scores_zero() {
        assert_eq!(
            Bleu::sentence().sentence_score("", "Merhaba dünya").score,
            0.0
        );
    }
}
