//! `tunebench demo --quick` end to end on a tiny model: with no Ollama and no tools/ollama-compat
//! (embedded engine), a demo that fails half-way continuing its attempt (finished trainings
//! reused, an unfinished one resumed in its own run folder, then a new attempt once the last one
//! finished); and with no Ollama but tools/ollama-compat there, answering through it over
//! Ollama's API, the PEFT adapter served unmerged on the base GGUF as well.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn write_dataset(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let train: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"id": "t{i}", "category": "billing", "instruction": "Fatura {i} ne zaman?", "output": "Faturanız ayın {i}. günü kesilir."}}"#))
        .collect();
    std::fs::write(dir.join("train.jsonl"), train.join("\n")).unwrap();
    let eval: Vec<String> = (0..4)
        .map(|i| {
            let split = if i < 3 {
                r#""split": "heldout""#.to_string()
            } else {
                format!(r#""split": "paraphrase", "probe_of": "t{i}""#)
            };
            format!(r#"{{"id": "e{i}", "category": "billing", {split}, "instruction": "Fatura {i} nedir?", "output": "Fatura {i} aylıktır."}}"#)
        })
        .collect();
    std::fs::write(dir.join("eval.jsonl"), eval.join("\n")).unwrap();
}

fn write_config(root: &Path, model: &Path, dataset: &Path) -> PathBuf {
    let text = format!(
        r#"name = "tiny"
[model]
base = "{}"
[data]
train = "{}"
eval = "{}"
max_seq_len = 64
[train]
micro_batch = 2
checkpoint_every = 1
seed = 5
[optimizer]
lr = 0.01
[lora]
r = 2
alpha = 4
dropout = 0.0
"#,
        model.display(),
        dataset.join("train.jsonl").display(),
        dataset.join("eval.jsonl").display(),
    );
    let path = root.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `tunebench demo --quick ...` with the working directory in `root` (the report's history
/// goes to `root/reports`, and `tools/ollama-compat` is not there) and no Ollama reachable.
fn demo(root: &Path, config: &Path, dataset: &Path, models: &Path) -> Output {
    demo_command(root, config, dataset, models)
        .output()
        .unwrap()
}

fn demo_command(root: &Path, config: &Path, dataset: &Path, models: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tunebench"));
    cmd.current_dir(root)
        .args(["demo", "--quick", "--config"])
        .arg(config)
        .arg("--dataset")
        .arg(dataset)
        .arg("--models-dir")
        .arg(models)
        .arg("--runs-dir")
        .arg(root.join("runs"))
        .arg("--report")
        .arg(root.join("report"))
        .env("RUST_LOG", "warn")
        .env("OLLAMA_HOST", "127.0.0.1:9");
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn folders(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found
}

fn state(root: &Path) -> serde_json::Value {
    let path = root.join("runs/demo-state.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn interrupted_demo_continues_its_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let model = tiny_hf_dir("tiny-mistral", &root.join("tiny-model"), true);
    let dataset = root.join("dataset");
    write_dataset(&dataset);
    let config = write_config(root, &model, &dataset);

    // The base model's GGUF cannot be written (its folder is a file): the demo stops after
    // both trainings, with a non-zero exit.
    let models = root.join("models");
    std::fs::write(&models, "not a folder").unwrap();
    let out = demo(root, &config, &dataset, &models);
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("-Q4_K_M.gguf"), "{log}");
    assert_eq!(state(root)["finished"], false);
    let attempt = PathBuf::from(state(root)["attempt"].as_str().unwrap());
    for method in ["peft", "unsloth"] {
        assert!(
            attempt.join(format!("{method}-outcome.json")).is_file(),
            "{method}: {}",
            text(&out)
        );
    }
    let peft_run = folders(&attempt.join("peft")).pop().unwrap();
    let peft_summary = std::fs::read(peft_run.join("summary.json")).unwrap();
    // As if the demo had been killed during the Unsloth-style training.
    std::fs::remove_file(attempt.join("unsloth-outcome.json")).unwrap();
    let uns_run = folders(&attempt.join("unsloth")).pop().unwrap();
    std::fs::remove_file(uns_run.join("summary.json")).unwrap();

    // A models folder that does not exist yet is created.
    std::fs::remove_file(&models).unwrap();
    let out = demo(root, &config, &dataset, &models);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("continuing the interrupted demo"), "{log}");
    // No Ollama, and no tools/ollama-compat under the working directory: embedded, saying why.
    assert!(
        log.contains("not a tools/ollama-compat folder") && log.contains("embedded engine"),
        "{log}"
    );
    assert!(
        log.contains(&format!("reusing {}", peft_run.display())),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "continuing {} from its newest checkpoint",
            uns_run.display()
        )),
        "{log}"
    );
    assert_eq!(
        folders(&attempt.join("peft")),
        std::slice::from_ref(&peft_run)
    );
    assert_eq!(
        folders(&attempt.join("unsloth")),
        std::slice::from_ref(&uns_run)
    );
    assert_eq!(
        std::fs::read(peft_run.join("summary.json")).unwrap(),
        peft_summary
    );
    assert!(uns_run.join("summary.json").is_file());
    assert!(uns_run.join("tiny-Q4_K_M.gguf").is_file());
    assert!(attempt.join("eval/summary.json").is_file(), "{log}");
    // --quick evaluates one item of each split: the first held-out (e0) and the probe (e3).
    let results = std::fs::read_to_string(attempt.join("eval/results.jsonl")).unwrap();
    let ids: Vec<String> = results
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
        .collect();
    // base, peft, unsloth, and the PEFT adapter on the base GGUF.
    assert_eq!(ids, ["\"e0\"", "\"e3\""].repeat(4), "{results}");
    let report = std::fs::read_to_string(root.join("report/report.md")).unwrap();
    assert!(report.contains("## Answers side by side"), "{report}");
    for method in ["base", "peft", "unsloth"] {
        let row = format!("| mean sentence chrF, paraphrased ÷ held-out, {method} |");
        assert!(report.contains(&row), "{report}");
    }
    assert!(report.contains(&peft_run.file_name().unwrap().to_string_lossy().to_string()));
    // The base model's eval loss, measured into the PEFT-style run, is the report's before row.
    let base = tb_train::BaseEvalLoss::load(&peft_run)
        .unwrap()
        .expect("base eval loss");
    assert!(
        base.eval_loss.is_finite() && base.eval_examples > 0,
        "{base:?}"
    );
    let before = tb_report::tables::format_number(base.perplexity());
    assert!(
        report.contains("base (before)") && report.contains(&before),
        "{report}"
    );
    assert_eq!(state(root)["finished"], true);

    // A finished attempt is not continued: the next demo starts a new one.
    let out = demo(root, &config, &dataset, &models);
    assert!(out.status.success(), "{}", text(&out));
    let attempts: Vec<PathBuf> = folders(&root.join("runs"));
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_ne!(
        PathBuf::from(state(root)["attempt"].as_str().unwrap()),
        attempt
    );
}

#[test]
fn quick_demo_answers_through_ollama_compat_when_no_ollama_answers() {
    let compat = tb_testkit::ollama_compat();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let model = tiny_hf_dir("tiny-mistral", &root.join("tiny-model"), true);
    let dataset = root.join("dataset");
    write_dataset(&dataset);
    let config = write_config(root, &model, &dataset);
    let out = demo_command(root, &config, &dataset, &root.join("models"))
        .arg("--ollama-compat")
        .arg(&compat)
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("ollama-compat (llama.cpp) started at"),
        "{log}"
    );
    let attempt = PathBuf::from(state(root)["attempt"].as_str().unwrap());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(attempt.join("eval/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["engine"], "ollama", "{summary}");
    assert_eq!(
        summary["engine_name"], "ollama-compat (llama.cpp)",
        "{summary}"
    );
    let models = summary["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["base", "peft", "unsloth", "peft-adapter"],
        "{summary}"
    );
    for m in models {
        assert_eq!(m["failed"], 0, "{m}");
        assert!(m["load_seconds"].as_f64().is_some_and(|s| s >= 0.0), "{m}");
    }
    let adapter = models[3]["adapter"].as_str().unwrap();
    assert!(adapter.ends_with("peft-lora-F16.gguf"), "{adapter}");
    assert!(attempt.join("ollama-compat.log").is_file());
    // The server stopped with the demo: nothing listens at its address any more.
    let host = log
        .split("ollama-compat (llama.cpp) started at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    assert!(
        std::net::TcpStream::connect(host).is_err(),
        "{host} still answers"
    );
    let report = std::fs::read_to_string(root.join("report/report.md")).unwrap();
    assert!(report.contains("ollama-compat (llama.cpp)"), "{report}");
}
