//! `tunebench export gguf` against the real tools: llama.cpp (node-llama-cpp 3.21.1) loads every
//! mix of our exports of the tiny fixtures and of SmolLM2-135M (imported from its GGUF) and
//! generates; its greedy continuations on our F32/F16 exports equal tb-model's on the HF
//! directory; its tokenisation equals HF `tokenizers`; gguf-py parses and dequantizes every
//! export like tb-gguf; and the Q4_K_M export is byte-identical in tensor data to llama.cpp's own
//! `llama_model_quantize` applied to our F16 export.
//!
//! tiny-mistral's `sliding_window` (4) is cleared in the copy that is exported: llama.cpp's llama
//! architecture has no sliding-window attention, so with the window on, HF (and tb-model) and
//! llama.cpp legitimately differ after 4 tokens. With it off, HF transformers itself produces the
//! same continuation as llama.cpp (checked when the fixtures were made).

mod common;

use std::path::Path;

use common::*;
use serde_json::json;
use tb_model::{generate, CpuBackend, GenerationConfig, LoadedModel, Sampling};

type B = CpuBackend;

const MIXES: [(&str, u32); 5] = [
    ("f32", 0),
    ("f16", 1),
    ("q8_0", 7),
    ("q4_0", 2),
    ("q4_k_m", 15),
];

fn greedy(m: &LoadedModel<B>, prompt: &[u32], n: usize) -> Vec<u32> {
    let config = GenerationConfig {
        max_new_tokens: n,
        sampling: Sampling::Greedy,
        stop_ids: vec![],
    };
    generate(&m.model, prompt, &config, &Default::default(), |_| {})
        .unwrap()
        .tokens
}

/// Exports every mix; llama.cpp loads each and generates; F32/F16 continuations and the
/// tokenisation equal tb-model's; gguf-py reads each; Q4_K_M equals llama_model_quantize(F16).
fn check_model(dir: &Path, work: &Path, prompts: &[Vec<u32>], texts: &[String], n: usize) {
    let device = Default::default();
    let reference = LoadedModel::<B>::load(dir, &device).unwrap();
    let ours: Vec<Vec<u32>> = prompts.iter().map(|p| greedy(&reference, p, n)).collect();
    let hf_ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| reference.tokenizer().unwrap().encode(t, false).unwrap())
        .collect();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    for (quant, ftype) in MIXES {
        let out = work.join(format!("{name}-{quant}.gguf"));
        export(dir, quant, &out);
        let f = tb_gguf::GgufFile::open(&out).unwrap();
        assert_eq!(f.metadata().get_u32("general.file_type").unwrap(), ftype);
        let r = llama_eval(
            &out,
            &json!({"texts": texts, "prompts": prompts, "max_tokens": n}),
        );
        for (i, want) in hf_ids.iter().enumerate() {
            assert_eq!(
                &ids(&r["tokenized"][i]),
                want,
                "{name} {quant}: tokenisation of {:?}",
                texts[i]
            );
        }
        let conts: Vec<Vec<u32>> = r["continuations"]
            .as_array()
            .unwrap()
            .iter()
            .map(ids)
            .collect();
        // node-llama-cpp ends a continuation at an end-of-generation token (not included); ours
        // runs on, so compare up to llama.cpp's end and require our next token to be a stop token.
        let stops = reference.tokenizer().unwrap().stop_ids();
        let same = |theirs: &Vec<u32>, ours: &Vec<u32>| {
            ours.starts_with(theirs)
                && (theirs.len() == n || ours.get(theirs.len()).is_some_and(|t| stops.contains(t)))
        };
        let n_same = conts.iter().zip(&ours).filter(|(a, b)| same(a, b)).count();
        eprintln!("{name} {quant}: llama.cpp loads it; {n_same}/{} greedy continuations equal tb-model's on the HF dir", ours.len());
        for c in &conts {
            assert!(!c.is_empty(), "{name} {quant}: llama.cpp generated nothing");
        }
        if quant == "f32" || quant == "f16" {
            assert_eq!(
                n_same,
                ours.len(),
                "{name} {quant}: llama.cpp {conts:?} vs tb-model {ours:?}"
            );
        }
        check_with_gguf_py(&out);
    }
    let theirs = work.join(format!("{name}-llama-quantize-q4_k_m.gguf"));
    llama_quantize(&work.join(format!("{name}-f16.gguf")), &theirs, 15);
    let n = assert_same_tensors(&work.join(format!("{name}-q4_k_m.gguf")), &theirs);
    eprintln!(
        "{name}: Q4_K_M export == llama_model_quantize(our F16 export): {n} tensors byte-identical"
    );
}

#[test]
fn tiny_fixtures_export_to_every_mix_and_run_in_llama_cpp() {
    let tmp = tempfile::tempdir().unwrap();
    let texts = vec![
        "<|im_start|>user\nMerhaba, faturamı nasıl öğrenebilirim?<|im_end|>\n".to_owned(),
        "Numara taşıma işlemi genellikle birkaç iş günü sürer.".to_owned(),
    ];
    let prompts = vec![
        vec![277, 305, 276, 194, 271],
        vec![318, 84, 82, 272, 198, 314, 71],
    ];
    for (name, no_swa) in [("tiny-llama", false), ("tiny-mistral", true)] {
        let dir = tiny_hf_dir(name, &tmp.path().join(name), no_swa);
        check_model(&dir, tmp.path(), &prompts, &texts, 10);
    }
}

