//! Fused ops vs their plain-tensor references, forward + backward on `Autodiff<Flex>`, at
//! SmolLM2-135M sizes (hidden 576, intermediate 1536, 9 heads / 3 kv heads of 64, LoRA r 16,
//! 1024 tokens as 4 × 256). Run alone: `cargo bench -p tb-unsloth --bench fused_ops`.

use burn::backend::{Autodiff, Flex};
use std::time::Duration;

use burn::prelude::*;
use criterion::{criterion_main, BenchmarkId, Criterion};
use tb_unsloth::{ops, reference, BaseWeight, LoraWeights, Precision};

type Ad = Autodiff<Flex>;

const TOKENS: usize = 1024;
const HIDDEN: usize = 576;
const INTER: usize = 1536;
const RANK: usize = 16;
const VOCAB: usize = 49_152;
const BATCH: usize = 4;
const SEQ: usize = 256;
const HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HEAD_DIM: usize = 64;

fn rand<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<Ad, D> {
    let n: usize = shape.iter().product();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let values: Vec<f32> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn lora(d_in: usize, d_out: usize, seed: u64) -> LoraWeights<Tensor<Ad, 2>> {
    LoraWeights {
        w: BaseWeight::Dense(rand([d_in, d_out], seed)),
        a: rand([d_in, RANK], seed + 1).require_grad(),
        b: rand([RANK, d_out], seed + 2).require_grad(),
        scale: 2.0,
    }
}

/// Runs forward + backward and forces the gradients.
fn step(loss: Tensor<Ad, 1>) {
    let grads = loss.backward();
    drop(grads);
}

/// Keeps the heavy groups short: 10 samples, 1 s warm-up, 4 s measurement.
fn quick(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
}

fn bench_rms_norm(c: &mut Criterion) {
    let x = rand([TOKENS, HIDDEN], 1).require_grad();
    let w = rand([HIDDEN], 2).require_grad();
    let mut g = c.benchmark_group("rms_norm");
    g.bench_function(BenchmarkId::new("fused", TOKENS), |b| {
        b.iter(|| step(ops::rms_norm(x.clone(), w.clone(), 1e-5).unwrap().sum()))
    });
    g.bench_function(BenchmarkId::new("reference", TOKENS), |b| {
        b.iter(|| step(reference::rms_norm(x.clone(), w.clone(), 1e-5).sum()))
    });
    g.finish();
}

fn bench_swiglu(c: &mut Criterion) {
    let gate = rand([TOKENS, INTER], 3).require_grad();
    let up = rand([TOKENS, INTER], 4).require_grad();
    let mut g = c.benchmark_group("swiglu");
    g.bench_function("fused", |b| {
        b.iter(|| step(ops::swiglu(gate.clone(), up.clone()).unwrap().sum()))
    });
    g.bench_function("reference", |b| {
        b.iter(|| step(reference::swiglu(gate.clone(), up.clone()).sum()))
    });
    g.finish();
}

fn bench_rope(c: &mut Criterion) {
    let q = rand([BATCH, SEQ, HEADS, HEAD_DIM], 5).require_grad();
    let k = rand([BATCH, SEQ, KV_HEADS, HEAD_DIM], 6).require_grad();
    let pos: Vec<i64> = (0..BATCH * SEQ).map(|i| (i % SEQ) as i64).collect();
    let positions =
        Tensor::<Ad, 2, Int>::from_data(TensorData::new(pos, [BATCH, SEQ]), &Default::default());
    let (cos, sin) = ops::rope_cos_sin(positions, HEAD_DIM, 100_000.0).unwrap();
    let mut g = c.benchmark_group("rope_qk");
    g.bench_function("fused", |b| {
        b.iter(|| {
            let (q, k) = ops::rope_qk(q.clone(), k.clone(), cos.clone(), sin.clone()).unwrap();
            step(q.sum() + k.sum())
        })
    });
    g.bench_function("reference", |b| {
        b.iter(|| {
            let q = reference::rope(q.clone(), cos.clone(), sin.clone());
            let k = reference::rope(k.clone(), cos.clone(), sin.clone());
            step(q.sum() + k.sum())
        })
    });
    g.finish();
}

fn bench_lora(c: &mut Criterion) {
    let x = rand([TOKENS, HIDDEN], 7).require_grad();
    let proj = lora(HIDDEN, HIDDEN, 10);
    let mlp = [
        lora(HIDDEN, INTER, 20),
        lora(HIDDEN, INTER, 30),
        lora(INTER, HIDDEN, 40),
    ];
    let mut g = c.benchmark_group("lora");
    quick(&mut g);
    g.bench_function("linear/fused", |b| {
        b.iter(|| step(ops::lora_linear(x.clone(), proj.clone()).unwrap().sum()))
    });
    g.bench_function("linear/reference", |b| {
        b.iter(|| step(reference::lora_linear(x.clone(), &proj).sum()))
    });
    g.bench_function("mlp/fused", |b| {
        b.iter(|| step(ops::lora_mlp(x.clone(), mlp.clone()).unwrap().sum()))
    });
    g.bench_function("mlp/reference", |b| {
        b.iter(|| step(reference::lora_mlp(x.clone(), &mlp).sum()))
    });
    g.finish();
}

fn bench_attention(c: &mut Criterion) {
    let q = rand([BATCH, SEQ, HEADS, HEAD_DIM], 50).require_grad();
    let k = rand([BATCH, SEQ, KV_HEADS, HEAD_DIM], 51).require_grad();
    let v = rand([BATCH, SEQ, KV_HEADS, HEAD_DIM], 52).require_grad();
    // Two packed examples per row.
    let seg: Vec<i64> = (0..BATCH * SEQ)
        .map(|i| ((i % SEQ) >= SEQ / 3) as i64)
        .collect();
    let seg =
        Tensor::<Ad, 2, Int>::from_data(TensorData::new(seg, [BATCH, SEQ]), &Default::default());
    let scale = 1.0 / (HEAD_DIM as f32).sqrt();
    let mut g = c.benchmark_group("attention");
    quick(&mut g);
    g.bench_function("fused", |b| {
        b.iter(|| {
            step(
                ops::attention(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    seg.clone(),
                    None,
                    Precision::F32,
                )
                .unwrap()
                .sum(),
            )
        })
    });
    g.bench_function("reference", |b| {
        b.iter(|| {
            step(reference::attention(q.clone(), k.clone(), v.clone(), seg.clone(), scale).sum())
        })
    });
    g.finish();
}

fn bench_cross_entropy(c: &mut Criterion) {
    let h = rand([TOKENS, HIDDEN], 60).require_grad();
    let w = rand([HIDDEN, VOCAB], 61);
    let t: Vec<i64> = (0..TOKENS).map(|i| ((i * 7919) % VOCAB) as i64).collect();
    let t = Tensor::<Ad, 1, Int>::from_data(TensorData::new(t, [TOKENS]), &Default::default());
    let mut g = c.benchmark_group("linear_cross_entropy");
    quick(&mut g);
    g.bench_function("fused_chunk256", |b| {
        b.iter(|| step(ops::linear_cross_entropy(h.clone(), w.clone(), t.clone(), 256).unwrap()))
    });
    g.bench_function("reference", |b| {
        b.iter(|| {
            step(reference::linear_cross_entropy(
                h.clone(),
                w.clone(),
                t.clone(),
            ))
        })
    });
    g.finish();
}

/// Criterion's generated entry points (kept in a private module: they need no docs).
mod entry {
    criterion::criterion_group!(
        benches,
        super::bench_rms_norm,
        super::bench_swiglu,
        super::bench_rope,
        super::bench_lora,
        super::bench_attention,
        super::bench_cross_entropy
    );
}
criterion_main!(entry::benches);
