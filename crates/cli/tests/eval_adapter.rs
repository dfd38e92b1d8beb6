//! `tunebench eval --model NAME=BASE.gguf --adapter NAME=LORA.gguf`: a base GGUF plus a LoRA
//! adapter GGUF evaluated as one model, against the GGUF of the merged weights, on a tiny llama
//! (hidden 64, 320 tokens, byte tokens muted so answers are pieces every detokeniser renders
//! alike), all F16 as a user would ship them:
//!
//! - through tools/ollama-compat (`/api/create` with `files` + `adapters`, llama.cpp applying the
//!   LoRA): the base + adapter answers greedily as the merged model does, and the summary names
//!   the engine `ollama-compat (llama.cpp)` and records the adapter and the load time;
//! - through the embedded engine: the same answers and perplexity as the merged model;
//! - bad flags and files: an adapter for an unknown model name, a GGUF that is not a LoRA
//!   adapter, an adapter for another model's shapes: errors naming the flag, file and tensor,
//!   before any result is written.
#![expect(clippy::print_stderr, reason = "the test reports what it compares")]

#[path = "../../eval/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::eval_setup::model_a;
use common::lora::{write_merged, write_random_adapter};
use common::tiny::TinyLlama;
use common::{fresh_models_dir, CompatServer};
use serde_json::Value;
use tb_gguf::{GgmlType, LoraTensorType};

const DATASET: &str = r#"{"id": "t-001", "category": "billing", "split": "heldout", "instruction": "Faturamı nasıl öderim?", "output": "Faturanızı uygulamadan ödeyebilirsiniz."}
{"id": "t-002", "category": "roaming", "split": "heldout", "instruction": "Yurt dışında internet paketi var mı?", "output": "Evet, yurt dışı paketlerimiz var."}
{"id": "t-003", "category": "billing", "split": "paraphrase", "probe_of": "train-001", "instruction": "Borcumu nereden görürüm?", "output": "Borcunuzu uygulamada görebilirsiniz."}
{"id": "t-004", "category": "plans", "split": "heldout", "instruction": "Tarifemi değiştirmek istiyorum.", "output": "Tarifenizi uygulamadan değiştirebilirsiniz."}
"#;

struct Fixture {
    dir: tempfile::TempDir,
    base: PathBuf,
    adapter: PathBuf,
    merged: PathBuf,
    dataset: PathBuf,
}