#[test]
fn tied_embeddings_export_has_no_output_tensor_and_q6_k_token_embd_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_hf_dir("tiny-llama", &tmp.path().join("tiny-llama"), false);
    let out = tmp.path().join("t.gguf");
    export(&dir, "q4_0", &out);
    let f = tb_gguf::GgufFile::open(&out).unwrap();
    assert!(f.tensor("output.weight").is_err());
    // tied: token_embd is treated like output (Q6_K → Q8_0 fallback for 64-wide rows)
    assert_eq!(
        f.tensor("token_embd.weight").unwrap().ty,
        tb_gguf::GgmlType::Q8_0
    );
    assert_eq!(
        f.tensor("blk.0.attn_norm.weight").unwrap().ty,
        tb_gguf::GgmlType::F32
    );
    let md = f.metadata();
    assert_eq!(md.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(md.get_str("tokenizer.ggml.pre").unwrap(), "gpt-2");
    assert_eq!(md.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 318);
    assert_eq!(md.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 319);
    assert!(md.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert!(md
        .get_str("tokenizer.chat_template")
        .unwrap()
        .contains("<|im_start|>"));
    assert_eq!(
        md.get_i32_array("tokenizer.ggml.token_type").unwrap()[318],
        3
    );
    assert_eq!(md.get_f32("llama.rope.freq_base").unwrap(), 500.0);
}

#[test]
fn smollm2_imported_exports_run_in_llama_cpp() {
    let gguf = tb_testkit::smollm2_gguf();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("smollm2");
    tb_model::import::import_gguf(&gguf, &dir).unwrap();
    let reference = LoadedModel::<B>::load(&dir, &Default::default()).unwrap();
    let texts: Vec<String> = [
        "What is the capital of France?",
        "Faturamı nasıl ödeyebilirim?",
    ]
    .iter()
    .map(|q| {
        reference
            .tokenizer()
            .unwrap()
            .render_chat(&[tb_model::ChatMessage::new("user", *q)], true)
            .unwrap()
    })
    .collect();
    let prompts: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| reference.tokenizer().unwrap().encode(t, true).unwrap())
        .collect();
    drop(reference);
    check_model(&dir, tmp.path(), &prompts, &texts, 12);
    let f = tb_gguf::GgufFile::open(tmp.path().join("smollm2-f16.gguf")).unwrap();
    assert_eq!(
        f.metadata().get_str("tokenizer.ggml.pre").unwrap(),
        "smollm"
    );
}

#[test]
fn bf16_checkpoint_quantizes_through_bf16_like_llama_quantize() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny-mistral-bf16");
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(model_fixtures().join("tiny-mistral-bf16"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(model_fixtures().join("tokenizer").join(f), dir.join(f)).unwrap();
    }
    let bf16 = tmp.path().join("bf16.gguf");
    let q = tmp.path().join("q4km.gguf");
    let theirs = tmp.path().join("theirs.gguf");
    export(&dir, "bf16", &bf16);
    export(&dir, "q4_k_m", &q);
    llama_quantize(&bf16, &theirs, 15);
    assert_eq!(assert_same_tensors(&q, &theirs), 21);
    let r = llama_eval(&q, &json!({"prompts": [[277, 305, 276]], "max_tokens": 4}));
    assert_eq!(ids(&r["continuations"][0]).len(), 4);
}

/// Llama-3.1-style rope scaling (`rope_type: llama3`) is exported as the `rope_freqs.weight`
/// tensor; llama.cpp then continues like HF transformers (committed reference from
/// `make_export_fixtures.py`), and differently from the same weights without the scaling.
#[test]
fn llama3_rope_scaling_exports_rope_freqs_and_matches_hf() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(gguf_fixtures().join("llama3-rope/reference.json")).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let plain = tiny_hf_dir("tiny-llama", &tmp.path().join("plain"), false);
    let scaled = tiny_hf_dir("tiny-llama", &tmp.path().join("scaled"), false);
    edit_json(&scaled.join("config.json"), |c| {
        c["rope_parameters"] = reference["rope_parameters"].clone()
    });
    let request = json!({"prompts": [reference["prompt"]], "max_tokens": 20});
    let mut conts = Vec::new();
    for dir in [&plain, &scaled] {
        let out = dir.with_extension("gguf");
        export(dir, "f32", &out);
        conts.push(ids(&llama_eval(&out, &request)["continuations"][0]));
    }
    let f = tb_gguf::GgufFile::open(scaled.with_extension("gguf")).unwrap();
    let freqs = f.tensor_f32("rope_freqs.weight").unwrap();
    assert_eq!(freqs.len(), 8);
    assert_eq!(freqs[7], 8.0);
    assert!(tb_gguf::GgufFile::open(plain.with_extension("gguf"))
        .unwrap()
        .tensor("rope_freqs.weight")
        .is_err());
    assert_eq!(
        conts[1],
        ids(&reference["greedy"]),
        "llama3 rope: llama.cpp vs HF"
    );
    assert_ne!(
        conts[0], conts[1],
        "the scaling must change the continuation"
    );
}
