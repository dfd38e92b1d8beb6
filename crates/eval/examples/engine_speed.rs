//! Embedded-engine speed on a GGUF, on the same workload as `tools/oracles/llama_speed.mjs`:
//! prompt processing of 4 sequences of 256 tokens (batch 1 here: one sequence after another),
//! and 64 greedy tokens after a 32-token prompt. Prints the best of ROUNDS.
//!
//! usage: cargo run -p tb-eval --example engine_speed -- MODEL.gguf [ROUNDS] [THREADS] [scalar]
#![expect(clippy::print_stdout, reason = "an example that reports a measurement")]

use std::time::Instant;

use tb_eval::engine::{EngineModel, Kernel};
use tb_model::generation::argmax;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or("usage: engine_speed MODEL.gguf [ROUNDS] [THREADS] [scalar]")?;
    let rounds: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let threads: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(2);
    let kernel = if args.get(4).is_some_and(|s| s == "scalar") {
        Kernel::Scalar
    } else {
        Kernel::Auto
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    let model = EngineModel::open(path)?;
    let ids: Vec<u32> = (0..1024u32)
        .map(|i| 100 + ((i * 7919 + 13) % 1000))
        .collect();
    let mut best_prompt = f64::INFINITY;
    let mut best_decode = 0f64;
    for _ in 0..rounds {
        let t0 = Instant::now();
        for k in 0..4 {
            let mut cache = model.new_cache();
            model.forward(&ids[k * 256..(k + 1) * 256], &mut cache, &[255], kernel)?;
        }
        best_prompt = best_prompt.min(t0.elapsed().as_secs_f64());

        let mut cache = model.new_cache();
        let mut logits = model.forward(&ids[..32], &mut cache, &[31], kernel)?;
        let mut next = argmax(&logits);
        let t1 = Instant::now();
        for _ in 1..64 {
            logits = model.forward(&[next], &mut cache, &[0], kernel)?;
            next = argmax(&logits);
        }
        best_decode = best_decode.max(63.0 / t1.elapsed().as_secs_f64());
    }
    println!(
        "embedded engine ({kernel:?}) {threads} threads: prompt 4x256: {:.1} tokens/s (best {best_prompt:.3} s); decode batch 1: {best_decode:.1} tokens/s",
        1024.0 / best_prompt
    );
    Ok(())
}
