//! Bad inputs give errors that name the file (and the line). Files are read with their
//! producers' types, so a required field that is missing or renamed is an error naming the file
//! and the field, never a silent zero.

mod common;

use serde_json::Value;
use tb_testkit::edit_json;

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
    let good = std::fs::read_to_string(common::fixtures().join("peers.jsonl")).unwrap();
    let first = good.lines().next().unwrap();
    std::fs::write(&path, format!("{first}\n\n{{oops\n")).unwrap();
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

/// Copies the files of the fixture folder `from` into a fresh folder, then applies `edit` to the
/// JSON of its `file`.
fn edited_copy(from: &str, file: &str, edit: impl FnOnce(&mut Value)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(common::fixtures().join(from)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    edit_json(&dir.path().join(file), edit);
    dir
}

/// Renames `key` of the JSON object `v` to `to`.
fn rename(v: &mut Value, key: &str, to: &str) {
    let obj = v.as_object_mut().unwrap();
    let value = obj.remove(key).unwrap();
    obj.insert(to.into(), value);
}

fn assert_names(err: &str, file: &str, field: &str) {
    assert!(err.contains(file), "the error does not name {file}: {err}");
    assert!(
        err.contains(&format!("missing field `{field}`")),
        "the error does not name the field `{field}`: {err}"
    );
}

#[test]
fn eval_summary_with_a_renamed_or_missing_field_names_file_and_field() {
    let dir = edited_copy("eval", "summary.json", |v| {
        rename(&mut v["models"][1], "items", "n_items")
    });
    let err = tb_report::load_eval_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert_names(&err, "summary.json:", "items");

    let dir = edited_copy("eval", "summary.json", |v| {
        v.as_object_mut().unwrap().remove("engine");
    });
    let err = tb_report::load_eval_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert_names(&err, "summary.json:", "engine");
}

#[test]
fn results_line_without_a_required_field_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixtures().join("eval");
    std::fs::copy(src.join("summary.json"), dir.path().join("summary.json")).unwrap();
    let text = std::fs::read_to_string(src.join("results.jsonl")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut second: Value = serde_json::from_str(&lines[1]).unwrap();
    rename(&mut second["timings"], "seconds", "secs");
    lines[1] = second.to_string();
    std::fs::write(dir.path().join("results.jsonl"), lines.join("\n")).unwrap();
    let err = tb_report::load_eval_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert_names(&err, "results.jsonl:2:", "seconds");
}

#[test]
fn damage_row_without_its_size_names_file_and_field() {
    let dir = edited_copy("damage", "damage.json", |v| {
        v["rows"][1].as_object_mut().unwrap().remove("bytes");
    });
    let err = tb_report::load_eval_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert_names(&err, "damage.json:", "bytes");
}

#[test]
fn run_summary_with_a_renamed_field_names_file_and_field() {
    let dir = edited_copy("runs/20260101T000000Z-peft", "summary.json", |v| {
        rename(v, "tokens_per_s", "tokens_per_second")
    });
    let err = tb_report::load_run(dir.path()).unwrap_err().to_string();
    assert_names(&err, "summary.json:", "tokens_per_s");
}

#[test]
fn peer_line_without_a_required_field_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers.jsonl");
    let good = std::fs::read_to_string(common::fixtures().join("peers.jsonl")).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let mut second: Value = serde_json::from_str(lines[1]).unwrap();
    rename(&mut second, "peak_rss_mib", "peak_rss");
    std::fs::write(&path, format!("{}\n{second}\n", lines[0])).unwrap();
    let err = tb_report::load_peers(&path).unwrap_err().to_string();
    assert_names(&err, "peers.jsonl:2:", "peak_rss_mib");
    // `run_id` is the bench driver's: the script's own line has none and reads as empty.
    let peers = tb_report::load_peers(&common::fixtures().join("peers.jsonl")).unwrap();
    assert!(peers.iter().all(|p| p.run_id.is_empty()));
    // The peer's stdout: its last JSON line is the result, and must be a whole one.
    let e = tb_report::runs::parse_peer_output(&format!("warming up\n{second}\n")).unwrap_err();
    assert!(
        e.to_string().contains("missing field `peak_rss_mib`"),
        "{e}"
    );
    assert!(tb_report::runs::parse_peer_output("no result\n")
        .unwrap()
        .is_none());
}

