//! tb-peft against real HF PEFT (fixtures made by tests/fixtures/make_peft_fixtures.py with
//! peft 0.21.2 / transformers 5.24 / torch 2.15): LoRA forward, merge, and training gradients.

#![expect(clippy::print_stderr, reason = "tests report the measured agreement")]

mod common;

use burn::backend::Autodiff;
use burn::prelude::*;
use common::*;
use tb_data::Batch;
use tb_model::{CpuBackend, LoadedModel, ModelDir};
use tb_peft::{Adapter, LoraConfig, PeftTrainer};
use tb_train::Trainer;

fn ids() -> (Vec<usize>, Vec<i64>) {
    reference().ints["input_ids"].clone()
}

fn logits_with(adapter: Option<&str>) -> Vec<f32> {
    let device = Default::default();
    let dir = ModelDir::open(tiny_mistral()).unwrap();
    let mut model = dir.load::<CpuBackend>(&device).unwrap();
    if let Some(name) = adapter {
        let a = Adapter::load(fixtures().join(name)).unwrap();
        model = a.apply(model, &device).unwrap();
    }
    let (shape, ids) = ids();
    let t = Tensor::<CpuBackend, 1, Int>::from_data(
        TensorData::new(ids, [shape[0] * shape[1]]),
        &device,
    )
    .reshape([shape[0], shape[1]]);
    model.forward(t).into_data().to_vec::<f32>().unwrap()
}

#[test]
fn lora_forward_matches_peft_logits() {
    let r = reference();
    for name in ["all-linear", "patterns"] {
        let ours = logits_with(Some(name));
        let theirs = &r.floats[&format!("logits.{name}")].1;
        let d = max_abs_diff(&ours, theirs);
        eprintln!("{name}: max |Δlogit| = {d:.2e}");
        assert!(d < 1e-4, "{name}: max |Δlogit| {d}");
        // The adapter must matter, or the comparison proves nothing.
        let base = &r.floats["logits.base"].1;
        assert!(
            max_abs_diff(theirs, base) > 1e-2,
            "{name} adapter is a no-op"
        );
    }
}

#[test]
fn reads_peft_configs_with_patterns() {
    let c = LoraConfig::load(fixtures().join("patterns")).unwrap();
    assert!(c.use_rslora);
    assert_eq!(c.rank_for("model.layers.1.self_attn.v_proj"), 2);
    assert_eq!(c.rank_for("model.layers.1.self_attn.q_proj"), 4);
    assert_eq!(c.alpha_for("model.layers.1.self_attn.o_proj"), 4.0);
    assert!((c.scale_for("model.layers.1.self_attn.v_proj") - 8.0 / 2f64.sqrt()).abs() < 1e-12);
    assert!(c.targets("model.layers.1.self_attn.q_proj"));
    assert!(
        !c.targets("model.layers.0.self_attn.q_proj"),
        "layers_to_transform ignored"
    );
    assert!(!c.targets("model.layers.1.mlp.up_proj"));
}

#[test]
fn merge_matches_merge_and_unload() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let report =
        tb_peft::merge_into_dir(&tiny_mistral(), &fixtures().join("all-linear"), &out).unwrap();
    assert_eq!(report.merged_tensors, 14);
    let ours = tb_model::SafetensorsCheckpoint::open(&out).unwrap();
    let theirs =
        tb_model::SafetensorsCheckpoint::open(fixtures().join("merged-all-linear")).unwrap();
    let mut worst = 0f32;
    for name in theirs.names() {
        let shape = theirs.shape(name).unwrap();
        let a = ours.tensor_f32(name, &shape).unwrap();
        let b = theirs.tensor_f32(name, &shape).unwrap();
        worst = worst.max(rel_err(&a, &b));
    }
    eprintln!("merge vs merge_and_unload: max relative error {worst:.2e}");
    assert!(worst <= 1e-6, "{worst}");
    // Config and index files travel with the weights; logits of the merged model equal the
    // adapter forward.
    assert!(out.join("config.json").is_file());
    let device = Default::default();
    // The fixture base has no tokenizer files: the weights load, the tokenizer says so.
    let merged = LoadedModel::<CpuBackend>::load(&out, &device).unwrap();
    let e = merged
        .tokenizer()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("tokenizer"), "{e}");
    let model = merged.model;
    let (shape, ids) = ids();
    let t = Tensor::<CpuBackend, 1, Int>::from_data(
        TensorData::new(ids, [shape[0] * shape[1]]),
        &device,
    )
    .reshape([shape[0], shape[1]]);
    let logits = model.forward(t).into_data().to_vec::<f32>().unwrap();
    let d = max_abs_diff(&logits, &reference().floats["logits.all-linear"].1);
    assert!(d < 1e-4, "merged logits differ by {d}");
}

