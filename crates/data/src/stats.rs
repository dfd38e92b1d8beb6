//! Dataset statistics: token-length summaries and near-duplicate detection (character 5-gram
//! Jaccard after Turkish-aware case folding).

use std::collections::HashSet;

use serde::Serialize;

/// Summary of a list of lengths.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LengthSummary {
    /// How many.
    pub count: usize,
    /// Shortest.
    pub min: usize,
    /// Median (lower middle for even counts).
    pub median: usize,
    /// Mean.
    pub mean: f64,
    /// 95th percentile (nearest rank).
    pub p95: usize,
    /// Longest.
    pub max: usize,
}

impl LengthSummary {
    /// Summarises `lengths`; `None` when empty.
    pub fn of(lengths: &[usize]) -> Option<Self> {
        if lengths.is_empty() {
            return None;
        }
        let mut v = lengths.to_vec();
        v.sort_unstable();
        let n = v.len();
        let rank = |q: f64| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        Some(Self {
            count: n,
            min: v[0],
            median: v[(n - 1) / 2],
            mean: v.iter().sum::<usize>() as f64 / n as f64,
            p95: rank(0.95),
            max: v[n - 1],
        })
    }
}

/// Lower-cases Turkish text correctly: `İ`→`i`, `I`→`ı`, then Unicode lower case.
pub fn turkish_lowercase(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'İ' => out.push('i'),
            'I' => out.push('ı'),
            other => out.extend(other.to_lowercase()),
        }
    }
    out
}

/// Normalises for comparison: Turkish lower case, whitespace runs collapsed to one space, trimmed.
pub fn normalise_for_overlap(text: &str) -> String {
    turkish_lowercase(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The set of character n-grams of the normalised text.
pub fn char_ngrams(text: &str, n: usize) -> HashSet<String> {
    let chars: Vec<char> = normalise_for_overlap(text).chars().collect();
    if chars.len() < n {
        return std::iter::once(chars.iter().collect()).collect();
    }
    chars.windows(n).map(|w| w.iter().collect()).collect()
}

/// Jaccard similarity of two n-gram sets (1.0 for two empty sets).
pub fn jaccard(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turkish_case_folding() {
        assert_eq!(turkish_lowercase("IĞDIR İZMİR Şule"), "ığdır izmir şule");
        assert_eq!(
            normalise_for_overlap("  Faturamı\n\n ÖDEDİM "),
            "faturamı ödedim"
        );
    }

    #[test]
    fn jaccard_of_ngrams() {
        let a = char_ngrams("faturamı ödedim", 5);
        assert!((jaccard(&a, &a) - 1.0).abs() < 1e-12);
        let b = char_ngrams("tarifemi değiştirmek istiyorum", 5);
        assert!(jaccard(&a, &b) < 0.1);
    }

    #[test]
    fn length_summary() {
        let s = LengthSummary::of(&[5, 1, 3, 2, 4]).unwrap();
        assert_eq!((s.min, s.median, s.p95, s.max), (1, 3, 5, 5));
        assert!((s.mean - 3.0).abs() < 1e-12);
        assert!(LengthSummary::of(&[]).is_none());
    }
}
