//! Resuming an evaluation (`RunSettings::resume`) on the embedded engine, with two tiny llama
//! GGUFs written here: a run whose `results.jsonl` was cut off mid-line continues without
//! answering the kept items again and ends with the summary of an uninterrupted run; items
//! answered with another model file or other settings, and failed items, are answered again;
//! bad folders and files are errors naming file and line.

mod common;

use std::path::{Path, PathBuf};

use common::eval_setup::{comparable_summary, dataset_line, write_two_models};
use common::tiny::TinyLlama;
use serde_json::Value;
use tb_data::Dataset;
use tb_eval::evaluation::{
    resolve_engine, run_evaluation, EngineChoice, Error, ModelSpec, ResolvedEngine, RunSettings,
    Summary,
};
use tb_eval::metrics::Bleu;
use tb_gguf::GgmlType;

const ITEMS: usize = 5;

struct Fixture {
    dir: tempfile::TempDir,
    models: Vec<ModelSpec>,
    dataset: Dataset,
    engine: ResolvedEngine,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = write_two_models(dir.path());
    let questions = [
        "Faturamı nasıl öderim?",
        "Yurt dışında internet paketi var mı?",
        "Borcumu nereden görürüm?",
        "Hattımı nasıl dondururum?",
        "Numara taşıma ne kadar sürer?",
    ];
    let text: String = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            dataset_line(
                &format!("t-{i}"),
                q,
                &format!("Uygulamadan yapabilirsiniz, {i}."),
            )
        })
        .collect();
    let path = dir.path().join("eval.jsonl");
    std::fs::write(&path, text).unwrap();
    let models = vec![ModelSpec::new("a", a), ModelSpec::new("b", b)];
    Fixture {
        models,
        dataset: Dataset::load(&path).unwrap(),
        engine: resolve_engine(EngineChoice::Embedded, None).unwrap(),
        dir,
    }
}

fn settings(resume: bool) -> RunSettings {
    RunSettings {
        max_tokens: 10,
        num_ctx: 256,
        perplexity: true,
        resume,
        ..RunSettings::default()
    }
}

impl Fixture {
    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, out: &Path, settings: &RunSettings) -> Result<Summary, Error> {
        run_evaluation(
            &self.models,
            &self.dataset,
            &self.engine,
            settings,
            out,
            |_| {},
        )
    }
}

fn lines(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

/// (model, id) of every line, sorted; each item of the run must be there once.
fn assert_each_item_once(lines: &[String]) {
    let mut keys: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            let v = json(l);
            (v["model"].to_string(), v["id"].to_string())
        })
        .collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "an item appears twice");
    assert_eq!(n, 2 * ITEMS, "every item of both models");
}

/// The summary without what depends on the clock or on how the run was split up.
fn metrics(summary: &Summary) -> Value {
    comparable_summary(serde_json::to_value(summary).unwrap())
}

/// A line without its timings.
fn untimed(line: &str) -> Value {
    let mut v = json(line);
    v.as_object_mut().unwrap().remove("timings");
    v
}

#[test]
fn cut_off_run_resumes_without_answering_kept_items_again() {
    let fx = fixture();
    let full_dir = fx.out("full");
    let full = fx.run(&full_dir, &settings(false)).unwrap();
    let reference = lines(&full_dir);
    assert_eq!(reference.len(), 2 * ITEMS);
    assert_eq!(full.resumed_items, 0);
    assert!(full
        .models
        .iter()
        .all(|m| m.perplexity.is_some() && m.chrf.is_some()));
    // Corpus BLEU beside chrF: sacrebleu's corpus_bleu over each model's answers.
    for m in &full.models {
        let (hyps, refs): (Vec<String>, Vec<String>) = reference
            .iter()
            .map(|l| json(l))
            .filter(|v| v["model"] == m.name.as_str())
            .map(|v| {
                let text = |k: &str| v[k].as_str().unwrap().to_owned();
                (text("answer"), text("reference"))
            })
            .unzip();
        assert_eq!(hyps.len(), ITEMS);
        let bleu = Bleu::corpus().corpus_score(&hyps, &refs).unwrap().score;
        assert_eq!(m.bleu, Some(bleu), "{}", m.name);
    }

    // The run killed while writing line k+1: k whole lines and half of the next.
    let k = ITEMS + 2;
    let cut_dir = fx.out("cut");
    std::fs::create_dir(&cut_dir).unwrap();
    let mut bytes: String = reference[..k].iter().map(|l| format!("{l}\n")).collect();
    bytes.push_str(&reference[k][..reference[k].len() / 2]);
    std::fs::write(cut_dir.join("results.jsonl"), bytes).unwrap();

    let mut seen = 0;
    let resumed = run_evaluation(
        &fx.models,
        &fx.dataset,
        &fx.engine,
        &settings(true),
        &cut_dir,
        |_| seen += 1,
    )
    .unwrap();
    assert_eq!(resumed.resumed_items, k, "the k whole lines are kept");
    assert_eq!(resumed.models[0].resumed, ITEMS);
    assert_eq!(resumed.models[1].resumed, k - ITEMS);
    assert_eq!(seen, 2 * ITEMS, "on_item sees kept and new items");
    let after = lines(&cut_dir);
    assert_each_item_once(&after);
    assert_eq!(
        after[..k],
        reference[..k],
        "kept lines must stay byte for byte (their timings prove they were not answered again)"
    );
    for (new, old) in after[k..].iter().zip(&reference[k..]) {
        assert_eq!(untimed(new), untimed(old), "a new answer differs");
    }
    assert_eq!(metrics(&resumed), metrics(&full));
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(cut_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk["resumed_items"], k);

    // Resuming a finished run answers nothing and keeps the file as it is.
    let again = fx.run(&cut_dir, &settings(true)).unwrap();
    assert_eq!(again.resumed_items, 2 * ITEMS);
    assert_eq!(lines(&cut_dir), after);
    assert_eq!(metrics(&again), metrics(&full));
}

