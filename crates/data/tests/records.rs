//! JSONL validation errors name file, line and field; tokenisation masks only assistant tokens.

use std::path::{Path, PathBuf};

use tb_data::{
    packed_batch, padded_batch, tokenize_record, tokenize_records, Dataset, Truncation, IGNORE,
};
use tb_model::TextTokenizer;

fn write(lines: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    (dir, path)
}

fn err(lines: &[&str]) -> String {
    let (_dir, path) = write(lines);
    Dataset::load(&path).unwrap_err().to_string()
}

const GOOD: &str = r#"{"id": "a-1", "category": "billing", "instruction": "Faturam ne kadar?", "output": "Uygulamadan görebilirsiniz."}"#;

#[test]
fn accepts_both_shapes() {
    let multi = r#"{"id": "m-1", "category": "app", "messages": [{"role": "system", "content": "Kısa yanıtla."}, {"role": "user", "content": "Şifre?"}, {"role": "assistant", "content": "Sıfırlayın."}, {"role": "user", "content": "Nasıl?"}, {"role": "assistant", "content": "Giriş ekranından."}]}"#;
    let (_d, path) = write(&[GOOD, "", multi]);
    let ds = Dataset::load(&path).unwrap();
    assert_eq!(ds.records.len(), 2);
    assert_eq!(ds.records[1].line, 3);
    assert_eq!(ds.records[1].messages().len(), 5);
    assert_eq!(ds.records[1].reference(), "Giriş ekranından.");
}

