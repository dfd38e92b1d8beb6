//! Codec throughput against llama.cpp (criterion): MB/s of f32 input quantized and of f32 output
//! dequantized, ours single-threaded (`codec::quantize`) and on all cores (`codec::quantize_par`)
//! next to llama.cpp's reference quantizers (`quantize_row_*_ref`, `dequantize_row_*` from
//! node-llama-cpp's `libggml-base.so`, through the FFI harness of this crate's tests) on the same
//! data.
//!
//! `cargo bench -p tb-gguf --bench codecs_vs_ggml`

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use tb_gguf::{codec, GgmlType};

#[path = "../tests/common/mod.rs"]
mod common;

const N: usize = 1 << 20;

fn codecs(c: &mut Criterion) {
    let mut g = common::Gen::new(1);
    let x = g.vec(N, |g| g.normal());
    let ggml = common::Ggml::get();
    let mut group = c.benchmark_group("quantize");
    group.throughput(Throughput::Bytes((N * 4) as u64));
    group.sample_size(10);
    for ty in [
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        let mut out = vec![0u8; N / ty.block_size() * ty.type_size()];
        group.bench_with_input(BenchmarkId::new("ours_1_thread", ty), &ty, |b, &ty| {
            b.iter(|| codec::quantize(ty, &x, &mut out).expect("quantize"))
        });
        group.bench_with_input(BenchmarkId::new("ours_all_threads", ty), &ty, |b, &ty| {
            b.iter(|| codec::quantize_par(ty, &x, &mut out).expect("quantize"))
        });
        group.bench_with_input(BenchmarkId::new("ggml_ref_1_thread", ty), &ty, |b, &ty| {
            b.iter(|| ggml.quantize(ty, &x))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("dequantize");
    group.throughput(Throughput::Bytes((N * 4) as u64));
    group.sample_size(10);
    for ty in [
        GgmlType::F16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        let q = codec::quantize_to_vec(ty, &x).expect("quantize");
        let mut out = vec![0f32; N];
        group.bench_with_input(BenchmarkId::new("ours_1_thread", ty), &ty, |b, &ty| {
            b.iter(|| codec::dequantize(ty, &q, &mut out).expect("dequantize"))
        });
        group.bench_with_input(BenchmarkId::new("ggml_1_thread", ty), &ty, |b, &ty| {
            b.iter(|| ggml.dequantize(ty, &q))
        });
    }
    group.finish();
}

/// Criterion's generated entry points (kept in a private module: they need no docs).
mod entry {
    criterion::criterion_group!(benches, super::codecs);
}
criterion_main!(entry::benches);
