//! Shared test helpers: the committed fixtures.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tb_report::ReportInputs;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs, peers, the evaluation and the damage study of the fixtures.
pub fn fixture_inputs() -> ReportInputs {
    let f = fixtures();
    let mut inputs = ReportInputs {
        runs: tb_report::find_runs(&f.join("runs")).expect("fixture runs"),
        peers: tb_report::load_peers(&f.join("peers.jsonl")).expect("fixture peers"),
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
