//! `tunebench bench train --config FILE --methods peft,unsloth,hf-peft --repeats 3 [--steps N]`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tb_report::bench::BenchPlan;
use tb_report::fsio::{git_commit, utc_now_rfc3339, utc_stamp};

/// Arguments of `bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Train each method in its own process, interleaved, and compare medians.
    Train(TrainBenchArgs),
}

#[derive(Args)]
struct TrainBenchArgs {
    /// Experiment file.
    #[arg(long)]
    config: PathBuf,
    /// Methods, comma-separated, in interleaving order (`hf-peft` is the HF+PEFT peer).
    #[arg(long, value_delimiter = ',', default_value = "peft,unsloth,hf-peft")]
    methods: Vec<String>,
    /// Runs per method.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Optimizer steps per run (default: the config's; the peer's own default is 10).
    #[arg(long)]
    steps: Option<usize>,
    /// Where the bench folder and history go.
    #[arg(long, default_value = "reports")]
    reports_dir: PathBuf,
    /// Python interpreter for the peer.
    #[arg(long, default_value = "python3")]
    python: String,
    /// The HF+PEFT peer script.
    #[arg(long, default_value = "benches/peers/hf_peft.py")]
    peer_script: PathBuf,
    /// Do not append to REPORTS_DIR/history.parquet.
    #[arg(long)]
    no_history: bool,
}

/// Runs `bench`.
pub fn run_bench(a: BenchArgs) -> Result<()> {
    let BenchCommand::Train(a) = a.command;
    let plan = BenchPlan {
        config: a.config.clone(),
        methods: a.methods.clone(),
        repeats: a.repeats,
        steps: a.steps,
        tunebench: std::env::current_exe().context("locating the tunebench executable")?,
        python: a.python.clone(),
        peer_script: a.peer_script.clone(),
        out_dir: a.reports_dir.join(format!("bench-{}", utc_stamp())),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "bench folder: {}", plan.out_dir.display())?;
    let outcome = tb_report::run_bench(&plan, &mut |at| {
        let line = if at.ok {
            format!(
                "{} #{}: {:.1} tokens/s, peak RSS {:.0} MiB ({:.0} s)",
                at.method,
                at.repeat,
                at.tokens_per_s.unwrap_or(f64::NAN),
                at.peak_rss_mib.unwrap_or(f64::NAN),
                at.process_s
            )
        } else {
            format!(
                "{} #{}: FAILED: {}",
                at.method,
                at.repeat,
                at.error.as_deref().unwrap_or("?")
            )
        };
        let _ = writeln!(std::io::stdout(), "{line}");
    })?;
    if !a.no_history {
        let commit = git_commit(std::path::Path::new(".")).unwrap_or_else(|| "unknown".into());
        let rows = outcome.history_rows(&commit, &utc_now_rfc3339());
        let done = tb_report::append_history(&a.reports_dir, &rows)?;
        writeln!(
            out,
            "history: {} rows added ({} total)",
            done.added, done.total
        )?;
    }
    writeln!(out, "\n{}", outcome.table())?;
    writeln!(
        out,
        "\nreport: tunebench report --bench {}",
        plan.out_dir.display()
    )?;
    let failed = outcome.failed();
    if failed > 0 {
        bail!("{failed} of {} runs failed", outcome.attempts.len());
    }
    Ok(())
}
