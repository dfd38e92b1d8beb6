//! Puts a report together: tables, claims, charts and the environment, rendered as
//! `report.md`, a self-contained `report.html` and `tables.csv` in one folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use polars::prelude::DataFrame;
use tb_gguf::fsio::write_atomic;

use crate::answers::{answers_view, AnswersView, MARKDOWN_PER_SPLIT};
use crate::bench::PEER_BACKEND;
use crate::charts::CategorySeries;
use crate::charts::{render, Chart, ChartFiles, ChartKind, LossCurve};
use crate::claims::{claims, claims_frame, Claim};
use crate::environment::Environment;
use crate::error::{io, Result};
use crate::history::{commits_in_order, HistoryRow};
use crate::memory::{self, MemoryKind};
use crate::runs::Run;
use crate::tables::{
    build_tables, display_rows, find_row, long_csv, number, text, ReportInputs, Tables,
    BEFORE_LABEL,
};
use crate::trend::{history_charts, rows_with_configs, MEMORY_STEM, TOKENS_STEM};
use crate::{html, markdown};

/// A rendered table: headers and formatted cells.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableView {
    /// Column names.
    pub headers: Vec<String>,
    /// Formatted rows.
    pub rows: Vec<Vec<String>>,
}

impl TableView {
    /// From a DataFrame.
    pub fn from_frame(df: &DataFrame) -> Self {
        let (headers, rows) = display_rows(df);
        Self { headers, rows }
    }
}

/// One section of the report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    /// Heading.
    pub title: String,
    /// Paragraph under the heading.
    pub text: String,
    /// Table, if any.
    pub table: Option<TableView>,
    /// Charts, if any.
    pub charts: Vec<ChartFiles>,
    /// Preformatted text (the resolved config).
    pub code: Option<String>,
    /// Questions with each method's answer ("Answers side by side").
    pub answers: Option<AnswersView>,
}

/// What [`write_report`] produced.
#[derive(Debug, Clone)]
pub struct ReportOutput {
    /// The report folder.
    pub dir: PathBuf,
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// `tables.csv`.
    pub csv: PathBuf,
    /// Charts written.
    pub charts: Vec<ChartFiles>,
    /// The tables.
    pub tables: Tables,
    /// The claim table.
    pub claims: Vec<Claim>,
}

const QUANT_ORDER: [&str; 15] = [
    "F32", "BF16", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M",
    "Q4_K", "Q4_K_S", "Q4_1", "Q4_0",
];

fn quant_categories(df: &DataFrame) -> Vec<String> {
    let present: BTreeSet<String> = (0..df.height())
        .filter_map(|i| text(df, "quant", i))
        .collect();
    let mut out: Vec<String> = QUANT_ORDER
        .iter()
        .filter(|q| present.contains(**q))
        .map(|q| q.to_string())
        .collect();
    out.extend(
        present
            .into_iter()
            .filter(|q| !QUANT_ORDER.contains(&q.as_str())),
    );
    out
}

