//! The two trainers compute the same thing: one step on the same examples (PEFT-style padded
//! autodiff vs Unsloth-style packed fused ops with hand-written backward) gives the same loss
//! and LoRA gradients, and 50-step loss curves overlap.
#![expect(clippy::print_stderr, reason = "the test reports the measured gaps")]

mod common;

use burn::backend::Autodiff;
use common::*;
use tb_data::{tokenize_records, Dataset, Truncation};
use tb_model::weights::{LoadOptions, WeightDtype};
use tb_model::{CpuBackend, LoadedModel};
use tb_train::lora::{attach_lora, InitLoraWeights, LoraConfig, TargetModules};
use tb_train::{ActivationCheckpointing, ExperimentConfig, Trainer};

type B = Autodiff<CpuBackend>;

fn write_dataset(root: &std::path::Path) -> std::path::PathBuf {
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

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn one_step_same_loss_and_gradients() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_hf_dir("tiny-mistral", &tmp.path().join("m"), true);
    let device = Default::default();
    let lora = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        target_modules: Some(TargetModules::AllLinear),
        init_lora_weights: InitLoraWeights::Random,
        ..Default::default()
    };
    let load = || {
        let (model, tokenizer) = LoadedModel::<B>::load(&dir, &device)
            .unwrap()
            .into_parts()
            .unwrap();
        let (model, _) = attach_lora(model, &lora, 9, &device).unwrap();
        (model, tokenizer)
    };
    let (peft_model, tok) = load();
    let (fused_model, _) = load();
    let records = Dataset::load(write_dataset(tmp.path())).unwrap().records;
    let (examples, _) = tokenize_records(&tok, &records, 64, Truncation::Right).unwrap();
    let refs: Vec<_> = examples.iter().take(4).collect();
    let mut peft = tb_peft::PeftTrainer::<B> {
        model: peft_model,
        pad_id: 0,
        device,
        backend_name: "flex".into(),
    };
    let mut fused = tb_unsloth::UnslothTrainer::<B> {
        model: fused_model,
        bases: tb_unsloth::packed_base::PackedBases::dense(),
        pad_id: 0,
        row_len: 160,
        ce_chunk: 7,
        checkpoint_layers: ActivationCheckpointing::None,
        device,
        backend_name: "flex+fused".into(),
    };
    let pb = peft.batches(&refs, 4).remove(0);
    let fb = fused.batches(&refs, 4).remove(0);
    assert_eq!(pb.loss_tokens, fb.loss_tokens);
    assert!(
        fb.rows < pb.rows,
        "packing should need fewer rows ({} vs {})",
        fb.rows,
        pb.rows
    );
    let scale = 1.0 / pb.loss_tokens as f32;
    let a = peft.micro_step(&pb, scale, 1).unwrap();
    let b = fused.micro_step(&fb, scale, 1).unwrap();
    let loss_gap = (a.loss_sum - b.loss_sum).abs() / a.loss_sum.abs();
    eprintln!(
        "loss peft {:.6} fused {:.6} (relative gap {loss_gap:.2e})",
        a.loss_sum, b.loss_sum
    );
    assert!(loss_gap < 1e-4);
    let mut worst = 0f32;
    for (ga, gb) in a.grads.iter().zip(&b.grads) {
        assert_eq!(ga.name, gb.name);
        worst = worst.max(rel_err(&gb.data, &ga.data));
    }
    eprintln!(
        "LoRA gradients, fused vs autodiff: max relative error {worst:.2e} over {} tensors",
        a.grads.len()
    );
    assert!(worst < 1e-4, "{worst}");
    // Per-layer activation checkpointing (the hand-written layer backward, recomputing the
    // whole layer or only its attention half) gives the same numbers.
    for mode in [
        ActivationCheckpointing::Layer,
        ActivationCheckpointing::Attention,
    ] {
        fused.checkpoint_layers = mode;
        let c = fused.micro_step(&fb, scale, 1).unwrap();
        assert!((c.loss_sum - a.loss_sum).abs() / a.loss_sum.abs() < 1e-4);
        let mut worst_ckpt = 0f32;
        for (ga, gc) in a.grads.iter().zip(&c.grads) {
            assert_eq!(ga.name, gc.name);
            worst_ckpt = worst_ckpt.max(rel_err(&gc.data, &ga.data));
        }
        eprintln!("with activation checkpointing {mode:?}: max relative error {worst_ckpt:.2e}");
        assert_eq!(c.grads.len(), a.grads.len());
        assert!(worst_ckpt < 1e-4, "{mode:?}: {worst_ckpt}");
    }
    // And the eval path (no autodiff) agrees too.
    let ea = peft.eval_loss_sum(&pb).unwrap();
    let eb = fused.eval_loss_sum(&fb).unwrap();
    assert!((ea - eb).abs() / ea < 1e-4, "{ea} vs {eb}");
}

