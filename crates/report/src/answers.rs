//! "Answers side by side": for the evaluated questions, the question, the reference answer, and
//! each method's answer with its sentence chrF, read from the evaluations' `results.jsonl`
//! (tb-eval's [`ItemResult`], carried by [`QualityRow::answers`]).
//!
//! Columns are the methods `base`, `peft`, `unsloth` and `hf-peft`, always, then any other
//! evaluated method. A method's answers are those of its Q4_K_M GGUF when it was evaluated at
//! Q4_K_M (the served quant type), else of its first evaluated quant type; a method with no
//! evaluation reads "not evaluated" instead of disappearing.
//!
//! Questions are ordered by split (held-out, paraphrase, other splits, no split) and then by item
//! id. `report.md` shows a fixed sample, the first [`MARKDOWN_PER_SPLIT`] questions of each split
//! in that order, one compact table per question with every text cut at
//! [`MARKDOWN_TEXT_CHARS`] characters (`…` marks a cut); `report.html` has every evaluated
//! question in full, each in a collapsible `<details>` whose `<summary>` is the question.

use tb_eval::evaluation::ItemResult;

use crate::evals::QualityRow;
use crate::report::TableView;
use crate::tables::format_number;
use crate::{html, markdown};

/// Methods that always get a column, in this order.
pub const METHODS: [&str; 4] = ["base", "peft", "unsloth", "hf-peft"];

/// Questions of each split in `report.md`.
pub const MARKDOWN_PER_SPLIT: usize = 5;

/// Longest text (question, reference, answer) in `report.md`, in characters.
pub const MARKDOWN_TEXT_CHARS: usize = 200;

/// The quant type whose answers a method shows when it was evaluated at several.
const SERVED_QUANT: &str = "Q4_K_M";

/// What a cell reads where a method has no evaluation.
pub const NOT_EVALUATED: &str = "not evaluated";

/// One method's column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// `base`, `peft`, `unsloth`, `hf-peft` or another evaluated method.
    pub method: String,
    /// The quant type whose answers are shown; `None`: the method was not evaluated.
    pub quant: Option<String>,
}

impl Column {
    /// `peft (Q4_K_M)`, or the method alone when it was not evaluated.
    pub fn label(&self) -> String {
        match &self.quant {
            Some(q) => format!("{} ({q})", self.method),
            None => self.method.clone(),
        }
    }
}

/// One method's answer to one question.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// The answer and its sentence chrF (`None` when the score is not a number).
    Answer {
        /// The model's answer.
        text: String,
        /// Sentence chrF (0–100).
        chrf: Option<f64>,
    },
    /// The item failed for this model.
    Failed(String),
    /// The method was evaluated, but not on this question.
    NotAsked,
    /// The method was not evaluated at all.
    NotEvaluated,
}

impl Cell {
    /// The cell as shown: text, chrF, and whether it stands for a missing answer.
    fn shown(&self) -> Shown {
        let (text, chrf, missing) = match self {
            Cell::Answer { text, chrf } => (
                text.clone(),
                chrf.map(format_number).unwrap_or_default(),
                false,
            ),
            Cell::Failed(e) => (format!("failed: {e}"), String::new(), false),
            Cell::NotAsked => ("not asked".into(), String::new(), true),
            Cell::NotEvaluated => (NOT_EVALUATED.into(), String::new(), true),
        };
        Shown {
            label: String::new(),
            text,
            chrf,
            missing,
        }
    }
}

/// One row of a question's table as rendered.
struct Shown {
    /// `question`, `reference` or the method's column label.
    label: String,
    text: String,
    chrf: String,
    /// No answer: the method was not evaluated, or not on this question.
    missing: bool,
}

/// One question with every method's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// Item id.
    pub id: String,
    /// `heldout`, `paraphrase`, ... or `None`.
    pub split: Option<String>,
    /// Item category.
    pub category: String,
    /// The user-side text.
    pub prompt: String,
    /// The reference answer.
    pub reference: String,
    /// One cell per [`AnswersView::columns`] entry.
    pub cells: Vec<Cell>,
}

