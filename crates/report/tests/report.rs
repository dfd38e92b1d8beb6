//! A report rendered from the committed fixture runs: the tables' numbers match the fixtures,
//! the claim table is filled (or says "not measured"), every chart exists as PNG and SVG and is
//! embedded in the HTML.

mod common;

use tb_report::tables::{find_row, number, text};

fn claim_value(out: &tb_report::ReportOutput, measure: &str) -> String {
    out.claims
        .iter()
        .find(|c| c.measure == measure)
        .unwrap_or_else(|| panic!("no claim row `{measure}`"))
        .value
        .clone()
}

#[test]
fn report_from_fixtures_has_the_fixture_numbers() {
    let inputs = common::fixture_inputs();
    let dir = tempfile::tempdir().unwrap();
    let out = tb_report::write_report(&inputs, &common::environment(&inputs), dir.path()).unwrap();

    let t = &out.tables.training;
    assert_eq!(t.height(), 4, "2 runs + 2 peer lines");
    let peft = find_row(t, "method", "peft").unwrap();
    let unsloth = find_row(t, "method", "unsloth").unwrap();
    assert_eq!(number(t, "tokens_per_s", peft), Some(100.0));
    assert_eq!(number(t, "tokens_per_s", unsloth), Some(250.0));
    assert_eq!(number(t, "peak_rss_mib", unsloth), Some(1500.0));
    assert_eq!(number(t, "wall_s", peft), Some(12.0));
    assert_eq!(number(t, "final_train_loss", peft), Some(2.25));
    assert_eq!(number(t, "eval_loss", unsloth), Some(2.45));
    assert_eq!(number(t, "trained_tokens", peft), Some(400.0));
    assert_eq!(
        text(t, "gguf", unsloth).as_deref(),
        Some("fixture-Q4_K_M.gguf 100.0 MiB")
    );

    let m = &out.tables.methods;
    assert_eq!(text(m, "method", 0).as_deref(), Some("peft"));
    assert_eq!(text(m, "method", 2).as_deref(), Some("hf-peft"));
    let hf = find_row(m, "method", "hf-peft").unwrap();
    assert_eq!(number(m, "runs", hf), Some(2.0));
    assert_eq!(number(m, "tokens_per_s", hf), Some(205.0));
    assert_eq!(number(m, "peak_rss_mib", hf), Some(4500.0));

    let q = &out.tables.quality;
    assert_eq!(q.height(), 5, "3 evaluated models + 2 damage rows");
    let uq = find_row(q, "method", "unsloth").unwrap();
    assert_eq!(text(q, "quant", uq).as_deref(), Some("Q4_K_M"));
    assert_eq!(number(q, "chrf", uq), Some(43.0));
    assert_eq!(number(q, "bleu", uq), Some(12.5));
    assert_eq!(number(q, "judge_score", uq), Some(3.5));
    // A model without BLEU or judge grades (peft-F16 has none) reads as not measured.
    let peft_f16 = (0..q.height())
        .find(|&i| {
            text(q, "method", i).as_deref() == Some("peft")
                && text(q, "quant", i).as_deref() == Some("F16")
        })
        .unwrap();
    assert_eq!(number(q, "bleu", peft_f16), None);
    assert_eq!(number(q, "judge_score", peft_f16), None);
    assert_eq!(number(q, "chrf_heldout", uq), Some(50.0));
    assert_eq!(number(q, "chrf_paraphrase", uq), Some(40.0));

    let s = &out.tables.inference;
    let f16 = (0..s.height())
        .find(|&i| {
            text(s, "quant", i).as_deref() == Some("F16")
                && text(s, "method", i).as_deref() == Some("peft")
        })
        .unwrap();
    assert_eq!(number(s, "latency_median_s", f16), Some(4.0));
    assert_eq!(number(s, "decode_tokens_per_s", f16), Some(15.0));

    assert_eq!(
        claim_value(&out, "trained tokens/s, unsloth ÷ peft"),
        "2.50×"
    );
    assert_eq!(
        claim_value(&out, "trained tokens/s, unsloth ÷ hf-peft"),
        "1.22×"
    );
    assert_eq!(claim_value(&out, "peak RSS, unsloth ÷ peft"), "0.75×");
    assert_eq!(claim_value(&out, "peak RSS, unsloth ÷ hf-peft"), "0.33×");
    assert_eq!(claim_value(&out, "chrF at Q4_K_M, unsloth ÷ peft"), "1.04×");
    assert_eq!(
        claim_value(&out, "reference perplexity, Q4_K_M ÷ F16 (same weights)"),
        "1.136×"
    );
    assert_eq!(
        claim_value(&out, "decode tokens/s, Q4_K_M ÷ F16 (same weights)"),
        "2.000×"
    );
    // One generalisation row per method, each from its Q4_K_M evaluation.
    for m in ["peft", "unsloth"] {
        let measure = format!("mean sentence chrF, paraphrased ÷ held-out, {m}");
        assert_eq!(claim_value(&out, &measure), "0.80×");
    }
    assert_eq!(
        claim_value(
            &out,
            "commands and seconds from checkpoint to a served model, unsloth ÷ peft"
        ),
        "0.50×"
    );
    let serving = out
        .claims
        .iter()
        .find(|c| c.measure.starts_with("commands and seconds"))
        .unwrap();
    assert_eq!(
        serving.detail,
        "unsloth 1 command(s), 4.0 s vs peft 2 command(s), 8.0 s"
    );
    assert_eq!(number(t, "serve_commands", peft), Some(2.0));
    assert_eq!(number(t, "serve_s", peft), Some(8.0));
    assert_eq!(
        text(t, "serve_path", peft).as_deref(),
        Some("tunebench merge (3.0 s); tunebench export gguf --quant Q4_K_M (5.0 s)")
    );
    assert_eq!(
        text(t, "gguf", peft).as_deref(),
        Some("peft-Q4_K_M.gguf 50.0 MiB"),
        "a GGUF written after training comes from serving.json"
    );

    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(md.contains("| Unsloth trains faster | trained tokens/s, unsloth ÷ peft | 2.50× |"));
    assert!(md.contains("Fixture CPU @ 2.0GHz, 2 threads, 8.0 GiB, linux"));
    assert!(md.contains("0123456789abcdef"));
    let csv = std::fs::read_to_string(&out.csv).unwrap();
    assert!(csv.starts_with("table,row,column,value\n"));
    assert!(csv.contains("training,1,tokens_per_s,250"), "{csv}");
    assert!(csv.contains("methods,2,tokens_per_s,205"), "{csv}");

    let stems: Vec<String> = out
        .charts
        .iter()
        .map(|c| c.png.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        stems,
        [
            "loss",
            "tokens_per_s",
            "peak_memory",
            "quality",
            "latency",
            "decode_speed",
            "history_tokens_per_s",
            "history_peak_memory"
        ]
    );
    let html = std::fs::read_to_string(&out.html).unwrap();
    assert_eq!(
        html.matches("src=\"data:image/png;base64,").count(),
        out.charts.len()
    );
    for c in &out.charts {
        let png = std::fs::read(&c.png).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5000,
            "{}",
            c.png.display()
        );
        let svg = std::fs::read_to_string(&c.svg).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("</svg>"),
            "{}",
            c.svg.display()
        );
    }
}

#[test]
fn missing_inputs_read_not_measured() {
    let f = common::fixtures();
    let inputs = tb_report::ReportInputs {
        runs: vec![tb_report::load_run(&f.join("runs/20260101T000000Z-peft")).unwrap()],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let out = tb_report::write_report(&inputs, &common::environment(&inputs), dir.path()).unwrap();
    assert_eq!(
        claim_value(&out, "trained tokens/s, unsloth ÷ peft"),
        "not measured"
    );
    assert_eq!(
        claim_value(&out, "chrF at Q4_K_M, unsloth ÷ peft"),
        "not measured"
    );
    assert_eq!(
        claim_value(
            &out,
            "commands and seconds from checkpoint to a served model, unsloth ÷ peft"
        ),
        "not measured"
    );
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(md.contains("not measured"));
    assert_eq!(out.charts.len(), 3, "loss, tokens/s and memory only");
}