#[test]
fn other_settings_other_model_files_and_failures_are_answered_again() {
    let fx = fixture();
    let out = fx.out("run");
    let first = fx.run(&out, &settings(false)).unwrap();

    // Another max_tokens: nothing is kept, each item is there once, with the new setting.
    let shorter = RunSettings {
        max_tokens: 3,
        ..settings(true)
    };
    let s = fx.run(&out, &shorter).unwrap();
    assert_eq!(s.resumed_items, 0);
    let after = lines(&out);
    assert_each_item_once(&after);
    assert!(after
        .iter()
        .all(|l| json(l)["answered_with"]["max_tokens"] == 3));

    // Back to the first settings, then model b's file replaced by another model: only a's
    // items are kept.
    fx.run(&out, &settings(true)).unwrap();
    TinyLlama {
        seed: 12,
        tied: true,
        ..TinyLlama::default()
    }
    .write(&fx.models[1].gguf, GgmlType::Q8_0);
    let s = fx.run(&out, &settings(true)).unwrap();
    assert_eq!(s.resumed_items, ITEMS);
    assert_eq!(s.models[1].resumed, 0);
    let after = lines(&out);
    assert_each_item_once(&after);
    let digests: Vec<Value> = after
        .iter()
        .map(|l| json(l)["answered_with"]["model_digest"].clone())
        .collect();
    assert_ne!(digests[0], digests[ITEMS], "b's lines carry b's new digest");
    assert_eq!(
        metrics(&s).get("models").unwrap()[0],
        metrics(&first)["models"][0]
    );

    // A failed item is retried; the others are kept.
    let mut failed = json(&after[1]);
    failed["answer"] = Value::Null;
    failed["scores"] = Value::Null;
    failed["error"] = "the engine stopped".into();
    let mut text: String = after.iter().map(|l| format!("{l}\n")).collect();
    text = text.replacen(&after[1], &failed.to_string(), 1);
    std::fs::write(out.join("results.jsonl"), text).unwrap();
    let s = fx.run(&out, &settings(true)).unwrap();
    assert_eq!(s.resumed_items, 2 * ITEMS - 1);
    assert_eq!(s.failed_items, 0);
    let last = lines(&out);
    assert_each_item_once(&last);
    assert_eq!(untimed(last.last().unwrap()), untimed(&after[1]));
}

#[test]
fn bad_folders_and_files_are_errors_naming_them() {
    let fx = fixture();
    // Nothing to resume.
    let empty = fx.out("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = fx.run(&empty, &settings(true)).unwrap_err();
    assert!(matches!(e, Error::NotAnEvaluation { .. }), "{e}");
    assert!(e.to_string().contains("empty"), "{e}");
    let e = fx.run(&fx.out("missing"), &settings(true)).unwrap_err();
    assert!(matches!(e, Error::NotAnEvaluation { .. }), "{e}");

    // A new run into a folder holding results is refused, and the results are left alone.
    let out = fx.out("run");
    fx.run(&out, &settings(false)).unwrap();
    let before = lines(&out);
    let e = fx.run(&out, &settings(false)).unwrap_err();
    assert!(matches!(e, Error::ExistingResults { .. }), "{e}");
    assert_eq!(lines(&out), before);

    // A garbage line that is not the last: an error naming file and line, nothing rewritten.
    let mut garbage = before.clone();
    garbage[1] = "{\"model\": \"a\", \"id\":".into();
    let text: String = garbage.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(out.join("results.jsonl"), &text).unwrap();
    let e = fx.run(&out, &settings(true)).unwrap_err();
    assert!(matches!(e, Error::BadResultsLine { line: 2, .. }), "{e:?}");
    assert!(e.to_string().contains("results.jsonl:2"), "{e}");
    assert_eq!(
        std::fs::read_to_string(out.join("results.jsonl")).unwrap(),
        text
    );
    // Valid JSON that is not a result is garbage too.
    garbage[1] = "{\"step\": 3, \"loss\": 2.5}".into();
    let text: String = garbage.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(out.join("results.jsonl"), &text).unwrap();
    let e = fx.run(&out, &settings(true)).unwrap_err();
    assert!(matches!(e, Error::BadResultsLine { line: 2, .. }), "{e:?}");

    // The same garbage as the last whole line is taken for a cut-off write and repaired.
    let mut text: String = before.iter().map(|l| format!("{l}\n")).collect();
    text.push_str("{\"model\": \"b\", \"id\":\n");
    std::fs::write(out.join("results.jsonl"), &text).unwrap();
    let s = fx.run(&out, &settings(true)).unwrap();
    assert_eq!(s.resumed_items, 2 * ITEMS);
    assert_eq!(lines(&out), before);
}
