//! `tunebench export gguf|lora-gguf`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use tb_gguf::{ExportOptions, LoraTensorType, QuantMix};
use tb_model::gguf_export::export_hf_dir;
use tb_train::export_lora_adapter;

/// Arguments of `export`.
#[derive(Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    command: ExportCommand,
}

#[derive(Subcommand)]
enum ExportCommand {
    /// Convert an HF Llama/Mistral directory to a GGUF (llama.cpp / Ollama).
    Gguf(ExportGgufArgs),
    /// Convert a PEFT LoRA adapter to a llama.cpp LoRA GGUF (Ollama `ADAPTER`).
    LoraGguf(ExportLoraArgs),
}

/// Arguments of `export gguf`.
#[derive(Args)]
pub struct ExportGgufArgs {
    /// The HF model directory (config.json, safetensors, tokenizer files).
    #[arg(long)]
    pub model: PathBuf,
    /// Quantization: q4_k_m, q4_0, q8_0, f16, bf16 or f32.
    #[arg(long, default_value = "q4_k_m", value_parser = parse_mix)]
    pub quant: QuantMix,
    /// Output file (default: `<model dir>-<QUANT>.gguf` beside the model directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Arguments of `export lora-gguf`.
#[derive(Args)]
pub struct ExportLoraArgs {
    /// The PEFT adapter directory (adapter_config.json, adapter_model.safetensors).
    #[arg(long)]
    pub adapter: PathBuf,
    /// The HF base model directory the adapter was trained on.
    #[arg(long)]
    pub base: PathBuf,
    /// Output file (default: `<adapter dir>-lora.gguf` beside the adapter directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Type of the A and B tensors: f16, bf16 or f32 (f16 is what Ollama's own adapter
    /// conversion writes; f32 keeps the trained values exactly).
    #[arg(long, default_value = "f16", value_parser = parse_lora_type)]
    pub outtype: LoraTensorType,
}

/// Parses a quantization name (case-insensitive).
pub(crate) fn parse_mix(s: &str) -> Result<QuantMix, String> {
    s.parse().map_err(|e: tb_gguf::Error| e.to_string())
}

/// Parses a LoRA tensor type name (case-insensitive).
fn parse_lora_type(s: &str) -> Result<LoraTensorType, String> {
    s.parse().map_err(|e: tb_gguf::Error| e.to_string())
}

fn beside(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{} not found", dir.display()))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    Ok(dir
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("{name}-{suffix}.gguf")))
}

/// Runs `export`.
pub fn run_export(args: ExportArgs) -> Result<()> {
    match args.command {
        ExportCommand::Gguf(a) => run_export_gguf(a),
        ExportCommand::LoraGguf(a) => run_export_lora(a),
    }
}

/// Exports an HF directory to GGUF.
pub fn run_export_gguf(args: ExportGgufArgs) -> Result<()> {
    let out = match args.out {
        Some(o) => o,
        None => beside(&args.model, args.quant.name())?,
    };
    let start = std::time::Instant::now();
    let opts = ExportOptions {
        mix: args.quant,
        threads: args.threads,
    };
    let report = export_hf_dir(&args.model, &out, opts).with_context(|| {
        format!(
            "exporting {} to {} ({})",
            args.model.display(),
            out.display(),
            args.quant
        )
    })?;
    tracing::info!(
        out = %out.display(),
        tensors = report.tensors.len(),
        bytes = report.bytes_out,
        tokenizer = %report.tokenizer_model,
        pre = %report.tokenizer_pre,
        seconds = format!("{:.2}", start.elapsed().as_secs_f64()),
        "exported {}",
        args.quant
    );
    if let Some(run) = tb_train::serving::run_folder_of(&args.model) {
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        tb_train::serving::record_step(
            &run,
            tb_train::ServingStep {
                command: format!("tunebench export gguf --quant {}", args.quant.name()),
                seconds: start.elapsed().as_secs_f64(),
                ggufs: vec![(name, report.bytes_out)],
                modelfile: false,
            },
        )
        .with_context(|| format!("recording the export in {}", run.display()))?;
    }
    println!("{}", out.display());
    Ok(())
}

/// Exports a PEFT adapter to a llama.cpp LoRA GGUF.
pub fn run_export_lora(args: ExportLoraArgs) -> Result<()> {
    let out = match args.out {
        Some(o) => o,
        None => beside(&args.adapter, "lora")?,
    };
    let r =
        export_lora_adapter(&args.adapter, &args.base, &out, args.outtype).with_context(|| {
            format!(
                "exporting adapter {} (base {}) to {} ({})",
                args.adapter.display(),
                args.base.display(),
                out.display(),
                args.outtype
            )
        })?;
    tracing::info!(
        out = %out.display(),
        r = r.r,
        lora_alpha = r.lora_alpha,
        gguf_alpha = r.gguf_alpha,
        targets = r.targets,
        rescaled = r.rescaled,
        bytes = r.bytes_out,
        outtype = %args.outtype,
        "exported LoRA adapter"
    );
    println!("{}", out.display());
    Ok(())
}
