//! Text helpers shared by the metrics: Python-compatible whitespace splitting, Turkish
//! casefolding and a punctuation test.

use unicode_normalization::UnicodeNormalization;

/// Whether `c` is whitespace for Python's `str.split()` (which sacrebleu uses).
///
/// Python's `str.isspace` is Unicode `White_Space` plus the ASCII separators
/// U+001C..U+001F, which Rust's [`char::is_whitespace`] does not include.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Splits like Python's argument-less `str.split()`: runs of whitespace separate tokens,
/// and leading/trailing whitespace gives no empty token.
pub(crate) fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

/// Lowercases Turkish text the Turkish way, after NFC normalisation.
///
/// `İ` (U+0130, or `I` + combining dot above before NFC) becomes `i` and dotless capital `I`
/// becomes `ı`; everything else follows Unicode lowercasing. A plain `to_lowercase` would turn
/// `I` into `i` (wrong for Turkish) and `İ` into `i̇` (two code points).
pub fn turkish_casefold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.nfc() {
        match c {
            'İ' => out.push('i'),
            'I' => out.push('ı'),
            _ => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// Whether `c` counts as punctuation for answer normalisation.
///
/// All ASCII punctuation and symbols (`!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~`), the Latin-1
/// punctuation signs (`¡ § « ¶ · » ¿`), the General Punctuation block (dashes, curly quotes,
/// `…`, `‰`, primes; not its spaces or invisible formatting characters) and the CJK and
/// fullwidth brackets and stops that show up in copied text. Letters and digits of every
/// script are kept.
pub(crate) fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c, '¡' | '§' | '«' | '¶' | '·' | '»' | '¿')
        || ('\u{2010}'..='\u{2027}').contains(&c)
        || ('\u{2030}'..='\u{205E}').contains(&c)
        || ('\u{3001}'..='\u{3003}').contains(&c)
        || ('\u{3008}'..='\u{3011}').contains(&c)
        || matches!(c, '\u{FF01}'..='\u{FF0F}' | '\u{FF1A}'..='\u{FF20}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turkish_casefold_handles_dotted_and_dotless_i() {
        assert_eq!(turkish_casefold("İSTANBUL"), "istanbul");
        assert_eq!(turkish_casefold("IŞIK"), "ışık");
        assert_eq!(turkish_casefold("I\u{307}zmir"), "izmir");
        assert_eq!(turkish_casefold("ÇĞÖŞÜ"), "çğöşü");
    }

    #[test]
    fn py_split_matches_python() {
        let v: Vec<&str> = py_split("  a\tb\u{1f}c\u{a0}d  ").collect();
        assert_eq!(v, ["a", "b", "c", "d"]);
        assert_eq!(py_split("   ").count(), 0);
    }
}
