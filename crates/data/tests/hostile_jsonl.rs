//! Hostile JSONL files: a byte order mark and CRLF line ends load like the clean file; invalid
//! UTF-8, NUL bytes, truncated JSON and mistyped fields are errors naming the file, the line and
//! (for bytes) the column; a 10 MB line loads or fails in linear time with a short message; and a
//! deterministic mutation campaign never makes `Dataset::load` panic.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tb_data::{Dataset, Error};
use tb_testkit::mutation::{mutate_bytes, panic_message, Rng};

/// A clean dataset: both record shapes, Turkish text, a blank line.
const CLEAN: &[&str] = &[
    r#"{"id": "a-1", "category": "billing", "instruction": "Faturam ne kadar?", "output": "Uygulamadan görebilirsiniz."}"#,
    r#"{"id": "a-2", "category": "app", "instruction": "Özet çıkar", "input": "Şifre sıfırlama ekranı.", "output": "Şifre ekranı."}"#,
    "",
    r#"{"id": "m-1", "category": "app", "messages": [{"role": "system", "content": "Kısa yanıtla."}, {"role": "user", "content": "Şifre?"}, {"role": "assistant", "content": "Sıfırlayın."}]}"#,
    r#"{"id": "p-1", "category": "app", "split": "paraphrase", "probe_of": "a-1", "instruction": "Fatura tutarım?", "output": "Uygulamada."}"#,
];

fn write(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("data.jsonl");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn load(bytes: &[u8]) -> (tempfile::TempDir, Result<Dataset, Error>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), bytes);
    let r = Dataset::load(path);
    (dir, r)
}

fn err(bytes: &[u8]) -> String {
    let (dir, r) = load(bytes);
    let e = r.expect_err("must fail").to_string();
    let path = dir.path().join("data.jsonl").display().to_string();
    assert!(e.contains(&path), "the error names the file: {e}");
    e
}

#[test]
fn byte_order_mark_and_crlf_load_like_the_clean_file() {
    let (_d, clean) = load(CLEAN.join("\n").as_bytes());
    let clean = clean.unwrap().records;
    assert_eq!(clean.len(), 4);
    let variants = [
        format!("\u{feff}{}", CLEAN.join("\n")),
        CLEAN.join("\r\n"),
        format!("\u{feff}{}\r\n", CLEAN.join("\r\n")),
        format!("{}\n\r\n\n", CLEAN.join("\r\n")),
    ];
    for v in &variants {
        let (_d, r) = load(v.as_bytes());
        let records = r.unwrap_or_else(|e| panic!("{v:?}: {e}")).records;
        assert_eq!(records, clean, "{v:?}");
    }
    // Columns of errors on the first line count the byte order mark.
    let e = err("\u{feff}{\"id\": }".as_bytes());
    assert!(
        e.contains(":1: field `<json>`: invalid JSON at byte column 11"),
        "{e}"
    );
    let e = err(b"{\"id\": }");
    assert!(
        e.contains(":1: field `<json>`: invalid JSON at byte column 8"),
        "{e}"
    );
    // Only a leading mark is skipped; one inside the file is not whitespace to JSON.
    let e = err(format!("{}\n\u{feff}{}", CLEAN[0], CLEAN[1]).as_bytes());
    assert!(
        e.contains(":2: field `<json>`: invalid JSON at byte column 1"),
        "{e}"
    );
}