/// Series per `method (engine)` of `column` over quant types; `None` when nothing is measured.
fn per_quant(df: &DataFrame, column: &str) -> Option<(Vec<String>, CategorySeries)> {
    let quants = quant_categories(df);
    let mut names: Vec<String> = Vec::new();
    for i in 0..df.height() {
        if number(df, column, i).is_some() {
            let name = format!(
                "{} ({})",
                text(df, "method", i).unwrap_or_default(),
                text(df, "engine", i).unwrap_or_default()
            );
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        return None;
    }
    let series = names
        .iter()
        .map(|name| {
            let values = quants
                .iter()
                .map(|q| {
                    (0..df.height()).find_map(|i| {
                        let n = format!(
                            "{} ({})",
                            text(df, "method", i).unwrap_or_default(),
                            text(df, "engine", i).unwrap_or_default()
                        );
                        (n == *name && text(df, "quant", i).as_deref() == Some(q))
                            .then(|| number(df, column, i))
                            .flatten()
                    })
                })
                .collect();
            (name.clone(), values)
        })
        .collect();
    Some((quants, series))
}

/// One loss curve per run with metrics (`<method> #<k>` in run order): every logged step's
/// loss, and the eval losses the metrics carry; the summary's final eval loss is placed at the
/// last step when no metrics line carries it there.
fn loss_curves(runs: &[Run]) -> Vec<LossCurve> {
    let mut seen = std::collections::HashMap::<String, usize>::new();
    runs.iter()
        .filter(|r| !r.metrics.is_empty())
        .map(|r| {
            let k = seen.entry(r.summary.method.clone()).or_default();
            *k += 1;
            let train = r.metrics.iter().map(|m| (m.step, m.loss)).collect();
            let mut eval: Vec<(usize, f64)> = r
                .metrics
                .iter()
                .filter_map(|m| m.eval_loss.map(|e| (m.step, e)))
                .collect();
            let last = r.metrics.iter().map(|m| m.step).max().unwrap_or(0);
            let last = last.max(r.summary.steps);
            if let Some(e) = r.summary.eval_loss {
                if !eval.iter().any(|p| p.0 == last) {
                    eval.push((last, e));
                }
            }
            LossCurve {
                name: format!("{} #{}", r.summary.method, k),
                train,
                eval,
            }
        })
        .collect()
}

/// What the peak-memory figures of the report's runs and peer results measure.
fn memory_kinds(inputs: &ReportInputs) -> BTreeSet<MemoryKind> {
    let mut kinds: BTreeSet<MemoryKind> = inputs
        .runs
        .iter()
        .map(|r| MemoryKind::of_backend(&r.summary.backend))
        .collect();
    if !inputs.peers.is_empty() {
        kinds.insert(MemoryKind::of_backend(PEER_BACKEND));
    }
    kinds
}

/// The history rows the report charts: those of its runs' configs (all when it has no runs).
fn report_history(inputs: &ReportInputs) -> Vec<HistoryRow> {
    if inputs.runs.is_empty() {
        return inputs.history.clone();
    }
    let configs: BTreeSet<String> = inputs
        .runs
        .iter()
        .map(|r| r.summary.config_hash.clone())
        .collect();
    rows_with_configs(&inputs.history, &configs)
}

/// The history section: what the charts show, or why there are none.
fn history_section(inputs: &ReportInputs, charts: &[ChartFiles]) -> Section {
    let rows = report_history(inputs);
    let commits = commits_in_order(&rows).len();
    let scope = if inputs.runs.is_empty() {
        "every row of the history"
    } else {
        "the history rows of this report's experiment configs"
    };
    let text = match commits {
        0 if inputs.history.is_empty() => "No run history was given: `tunebench report --history` and `tunebench bench` record runs in reports/history.parquet.".to_string(),
        0 => "The history has no runs of this report's experiment configs yet: `tunebench report --history` records them.".to_string(),
        1 => format!("Median trained tokens/s and peak memory per commit, one line per method and machine ({scope}). Only one commit is recorded so far: a trend needs runs at ≥ 2 commits."),
        n => format!("Median trained tokens/s and peak memory per commit over {n} commits (oldest first, short hashes), one line per method and machine ({scope}); compare lines of one machine only."),
    };
    Section {
        title: "History".into(),
        text,
        charts: chart_files(charts, &[TOKENS_STEM, MEMORY_STEM]),
        ..Section::default()
    }
}

/// The charts this data allows (a chart without any data is left out).
pub fn charts_for(inputs: &ReportInputs, tables: &Tables) -> Vec<Chart> {
    let mut out = Vec::new();
    let curves = loss_curves(&inputs.runs);
    if !curves.is_empty() {
        out.push(Chart {
            stem: "loss".into(),
            title: "Training and eval loss".into(),
            x_label: "optimizer step".into(),
            y_label: "cross-entropy loss (nats/token)".into(),
            kind: ChartKind::Loss(curves),
        });
    }
    let kinds = memory_kinds(inputs);
    let m = &tables.methods;
    let methods: Vec<String> = (0..m.height())
        .filter_map(|i| text(m, "method", i))
        .collect();
    if !methods.is_empty() {
        let col = |c: &str| -> Vec<Option<f64>> {
            methods
                .iter()
                .map(|name| find_row(m, "method", name).and_then(|i| number(m, c, i)))
                .collect()
        };
        out.push(Chart {
            stem: "tokens_per_s".into(),
            title: "Training throughput (median of repeats)".into(),
            x_label: "method".into(),
            y_label: "tokens per second (tok/s)".into(),
            kind: ChartKind::Bars {
                categories: methods.clone(),
                series: vec![
                    ("trained tokens/s".into(), col("tokens_per_s")),
                    ("loss-bearing tokens/s".into(), col("loss_tokens_per_s")),
                ],
            },
        });
        out.push(Chart {
            stem: "peak_memory".into(),
            title: "Peak memory of the trainer process (median of repeats)".into(),
            x_label: "method".into(),
            y_label: memory::axis_label(&kinds),
            kind: ChartKind::Bars {
                categories: methods.clone(),
                series: vec![(memory::series_name(&kinds).into(), col("peak_rss_mib"))],
            },
        });
    }
    let q = &tables.quality;
    let quality = per_quant(q, "chrf")
        .map(|d| (d, "chrF (0–100, higher is better)"))
        .or_else(|| {
            per_quant(q, "perplexity").map(|d| (d, "reference perplexity (lower is better)"))
        });
    if let Some(((categories, series), y)) = quality {
        out.push(Chart {
            stem: "quality".into(),
            title: "Answer quality per quant type".into(),
            x_label: "GGUF quant type".into(),
            y_label: y.into(),
            kind: ChartKind::Bars { categories, series },
        });
    }
    let s = &tables.inference;
    if let Some((categories, series)) = per_quant(s, "latency_median_s") {
        out.push(Chart {
            stem: "latency".into(),
            title: "Answer latency per quant type (median)".into(),
            x_label: "GGUF quant type".into(),
            y_label: "seconds per answer (s)".into(),
            kind: ChartKind::Bars { categories, series },
        });
    }
    if let Some((categories, series)) = per_quant(s, "decode_tokens_per_s") {
        out.push(Chart {
            stem: "decode_speed".into(),
            title: "Decode speed per quant type".into(),
            x_label: "GGUF quant type".into(),
            y_label: "generated tokens per second (tok/s)".into(),
            kind: ChartKind::Bars { categories, series },
        });
    }
    out.extend(history_charts(&report_history(inputs)));
    out
}

fn chart_files(files: &[ChartFiles], stems: &[&str]) -> Vec<ChartFiles> {
    files
        .iter()
        .filter(|f| {
            stems
                .iter()
                .any(|s| f.png.file_stem().is_some_and(|n| n == *s))
        })
        .cloned()
        .collect()
}

/// The before/after section: what the base row is and what tokenisation did to each run's
/// training set, in words.
fn before_after_section(inputs: &ReportInputs, tables: &Tables) -> Section {
    let measured = inputs.runs.iter().any(|r| r.base_eval.is_some());
    let mut text = if inputs.runs.is_empty() {
        "No training runs were given: not measured.".to_string()
    } else if measured {
        format!("The {BEFORE_LABEL} row is the base model's eval loss on the same eval examples as the runs' eval loss (`tunebench eval-loss --run`, PEFT-style batches, no LoRA branch); perplexity = exp(eval loss), perplexity_vs_base = the run's perplexity ÷ the base's (below 1: fine-tuning lowered it).")
    } else {
        format!("The base model's eval loss was not measured for these runs (`tunebench eval-loss --run DIR` writes it), so the {BEFORE_LABEL} row reads \"not measured\"; perplexity = exp(eval loss).")
    };
    for r in &inputs.runs {
        let s = &r.summary;
        match &s.data {
            Some(d) => text.push_str(&format!(
                " {} ({}): of {} training examples, {} were cut at {} tokens and {} dropped.",
                s.method, s.run_id, d.records, d.truncated, d.max_seq_len, d.dropped
            )),
            None => text.push_str(&format!(
                " {} ({}): cut and dropped examples not recorded.",
                s.method, s.run_id
            )),
        }
    }
    Section {
        title: "Before and after fine-tuning".into(),
        text,
        table: Some(TableView::from_frame(&tables.before_after)),
        ..Section::default()
    }
}

/// Merged or adapter serving (see [`crate::serving`]).
fn serving_section(inputs: &ReportInputs) -> Section {
    let table = crate::serving::serving_view(&inputs.quality, &inputs.speed);
    let text = match table {
        Some(_) => "The same fine-tune served two ways: merged into the base and quantized (one GGUF), or the quantized base GGUF with the adapter as a LoRA GGUF applied at load (Ollama's `ADAPTER`). Same questions, same engine; chrF is corpus chrF of the answers, perplexity the reference answers' (embedded engine, the LoRA applied the same way), decode tokens/s and load s as the engine reported them, MiB to ship the GGUF bytes (base + adapter).",
        None => "No evaluation served an adapter unmerged (`tunebench eval --model NAME=BASE.gguf --adapter NAME=LORA.gguf`): not measured.",
    };
    Section {
        title: "Merged or adapter serving".into(),
        text: text.into(),
        table,
        ..Section::default()
    }
}

/// The answers side by side (see [`crate::answers`] for the sample and the columns).
fn answers_section(inputs: &ReportInputs) -> Section {
    let view = answers_view(&inputs.quality);
    let text = if view.questions.is_empty() {
        "No evaluation with results.jsonl was given: not measured.".to_string()
    } else {
        format!("The question, the reference answer and each method's answer with its sentence chrF (0–100) against the reference. A method shows the answers of its Q4_K_M GGUF when evaluated at Q4_K_M, else of its first evaluated quant type; \"not evaluated\" means the report has no evaluation of that method. report.md shows the first {MARKDOWN_PER_SPLIT} questions of each split by item id; report.html has every evaluated question, each collapsible.")
    };
    Section {
        title: "Answers side by side".into(),
        text,
        answers: (!view.questions.is_empty()).then_some(view),
        ..Section::default()
    }
}

fn sections(
    inputs: &ReportInputs,
    tables: &Tables,
    claims: &[Claim],
    charts: &[ChartFiles],
    env: &Environment,
) -> Vec<Section> {
    let claim_view = TableView {
        headers: vec![
            "claim".into(),
            "measured".into(),
            "value".into(),
            "from".into(),
        ],
        rows: claims
            .iter()
            .map(|c| {
                vec![
                    c.claim.into(),
                    c.measure.clone(),
                    c.value.clone(),
                    c.detail.clone(),
                ]
            })
            .collect(),
    };
    let empty = |df: &DataFrame, what: &str| {
        if df.height() == 0 {
            format!("No {what} were given: not measured.")
        } else {
            String::new()
        }
    };
    vec![
        Section {
            title: "Claims → measured".into(),
            text: "Each sentence of the team's comparison, with this run's figure. Ratios use medians over repeats; \"not measured\" means the inputs were not part of this report.".into(),
            table: Some(claim_view),
            ..Section::default()
        },
        Section {
            title: "Training".into(),
            text: format!(
                "One row per run. tokens_per_s counts real (non-padding) tokens after the warm-up steps; {} {}",
                memory::column_note(&memory_kinds(inputs)),
                empty(&tables.training, "training runs")
            ),
            table: Some(TableView::from_frame(&tables.training)),
            charts: chart_files(charts, &["loss"]),
            ..Section::default()
        },
        before_after_section(inputs, tables),
        Section {
            title: "Per method (medians)".into(),
            text: "runs = repeats the medians are taken over.".into(),
            table: Some(TableView::from_frame(&tables.methods)),
            charts: chart_files(charts, &["tokens_per_s", "peak_memory"]),
            ..Section::default()
        },
        history_section(inputs, charts),
        Section {
            title: "Quality per method and quant type".into(),
            text: format!(
                "chrF and bleu are corpus chrF and corpus BLEU (0–100, as sacrebleu), rouge_l and exact_match are rates (0–1), judge_score is the mean 1–5 grade of `eval --judge`, chrf_heldout/chrf_paraphrase are mean sentence chrF per split. {}",
                empty(&tables.quality, "evaluations")
            ),
            table: Some(TableView::from_frame(&tables.quality)),
            charts: chart_files(charts, &["quality"]),
            ..Section::default()
        },
        Section {
            title: "Inference speed per quant type".into(),
            text: empty(&tables.inference, "evaluations"),
            table: Some(TableView::from_frame(&tables.inference)),
            charts: chart_files(charts, &["latency", "decode_speed"]),
            ..Section::default()
        },
        serving_section(inputs),
        answers_section(inputs),
        Section {
            title: "Environment".into(),
            table: Some(TableView {
                headers: vec!["".into(), "value".into()],
                rows: env.rows().into_iter().map(|(a, b)| vec![a, b]).collect(),
            }),
            code: inputs.runs.iter().find_map(|r| r.config_toml.clone()),
            text: "The resolved experiment config of the first run follows.".into(),
            ..Section::default()
        },
    ]
}

/// Writes `report.md`, `report.html`, `tables.csv`, the per-table CSVs and the charts (PNG and
/// SVG) into `out_dir`.
pub fn write_report(
    inputs: &ReportInputs,
    env: &Environment,
    out_dir: &Path,
) -> Result<ReportOutput> {
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let tables = build_tables(inputs)?;
    let claims = claims(&tables);
    let claims_df = claims_frame(&claims)?;
    let mut files = Vec::new();
    for chart in charts_for(inputs, &tables) {
        files.push(render(&chart, out_dir)?);
    }
    let sections = sections(inputs, &tables, &claims, &files, env);
    let title = "tunebench report";
    let md_path = out_dir.join("report.md");
    write_atomic(
        &md_path,
        markdown::render(title, &sections, out_dir).as_bytes(),
    )?;
    let html_path = out_dir.join("report.html");
    write_atomic(&html_path, html::render(title, &sections)?.as_bytes())?;
    let named: [(&str, &DataFrame); 6] = [
        ("claims", &claims_df),
        ("training", &tables.training),
        ("methods", &tables.methods),
        ("before_after", &tables.before_after),
        ("quality", &tables.quality),
        ("inference", &tables.inference),
    ];
    let csv_path = out_dir.join("tables.csv");
    write_atomic(&csv_path, long_csv(&named).as_bytes())?;
    Ok(ReportOutput {
        dir: out_dir.to_path_buf(),
        markdown: md_path,
        html: html_path,
        csv: csv_path,
        charts: files,
        tables,
        claims,
    })
}
