//! The "Answers side by side" section of a report made from the committed fixtures: present in
//! Markdown and HTML, every method column there ("not evaluated" where a method has no
//! evaluation), answers escaped, each question collapsible in HTML; and the per-method
//! generalisation claim next to it.

mod common;

fn report() -> (tempfile::TempDir, tb_report::ReportOutput, String, String) {
    let inputs = common::fixture_inputs();
    let dir = tempfile::tempdir().unwrap();
    let out = tb_report::write_report(&inputs, &common::environment(&inputs), dir.path()).unwrap();
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    let html = std::fs::read_to_string(&out.html).unwrap();
    (dir, out, md, html)
}

/// The part of `doc` from `start` to the next `end` (or the end of `doc`).
fn part<'a>(doc: &'a str, start: &str, end: &str) -> &'a str {
    let from = doc.find(start).unwrap_or_else(|| panic!("no `{start}`"));
    let rest = &doc[from..];
    let to = rest[start.len()..]
        .find(end)
        .map_or(rest.len(), |i| i + start.len());
    &rest[..to]
}

#[test]
fn markdown_shows_each_question_with_every_method() {
    let (_dir, _out, md, _html) = report();
    let section = part(&md, "## Answers side by side", "\n## ");
    assert!(
        section.contains("Showing 2 of 2 evaluated questions"),
        "{section}"
    );
    assert!(section.contains("**i0** (held-out, billing)"), "{section}");
    assert!(
        section.contains("**i1** (paraphrase, billing)"),
        "{section}"
    );
    // Held-out first, then paraphrase.
    assert!(section.find("**i0**") < section.find("**i1**"));
    // The fixtures evaluate no base model and no HF+PEFT peer: their columns say so.
    assert_eq!(
        section.matches("| base | not evaluated |").count(),
        2,
        "{section}"
    );
    assert_eq!(
        section.matches("| hf-peft | not evaluated |").count(),
        2,
        "{section}"
    );
    // peft was evaluated at Q4_K_M and F16: the served Q4_K_M answers are shown, with chrF.
    assert!(
        section.contains("| peft (Q4_K_M) | &lt;script&gt;alert(1)&lt;/script&gt; Tom &amp; Jerry \\| pipe second line | 50.00 |"),
        "{section}"
    );
    assert!(!section.contains("peft (F16)"), "{section}");
    assert!(
        section.contains("| unsloth (Q4_K_M) | a | 40.00 |"),
        "{section}"
    );
    assert!(!section.contains("<script>"), "{section}");
}

#[test]
fn html_has_every_question_collapsible_and_escaped() {
    let (_dir, _out, _md, html) = report();
    let section = part(&html, "<h2>Answers side by side</h2>", "<h2>");
    assert_eq!(section.matches("<details class=\"answers\">").count(), 2);
    assert!(
        section.contains(
            "<summary><code>i0</code> held-out, billing: Faturamı nasıl öderim? &lt;b&gt;</summary>"
        ),
        "{section}"
    );
    // The full answer, newline kept (the cell wraps it with pre-wrap), markup escaped.
    assert!(
        section
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; Tom &amp; Jerry | pipe\nsecond line"),
        "{section}"
    );
    assert!(!html.contains("<script>alert"), "an answer became markup");
    assert!(
        section.contains("<th>hf-peft</th><td class=\"nm\">not evaluated</td>"),
        "{section}"
    );
}

#[test]
fn without_evaluations_the_section_and_the_claim_read_not_measured() {
    let f = common::fixtures();
    let inputs = tb_report::ReportInputs {
        runs: vec![tb_report::load_run(&f.join("runs/20260101T000000Z-peft")).unwrap()],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let out = tb_report::write_report(&inputs, &common::environment(&inputs), dir.path()).unwrap();
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(
        md.contains(
            "## Answers side by side\n\nNo evaluation with results.jsonl was given: not measured."
        ),
        "{md}"
    );
    let claim = out
        .claims
        .iter()
        .find(|c| c.claim == "synthetic data limits generalisation")
        .unwrap();
    assert_eq!(claim.value, "not measured");
    assert!(claim.detail.contains("both splits"), "{}", claim.detail);
}

#[test]
fn the_generalisation_claim_has_one_row_per_method_from_its_q4_k_m_answers() {
    let (_dir, out, _md, _html) = report();
    let rows: Vec<&tb_report::claims::Claim> = out
        .claims
        .iter()
        .filter(|c| c.claim == "synthetic data limits generalisation")
        .collect();
    let measures: Vec<&str> = rows.iter().map(|c| c.measure.as_str()).collect();
    assert_eq!(
        measures,
        [
            "mean sentence chrF, paraphrased ÷ held-out, peft",
            "mean sentence chrF, paraphrased ÷ held-out, unsloth"
        ]
    );
    assert!(
        rows[0].detail.starts_with("peft Q4_K_M:"),
        "{}",
        rows[0].detail
    );
}
