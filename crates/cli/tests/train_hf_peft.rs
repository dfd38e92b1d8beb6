//! `tunebench train hf-peft` as a user runs it, without torch (CI has none): a failing peer
//! script makes the command fail with the script's stderr in its error, a malformed result file
//! with an error naming the file and the field; and the adapter of the committed hf-peft run
//! (PEFT's own `save_pretrained`, `crates/report/tests/fixtures/hf-peft`) goes through
//! `tunebench merge` and `tunebench export lora-gguf`.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// An experiment on the tiny Mistral fixture whose runs go to `root/runs`.
fn experiment(root: &Path) -> PathBuf {
    let model = tiny_hf_dir("tiny-mistral", &root.join("model"), false);
    std::fs::write(
        root.join("train.jsonl"),
        r#"{"id": "t0", "category": "general", "instruction": "Soru?", "output": "Cevap."}"#,
    )
    .unwrap();
    let path = root.join("experiment.toml");
    let text = format!(
        "name = \"tiny\"\n[model]\nbase = \"{}\"\n[data]\ntrain = \"{}\"\nmax_seq_len = 64\n[train]\nmax_steps = 1\nruns_dir = \"{}\"\n",
        model.display(),
        root.join("train.jsonl").display(),
        root.join("runs").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `train hf-peft` with a stand-in peer script holding `body` (`out` is the run folder).
fn train_with(root: &Path, body: &str) -> (bool, String, String) {
    let config = experiment(root);
    let script = root.join("peer.py");
    std::fs::write(
        &script,
        format!("import json, os, sys\nout = sys.argv[sys.argv.index('--out') + 1]\n{body}\n"),
    )
    .unwrap();
    tunebench(&[
        "train",
        "hf-peft",
        "--config",
        config.to_str().unwrap(),
        "--peer-script",
        script.to_str().unwrap(),
        "--no-progress",
        "--json",
    ])
}

#[test]
fn a_failing_peer_script_fails_the_command_with_its_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = train_with(
        tmp.path(),
        "print('Traceback: RuntimeError: peer exploded', file=sys.stderr)\nsys.exit(2)",
    );
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("training (hf-peft)"), "{stderr}");
    assert!(stderr.contains("peer exploded"), "{stderr}");
    assert!(stderr.contains("exit status: 2"), "{stderr}");
    assert!(stdout.is_empty(), "no outcome line: {stdout}");
}

#[test]
fn a_malformed_result_file_names_the_file_and_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = train_with(
        tmp.path(),
        "json.dump({'steps': 1}, open(os.path.join(out, 'peer_result.json'), 'w'))",
    );
    assert!(!ok);
    assert!(stderr.contains("peer_result.json"), "{stderr}");
    assert!(stderr.contains("missing field `train_s`"), "{stderr}");
}

/// A copy of the committed hf-peft run (merge records itself in the run's serving.json).
fn copy_fixture_run(dst: &Path) -> PathBuf {
    let runs = repo().join("crates/report/tests/fixtures/hf-peft/runs");
    let src = only_run(&runs);
    let run = dst.join(src.file_name().unwrap());
    for sub in ["", "adapter"] {
        std::fs::create_dir_all(run.join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap().flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), run.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
    run
}

#[test]
fn the_peft_adapter_of_an_hf_peft_run_merges_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tiny_hf_dir("tiny-mistral", &tmp.path().join("base"), false);
    let run = copy_fixture_run(tmp.path());
    let adapter = run.join("adapter");
    let merged = tmp.path().join("merged");
    let (ok, stdout, stderr) = tunebench(&[
        "merge",
        "--base",
        base.to_str().unwrap(),
        "--adapter",
        adapter.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("merged 14 projections"), "{stdout}");
    let before = std::fs::read(base.join("model.safetensors")).unwrap();
    let after = std::fs::read(merged.join("model.safetensors")).unwrap();
    assert_ne!(before, after, "the merge changed the weights");
    let serving = std::fs::read_to_string(run.join("serving.json")).unwrap();
    assert!(serving.contains("tunebench merge"), "{serving}");

    let gguf = tmp.path().join("hf-peft-lora.gguf");
    let (ok, stdout, stderr) = tunebench(&[
        "export",
        "lora-gguf",
        "--adapter",
        adapter.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
        "--out",
        gguf.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(std::fs::metadata(&gguf).unwrap().len() > 0);
}