#[test]
fn invalid_utf8_and_nul_bytes_name_line_and_column() {
    let mut bytes = format!("{}\n{}", CLEAN[0], CLEAN[1]).into_bytes();
    let at = CLEAN[0].len() + 1 + 9;
    bytes[at] = 0xFF;
    let e = err(&bytes);
    assert!(e.contains("data.jsonl:2:10: invalid UTF-8"), "{e}");
    bytes[at] = 0;
    let e = err(&bytes);
    assert!(e.contains("data.jsonl:2:10: NUL byte"), "{e}");
    // A NUL before an invalid byte on the same line is the one reported.
    bytes[at + 2] = 0xC3;
    let e = err(&bytes);
    assert!(e.contains(":2:10: NUL byte"), "{e}");
    // A truncated multi-byte character, a lone surrogate, an overlong encoding.
    for bad in [&b"\xC3"[..], b"\xED\xA0\x80", b"\xC0\xAF"] {
        let mut line = b"{\"id\": \"".to_vec();
        line.extend_from_slice(bad);
        line.extend_from_slice(b"\"}");
        let e = err(&line);
        assert!(e.contains(":1:9: invalid UTF-8"), "{bad:?}: {e}");
    }
    // UTF-16 with and without its byte order mark: the first odd byte, the first NUL.
    let utf16: Vec<u8> = CLEAN[0].encode_utf16().flat_map(u16::to_le_bytes).collect();
    let e = err(&[&[0xFF, 0xFE][..], &utf16].concat());
    assert!(e.contains(":1:1: invalid UTF-8"), "{e}");
    let e = err(&utf16);
    assert!(
        e.contains(":1:2: NUL byte (a binary or UTF-16 file?)"),
        "{e}"
    );
    // The `\u0000` escape is valid JSON text, so it is not a NUL byte of the file.
    let (_d, r) = load(br#"{"id": "a", "category": "c", "instruction": "x\u0000", "output": "y"}"#);
    assert_eq!(r.unwrap().records.len(), 1);
}

#[test]
fn truncated_json_and_wrong_types_name_line_and_field() {
    let text = format!("{}\n{}\n", CLEAN[0], CLEAN[3]);
    let second = CLEAN[0].len() + 1;
    for cut in 1..text.len() {
        let (dir, r) = load(&text.as_bytes()[..cut]);
        let whole_lines = cut == second - 1 || cut == second || cut == text.len() - 1;
        match r {
            Ok(ds) => assert!(whole_lines, "cut {cut} loaded {} records", ds.records.len()),
            Err(e) => {
                let e = e.to_string();
                let line = if cut < second { ":1:" } else { ":2:" };
                assert!(
                    e.contains(&dir.path().display().to_string()) && e.contains(line),
                    "cut {cut}: {e}"
                );
            }
        }
    }
    let base: Value = serde_json::from_str(CLEAN[3]).unwrap();
    let cases: &[(&str, Value, &str)] = &[
        ("/id", json!(7), "field `id`: expected a string, found 7"),
        ("/id", json!(null), "field `id`: missing"),
        (
            "/category",
            json!(["x"]),
            "field `category`: expected a string",
        ),
        (
            "/messages",
            json!({"role": "user"}),
            "field `messages`: expected a list",
        ),
        (
            "/messages",
            json!("hi"),
            "field `messages`: expected a list",
        ),
        (
            "/messages/0",
            json!("system"),
            "field `messages[0]`: expected an object",
        ),
        (
            "/messages/1/content",
            json!(3),
            "field `messages[1].content`: missing or not a string",
        ),
        (
            "/messages/1/role",
            json!(true),
            "field `messages[1].role`: missing or not a string",
        ),
        (
            "/messages/2/role",
            json!("user"),
            "field `messages[2].role`: expected `assistant`",
        ),
        ("/split", json!(1), "field `split`: expected a string"),
    ];
    for (pointer, value, want) in cases {
        let mut v = base.clone();
        match v.pointer_mut(pointer) {
            Some(slot) => *slot = value.clone(),
            None => {
                v[&pointer[1..]] = value.clone();
            }
        }
        let e = err(format!("{}\n{v}", CLEAN[0]).as_bytes());
        assert!(e.contains(&format!(":2: {want}")), "want {want:?}, got {e}");
    }
}

#[test]
fn ten_megabyte_lines_load_or_fail_in_linear_time() {
    let big = "ğ".repeat(5 << 20);
    let started = Instant::now();
    let line = json!({"id": "big", "category": "c", "instruction": "x", "output": big}).to_string();
    let (_d, r) = load(format!("{}\n{line}\n", CLEAN[0]).as_bytes());
    let ds = r.unwrap();
    assert_eq!(ds.records[1].reference().len(), 10 << 20);
    // Failing 10 MB lines: an unterminated string, a huge mistyped field, a huge duplicate id,
    // a NUL at the very end. Messages quote at most a short excerpt.
    let numbers = vec![1_000_000u32; 1 << 20];
    let cases = [
        (format!("{{\"id\": \"{big}"), "invalid JSON"),
        (
            json!({"id": numbers, "category": "c", "instruction": "x", "output": "y"}).to_string(),
            "field `id`: expected a string, found [1000000,1000000",
        ),
        (
            format!("{line}\n{line}"),
            ":2: field `id`: duplicate id `big`",
        ),
        (format!("{line}\0"), "NUL byte"),
        (
            json!({"id": "s", "category": "c", "split": big, "instruction": "x", "output": "y"})
                .to_string(),
            "field `split`: `ğğğ",
        ),
    ];
    for (text, want) in &cases {
        let e = err(text.as_bytes());
        assert!(
            e.contains(want),
            "want {want:?}, got {}",
            &e[..e.len().min(300)]
        );
        assert!(e.len() < 400, "a {}-byte message", e.len());
    }
    // Debug builds take well under a second per 10 MB line; a quadratic scan would take hours.
    let spent = started.elapsed();
    assert!(spent < Duration::from_secs(20), "{spent:?}");
}

/// Byte sequences that break UTF-8, JSON or line splitting.
const HOSTILE: &[&[u8]] = &[
    b"\0",
    b"\xFF",
    b"\xEF\xBB\xBF",
    b"\xC3",
    b"\xED\xA0\x80",
    b"\r",
    b"\r\n",
    b"\n",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b",",
    b":",
    b"null",
    b"1e999999",
    b"-0",
    b"\t",
    b"\xE2\x80\xA8",
];

/// Values a field may be swapped for.
fn hostile_values() -> Vec<Value> {
    vec![
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1.0e308),
        json!(""),
        json!("   "),
        json!("x"),
        json!("user"),
        json!("assistant"),
        json!("heldout"),
        json!("paraphrase"),
        json!("a-1"),
        json!([]),
        json!([{"role": "user", "content": "x"}]),
        json!({}),
        json!({"role": "assistant", "content": "y"}),
        json!("\u{0}"),
    ]
}

