//! ROUGE-L (Lin 2004) F1 on Turkish-aware tokens.
//!
//! Google's `rouge_score` lowercases and then keeps only `[a-z0-9]`, which deletes
//! `ç ğ ı ö ş ü` and splits Turkish words apart. Here tokens are maximal runs of Unicode
//! letters, marks and digits after NFC and Turkish casefolding, so `Işık` and `IŞIK` are the
//! same token and `ışık` is never confused with `isik`. No stemming. The F-measure is
//! `rouge_score`'s (β = 1): `2PR / (P + R)`.

use super::text::turkish_casefold;
use super::{check_lengths, MetricError};

/// Precision, recall and F1 of the longest common subsequence, each in 0–1.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RougeScore {
    /// LCS length / hypothesis tokens.
    pub precision: f64,
    /// LCS length / reference tokens.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

/// Tokenises for ROUGE: NFC, Turkish casefold, then runs of alphanumeric characters.
pub fn rouge_tokenize(text: &str) -> Vec<String> {
    turkish_casefold(text)
        .split(|c: char| !(c.is_alphanumeric() || is_combining_mark(c)))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Combining diacritics that NFC could not compose (kept inside tokens).
fn is_combining_mark(c: char) -> bool {
    ('\u{300}'..='\u{36F}').contains(&c)
}

/// ROUGE-L of one hypothesis against one reference.
pub fn rouge_l(hypothesis: &str, reference: &str) -> RougeScore {
    let hyp = rouge_tokenize(hypothesis);
    let reference = rouge_tokenize(reference);
    if hyp.is_empty() || reference.is_empty() {
        return RougeScore::default();
    }
    let lcs = lcs_len(&hyp, &reference) as f64;
    let precision = lcs / hyp.len() as f64;
    let recall = lcs / reference.len() as f64;
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    RougeScore {
        precision,
        recall,
        f1,
    }
}

/// Mean ROUGE-L (precision, recall and F1 each averaged over segments, like `rouge_score`'s
/// aggregator without bootstrap). Empty input gives all zeros.
pub fn rouge_l_corpus<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[R],
) -> Result<RougeScore, MetricError> {
    check_lengths(hypotheses.len(), references.len())?;
    if hypotheses.is_empty() {
        return Ok(RougeScore::default());
    }
    let mut sum = RougeScore::default();
    for (h, r) in hypotheses.iter().zip(references) {
        let s = rouge_l(h.as_ref(), r.as_ref());
        sum.precision += s.precision;
        sum.recall += s.recall;
        sum.f1 += s.f1;
    }
    let n = hypotheses.len() as f64;
    Ok(RougeScore {
        precision: sum.precision / n,
        recall: sum.recall / n,
        f1: sum.f1 / n,
    })
}

fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_keeps_turkish_letters() {
        assert_eq!(
            rouge_tokenize("IŞIK, İstanbul'da çok güzel!"),
            ["ışık", "istanbul", "da", "çok", "güzel"]
        );
    }

    #[test]
    fn lcs_based_scores() {
        let s = rouge_l(
            "kargo yarın teslim edilecek",
            "kargonuz yarın teslim edilecek",
        );
        assert!((s.precision - 0.75).abs() < 1e-12);
        assert!((s.recall - 0.75).abs() < 1e-12);
        assert!((s.f1 - 0.75).abs() < 1e-12);
        assert_eq!(rouge_l("", "bir şey").f1, 0.0);
    }

    #[test]
    fn dotless_i_is_not_dotted_i() {
        assert!(rouge_l("ışık", "isik").f1 == 0.0);
        assert!((rouge_l("IŞIK", "ışık").f1 - 1.0).abs() < 1e-12);
    }
}
