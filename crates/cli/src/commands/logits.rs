//! `tunebench logits --model DIR --ids 1,2,3 --out FILE.safetensors`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use clap::Args;
use tb_model::checkpoint::{encode_f32, StoredDtype};
use tb_model::checkpoint_writer::{write_safetensors, OwnedTensor};
use tb_model::{CpuBackend, LoadedModel};

/// Arguments of `logits`.
#[derive(Args)]
pub struct LogitsArgs {
    /// HF model directory or GGUF file.
    #[arg(long)]
    pub model: PathBuf,
    /// A PEFT LoRA adapter directory to apply.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Comma-separated token ids.
    #[arg(long, value_delimiter = ',', required = true)]
    pub ids: Vec<u32>,
    /// Output safetensors file (tensor `logits`, f32, `[n, vocab]`).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs one forward pass and writes the logits.
pub fn run_logits(args: LogitsArgs) -> Result<()> {
    let device = Default::default();
    let mut loaded = LoadedModel::<CpuBackend>::load(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    if let Some(dir) = &args.adapter {
        let adapter = tb_peft::Adapter::load(dir)
            .with_context(|| format!("reading adapter {}", dir.display()))?;
        loaded.model = adapter.apply(loaded.model, &device).with_context(|| {
            format!(
                "applying adapter {} to {}",
                dir.display(),
                args.model.display()
            )
        })?;
        tracing::info!(adapter = %dir.display(), modules = adapter.modules.len(), "adapter applied");
    }
    let vocab = loaded.config.vocab_size;
    if let Some(bad) = args.ids.iter().find(|&&id| id as usize >= vocab) {
        bail!("--ids: token id {bad} is outside the vocabulary ({vocab})");
    }
    let n = args.ids.len();
    let ids = Tensor::<CpuBackend, 1, Int>::from_data(
        TensorData::new(args.ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [n]),
        &device,
    )
    .reshape([1, n]);
    let logits: Vec<f32> = loaded
        .model
        .forward(ids)
        .into_data()
        .to_vec()
        .map_err(|e| anyhow::anyhow!("reading logits: {e:?}"))?;
    write_safetensors(
        &args.out,
        &[OwnedTensor {
            name: "logits".into(),
            dtype: StoredDtype::F32,
            shape: vec![n, vocab],
            bytes: encode_f32(&logits, StoredDtype::F32),
        }],
    )?;
    tracing::info!(out = %args.out.display(), tokens = n, vocab, "wrote logits");
    Ok(())
}