#[test]
fn bench_json_without_a_required_field_names_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let attempt = tb_report::bench::Attempt {
        method: "peft".into(),
        repeat: 1,
        ok: true,
        run_dir: Some(dir.path().join("runs/x")),
        run_id: "x".into(),
        ..Default::default()
    };
    let outcome = tb_report::BenchOutcome {
        attempts: vec![attempt.clone()],
        ..Default::default()
    };
    let path = dir.path().join(tb_report::bench::BENCH_FILE);
    std::fs::write(&path, serde_json::to_string(&outcome).unwrap()).unwrap();
    let back = tb_report::BenchOutcome::load(dir.path()).unwrap();
    assert_eq!(back.attempts, [attempt]);
    edit_json(&path, |v| {
        v["attempts"][0].as_object_mut().unwrap().remove("ok");
    });
    let err = tb_report::BenchOutcome::load(dir.path())
        .unwrap_err()
        .to_string();
    assert_names(&err, "bench.json:", "ok");
}

/// `damage.json` exactly as tb-eval serialises its `DamageReport` reads into the report's rows.
#[test]
fn damage_json_as_tb_eval_writes_it_is_read() {
    use tb_eval::damage::{DamageReport, DamageRow, OllamaSpeed};
    let row = |quant: &str, bytes: u64, ollama: Option<OllamaSpeed>| DamageRow {
        quant: quant.into(),
        file: format!("damage/m-{quant}.gguf").into(),
        bytes,
        weight_types: String::new(),
        perplexity: Some(10.0),
        top1_accuracy: Some(0.5),
        ppl_items: 3,
        ppl_tokens: 40,
        chrf: Some(45.0),
        chrf_items: 2,
        embedded_decode_tokens_per_second: Some(20.0),
        ollama,
        errors: Vec::new(),
        seconds: 1.0,
    };
    let report = DamageReport {
        source: "runs/x-unsloth/merged".into(),
        baseline: "the HF weights".into(),
        dataset: "eval.jsonl".into(),
        ollama: "Ollama 0.12.11-compat answered at 127.0.0.1:11434".into(),
        ollama_engine: "ollama-compat (llama.cpp)".into(),
        rows: vec![
            row("F16", 2_000_000, None),
            row(
                "Q4_K_M",
                700_000,
                Some(OllamaSpeed {
                    prompt_tokens_per_second: Some(100.0),
                    eval_tokens_per_second: Some(30.0),
                    load_seconds: Some(0.5),
                    requests: 2,
                }),
            ),
        ],
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("damage.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    let e = tb_report::load_eval_dir(dir.path()).unwrap();
    assert_eq!(e.quality.len(), 2);
    assert!(e
        .quality
        .iter()
        .all(|q| q.method == "unsloth" && q.items == 3));
    assert_eq!(e.quality[1].quant, "Q4_K_M");
    assert_eq!(e.quality[1].perplexity, Some(10.0));
    assert_eq!(e.speed.len(), 3, "two embedded rows and one Ollama row");
    let ollama = e
        .speed
        .iter()
        .find(|s| s.engine == "ollama-compat (llama.cpp)")
        .unwrap();
    assert_eq!(ollama.decode_tokens_per_s, Some(30.0));
    assert_eq!(ollama.load_s, Some(0.5));
    assert_eq!(ollama.gguf_bytes, Some(700_000));
    assert_eq!(
        e.engine_notes,
        ["damage study: Ollama 0.12.11-compat answered at 127.0.0.1:11434"]
    );
    // A damage.json without the server's name (written before it was recorded) reads "ollama".
    let mut old = serde_json::to_value(&report).unwrap();
    old.as_object_mut().unwrap().remove("ollama_engine");
    std::fs::write(dir.path().join("damage.json"), old.to_string()).unwrap();
    let e = tb_report::load_eval_dir(dir.path()).unwrap();
    assert!(
        e.speed.iter().any(|s| s.engine == "ollama"),
        "{:?}",
        e.speed
    );
}
