//! `tunebench eval --resume DIR`: an evaluation killed (SIGKILL) mid-run and resumed ends with the
//! items and summary metrics of an uninterrupted run; a folder that already holds results is
//! refused without `--resume`; resuming something that is not an evaluation, or a results file
//! with a garbage line before its last, is an error naming it (exit code 1, no panic).
#![expect(clippy::print_stderr, reason = "the test reports what it ran")]

#[path = "../../eval/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::eval_setup::{comparable_summary, dataset_line, model_a};
use serde_json::Value;
use tb_gguf::GgmlType;

/// Enough items, each long enough, that the run is still going when its first line appears.
const ITEMS: usize = 24;

struct Fixture {
    dir: tempfile::TempDir,
    model: String,
    dataset: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny-f32.gguf");
    model_a().write(&gguf, GgmlType::F32);
    let text: String = (0..ITEMS)
        .map(|i| {
            dataset_line(
                &format!("t-{i:03}"),
                &format!("Faturamı nasıl öderim? Soru {i}."),
                &format!("Faturanızı uygulamadan ödeyebilirsiniz ({i})."),
            )
        })
        .collect();
    let dataset = dir.path().join("eval.jsonl");
    std::fs::write(&dataset, text).unwrap();
    Fixture {
        model: format!("tiny={}", gguf.display()),
        dataset,
        dir,
    }
}

impl Fixture {
    /// `eval` arguments with `flag DIR` as the output (`--out` or `--resume`).
    fn args<'a>(&'a self, flag: &'a str, dir: &'a Path) -> Vec<&'a str> {
        vec![
            "eval",
            "--model",
            &self.model,
            "--dataset",
            self.dataset.to_str().unwrap(),
            "--engine",
            "embedded",
            flag,
            dir.to_str().unwrap(),
            "--max-tokens",
            "48",
            "--perplexity",
        ]
    }
}

fn tunebench(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(args)
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

/// Answer (with scores and perplexity) of every (model, id), each required to appear once.
fn answers(dir: &Path) -> BTreeMap<(String, String), Value> {
    let mut map = BTreeMap::new();
    for line in std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap()
        .lines()
    {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let key = (v["model"].to_string(), v["id"].to_string());
        v.as_object_mut().unwrap().remove("timings");
        assert!(map.insert(key, v).is_none(), "an item appears twice");
    }
    map
}

/// `summary.json` without what depends on the clock or on how the run was split up.
fn metrics(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    comparable_summary(serde_json::from_str(&text).unwrap())
}

fn complete_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

#[test]
fn killed_eval_resumes_to_the_same_results() {
    let fx = fixture();
    let reference = fx.dir.path().join("uninterrupted");
    let t0 = Instant::now();
    assert!(tunebench(&fx.args("--out", &reference)).status.success());
    eprintln!(
        "uninterrupted run: {ITEMS} items in {:.2} s",
        t0.elapsed().as_secs_f64()
    );

    let killed = fx.dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(fx.args("--out", &killed))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while complete_lines(&killed.join("results.jsonl")) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no result line appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let kept = complete_lines(&killed.join("results.jsonl"));
    eprintln!("killed with {kept} whole lines written");
    assert!(
        kept < ITEMS && !killed.join("summary.json").exists(),
        "killed too late to test resuming"
    );

    let o = tunebench(&fx.args("--resume", &killed));
    assert!(o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("already answered"), "{stderr}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(killed.join("summary.json")).unwrap())
            .unwrap();
    let resumed = summary["resumed_items"].as_u64().unwrap() as usize;
    assert!(
        resumed >= 1 && resumed <= kept,
        "resumed {resumed} of {kept}"
    );
    let got = answers(&killed);
    assert_eq!(got.len(), ITEMS);
    assert_eq!(
        got,
        answers(&reference),
        "answers differ from the uninterrupted run"
    );
    assert_eq!(metrics(&killed), metrics(&reference));
}

#[test]
fn existing_results_and_bad_resume_folders_are_errors() {
    let fx = fixture();
    let out = fx.dir.path().join("run");
    let short = |flag: &'static str, dir: &Path| -> Output {
        let dir = dir.to_str().unwrap().to_owned();
        let model = fx.model.clone();
        let dataset = fx.dataset.to_str().unwrap().to_owned();
        tunebench(&[
            "eval",
            "--model",
            &model,
            "--dataset",
            &dataset,
            "--engine",
            "embedded",
            flag,
            &dir,
            "--max-tokens",
            "2",
            "--limit",
            "3",
        ])
    };
    let failed_with = |o: &Output, needle: &str| {
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    assert!(short("--out", &out).status.success());
    let results = std::fs::read_to_string(out.join("results.jsonl")).unwrap();

    // Into the same --out again: refused, pointing at --resume; the results are untouched.
    failed_with(&short("--out", &out), "--resume");
    assert_eq!(
        std::fs::read_to_string(out.join("results.jsonl")).unwrap(),
        results
    );
    // --resume of a folder that is not an evaluation (nothing there, or not even a folder).
    let not_eval = fx.dir.path().join("not-an-eval");
    std::fs::create_dir(&not_eval).unwrap();
    failed_with(&short("--resume", &not_eval), "is not an evaluation run");
    failed_with(&short("--resume", &fx.dataset), "is not an evaluation run");
    // A garbage line before the last: file and line named.
    let mut lines: Vec<&str> = results.lines().collect();
    lines[1] = "not json at all";
    std::fs::write(out.join("results.jsonl"), lines.join("\n") + "\n").unwrap();
    failed_with(&short("--resume", &out), "results.jsonl:2");
    // --out and --resume together: a usage error.
    let o = tunebench(&[
        "eval",
        "--model",
        &fx.model,
        "--dataset",
        fx.dataset.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--resume",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
}
