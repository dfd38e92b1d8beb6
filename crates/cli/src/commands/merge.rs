//! `tunebench merge --base DIR --adapter DIR --out DIR`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

/// Arguments of `merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// Base HF model folder (the one the adapter was trained on).
    #[arg(long)]
    base: PathBuf,
    /// PEFT adapter folder (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    adapter: PathBuf,
    /// Output folder for the merged HF checkpoint (must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
}

/// Runs `merge`.
pub fn run_merge(args: MergeArgs) -> Result<()> {
    let report =
        tb_peft::merge_into_dir(&args.base, &args.adapter, &args.out).with_context(|| {
            format!(
                "merging {} into {}",
                args.adapter.display(),
                args.base.display()
            )
        })?;
    if let Some(run) = tb_train::serving::run_folder_of(&args.adapter) {
        tb_train::serving::record_step(
            &run,
            tb_train::ServingStep {
                command: "tunebench merge".into(),
                seconds: report.seconds,
                ggufs: Vec::new(),
                modelfile: false,
            },
        )
        .with_context(|| format!("recording the merge in {}", run.display()))?;
    }
    println!(
        "merged {} projections, copied {} tensors, dtype {}, max |ΔW| {:.3e}, {:.1} s -> {}",
        report.merged_tensors,
        report.copied_tensors,
        report.dtype,
        report.max_abs_delta,
        report.seconds,
        args.out.display()
    );
    Ok(())
}
