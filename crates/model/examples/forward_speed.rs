//! Measures tb-model's CPU speed on a GGUF or HF model: a batched forward (4 × 256 tokens, the
//! training shape) and batch-1 greedy decoding with the KV cache.
//!
//! usage: cargo run --release -p tb-model --example forward_speed -- MODEL [ROUNDS]
//! Compare with llama.cpp on the same file: `node tools/oracles/llama_speed.mjs MODEL.gguf`.
//! Never run beside a build or another benchmark.

#![expect(clippy::print_stdout, reason = "a measuring tool prints its result")]

use std::time::Instant;

use burn::prelude::*;
use tb_model::{generate, CpuBackend, GenerationConfig, LoadedModel, Sampling};

type B = CpuBackend;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: forward_speed MODEL [ROUNDS]")?;
    let rounds: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(3);
    let device = Default::default();
    let loaded = LoadedModel::<B>::load(&path, &device)?;
    let vocab = loaded.config.vocab_size as i64;
    let (batch, seq) = (4usize, 256usize);
    let ids: Vec<i64> = (0..batch * seq)
        .map(|i| 100 + (i as i64 * 7919 + 13) % 1000_i64.min(vocab - 100))
        .collect();
    let input = || {
        Tensor::<B, 1, Int>::from_data(TensorData::new(ids.clone(), [batch * seq]), &device)
            .reshape([batch, seq])
    };
    // warm-up
    let _ = loaded.model.forward(input()).into_data();
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        let _ = loaded.model.forward(input()).into_data();
        best = best.min(t.elapsed().as_secs_f64());
    }
    let prompt: Vec<u32> = ids[..32].iter().map(|&i| i as u32).collect();
    let config = GenerationConfig {
        max_new_tokens: 64,
        sampling: Sampling::Greedy,
        stop_ids: vec![],
    };
    let mut decode_best = 0.0f64;
    for _ in 0..rounds {
        let t = Instant::now();
        let mut first = None;
        let out = generate(&loaded.model, &prompt, &config, &device, |_| {
            first.get_or_insert_with(Instant::now);
        })?;
        let start = first.unwrap_or(t);
        let rate = (out.tokens.len() - 1) as f64 / start.elapsed().as_secs_f64();
        decode_best = decode_best.max(rate);
    }
    println!(
        "forward {batch}x{seq}: {:.1} tokens/s (best of {rounds}: {best:.3} s); decode batch 1: {decode_best:.1} tokens/s",
        (batch * seq) as f64 / best
    );
    Ok(())
}
