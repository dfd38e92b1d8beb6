//! Shared test helpers: the committed fixtures.

#![allow(dead_code)]

pub mod svg;

use std::path::{Path, PathBuf};

use tb_report::{HistoryRow, ReportInputs};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The config hash of the fixture runs.
pub const FIXTURE_CONFIG: &str = "0123456789abcdef";

/// A history row (backend `flex`).
pub fn history_row(commit: &str, day: u32, method: &str, machine: &str, tps: f64) -> HistoryRow {
    HistoryRow {
        commit: commit.into(),
        timestamp: format!("2026-01-{day:02}T00:00:00Z"),
        machine: machine.into(),
        config_hash: FIXTURE_CONFIG.into(),
        method: method.into(),
        run_id: format!("{commit}-{method}-{machine}-{tps}"),
        tokens_per_s: tps,
        peak_rss_mib: tps * 10.0,
        final_loss: Some(2.0),
        backend: "flex".into(),
    }
}

/// Three commits of the fixture config on two machines (unsloth ran on the second machine
/// at the last two commits only), plus a row of another config that the report leaves out.
pub fn fixture_history() -> Vec<HistoryRow> {
    let (a, b) = (
        "Fixture CPU [GenuineIntel 6/143] x2 8GiB avx2+fma+avx512f+avx512_bf16",
        "Fixture CPU x2 8GiB",
    );
    let mut rows = Vec::new();
    for (day, commit) in [(1, "aaaaaaa111"), (2, "bbbbbbb222"), (3, "ccccccc333")] {
        let k = day as f64;
        rows.push(history_row(commit, day, "peft", a, 100.0 + k));
        rows.push(history_row(commit, day, "peft", a, 102.0 + k));
        rows.push(history_row(commit, day, "unsloth", a, 250.0 + k));
        rows.push(history_row(commit, day, "peft", b, 90.0 + k));
        if day > 1 {
            rows.push(history_row(commit, day, "unsloth", b, 200.0 + k));
        }
    }
    let mut other = history_row("ddddddd444", 4, "peft", a, 1.0);
    other.config_hash = "ffffffffffffffff".into();
    rows.push(other);
    rows
}

/// Runs, peers, the evaluation, the damage study and the history of the fixtures.
pub fn fixture_inputs() -> ReportInputs {
    let f = fixtures();
    let mut inputs = ReportInputs {
        runs: tb_report::find_runs(&f.join("runs")).expect("fixture runs"),
        peers: tb_report::load_peers(&f.join("peers.jsonl")).expect("fixture peers"),
        history: fixture_history(),
        ..ReportInputs::default()
    };
    for dir in ["eval", "damage"] {
        let e = tb_report::load_eval_dir(&f.join(dir)).expect("fixture eval");
        inputs.quality.extend(e.quality);
        inputs.speed.extend(e.speed);
        inputs.engine_notes.extend(e.engine_notes);
    }
    inputs
}

pub fn environment(inputs: &ReportInputs) -> tb_report::Environment {
    tb_report::Environment::collect(
        inputs,
        vec![("tunebench".into(), "test".into())],
        Some("0000000000000000000000000000000000000000".into()),
        "2026-01-01T00:00:00Z".into(),
    )
}
