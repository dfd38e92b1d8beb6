//! The embedded engine with a LoRA adapter GGUF, on the tiny llamas (hidden 64, 320 tokens):
//!
//! - base + adapter gives the logits of the merged model (`W + scale·B·A`, computed here from
//!   the two files) within 1e-3 at every position, on both dot-product paths, for an F32 base
//!   and a Q4_K_M base (the base stays Q4_K_M in memory), for the exporter's adapter
//!   (tb-gguf's `write_lora_adapter`: alpha 8, ranks 4 and 8, every projection) and for a
//!   hand-written F16 adapter without alpha that adapts `output.weight`;
//! - a non-zero adapter changes the logits, and the greedy answers and perplexity through a
//!   [`Session`] equal the merged model's;
//! - bad adapters (the base model itself, another architecture, a shape for another model, a
//!   tensor the base lacks, a half pair, the token embedding) are errors naming the adapter file
//!   and the tensor or key, never a panic.

mod common;

use std::path::{Path, PathBuf};

use common::lora::{adapter_metadata, write_merged, write_random_adapter, write_tensors};
use common::tiny::TinyLlama;
use tb_eval::engine::{EngineModel, Error, GenerateSettings, Kernel, Session};
use tb_gguf::LoraTensorType::{F16, F32};
use tb_gguf::{GgmlType, QuantMix};

fn tiny() -> TinyLlama {
    TinyLlama {
        mute_bytes: true,
        ..TinyLlama::default()
    }
}

fn tokens(n: usize) -> Vec<u32> {
    let mut t = vec![1u32];
    let mut s = 3u32;
    while t.len() < n {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        t.push(3 + (s >> 16) % 317);
    }
    t
}

fn logits(model: &EngineModel, kernel: Kernel) -> Vec<f32> {
    let t = tokens(20);
    let all: Vec<usize> = (0..t.len()).collect();
    let mut cache = model.new_cache();
    model.forward(&t, &mut cache, &all, kernel).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// Base + adapter against the merged model, both kernels; returns the largest change the
/// adapter makes to a logit.
fn check_against_merged(base: &Path, adapter: &Path, merged: &Path) -> f32 {
    let plain = EngineModel::open(base).unwrap();
    let adapted = EngineModel::open_with_adapter(base, Some(adapter)).unwrap();
    let merged = EngineModel::open(merged).unwrap();
    assert_eq!(
        adapted.weight_types(),
        plain.weight_types(),
        "the base stays as encoded"
    );
    let info = adapted.adapter().expect("the adapter is recorded");
    assert_eq!(info.path, adapter);
    let mut change = 0f32;
    for kernel in [Kernel::Scalar, Kernel::Auto] {
        let ours = logits(&adapted, kernel);
        let worst = max_diff(&ours, &logits(&merged, kernel));
        assert!(
            worst < 1e-3,
            "{kernel:?}: base + adapter vs merged: max |Δlogit| = {worst}"
        );
        change = change.max(max_diff(&ours, &logits(&plain, kernel)));
    }
    change
}

#[test]
fn base_plus_adapter_equals_the_merged_model() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = tiny();
    let base = dir.path().join("base-f32.gguf");
    tiny.write(&base, GgmlType::F32);
    let adapter = dir.path().join("lora.gguf");
    write_random_adapter(&tiny, &adapter, 3, 0.2, F32);
    let merged = dir.path().join("merged-f32.gguf");
    write_merged(&base, &adapter, tiny.metadata(0), &merged, GgmlType::F32);
    let change = check_against_merged(&base, &adapter, &merged);
    assert!(
        change > 0.1,
        "the adapter must change the logits (max change {change})"
    );
    let info = EngineModel::open_with_adapter(&base, Some(&adapter)).unwrap();
    let info = info.adapter().unwrap();
    assert_eq!((info.alpha, info.targets), (8.0, 14));

    // Q4_K_M base: the adapter applies on top of the quantized weights.
    let q4 = dir.path().join("base-q4_k_m.gguf");
    tiny.write_mix(&q4, QuantMix::Q4_K_M);
    let merged_q4 = dir.path().join("merged-from-q4.gguf");
    write_merged(&q4, &adapter, tiny.metadata(0), &merged_q4, GgmlType::F32);
    let change = check_against_merged(&q4, &adapter, &merged_q4);
    assert!(change > 0.1, "Q4_K_M: max change {change}");
}

