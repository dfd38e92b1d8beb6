//! `tunebench report [--runs-dir runs | --run DIR ...] [--peers FILE ...] [--eval DIR ...]
//! [--bench DIR] [--id ID | --out DIR] [--history]`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use tb_report::fsio::{git_commit, utc_now_rfc3339, utc_stamp};
use tb_report::{Environment, HistoryRow, ReportInputs};

/// Arguments of `report`.
#[derive(Args)]
pub struct ReportArgs {
    /// Folder of run folders (every `<utc>-<method>/` with a summary.json is read), used when
    /// no --run is given.
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// A run folder (repeat for several); replaces --runs-dir.
    #[arg(long = "run")]
    runs: Vec<PathBuf>,
    /// HF+PEFT peer results, one JSON object per line (repeat for several files).
    #[arg(long)]
    peers: Vec<PathBuf>,
    /// An evaluation folder (summary.json/results.jsonl and/or damage.json; repeatable).
    #[arg(long = "eval")]
    evals: Vec<PathBuf>,
    /// A bench folder (`reports/bench-<utc>/`): its runs and peer results.
    #[arg(long)]
    bench: Option<PathBuf>,
    /// Report id: the report goes to REPORTS_DIR/ID/ (default: a UTC timestamp).
    #[arg(long)]
    id: Option<String>,
    /// Where reports and the history live. The report's History section charts tokens/s and
    /// peak memory over commits from REPORTS_DIR/history.parquet (the rows of its runs'
    /// experiment configs, this report's runs included with --history).
    #[arg(long, default_value = "reports")]
    reports_dir: PathBuf,
    /// Write the report here instead of REPORTS_DIR/ID/.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also append the runs to REPORTS_DIR/history.parquet (a run already there is skipped).
    #[arg(long)]
    history: bool,
}

fn bench_inputs(dir: &Path, inputs: &mut ReportInputs) -> Result<()> {
    let bench = tb_report::bench::BenchOutcome::load(dir)?;
    for a in bench.attempts.iter().filter(|a| a.ok) {
        if let Some(run) = &a.run_dir {
            inputs.runs.push(tb_report::load_run(run)?);
        }
    }
    let peers = dir.join("peers.jsonl");
    if peers.exists() {
        inputs.peers.extend(tb_report::load_peers(&peers)?);
    }
    Ok(())
}

/// The history the report charts: REPORTS_DIR/history.parquet plus `new` rows not recorded
/// yet. An unreadable file only costs the charts (a warning); `--history` still fails on it.
fn charted_history(reports_dir: &Path, new: &[HistoryRow]) -> Vec<HistoryRow> {
    let path = tb_report::history::parquet_path(reports_dir);
    let mut rows = tb_report::read_history(&path).unwrap_or_else(|e| {
        tracing::warn!("no history charts: {e}");
        Vec::new()
    });
    for r in new {
        if !rows.iter().any(|old| old.run_id == r.run_id) {
            rows.push(r.clone());
        }
    }
    rows
}

/// Runs `report`.
pub fn run_report(a: ReportArgs) -> Result<()> {
    let mut inputs = ReportInputs::default();
    if let Some(b) = &a.bench {
        bench_inputs(b, &mut inputs)?;
    } else if a.runs.is_empty() {
        if a.runs_dir.exists() {
            inputs.runs = tb_report::find_runs(&a.runs_dir)?;
        } else {
            tracing::warn!("{} does not exist: no training runs", a.runs_dir.display());
        }
    }
    for dir in &a.runs {
        inputs.runs.push(tb_report::load_run(dir)?);
    }
    for p in &a.peers {
        inputs.peers.extend(tb_report::load_peers(p)?);
    }
    for dir in &a.evals {
        let e = tb_report::load_eval_dir(dir)?;
        inputs.quality.extend(e.quality);
        inputs.speed.extend(e.speed);
        inputs.engine_notes.extend(e.engine_notes);
    }
    if inputs.runs.is_empty() && inputs.peers.is_empty() && inputs.quality.is_empty() {
        anyhow::bail!("nothing to report: no runs, peer results or evaluations were found");
    }
    let commit = git_commit(Path::new("."));
    let env = Environment::collect(
        &inputs,
        vec![("tunebench".into(), env!("CARGO_PKG_VERSION").into())],
        commit.clone(),
        utc_now_rfc3339(),
    );
    let out = match (&a.out, &a.id) {
        (Some(o), _) => o.clone(),
        (None, Some(id)) => a.reports_dir.join(id),
        (None, None) => a.reports_dir.join(utc_stamp()),
    };
    let rows: Vec<HistoryRow> = if a.history {
        let now = utc_now_rfc3339();
        let commit = commit.unwrap_or_else(|| "unknown".into());
        inputs
            .runs
            .iter()
            .map(|r| HistoryRow::from_summary(&r.summary, &commit, &now))
            .collect()
    } else {
        Vec::new()
    };
    inputs.history = charted_history(&a.reports_dir, &rows);
    let written = tb_report::write_report(&inputs, &env, &out)?;
    if a.history {
        let done = tb_report::append_history(&a.reports_dir, &rows)?;
        tracing::info!(
            added = done.added,
            skipped = done.skipped,
            total = done.total,
            "history updated"
        );
    }
    let mut o = std::io::stdout().lock();
    writeln!(o, "report:  {}", written.html.display())?;
    writeln!(o, "         {}", written.markdown.display())?;
    writeln!(o, "         {}", written.csv.display())?;
    writeln!(o, "charts:  {}", written.charts.len())?;
    for c in &written.claims {
        writeln!(o, "  {:<52} {:<10} {}", c.measure, c.value, c.detail)?;
    }
    Ok(())
}
