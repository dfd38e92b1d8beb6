//! `tunebench quantize IN.gguf OUT.gguf --quant q4_k_m`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tb_gguf::{quantize_gguf, QuantMix};

/// Arguments of `quantize`.
#[derive(Args)]
pub struct QuantizeArgs {
    /// Input GGUF (F32, F16 or BF16 tensors).
    pub input: PathBuf,
    /// Output GGUF.
    pub output: PathBuf,
    /// Quantization: q4_k_m, q4_0, q8_0, f16, bf16 or f32.
    #[arg(long, default_value = "q4_k_m", value_parser = super::export::parse_mix)]
    pub quant: QuantMix,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Re-quantizes a GGUF like `llama-quantize`.
pub fn run_quantize(args: QuantizeArgs) -> Result<()> {
    let start = std::time::Instant::now();
    let r =
        quantize_gguf(&args.input, &args.output, args.quant, args.threads).with_context(|| {
            format!(
                "quantizing {} to {} ({})",
                args.input.display(),
                args.output.display(),
                args.quant
            )
        })?;
    tracing::info!(
        out = %args.output.display(),
        tensors = r.tensors.len(),
        bytes_in = r.bytes_in,
        bytes_out = r.bytes_out,
        seconds = format!("{:.2}", start.elapsed().as_secs_f64()),
        "quantized to {}",
        args.quant
    );
    Ok(())
}
