//! Resuming `tunebench train unsloth` as users hit it: a run killed (SIGKILL) mid-way, dense
//! and with an NF4 base, ends with the adapter and GGUF of an uninterrupted run; damaged,
//! foreign and half-written checkpoints are skipped or refused by name; a disk that fills up
//! while saving leaves the previous checkpoint to resume from.
#![expect(clippy::print_stderr, reason = "tests say what they could not run")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// What differs between the runs of one test.
struct Run<'a> {
    steps: usize,
    checkpoint_every: usize,
    base_quant: &'a str,
    lr: f64,
    rank: usize,
}

impl Default for Run<'_> {
    fn default() -> Self {
        Self {
            steps: 20,
            checkpoint_every: 5,
            base_quant: "none",
            lr: 0.01,
            rank: 4,
        }
    }
}

fn write_dataset(root: &Path) -> PathBuf {
    let path = root.join("train.jsonl");
    let lines: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"id": "t{i}", "category": "general", "instruction": "Soru {i}?", "output": "Cevap {i}, uzun bir cevap."}}"#))
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// Writes `<root>/<name>.toml` for a run into `runs`.
fn write_config(root: &Path, name: &str, model: &Path, runs: &Path, run: &Run<'_>) -> PathBuf {
    let text = format!(
        r#"name = "tiny"
[model]
base = "{}"
base_quant = "{}"
[data]
train = "{}"
max_seq_len = 64
[train]
micro_batch = 2
max_steps = {}
checkpoint_every = {}
log_every = 1
seed = 5
runs_dir = "{}"
[optimizer]
lr = {}
warmup_steps = 2
[lora]
r = {}
alpha = 8
dropout = 0.0
targets = "all-linear"
"#,
        model.display(),
        run.base_quant,
        write_dataset(root).display(),
        run.steps,
        run.checkpoint_every,
        runs.display(),
        run.lr,
        run.rank,
    );
    let path = root.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `tunebench train unsloth ARGS --no-progress`, with warnings on stderr.
fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(["train", "unsloth", "--no-progress"])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn train_ok(args: &[&str]) -> String {
    let out = train(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn logged_steps(run: &Path) -> Vec<usize> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap() as usize
        })
        .collect()
}

/// The metrics lines of steps up to `step`, as written (timings make each run's unique, so a
/// resumed run keeps them and a restarted one does not).
fn metrics_through(run: &Path, step: usize) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .take(step)
        .map(str::to_string)
        .collect()
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

