//! `tunebench train hf-peft` runs: the committed fixture run (made by the HF+PEFT peer on
//! tb-model's tiny Mistral, `tests/fixtures/hf-peft/regenerate.sh`) loads like any run and gets
//! its rows in the tables; its adapter, written by PEFT's own `save_pretrained`, merges into the
//! base (changing the adapted projections) and exports as a llama.cpp LoRA GGUF. The Rust side of
//! the contract is checked with stand-in scripts (CI has no torch): a good one gives the run
//! summary, a malformed result file an error naming the file and the field, a failing script an
//! error holding its stderr.

mod common;

use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use tb_report::peer_run::{PeerTrainPlan, PeerWatcher, PEER_RESULT_FILE};
use tb_report::tables::{find_row, number, text};
use tb_train::{ExperimentConfig, StepMetrics};

/// The committed run folder (the only one under `fixtures/hf-peft/runs`).
fn fixture_run() -> PathBuf {
    let runs = common::fixtures().join("hf-peft/runs");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "one fixture run in {}", runs.display());
    dirs.pop().unwrap()
}

#[test]
fn the_fixture_run_loads_and_has_its_rows_in_the_tables() {
    let run = tb_report::load_run(&fixture_run()).unwrap();
    let s = &run.summary;
    assert_eq!(s.method, "hf-peft");
    assert_eq!(s.backend, tb_report::bench::PEER_BACKEND);
    assert_eq!(s.steps, 3);
    let data = s.data.expect("TrainData counts");
    assert_eq!((data.records, data.kept + data.dropped), (8, 8));
    assert!(s.eval_loss.is_some_and(f64::is_finite));
    assert!(s.trainable_params > 0 && s.trained_tokens > 0 && s.slots >= s.trained_tokens);
    assert_eq!(
        run.metrics.iter().map(|m| m.step).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(run.metrics.last().unwrap().eval_loss, s.eval_loss);
    assert!(s
        .artifacts
        .iter()
        .any(|a| a.path == "adapter/adapter_model.safetensors"));

    let f = common::fixtures();
    let mut inputs = tb_report::ReportInputs {
        runs: tb_report::find_runs(&f.join("runs")).unwrap(),
        ..Default::default()
    };
    inputs.runs.push(run.clone());
    let dir = tempfile::tempdir().unwrap();
    let out = tb_report::write_report(&inputs, &common::environment(&inputs), dir.path()).unwrap();
    let t = &out.tables.training;
    let row = find_row(t, "method", "hf-peft").expect("an hf-peft row");
    assert_eq!(text(t, "backend", row).as_deref(), Some("torch-cpu"));
    assert_eq!(number(t, "tokens_per_s", row), Some(s.tokens_per_s));
    assert_eq!(number(t, "eval_loss", row), s.eval_loss);
    let m = &out.tables.methods;
    assert!(find_row(m, "method", "hf-peft").is_some());
    let b = &out.tables.before_after;
    let row = find_row(b, "model", "hf-peft").expect("an hf-peft before/after row");
    assert_eq!(number(b, "train_records", row), Some(8.0));
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(md.contains("hf-peft"), "{md}");
    let env = common::environment(&inputs);
    let torch = env
        .versions
        .iter()
        .find(|(name, _)| name == "torch (hf-peft peer)");
    assert!(
        torch.is_some_and(|(_, v)| v.contains(" threads)")),
        "{:?}",
        env.versions
    );
}

fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().to_vec()))
        .collect();
    out.sort();
    out
}

