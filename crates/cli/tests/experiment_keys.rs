//! The experiment file means what it says: `[eval] max_new_tokens` and `num_ctx` set what
//! `tunebench eval --config FILE` answers with (an explicit flag overrides each), and
//! `[export] quants` sets the GGUFs `train unsloth` writes without `--gguf` (`--gguf TYPES`
//! replaces the list, `--gguf none` writes none). Each key has a test that fails if the key is
//! ignored again; a bad value is an error naming the file and the field.

mod common;
#[path = "../../eval/tests/common/mod.rs"]
mod eval_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Runs the binary with no Ollama reachable (port 9 on loopback: nothing answers).
fn tunebench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env("OLLAMA_HOST", "127.0.0.1:9")
        .output()
        .expect("run tunebench")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// An experiment file: the required sections, then `extra`.
fn write_config(dir: &Path, base: &Path, train: &Path, extra: &str) -> PathBuf {
    let path = dir.join("exp.toml");
    let text = format!(
        "name = \"tiny\"\n[model]\nbase = \"{}\"\n[data]\ntrain = \"{}\"\nmax_seq_len = 64\n[train]\nmicro_batch = 2\nmax_steps = 2\nruns_dir = \"{}\"\n[optimizer]\nlr = 0.01\n[lora]\nr = 2\nalpha = 4\n{extra}",
        base.display(),
        train.display(),
        dir.join("runs").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `(max_tokens, num_ctx)` an evaluation recorded in its `summary.json`, after checking that
/// every answer stayed within that many tokens and that each line records the same limits.
fn recorded_limits(out: &Path) -> (u64, u64) {
    let summary = read_json(&out.join("summary.json"));
    let settings = &summary["settings"];
    let max_tokens = settings["max_tokens"].as_u64().unwrap();
    let num_ctx = settings["num_ctx"].as_u64().unwrap();
    let results = std::fs::read_to_string(out.join("results.jsonl")).unwrap();
    for line in results.lines() {
        let item: Value = serde_json::from_str(line).unwrap();
        assert!(item["error"].is_null(), "{item}");
        let generated = item["timings"]["eval_tokens"].as_u64().unwrap();
        assert!(
            generated <= max_tokens,
            "{generated} > {max_tokens}: {item}"
        );
        assert_eq!(
            item["answered_with"]["max_tokens"].as_u64(),
            Some(max_tokens)
        );
        assert_eq!(item["answered_with"]["num_ctx"].as_u64(), Some(num_ctx));
    }
    (max_tokens, num_ctx)
}

#[test]
fn eval_answers_with_the_experiment_eval_section_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (gguf, _) = eval_common::eval_setup::write_two_models(dir);
    let dataset = dir.join("eval.jsonl");
    let lines: String = (0..2)
        .map(|i| {
            eval_common::eval_setup::dataset_line(
                &format!("e{i}"),
                "Fatura ne zaman?",
                "Ayın başında.",
            )
        })
        .collect();
    std::fs::write(&dataset, lines).unwrap();
    let cfg = write_config(
        dir,
        Path::new("unused-model"),
        Path::new("unused.jsonl"),
        "[eval]\nmax_new_tokens = 3\nnum_ctx = 321\n",
    );
    let model = format!("a={}", s(&gguf));
    let eval = |out: &str, extra: &[&str]| -> (u64, u64) {
        let out = dir.join(out);
        let mut args = vec![
            "eval",
            "--model",
            &model,
            "--dataset",
            s(&dataset),
            "--engine",
            "embedded",
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        let o = tunebench(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        recorded_limits(&out)
    };
    // The file's values, each replaced by its flag alone.
    assert_eq!(eval("file", &["--config", s(&cfg)]), (3, 321));
    assert_eq!(
        eval("flag-tokens", &["--config", s(&cfg), "--max-tokens", "2"]),
        (2, 321)
    );
    assert_eq!(
        eval("flag-ctx", &["--config", s(&cfg), "--num-ctx", "100"]),
        (3, 100)
    );
    // Without a file: the command's own defaults.
    assert_eq!(eval("defaults", &[]), (256, 4096));

    // A bad `[eval]` value: an error naming the file and the field, nothing evaluated.
    let bad = dir.join("bad.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("num_ctx = 321", "num_ctx = 0");
    std::fs::write(&bad, text).unwrap();
    let out = dir.join("bad-out");
    let o = tunebench(&[
        "eval",
        "--model",
        &model,
        "--dataset",
        s(&dataset),
        "--engine",
        "embedded",
        "--out",
        s(&out),
        "--config",
        s(&bad),
    ]);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("eval.num_ctx"),
        "{err}"
    );
    assert!(!out.join("results.jsonl").exists());
}

/// The tiny Mistral fixture without sliding window (llama.cpp's llama arch has none) and a
/// small training set.
fn tiny_training(dir: &Path) -> (PathBuf, PathBuf) {
    let model = common::tiny_hf_dir("tiny-mistral", &dir.join("base"), true);
    let train = dir.join("train.jsonl");
    let lines: Vec<String> = (0..4)
        .map(|i| format!(r#"{{"id": "t{i}", "category": "general", "instruction": "Soru {i}?", "output": "Cevap {i}."}}"#))
        .collect();
    std::fs::write(&train, lines.join("\n")).unwrap();
    (model, train)
}

/// Runs `train METHOD --config CFG --json ARGS...`; returns the run folder and the GGUF file
/// names it holds.
fn train(method: &str, cfg: &Path, extra: &[&str]) -> (PathBuf, Vec<String>) {
    let mut args = vec![
        "train",
        method,
        "--config",
        s(cfg),
        "--no-progress",
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = tunebench(&args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    let outcome: Value = serde_json::from_str(
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .expect("the outcome line"),
    )
    .unwrap();
    let run = PathBuf::from(outcome["run"].as_str().unwrap());
    let mut ggufs: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".gguf"))
        .collect();
    ggufs.sort();
    let listed: Vec<String> = outcome["ggufs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let p = PathBuf::from(g.as_str().unwrap());
            p.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, ggufs, "the outcome lists what the run holds");
    assert_eq!(
        run.join("Modelfile").is_file(),
        !ggufs.is_empty(),
        "a Modelfile exactly when GGUFs were written"
    );
    (run, ggufs)
}

#[test]
fn train_unsloth_writes_the_experiment_quants_unless_gguf_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (model, data) = tiny_training(dir);
    let cfg = write_config(dir, &model, &data, "[export]\nquants = [\"q8_0\"]\n");

    let (run, ggufs) = train("unsloth", &cfg, &[]);
    assert_eq!(ggufs, ["tiny-Q8_0.gguf"]);
    let modelfile = std::fs::read_to_string(run.join("Modelfile")).unwrap();
    assert!(modelfile.contains("FROM ./tiny-Q8_0.gguf"), "{modelfile}");
    let summary = read_json(&run.join("summary.json"));
    let artifacts: Vec<&str> = summary["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert!(artifacts.contains(&"tiny-Q8_0.gguf"), "{artifacts:?}");

    // --gguf replaces the list; `none` writes nothing.
    let (_, ggufs) = train("unsloth", &cfg, &["--gguf", "f16"]);
    assert_eq!(ggufs, ["tiny-F16.gguf"]);
    let (run, ggufs) = train("unsloth", &cfg, &["--gguf", "none"]);
    assert!(ggufs.is_empty(), "{ggufs:?}");
    assert!(!run.join("merged").exists());

    // An empty list, and a file without [export]: no GGUF.
    for extra in ["[export]\nquants = []\n", ""] {
        let cfg = write_config(dir, &model, &data, extra);
        let (_, ggufs) = train("unsloth", &cfg, &[]);
        assert!(ggufs.is_empty(), "{extra:?}: {ggufs:?}");
    }
    // The PEFT way exports separately (merge, export gguf): the list does not make it fail.
    let (_, ggufs) = train("peft", &cfg, &[]);
    assert!(ggufs.is_empty(), "{ggufs:?}");
}

#[test]
fn an_unknown_quant_is_an_error_naming_the_file_and_field_before_any_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (model, data) = tiny_training(dir);
    let cfg = write_config(
        dir,
        &model,
        &data,
        "[export]\nquants = [\"q4_k_m\", \"q9_9\"]\n",
    );
    for method in ["unsloth", "peft"] {
        let o = tunebench(&["train", method, "--config", s(&cfg), "--no-progress"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{method}: {err}");
        for want in ["exp.toml", "export.quants", "q9_9"] {
            assert!(err.contains(want), "{method}: want {want:?} in {err}");
        }
        assert!(
            !dir.join("runs").exists(),
            "{method}: a run folder was made"
        );
    }
    // `none` means no GGUF at all: mixing it with types is refused before training too.
    let cfg = write_config(dir, &model, &data, "");
    let o = tunebench(&[
        "train",
        "unsloth",
        "--config",
        s(&cfg),
        "--gguf",
        "none,q8_0",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("none"), "{err}");
    assert!(!dir.join("runs").exists());
}
