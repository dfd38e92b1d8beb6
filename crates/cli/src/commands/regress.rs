//! `tunebench regress [--baseline REF] [--threshold 0.10] [--reports-dir reports]
//! [--charts-dir DIR | --no-charts]`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use tb_report::fsio::git_rev_parse;
use tb_report::{read_history, regress, regress_charts, RegressOptions};

/// Arguments of `regress`.
#[derive(Args)]
pub struct RegressArgs {
    /// Baseline: a commit (prefix) in the history, or a git ref (`HEAD~1`, `main`); default:
    /// the newest commit before the current one.
    #[arg(long)]
    baseline: Option<String>,
    /// Relative slowdown (tokens/s) or memory growth (peak RSS) that counts as a regression.
    #[arg(long, default_value_t = 0.10)]
    threshold: f64,
    /// Where history.parquet lives.
    #[arg(long, default_value = "reports")]
    reports_dir: PathBuf,
    /// Where the history charts go: history_tokens_per_s.svg and history_peak_memory.svg (PNG
    /// beside each), median trained tokens/s and peak memory per commit (oldest first, short
    /// hashes), one line per method and machine, for the experiment configs the checked commit
    /// ran; rewritten on every run [default: REPORTS_DIR/trend].
    #[arg(long, conflicts_with = "no_charts")]
    charts_dir: Option<PathBuf>,
    /// Do not write the history charts.
    #[arg(long)]
    no_charts: bool,
}

/// Runs `regress`; fails (non-zero exit) on a regression.
pub fn run_regress(a: RegressArgs) -> Result<()> {
    let path = tb_report::history::parquet_path(&a.reports_dir);
    let rows = read_history(&path)?;
    let baseline = a.baseline.map(|b| {
        if rows.iter().any(|r| r.commit.starts_with(&b)) {
            b
        } else {
            git_rev_parse(Path::new("."), &b).unwrap_or(b)
        }
    });
    let report = regress(
        &rows,
        &RegressOptions {
            baseline,
            threshold: a.threshold,
        },
    )?;
    let mut o = std::io::stdout().lock();
    if !a.no_charts {
        let dir = a.charts_dir.unwrap_or_else(|| a.reports_dir.join("trend"));
        for chart in regress_charts(&rows, &report) {
            let files = tb_report::render(&chart, &dir)?;
            writeln!(o, "chart: {} (and .png)", files.svg.display())?;
        }
    }
    writeln!(o, "{}", report.table())?;
    if report.baseline.is_none() {
        writeln!(o, "only one commit in the history: nothing to compare yet")?;
    }
    if report.regressed() {
        let n = report
            .comparisons
            .iter()
            .filter(|c| c.slower || c.more_memory)
            .count();
        bail!("{n} regression(s) beyond {:.0} %", a.threshold * 100.0);
    }
    Ok(())
}
