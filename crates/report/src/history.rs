//! Run history: `reports/history.parquet` (the record) and `reports/history.csv` (a mirror for
//! people and diffs), one row per run. Appending reads the old rows, adds the new ones (a
//! `run_id` already present is not added twice) and rewrites both files atomically (temporary
//! sibling + rename). A history file that cannot be read is an error naming it, and is left as
//! it was.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use tb_gguf::fsio::{write_atomic, write_atomic_with};
use tb_train::RunSummary;

use crate::error::{io, polars as perr, Error, Result};

/// One history row.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// Source commit (`git rev-parse HEAD`), or `unknown`.
    pub commit: String,
    /// When the row was recorded (UTC, RFC 3339); orders commits.
    pub timestamp: String,
    /// [`tb_train::Machine::fingerprint`] of the machine.
    pub machine: String,
    /// Hash of the resolved experiment config.
    pub config_hash: String,
    /// `peft`, `unsloth`, `hf-peft`.
    pub method: String,
    /// Run folder name (or the bench driver's id for peer results).
    pub run_id: String,
    /// Trained (real) tokens per second.
    pub tokens_per_s: f64,
    /// Peak RSS, MiB.
    pub peak_rss_mib: f64,
    /// Final training loss.
    pub final_loss: Option<f64>,
    /// The run's backend (`flex`, `cuda+nf4`, `torch-cpu` for the HF+PEFT peer): tells what
    /// `peak_rss_mib` measured ([`crate::memory::MemoryKind`]). Empty in rows written before it
    /// was recorded.
    pub backend: String,
}

impl HistoryRow {
    /// The row of a finished run.
    pub fn from_summary(s: &RunSummary, commit: &str, timestamp: &str) -> Self {
        Self {
            commit: commit.to_string(),
            timestamp: timestamp.to_string(),
            machine: s.machine.fingerprint(),
            config_hash: s.config_hash.clone(),
            method: s.method.clone(),
            run_id: s.run_id.clone(),
            tokens_per_s: s.tokens_per_s,
            peak_rss_mib: s.peak_rss_mib,
            final_loss: Some(s.final_train_loss),
            backend: s.backend.clone(),
        }
    }
}

/// `history.parquet` in `reports_dir`.
pub fn parquet_path(reports_dir: &Path) -> PathBuf {
    reports_dir.join("history.parquet")
}

/// Rows as a DataFrame (column order as in [`HistoryRow`]; `backend`, added later, is last).
pub fn to_frame(rows: &[HistoryRow]) -> Result<DataFrame> {
    let s = |f: fn(&HistoryRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    df!(
        "commit" => s(|r| r.commit.clone()),
        "timestamp" => s(|r| r.timestamp.clone()),
        "machine" => s(|r| r.machine.clone()),
        "config_hash" => s(|r| r.config_hash.clone()),
        "method" => s(|r| r.method.clone()),
        "run_id" => s(|r| r.run_id.clone()),
        "tokens_per_s" => rows.iter().map(|r| r.tokens_per_s).collect::<Vec<_>>(),
        "peak_rss_mib" => rows.iter().map(|r| r.peak_rss_mib).collect::<Vec<_>>(),
        "final_loss" => rows.iter().map(|r| r.final_loss).collect::<Vec<_>>(),
        "backend" => s(|r| r.backend.clone()),
    )
    .map_err(perr("building the history table"))
}

fn from_frame(df: &DataFrame, path: &Path) -> Result<Vec<HistoryRow>> {
    let bad = |message: String| Error::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let strings = |name: &str| -> Result<Vec<String>> {
        let c = df
            .column(name)
            .map_err(|_| bad(format!("no `{name}` column: not a tunebench history file")))?;
        let c = c.str().map_err(|e| bad(format!("column `{name}`: {e}")))?;
        Ok(c.into_iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    };
    let floats = |name: &str| -> Result<Vec<Option<f64>>> {
        let c = df
            .column(name)
            .map_err(|_| bad(format!("no `{name}` column: not a tunebench history file")))?;
        let c = c
            .cast(&DataType::Float64)
            .map_err(|e| bad(format!("column `{name}`: {e}")))?;
        let c = c.f64().map_err(|e| bad(format!("column `{name}`: {e}")))?;
        Ok(c.into_iter().collect())
    };
    let (commit, timestamp, machine) = (
        strings("commit")?,
        strings("timestamp")?,
        strings("machine")?,
    );
    let (hash, method, run_id) = (
        strings("config_hash")?,
        strings("method")?,
        strings("run_id")?,
    );
    // Files written before backends were recorded have no such column.
    let backend = match df.column("backend") {
        Ok(_) => strings("backend")?,
        Err(_) => vec![String::new(); df.height()],
    };
    let (tps, rss, loss) = (
        floats("tokens_per_s")?,
        floats("peak_rss_mib")?,
        floats("final_loss")?,
    );
    Ok((0..df.height())
        .map(|i| HistoryRow {
            commit: commit[i].clone(),
            timestamp: timestamp[i].clone(),
            machine: machine[i].clone(),
            config_hash: hash[i].clone(),
            method: method[i].clone(),
            run_id: run_id[i].clone(),
            tokens_per_s: tps[i].unwrap_or(f64::NAN),
            peak_rss_mib: rss[i].unwrap_or(f64::NAN),
            final_loss: loss[i],
            backend: backend[i].clone(),
        })
        .collect())
}

/// Reads `history.parquet`; a missing file is an empty history, an unreadable one an error
/// naming it.
pub fn read_history(path: &Path) -> Result<Vec<HistoryRow>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let file = std::fs::File::open(path).map_err(io(path))?;
    let df = ParquetReader::new(file).finish().map_err(|e| Error::Invalid {
        path: path.to_path_buf(),
        message: format!(
            "not a readable parquet file, it may be truncated or corrupt ({e}). It was left as it is; \
             history.csv beside it mirrors the rows: restore from it or move the file away"
        ),
    })?;
    from_frame(&df, path)
}

/// The commits of `rows`, ordered by the time of their newest row (oldest first): the x axis
/// of history charts and the order `regress` picks its baseline in.
pub fn commits_in_order(rows: &[HistoryRow]) -> Vec<String> {
    let mut newest: BTreeMap<&str, &str> = BTreeMap::new();
    for r in rows {
        let e = newest
            .entry(r.commit.as_str())
            .or_insert(r.timestamp.as_str());
        if r.timestamp.as_str() > *e {
            *e = r.timestamp.as_str();
        }
    }
    let mut v: Vec<(&str, &str)> = newest.into_iter().collect();
    v.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0)));
    v.into_iter().map(|(c, _)| c.to_string()).collect()
}

