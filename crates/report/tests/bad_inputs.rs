//! Bad inputs give errors that name the file (and the line).

mod common;

#[test]
fn missing_summary_names_the_file() {
    let dir = common::fixtures().join("bad/missing-summary");
    let err = tb_report::load_run(&dir).unwrap_err().to_string();
    assert!(err.contains("missing-summary/summary.json"), "{err}");
}

#[test]
fn malformed_metrics_line_names_file_and_line() {
    let dir = common::fixtures().join("bad/bad-metrics");
    let err = tb_report::load_run(&dir).unwrap_err().to_string();
    assert!(err.contains("bad-metrics/metrics.jsonl:3:"), "{err}");
}

#[test]
fn malformed_serving_json_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixtures().join("runs/20260101T000000Z-peft");
    for f in ["config.toml", "metrics.jsonl", "summary.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("serving.json"),
        "{\"steps\": [{\"command\": 3}]}",
    )
    .unwrap();
    let err = tb_report::load_run(dir.path()).unwrap_err().to_string();
    assert!(err.contains("serving.json"), "{err}");
}

#[test]
fn malformed_peer_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.jsonl");
    std::fs::write(&path, "{\"tokens_per_s\": 1.0}\n\n{oops\n").unwrap();
    let err = tb_report::load_peers(&path).unwrap_err().to_string();
    assert!(err.contains("peers.jsonl:3:"), "{err}");
}

#[test]
fn unfinished_runs_are_skipped_when_discovering() {
    let runs = tb_report::find_runs(&common::fixtures().join("bad"))
        .unwrap_err()
        .to_string();
    // bad-metrics has a summary and a broken metrics line: discovery stops there, naming it.
    assert!(runs.contains("metrics.jsonl:3"), "{runs}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("20260101T000000Z-peft")).unwrap();
    assert!(tb_report::find_runs(dir.path()).unwrap().is_empty());
}

#[test]
fn eval_folder_without_results_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = tb_report::load_eval_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("neither summary.json nor damage.json"),
        "{err}"
    );
    std::fs::write(dir.path().join("summary.json"), "{\"models\": [}").unwrap();
    let err = tb_report::load_eval_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("summary.json:1:"), "{err}");
}