fn flip_byte(path: &Path, at_fraction: f64) {
    let mut bytes = read(path);
    let i = (bytes.len() as f64 * at_fraction) as usize;
    bytes[i] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

fn checkpoint(run: &Path, step: usize) -> PathBuf {
    run.join(format!("checkpoints/step-{step:06}"))
}

/// Kills a `train unsloth --gguf q4_k_m` run once its first checkpoint exists, resumes it, and
/// checks adapter and GGUF against an uninterrupted run.
fn killed_run_resumes_to_the_same_outputs(base_quant: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_hf_dir("tiny-mistral", &tmp.path().join("model"), true);
    let spec = Run {
        steps: 400,
        base_quant,
        ..Run::default()
    };
    let runs_a = tmp.path().join("runs-a");
    let cfg = write_config(tmp.path(), "a", &model, &runs_a, &spec);
    train_ok(&["--config", cfg.to_str().unwrap(), "--gguf", "q4_k_m"]);
    let run_a = only_run(&runs_a);

    let runs_b = tmp.path().join("runs-b");
    let cfg = write_config(tmp.path(), "b", &model, &runs_b, &spec);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(["train", "unsloth", "--no-progress", "--gguf", "q4_k_m"])
        .args(["--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let run_b = loop {
        let found = std::fs::read_dir(&runs_b)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| checkpoint(p, 5).join("manifest.json").is_file());
        if let Some(run) = found {
            break run;
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
    let done = logged_steps(&run_b).len();
    assert!(
        done < spec.steps,
        "killed too late to test resuming ({done} steps logged)"
    );
    let before = metrics_through(&run_b, 5);

    let cfg_arg = cfg.to_str().unwrap();
    train_ok(&[
        "--config",
        cfg_arg,
        "--gguf",
        "q4_k_m",
        "--resume",
        run_b.to_str().unwrap(),
    ]);
    assert!(
        read(&run_a.join("adapter/adapter_model.safetensors"))
            == read(&run_b.join("adapter/adapter_model.safetensors")),
        "{base_quant}: the resumed adapter differs from the uninterrupted run's"
    );
    assert!(
        read(&run_a.join("tiny-Q4_K_M.gguf")) == read(&run_b.join("tiny-Q4_K_M.gguf")),
        "{base_quant}: the resumed GGUF differs from the uninterrupted run's"
    );
    assert_eq!(logged_steps(&run_b), (1..=spec.steps).collect::<Vec<_>>());
    assert_eq!(
        metrics_through(&run_b, 5),
        before,
        "the run restarted instead of resuming"
    );
}

#[test]
fn killed_dense_run_resumes_to_the_same_adapter_and_gguf() {
    killed_run_resumes_to_the_same_outputs("none");
}

#[test]
fn killed_nf4_run_resumes_to_the_same_adapter_and_gguf() {
    killed_run_resumes_to_the_same_outputs("nf4");
}

#[test]
fn resume_skips_damaged_checkpoints_and_refuses_when_none_is_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_hf_dir("tiny-mistral", &tmp.path().join("model"), true);
    let spec = Run::default();
    let runs = tmp.path().join("runs");
    let cfg = write_config(tmp.path(), "a", &model, &runs, &spec);
    train_ok(&["--config", cfg.to_str().unwrap()]);
    let run_a = only_run(&runs);
    let reference = read(&run_a.join("adapter/adapter_model.safetensors"));
    for step in [5, 10, 15] {
        assert!(
            checkpoint(&run_a, step).join("manifest.json").is_file(),
            "step {step}"
        );
    }

    // Newest checkpoint bit-flipped, the one before it truncated, a save killed half-way:
    // the run resumes from step 5 and ends where the uninterrupted run ended.
    let run_b = tmp.path().join("copy-b");
    copy_dir(&run_a, &run_b);
    std::fs::remove_dir_all(run_b.join("adapter")).unwrap();
    std::fs::remove_file(run_b.join("summary.json")).unwrap();
    flip_byte(&checkpoint(&run_b, 15).join("optimizer.safetensors"), 0.7);
    let trainable = checkpoint(&run_b, 10).join("trainable.safetensors");
    let len = read(&trainable).len();
    std::fs::write(&trainable, &read(&trainable)[..len - 100]).unwrap();
    let partial = run_b.join("checkpoints/.tmp-step-000020");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("trainable.safetensors"), b"half").unwrap();
    let before = metrics_through(&run_b, 6);
    let err = train_ok(&[
        "--config",
        cfg.to_str().unwrap(),
        "--resume",
        run_b.to_str().unwrap(),
    ]);
    assert!(err.contains("step-000015/optimizer.safetensors"), "{err}");
    assert!(err.contains("step-000010/trainable.safetensors"), "{err}");
    assert!(
        !partial.exists(),
        "the half-written checkpoint folder stayed"
    );
    assert!(
        read(&run_b.join("adapter/adapter_model.safetensors")) == reference,
        "resuming from an older checkpoint gave another adapter"
    );
    assert_eq!(logged_steps(&run_b), (1..=spec.steps).collect::<Vec<_>>());
    let after = metrics_through(&run_b, 6);
    assert_eq!(
        after[..5],
        before[..5],
        "steps 1-5 must be kept from the checkpoint"
    );
    assert_ne!(after[5], before[5], "step 6 must be trained again");

    // A checkpoint of another experiment, one without its manifest and a bit-flipped one:
    // nothing to resume from is an error naming each, and the run is left as it was.
    let runs_c = tmp.path().join("runs-c");
    let other = Run {
        lr: 0.02,
        ..Run::default()
    };
    let cfg_c = write_config(tmp.path(), "c", &model, &runs_c, &other);
    train_ok(&["--config", cfg_c.to_str().unwrap()]);
    let run_d = tmp.path().join("copy-d");
    copy_dir(&run_a, &run_d);
    std::fs::remove_dir_all(checkpoint(&run_d, 15)).unwrap();
    copy_dir(&checkpoint(&only_run(&runs_c), 15), &checkpoint(&run_d, 15));
    std::fs::remove_file(checkpoint(&run_d, 10).join("manifest.json")).unwrap();
    flip_byte(&checkpoint(&run_d, 5).join("trainable.safetensors"), 0.9);
    let metrics_before = read(&run_d.join("metrics.jsonl"));
    let adapter_before = read(&run_d.join("adapter/adapter_model.safetensors"));
    let out = train(&[
        "--config",
        cfg.to_str().unwrap(),
        "--resume",
        run_d.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no usable checkpoint"), "{err}");
    assert!(
        err.contains("step-000015/state.json") && err.contains("config"),
        "{err}"
    );
    assert!(err.contains("step-000010/manifest.json"), "{err}");
    assert!(err.contains("step-000005/trainable.safetensors"), "{err}");
    assert!(
        read(&run_d.join("metrics.jsonl")) == metrics_before,
        "metrics were rewritten"
    );
    assert!(
        read(&run_d.join("adapter/adapter_model.safetensors")) == adapter_before,
        "the adapter was rewritten"
    );
}

#[test]
fn metrics_line_cut_short_by_a_kill_is_dropped_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_hf_dir("tiny-mistral", &tmp.path().join("model"), true);
    let spec = Run {
        steps: 10,
        ..Run::default()
    };
    let runs = tmp.path().join("runs");
    let cfg = write_config(tmp.path(), "a", &model, &runs, &spec);
    train_ok(&["--config", cfg.to_str().unwrap()]);
    let run = only_run(&runs);
    let reference = read(&run.join("adapter/adapter_model.safetensors"));
    // As a kill during step 8's append leaves it: seven lines and the start of the eighth.
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let mut kept: String = text.lines().take(7).map(|l| format!("{l}\n")).collect();
    kept.push_str(&text.lines().nth(7).unwrap()[..20]);
    std::fs::write(run.join("metrics.jsonl"), kept).unwrap();
    std::fs::remove_dir_all(run.join("adapter")).unwrap();
    let before = metrics_through(&run, 5);
    train_ok(&[
        "--config",
        cfg.to_str().unwrap(),
        "--resume",
        run.to_str().unwrap(),
    ]);
    assert_eq!(
        metrics_through(&run, 5),
        before,
        "the run restarted instead of resuming"
    );
    assert!(read(&run.join("adapter/adapter_model.safetensors")) == reference);
    assert_eq!(logged_steps(&run), (1..=spec.steps).collect::<Vec<_>>());
}

/// Bytes a checkpoint folder takes on a tmpfs (whole pages per file).
fn pages_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len().div_ceil(4096) * 4096)
        .sum()
}

