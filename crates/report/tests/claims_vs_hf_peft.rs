//! Every claim row comparing unsloth with peft has companions against real HF+PEFT: from the
//! bench peer's results (speed, seconds, memory, train loss), from an `hf-peft` run (eval loss,
//! perplexity before → after) and from an evaluation of its GGUF (chrF); "not measured" with
//! "missing: hf-peft" only where nothing of hf-peft was given.

mod common;

use tb_report::claims::Claim;
use tb_report::{ReportInputs, ReportOutput};

fn report(inputs: &ReportInputs) -> (tempfile::TempDir, ReportOutput) {
    let dir = tempfile::tempdir().unwrap();
    let out = tb_report::write_report(inputs, &common::environment(inputs), dir.path()).unwrap();
    (dir, out)
}

fn claim<'a>(out: &'a ReportOutput, measure: &str) -> &'a Claim {
    out.claims
        .iter()
        .find(|c| c.measure == measure)
        .unwrap_or_else(|| panic!("no claim row `{measure}`"))
}

/// The rows against peft whose hf-peft companions every report carries.
const COMPARED: [&str; 5] = [
    "trained tokens/s",
    "training seconds",
    "peak RSS",
    "final train loss",
    "eval loss",
];

fn hf_peft_run() -> tb_report::Run {
    let runs = common::fixtures().join("hf-peft/runs");
    tb_report::find_runs(&runs)
        .unwrap()
        .pop()
        .expect("the fixture run")
}

#[test]
fn each_unsloth_vs_peft_row_has_companions_against_hf_peft() {
    let (_dir, out) = report(&common::fixture_inputs());
    for what in COMPARED {
        let peft = claim(&out, &format!("{what}, unsloth ÷ peft"));
        for measure in [
            format!("{what}, unsloth ÷ hf-peft"),
            format!("{what}, peft ÷ hf-peft"),
        ] {
            assert_eq!(claim(&out, &measure).claim, peft.claim, "{measure}");
        }
    }
    for measure in [
        "chrF at Q4_K_M, unsloth ÷ hf-peft",
        "chrF at Q4_K_M, peft ÷ hf-peft",
        "commands and seconds from checkpoint to a served model, unsloth ÷ hf-peft",
        "eval perplexity, base (before) → hf-peft",
    ] {
        claim(&out, measure);
    }
    // The peer's bench results: 2 repeats, train seconds 2.0, peak RSS 4 400 / 4 600 MiB, last
    // loss 2.3; peft 4.0 s, 2 000 MiB, 2.25; unsloth 1.6 s, 1 500 MiB, 2.2.
    let value = |m: &str| claim(&out, m).value.clone();
    assert_eq!(value("training seconds, unsloth ÷ hf-peft"), "0.80×");
    assert_eq!(value("training seconds, peft ÷ hf-peft"), "2.00×");
    assert_eq!(value("peak RSS, peft ÷ hf-peft"), "0.44×");
    assert_eq!(value("final train loss, unsloth ÷ hf-peft"), "0.96×");
    assert_eq!(value("final train loss, peft ÷ hf-peft"), "0.98×");
    let detail = &claim(&out, "training seconds, peft ÷ hf-peft").detail;
    assert_eq!(
        detail,
        "peft 4.00 s (median of 1) vs hf-peft 2.00 s (median of 2)"
    );
    // Bench results carry no eval loss, and no hf-peft GGUF was evaluated.
    for measure in [
        "eval loss, unsloth ÷ hf-peft",
        "eval loss, peft ÷ hf-peft",
        "chrF at Q4_K_M, unsloth ÷ hf-peft",
    ] {
        let c = claim(&out, measure);
        assert_eq!(c.value, "not measured", "{measure}");
        assert!(
            c.detail.ends_with("missing: hf-peft"),
            "{measure}: {}",
            c.detail
        );
    }
}

#[test]
fn without_hf_peft_its_rows_read_not_measured_missing_hf_peft() {
    let mut inputs = common::fixture_inputs();
    inputs.peers.clear();
    let (_dir, out) = report(&inputs);
    let rows: Vec<&Claim> = out
        .claims
        .iter()
        .filter(|c| c.measure.contains("hf-peft"))
        .collect();
    assert_eq!(rows.len(), 2 * COMPARED.len() + 2 + 1 + 1, "{rows:#?}");
    for c in rows {
        assert_eq!(c.value, "not measured", "{}", c.measure);
        assert!(c.detail.contains("hf-peft"), "{}: {}", c.measure, c.detail);
    }
    // The unsloth ÷ peft rows are untouched.
    assert_eq!(
        claim(&out, "trained tokens/s, unsloth ÷ peft").value,
        "2.50×"
    );
}

#[test]
fn an_hf_peft_run_and_its_evaluation_fill_the_quality_rows() {
    let mut inputs = common::fixture_inputs();
    inputs.peers.clear();
    let run = hf_peft_run();
    let eval = run.summary.eval_loss.unwrap();
    inputs.runs.push(run);
    let mut q4 = inputs
        .quality
        .iter()
        .find(|q| q.method == "unsloth" && q.quant == "Q4_K_M")
        .unwrap()
        .clone();
    q4.method = "hf-peft".into();
    q4.chrf = Some(40.0);
    inputs.quality.push(q4);
    let (_dir, out) = report(&inputs);
    let value = |m: &str| claim(&out, m).value.clone();
    assert_eq!(
        value("eval loss, unsloth ÷ hf-peft"),
        format!("{:.2}×", 2.45 / eval)
    );
    assert_eq!(
        value("eval loss, peft ÷ hf-peft"),
        format!("{:.2}×", 2.5 / eval)
    );
    // chrF: unsloth 43, peft 41.5 against hf-peft 40.
    assert_eq!(value("chrF at Q4_K_M, unsloth ÷ hf-peft"), "1.07×");
    assert_eq!(value("chrF at Q4_K_M, peft ÷ hf-peft"), "1.04×");
    let ppl = value("eval perplexity, base (before) → hf-peft");
    assert!(
        ppl.contains(" → ") && !ppl.contains("not measured"),
        "{ppl}"
    );
}
