//! `tunebench train peft`, `merge` and `logits --adapter` as a user runs them, including a run
//! killed mid-way and resumed (same final adapter as an uninterrupted run).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn peft_fixtures() -> PathBuf {
    repo().join("crates/peft/tests/fixtures")
}

fn write_dataset(root: &Path) -> PathBuf {
    let path = root.join("train.jsonl");
    let lines: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"id": "t{i}", "category": "general", "instruction": "Soru {i}?", "output": "Cevap {i}."}}"#))
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn write_config(
    root: &Path,
    model: &Path,
    runs: &Path,
    steps: usize,
    checkpoint_every: usize,
) -> PathBuf {
    let text = format!(
        r#"name = "tiny"
[model]
base = "{}"
[data]
train = "{}"
max_seq_len = 64
[train]
micro_batch = 2
max_steps = {steps}
checkpoint_every = {checkpoint_every}
seed = 5
runs_dir = "{}"
[optimizer]
lr = 0.01
[lora]
r = 2
alpha = 4
dropout = 0.1
targets = ["q_proj", "v_proj", "down_proj"]
"#,
        model.display(),
        write_dataset(root).display(),
        runs.display()
    );
    let path = root.join("exp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `tunebench train peft --config CFG --no-progress --json`, which must succeed; its outcome.
fn train_peft(cfg: &Path) -> tb_train::TrainOutcome {
    let (ok, out, err) = tunebench(&[
        "train",
        "peft",
        "--config",
        cfg.to_str().unwrap(),
        "--no-progress",
        "--json",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "--json prints one line: {out}");
    tb_train::TrainOutcome::from_child_stdout(&out).unwrap()
}

#[test]
fn killed_run_resumes_to_the_same_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_hf_dir("tiny-mistral", &tmp.path().join("model"), false);
    let steps = 400;
    // Uninterrupted reference run.
    let runs_a = tmp.path().join("runs-a");
    let cfg = write_config(tmp.path(), &model, &runs_a, steps, 5);
    train_peft(&cfg);
    let reference =
        std::fs::read(only_run(&runs_a).join("adapter/adapter_model.safetensors")).unwrap();

    // Same experiment, killed (SIGKILL) once a checkpoint exists, then resumed.
    let runs_b = tmp.path().join("runs-b");
    let cfg = write_config(tmp.path(), &model, &runs_b, steps, 5);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args([
            "train",
            "peft",
            "--config",
            cfg.to_str().unwrap(),
            "--no-progress",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let run = loop {
        if let Ok(mut entries) = std::fs::read_dir(&runs_b) {
            if let Some(Ok(e)) = entries.next() {
                if e.path()
                    .join("checkpoints/step-000005/state.json")
                    .is_file()
                {
                    break e.path();
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !run.join("summary.json").exists(),
        "killed too late to test resuming"
    );
    // Timings make each run's metrics lines unique: a resumed run keeps those of the steps its
    // checkpoint covers, a restarted one rewrites them.
    let first_five = |run: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        text.lines().take(5).map(str::to_string).collect()
    };
    let before = first_five(&run);
    let (ok, out, err) = tunebench(&[
        "train",
        "peft",
        "--config",
        cfg.to_str().unwrap(),
        "--resume",
        run.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("steps 400"), "{out}");
    let resumed = std::fs::read(run.join("adapter/adapter_model.safetensors")).unwrap();
    assert!(
        resumed == reference,
        "resumed adapter differs from the uninterrupted run"
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let steps_logged: Vec<usize> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap() as usize
        })
        .collect();
    assert_eq!(
        steps_logged,
        (1..=steps).collect::<Vec<_>>(),
        "metrics must have each step once"
    );
    assert_eq!(
        first_five(&run),
        before,
        "the run restarted instead of resuming"
    );
}

#[test]
fn logits_with_adapter_match_peft() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("logits.safetensors");
    let ids = "5,17,250,3,99,42";
    let base = tiny_hf_dir("tiny-mistral", &tmp.path().join("base"), false);
    let (ok, _, err) = tunebench(&[
        "logits",
        "--model",
        base.to_str().unwrap(),
        "--adapter",
        peft_fixtures().join("all-linear").to_str().unwrap(),
        "--ids",
        ids,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let with = std::fs::read(&out).unwrap();
    let (ok, _, err) = tunebench(&[
        "logits",
        "--model",
        base.to_str().unwrap(),
        "--ids",
        ids,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let without = std::fs::read(&out).unwrap();
    assert_ne!(with, without, "--adapter changed nothing");
    // Against the merged checkpoint PEFT wrote: same logits.
    let merged = tiny_hf_dir("tiny-mistral", &tmp.path().join("merged"), false);
    std::fs::copy(
        peft_fixtures().join("merged-all-linear/model.safetensors"),
        merged.join("model.safetensors"),
    )
    .unwrap();
    let out2 = tmp.path().join("merged.safetensors");
    let (ok, _, err) = tunebench(&[
        "logits",
        "--model",
        merged.to_str().unwrap(),
        "--ids",
        ids,
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let f = |b: &[u8]| -> Vec<f32> {
        let st = safetensors::SafeTensors::deserialize(b).unwrap();
        st.tensor("logits")
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let a = f(&with);
    let b = f(&std::fs::read(&out2).unwrap());
    let d = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(d < 1e-4, "adapter logits vs PEFT-merged logits: {d}");
}

/// The PEFT way to a served model (merge, then export) records itself in the run's
/// `serving.json`: two commands, their seconds and the GGUF written.
#[test]
fn merge_and_export_of_a_run_record_the_serving_path() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_hf_dir("tiny-mistral", &tmp.path().join("model"), false);
    let runs = tmp.path().join("runs");
    let cfg = write_config(tmp.path(), &model, &runs, 2, 0);
    let outcome = train_peft(&cfg);
    let run = only_run(&runs);
    assert_eq!(outcome.run, run);
    assert_eq!(outcome.adapter, run.join("adapter"));
    assert_eq!(outcome.summary.steps, 2);
    assert!(outcome.ggufs.is_empty() && outcome.modelfile.is_none() && outcome.export_s.is_none());
    assert!(!run.join("serving.json").exists());
    let merged = run.join("merged");
    let (ok, _, err) = tunebench(&[
        "merge",
        "--base",
        model.to_str().unwrap(),
        "--adapter",
        run.join("adapter").to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let gguf = run.join("tiny-Q8_0.gguf");
    let (ok, _, err) = tunebench(&[
        "export",
        "gguf",
        "--model",
        merged.to_str().unwrap(),
        "--quant",
        "q8_0",
        "--out",
        gguf.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let serving = tb_train::ServingPath::load(&run).unwrap();
    let steps = &serving.steps;
    assert_eq!(steps.len(), 2, "{serving:?}");
    assert_eq!(steps[0].command, "tunebench merge");
    assert_eq!(steps[1].command, "tunebench export gguf --quant Q8_0");
    assert!(steps.iter().all(|s| s.seconds > 0.0));
    assert_eq!(
        steps[1].ggufs[0],
        (
            "tiny-Q8_0.gguf".to_string(),
            std::fs::metadata(&gguf).unwrap().len()
        )
    );
    // Exporting a model that is not a run's output records nothing anywhere.
    let (ok, _, err) = tunebench(&[
        "export",
        "gguf",
        "--model",
        model.to_str().unwrap(),
        "--quant",
        "q8_0",
        "--out",
        tmp.path().join("base-Q8_0.gguf").to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(!model.join("serving.json").exists());
}

#[test]
fn merge_command_and_its_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_hf_dir("tiny-mistral", &tmp.path().join("base"), false);
    let out = tmp.path().join("merged");
    let (ok, stdout, err) = tunebench(&[
        "merge",
        "--base",
        base.to_str().unwrap(),
        "--adapter",
        peft_fixtures().join("all-linear").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("merged 14 projections"), "{stdout}");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // The merged folder runs like any model.
    let (ok, _, err) = tunebench(&[
        "generate",
        "--model",
        out.to_str().unwrap(),
        "--prompt",
        "Merhaba",
        "--max-tokens",
        "4",
    ]);
    assert!(ok, "{err}");
    // An adapter for another base: non-zero exit, the message names the tensor, nothing written.
    let wrong = tmp.path().join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    std::fs::copy(
        peft_fixtures().join("all-linear/adapter_config.json"),
        wrong.join("adapter_config.json"),
    )
    .unwrap();
    std::fs::copy(
        peft_fixtures().join("patterns/adapter_model.safetensors"),
        wrong.join("adapter_model.safetensors"),
    )
    .unwrap();
    let out2 = tmp.path().join("merged2");
    let (ok, _, err) = tunebench(&[
        "merge",
        "--base",
        base.to_str().unwrap(),
        "--adapter",
        wrong.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("error:") && err.contains("adapter_model.safetensors"),
        "{err}"
    );
    assert!(!out2.exists());
}

#[test]
fn bad_experiment_files_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("exp.toml");
    std::fs::write(
        &cfg,
        "[model]\nbase = \"nowhere\"\n[data]\ntrain = \"x.jsonl\"\n[trian]\nseed = 1\n",
    )
    .unwrap();
    let (ok, _, err) = tunebench(&["train", "peft", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("exp.toml") && err.contains("trian"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    std::fs::write(
        &cfg,
        "[model]\nbase = \"nowhere\"\n[data]\ntrain = \"x.jsonl\"\n",
    )
    .unwrap();
    let (ok, _, err) = tunebench(&["train", "peft", "--config", cfg.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("nowhere"), "{err}");
}