#[test]
fn fifty_step_loss_curves_overlap() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_hf_dir("tiny-mistral", &tmp.path().join("m"), true);
    let text = format!(
        "name = \"tiny\"\n[model]\nbase = \"{}\"\n[data]\ntrain = \"{}\"\nmax_seq_len = 64\n[train]\nmicro_batch = 4\nmax_steps = 50\nseed = 3\nruns_dir = \"{}\"\n[optimizer]\nlr = 0.01\nwarmup_steps = 2\n[lora]\nr = 4\nalpha = 8\ndropout = 0.0\n",
        dir.display(),
        write_dataset(tmp.path()).display(),
        tmp.path().join("runs").display()
    );
    let config = ExperimentConfig::parse(&text).unwrap();
    let peft_dir = tb_peft::train_peft(&tb_peft::TrainRequest {
        config: config.clone(),
        resume: None,
        progress: false,
        gguf: vec![],
    })
    .unwrap()
    .run;
    let fused = tb_unsloth::train_unsloth(&tb_unsloth::TrainRequest {
        config,
        resume: None,
        progress: false,
        gguf: vec![],
    })
    .unwrap();
    let a = tb_train::run_dir::read_metrics(&peft_dir.join("metrics.jsonl")).unwrap();
    let b = tb_train::run_dir::read_metrics(&fused.run.join("metrics.jsonl")).unwrap();
    assert_eq!(a.len(), 50);
    assert_eq!(b.len(), 50);
    let gap = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x.loss - y.loss).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "50 steps: loss {:.4} -> {:.4} (peft) / {:.4} (fused); largest per-step gap {gap:.2e}",
        a[0].loss, a[49].loss, b[49].loss
    );
    assert!(a[49].loss < 0.8 * a[0].loss, "loss did not fall");
    assert!(gap < 1e-3, "curves diverge: {gap}");
    assert!(fused.summary.padding_fraction < 0.6);
}

/// Both trainers on Burn's wgpu backend (the fused ops as CubeCL kernels; lavapipe in CI) give
/// the CPU runs' loss curves.
#[test]
fn both_trainers_on_wgpu_match_the_cpu_runs() {
    if !wgpu_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_hf_dir("tiny-mistral", &tmp.path().join("m"), true);
    let data = write_dataset(tmp.path());
    let config = |device: &str| {
        ExperimentConfig::parse(&format!(
            "name = \"tiny-{device}\"\n[model]\nbase = \"{}\"\n[data]\ntrain = \"{}\"\nmax_seq_len = 64\n[train]\nmicro_batch = 4\nmax_steps = 4\nseed = 3\ndevice = \"{device}\"\nruns_dir = \"{}\"\n[optimizer]\nlr = 0.01\nwarmup_steps = 1\n[lora]\nr = 4\nalpha = 8\ndropout = 0.0\n",
            dir.display(),
            data.display(),
            tmp.path().join("runs").display()
        ))
        .unwrap()
    };
    let losses = |run: &std::path::Path| -> Vec<f64> {
        tb_train::run_dir::read_metrics(&run.join("metrics.jsonl"))
            .unwrap()
            .iter()
            .map(|m| m.loss)
            .collect()
    };
    for method in ["peft", "unsloth"] {
        let mut curves = Vec::new();
        for device in ["cpu", "wgpu"] {
            let config = config(device);
            let (run, backend) = if method == "peft" {
                let o = tb_peft::train_peft(&tb_peft::TrainRequest {
                    config,
                    resume: None,
                    progress: false,
                    gguf: vec![],
                })
                .unwrap();
                (o.run, o.summary.backend)
            } else {
                let o = tb_unsloth::train_unsloth(&tb_unsloth::TrainRequest {
                    config,
                    resume: None,
                    progress: false,
                    gguf: vec![],
                })
                .unwrap();
                (o.run, o.summary.backend)
            };
            assert!(
                backend.starts_with(if device == "cpu" { "flex" } else { "wgpu" }),
                "{method} on {device} ran on {backend}"
            );
            curves.push(losses(&run));
        }
        assert_eq!(curves[0].len(), 4);
        let gap = curves[0]
            .iter()
            .zip(&curves[1])
            .map(|(a, b)| (a - b).abs() / a.abs())
            .fold(0.0, f64::max);
        eprintln!(
            "{method}: 4 steps, cpu {:?} vs wgpu {:?}: largest relative gap {gap:.2e}",
            curves[0], curves[1]
        );
        assert!(gap < 1e-4, "{method}: wgpu curve diverges from cpu: {gap}");
    }
}

