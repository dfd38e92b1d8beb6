//! `tunebench import-gguf FILE --out DIR`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use tb_model::import::import_gguf;

/// Arguments of `import-gguf`.
#[derive(Args)]
pub struct ImportGgufArgs {
    /// The llama-arch GGUF file.
    pub file: PathBuf,
    /// The new HF model directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// Imports the GGUF.
pub fn run_import_gguf(args: ImportGgufArgs) -> Result<()> {
    let s = import_gguf(&args.file, &args.out)
        .with_context(|| format!("importing {}", args.file.display()))?;
    tracing::info!(
        dir = %args.out.display(),
        tensors = s.tensors,
        parameters = s.parameters,
        vocab = s.vocab,
        "imported"
    );
    Ok(())
}
