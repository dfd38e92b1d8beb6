//! Parity with HF transformers on tiny random checkpoints made by
//! `fixtures/make_hf_fixtures.py` (committed with their reference logits).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::DType;
use tb_model::checkpoint::SafetensorsCheckpoint;
use tb_model::weights::{LoadOptions, WeightDtype};
use tb_model::{
    generate, CpuBackend, GenerationConfig, ModelDir, Sampling, StoredDtype, TextTokenizer,
};

type B = CpuBackend;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Reference {
    ids: Vec<i64>,
    logits: Vec<f32>,
    generated: Vec<i64>,
    shape: Vec<usize>,
}

fn reference(dir: &Path) -> Reference {
    let r = SafetensorsCheckpoint::open(dir.join("reference.safetensors")).unwrap();
    let ints = |name: &str| -> Vec<i64> {
        r.raw(name)
            .unwrap()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let shape = r.shape("logits").unwrap();
    Reference {
        ids: ints("input_ids"),
        generated: ints("generated"),
        logits: r.tensor_f32("logits", &shape).unwrap(),
        shape,
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn logits_of(dir: &Path, r: &Reference) -> Vec<f32> {
    let device = Default::default();
    let model = ModelDir::open(dir).unwrap().load::<B>(&device).unwrap();
    let ids =
        Tensor::<B, 1, Int>::from_data(TensorData::new(r.ids.clone(), [r.ids.len()]), &device)
            .reshape([r.shape[0], r.shape[1]]);
    model.forward(ids).into_data().to_vec::<f32>().unwrap()
}

#[test]
fn mistral_gqa_sliding_window_matches_transformers() {
    let dir = fixture("tiny-mistral");
    let r = reference(&dir);
    let diff = max_abs_diff(&logits_of(&dir, &r), &r.logits);
    assert!(diff <= 1e-4, "max |Δlogit| = {diff}");
}

#[test]
fn sliding_window_changes_the_result() {
    // Guard against a test that passes without the window: full causal attention must differ.
    let dir = fixture("tiny-mistral");
    let r = reference(&dir);
    let device = Default::default();
    let mut model = ModelDir::open(&dir).unwrap().load::<B>(&device).unwrap();
    model.sliding_window = None;
    let ids =
        Tensor::<B, 1, Int>::from_data(TensorData::new(r.ids.clone(), [r.ids.len()]), &device)
            .reshape([r.shape[0], r.shape[1]]);
    let ours: Vec<f32> = model.forward(ids).into_data().to_vec().unwrap();
    assert!(max_abs_diff(&ours, &r.logits) > 1e-2);
}

#[test]
fn sharded_llama_with_tied_embeddings_matches_transformers() {
    let dir = fixture("tiny-llama");
    let ckpt = SafetensorsCheckpoint::open(&dir).unwrap();
    assert!(ckpt.location().ends_with("model.safetensors.index.json"));
    let r = reference(&dir);
    let diff = max_abs_diff(&logits_of(&dir, &r), &r.logits);
    assert!(diff <= 1e-4, "max |Δlogit| = {diff}");
}

#[test]
fn greedy_generation_with_kv_cache_matches_transformers() {
    for name in ["tiny-llama", "tiny-mistral"] {
        let dir = fixture(name);
        let r = reference(&dir);
        let device = Default::default();
        let model = ModelDir::open(&dir).unwrap().load::<B>(&device).unwrap();
        let prompt: Vec<u32> = r.ids[..5].iter().map(|&x| x as u32).collect();
        let config = GenerationConfig {
            max_new_tokens: 10,
            sampling: Sampling::Greedy,
            stop_ids: vec![],
        };
        let out = generate(&model, &prompt, &config, &device, |_| {}).unwrap();
        let want: Vec<u32> = r.generated[5..].iter().map(|&x| x as u32).collect();
        assert_eq!(out.tokens, want, "{name}");
    }
}

#[test]
fn bf16_checkpoint_loads_close_to_f32() {
    let dir = fixture("tiny-mistral-bf16");
    let opened = ModelDir::open(&dir).unwrap();
    assert_eq!(
        opened.checkpoint.dominant_dtype().unwrap(),
        StoredDtype::BF16
    );
    let r = reference(&fixture("tiny-mistral"));
    let diff = max_abs_diff(&logits_of(&dir, &r), &r.logits);
    // bf16 keeps 8 bits of mantissa: the logits move, but only a little.
    assert!(diff > 0.0 && diff < 0.25, "max |Δlogit| = {diff}");
}

#[test]
fn base_held_in_bf16_matches_the_f32_held_model() {
    // The bf16 checkpoint's values are exactly representable in bf16, so holding the frozen
    // matrices in bf16 loses nothing; only the products may run in bf16 (activations rounded,
    // f32 sums) where the CPU has bf16 dot products.
    let dir = fixture("tiny-mistral-bf16");
    let r = reference(&fixture("tiny-mistral"));
    let device = Default::default();
    let opened = ModelDir::open(&dir).unwrap();
    let options = LoadOptions {
        dtype: WeightDtype::Bf16,
        sink: None,
    };
    let model = opened.load_with::<B>(&device, options).unwrap();
    for (name, lin) in model.projections() {
        assert_eq!(lin.weight.val().dtype(), DType::BF16, "{name}");
    }
    assert_eq!(model.embed_tokens.weight.val().dtype(), DType::BF16);
    let ids =
        Tensor::<B, 1, Int>::from_data(TensorData::new(r.ids.clone(), [r.ids.len()]), &device)
            .reshape([r.shape[0], r.shape[1]]);
    let logits = model.forward(ids);
    assert_eq!(logits.dtype(), DType::F32, "activations stay f32");
    let held_bf16 = logits.into_data().to_vec::<f32>().unwrap();
    let held_f32 = logits_of(&dir, &r);
    let diff = max_abs_diff(&held_bf16, &held_f32);
    assert!(diff < 0.05, "max |Δlogit| bf16-held vs f32-held = {diff}");
}

#[test]
fn tokenizer_matches_transformers_and_never_doubles_bos() {
    let dir = fixture("tokenizer");
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |k: &str| -> Vec<u32> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    };
    let tok = TextTokenizer::from_dir(&dir).unwrap();
    assert_eq!(tok.bos().unwrap().id, r["bos_id"].as_u64().unwrap() as u32);
    assert!(tok.adds_bos());
    assert_eq!(tok.stop_ids(), &[r["eos_id"].as_u64().unwrap() as u32]);
    assert_eq!(
        tok.encode(r["plain"].as_str().unwrap(), true).unwrap(),
        ids("plain_ids")
    );
    let msgs = [tb_model::ChatMessage::new("user", "Faturamı nasıl öderim?")];
    assert_eq!(
        tok.render_chat(&msgs, true).unwrap(),
        r["chat_rendered"].as_str().unwrap()
    );
    let chat = tok.encode_chat(&msgs, true).unwrap();
    assert_eq!(chat, ids("chat_ids"));
    assert_ne!(chat[0], chat[1], "BOS doubled");
    assert_eq!(
        tok.decode(&ids("plain_ids"), true).unwrap(),
        r["plain"].as_str().unwrap()
    );
}
