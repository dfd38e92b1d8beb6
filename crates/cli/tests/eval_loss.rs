//! `tunebench eval-loss --run DIR` on a tiny model: the base model's eval loss on the run's
//! eval examples, written to `DIR/base_eval_loss.json`, equal to the eval loss of a run whose
//! adapter never moved; the run summary's counts of cut and dropped training examples; and bad
//! input (no run folder, no eval set) as a non-zero exit naming what is missing.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use tb_train::{BaseEvalLoss, TrainData, BASE_EVAL_FILE};

/// Eight training records: two with answers longer than `max_seq_len` (cut), one whose
/// question alone is longer (dropped: no answer token left), five short ones; three held-out
/// eval records.
fn write_dataset(root: &Path) -> (PathBuf, PathBuf) {
    let long = "uzun ".repeat(80);
    let lines: Vec<String> = (0..8)
        .map(|i| {
            let (q, a) = match i {
                0 | 1 => (format!("Soru {i}?"), format!("Cevap {i}: {long}")),
                2 => (format!("Soru {i} {long}?"), format!("Cevap {i}.")),
                _ => (format!("Soru {i}?"), format!("Cevap {i}.")),
            };
            format!(
                r#"{{"id": "t{i}", "category": "general", "instruction": "{q}", "output": "{a}"}}"#
            )
        })
        .collect();
    let train = root.join("train.jsonl");
    std::fs::write(&train, lines.join("\n")).unwrap();
    let eval: Vec<String> = (0..3)
        .map(|i| format!(r#"{{"id": "e{i}", "category": "general", "split": "heldout", "instruction": "Soru {i} nedir?", "output": "Cevap {i} budur."}}"#))
        .collect();
    let eval_path = root.join("eval.jsonl");
    std::fs::write(&eval_path, eval.join("\n")).unwrap();
    (train, eval_path)
}

/// An experiment with a learning rate so small that the adapter stays at its initial value
/// (B = 0): the trained model is the base, so its eval loss is the base's.
fn config_text(model: &Path, train: &Path, eval: Option<&Path>, runs: &Path) -> String {
    let eval = eval.map_or(String::new(), |e| format!("eval = \"{}\"\n", e.display()));
    format!(
        r#"name = "tiny"
[model]
base = "{}"
[data]
train = "{}"
{eval}max_seq_len = 64
[train]
micro_batch = 2
max_steps = 2
seed = 5
runs_dir = "{}"
[optimizer]
lr = 1e-30
[lora]
r = 2
alpha = 4
dropout = 0.0
"#,
        model.display(),
        train.display(),
        runs.display()
    )
}

#[test]
fn base_eval_loss_is_measured_on_the_runs_eval_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let model = tiny_hf_dir("tiny-mistral", &root.join("model"), false);
    let (train, eval) = write_dataset(root);
    let runs = root.join("runs");
    let cfg = root.join("exp.toml");
    std::fs::write(&cfg, config_text(&model, &train, Some(&eval), &runs)).unwrap();
    let (ok, out, err) = tunebench(&[
        "train",
        "peft",
        "--config",
        cfg.to_str().unwrap(),
        "--no-progress",
        "--json",
    ]);
    assert!(ok, "{err}");
    let outcome = tb_train::TrainOutcome::from_child_stdout(&out).unwrap();
    let summary = &outcome.summary;
    assert_eq!(
        summary.data,
        Some(TrainData {
            max_seq_len: 64,
            records: 8,
            kept: 7,
            truncated: 2,
            dropped: 1,
        })
    );
    let run_eval = summary.eval_loss.expect("the run has an eval loss");

    let run = outcome.run.to_str().unwrap();
    assert_eq!(BaseEvalLoss::load(&outcome.run).unwrap(), None);
    let (ok, out, err) = tunebench(&["eval-loss", "--run", run]);
    assert!(ok, "{err}");
    assert!(out.contains(BASE_EVAL_FILE), "{out}");
    let base = BaseEvalLoss::load(&outcome.run)
        .unwrap()
        .expect("base_eval_loss.json written");
    assert_eq!(base.eval_examples, 3);
    assert_eq!(base.config_hash, summary.config_hash);
    assert!(
        (base.eval_loss - run_eval).abs() < 1e-4 * run_eval.abs().max(1.0),
        "base {} vs the unmoved adapter's {run_eval}",
        base.eval_loss
    );
    // The report reads it from the run folder.
    let loaded = tb_report::load_run(&outcome.run).unwrap();
    assert_eq!(loaded.base_eval, Some(base));
    let leftovers: Vec<_> = std::fs::read_dir(&outcome.run)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn bad_runs_are_errors_naming_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let missing = root.join("no-such-run");
    let (ok, _, err) = tunebench(&["eval-loss", "--run", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("config.toml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // A run whose experiment has no eval set: nothing to measure, and nothing written.
    let model = tiny_hf_dir("tiny-mistral", &root.join("model"), false);
    let (train, _) = write_dataset(root);
    let run = root.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let text = config_text(&model, &train, None, &root.join("runs"));
    std::fs::write(run.join("config.toml"), text).unwrap();
    let (ok, _, err) = tunebench(&["eval-loss", "--run", run.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("[data] eval"), "{err}");
    assert!(!run.join(BASE_EVAL_FILE).exists());

    // A config that is not an experiment file names the file.
    std::fs::write(run.join("config.toml"), "[model]\nbase = 3\n").unwrap();
    let (ok, _, err) = tunebench(&["eval-loss", "--run", run.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("config.toml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
