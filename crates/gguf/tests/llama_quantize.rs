//! `quantize_gguf` against llama.cpp's own `llama_model_quantize` (node-llama-cpp's prebuilt
//! `libllama`), on tiny random F16 llama models written by our writer: same tensor order and
//! type table, byte-identical tensor data, same metadata, and in fact the same file.

mod common;

use common::libllama::llama_quantize;
use common::TinyLlama;
use tb_gguf::{quantize_gguf, GgmlType, GgufFile, QuantMix};

fn compare(model: &TinyLlama, mix: QuantMix) -> Vec<(String, GgmlType)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let f16 = dir.path().join("model-f16.gguf");
    model.write(&f16);
    let ours_path = dir.path().join("ours.gguf");
    let theirs_path = dir.path().join("theirs.gguf");
    let report = quantize_gguf(&f16, &ours_path, mix, 2).expect("quantize_gguf");
    llama_quantize(&f16, &theirs_path, mix.file_type().id(), 2);

    let ours = GgufFile::open(&ours_path).expect("read ours");
    let theirs = GgufFile::open(&theirs_path).expect("read theirs");
    let table = |f: &GgufFile| -> Vec<(String, GgmlType, Vec<u64>)> {
        f.tensors()
            .iter()
            .map(|t| (t.name.clone(), t.ty, t.ne.clone()))
            .collect()
    };
    assert_eq!(
        table(&ours),
        table(&theirs),
        "{mix}: tensor order/type/shape table differs"
    );
    for t in theirs.tensors() {
        let a = ours.tensor_data(&t.name).expect("ours data");
        let b = theirs.tensor_data(&t.name).expect("theirs data");
        let bad = a
            .chunks(t.ty.type_size())
            .zip(b.chunks(t.ty.type_size()))
            .filter(|(x, y)| x != y)
            .count();
        assert_eq!(
            bad, 0,
            "{mix}: tensor {} ({}): {bad} blocks differ",
            t.name, t.ty
        );
    }
    let kvs = |f: &GgufFile| -> Vec<(String, String)> {
        f.metadata()
            .iter()
            .map(|(k, v)| (k.to_string(), format!("{v:?}")))
            .collect()
    };
    assert_eq!(kvs(&ours), kvs(&theirs), "{mix}: metadata differs");
    assert_eq!(
        ours.metadata().get_u32("general.file_type").expect("ftype"),
        mix.file_type().id()
    );
    assert_eq!(
        ours.metadata()
            .get_u32("general.quantization_version")
            .expect("qv"),
        2
    );
    let a = std::fs::read(&ours_path).expect("read");
    let b = std::fs::read(&theirs_path).expect("read");
    assert!(
        a == b,
        "{mix}: files differ outside tensor data ({} vs {} bytes)",
        a.len(),
        b.len()
    );
    assert_eq!(report.bytes_out, a.len() as u64);
    report.tensors.into_iter().map(|t| (t.name, t.to)).collect()
}

/// 8 layers (so `use_more_bits` picks layers 0, 3, 6, 7), GQA, rows of 256/512, separate
/// output.weight.
fn model_256() -> TinyLlama {
    TinyLlama {
        n_embd: 256,
        n_ff: 512,
        n_layer: 8,
        n_head: 4,
        n_head_kv: 2,
        n_vocab: 320,
        tied: false,
        weight_type: GgmlType::F16,
        seed: 42,
    }
}

/// Rows of 96 and 160 (multiples of 32, not of 256) and tied embeddings: exercises llama.cpp's
/// Q4_K→Q5_0, Q6_K→Q8_0 fallbacks and the tied token_embd rule.
fn model_odd() -> TinyLlama {
    TinyLlama {
        n_embd: 96,
        n_ff: 160,
        n_layer: 3,
        n_head: 3,
        n_head_kv: 1,
        n_vocab: 300,
        tied: true,
        weight_type: GgmlType::F16,
        seed: 7,
    }
}

#[test]
fn q4_k_m_matches_llama_model_quantize() {
    let types = compare(&model_256(), QuantMix::Q4_K_M);
    let ty = |n: &str| types.iter().find(|(m, _)| m == n).map(|x| x.1);
    assert_eq!(ty("output.weight"), Some(GgmlType::Q6_K));
    assert_eq!(ty("token_embd.weight"), Some(GgmlType::Q4_K));
    for i in 0..8 {
        let more = [0, 3, 6, 7].contains(&i);
        let want = if more { GgmlType::Q6_K } else { GgmlType::Q4_K };
        assert_eq!(
            ty(&format!("blk.{i}.attn_v.weight")),
            Some(want),
            "layer {i}"
        );
        assert_eq!(
            ty(&format!("blk.{i}.ffn_down.weight")),
            Some(want),
            "layer {i}"
        );
        assert_eq!(
            ty(&format!("blk.{i}.attn_norm.weight")),
            Some(GgmlType::F32)
        );
    }
}