#[test]
fn full_disk_while_saving_keeps_the_previous_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_hf_dir("tiny-mistral", &tmp.path().join("model"), true);
    // A rank that makes a checkpoint much larger than the config and metrics beside it.
    let spec = Run {
        rank: 16,
        ..Run::default()
    };
    let runs_a = tmp.path().join("runs-a");
    let cfg = write_config(tmp.path(), "a", &model, &runs_a, &spec);
    train_ok(&["--config", cfg.to_str().unwrap()]);
    let run_a = only_run(&runs_a);
    let one = pages_of(&checkpoint(&run_a, 5));

    // The run folder on a tmpfs that holds one checkpoint and a half: the save at step 10
    // fails. The tmpfs lives in a private mount namespace, so its content is copied out.
    let runs_b = tmp.path().join("runs-b");
    std::fs::create_dir_all(&runs_b).unwrap();
    let cfg_b = write_config(tmp.path(), "b", &model, &runs_b, &spec);
    let copied = tmp.path().join("copied");
    let script = format!(
        "mount -t tmpfs -o size={} tmpfs '{runs}' || exit 200\n\
         '{bin}' train unsloth --no-progress --config '{cfg}' 2>'{err}'\n\
         echo $? > '{rc}'\n\
         cp -a '{runs}/.' '{copied}/'",
        one + one / 2 + 64 * 1024,
        runs = runs_b.display(),
        bin = env!("CARGO_BIN_EXE_tunebench"),
        cfg = cfg_b.display(),
        err = tmp.path().join("stderr").display(),
        rc = tmp.path().join("rc").display(),
        copied = copied.display(),
    );
    std::fs::create_dir_all(&copied).unwrap();
    let status = Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", &script])
        .env("RUST_LOG", "warn")
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            let why = format!("cannot mount a tmpfs in a private namespace ({other:?})");
            assert!(std::env::var_os("CI").is_none(), "{why}");
            eprintln!("skipped full_disk_while_saving_keeps_the_previous_checkpoint: {why}");
            return;
        }
    }
    let rc = std::fs::read_to_string(tmp.path().join("rc")).unwrap();
    let err = std::fs::read_to_string(tmp.path().join("stderr")).unwrap();
    assert_eq!(rc.trim(), "1", "{err}");
    assert!(
        err.contains("No space left on device") && err.contains("step-000010"),
        "{err}"
    );
    let run_b = only_run(&copied);
    assert!(checkpoint(&run_b, 5).join("manifest.json").is_file());
    let left: Vec<_> = std::fs::read_dir(run_b.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, ["step-000005"], "the failed save left files behind");

    // On a disk with room, the run resumes from step 5 and ends like the uninterrupted one.
    let before = metrics_through(&run_b, 5);
    train_ok(&[
        "--config",
        cfg_b.to_str().unwrap(),
        "--resume",
        run_b.to_str().unwrap(),
    ]);
    assert!(
        read(&run_a.join("adapter/adapter_model.safetensors"))
            == read(&run_b.join("adapter/adapter_model.safetensors")),
        "the run resumed after a full disk gave another adapter"
    );
    assert_eq!(
        metrics_through(&run_b, 5),
        before,
        "the run restarted instead of resuming"
    );
}
