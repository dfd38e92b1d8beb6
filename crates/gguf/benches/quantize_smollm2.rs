//! Whole-model quantization speed (criterion): our `quantize_gguf` vs llama.cpp's
//! `llama_model_quantize` (node-llama-cpp's `libllama.so`), F16 → Q4_K_M, on the same
//! SmolLM2-135M F16 GGUF, with 1 thread and with 2 threads. The F16 file is made once from the
//! SmolLM2 Q4_1 GGUF in `models/gguf/` (`tunebench fetch-model smollm2-135m` puts it there).
//!
//! `cargo bench -p tb-gguf --bench quantize_smollm2`

use std::ffi::{c_void, CString};
use std::path::{Path, PathBuf};

use criterion::{criterion_main, BenchmarkId, Criterion};
use tb_gguf::{quantize_gguf, GgmlType, GgufFile, GgufWriter, QuantMix, TensorSpec};

#[path = "../tests/common/mod.rs"]
mod common;

#[repr(C)]
#[derive(Clone, Copy)]
struct Params {
    nthread: i32,
    ftype: i32,
    output_tensor_type: i32,
    token_embedding_type: i32,
    allow_requantize: bool,
    quantize_output_tensor: bool,
    only_copy: bool,
    pure: bool,
    keep_split: bool,
    dry_run: bool,
    imatrix: *const c_void,
    kv_overrides: *const c_void,
    tt_overrides: *const c_void,
    prune_layers: *const i32,
    max_buf_size: usize,
}

type DefaultsFn = unsafe extern "C" fn() -> Params;
type QuantizeFn = unsafe extern "C" fn(*const i8, *const i8, *const Params) -> u32;

fn libllama() -> libloading::Library {
    let dir = common::llama_lib_dir();
    let path = std::fs::read_dir(&dir)
        .expect("lib dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libllama.") && n.ends_with(".so"))
        })
        .expect("libllama.so");
    // SAFETY: plain C library; llama_backend_init has no preconditions
    unsafe {
        let lib = libloading::Library::new(&path).expect("load libllama");
        let init: libloading::Symbol<unsafe extern "C" fn()> =
            lib.get(b"llama_backend_init").expect("llama_backend_init");
        init();
        lib
    }
}

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
    let lib = libllama();
    let inp = CString::new(f16.to_str().expect("utf-8")).expect("path");
    let outc = CString::new(out.to_str().expect("utf-8")).expect("path");
    let mut group = c.benchmark_group("smollm2_f16_to_q4_k_m");
    group.sample_size(10);
    for threads in [1usize, 2] {
        group.bench_with_input(BenchmarkId::new("tunebench", threads), &threads, |b, &t| {
            b.iter(|| quantize_gguf(&f16, &out, QuantMix::Q4_K_M, t).expect("quantize"))
        });
        group.bench_with_input(
            BenchmarkId::new("llama_model_quantize", threads),
            &threads,
            |b, &t| {
                b.iter(|| {
                    // SAFETY: signatures of llama.h in the release node-llama-cpp 3.21.1 ships
                    let rc = unsafe {
                        let defaults: libloading::Symbol<DefaultsFn> = lib
                            .get(b"llama_model_quantize_default_params")
                            .expect("symbol");
                        let q: libloading::Symbol<QuantizeFn> =
                            lib.get(b"llama_model_quantize").expect("symbol");
                        let mut p = defaults();
                        p.ftype = 15;
                        p.nthread = t as i32;
                        q(inp.as_ptr().cast(), outc.as_ptr().cast(), &p)
                    };
                    assert_eq!(rc, 0);
                })
            },
        );
    }
    group.finish();
}

/// Criterion's generated entry points (kept in a private module: they need no docs).
mod entry {
    criterion::criterion_group!(benches, super::quantize);
}
criterion_main!(entry::benches);