/// One step of each trainer on a base held in `dtype`: (PEFT-style, Unsloth-style).
fn one_step_each(dtype: WeightDtype) -> (tb_train::MicroStep, tb_train::MicroStep) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_hf_dir("tiny-mistral", &tmp.path().join("m"), true);
    let device = Default::default();
    let lora = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        target_modules: Some(TargetModules::AllLinear),
        init_lora_weights: InitLoraWeights::Random,
        ..Default::default()
    };
    let load = || {
        let options = LoadOptions { dtype, sink: None };
        let (model, tokenizer) = LoadedModel::<B>::load_with(&dir, &device, options)
            .unwrap()
            .into_parts()
            .unwrap();
        let (model, _) = attach_lora(model, &lora, 9, &device).unwrap();
        (model, tokenizer)
    };
    let (peft_model, tok) = load();
    let (fused_model, _) = load();
    let records = Dataset::load(write_dataset(tmp.path())).unwrap().records;
    let (examples, _) = tokenize_records(&tok, &records, 64, Truncation::Right).unwrap();
    let refs: Vec<_> = examples.iter().take(4).collect();
    let mut peft = tb_peft::PeftTrainer::<B> {
        model: peft_model,
        pad_id: 0,
        device,
        backend_name: "flex".into(),
    };
    let mut fused = tb_unsloth::UnslothTrainer::<B> {
        model: fused_model,
        bases: tb_unsloth::packed_base::PackedBases::dense(),
        pad_id: 0,
        row_len: 160,
        ce_chunk: 7,
        checkpoint_layers: ActivationCheckpointing::Layer,
        device,
        backend_name: "flex+fused".into(),
    };
    let pb = peft.batches(&refs, 4).remove(0);
    let fb = fused.batches(&refs, 4).remove(0);
    let scale = 1.0 / pb.loss_tokens as f32;
    (
        peft.micro_step(&pb, scale, 1).unwrap(),
        fused.micro_step(&fb, scale, 1).unwrap(),
    )
}

#[test]
fn bf16_base_trainers_agree_and_stay_near_f32() {
    let (p32, _) = one_step_each(WeightDtype::F32);
    let (p16, f16) = one_step_each(WeightDtype::Bf16);
    let gap = |a: f64, b: f64| (a - b).abs() / a.abs();
    let mut worst = 0f32;
    for (ga, gb) in p16.grads.iter().zip(&f16.grads) {
        assert_eq!(ga.name, gb.name);
        worst = worst.max(rel_err(&gb.data, &ga.data));
    }
    eprintln!(
        "bf16 base: loss peft {:.6} fused {:.6} (f32 base {:.6}); gradients fused vs peft {worst:.2e}",
        p16.loss_sum, f16.loss_sum, p32.loss_sum
    );
    // Both multiply by the same bf16 weights through the same op: they agree as closely as
    // bf16 activations allow, and the step differs from the f32 base's only by bf16 rounding.
    assert!(gap(p16.loss_sum, f16.loss_sum) < 1e-3);
    assert!(worst < 2e-2, "{worst}");
    assert!(gap(p32.loss_sum, p16.loss_sum) < 2e-2);
    assert!(p16.loss_sum != p32.loss_sum, "the bf16 base was not used");
}

/// Whether wgpu has a working adapter here; `TB_REQUIRE_WGPU=1` (CI) makes a missing one fail.
fn wgpu_available() -> bool {
    use burn::backend::wgpu::{Wgpu, WgpuDevice};
    use burn::prelude::*;
    // Installs Mesa's lavapipe when missing (as root on Debian) before wgpu looks for it.
    tb_testkit::vulkan_cpu_driver();
    let probe = std::panic::catch_unwind(|| {
        Tensor::<Wgpu, 1>::from_floats([1.0, 2.0], &WgpuDevice::default())
            .sum()
            .into_scalar()
    });
    let ok = matches!(probe, Ok(v) if v == 3.0);
    if !ok {
        assert!(
            std::env::var("TB_REQUIRE_WGPU").as_deref() != Ok("1"),
            "TB_REQUIRE_WGPU=1 but wgpu has no working adapter"
        );
        eprintln!("SKIPPED: no wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
    }
    ok
}