/// An F16 adapter without `adapter.lora.alpha` (llama.cpp then applies `B·A` unscaled) that
/// adapts `output.weight` and one projection.
#[test]
fn an_f16_adapter_without_alpha_on_the_output_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = tiny();
    let base = dir.path().join("base.gguf");
    tiny.write(&base, GgmlType::F32);
    let (d, v, r) = (tiny.n_embd, tiny.n_vocab, 2u64);
    let vals = |n: u64, k: f32| -> Vec<f32> {
        (0..n)
            .map(|i| k * (((i * 7919) % 23) as f32 - 11.0) / 11.0)
            .collect()
    };
    let tensors = vec![
        (
            "blk.1.attn_v.weight.lora_a".into(),
            vec![d, r],
            vals(d * r, 0.2),
        ),
        (
            "blk.1.attn_v.weight.lora_b".into(),
            vec![r, 32],
            vals(r * 32, 0.3),
        ),
        ("output.weight.lora_a".into(), vec![d, r], vals(d * r, 0.1)),
        ("output.weight.lora_b".into(), vec![r, v], vals(r * v, 0.2)),
    ];
    let adapter = dir.path().join("out-f16.gguf");
    write_tensors(
        &adapter,
        adapter_metadata("llama", "adapter", None),
        &tensors,
        GgmlType::F16,
    );
    let merged = dir.path().join("merged.gguf");
    write_merged(&base, &adapter, tiny.metadata(0), &merged, GgmlType::F32);
    let change = check_against_merged(&base, &adapter, &merged);
    assert!(change > 0.1, "max change {change}");
}

#[test]
fn a_session_with_an_adapter_answers_and_scores_as_the_merged_model() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = tiny();
    let base = dir.path().join("base.gguf");
    tiny.write(&base, GgmlType::F32);
    let adapter = dir.path().join("lora.gguf");
    write_random_adapter(&tiny, &adapter, 5, 0.3, F16);
    let merged = dir.path().join("merged.gguf");
    write_merged(&base, &adapter, tiny.metadata(0), &merged, GgmlType::F32);
    let adapted = Session::open_with_adapter(&base, Some(&adapter)).unwrap();
    let merged = Session::open(&merged).unwrap();
    let plain = Session::open(&base).unwrap();
    let settings = GenerateSettings {
        max_tokens: 16,
        ..GenerateSettings::default()
    };
    let prompt = tokens(8);
    let ours = adapted.generate(&prompt, &settings).unwrap();
    assert_eq!(
        ours.tokens,
        merged.generate(&prompt, &settings).unwrap().tokens
    );
    let t = tokens(30);
    let mask: Vec<bool> = (0..t.len()).map(|i| i >= 10).collect();
    let (a, m, p) = (
        adapted.score(&t, &mask, Kernel::Auto).unwrap(),
        merged.score(&t, &mask, Kernel::Auto).unwrap(),
        plain.score(&t, &mask, Kernel::Auto).unwrap(),
    );
    let nll = |s: &[tb_eval::engine::TokenScore]| -s.iter().map(|x| x.logprob).sum::<f64>();
    assert!(
        (nll(&a) - nll(&m)).abs() < 1e-3,
        "{} vs {}",
        nll(&a),
        nll(&m)
    );
    assert!(
        (nll(&a) - nll(&p)).abs() > 1e-2,
        "the adapter must change the scores"
    );
}

struct Bad {
    dir: tempfile::TempDir,
    base: PathBuf,
    tiny: TinyLlama,
}

impl Bad {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tiny = tiny();
        let base = dir.path().join("base.gguf");
        tiny.write(&base, GgmlType::F32);
        Self { dir, base, tiny }
    }

    /// The error of applying `tensors` as an adapter with metadata `md`.
    fn error(
        &self,
        name: &str,
        md: tb_gguf::Metadata,
        tensors: &[(&str, [u64; 2])],
    ) -> (PathBuf, Error) {
        let path = self.dir.path().join(name);
        let tensors: Vec<(String, Vec<u64>, Vec<f32>)> = tensors
            .iter()
            .map(|(n, ne)| {
                (
                    (*n).to_owned(),
                    ne.to_vec(),
                    vec![0.01; (ne[0] * ne[1]) as usize],
                )
            })
            .collect();
        write_tensors(&path, md, &tensors, GgmlType::F32);
        let e = EngineModel::open_with_adapter(&self.base, Some(&path)).unwrap_err();
        (path, e)
    }
}

