//! History charts: median trained tokens/s and median peak memory per commit from
//! `reports/history.parquet`, one line per method and machine (and per experiment config when
//! the rows hold several, since configs are not comparable), commits oldest first along x,
//! each tick labelled with the commit's short hash. The report draws them for its runs'
//! configs, `tunebench regress` for the configs of the commit it checks.

use std::collections::{BTreeMap, BTreeSet};

use crate::charts::{CategorySeries, Chart, ChartKind};
use crate::fsio::median;
use crate::history::{commits_in_order, HistoryRow};
use crate::memory::{axis_label, MemoryKind};
use crate::regress::RegressReport;

/// Stem of the tokens/s history chart.
pub const TOKENS_STEM: &str = "history_tokens_per_s";
/// Stem of the peak-memory history chart.
pub const MEMORY_STEM: &str = "history_peak_memory";
/// Characters of a commit hash shown on the x axis.
const SHORT: usize = 7;

/// One line: `(method order, method, machine, config hash)`.
type LineKey = (u8, String, String, String);

fn method_order(method: &str) -> u8 {
    match method {
        "peft" => 0,
        "unsloth" => 1,
        "hf-peft" => 2,
        _ => 3,
    }
}

fn lines(rows: &[HistoryRow]) -> BTreeMap<LineKey, Vec<&HistoryRow>> {
    let mut out: BTreeMap<LineKey, Vec<&HistoryRow>> = BTreeMap::new();
    for r in rows {
        let key = (
            method_order(&r.method),
            r.method.clone(),
            r.machine.clone(),
            r.config_hash.clone(),
        );
        out.entry(key).or_default().push(r);
    }
    out
}

/// The legend name of a line: `method · machine`, plus the config when several are charted.
fn line_name(key: &LineKey, several_configs: bool) -> String {
    let (_, method, machine, config) = key;
    let machine = if machine.is_empty() {
        "machine not recorded"
    } else {
        machine
    };
    if several_configs {
        let config: String = config.chars().take(8).collect();
        format!("{method} · {machine} · config {config}")
    } else {
        format!("{method} · {machine}")
    }
}

/// The tokens/s and peak-memory charts of `rows` (none for an empty history). With a single
/// commit each line is one point and the titles say that a trend needs runs at two commits.
pub fn history_charts(rows: &[HistoryRow]) -> Vec<Chart> {
    if rows.is_empty() {
        return Vec::new();
    }
    let commits = commits_in_order(rows);
    let categories: Vec<String> = commits
        .iter()
        .map(|c| c.chars().take(SHORT).collect())
        .collect();
    let lines = lines(rows);
    let several_configs = rows
        .iter()
        .map(|r| &r.config_hash)
        .collect::<BTreeSet<_>>()
        .len()
        > 1;
    let series = |f: fn(&HistoryRow) -> f64| -> CategorySeries {
        lines
            .iter()
            .map(|(key, rs)| {
                let values = commits
                    .iter()
                    .map(|c| {
                        let v: Vec<f64> =
                            rs.iter().filter(|r| &r.commit == c).map(|r| f(r)).collect();
                        median(&v)
                    })
                    .collect();
                (line_name(key, several_configs), values)
            })
            .collect()
    };
    let note = if commits.len() < 2 {
        "(one commit: a trend needs ≥ 2)"
    } else {
        "(median of repeats)"
    };
    let kinds: BTreeSet<MemoryKind> = rows
        .iter()
        .map(|r| MemoryKind::of_backend(&r.backend))
        .collect();
    let x_label = "commit (oldest → newest)".to_string();
    vec![
        Chart {
            stem: TOKENS_STEM.into(),
            title: format!("Trained tokens/s per commit {note}"),
            x_label: x_label.clone(),
            y_label: "trained tokens per second (tok/s)".into(),
            kind: ChartKind::CategoryLines {
                categories: categories.clone(),
                series: series(|r| r.tokens_per_s),
            },
        },
        Chart {
            stem: MEMORY_STEM.into(),
            title: format!("Peak memory per commit {note}"),
            x_label,
            y_label: axis_label(&kinds),
            kind: ChartKind::CategoryLines {
                categories,
                series: series(|r| r.peak_rss_mib),
            },
        },
    ]
}

/// The rows whose config hash is one of `configs`.
pub fn rows_with_configs(rows: &[HistoryRow], configs: &BTreeSet<String>) -> Vec<HistoryRow> {
    rows.iter()
        .filter(|r| configs.contains(&r.config_hash))
        .cloned()
        .collect()
}

/// The history charts `regress` writes: every commit's rows of the configs the checked
/// (current) commit ran, so each compared group is shown with its past.
pub fn regress_charts(rows: &[HistoryRow], report: &RegressReport) -> Vec<Chart> {
    let configs: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.commit == report.current)
        .map(|r| r.config_hash.clone())
        .collect();
    history_charts(&rows_with_configs(rows, &configs))
}