#[test]
fn the_peft_adapter_merges_into_the_base_and_exports_as_a_lora_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    // The base the fixture was trained on: tiny-mistral's weights with the fixture tokenizer.
    let base = tb_testkit::tiny_mistral_dir(&tmp.path().join("base"), |_, _| true);
    let adapter = fixture_run().join("adapter");
    let merged = tmp.path().join("merged");
    let report = tb_train::merge_into_dir(&base, &adapter, &merged).unwrap();
    assert_eq!(report.merged_tensors, 14, "7 projections × 2 layers");
    assert!(report.max_abs_delta > 0.0, "{report:?}");
    let before = tensors(&base.join("model.safetensors"));
    let after = tensors(&merged.join("model.safetensors"));
    assert_eq!(
        before.iter().map(|t| &t.0).collect::<Vec<_>>(),
        after.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        let adapted = [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
        .iter()
        .any(|p| name.contains(p));
        assert_eq!(
            a != b,
            adapted,
            "{name}: changed only where LoRA was trained"
        );
    }

    let gguf = tmp.path().join("adapter-lora.gguf");
    let r = tb_train::export_lora_adapter(&adapter, &base, &gguf, tb_gguf::LoraTensorType::F32)
        .unwrap();
    assert_eq!((r.r, r.targets), (4, 14), "{r:?}");
    assert!(r.bytes_out > 0 && std::fs::metadata(&gguf).unwrap().len() == r.bytes_out);
}

/// An experiment whose runs go to `runs` (the stand-in scripts never read the model or data).
fn experiment(runs: &Path) -> ExperimentConfig {
    let mut c = ExperimentConfig::parse(
        "name = \"stand-in\"\n[model]\nbase = \"m\"\n[data]\ntrain = \"t.jsonl\"\n[train]\nmax_steps = 2\n",
    )
    .unwrap();
    c.train.runs_dir = runs.to_path_buf();
    c
}

/// A python script that reads `--out DIR` and runs `body` (with `out` set to that folder).
fn script(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("peer.py");
    let text = format!(
        "import json, os, sys\nout = sys.argv[sys.argv.index('--out') + 1]\nassert os.path.isfile(os.path.join(out, 'config.toml'))\n{body}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

const METRICS: &str = r#"
with open(os.path.join(out, 'metrics.jsonl'), 'a') as f:
    for step in (1, 2):
        f.write(json.dumps({'step': step, 'epoch': step / 4, 'loss': 3.0 - step / 10, 'lr': 1e-3,
            'grad_norm': 1.0, 'tokens': 90, 'loss_tokens': 40, 'slots': 100, 'tokens_per_s': 45.0,
            'elapsed_s': 2.0 * step, 'rss_mib': 500.0}) + '\n')
os.makedirs(os.path.join(out, 'adapter'))
for name in ('adapter_config.json', 'adapter_model.safetensors'):
    open(os.path.join(out, 'adapter', name), 'w').write('{}')
"#;

const RESULT: &str = r#"
result = {'steps': 2, 'train_s': 4.0, 'trained_tokens': 180, 'loss_tokens': 80, 'slots': 200,
    'tokens_per_s': 45.0, 'loss_tokens_per_s': 20.0, 'peak_rss_mib': 512.0, 'final_train_loss': 2.8,
    'eval_loss': 2.9, 'trainable_params': 1234, 'torch': '0.0-stand-in', 'threads': 1,
    'data': {'max_seq_len': 64, 'records': 10, 'kept': 9, 'truncated': 2, 'dropped': 1}}
"#;

#[derive(Default)]
struct Seen {
    run: Option<PathBuf>,
    steps: Vec<usize>,
    stderr: Vec<String>,
}

impl PeerWatcher for Seen {
    fn started(&mut self, run: &Path) {
        self.run = Some(run.to_path_buf());
    }
    fn step(&mut self, m: &StepMetrics) {
        self.steps.push(m.step);
    }
    fn stderr_line(&mut self, line: &str) {
        self.stderr.push(line.to_string());
    }
}

fn plan(tmp: &Path, body: &str) -> PeerTrainPlan {
    PeerTrainPlan {
        config: experiment(&tmp.join("runs")),
        python: "python3".into(),
        script: script(tmp, body),
    }
}

#[test]
fn a_finished_script_gives_the_summary_and_the_outcome() {
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "{METRICS}{RESULT}\njson.dump(result, open(os.path.join(out, '{PEER_RESULT_FILE}'), 'w'))\nprint('peer says hi', file=sys.stderr)"
    );
    let plan = plan(tmp.path(), &body);
    let mut seen = Seen::default();
    let outcome = tb_report::train_hf_peft(&plan, &mut seen).unwrap();
    assert_eq!(seen.run.as_ref(), Some(&outcome.run));
    assert_eq!(seen.steps, [1, 2]);
    assert_eq!(seen.stderr, ["peer says hi"]);
    let name = outcome
        .run
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.ends_with("-hf-peft"), "{name}");
    assert_eq!(outcome.adapter, outcome.run.join("adapter"));
    let run = tb_report::load_run(&outcome.run).unwrap();
    assert_eq!(run.summary, outcome.summary);
    let s = &run.summary;
    assert_eq!(
        (s.method.as_str(), s.backend.as_str()),
        ("hf-peft", "torch-cpu")
    );
    assert_eq!(s.config_hash, plan.config.hash());
    assert_eq!((s.steps, s.trained_tokens, s.slots), (2, 180, 200));
    assert!((s.padding_fraction - 0.1).abs() < 1e-12);
    assert_eq!((s.final_train_loss, s.eval_loss), (2.8, Some(2.9)));
    assert_eq!(s.data.unwrap().dropped, 1);
    assert_eq!(s.artifacts.len(), 2);
    assert_eq!(run.metrics.len(), 2);
    assert!(run.config_toml.unwrap().contains("stand-in"));
}