#[test]
fn q4_k_m_with_rows_not_multiple_of_256_matches_llama() {
    let types = compare(&model_odd(), QuantMix::Q4_K_M);
    let ty = |n: &str| types.iter().find(|(m, _)| m == n).map(|x| x.1);
    assert_eq!(ty("token_embd.weight"), Some(GgmlType::Q8_0));
    assert_eq!(ty("blk.0.attn_q.weight"), Some(GgmlType::Q5_0));
    assert!(types.iter().any(|(_, t)| *t == GgmlType::Q8_0));
}

#[test]
fn other_mixes_match_llama_model_quantize() {
    for mix in [
        QuantMix::Q4_0,
        QuantMix::Q8_0,
        QuantMix::F16,
        QuantMix::BF16,
        QuantMix::F32,
    ] {
        compare(&model_256(), mix);
    }
    for mix in [QuantMix::Q4_0, QuantMix::Q8_0] {
        compare(&model_odd(), mix);
    }
}

#[test]
fn bf16_and_f32_sources_match_llama() {
    for wt in [GgmlType::BF16, GgmlType::F32] {
        let m = TinyLlama {
            weight_type: wt,
            n_layer: 2,
            ..model_256()
        };
        compare(&m, QuantMix::Q4_K_M);
        compare(&m, QuantMix::F16);
    }
}

#[test]
fn quantize_gguf_refuses_quantized_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f16 = dir.path().join("f16.gguf");
    model_odd().write(&f16);
    let q8 = dir.path().join("q8.gguf");
    quantize_gguf(&f16, &q8, QuantMix::Q8_0, 1).expect("q8");
    let err = quantize_gguf(&q8, dir.path().join("q4.gguf"), QuantMix::Q4_K_M, 1).unwrap_err();
    assert!(err.to_string().contains("requantizing"), "{err}");
    assert!(!dir.path().join("q4.gguf").exists());
}

/// The real SmolLM2-135M-Instruct GGUF (llama.cpp-made, Q4_1 + Q8_0 embeddings, 576-wide rows
/// so most Q4_K tensors fall back), provisioned by tb-testkit on first use.
fn smollm2() -> std::path::PathBuf {
    tb_testkit::smollm2_gguf()
}

#[test]
fn real_smollm2_reads_dequantizes_and_requantizes_like_llama() {
    let src = smollm2();
    let f = GgufFile::open(&src).expect("open SmolLM2");
    let md = f.metadata();
    assert_eq!(md.get_str("general.architecture").expect("arch"), "llama");
    assert_eq!(md.get_u32("llama.embedding_length").expect("n_embd"), 576);
    assert_eq!(md.get_u32("llama.block_count").expect("n_layer"), 30);
    assert_eq!(md.get_str("tokenizer.ggml.model").expect("tok"), "gpt2");
    assert_eq!(
        md.get_str_array("tokenizer.ggml.tokens")
            .expect("tokens")
            .len(),
        49152
    );
    assert!(md.get_f32("llama.attention.layer_norm_rms_epsilon").is_ok());
    assert_eq!(f.tensors().len(), 272);

    // every tensor dequantizes exactly as ggml does
    let ggml = common::Ggml::get();
    for t in f.tensors() {
        let ours = f.tensor_f32(&t.name).expect("dequantize");
        if t.ty == GgmlType::F32 {
            continue;
        }
        let theirs = ggml.dequantize(t.ty, f.tensor_data(&t.name).expect("data"));
        assert!(
            ours.iter()
                .zip(&theirs)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{} ({})",
            t.name,
            t.ty
        );
    }

    // F16 copy written by us, then Q4_K_M by us and by llama.cpp: same file
    let dir = tempfile::tempdir().expect("tempdir");
    let f16 = dir.path().join("smol-f16.gguf");
    let mut md16 = f.metadata().clone();
    md16.set("general.file_type", 1u32);
    let mut w = tb_gguf::GgufWriter::new(md16).expect("writer");
    for t in f.tensors() {
        let ty = if t.ty == GgmlType::F32 {
            GgmlType::F32
        } else {
            GgmlType::F16
        };
        w.add_tensor(tb_gguf::TensorSpec::new(t.name.clone(), ty, t.ne.clone()))
            .expect("add");
    }
    w.write_to_file(&f16, |i, _, sink| {
        sink.write_f32(&f.tensor_f32(&f.tensors()[i].name)?)
    })
    .expect("write f16");
    let ours = dir.path().join("ours.gguf");
    let theirs = dir.path().join("theirs.gguf");
    let report = quantize_gguf(&f16, &ours, QuantMix::Q4_K_M, 2).expect("quantize");
    llama_quantize(&f16, &theirs, 15, 2);
    let a = std::fs::read(&ours).expect("read");
    let b = std::fs::read(&theirs).expect("read");
    assert!(a == b, "SmolLM2 Q4_K_M differs from llama_model_quantize");
    let n = |ty| report.tensors.iter().filter(|t| t.to == ty).count();
    // 576-wide rows: Q4_K falls back to Q5_0 and Q6_K to Q8_0; ffn_down rows are 1536 wide
    assert!(n(GgmlType::Q5_0) > 100 && n(GgmlType::Q8_0) > 10 && n(GgmlType::Q6_K) > 0);
}
