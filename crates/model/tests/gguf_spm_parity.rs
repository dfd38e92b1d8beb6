//! SentencePiece (`tokenizer.ggml.model = "llama"`) GGUF import, checked against llama.cpp: a tiny
//! random llama GGUF with a Turkcell-like vocabulary (`<|im_start|>` as BOS, ChatML template,
//! byte fallback) written with tb-gguf, then tokenised by both sides and run by both sides.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{ids, llama_cpp};

use tb_gguf::{GgmlType, GgufWriter, Metadata, TensorSpec};
use tb_model::gguf_tokenizer::{token_type, GgufVocab};
use tb_model::{generate, CpuBackend, GenerationConfig, GgufModel, Sampling};

const CORPUS: &str = "faturamı nasıl öderim merhaba dünya internet paketim bitti numara taşıma işlemi şifremi unuttum uygulama giriş yapamıyorum teşekkür ederim";

/// A small SentencePiece-style vocabulary: specials, 256 byte tokens, every character of the
/// corpus with the `▁` marker, then frequent substrings with decreasing scores.
fn vocab() -> (Vec<String>, Vec<f32>, Vec<i32>) {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![
        token_type::UNKNOWN,
        token_type::CONTROL,
        token_type::CONTROL,
    ];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(token_type::BYTE);
    }
    let text = format!("▁{}", CORPUS.replace(' ', "▁"));
    let chars: BTreeSet<char> = text.chars().collect();
    for c in chars {
        tokens.push(c.to_string());
        types.push(token_type::NORMAL);
    }
    // substrings of 2..6 chars that occur in the corpus, most frequent first
    let cs: Vec<char> = text.chars().collect();
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for n in 2..=6 {
        for w in cs.windows(n) {
            if w[1..].contains(&'▁') {
                continue;
            }
            let s: String = w.iter().collect();
            *counts.entry(s).or_default() += 1;
        }
    }
    let mut subs: Vec<(String, usize)> = counts.into_iter().filter(|(_, c)| *c >= 2).collect();
    subs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (s, _) in subs.into_iter().take(150) {
        if !tokens.contains(&s) {
            tokens.push(s);
            types.push(token_type::NORMAL);
        }
    }
    tokens.push("<|im_start|>".into());
    types.push(token_type::CONTROL);
    tokens.push("<|im_end|>".into());
    types.push(token_type::CONTROL);
    let n = tokens.len();
    let scores = (0..n)
        .map(|i| match types[i] {
            token_type::NORMAL => -(i as f32),
            _ => 0.0,
        })
        .collect();
    (tokens, scores, types)
}

