//! Shared test plumbing: fixture paths, the HF PEFT reference tensors, a tiny trainable model
//! folder (tiny Mistral + the ChatML test tokenizer) and experiment configs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn model_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures")
}

pub fn tiny_mistral() -> PathBuf {
    model_fixtures().join("tiny-mistral")
}

/// A tensor from a safetensors file as f32 (or i64 cast to f64 via `ints`).
pub struct Reference {
    pub floats: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub ints: HashMap<String, (Vec<usize>, Vec<i64>)>,
}

pub fn reference() -> Reference {
    let bytes = std::fs::read(fixtures().join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut floats = HashMap::new();
    let mut ints = HashMap::new();
    for (name, v) in st.tensors() {
        let shape = v.shape().to_vec();
        match v.dtype() {
            safetensors::Dtype::F32 => {
                let d = v
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                floats.insert(name, (shape, d));
            }
            safetensors::Dtype::I64 => {
                let d = v
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                ints.insert(name, (shape, d));
            }
            other => panic!("unexpected dtype {other:?} for {name}"),
        }
    }
    Reference { floats, ints }
}

/// Largest |a - b| divided by the largest |b| (a relative error that is meaningful for
/// tensors whose entries cross zero).
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// tiny-mistral + the test tokenizer in one HF folder.
pub fn tiny_model_dir(root: &Path) -> PathBuf {
    let dir = root.join("tiny-mistral-chat");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny_mistral().join(f), dir.join(f)).unwrap();
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(model_fixtures().join("tokenizer").join(f), dir.join(f)).unwrap();
    }
    dir
}

/// A few short Turkish records (the tiny test tokenizer spends about one token per byte).
pub fn dataset(root: &Path) -> PathBuf {
    let path = root.join("tiny-train.jsonl");
    let lines = [
        r#"{"id": "t1", "category": "general", "instruction": "Fatura?", "output": "Uygulamada."}"#,
        r#"{"id": "t2", "category": "general", "instruction": "Şifre?", "output": "SMS ile gelir."}"#,
        r#"{"id": "t3", "category": "general", "instruction": "İptal?", "output": "Mağazadan."}"#,
        r#"{"id": "t4", "category": "general", "instruction": "Hız?", "output": "Modemi açın."}"#,
        r#"{"id": "t5", "category": "general", "instruction": "Paket?", "output": "Menüden seçin."}"#,
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// An experiment on the tiny model: `limit` examples, `steps` steps.
pub fn tiny_experiment(model: &Path, runs: &Path, extra: &str) -> String {
    format!(
        r#"name = "tiny"
[model]
base = "{}"
[data]
train = "{}"
max_seq_len = 64
limit = 4
[train]
micro_batch = 2
grad_accum = 2
epochs = 10
seed = 11
runs_dir = "{}"
{extra}
[optimizer]
lr = 0.05
warmup_steps = 1
schedule = "cosine"
[lora]
r = 4
alpha = 8
dropout = 0.1
targets = "all-linear"
"#,
        model.display(),
        dataset(runs.parent().unwrap()).display(),
        runs.display()
    )
}