/// The F16 base, an F16 adapter from tb-gguf's writer, and the F16 merged model.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tiny = model_a();
    let base = dir.path().join("base-f16.gguf");
    tiny.write(&base, GgmlType::F16);
    let adapter = dir.path().join("lora-f16.gguf");
    write_random_adapter(&tiny, &adapter, 21, 0.3, LoraTensorType::F16);
    let merged = dir.path().join("merged-f16.gguf");
    write_merged(&base, &adapter, tiny.metadata(1), &merged, GgmlType::F16);
    let dataset = dir.path().join("eval.jsonl");
    std::fs::write(&dataset, DATASET).unwrap();
    Fixture {
        dir,
        base,
        adapter,
        merged,
        dataset,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
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

impl Fixture {
    /// `eval` of `base` alone, `lora` (base + adapter) and `merged` into `out`.
    fn eval(&self, engine: &str, out: &Path, host: &str) -> Output {
        let (base, merged) = (
            format!("base={}", s(&self.base)),
            format!("merged={}", s(&self.merged)),
        );
        let lora = format!("lora={}", s(&self.base));
        let adapter = format!("lora={}", s(&self.adapter));
        tunebench(
            &[
                "eval",
                "--model",
                &base,
                "--model",
                &lora,
                "--adapter",
                &adapter,
                "--model",
                &merged,
                "--dataset",
                s(&self.dataset),
                "--engine",
                engine,
                "--out",
                s(out),
                "--max-tokens",
                "12",
                "--num-ctx",
                "256",
                "--perplexity",
            ],
            host,
        )
    }
}

fn results(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn summary(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// The answers of model `name`, in dataset order.
fn answers(items: &[Value], name: &str) -> Vec<String> {
    items
        .iter()
        .filter(|i| i["model"] == name)
        .map(|i| i["answer"].as_str().expect("answered").to_owned())
        .collect()
}

/// Checks the summary of a run of [`Fixture::eval`] and returns (base, lora, merged) answers.
fn check_run(out: &Path, engine_name: &str, adapter: &Path) -> [Vec<String>; 3] {
    let sum = summary(out);
    assert_eq!(sum["engine_name"], engine_name);
    assert_eq!(sum["failed_items"], 0);
    let models = sum["models"].as_array().unwrap();
    assert_eq!(models[1]["name"], "lora");
    assert_eq!(models[1]["adapter"], s(adapter));
    assert!(models[0]["adapter"].is_null() && models[2]["adapter"].is_null());
    for m in models {
        assert!(m["load_seconds"].as_f64().is_some_and(|t| t >= 0.0), "{m}");
    }
    let (pl, pm) = (
        models[1]["perplexity"].as_f64().unwrap(),
        models[2]["perplexity"].as_f64().unwrap(),
    );
    assert!(
        (pl / pm - 1.0).abs() < 1e-3,
        "perplexity base+adapter {pl} vs merged {pm}"
    );
    let items = results(out);
    assert_eq!(items.len(), 12);
    let [b, l, m] = ["base", "lora", "merged"].map(|n| answers(&items, n));
    for (i, (x, y)) in l.iter().zip(&m).enumerate() {
        eprintln!(
            "{engine_name} item {i} ({} prompt tokens): base {:?} | base+adapter {x:?} | merged \
             {y:?}",
            items[4 + i]["timings"]["prompt_tokens"],
            b[i]
        );
    }
    assert_ne!(
        b, m,
        "the adapter must change some answer (else the comparison proves nothing)"
    );
    [b, l, m]
}

#[test]
fn base_plus_adapter_answers_as_the_merged_model_through_ollama_compat_and_embedded() {
    let fx = fixture();
    let server = CompatServer::start(&fresh_models_dir("eval_adapter"), None);
    let out = fx.dir.path().join("run-ollama");
    let o = fx.eval("ollama", &out, &server.host);
    assert!(o.status.success(), "eval through ollama-compat failed");
    let [_, lora, merged] = check_run(&out, "ollama-compat (llama.cpp)", &fx.adapter);
    assert_eq!(
        lora, merged,
        "ollama-compat: base + adapter vs merged (F16)"
    );

    let out = fx.dir.path().join("run-embedded");
    let o = fx.eval("embedded", &out, "127.0.0.1:9");
    assert!(o.status.success(), "eval on the embedded engine failed");
    let [_, emb_lora, emb_merged] = check_run(&out, "embedded", &fx.adapter);
    assert_eq!(emb_lora, emb_merged, "embedded: base + adapter vs merged");
    // Not compared across engines: on this synthetic vocabulary ollama-compat and the embedded
    // engine give the chat prompts different token counts, and the adapted model, unlike the
    // base, answers each prompt differently.
}

#[test]
fn bad_adapter_flags_and_files_are_refused_before_any_work() {
    let fx = fixture();
    let no_ollama = "127.0.0.1:9";
    let run = |model: &str, adapter: &str, out: &Path| {
        tunebench(
            &[
                "eval",
                "--model",
                model,
                "--adapter",
                adapter,
                "--dataset",
                s(&fx.dataset),
                "--engine",
                "embedded",
                "--out",
                s(out),
            ],
            no_ollama,
        )
    };
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let model = format!("m={}", s(&fx.base));

    let out = fx.dir.path().join("unknown");
    let o = run(&model, &format!("nope={}", s(&fx.adapter)), &out);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("--adapter nope=") && e.contains("no --model is named `nope`"),
        "{e}"
    );
    assert!(!out.join("results.jsonl").exists());

    // The base model itself is a GGUF, but not a LoRA adapter.
    let out = fx.dir.path().join("not-lora");
    let o = run(&model, &format!("m={}", s(&fx.merged)), &out);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("model `m`") && e.contains(s(&fx.merged)), "{e}");
    assert!(e.contains("`general.type` is \"model\""), "{e}");
    assert!(!out.join("results.jsonl").exists());

    // An adapter written for a model with another MLP width.
    let other = TinyLlama {
        n_ff: 128,
        ..model_a()
    };
    let wrong = fx.dir.path().join("other-lora.gguf");
    write_random_adapter(&other, &wrong, 2, 0.3, LoraTensorType::F32);
    let out = fx.dir.path().join("wrong-shape");
    let o = run(&model, &format!("m={}", s(&wrong)), &out);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(s(&wrong)) && e.contains("blk.0.ffn_down.weight.lora_a"),
        "{e}"
    );
    assert!(!out.join("results.jsonl").exists());
}
