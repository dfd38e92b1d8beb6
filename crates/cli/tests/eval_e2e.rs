//! `tunebench eval` end to end: two tiny llama GGUFs (written with tb-gguf), evaluated through
//! tools/ollama-compat (Ollama's API over llama.cpp) and through the embedded engine; per-item
//! results, summary, the engine record, failures recorded without stopping the run, and bad
//! input.
#![expect(clippy::print_stderr, reason = "the test reports what it compares")]

#[path = "../../eval/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::eval_setup::write_two_models;
use common::tiny::TinyLlama;
use common::{fresh_models_dir, smollm2_gguf, CompatServer};
use serde_json::Value;
use tb_gguf::GgmlType;

const DATASET: &str = r#"{"id": "t-001", "category": "billing", "split": "heldout", "instruction": "Faturamı nasıl öderim?", "output": "Faturanızı uygulamadan ödeyebilirsiniz."}
{"id": "t-002", "category": "roaming", "split": "heldout", "instruction": "Yurt dışında internet paketi var mı?", "output": "Evet, yurt dışı paketlerimiz var."}
{"id": "t-003", "category": "billing", "split": "paraphrase", "probe_of": "train-001", "instruction": "Borcumu nereden görürüm?", "output": "Borcunuzu uygulamada görebilirsiniz."}
"#;

struct Fixture {
    dir: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    dataset: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = write_two_models(dir.path());
    let dataset = dir.path().join("eval.jsonl");
    std::fs::write(&dataset, DATASET).unwrap();
    Fixture { dir, a, b, dataset }
}

fn tunebench(args: &[&str], ollama_host: &str) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(args)
        .env("OLLAMA_HOST", ollama_host)
        .env("RUST_LOG", "info")
        .output()
        .expect("run tunebench");
    eprintln!(
        "tunebench {}\n--- stderr ---\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn two_models_through_ollama_compat_and_embedded_agree() {
    let fx = fixture();
    let server = CompatServer::start(&fresh_models_dir("eval_e2e"), None);
    let model_a = format!("a={}", s(&fx.a));
    let model_b = format!("b={}", s(&fx.b));
    let out_ollama = fx.dir.path().join("run-ollama");
    let o = tunebench(
        &[
            "eval",
            "--model",
            &model_a,
            "--model",
            &model_b,
            "--dataset",
            s(&fx.dataset),
            "--engine",
            "auto",
            "--out",
            s(&out_ollama),
            "--max-tokens",
            "12",
            "--num-ctx",
            "256",
            "--perplexity",
        ],
        &server.host,
    );
    assert!(o.status.success(), "eval through ollama-compat failed");
    assert!(String::from_utf8_lossy(&o.stderr).contains("engine: Ollama"));
    let items = lines(&out_ollama.join("results.jsonl"));
    assert_eq!(items.len(), 6, "3 items x 2 models");
    for it in &items {
        assert_eq!(it["engine"], "ollama");
        assert!(it["error"].is_null(), "{it}");
        assert!(it["answer"].is_string());
        let chrf = it["scores"]["chrf"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&chrf));
        assert!(it["timings"]["eval_tokens"].as_u64().unwrap() > 0);
        assert!(it["perplexity"]["perplexity"].as_f64().unwrap() > 1.0);
        assert!(!it["prompt"].as_str().unwrap().is_empty());
        assert!(!it["reference"].as_str().unwrap().is_empty());
    }
    assert_eq!(items[0]["model"], "a");
    assert_eq!(items[3]["model"], "b");
    assert_eq!(items[2]["split"], "paraphrase");
    let sum = summary(&out_ollama);
    assert_eq!(sum["engine"], "ollama");
    assert!(sum["engine_reason"].as_str().unwrap().contains("answered"));
    assert_eq!(sum["failed_items"], 0);
    assert_eq!(sum["models"].as_array().unwrap().len(), 2);
    for m in sum["models"].as_array().unwrap() {
        assert!(m["chrf"].is_number() && m["perplexity"].is_number(), "{m}");
        assert!(m["bleu"].is_number() && m["judge_score"].is_null(), "{m}");
        assert!(m["eval_tokens_per_second"].as_f64().unwrap() > 0.0);
    }

    // The same run on the embedded engine: same prompts (the GGUF's template on both sides),
    // greedy on both sides, so the answers should match llama.cpp's.
    let out_embedded = fx.dir.path().join("run-embedded");
    let o = tunebench(
        &[
            "eval",
            "--model",
            &model_a,
            "--model",
            &model_b,
            "--dataset",
            s(&fx.dataset),
            "--engine",
            "embedded",
            "--out",
            s(&out_embedded),
            "--max-tokens",
            "12",
        ],
        &server.host,
    );
    assert!(o.status.success());
    let emb = lines(&out_embedded.join("results.jsonl"));
    assert_eq!(summary(&out_embedded)["engine"], "embedded");
    let mut same = 0;
    for (x, y) in items.iter().zip(&emb) {
        assert_eq!(y["engine"], "embedded");
        if x["answer"] == y["answer"] {
            same += 1;
        } else {
            eprintln!(
                "{} {}: ollama-compat {:?} vs embedded {:?}",
                x["model"], x["id"], x["answer"], y["answer"]
            );
        }
    }
    eprintln!("answers identical through ollama-compat and the embedded engine: {same}/6");
    // Model a answers in pieces only: its texts must agree exactly. Model b is free to emit
    // byte tokens, whose invalid UTF-8 llama.cpp and HF tokenizers render differently.
    assert!(
        items[..3]
            .iter()
            .zip(&emb[..3])
            .all(|(x, y)| x["answer"] == y["answer"]),
        "model a: answers differ between ollama-compat and the embedded engine"
    );
}

