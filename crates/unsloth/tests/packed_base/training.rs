//! `train unsloth` with `[model] base_quant`: a tiny NF4 run trains like the dense run, its
//! `--gguf` merge uses the original (unquantised) weights, and bad settings are named errors.
#![expect(clippy::print_stderr, reason = "the test reports the measured gaps")]

use std::path::{Path, PathBuf};

use tb_model::weights::LoadOptions;
use tb_model::{CpuBackend, LoadedModel};
use tb_train::{Adapter, ExperimentConfig};
use tb_unsloth::packed_base::{PackingSink, QuantFormat};
use tb_unsloth::{reference, train_unsloth, TrainRequest};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures")
}

/// tiny-llama (hidden 64, intermediate 128, sharded safetensors) with the test tokenizer.
fn tiny_llama(dst: &Path) -> PathBuf {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(fixtures().join("tiny-llama")).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("model") || n == "config.json" {
            std::fs::copy(e.path(), dst.join(&n)).unwrap();
        }
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixtures().join("tokenizer").join(f), dst.join(f)).unwrap();
    }
    dst.to_path_buf()
}

fn dataset(root: &Path) -> PathBuf {
    let path = root.join("train.jsonl");
    let lines: Vec<String> = (0..8)
        .map(|i| {
            let answer = "Cevap ".repeat(1 + i % 3);
            format!(r#"{{"id": "t{i}", "category": "general", "instruction": "Soru {i} nedir?", "output": "{answer}{i}."}}"#)
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn experiment(root: &Path, model: &Path, quant: &str, steps: usize) -> ExperimentConfig {
    let text = format!(
        "name = \"tiny\"\n[model]\nbase = \"{}\"\nbase_quant = \"{quant}\"\n[data]\ntrain = \"{}\"\nmax_seq_len = 64\n[train]\nmicro_batch = 4\nmax_steps = {steps}\nseed = 3\nruns_dir = \"{}\"\n[optimizer]\nlr = 0.01\nwarmup_steps = 2\n[lora]\nr = 4\nalpha = 8\ndropout = 0.0\n",
        model.display(),
        dataset(root).display(),
        root.join(format!("runs-{quant}")).display()
    );
    ExperimentConfig::parse(&text).unwrap()
}

fn run(config: ExperimentConfig, gguf: &[&str]) -> tb_unsloth::TrainOutcome {
    train_unsloth(&TrainRequest {
        config,
        resume: None,
        progress: false,
        gguf: gguf.iter().map(|g| (*g).to_string()).collect(),
    })
    .unwrap()
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn values(t: burn::prelude::Tensor<CpuBackend, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap()
}

#[test]
fn a_tiny_nf4_run_trains_like_the_dense_run_and_merges_into_the_original_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_llama(&tmp.path().join("m"));
    let steps = 40;
    let dense = run(experiment(tmp.path(), &model, "none", steps), &[]);
    let nf4 = run(experiment(tmp.path(), &model, "nf4", steps), &["f16"]);
    let a = tb_train::run_dir::read_metrics(&dense.run.join("metrics.jsonl")).unwrap();
    let b = tb_train::run_dir::read_metrics(&nf4.run.join("metrics.jsonl")).unwrap();
    assert_eq!((a.len(), b.len()), (steps, steps));
    assert!(b.iter().all(|m| m.loss.is_finite()));
    // Relative per-step gap: NF4 rounds every adapted base weight (~10% RMS per value).
    let gap = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x.loss - y.loss).abs() / x.loss)
        .fold(0.0, f64::max);
    let last_gap = (a[steps - 1].loss - b[steps - 1].loss).abs() / a[steps - 1].loss;
    eprintln!(
        "{steps} steps: loss {:.4} -> {:.4} (dense) / {:.4} -> {:.4} (nf4); largest per-step relative gap {gap:.2e}, final relative gap {last_gap:.2e}",
        a[0].loss,
        a[steps - 1].loss,
        b[0].loss,
        b[steps - 1].loss
    );
    assert!(
        b[steps - 1].loss < 0.8 * b[0].loss,
        "the NF4 run did not train"
    );
    // Measured: largest per-step gap 1.5e-2, final gap 3.9e-3 (40 steps, seed 3).
    assert!(
        gap < 0.05,
        "NF4 loss curve strays from the dense one: {gap}"
    );
    assert!(last_gap < 0.02, "final loss gap {last_gap}");

    // The choice is recorded: backend label and resolved config; a dense config is unchanged.
    assert_eq!(nf4.summary.backend, "flex+fused+nf4");
    assert_eq!(dense.summary.backend, "flex+fused");
    let toml = std::fs::read_to_string(nf4.run.join("config.toml")).unwrap();
    assert!(toml.contains("base_quant = \"nf4\""), "{toml}");
    let toml = std::fs::read_to_string(dense.run.join("config.toml")).unwrap();
    assert!(!toml.contains("base_quant"), "{toml}");
    assert_eq!(nf4.ggufs.len(), 1);

    // `--gguf` merged the adapter into the original weights, not into dequant(NF4(W)).
    let device = Default::default();
    let merged = LoadedModel::<CpuBackend>::load(nf4.run.join("merged"), &device).unwrap();
    let base = LoadedModel::<CpuBackend>::load(&model, &device).unwrap();
    let adapter = Adapter::load(nf4.run.join("adapter")).unwrap();
    let with = adapter.apply(base.model, &device).unwrap();
    // The NF4 bases the run trained on, packed while loading as the trainer packs them.
    let mut sink = PackingSink::new(QuantFormat::Nf4, adapter.config.clone());
    let packed = load_through(&model, &mut sink).unwrap();
    let packed = adapter.apply(packed.model, &device).unwrap();
    let bases = sink.into_bases(&packed).unwrap();
    let (mut to_original, mut to_dequantised) = (0f32, f32::INFINITY);
    for (k, ((name, m), (_, w))) in merged
        .model
        .projections()
        .into_iter()
        .zip(with.projections())
        .enumerate()
    {
        let got = values(m.weight.val());
        to_original = to_original.max(rel_err(&got, &values(w.merged_weight())));
        let Some(lora) = &w.lora else { continue };
        let slot = tb_model::Projection::ALL[k % tb_model::Projection::ALL.len()];
        let q = bases
            .layer(k / tb_model::Projection::ALL.len())
            .get(slot)
            .unwrap();
        let deq = reference::dequantized::<CpuBackend>(q, &device).transpose() + lora.delta();
        let e = rel_err(&got, &values(deq));
        assert!(
            e > 1e-3,
            "{name}: merged weight looks like dequant(W4) + delta ({e})"
        );
        to_dequantised = to_dequantised.min(e);
    }
    eprintln!(
        "merged vs W + delta: max rel err {to_original:.1e}; vs dequant(NF4(W)) + delta: min rel err {to_dequantised:.1e}"
    );
    assert!(to_original < 1e-5, "{to_original}");
}

#[test]
fn q4_k_on_a_model_too_narrow_for_it_is_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_llama(&tmp.path().join("m"));
    let config = experiment(tmp.path(), &model, "q4_k", 2);
    let runs = config.train.runs_dir.clone();
    let err = train_unsloth(&TrainRequest {
        config,
        resume: None,
        progress: false,
        gguf: vec![],
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("model.base_quant")
            && err.contains("model.layers.0.self_attn.q_proj.weight")
            && err.contains("Q4_K")
            && err.contains("64"),
        "{err}"
    );
    assert!(!runs.exists(), "the refused run created {}", runs.display());
    // The same check while loading (what a GGUF base, which has no config.json to check
    // beforehand, relies on).
    let lora = tb_train::LoraConfig::from_experiment(
        &experiment(tmp.path(), &model, "q4_k", 2).lora,
        None,
    );
    let mut sink = PackingSink::new(QuantFormat::Q4K, lora);
    let err = match load_through(&model, &mut sink) {
        Ok(_) => panic!("Q4_K packed a 64-wide projection"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("model.layers.0.self_attn.q_proj.weight") && err.contains("Q4_K"),
        "{err}"
    );
}

/// Loads `model` on the CPU, its adapted projections handed to `sink` (the trainer's path).
fn load_through(model: &Path, sink: &mut PackingSink) -> tb_model::Result<LoadedModel<CpuBackend>> {
    let options = LoadOptions {
        sink: Some(sink),
        ..LoadOptions::default()
    };
    LoadedModel::load_with(model, &Default::default(), options)
}
