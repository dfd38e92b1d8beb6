//! The real binary on hostile inputs of each format a user hands it: experiment files, JSONL
//! datasets and safetensors model folders. Each must end with exit code 1 (not 101, a panic),
//! an error on stderr naming the file, and nothing left behind: no run folder, no output file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{repo, tiny_hf_dir};
use serde_json::{json, Value};

/// Runs `tunebench`; returns (exit code, stderr).
fn tunebench(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tunebench"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run tunebench");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const RECORDS: &[&str] = &[
    r#"{"id": "t1", "category": "general", "instruction": "Soru bir?", "output": "Cevap bir."}"#,
    r#"{"id": "t2", "category": "general", "instruction": "Soru iki?", "output": "Cevap iki."}"#,
];

/// A scratch folder with a tiny model, a clean dataset and an experiment file using both.
struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    data: PathBuf,
    runs: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let model = tiny_hf_dir("tiny-mistral", &root.join("model"), false);
        let data = root.join("train.jsonl");
        std::fs::write(&data, RECORDS.join("\n")).unwrap();
        Self {
            runs: root.join("runs"),
            _tmp: tmp,
            root,
            model,
            data,
        }
    }

    /// An experiment file over `model` and `data`.
    fn config(&self, model: &Path, data: &Path) -> String {
        format!(
            "name = \"tiny\"\n[model]\nbase = \"{}\"\n[data]\ntrain = \"{}\"\nmax_seq_len = 32\n\
             [train]\nmicro_batch = 2\nmax_steps = 1\nruns_dir = \"{}\"\n[lora]\nr = 2\n\
             targets = [\"q_proj\"]\n",
            model.display(),
            data.display(),
            self.runs.display()
        )
    }

    fn write_config(&self, text: &[u8]) -> PathBuf {
        let path = self.root.join("exp.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `train METHOD --config CFG` must fail cleanly, naming `named`, with no run folder.
    fn train_fails(&self, method: &str, cfg: &Path, named: &str, case: &str) {
        let (code, stderr) = tunebench(&[
            "train",
            method,
            "--config",
            cfg.to_str().unwrap(),
            "--no-progress",
        ]);
        assert_eq!(
            code,
            Some(1),
            "{case}: exit code (101 = panic); stderr:\n{stderr}"
        );
        assert!(
            stderr.contains(named),
            "{case}: stderr does not name {named}:\n{stderr}"
        );
        assert!(
            !self.runs.exists() || std::fs::read_dir(&self.runs).unwrap().next().is_none(),
            "{case}: a run folder was left in {}",
            self.runs.display()
        );
    }
}

#[test]
fn hostile_experiment_files_fail_before_any_run_folder() {
    let s = Setup::new();
    let good = s.config(&s.model, &s.data);
    let truncated = good.as_bytes()[..good.find("max_seq_len").unwrap() + 5].to_vec();
    let mut not_utf8 = good.clone().into_bytes();
    not_utf8[3] = 0xFF;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", truncated, "line 6"),
        ("invalid UTF-8", not_utf8, "invalid UTF-8 at line 1"),
        (
            "NaN weight decay",
            format!("{good}[optimizer]\nweight_decay = nan\n").into_bytes(),
            "optimizer.weight_decay",
        ),
        (
            "negative batch",
            good.replace("micro_batch = 2", "micro_batch = -2")
                .into_bytes(),
            "line 8",
        ),
        (
            "huge epochs",
            good.replace("max_steps = 1", "epochs = 9223372036854775807")
                .into_bytes(),
            "train.epochs",
        ),
        (
            "unknown key",
            good.replace("[lora]\nr = 2", "[lora]\nrank = 2")
                .into_bytes(),
            "rank",
        ),
        (
            "missing section",
            good.replace("[data]", "[dataset]").into_bytes(),
            "dataset",
        ),
        (
            "name with a path",
            good.replace("name = \"tiny\"", "name = \"../../x\"")
                .into_bytes(),
            "`name`",
        ),
    ];
    for (case, text, want) in &cases {
        let cfg = s.write_config(text);
        for method in ["peft", "unsloth"] {
            s.train_fails(method, &cfg, "exp.toml", case);
        }
        let (_, stderr) = tunebench(&["train", "peft", "--config", cfg.to_str().unwrap()]);
        assert!(stderr.contains(want), "{case}: want {want:?} in\n{stderr}");
    }
}