fn lora() -> tb_gguf::Metadata {
    adapter_metadata("llama", "adapter", Some(8.0))
}

#[test]
fn bad_adapters_are_errors_naming_file_and_tensor() {
    let bad = Bad::new();
    let d = bad.tiny.n_embd;
    let q = "blk.0.attn_q.weight";

    // The base model itself given as the adapter.
    let e = EngineModel::open_with_adapter(&bad.base, Some(&bad.base)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Adapter { .. }), "{msg}");
    assert!(
        msg.contains("base.gguf") && msg.contains("`general.type` is \"model\""),
        "{msg}"
    );

    let (path, e) = bad.error(
        "arch.gguf",
        adapter_metadata("qwen2", "adapter", Some(8.0)),
        &[],
    );
    let msg = e.to_string();
    assert!(
        msg.contains(path.to_str().unwrap()) && msg.contains("\"qwen2\""),
        "{msg}"
    );

    let (_, e) = bad.error("empty.gguf", lora(), &[]);
    assert!(e.to_string().contains("holds no LoRA tensors"), "{e}");

    // Shapes of another model: A too wide, then B with the wrong number of outputs.
    let (path, e) = bad.error(
        "wide.gguf",
        lora(),
        &[
            (&format!("{q}.lora_a"), [96, 4]),
            (&format!("{q}.lora_b"), [4, d]),
        ],
    );
    let msg = e.to_string();
    assert!(
        msg.contains(path.to_str().unwrap()) && msg.contains("blk.0.attn_q.weight.lora_a"),
        "{msg}"
    );
    assert!(
        msg.contains("[96, 4]") && msg.contains("takes 64 inputs"),
        "{msg}"
    );
    let (_, e) = bad.error(
        "tall.gguf",
        lora(),
        &[
            (&format!("{q}.lora_a"), [d, 4]),
            (&format!("{q}.lora_b"), [4, 128]),
        ],
    );
    let msg = e.to_string();
    assert!(
        msg.contains("blk.0.attn_q.weight.lora_b") && msg.contains("64 outputs"),
        "{msg}"
    );
    let (_, e) = bad.error(
        "rank.gguf",
        lora(),
        &[
            (&format!("{q}.lora_a"), [d, 4]),
            (&format!("{q}.lora_b"), [8, d]),
        ],
    );
    assert!(e.to_string().contains("rank 4"), "{e}");

    let (_, e) = bad.error(
        "layer.gguf",
        lora(),
        &[
            ("blk.7.attn_q.weight.lora_a", [d, 4]),
            ("blk.7.attn_q.weight.lora_b", [4, d]),
        ],
    );
    let msg = e.to_string();
    assert!(
        msg.contains("blk.7.attn_q.weight") && msg.contains("does not have"),
        "{msg}"
    );

    let (_, e) = bad.error("half.gguf", lora(), &[(&format!("{q}.lora_a"), [d, 4])]);
    assert!(
        e.to_string()
            .contains("has no matching `blk.0.attn_q.weight.lora_b`"),
        "{e}"
    );

    let (_, e) = bad.error("name.gguf", lora(), &[(q, [d, d])]);
    assert!(e.to_string().contains("is not a LoRA tensor"), "{e}");

    let (_, e) = bad.error(
        "embd.gguf",
        lora(),
        &[
            ("token_embd.weight.lora_a", [d, 4]),
            ("token_embd.weight.lora_b", [4, 320]),
        ],
    );
    let msg = e.to_string();
    assert!(
        msg.contains("token_embd.weight") && msg.contains("projections"),
        "{msg}"
    );

    let missing = bad.dir.path().join("missing.gguf");
    let e = EngineModel::open_with_adapter(&bad.base, Some(&missing)).unwrap_err();
    assert!(e.to_string().contains("missing.gguf"), "{e}");
}