/// The whole section's data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnswersView {
    /// Method columns.
    pub columns: Vec<Column>,
    /// Every evaluated question, in report order (split, then id).
    pub questions: Vec<Question>,
}

/// Sort key of a split: held-out, paraphrase, other splits by name, no split last.
fn split_rank(split: Option<&str>) -> (u8, String) {
    match split {
        Some("heldout") => (0, String::new()),
        Some("paraphrase") => (1, String::new()),
        Some(other) => (2, other.to_string()),
        None => (3, String::new()),
    }
}

/// The split as a reader names it.
fn split_label(split: Option<&str>) -> &str {
    match split {
        Some("heldout") => "held-out",
        Some(s) => s,
        None => "no split",
    }
}

/// The row whose answers `method` shows: its Q4_K_M row with answers, else its first.
fn row_of<'a>(quality: &'a [QualityRow], method: &str) -> Option<&'a QualityRow> {
    let mut rows = quality
        .iter()
        .filter(|r| r.method == method && !r.answers.is_empty());
    let first = rows.clone().next();
    rows.find(|r| r.quant == SERVED_QUANT).or(first)
}

fn cell(row: Option<&QualityRow>, id: &str) -> Cell {
    let Some(row) = row else {
        return Cell::NotEvaluated;
    };
    match row.answers.iter().find(|i| i.id == id) {
        None => Cell::NotAsked,
        Some(ItemResult { error: Some(e), .. }) => Cell::Failed(e.clone()),
        Some(i) => Cell::Answer {
            text: i.answer.clone().unwrap_or_default(),
            chrf: i.scores.map(|s| s.chrf).filter(|c| c.is_finite()),
        },
    }
}

/// Builds the section's data from the quality rows (those of evaluations carry their answers).
pub fn answers_view(quality: &[QualityRow]) -> AnswersView {
    let mut methods: Vec<String> = METHODS.iter().map(|m| m.to_string()).collect();
    for r in quality.iter().filter(|r| !r.answers.is_empty()) {
        if !methods.contains(&r.method) {
            methods.push(r.method.clone());
        }
    }
    let rows: Vec<Option<&QualityRow>> = methods.iter().map(|m| row_of(quality, m)).collect();
    let columns = methods
        .iter()
        .zip(&rows)
        .map(|(m, r)| Column {
            method: m.clone(),
            quant: r.map(|r| r.quant.clone()),
        })
        .collect();
    let mut questions: Vec<Question> = Vec::new();
    for item in rows.iter().flatten().flat_map(|r| &r.answers) {
        if questions.iter().any(|q| q.id == item.id) {
            continue;
        }
        questions.push(Question {
            id: item.id.clone(),
            split: item.split.clone(),
            category: item.category.clone(),
            prompt: item.prompt.clone(),
            reference: item.reference.clone(),
            cells: rows.iter().map(|r| cell(*r, &item.id)).collect(),
        });
    }
    questions.sort_by(|a, b| {
        (split_rank(a.split.as_deref()), &a.id).cmp(&(split_rank(b.split.as_deref()), &b.id))
    });
    AnswersView { columns, questions }
}

/// The questions `report.md` shows: the first [`MARKDOWN_PER_SPLIT`] of each split.
pub fn markdown_sample(view: &AnswersView) -> Vec<&Question> {
    let mut out: Vec<&Question> = Vec::new();
    for q in &view.questions {
        let taken = out.iter().filter(|o| o.split == q.split).count();
        if taken < MARKDOWN_PER_SPLIT {
            out.push(q);
        }
    }
    out
}

