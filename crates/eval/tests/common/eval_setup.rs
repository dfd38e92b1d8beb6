//! What the evaluation tests share (tb-eval's `eval_resume`, the CLI's `eval_e2e` and
//! `eval_resume`, which include this module by path): the two tiny models they evaluate,
//! dataset lines, and a summary without the figures that depend on the clock or on how a run
//! was split up.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tb_gguf::GgmlType;

use super::tiny::TinyLlama;

/// Model `a`: byte tokens muted, so its greedy answers are pieces every detokeniser renders
/// alike (written as F32).
pub fn model_a() -> TinyLlama {
    TinyLlama {
        mute_bytes: true,
        ..TinyLlama::default()
    }
}

/// Model `b`: another seed, tied embeddings (written as Q8_0).
pub fn model_b() -> TinyLlama {
    TinyLlama {
        seed: 11,
        tied: true,
        ..TinyLlama::default()
    }
}

/// Writes the two evaluated models into `dir` and returns their paths: [`model_a`] as
/// `tiny-a-f32.gguf`, [`model_b`] as `tiny-b-q8_0.gguf`.
pub fn write_two_models(dir: &Path) -> (PathBuf, PathBuf) {
    let a = dir.join("tiny-a-f32.gguf");
    let b = dir.join("tiny-b-q8_0.gguf");
    model_a().write(&a, GgmlType::F32);
    model_b().write(&b, GgmlType::Q8_0);
    (a, b)
}

/// One line (with its newline) of an evaluation dataset: a held-out `billing` item.
pub fn dataset_line(id: &str, instruction: &str, output: &str) -> String {
    let line = serde_json::json!({
        "id": id,
        "category": "billing",
        "split": "heldout",
        "instruction": instruction,
        "output": output,
    });
    format!("{line}\n")
}

/// `summary.json` (as JSON) without what depends on the clock or on how the run was split up
/// (seconds, load time, throughput, items kept by a resume), so an interrupted and resumed run compares
/// equal to an uninterrupted one.
pub fn comparable_summary(mut summary: Value) -> Value {
    let obj = summary.as_object_mut().expect("summary.json is an object");
    for k in ["seconds", "resumed_items"] {
        obj.remove(k);
    }
    for m in obj["models"].as_array_mut().expect("models[]") {
        let m = m.as_object_mut().expect("a model is an object");
        for k in [
            "seconds",
            "load_seconds",
            "resumed",
            "eval_tokens_per_second",
            "prompt_tokens_per_second",
        ] {
            m.remove(k);
        }
    }
    summary
}