#[test]
fn a_malformed_result_file_is_an_error_naming_the_file_and_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let body = format!(
        "{METRICS}{RESULT}\ndel result['trained_tokens']\njson.dump(result, open(os.path.join(out, '{PEER_RESULT_FILE}'), 'w'))"
    );
    let e = tb_report::train_hf_peft(&plan(tmp.path(), &body), &mut Seen::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(PEER_RESULT_FILE) && e.contains("trained_tokens"),
        "{e}"
    );

    let body = format!(
        "{METRICS}{RESULT}\nresult['data']['kept'] = 'nine'\njson.dump(result, open(os.path.join(out, '{PEER_RESULT_FILE}'), 'w'))"
    );
    let e = tb_report::train_hf_peft(&plan(tmp.path(), &body), &mut Seen::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains(PEER_RESULT_FILE) && e.contains("nine"), "{e}");
}

#[test]
fn a_failing_script_is_an_error_with_its_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let body = "print('loading', file=sys.stderr)\nprint('RuntimeError: peer exploded', file=sys.stderr)\nsys.exit(3)";
    let mut seen = Seen::default();
    let e = tb_report::train_hf_peft(&plan(tmp.path(), body), &mut seen)
        .unwrap_err()
        .to_string();
    assert!(e.contains("peer exploded") && e.contains("loading"), "{e}");
    assert!(e.contains("exit status: 3"), "{e}");
    assert_eq!(seen.stderr.len(), 2);

    let mut p = plan(tmp.path(), "pass");
    p.python = tmp
        .path()
        .join("no-such-python")
        .to_string_lossy()
        .into_owned();
    let e = tb_report::train_hf_peft(&p, &mut Seen::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("could not start"), "{e}");

    // Exit 0 without a result file: the missing file is named.
    let e = tb_report::train_hf_peft(&plan(tmp.path(), "pass"), &mut Seen::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains(PEER_RESULT_FILE), "{e}");
}

#[test]
fn a_4_bit_base_is_refused_before_a_run_folder_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = plan(tmp.path(), "pass");
    p.config.model.base_quant = tb_train::BaseQuant::Nf4;
    let e = tb_report::train_hf_peft(&p, &mut Seen::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.base_quant"), "{e}");
    assert!(!tmp.path().join("runs").exists());
}