/// What [`append_history`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Rows added.
    pub added: usize,
    /// Rows skipped because their `run_id` was already recorded.
    pub skipped: usize,
    /// Rows in the history now.
    pub total: usize,
}

/// An exclusive advisory lock on `reports_dir/.history.lock`, held until dropped: appenders in
/// other processes (two `bench` runs, `report --history` beside a `bench`) and other threads
/// wait for it, so none reads the history while another is rewriting it and no row is lost.
struct HistoryLock(std::fs::File);

impl HistoryLock {
    fn acquire(reports_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(reports_dir).map_err(io(reports_dir))?;
        let path = reports_dir.join(".history.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(Self(file))
    }
}

impl Drop for HistoryLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Appends `rows` to `reports_dir/history.parquet` and rewrites `history.csv`, under a lock
/// that serialises concurrent appenders.
pub fn append_history(reports_dir: &Path, rows: &[HistoryRow]) -> Result<Appended> {
    let _lock = HistoryLock::acquire(reports_dir)?;
    let path = parquet_path(reports_dir);
    let mut all = read_history(&path)?;
    let known: HashSet<String> = all
        .iter()
        .filter(|r| !r.run_id.is_empty())
        .map(|r| r.run_id.clone())
        .collect();
    let before = all.len();
    let mut skipped = 0;
    for r in rows {
        if !r.run_id.is_empty() && known.contains(&r.run_id) {
            skipped += 1;
        } else {
            all.push(r.clone());
        }
    }
    let mut df = to_frame(&all)?;
    std::fs::create_dir_all(reports_dir).map_err(io(reports_dir))?;
    write_atomic_with(&path, |file| {
        ParquetWriter::new(file)
            .finish(&mut df)
            .map_err(perr(format!("writing {}", path.display())))
    })?;
    let mut csv = Vec::new();
    CsvWriter::new(&mut csv)
        .finish(&mut df)
        .map_err(perr("encoding history.csv"))?;
    write_atomic(&reports_dir.join("history.csv"), &csv)?;
    Ok(Appended {
        added: all.len() - before,
        skipped,
        total: all.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_before_backends_were_recorded_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = parquet_path(dir.path());
        let mut old = df!(
            "commit" => ["c1"],
            "timestamp" => ["2026-01-01T00:00:00Z"],
            "machine" => ["cpu x2 8GiB"],
            "config_hash" => ["h"],
            "method" => ["peft"],
            "run_id" => ["r1"],
            "tokens_per_s" => [10.0],
            "peak_rss_mib" => [1000.0],
            "final_loss" => [Some(2.0)],
        )
        .unwrap();
        let file = std::fs::File::create(&path).unwrap();
        ParquetWriter::new(file).finish(&mut old).unwrap();
        let rows = read_history(&path).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].run_id.as_str(), rows[0].backend.as_str()),
            ("r1", "")
        );
    }
}
