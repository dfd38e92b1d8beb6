//! tunebench reports.
//!
//! - [`runs`], [`evals`]: read run folders, HF+PEFT peer results and evaluation folders.
//! - [`tables`], [`claims`]: polars tables and the "claim → measured" table of DESIGN §1.
//! - [`charts`], [`markdown`], [`html`], [`report`]: plotters charts (PNG + SVG) and the
//!   `report.md` / self-contained `report.html` / `tables.csv` of `reports/<id>/`.
//! - [`answers`]: the "Answers side by side" section (question, reference and each method's
//!   answer with its sentence chrF).
//! - [`history`], [`regress`](mod@regress), [`trend`]: `reports/history.parquet` (+ CSV mirror),
//!   the regression check against a baseline commit, and the charts of tokens/s and peak memory
//!   over commits.
//! - [`memory`]: what a peak-memory figure measures (process RSS on the CPU; on a GPU backend
//!   the host process's RSS, device memory not being recorded).
//! - [`bench`](mod@bench): the benchmark driver (each method in its own process, interleaved repeats).
//! - [`peer_run`]: `train hf-peft`, a full run of the HF+PEFT peer in a tunebench run folder.
//!
//! Library code does not print; it logs through `tracing` and returns [`Error`].

pub mod answers;
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
pub mod memory;
pub mod peer_run;
pub mod regress;
pub mod report;
pub mod runs;
pub mod serving;
pub mod tables;
pub mod trend;

pub use bench::{run_bench, BenchOutcome, BenchPlan};
pub use charts::{render, Chart, ChartFiles, ChartKind, LossCurve};
pub use environment::Environment;
pub use error::{Error, Result};
pub use evals::{load_eval_dir, EvalResults};
pub use history::{append_history, read_history, HistoryRow};
pub use memory::MemoryKind;
pub use peer_run::{train_hf_peft, PeerRunResult, PeerTrainPlan, PeerWatcher};
pub use regress::{regress, RegressOptions, RegressReport};
pub use report::{write_report, ReportOutput};
pub use runs::{find_runs, load_peers, load_run, PeerResult, Run};
pub use tables::ReportInputs;
pub use trend::{history_charts, regress_charts};