/// Swaps one field of one record for a hostile value (or drops it, or adds an unknown one).
fn mutate_field(rng: &mut Rng, lines: &mut [String]) {
    let i = rng.below(lines.len());
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(&lines[i]) else {
        return;
    };
    let keys = [
        "id",
        "category",
        "instruction",
        "input",
        "output",
        "messages",
        "split",
        "probe_of",
        "extra",
    ];
    let key = *rng.pick(&keys);
    if rng.one_in(5) {
        obj.remove(key);
    } else if key == "messages" && rng.one_in(2) {
        if let Some(Value::Array(list)) = obj.get_mut("messages") {
            let n = rng.below(list.len().max(1));
            let slot = rng.pick(&["role", "content", "extra"]).to_string();
            match list.get_mut(n) {
                Some(Value::Object(m)) => {
                    m.insert(slot, rng.pick(&hostile_values()).clone());
                }
                _ => list.push(rng.pick(&hostile_values()).clone()),
            }
        }
    } else {
        obj.insert(key.into(), rng.pick(&hostile_values()).clone());
    }
    lines[i] = Value::Object(obj).to_string();
}

#[test]
fn mutation_run_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("data.jsonl");
    let path_text = path.display().to_string();
    let mut rng = Rng::new(0xDA7A_5E70_0000_0001);
    let (mut loaded, mut rejected) = (0usize, 0usize);
    for iter in 0..4000 {
        let mut lines: Vec<String> = CLEAN.iter().map(|s| s.to_string()).collect();
        let crlf = rng.one_in(4);
        let bytes = match rng.below(3) {
            0 => {
                for _ in 0..1 + rng.below(2) {
                    mutate_field(&mut rng, &mut lines);
                }
                lines.join(if crlf { "\r\n" } else { "\n" }).into_bytes()
            }
            1 => {
                let mut b = lines.join("\n").into_bytes();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(b.len() + 1);
                    let insert = *rng.pick(HOSTILE);
                    if rng.one_in(2) {
                        b.splice(at..at, insert.iter().copied());
                    } else {
                        let end = (at + insert.len()).min(b.len());
                        b.splice(at..end, insert.iter().copied());
                    }
                }
                b
            }
            _ => {
                let mut b = lines.join("\n").into_bytes();
                let len = b.len();
                mutate_bytes(&mut rng, &mut b, 0..len);
                b
            }
        };
        let n_lines = bytes.split(|&b| b == b'\n').count();
        std::fs::write(&path, &bytes).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| Dataset::load(&path)))
            .unwrap_or_else(|p| panic!("iteration {iter}: panicked: {}", panic_message(&*p)));
        match r {
            Ok(ds) => {
                assert!(!ds.records.is_empty());
                assert!(
                    ds.records.iter().all(|r| r.line <= n_lines),
                    "iteration {iter}"
                );
                loaded += 1;
            }
            Err(e) => {
                let line = match &e {
                    Error::Record { line, .. } | Error::Text { line, .. } => *line,
                    _ => 1,
                };
                let e = e.to_string();
                assert!(e.contains(&path_text), "iteration {iter}: {e}");
                assert!(
                    line >= 1 && line <= n_lines,
                    "iteration {iter}: line {line}: {e}"
                );
                rejected += 1;
            }
        }
    }
    assert!(
        loaded > 500 && rejected > 2000,
        "loaded {loaded}, rejected {rejected}"
    );
}
