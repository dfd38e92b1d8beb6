//! SentencePiece export: a small SPM BPE model with byte fallback, trained by the real
//! `sentencepiece` trainer (committed fixture `crates/gguf/tests/fixtures/spm`, made by
//! `make_export_fixtures.py`), is exported twice on the tiny-mistral weights: from
//! `tokenizer.model` (real scores and types) and from `tokenizer.json` alone (scores derived from
//! the merge ranks). llama.cpp tokenises the reference texts on both exports exactly like
//! sentencepiece and HF `tokenizers` did (the fixture asserts those two agree), and like the Rust
//! `tokenizers` crate does on the same tokenizer.json.

mod common;

use common::*;
use serde_json::{json, Value as Json};

#[test]
fn spm_exports_tokenize_like_sentencepiece_in_llama_cpp() {
    let tmp = tempfile::tempdir().unwrap();
    let spm = gguf_fixtures().join("spm");
    let reference: Json =
        serde_json::from_str(&std::fs::read_to_string(spm.join("reference.json")).unwrap())
            .unwrap();
    let texts = reference["texts"].clone();
    let rust = tb_model::TextTokenizer::from_dir(&spm).unwrap();
    for (with_model, name) in [(true, "from-model"), (false, "from-json")] {
        let dir = tiny_hf_dir("tiny-mistral", &tmp.path().join(name), true);
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(spm.join(f), dir.join(f)).unwrap();
        }
        if with_model {
            std::fs::copy(spm.join("tokenizer.model"), dir.join("tokenizer.model")).unwrap();
        }
        let out = tmp.path().join(format!("{name}.gguf"));
        export(&dir, "f16", &out);
        let f = tb_gguf::GgufFile::open(&out).unwrap();
        let md = f.metadata();
        assert_eq!(md.get_str("tokenizer.ggml.model").unwrap(), "llama");
        assert_eq!(md.get_u32("tokenizer.ggml.bos_token_id").unwrap(), 1);
        assert_eq!(md.get_u32("tokenizer.ggml.eos_token_id").unwrap(), 2);
        assert_eq!(md.get_u32("tokenizer.ggml.unknown_token_id").unwrap(), 0);
        let types = md.get_i32_array("tokenizer.ggml.token_type").unwrap();
        assert_eq!(types[0], 2, "<unk> is UNKNOWN");
        assert_eq!(types[3], 6, "<0x00> is BYTE");
        let r = llama_eval(&out, &json!({"texts": texts, "max_tokens": 1}));
        for (i, t) in texts.as_array().unwrap().iter().enumerate() {
            let want = ids(&reference["ids"][i]);
            let text = t.as_str().unwrap();
            let hf: Vec<u32> = rust.encode(text, false).unwrap();
            assert_eq!(hf, want, "Rust tokenizers on {text:?}");
            assert_eq!(
                ids(&r["tokenized"][i]),
                want,
                "{name}: llama.cpp tokenises {text:?} differently"
            );
        }
        eprintln!(
            "{name}: llama.cpp tokenisation of {} texts identical to sentencepiece/HF",
            texts.as_array().unwrap().len()
        );
    }
}

/// A Llama-3-style byte-level BPE (llama3 split regex, ByteLevel without regex, ignore_merges):
/// the fixture's BPE vocabulary with that pre-tokenizer is exported as `llama-bpe`, and llama.cpp
/// tokenises like the Rust `tokenizers` crate on the same tokenizer.json.
#[test]
fn llama3_style_bpe_exports_as_llama_bpe_and_tokenizes_like_hf() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_hf_dir("tiny-llama", &tmp.path().join("l3"), false);
    edit_json(&dir.join("tokenizer.json"), |t| {
        t["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": tb_gguf::export::vocab::LLAMA3_SPLIT},
             "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]});
        t["model"]["ignore_merges"] = json!(true);
    });
    let out = tmp.path().join("l3.gguf");
    export(&dir, "f32", &out);
    let f = tb_gguf::GgufFile::open(&out).unwrap();
    assert_eq!(
        f.metadata().get_str("tokenizer.ggml.pre").unwrap(),
        "llama-bpe"
    );
    let hf = tb_model::TextTokenizer::from_dir(&dir).unwrap();
    let texts = [
        "Merhaba, faturamı nasıl öğrenebilirim?",
        "Numara taşıma 12345 işlemi   genellikle\n\nbirkaç iş günü sürer.",
        "<|im_start|>user\nHello, please translate this sentence into Turkish.<|im_end|>",
        "I'm sure it's 2024's best: don't!",
    ];
    let r = llama_eval(&out, &json!({"texts": texts, "max_tokens": 1}));
    for (i, t) in texts.iter().enumerate() {
        let want = hf.encode(t, false).unwrap();
        assert_eq!(
            ids(&r["tokenized"][i]),
            want,
            "llama.cpp tokenises {t:?} differently"
        );
    }
}
