//! The "before and after fine-tuning" part of the report: the base model's eval loss and
//! perplexity (`base_eval_loss.json` in a run folder) beside each trainer's, the claim row
//! built from them, and the training set's cut and dropped examples from the run summaries;
//! a run without a base measurement reads "not measured", a garbled one is an error naming
//! the file and the field.

mod common;

use std::path::{Path, PathBuf};

use tb_report::tables::{find_row, format_number, number, BEFORE_LABEL};
use tb_report::{ReportInputs, ReportOutput};

const MEASURE: &str = "eval perplexity, base (before) → peft / unsloth";

fn claim_value(out: &ReportOutput) -> String {
    out.claims
        .iter()
        .find(|c| c.measure == MEASURE)
        .unwrap_or_else(|| panic!("no claim row `{MEASURE}`"))
        .value
        .clone()
}

/// A copy of the fixture runs in `dir`, so a test can change their files.
fn copy_runs(dir: &Path) -> PathBuf {
    let runs = dir.join("runs");
    for entry in std::fs::read_dir(common::fixtures().join("runs")).unwrap() {
        let from = entry.unwrap().path();
        let to = runs.join(from.file_name().unwrap());
        std::fs::create_dir_all(&to).unwrap();
        for file in std::fs::read_dir(&from).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
        }
    }
    runs
}

fn report(runs: &Path, out: &Path) -> ReportOutput {
    let inputs = ReportInputs {
        runs: tb_report::find_runs(runs).unwrap(),
        ..ReportInputs::default()
    };
    tb_report::write_report(&inputs, &common::environment(&inputs), out).unwrap()
}

#[test]
fn the_base_row_sits_beside_both_trainers_with_their_cut_and_dropped_examples() {
    let inputs = common::fixture_inputs();
    let dir = tempfile::tempdir().unwrap();
    let out = tb_report::write_report(&inputs, &common::environment(&inputs), dir.path()).unwrap();

    let t = &out.tables.before_after;
    assert_eq!(t.height(), 3, "base, peft, unsloth");
    let base = find_row(t, "model", BEFORE_LABEL).unwrap();
    let peft = find_row(t, "model", "peft").unwrap();
    let unsloth = find_row(t, "model", "unsloth").unwrap();
    assert_eq!(base, 0, "the base comes first");
    assert_eq!(number(t, "eval_loss", base), Some(3.0));
    assert_eq!(number(t, "eval_examples", base), Some(20.0));
    let close = |got: Option<f64>, want: f64| {
        let got = got.unwrap_or(f64::NAN);
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    };
    close(number(t, "perplexity", base), 3f64.exp());
    close(number(t, "perplexity", peft), 2.5f64.exp());
    close(number(t, "perplexity", unsloth), 2.45f64.exp());
    close(number(t, "perplexity_vs_base", peft), (-0.5f64).exp());
    close(number(t, "perplexity_vs_base", unsloth), (-0.55f64).exp());
    assert_eq!(number(t, "eval_loss", unsloth), Some(2.45));
    // The PEFT-style fixture records its training set's counts; the Unsloth-style one predates
    // them.
    assert_eq!(number(t, "cut", peft), Some(91.0));
    assert_eq!(number(t, "dropped", peft), Some(0.0));
    assert_eq!(number(t, "train_records", peft), Some(300.0));
    assert_eq!(number(t, "max_seq_len", peft), Some(512.0));
    assert_eq!(number(t, "cut", unsloth), None);
    assert_eq!(number(t, "cut", base), None);

    let want = format!(
        "{} → {} / {}",
        format_number(3f64.exp()),
        format_number(2.5f64.exp()),
        format_number(2.45f64.exp())
    );
    assert_eq!(claim_value(&out), want);

    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(md.contains("Before and after fine-tuning"), "{md}");
    assert!(md.contains(BEFORE_LABEL), "{md}");
    assert!(
        md.contains("of 300 training examples, 91 were cut at 512 tokens and 0 dropped"),
        "{md}"
    );
    assert!(md.contains("cut and dropped examples not recorded"), "{md}");
    assert!(md.contains(&format_number(3f64.exp())), "{md}");
    let html = std::fs::read_to_string(&out.html).unwrap();
    assert!(html.contains(BEFORE_LABEL), "the HTML has the before row");
    let csv = std::fs::read_to_string(&out.csv).unwrap();
    assert!(csv.contains("before_after"), "tables.csv holds the table");
}

#[test]
fn runs_without_a_base_measurement_read_not_measured() {
    let dir = tempfile::tempdir().unwrap();
    let runs = copy_runs(dir.path());
    for run in std::fs::read_dir(&runs).unwrap() {
        let _ = std::fs::remove_file(run.unwrap().path().join(tb_train::BASE_EVAL_FILE));
    }
    let out = report(&runs, &dir.path().join("report"));
    let t = &out.tables.before_after;
    let base = find_row(t, "model", BEFORE_LABEL).unwrap();
    assert_eq!(number(t, "eval_loss", base), None);
    assert_eq!(number(t, "perplexity", base), None);
    let peft = find_row(t, "model", "peft").unwrap();
    assert_eq!(number(t, "perplexity_vs_base", peft), None);
    assert_eq!(claim_value(&out), "not measured");
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(md.contains("was not measured for these runs"), "{md}");
}

#[test]
fn a_garbled_base_measurement_names_the_file_and_the_field() {
    let cases = [
        (
            r#"{"base": "b", "config_hash": "h", "eval_examples": 3}"#,
            "eval_loss",
        ),
        (
            r#"{"base": "b", "config_hash": "h", "eval_examples": 3, "eval_loss": "low"}"#,
            "eval_loss",
        ),
        (
            r#"{"base": "b", "config_hash": "h", "eval_examples": "x", "eval_loss": 1.0}"#,
            "eval_examples",
        ),
    ];
    for (text, field) in cases {
        let dir = tempfile::tempdir().unwrap();
        let runs = copy_runs(dir.path());
        let run = runs.join("20260101T000000Z-peft");
        std::fs::write(run.join(tb_train::BASE_EVAL_FILE), text).unwrap();
        let err = tb_report::load_run(&run).unwrap_err().to_string();
        assert!(err.contains(tb_train::BASE_EVAL_FILE), "{text}: {err}");
        assert!(err.contains(&format!("`{field}`")), "{text}: {err}");
        let err = tb_report::find_runs(&runs).unwrap_err().to_string();
        assert!(err.contains(tb_train::BASE_EVAL_FILE), "{err}");
    }
}