/// `run_evaluation` with a base + adapter model next to the merged model: the same answers and
/// perplexity, the adapter and load time in the summary, and a resume keeps the answers only
/// while the adapter file is the same one.
#[test]
fn an_evaluation_answers_as_the_merged_model_and_resumes_only_with_the_same_adapter() {
    use tb_eval::evaluation::{
        resolve_engine, run_evaluation, EngineChoice, Error as EvalError, ModelSpec, RunSettings,
    };
    let dir = tempfile::tempdir().unwrap();
    let tiny = tiny();
    let base = dir.path().join("base.gguf");
    tiny.write(&base, GgmlType::F32);
    let adapter = dir.path().join("lora.gguf");
    write_random_adapter(&tiny, &adapter, 3, 0.2, F32);
    let merged = dir.path().join("merged.gguf");
    write_merged(&base, &adapter, tiny.metadata(0), &merged, GgmlType::F32);
    let text: String = ["Faturamı nasıl öderim?", "Paketimi nasıl değiştiririm?"]
        .iter()
        .enumerate()
        .map(|(i, q)| common::eval_setup::dataset_line(&format!("t-{i}"), q, "Uygulamadan."))
        .collect();
    let data = dir.path().join("eval.jsonl");
    std::fs::write(&data, text).unwrap();
    let dataset = tb_data::Dataset::load(&data).unwrap();
    let engine = resolve_engine(EngineChoice::Embedded, None).unwrap();
    let models = vec![
        ModelSpec {
            adapter: Some(adapter.clone()),
            ..ModelSpec::new("lora", &base)
        },
        ModelSpec::new("merged", &merged),
    ];
    let mut settings = RunSettings {
        max_tokens: 8,
        num_ctx: 256,
        perplexity: true,
        ..RunSettings::default()
    };
    let out = dir.path().join("run");
    let mut items = Vec::new();
    let s = run_evaluation(&models, &dataset, &engine, &settings, &out, |i| {
        items.push(i.clone())
    })
    .unwrap();
    assert_eq!(s.engine_name, "embedded");
    assert_eq!(s.failed_items, 0);
    let (lora, plain) = (&s.models[0], &s.models[1]);
    assert_eq!(lora.adapter.as_deref(), Some(adapter.as_path()));
    assert_eq!(plain.adapter, None);
    for m in [lora, plain] {
        assert!(m.load_seconds.is_some_and(|t| t > 0.0), "{m:?}");
    }
    let rel = (lora.perplexity.unwrap() / plain.perplexity.unwrap() - 1.0).abs();
    assert!(
        rel < 1e-4,
        "perplexity {:?} vs {:?}",
        lora.perplexity,
        plain.perplexity
    );
    assert_eq!(items.len(), 4);
    for (a, b) in items[..2].iter().zip(&items[2..]) {
        assert_eq!(a.answer, b.answer, "{}", a.id);
        let key = a.answered_with.as_ref().unwrap();
        assert!(key
            .adapter_digest
            .as_ref()
            .is_some_and(|d| d.starts_with("sha256:")));
        assert_eq!(b.answered_with.as_ref().unwrap().adapter_digest, None);
    }
    assert!(items[0].timings.load_seconds.is_some() && items[1].timings.load_seconds.is_none());

    settings.resume = true;
    let s = run_evaluation(&models, &dataset, &engine, &settings, &out, |_| {}).unwrap();
    assert_eq!((s.models[0].resumed, s.models[1].resumed), (2, 2));
    assert!(
        s.models[0].load_seconds.is_some(),
        "kept from the first run"
    );
    // Another adapter file for the same model name: its answers are answered again.
    write_random_adapter(&tiny, &adapter, 4, 0.2, F32);
    let s = run_evaluation(&models, &dataset, &engine, &settings, &out, |_| {}).unwrap();
    assert_eq!((s.models[0].resumed, s.models[1].resumed), (0, 2));

    // An adapter for another model stops the run before any work, naming model and file.
    let other = TinyLlama {
        n_ff: 128,
        ..tiny.clone()
    };
    let wrong = dir.path().join("wrong.gguf");
    write_random_adapter(&other, &wrong, 1, 0.2, F32);
    let models = vec![ModelSpec {
        adapter: Some(wrong),
        ..ModelSpec::new("lora", &base)
    }];
    settings.resume = false;
    let e = run_evaluation(
        &models,
        &dataset,
        &engine,
        &settings,
        &dir.path().join("x"),
        |_| {},
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, EvalError::Adapter { .. }), "{msg}");
    assert!(
        msg.contains("model `lora`") && msg.contains("wrong.gguf"),
        "{msg}"
    );
    assert!(msg.contains("blk.0.ffn_down.weight.lora_a"), "{msg}");
    assert!(!dir.path().join("x").exists(), "nothing written");
}