#[test]
fn errors_name_file_line_and_field() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[GOOD, "{\"id\": \"x\","],
            ":2: field `<json>`: invalid JSON",
        ),
        (
            &[GOOD, GOOD],
            ":2: field `id`: duplicate id `a-1` (first used on line 1)",
        ),
        (
            &[r#"{"id": "a", "category": "c", "instruction": "x", "output": "  "}"#],
            ":1: field `output`: is empty",
        ),
        (
            &[r#"{"id": "a", "category": "c", "instruction": "x"}"#],
            ":1: field `output`: missing",
        ),
        (
            &[r#"{"id": "a", "category": "c", "instruction": "x", "output": "y", "outptu": "z"}"#],
            ":1: field `outptu`: unknown field",
        ),
        (
            &[r#"{"id": 3, "category": "c", "instruction": "x", "output": "y"}"#],
            ":1: field `id`: expected a string",
        ),
        (
            &[r#"{"id": "a", "category": "c", "messages": [{"role": "user", "content": "x"}]}"#],
            ":1: field `messages`: must end with an assistant message",
        ),
        (
            &[
                r#"{"id": "a", "category": "c", "messages": [{"role": "assistant", "content": "x"}]}"#,
            ],
            ":1: field `messages[0].role`: expected `user`",
        ),
        (
            &[
                r#"{"id": "a", "category": "c", "messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "y"}]}"#,
            ],
            ":1: field `messages[0].content`: is empty",
        ),
        (
            &[
                r#"{"id": "a", "category": "c", "split": "paraphrase", "instruction": "x", "output": "y"}"#,
            ],
            ":1: field `probe_of`: missing",
        ),
        (
            &[
                r#"{"id": "a", "category": "c", "split": "test", "instruction": "x", "output": "y"}"#,
            ],
            ":1: field `split`",
        ),
        (&["[1, 2]"], ":1: field `<json>`: expected a JSON object"),
    ];
    for (lines, want) in cases {
        let e = err(lines);
        assert!(
            e.contains("data.jsonl") && e.contains(want),
            "want {want:?}, got {e}"
        );
    }
    let (_d, path) = write(&["", "  "]);
    assert!(Dataset::load(&path)
        .unwrap_err()
        .to_string()
        .contains("empty"));
    assert!(Dataset::load(Path::new("/nonexistent/x.jsonl"))
        .unwrap_err()
        .to_string()
        .contains("/nonexistent/x.jsonl"));
}

fn tokenizer() -> TextTokenizer {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures/tokenizer");
    TextTokenizer::from_dir(dir).unwrap()
}

#[test]
fn completion_only_mask_covers_answers_and_end_of_turn() {
    let tok = tokenizer();
    let multi = r#"{"id": "m-1", "category": "app", "messages": [{"role": "user", "content": "Şifre?"}, {"role": "assistant", "content": "Sıfırlayın."}, {"role": "user", "content": "Nasıl?"}, {"role": "assistant", "content": "Giriş ekranından."}]}"#;
    let (_d, path) = write(&[GOOD, multi]);
    let ds = Dataset::load(&path).unwrap();
    let eos = tok.eos().unwrap().id;
    for r in &ds.records {
        let ex = tokenize_record(&tok, r).unwrap();
        assert_eq!(ex.input_ids.len(), ex.loss_mask.len());
        // The masked tokens decode to exactly the assistant answers plus their end-of-turn marks.
        let masked: Vec<u32> = ex
            .input_ids
            .iter()
            .zip(&ex.loss_mask)
            .filter(|(_, m)| **m)
            .map(|(t, _)| *t)
            .collect();
        let text = tok.decode(&masked, false).unwrap();
        let answers: Vec<String> = r
            .messages()
            .iter()
            .filter(|m| m.role == "assistant")
            .map(|m| m.content.clone())
            .collect();
        let expected: String = answers.iter().map(|a| format!("{a}<|im_end|>\n")).collect();
        assert_eq!(text, expected, "{}", r.id);
        assert_eq!(masked.iter().filter(|&&t| t == eos).count(), answers.len());
        assert!(!ex.loss_mask[0]);
    }
}

#[test]
fn truncation_policy_is_counted() {
    let tok = tokenizer();
    let (_d, path) = write(&[GOOD]);
    let ds = Dataset::load(&path).unwrap();
    let full = tokenize_record(&tok, &ds.records[0])
        .unwrap()
        .input_ids
        .len();
    let (ex, rep) = tokenize_records(&tok, &ds.records, full - 3, Truncation::Right).unwrap();
    assert_eq!((rep.kept, rep.truncated, rep.dropped), (1, 1, 0));
    assert_eq!(ex[0].input_ids.len(), full - 3);
    let (ex, rep) = tokenize_records(&tok, &ds.records, full - 3, Truncation::Drop).unwrap();
    assert_eq!((ex.len(), rep.kept, rep.dropped), (0, 0, 1));
    // Cutting into the prompt leaves nothing to learn: dropped, not kept.
    let (_, rep) = tokenize_records(&tok, &ds.records, 4, Truncation::Right).unwrap();
    assert_eq!((rep.kept, rep.dropped), (0, 1));
    assert!(tokenize_records(&tok, &ds.records, 1, Truncation::Right).is_err());
}

#[test]
fn batches_keep_every_loss_token_once() {
    let tok = tokenizer();
    let lines: Vec<String> = (0..6)
        .map(|i| format!(r#"{{"id": "r{i}", "category": "c", "instruction": "Soru {i}: {}", "output": "Yanıt {}"}}"#, "ç".repeat(i), "ğ".repeat(2 * i + 1)))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (_d, path) = write(&refs);
    let ds = Dataset::load(&path).unwrap();
    let (ex, rep) = tokenize_records(&tok, &ds.records, 512, Truncation::Right).unwrap();
    let all: Vec<_> = ex.iter().collect();
    let want: usize = ex
        .iter()
        .map(|e| e.loss_mask.iter().skip(1).filter(|m| **m).count())
        .sum();
    let padded = padded_batch(&all, 0);
    let packed = packed_batch(&all, 128, 0);
    for b in [&padded, &packed] {
        assert_eq!(b.loss_tokens, want);
        assert_eq!(b.targets.iter().filter(|t| **t != IGNORE).count(), want);
        assert_eq!(b.real_tokens, rep.total_tokens);
    }
    assert!(packed.rows < padded.rows);
    assert!(packed.padding_fraction() < padded.padding_fraction());
}
