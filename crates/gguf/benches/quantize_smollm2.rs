//! Whole-model quantization speed (criterion): our `quantize_gguf` vs llama.cpp's
//! `llama_model_quantize` (node-llama-cpp's `libllama.so`), F16 → Q4_K_M, on the same
//! SmolLM2-135M F16 GGUF, with 1 thread and with 2 threads. The F16 file is made once from the
//! SmolLM2 Q4_1 GGUF in `models/gguf/` (`tunebench fetch-model smollm2-135m` puts it there).
//!
//! `cargo bench -p tb-gguf --bench quantize_smollm2`

use std::path::{Path, PathBuf};

use criterion::{criterion_main, BenchmarkId, Criterion};
use tb_gguf::{quantize_gguf, GgmlType, GgufFile, GgufWriter, QuantMix, TensorSpec};

#[path = "../tests/common/mod.rs"]
mod common;

fn smollm2_f16(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let src = root.join("models/gguf/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        src.is_file(),
        "{} is missing: run `tunebench fetch-model smollm2-135m` first",
        src.display()
    );
    let f = GgufFile::open(&src).expect("open SmolLM2");
    let mut md = f.metadata().clone();
    md.set("general.file_type", 1u32);
    let mut w = GgufWriter::new(md).expect("writer");
    for t in f.tensors() {
        let ty = if t.ty == GgmlType::F32 {
            GgmlType::F32
        } else {
            GgmlType::F16
        };
        w.add_tensor(TensorSpec::new(t.name.clone(), ty, t.ne.clone()))
            .expect("add");
    }
    let out = dir.join("smollm2-f16.gguf");
    w.write_to_file(&out, |i, _, sink| {
        sink.write_f32(&f.tensor_f32(&f.tensors()[i].name)?)
    })
    .expect("write F16");
    out
}

fn quantize(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f16 = smollm2_f16(tmp.path());
    let out = tmp.path().join("out.gguf");
    let mut group = c.benchmark_group("smollm2_f16_to_q4_k_m");
    group.sample_size(10);
    for threads in [1usize, 2] {
        group.bench_with_input(BenchmarkId::new("tunebench", threads), &threads, |b, &t| {
            b.iter(|| quantize_gguf(&f16, &out, QuantMix::Q4_K_M, t).expect("quantize"))
        });
        group.bench_with_input(
            BenchmarkId::new("llama_model_quantize", threads),
            &threads,
            |b, &t| b.iter(|| common::libllama::llama_quantize(&f16, &out, 15, t as i32)),
        );
    }
    group.finish();
}

/// Criterion's generated entry points (kept in a private module: they need no docs).
mod entry {
    criterion::criterion_group!(benches, super::quantize);
}
criterion_main!(entry::benches);