fn write_gguf(path: &Path) -> usize {
    let (tokens, scores, types) = vocab();
    let n_vocab = tokens.len();
    let (h, ff, layers, heads, kv) = (32u32, 64u32, 2u32, 4u32, 2u32);
    let mut md = Metadata::new();
    md.set("general.architecture", "llama");
    md.set("llama.context_length", 256u32);
    md.set("llama.embedding_length", h);
    md.set("llama.block_count", layers);
    md.set("llama.feed_forward_length", ff);
    md.set("llama.attention.head_count", heads);
    md.set("llama.attention.head_count_kv", kv);
    md.set("llama.rope.freq_base", 10000.0f32);
    md.set("llama.attention.layer_norm_rms_epsilon", 1e-5f32);
    md.set("llama.rope.dimension_count", h / heads);
    md.set("general.file_type", 0u32);
    md.set("tokenizer.ggml.model", "llama");
    md.set("tokenizer.ggml.pre", "default");
    md.set("tokenizer.ggml.tokens", tokens.clone());
    md.set("tokenizer.ggml.scores", scores);
    md.set("tokenizer.ggml.token_type", types);
    md.set("tokenizer.ggml.bos_token_id", (n_vocab - 2) as u32);
    md.set("tokenizer.ggml.eos_token_id", (n_vocab - 1) as u32);
    md.set("tokenizer.ggml.unknown_token_id", 0u32);
    md.set("tokenizer.ggml.add_bos_token", true);
    md.set("tokenizer.ggml.add_space_prefix", true);
    md.set(
        "tokenizer.chat_template",
        tb_model::chat_template::CHATML_TEMPLATE,
    );
    let mut w = GgufWriter::new(md).unwrap();
    let hd = h / heads;
    let mut shapes: Vec<(String, Vec<u64>)> =
        vec![("token_embd.weight".into(), vec![h as u64, n_vocab as u64])];
    for l in 0..layers {
        for (name, ne) in [
            ("attn_norm", vec![h as u64]),
            ("attn_q", vec![h as u64, (heads * hd) as u64]),
            ("attn_k", vec![h as u64, (kv * hd) as u64]),
            ("attn_v", vec![h as u64, (kv * hd) as u64]),
            ("attn_output", vec![(heads * hd) as u64, h as u64]),
            ("ffn_norm", vec![h as u64]),
            ("ffn_gate", vec![h as u64, ff as u64]),
            ("ffn_up", vec![h as u64, ff as u64]),
            ("ffn_down", vec![ff as u64, h as u64]),
        ] {
            shapes.push((format!("blk.{l}.{name}.weight"), ne));
        }
    }
    shapes.push(("output_norm.weight".into(), vec![h as u64]));
    shapes.push(("output.weight".into(), vec![h as u64, n_vocab as u64]));
    for (name, ne) in &shapes {
        w.add_tensor(TensorSpec::new(name.clone(), GgmlType::F32, ne.clone()))
            .unwrap();
    }
    let mut state = 12345u64;
    w.write_to_file(path, |_, spec, sink| {
        let n = spec.n_elements() as usize;
        let values: Vec<f32> = if spec.ne.len() == 1 {
            vec![1.0; n]
        } else {
            (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.8
                })
                .collect()
        };
        sink.write_f32(&values)
    })
    .unwrap();
    n_vocab
}

#[test]
fn spm_gguf_tokenizer_and_model_match_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-spm.gguf");
    let n_vocab = write_gguf(&path);
    let model = GgufModel::open(&path).unwrap();
    assert_eq!(model.config.vocab_size, n_vocab);
    let tok = GgufVocab::from_gguf(&model.file).unwrap().build().unwrap();
    assert_eq!(tok.bos().unwrap().text, "<|im_start|>");
    assert!(tok.adds_bos());

    let texts = [
        "faturamı nasıl öderim",
        "Merhaba dünya, internet paketim bitti!",
        "  iki boşluk ve €uro",
        "<|im_start|>user\nşifremi unuttum<|im_end|>\n<|im_start|>assistant\n",
    ];
    let ours: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| tok.inner().encode(*t, false).unwrap().get_ids().to_vec())
        .collect();
    let prompt = tok
        .encode_chat(
            &[tb_model::ChatMessage::new("user", "faturamı nasıl öderim")],
            true,
        )
        .unwrap();
    assert_eq!(
        prompt
            .iter()
            .filter(|&&t| t == tok.bos().unwrap().id)
            .count(),
        2,
        "BOS doubled or missing"
    );
    let oracle = llama_cpp(
        &path,
        &serde_json::json!({"texts": texts, "prompts": [prompt], "max_tokens": 12}),
    );
    for (i, want) in oracle["tokenized"].as_array().unwrap().iter().enumerate() {
        assert_eq!(ours[i], ids(want), "tokens of {:?}", texts[i]);
        if !texts[i].contains("<|") {
            // (after a special token SentencePiece adds a prefix space, so those don't round-trip)
            assert_eq!(tok.decode(&ours[i], false).unwrap(), texts[i], "round trip");
        }
    }
    let device = Default::default();
    let lm = model.load::<CpuBackend>(&device).unwrap();
    let config = GenerationConfig {
        max_new_tokens: 12,
        sampling: Sampling::Greedy,
        stop_ids: vec![],
    };
    let got = generate(&lm, &prompt, &config, &device, |_| {})
        .unwrap()
        .tokens;
    assert_eq!(
        got,
        ids(&oracle["continuations"][0]),
        "greedy continuation of the F32 model"
    );
}
