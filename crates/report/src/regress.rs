//! The regression check: the newest commit's runs against a baseline commit's, per
//! (method, config hash, machine), using medians over repeats. Slower by more than the
//! threshold (trained tokens/s) or more memory by more than the threshold (peak RSS) is a
//! regression. [`crate::trend::regress_charts`] draws the compared groups' history.

use std::collections::BTreeMap;

use polars::prelude::*;

use crate::error::{polars as perr, Error, Result};
use crate::history::{commits_in_order, to_frame, HistoryRow};
use crate::tables::{format_number, number, text};

/// Settings of a check.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressOptions {
    /// Baseline commit (a prefix of a commit in the history); default: the newest commit before
    /// the current one.
    pub baseline: Option<String>,
    /// Relative change that counts as a regression (0.10 = 10 %).
    pub threshold: f64,
}

impl Default for RegressOptions {
    fn default() -> Self {
        Self {
            baseline: None,
            threshold: 0.10,
        }
    }
}

/// Medians of one group at one commit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupMedians {
    /// Rows (repeats).
    pub runs: usize,
    /// Median trained tokens/s.
    pub tokens_per_s: f64,
    /// Median peak RSS, MiB.
    pub peak_rss_mib: f64,
}

/// One (method, config hash, machine) group compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Method.
    pub method: String,
    /// Config hash.
    pub config_hash: String,
    /// Machine fingerprint.
    pub machine: String,
    /// Baseline medians.
    pub baseline: GroupMedians,
    /// Current medians.
    pub current: GroupMedians,
    /// `current / baseline - 1` of tokens/s (negative = slower).
    pub tokens_per_s_change: f64,
    /// `current / baseline - 1` of peak RSS (positive = more memory).
    pub peak_rss_change: f64,
    /// Slower than the threshold allows.
    pub slower: bool,
    /// More memory than the threshold allows.
    pub more_memory: bool,
}

/// The result of a check.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressReport {
    /// Newest commit in the history.
    pub current: String,
    /// The baseline commit, when there is one.
    pub baseline: Option<String>,
    /// Groups present at both commits.
    pub comparisons: Vec<Comparison>,
    /// Groups of the current commit without baseline runs.
    pub unmatched: Vec<String>,
    /// The threshold used.
    pub threshold: f64,
}

impl RegressReport {
    /// Whether any group regressed.
    pub fn regressed(&self) -> bool {
        self.comparisons.iter().any(|c| c.slower || c.more_memory)
    }

    /// A Markdown table of the comparisons plus notes.
    pub fn table(&self) -> String {
        let short = |c: &str| c.chars().take(10).collect::<String>();
        let mut out = format!(
            "current {} vs baseline {} (threshold {:.0} %)\n\n",
            short(&self.current),
            self.baseline.as_deref().map_or("none".into(), short),
            self.threshold * 100.0
        );
        out.push_str("| method | config | machine | runs (base/cur) | tokens/s base → cur | change | peak RSS MiB base → cur | change | verdict |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|\n");
        for c in &self.comparisons {
            let verdict = match (c.slower, c.more_memory) {
                (true, true) => "SLOWER, MORE MEMORY",
                (true, false) => "SLOWER",
                (false, true) => "MORE MEMORY",
                (false, false) => "ok",
            };
            let few = if c.baseline.runs < 3 || c.current.runs < 3 {
                " (<3 repeats)"
            } else {
                ""
            };
            out.push_str(&format!(
                "| {} | {} | {} | {}/{}{few} | {} → {} | {:+.1} % | {} → {} | {:+.1} % | {verdict} |\n",
                c.method,
                c.config_hash,
                c.machine,
                c.baseline.runs,
                c.current.runs,
                format_number(c.baseline.tokens_per_s),
                format_number(c.current.tokens_per_s),
                c.tokens_per_s_change * 100.0,
                format_number(c.baseline.peak_rss_mib),
                format_number(c.current.peak_rss_mib),
                c.peak_rss_change * 100.0,
            ));
        }
        for u in &self.unmatched {
            out.push_str(&format!("\nno baseline runs for {u}"));
        }
        out
    }
}

type Key = (String, String, String);

fn medians_at(df: &DataFrame, commit: &str) -> Result<BTreeMap<Key, GroupMedians>> {
    let g = df
        .clone()
        .lazy()
        .filter(col("commit").eq(lit(commit)))
        .group_by([col("method"), col("config_hash"), col("machine")])
        .agg([
            len().cast(DataType::Float64).alias("runs"),
            col("tokens_per_s").median().alias("tokens_per_s"),
            col("peak_rss_mib").median().alias("peak_rss_mib"),
        ])
        .collect()
        .map_err(perr(format!("medians of commit {commit}")))?;
    let mut out = BTreeMap::new();
    for i in 0..g.height() {
        let key = (
            text(&g, "method", i).unwrap_or_default(),
            text(&g, "config_hash", i).unwrap_or_default(),
            text(&g, "machine", i).unwrap_or_default(),
        );
        out.insert(
            key,
            GroupMedians {
                runs: number(&g, "runs", i).unwrap_or(0.0) as usize,
                tokens_per_s: number(&g, "tokens_per_s", i).unwrap_or(f64::NAN),
                peak_rss_mib: number(&g, "peak_rss_mib", i).unwrap_or(f64::NAN),
            },
        );
    }
    Ok(out)
}

/// Compares the newest commit's runs with the baseline's.
pub fn regress(rows: &[HistoryRow], options: &RegressOptions) -> Result<RegressReport> {
    let commits = commits_in_order(rows);
    let current = commits
        .last()
        .cloned()
        .ok_or_else(|| Error::Input("the history is empty: nothing to compare".into()))?;
    let baseline = match &options.baseline {
        Some(prefix) => {
            let matches: Vec<&String> = commits
                .iter()
                .filter(|c| c.starts_with(prefix.as_str()))
                .collect();
            match matches.as_slice() {
                [one] => Some((*one).clone()),
                [] => {
                    return Err(Error::Input(format!(
                        "baseline `{prefix}` has no runs in the history (commits: {})",
                        commits.join(", ")
                    )))
                }
                _ => return Err(Error::Input(format!("baseline `{prefix}` is ambiguous"))),
            }
        }
        None => commits.iter().rev().nth(1).cloned(),
    };
    let df = to_frame(rows)?;
    let cur = medians_at(&df, &current)?;
    let base = match &baseline {
        Some(b) => medians_at(&df, b)?,
        None => BTreeMap::new(),
    };
    let t = options.threshold;
    let mut comparisons = Vec::new();
    let mut unmatched = Vec::new();
    for (key, c) in cur {
        let Some(b) = base.get(&key) else {
            unmatched.push(format!("{} / {} / {}", key.0, key.1, key.2));
            continue;
        };
        let tps_change = c.tokens_per_s / b.tokens_per_s - 1.0;
        let rss_change = c.peak_rss_mib / b.peak_rss_mib - 1.0;
        comparisons.push(Comparison {
            method: key.0,
            config_hash: key.1,
            machine: key.2,
            baseline: *b,
            current: c,
            tokens_per_s_change: tps_change,
            peak_rss_change: rss_change,
            slower: tps_change < -t,
            more_memory: rss_change > t,
        });
    }
    Ok(RegressReport {
        current,
        baseline,
        comparisons,
        unmatched,
        threshold: t,
    })
}