/// `text` cut at [`MARKDOWN_TEXT_CHARS`] characters, `…` marking a cut, with `&`, `<` and `>`
/// written as entities so no answer becomes markup (pipes and newlines are escaped by the table).
fn md_text(text: &str) -> String {
    let cut: String = text.chars().take(MARKDOWN_TEXT_CHARS).collect();
    let cut = if cut.len() < text.len() {
        format!("{}…", cut.trim_end())
    } else {
        cut
    };
    cut.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The question's rows: question, reference, then one per method.
fn rows(view: &AnswersView, q: &Question) -> Vec<Shown> {
    let given = |label: &str, text: &str| Shown {
        label: label.into(),
        text: text.into(),
        chrf: String::new(),
        missing: false,
    };
    let mut out = vec![
        given("question", &q.prompt),
        given("reference", &q.reference),
    ];
    for (c, cell) in view.columns.iter().zip(&q.cells) {
        out.push(Shown {
            label: c.label(),
            ..cell.shown()
        });
    }
    out
}

/// The section's Markdown: a line saying what is shown, then a heading and a table per question.
pub fn to_markdown(view: &AnswersView) -> String {
    let sample = markdown_sample(view);
    let mut out = format!(
        "Showing {} of {} evaluated questions: the first {MARKDOWN_PER_SPLIT} of each split by item id, every text cut at {MARKDOWN_TEXT_CHARS} characters (…). report.html has all of them in full.\n\n",
        sample.len(),
        view.questions.len()
    );
    for q in sample {
        out.push_str(&format!(
            "**{}** ({}, {})\n\n",
            markdown::escape(&q.id),
            split_label(q.split.as_deref()),
            markdown::escape(&q.category)
        ));
        let table = TableView {
            headers: vec!["".into(), "text".into(), "chrF".into()],
            rows: rows(view, q)
                .into_iter()
                .map(|r| vec![r.label, md_text(&r.text), r.chrf])
                .collect(),
        };
        out.push_str(&markdown::table(&table));
        out.push('\n');
    }
    out
}

/// The section's HTML: every question in a `<details>` with the question as its `<summary>`.
pub fn to_html(view: &AnswersView) -> String {
    let mut out = format!(
        "<p>All {} evaluated questions; open one to see the reference and every answer in full.</p>\n",
        view.questions.len()
    );
    for q in &view.questions {
        out.push_str(&format!(
            "<details class=\"answers\"><summary><code>{}</code> {}, {}: {}</summary>\n<table>\n<thead><tr><th></th><th>text</th><th>chrF</th></tr></thead>\n<tbody>\n",
            html::escape(&q.id),
            html::escape(split_label(q.split.as_deref())),
            html::escape(&q.category),
            html::escape(&q.prompt)
        ));
        for r in rows(view, q) {
            let class = if r.missing { "nm" } else { "text" };
            out.push_str(&format!(
                "<tr><th>{}</th><td class=\"{class}\">{}</td><td>{}</td></tr>\n",
                html::escape(&r.label),
                html::escape(&r.text),
                html::escape(&r.chrf)
            ));
        }
        out.push_str("</tbody>\n</table>\n</details>\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use tb_eval::evaluation::{EngineKind, Scores, Timings};

    use super::*;

    fn item(id: &str, split: &str, answer: &str, chrf: f64) -> ItemResult {
        ItemResult {
            model: "m".into(),
            engine: EngineKind::Embedded,
            id: id.into(),
            category: "billing".into(),
            split: Some(split.into()),
            prompt: format!("question {id}"),
            reference: format!("reference {id}"),
            answer: Some(answer.into()),
            done_reason: None,
            scores: Some(Scores {
                chrf,
                rouge_l: 0.0,
                exact_match: false,
            }),
            perplexity: None,
            judge: None,
            timings: Timings::default(),
            error: None,
            answered_with: None,
        }
    }

    fn row(method: &str, quant: &str, answers: Vec<ItemResult>) -> QualityRow {
        QualityRow {
            method: method.into(),
            quant: quant.into(),
            answers,
            ..QualityRow::default()
        }
    }

    /// 7 held-out and 6 paraphrase items, ids out of order.
    fn many() -> Vec<ItemResult> {
        let mut v = Vec::new();
        for k in [7, 3, 1, 6, 2, 5, 4] {
            v.push(item(&format!("h-{k}"), "heldout", "a", 10.0));
        }
        for k in [6, 5, 4, 3, 2, 1] {
            v.push(item(&format!("p-{k}"), "paraphrase", "a", 10.0));
        }
        v
    }

    #[test]
    fn the_markdown_sample_is_the_first_five_of_each_split_by_id() {
        let view = answers_view(&[row("peft", "Q4_K_M", many())]);
        assert_eq!(view.questions.len(), 13);
        let ids: Vec<&str> = markdown_sample(&view)
            .iter()
            .map(|q| q.id.as_str())
            .collect();
        assert_eq!(
            ids,
            ["h-1", "h-2", "h-3", "h-4", "h-5", "p-1", "p-2", "p-3", "p-4", "p-5"]
        );
        let md = to_markdown(&view);
        assert!(md.contains("Showing 10 of 13"), "{md}");
        assert!(!md.contains("h-6") && !md.contains("p-6"), "{md}");
        // HTML has every question.
        let html = to_html(&view);
        assert_eq!(html.matches("<details").count(), 13);
        assert!(html.contains("h-7") && html.contains("p-6"));
    }

    #[test]
    fn every_method_has_a_column_and_the_served_quant_is_preferred() {
        let view = answers_view(&[
            row("peft", "F16", vec![item("h-1", "heldout", "from f16", 1.0)]),
            row(
                "peft",
                "Q4_K_M",
                vec![item("h-1", "heldout", "from q4", 2.0)],
            ),
            row(
                "unsloth",
                "Q8_0",
                vec![item("h-1", "heldout", "u", f64::NAN)],
            ),
            row("custom", "?", vec![item("h-2", "heldout", "c", 3.0)]),
            // A damage-study row carries no answers and gives no column of its own.
            row("peft", "Q4_0", vec![]),
        ]);
        let labels: Vec<String> = view.columns.iter().map(Column::label).collect();
        assert_eq!(
            labels,
            [
                "base",
                "peft (Q4_K_M)",
                "unsloth (Q8_0)",
                "hf-peft",
                "custom (?)"
            ]
        );
        let h1 = &view.questions[0];
        assert_eq!(h1.cells[0], Cell::NotEvaluated);
        assert_eq!(
            h1.cells[1],
            Cell::Answer {
                text: "from q4".into(),
                chrf: Some(2.0)
            }
        );
        // A score held as null (NaN) is no figure.
        assert!(matches!(h1.cells[2], Cell::Answer { chrf: None, .. }));
        assert_eq!(h1.cells[3], Cell::NotEvaluated);
        assert_eq!(h1.cells[4], Cell::NotAsked);
        let md = to_markdown(&view);
        assert!(md.contains("| hf-peft | not evaluated |"), "{md}");
    }

    #[test]
    fn answers_are_escaped_and_cut_in_markdown_and_whole_in_html() {
        let nasty = "<script>alert(1)</script> Tom & Jerry | pipe\nnext line";
        let long = "ş".repeat(MARKDOWN_TEXT_CHARS + 50);
        let mut failed = item("h-2", "heldout", "", 0.0);
        failed.error = Some("engine died".into());
        failed.answer = None;
        let view = answers_view(&[row(
            "peft",
            "Q4_K_M",
            vec![
                item("h-1", "heldout", nasty, 5.0),
                item("h-3", "heldout", &long, 1.0),
                failed,
            ],
        )]);
        let md = to_markdown(&view);
        assert!(!md.contains("<script>"), "{md}");
        assert!(
            md.contains("&lt;script&gt;alert(1)&lt;/script&gt; Tom &amp; Jerry \\| pipe next line"),
            "{md}"
        );
        let cut = format!("{}…", "ş".repeat(MARKDOWN_TEXT_CHARS));
        assert!(md.contains(&cut) && !md.contains(&long), "{md}");
        assert!(md.contains("failed: engine died"), "{md}");
        let html = to_html(&view);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; Tom &amp; Jerry | pipe\nnext line"));
        assert!(html.contains(&long), "HTML keeps the whole answer");
        assert!(
            html.contains("<summary><code>h-1</code> held-out, billing: question h-1</summary>")
        );
    }

    #[test]
    fn without_answers_only_the_fixed_columns_remain() {
        let view = answers_view(&[row("peft", "Q4_K_M", vec![])]);
        assert!(view.questions.is_empty());
        assert!(view.columns.iter().all(|c| c.quant.is_none()));
        assert_eq!(view.columns.len(), METHODS.len());
    }
}
