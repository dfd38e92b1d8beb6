//! Exact match after normalisation, and answer length.

use unicode_normalization::UnicodeNormalization;

use super::text::{is_punctuation, turkish_casefold};

/// Normalises an answer for exact match: NFC, Turkish casefold, punctuation removed, runs of
/// whitespace collapsed to one space, ends trimmed.
///
/// Punctuation is deleted rather than replaced by a space (like SQuAD's normaliser), so
/// `"İade-kodu"` and `"iadekodu"` match but `"iade kodu"` does not.
pub fn normalize_answer(text: &str) -> String {
    let folded = turkish_casefold(text);
    let stripped: String = folded.chars().filter(|&c| !is_punctuation(c)).collect();
    stripped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether hypothesis and reference are equal after [`normalize_answer`].
pub fn exact_match(hypothesis: &str, reference: &str) -> bool {
    normalize_answer(hypothesis) == normalize_answer(reference)
}

/// The length of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AnswerLength {
    /// Unicode scalar values after NFC (so `İ` counts once however it was encoded).
    pub chars: usize,
    /// Whitespace-separated words.
    pub words: usize,
}

impl AnswerLength {
    /// Measures `text`.
    pub fn of(text: &str) -> Self {
        Self {
            chars: text.nfc().count(),
            words: text.split_whitespace().count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_is_turkish_aware() {
        assert_eq!(
            normalize_answer("  İADE   süresi: 14 gün! "),
            "iade süresi 14 gün"
        );
        assert!(exact_match("IŞIK.", "ışık"));
        assert!(!exact_match("ışık", "isik"));
        assert!(exact_match("“Evet”", "evet"));
        assert!(exact_match("I\u{307}zmir", "İzmir"));
    }

    #[test]
    fn answer_length_counts_composed_chars() {
        assert_eq!(
            AnswerLength::of("I\u{307}zmir iki"),
            AnswerLength { chars: 9, words: 2 }
        );
    }
}