#[test]
fn hostile_datasets_fail_before_any_run_folder() {
    let s = Setup::new();
    let bad = s.root.join("bad.jsonl");
    let cfg = s.write_config(s.config(&s.model, &bad).as_bytes());
    let clean = RECORDS.join("\n").into_bytes();
    let mut not_utf8 = clean.clone();
    not_utf8[RECORDS[0].len() + 10] = 0xC3;
    let mut nul = clean.clone();
    nul[5] = 0;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("invalid UTF-8", not_utf8, "bad.jsonl:2:10: invalid UTF-8"),
        ("NUL byte", nul, "bad.jsonl:1:6: NUL byte"),
        (
            "truncated JSON",
            clean[..clean.len() - 5].to_vec(),
            "bad.jsonl:2: field `<json>`: invalid JSON",
        ),
        (
            "wrong field type",
            RECORDS[0].replace("\"t1\"", "[1]").into_bytes(),
            "bad.jsonl:1: field `id`: expected a string",
        ),
        (
            "10 MB of garbage",
            [b"{\"id\": \"".as_slice(), &vec![b'a'; 10 << 20]].concat(),
            "bad.jsonl:1: field `<json>`: invalid JSON",
        ),
        (
            "empty",
            b"\r\n\n".to_vec(),
            "bad.jsonl: the dataset is empty",
        ),
    ];
    for (case, bytes, want) in &cases {
        std::fs::write(&bad, bytes).unwrap();
        s.train_fails("peft", &cfg, want, case);
        let (code, stderr) = tunebench(&[
            "data",
            "check",
            bad.to_str().unwrap(),
            "--model",
            s.model.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(1), "{case}: data check: {stderr}");
        assert!(stderr.contains(want), "{case}: data check: {stderr}");
    }
    // A byte order mark and CRLF line ends are accepted.
    std::fs::write(&bad, format!("\u{feff}{}\r\n", RECORDS.join("\r\n"))).unwrap();
    let (code, stderr) = tunebench(&[
        "data",
        "check",
        bad.to_str().unwrap(),
        "--model",
        s.model.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "BOM + CRLF: {stderr}");
}

/// `model.safetensors` of `dir` with its header edited by `edit`.
fn edit_header(dir: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let file = dir.join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut text = Value::Object(header).to_string().into_bytes();
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&file, out).unwrap();
}

fn copy_dir(from: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to.to_path_buf()
}

#[test]
fn hostile_model_folders_fail_before_any_run_folder_or_output() {
    let s = Setup::new();
    let first = "model.embed_tokens.weight";
    type Damage = Box<dyn Fn(&Path)>;
    let single: Vec<(&str, Damage, &str)> = vec![
        (
            "huge header length",
            Box::new(|d| {
                let f = d.join("model.safetensors");
                let mut b = std::fs::read(&f).unwrap();
                b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
                std::fs::write(&f, b).unwrap();
            }),
            "header length 18446744073709551615 (bytes 0..8)",
        ),
        (
            "truncated",
            Box::new(|d| {
                let f = d.join("model.safetensors");
                let b = std::fs::read(&f).unwrap();
                std::fs::write(&f, &b[..b.len() - 100]).unwrap();
            }),
            "truncated?",
        ),
        (
            "bad dtype",
            Box::new(move |d| edit_header(d, |h| h[first]["dtype"] = json!("F33"))),
            "field `dtype`: unknown variant `F33`",
        ),
        (
            "overlapping offsets",
            Box::new(move |d| {
                edit_header(d, |h| {
                    let (s, e) = {
                        let o = &h[first]["data_offsets"];
                        (o[0].as_u64().unwrap(), o[1].as_u64().unwrap())
                    };
                    h[first]["data_offsets"] = json!([s + 4, e + 4]);
                })
            }),
            "data_offsets",
        ),
        (
            "huge shape",
            Box::new(move |d| edit_header(d, |h| h[first]["shape"] = json!([1u64 << 62, 8]))),
            "the byte size overflows",
        ),
    ];
    let out = s.root.join("out.gguf");
    for (i, (case, damage, want)) in single.iter().enumerate() {
        let dir = tiny_hf_dir("tiny-mistral", &s.root.join(format!("m{i}")), false);
        damage(&dir);
        let cfg = s.write_config(s.config(&dir, &s.data).as_bytes());
        s.train_fails(
            "peft",
            &cfg,
            &format!("{}", dir.join("model.safetensors").display()),
            case,
        );
        let (_, stderr) = tunebench(&["train", "unsloth", "--config", cfg.to_str().unwrap()]);
        assert!(stderr.contains(want), "{case}: want {want:?} in\n{stderr}");
        let (code, stderr) = tunebench(&[
            "export",
            "gguf",
            "--model",
            dir.to_str().unwrap(),
            "--quant",
            "f16",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(1), "{case}: export: {stderr}");
        assert!(
            stderr.contains("model.safetensors"),
            "{case}: export: {stderr}"
        );
        assert!(!out.exists(), "{case}: export left {}", out.display());
    }

    // Sharded: a missing shard, an index that is not JSON, one pointing at the wrong shard.
    let sharded = repo().join("crates/model/tests/fixtures/tiny-llama");
    let tokenizer = repo().join("crates/model/tests/fixtures/tokenizer");
    let index = "model.safetensors.index.json";
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "missing shard",
            Box::new(|d| std::fs::remove_file(d.join("model-00003-of-00004.safetensors")).unwrap()),
            "model-00003-of-00004.safetensors",
        ),
        (
            "index not JSON",
            Box::new(move |d| std::fs::write(d.join(index), "{\"weight_map\": {").unwrap()),
            index,
        ),
        (
            "wrong shard",
            Box::new(move |d| {
                let path = d.join(index);
                let mut v: Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                v["weight_map"]["model.norm.weight"] = json!("model-00001-of-00004.safetensors");
                std::fs::write(&path, v.to_string()).unwrap();
            }),
            index,
        ),
    ];
    for (i, (case, damage, want)) in cases.iter().enumerate() {
        let dir = copy_dir(&sharded, &s.root.join(format!("s{i}")));
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(tokenizer.join(f), dir.join(f)).unwrap();
        }
        damage(&dir);
        let cfg = s.write_config(s.config(&dir, &s.data).as_bytes());
        s.train_fails("peft", &cfg, want, case);
    }
}