#[test]
fn auto_falls_back_to_embedded_and_failures_are_recorded() {
    let fx = fixture();
    let broken = fx.dir.path().join("broken.gguf");
    let bytes = std::fs::read(&fx.a).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    let out = fx.dir.path().join("run");
    let model_a = format!("good={}", s(&fx.a));
    let model_bad = format!("bad={}", s(&broken));
    // Port 9 (discard) on loopback: nothing answers.
    let o = tunebench(
        &[
            "eval",
            "--model",
            &model_bad,
            "--model",
            &model_a,
            "--dataset",
            s(&fx.dataset),
            "--out",
            s(&out),
            "--max-tokens",
            "4",
        ],
        "127.0.0.1:9",
    );
    assert!(
        !o.status.success(),
        "a failed model must make the exit code non-zero"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("engine: embedded"), "{stderr}");
    assert!(stderr.contains("3 of 6 items failed"), "{stderr}");
    let items = lines(&out.join("results.jsonl"));
    assert_eq!(items.len(), 6);
    for it in &items[..3] {
        let e = it["error"].as_str().unwrap();
        assert!(e.contains("broken.gguf"), "{e}");
        assert!(it["answer"].is_null());
    }
    for it in &items[3..] {
        assert!(it["error"].is_null() && it["answer"].is_string(), "{it}");
    }
    let sum = summary(&out);
    assert_eq!(sum["engine"], "embedded");
    assert!(sum["engine_reason"].as_str().unwrap().contains("no Ollama"));
    assert_eq!(sum["failed_items"], 3);

    // --engine ollama with nothing listening: an error, not a silent fallback.
    let o = tunebench(
        &[
            "eval",
            "--model",
            &model_a,
            "--dataset",
            s(&fx.dataset),
            "--engine",
            "ollama",
            "--out",
            s(&fx.dir.path().join("run2")),
        ],
        "127.0.0.1:9",
    );
    assert!(!o.status.success());

    // Bad input: a missing dataset, a malformed --model, a missing model file.
    let o = tunebench(
        &[
            "eval",
            "--model",
            &model_a,
            "--dataset",
            "/nonexistent.jsonl",
            "--out",
            s(&out),
        ],
        "127.0.0.1:9",
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.jsonl"));
    let o = tunebench(
        &[
            "eval",
            "--model",
            "no-equals-sign",
            "--dataset",
            s(&fx.dataset),
            "--out",
            s(&out),
        ],
        "127.0.0.1:9",
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("NAME=FILE.gguf"));
    let o = tunebench(
        &[
            "eval",
            "--model",
            "x=/nonexistent.gguf",
            "--dataset",
            s(&fx.dataset),
            "--out",
            s(&out),
        ],
        "127.0.0.1:9",
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.gguf"));
}

/// `--judge MODEL`: SmolLM2, created on the same ollama-compat server, grades every answer (the
/// grade in each line, its mean in the summary). A judge without the Ollama engine, or one the
/// server does not have, is refused before anything is written.
#[test]
fn judge_grades_every_answer_through_ollama_compat() {
    let fx = fixture();
    let server = CompatServer::start(&fresh_models_dir("eval_e2e_judge"), None);
    let client = tb_eval::OllamaClient::new(&server.host).unwrap();
    let digest = client.push_blob(&smollm2_gguf()).unwrap();
    let create = tb_eval::ollama::CreateRequest {
        model: "judge".into(),
        files: [("smollm2.gguf".to_owned(), digest.to_string())].into(),
        ..Default::default()
    };
    client.create(&create, |_| {}).unwrap();
    let model_a = format!("a={}", s(&fx.a));
    let run = |engine: &str, judge: &str, out: &Path| {
        let args = [
            "eval",
            "--model",
            &model_a,
            "--dataset",
            s(&fx.dataset),
            "--engine",
            engine,
            "--judge",
            judge,
            "--limit",
            "1",
            "--max-tokens",
            "8",
            "--num-ctx",
            "256",
            "--out",
            s(out),
        ];
        tunebench(&args, &server.host)
    };
    let out = fx.dir.path().join("run-judge");
    assert!(run("ollama", "judge", &out).status.success());
    let items = lines(&out.join("results.jsonl"));
    assert_eq!(items.len(), 1);
    let mut grades = Vec::new();
    for it in &items {
        assert!(it["error"].is_null(), "{it}");
        let grade = it["judge"]["score"].as_u64().unwrap();
        assert!((1..=5).contains(&grade), "{it}");
        assert!(it["judge"]["reason"].is_string(), "{it}");
        assert_eq!(it["answered_with"]["judge"], "judge");
        grades.push(grade as f64);
    }
    let sum = summary(&out);
    assert_eq!(sum["settings"]["judge"], "judge");
    assert_eq!(
        sum["models"][0]["judge_score"].as_f64(),
        Some(grades.iter().sum::<f64>() / grades.len() as f64)
    );

    for (engine, judge, says) in [
        ("embedded", "judge", "embedded engine"),
        ("ollama", "no-such-judge", "judge model `no-such-judge`"),
    ] {
        let out = fx.dir.path().join(format!("refused-{engine}"));
        let o = run(engine, judge, &out);
        assert!(!o.status.success(), "{engine} {judge}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(says), "{says}");
        assert!(!out.join("results.jsonl").exists());
    }
}

#[test]
fn damage_study_on_a_tiny_f16_gguf() {
    let fx = fixture();
    let f16 = fx.dir.path().join("tiny-f16.gguf");
    TinyLlama::default().write(&f16, GgmlType::F16);
    let out = fx.dir.path().join("damage");
    let o = tunebench(
        &[
            "eval",
            "damage",
            "--model",
            s(&f16),
            "--dataset",
            s(&fx.dataset),
            "--out",
            s(&out),
            "--chrf-items",
            "2",
            "--max-tokens",
            "4",
            "--ollama",
            "false",
        ],
        "127.0.0.1:9",
    );
    assert!(o.status.success());
    let table = String::from_utf8_lossy(&o.stdout);
    for q in ["F16", "Q8_0", "Q4_K_M", "Q4_0"] {
        assert!(table.contains(&format!("| {q} |")), "{table}");
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("damage.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        assert!(r["perplexity"].as_f64().unwrap() > 1.0, "{r}");
        assert_eq!(r["ppl_items"], 3);
        assert_eq!(r["chrf_items"], 2);
        assert!(Path::new(r["file"].as_str().unwrap()).exists());
    }
    assert!(rows[2]["weight_types"].as_str().unwrap().contains("q4_K"));
    // Rows come in the table's order (F16, Q8_0, Q4_K_M, Q4_0): rounding to 4 bits must not
    // make the model better, and 8 bits must stay within 1% of F16.
    let ppl = |i: usize| rows[i]["perplexity"].as_f64().unwrap();
    assert!(
        ppl(3) >= ppl(0) && ppl(2) >= ppl(0),
        "perplexity improved by quantization: {rows:?}"
    );
    assert!(
        (ppl(1) / ppl(0) - 1.0).abs() < 0.01,
        "Q8_0 perplexity {} vs F16 {}",
        ppl(1),
        ppl(0)
    );
    assert!(out.join("damage.md").exists());
}

#[test]
fn per_split_answers_a_sample_of_each_split_and_refuses_zero() {
    let fx = fixture();
    let out = fx.dir.path().join("run-per-split");
    let model_a = format!("a={}", s(&fx.a));
    let args = |n: &'static str, out: &Path| {
        let mut v = vec![
            "eval".to_string(),
            "--model".into(),
            model_a.clone(),
            "--dataset".into(),
            s(&fx.dataset).into(),
            "--engine".into(),
            "embedded".into(),
            "--max-tokens".into(),
            "2".into(),
            "--per-split".into(),
            n.into(),
            "--out".into(),
        ];
        v.push(s(out).into());
        v
    };
    let run = |v: Vec<String>| {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        tunebench(&refs, "127.0.0.1:9")
    };
    // One item of each split: the first held-out (t-001) and the paraphrase probe (t-003).
    assert!(run(args("1", &out)).status.success());
    let ids: Vec<String> = lines(&out.join("results.jsonl"))
        .iter()
        .map(|it| it["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["t-001", "t-003"]);
    assert_eq!(summary(&out)["settings"]["per_split"], 1);

    let zero = fx.dir.path().join("run-zero");
    let o = run(args("0", &zero));
    assert!(!o.status.success(), "--per-split 0 must fail");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("--per-split"), "{stderr}");
    assert!(!zero.join("results.jsonl").exists());
}
