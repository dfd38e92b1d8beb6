//! tunebench reports.
//!
//! - [`runs`], [`evals`]: read run folders, HF+PEFT peer results and evaluation folders.
//! - [`tables`], [`claims`]: polars tables and the "claim → measured" table of DESIGN §1.
//! - [`charts`], [`markdown`], [`html`], [`report`]: plotters charts (PNG + SVG) and the
//!   `report.md` / self-contained `report.html` / `tables.csv` of `reports/<id>/`.
//! - [`history`], [`regress`](mod@regress): `reports/history.parquet` (+ CSV mirror) and the regression
//!   check against a baseline commit.
//! - [`bench`](mod@bench): the benchmark driver (each method in its own process, interleaved repeats).
//!
//! Library code does not print; it logs through `tracing` and returns [`Error`].

pub mod bench;
pub mod charts;
pub mod claims;
pub mod environment;
pub mod error;
pub mod evals;
pub mod fsio;
pub mod history;
pub mod html;
pub mod markdown;
pub mod regress;
pub mod report;
pub mod runs;
pub mod tables;

pub use bench::{run_bench, BenchOutcome, BenchPlan};
pub use charts::{render, Chart, ChartFiles, ChartKind};
pub use environment::Environment;
pub use error::{Error, Result};
pub use evals::{load_eval_dir, EvalResults};
pub use history::{append_history, read_history, HistoryRow};
pub use regress::{regress, trend_charts, RegressOptions, RegressReport};
pub use report::{write_report, ReportOutput};
pub use runs::{find_runs, load_peers, load_run, PeerResult, Run};
pub use tables::ReportInputs;