fn fixture_batch() -> Batch {
    let r = reference();
    let (shape, ids) = r.ints["input_ids"].clone();
    let targets = r.ints["train.targets"].1.clone();
    let (rows, seq) = (shape[0], shape[1]);
    Batch {
        rows,
        seq_len: seq,
        input_ids: ids.iter().map(|&i| i as u32).collect(),
        positions: (0..rows).flat_map(|_| 0..seq as u32).collect(),
        segments: vec![vec![0; seq]; rows],
        loss_tokens: targets.iter().filter(|&&t| t != -100).count(),
        targets,
        real_tokens: rows * seq,
        example_ids: vec!["a".into(), "b".into()],
    }
}

fn fixture_trainer() -> PeftTrainer<Autodiff<CpuBackend>> {
    let device = Default::default();
    let model = ModelDir::open(tiny_mistral())
        .unwrap()
        .load::<Autodiff<CpuBackend>>(&device)
        .unwrap();
    let model = Adapter::load(fixtures().join("all-linear"))
        .unwrap()
        .apply(model, &device)
        .unwrap();
    PeftTrainer {
        model,
        pad_id: 0,
        device,
        backend_name: "flex".into(),
    }
}

#[test]
fn training_gradients_match_peft() {
    let r = reference();
    let batch = fixture_batch();
    let mut trainer = fixture_trainer();
    let n = batch.loss_tokens;
    let step = trainer.micro_step(&batch, 1.0 / n as f32, 0).unwrap();
    let loss = step.loss_sum / n as f64;
    let theirs = f64::from(r.floats["train.loss"].1[0]);
    eprintln!("loss ours {loss:.6} PEFT {theirs:.6}");
    assert!((loss - theirs).abs() < 1e-4 * theirs.abs().max(1.0));
    assert_eq!(step.grads.len(), 28);
    let mut worst = 0f32;
    for g in &step.grads {
        let (shape, want) = &r.floats[&format!("grad.{}", g.name)];
        assert_eq!(&g.shape, shape, "{}", g.name);
        worst = worst.max(rel_err(&g.data, want));
    }
    eprintln!("LoRA gradients vs PEFT: max relative error {worst:.2e}");
    assert!(worst < 1e-4, "{worst}");
}

#[test]
fn gradients_match_finite_differences() {
    let batch = fixture_batch();
    let mut trainer = fixture_trainer();
    let n = batch.loss_tokens as f32;
    let base = trainer.trainable();
    let step = trainer.micro_step(&batch, 1.0 / n, 0).unwrap();
    let loss_at = |t: &mut PeftTrainer<Autodiff<CpuBackend>>, p: &[tb_train::NamedTensor]| {
        t.set_trainable(p).unwrap();
        t.eval_loss_sum(&batch).unwrap() / f64::from(n)
    };
    // The largest-gradient entry of an A and a B in different layers and projections (small
    // entries drown in f32 rounding of the loss).
    for tensor in [0usize, 1, 9, 26, 27] {
        let g_all = &step.grads[tensor].data;
        let index = (0..g_all.len())
            .max_by(|&a, &b| g_all[a].abs().total_cmp(&g_all[b].abs()))
            .unwrap();
        let h = 5e-2f32;
        let mut plus = base.clone();
        plus[tensor].data[index] += h;
        let mut minus = base.clone();
        minus[tensor].data[index] -= h;
        let fd =
            (loss_at(&mut trainer, &plus) - loss_at(&mut trainer, &minus)) / (2.0 * f64::from(h));
        let g = f64::from(g_all[index]);
        eprintln!(
            "{} [{index}]: autodiff {g:.6e} finite difference {fd:.6e}",
            base[tensor].name
        );
        assert!(g.abs() > 1e-3, "gradient too small to check: {g}");
        assert!(
            (g - fd).abs() <= 1e-2 * fd.abs(),
            "{}: {g} vs {fd}",
            base[tensor].name
        );
    }
}
