//! The report's tables as polars DataFrames: one row per training run (and peer result), the
//! per-method medians, quality per method × quant type, and inference speed per quant type.
//! Missing numbers are nulls, rendered as "not measured".

use polars::prelude::*;

use crate::bench::PEER_BACKEND;
use crate::error::{polars as perr, Result};
use crate::evals::{QualityRow, SpeedRow};
use crate::history::HistoryRow;
use crate::runs::{PeerResult, Run};

/// Everything a report is made from.
#[derive(Debug, Clone, Default)]
pub struct ReportInputs {
    /// Training runs (tunebench trainers).
    pub runs: Vec<Run>,
    /// HF+PEFT peer results.
    pub peers: Vec<PeerResult>,
    /// Quality rows from evaluations.
    pub quality: Vec<QualityRow>,
    /// Inference-speed rows from evaluations.
    pub speed: Vec<SpeedRow>,
    /// Engine sentences from evaluations.
    pub engine_notes: Vec<String>,
    /// Rows of `reports/history.parquet`: the report charts tokens/s and peak memory over
    /// commits for the rows of its runs' configs (all rows when it has no runs).
    pub history: Vec<HistoryRow>,
}

/// The report's tables.
#[derive(Debug, Clone)]
pub struct Tables {
    /// One row per run or peer result.
    pub training: DataFrame,
    /// Medians per method (`runs` = repeats).
    pub methods: DataFrame,
    /// Quality per method × quant type × engine.
    pub quality: DataFrame,
    /// Inference speed per method × quant type × engine.
    pub inference: DataFrame,
    /// Eval loss and perplexity of the base model (before) and of each run (after), with what
    /// tokenisation cut or dropped from each run's training set.
    pub before_after: DataFrame,
}

/// The label of the base model's row in [`before_after_table`].
pub const BEFORE_LABEL: &str = "base (before)";

const MIB: f64 = 1024.0 * 1024.0;

/// The run's GGUF files with their sizes: those its summary lists and those written later on
/// its way to serving (`serving.json`), each once.
fn gguf_sizes(run: &Run) -> String {
    let mut files: Vec<(String, u64)> = run
        .summary
        .artifacts
        .iter()
        .filter(|a| a.path.ends_with(".gguf"))
        .map(|a| {
            (
                a.path.rsplit('/').next().unwrap_or(&a.path).to_string(),
                a.bytes,
            )
        })
        .collect();
    for step in &run.serving.steps {
        for (name, bytes) in &step.ggufs {
            if !files.iter().any(|(n, _)| n == name) {
                files.push((name.clone(), *bytes));
            }
        }
    }
    files
        .iter()
        .map(|(name, bytes)| format!("{name} {:.1} MiB", *bytes as f64 / MIB))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Commands from the trained adapter to a servable GGUF, and their seconds (`None` when the
/// run has no `serving.json`).
fn serving_path(run: &Run) -> (Option<i64>, Option<f64>, String) {
    let steps = &run.serving.steps;
    if steps.is_empty() {
        return (None, None, String::new());
    }
    let commands = steps
        .iter()
        .map(|s| format!("{} ({:.1} s)", s.command, s.seconds))
        .collect::<Vec<_>>()
        .join("; ");
    (
        Some(steps.len() as i64),
        Some(run.serving.seconds()),
        commands,
    )
}

/// One row per run, then one per peer result.
pub fn training_table(runs: &[Run], peers: &[PeerResult]) -> Result<DataFrame> {
    let mut method = Vec::new();
    let mut run_id = Vec::new();
    let mut backend = Vec::new();
    let mut steps = Vec::new();
    let mut wall = Vec::new();
    let mut train = Vec::new();
    let mut tokens = Vec::new();
    let mut tps = Vec::new();
    let mut ltps = Vec::new();
    let mut rss = Vec::new();
    let mut padding = Vec::new();
    let mut loss = Vec::new();
    let mut eval = Vec::new();
    let mut gguf = Vec::new();
    let mut serve_commands = Vec::new();
    let mut serve_s = Vec::new();
    let mut serve_path = Vec::new();
    for r in runs {
        let s = &r.summary;
        method.push(s.method.clone());
        run_id.push(s.run_id.clone());
        backend.push(s.backend.clone());
        steps.push(s.steps as i64);
        wall.push(Some(s.wall_s));
        train.push(Some(s.train_s));
        tokens.push(s.trained_tokens as i64);
        tps.push(Some(s.tokens_per_s));
        ltps.push(Some(s.loss_tokens_per_s));
        rss.push(Some(s.peak_rss_mib));
        padding.push(Some(s.padding_fraction));
        loss.push(Some(s.final_train_loss));
        eval.push(s.eval_loss);
        gguf.push(gguf_sizes(r));
        let (n, secs, path) = serving_path(r);
        serve_commands.push(n);
        serve_s.push(secs);
        serve_path.push(path);
    }
    for (i, p) in peers.iter().enumerate() {
        method.push(p.method.clone());
        run_id.push(if p.run_id.is_empty() {
            format!("{}-{}", p.method, i + 1)
        } else {
            p.run_id.clone()
        });
        backend.push(PEER_BACKEND.to_string());
        steps.push(p.steps as i64);
        wall.push(None);
        train.push(Some(p.seconds));
        tokens.push(p.tokens as i64);
        tps.push(Some(p.tokens_per_s));
        ltps.push(Some(p.loss_tokens_per_s));
        rss.push(Some(p.peak_rss_mib));
        padding.push(None);
        loss.push(p.last_loss);
        eval.push(None);
        gguf.push(String::new());
        serve_commands.push(None);
        serve_s.push(None);
        serve_path.push(String::new());
    }
    df!(
        "method" => method,
        "run_id" => run_id,
        "backend" => backend,
        "steps" => steps,
        "wall_s" => wall,
        "train_s" => train,
        "trained_tokens" => tokens,
        "tokens_per_s" => tps,
        "loss_tokens_per_s" => ltps,
        "peak_rss_mib" => rss,
        "padding_fraction" => padding,
        "final_train_loss" => loss,
        "eval_loss" => eval,
        "gguf" => gguf,
        "serve_commands" => serve_commands,
        "serve_s" => serve_s,
        "serve_path" => serve_path,
    )
    .map_err(perr("building the training table"))
}

/// One row per distinct base measurement (`base_eval_loss.json` of the runs, one per config;
/// a row of nulls, "not measured", when runs have none), then one row per run: eval loss,
/// perplexity `exp(eval loss)`, perplexity relative to the base of the same config, and the
/// training set's `max_seq_len`, records, cut and dropped examples (nulls in summaries that
/// predate those counts).
pub fn before_after_table(runs: &[Run]) -> Result<DataFrame> {
    let mut bases: Vec<&tb_train::BaseEvalLoss> = Vec::new();
    for b in runs.iter().filter_map(|r| r.base_eval.as_ref()) {
        if !bases.iter().any(|x| x.config_hash == b.config_hash) {
            bases.push(b);
        }
    }
    let mut model = Vec::new();
    let mut run_id = Vec::new();
    let mut examples: Vec<Option<i64>> = Vec::new();
    let mut loss = Vec::new();
    let mut ppl = Vec::new();
    let mut vs_base = Vec::new();
    let counts = |f: fn(&tb_train::TrainData) -> usize| {
        runs.iter()
            .map(|r| r.summary.data.as_ref().map(|d| f(d) as i64))
            .collect::<Vec<_>>()
    };
    let (mut seq, mut records, mut cut, mut dropped) = (
        counts(|d| d.max_seq_len),
        counts(|d| d.records),
        counts(|d| d.truncated),
        counts(|d| d.dropped),
    );
    let head = bases.len().max(usize::from(!runs.is_empty()));
    for i in 0..head {
        let b = bases.get(i);
        model.push(BEFORE_LABEL.to_string());
        run_id.push(String::new());
        examples.push(b.map(|b| b.eval_examples as i64));
        loss.push(b.map(|b| b.eval_loss));
        ppl.push(b.map(|b| b.perplexity()));
        vs_base.push(b.map(|_| 1.0));
    }
    for r in runs {
        let s = &r.summary;
        let base = bases.iter().find(|b| b.config_hash == s.config_hash);
        model.push(s.method.clone());
        run_id.push(s.run_id.clone());
        examples.push(base.map(|b| b.eval_examples as i64));
        loss.push(s.eval_loss);
        ppl.push(s.eval_loss.map(f64::exp));
        vs_base.push(s.eval_loss.zip(base).map(|(e, b)| e.exp() / b.perplexity()));
    }
    for column in [&mut seq, &mut records, &mut cut, &mut dropped] {
        column.splice(0..0, std::iter::repeat_n(None, head));
    }
    df!(
        "model" => model,
        "run_id" => run_id,
        "eval_examples" => examples,
        "eval_loss" => loss,
        "perplexity" => ppl,
        "perplexity_vs_base" => vs_base,
        "max_seq_len" => seq,
        "train_records" => records,
        "cut" => cut,
        "dropped" => dropped,
    )
    .map_err(perr("building the before/after table"))
}

/// Medians per method over its repeats (`runs` counts them), ordered peft, unsloth, hf-peft,
/// then others alphabetically.
pub fn methods_table(training: &DataFrame) -> Result<DataFrame> {
    let df = training
        .clone()
        .lazy()
        .group_by([col("method")])
        .agg([
            len().cast(DataType::Int64).alias("runs"),
            col("train_s").median().alias("train_s"),
            col("tokens_per_s").median().alias("tokens_per_s"),
            col("loss_tokens_per_s").median().alias("loss_tokens_per_s"),
            col("peak_rss_mib").median().alias("peak_rss_mib"),
            col("final_train_loss").median().alias("final_train_loss"),
            col("serve_commands").median().alias("serve_commands"),
            col("serve_s").median().alias("serve_s"),
            col("eval_loss").median().alias("eval_loss"),
        ])
        .with_column(
            when(col("method").eq(lit("peft")))
                .then(lit(0i32))
                .when(col("method").eq(lit("unsloth")))
                .then(lit(1i32))
                .when(col("method").eq(lit("hf-peft")))
                .then(lit(2i32))
                .otherwise(lit(3i32))
                .alias("order"),
        )
        .sort(["order", "method"], SortMultipleOptions::default())
        .select([
            col("method"),
            col("runs"),
            col("train_s"),
            col("tokens_per_s"),
            col("loss_tokens_per_s"),
            col("peak_rss_mib"),
            col("final_train_loss"),
            col("eval_loss"),
            col("serve_commands"),
            col("serve_s"),
        ])
        .collect()
        .map_err(perr("medians per method"))?;
    Ok(df)
}

/// Quality per method × quant type × engine.
pub fn quality_table(rows: &[QualityRow]) -> Result<DataFrame> {
    let s = |f: fn(&QualityRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let o = |f: fn(&QualityRow) -> Option<f64>| rows.iter().map(f).collect::<Vec<_>>();
    df!(
        "method" => s(|r| r.method.clone()),
        "quant" => s(|r| r.quant.clone()),
        "engine" => s(|r| r.engine.clone()),
        "items" => rows.iter().map(|r| r.items as i64).collect::<Vec<_>>(),
        "failed" => rows.iter().map(|r| r.failed as i64).collect::<Vec<_>>(),
        "chrf" => o(|r| r.chrf),
        "bleu" => o(|r| r.bleu),
        "rouge_l" => o(|r| r.rouge_l),
        "exact_match" => o(|r| r.exact_match),
        "judge_score" => o(|r| r.judge_score),
        "perplexity" => o(|r| r.perplexity),
        "top1_accuracy" => o(|r| r.top1_accuracy),
        "chrf_heldout" => o(|r| r.chrf_heldout),
        "chrf_paraphrase" => o(|r| r.chrf_paraphrase),
    )
    .map_err(perr("building the quality table"))
}

/// Inference speed per method × quant type × engine.
pub fn inference_table(rows: &[SpeedRow]) -> Result<DataFrame> {
    let s = |f: fn(&SpeedRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    let o = |f: fn(&SpeedRow) -> Option<f64>| rows.iter().map(f).collect::<Vec<_>>();
    df!(
        "method" => s(|r| r.method.clone()),
        "quant" => s(|r| r.quant.clone()),
        "engine" => s(|r| r.engine.clone()),
        "gguf_mib" => o(|r| r.gguf_bytes.map(|b| b as f64 / MIB)),
        "prompt_tokens_per_s" => o(|r| r.prompt_tokens_per_s),
        "decode_tokens_per_s" => o(|r| r.decode_tokens_per_s),
        "load_s" => o(|r| r.load_s),
        "latency_median_s" => o(|r| r.latency_median_s),
    )
    .map_err(perr("building the inference table"))
}

/// Builds all tables.
pub fn build_tables(inputs: &ReportInputs) -> Result<Tables> {
    let training = training_table(&inputs.runs, &inputs.peers)?;
    let methods = methods_table(&training)?;
    Ok(Tables {
        training,
        methods,
        quality: quality_table(&inputs.quality)?,
        inference: inference_table(&inputs.speed)?,
        before_after: before_after_table(&inputs.runs)?,
    })
}

/// A number in `column` at `row`, if present and not null.
pub fn number(df: &DataFrame, column: &str, row: usize) -> Option<f64> {
    df.column(column).ok()?.get(row).ok()?.extract::<f64>()
}

/// A string in `column` at `row`.
pub fn text(df: &DataFrame, column: &str, row: usize) -> Option<String> {
    let v = df.column(column).ok()?.get(row).ok()?;
    v.get_str().map(str::to_string)
}

/// The row whose `column` equals `value`.
pub fn find_row(df: &DataFrame, column: &str, value: &str) -> Option<usize> {
    (0..df.height()).find(|&i| text(df, column, i).as_deref() == Some(value))
}

/// Formats a cell for Markdown/HTML: nulls read "not measured", floats get a precision that
/// fits their size.
pub fn format_cell(value: &AnyValue<'_>) -> String {
    match value {
        AnyValue::Null => "not measured".into(),
        AnyValue::Float64(v) => format_number(*v),
        AnyValue::Float32(v) => format_number(f64::from(*v)),
        other => match other.get_str() {
            Some(s) => s.to_string(),
            None => other.to_string(),
        },
    }
}

/// A float with 4 significant-ish digits.
pub fn format_number(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        v.to_string()
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// Header and formatted rows of a table.
pub fn display_rows(df: &DataFrame) -> (Vec<String>, Vec<Vec<String>>) {
    let headers = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let rows = (0..df.height())
        .map(|i| {
            df.columns()
                .iter()
                .map(|c| c.get(i).map(|v| format_cell(&v)).unwrap_or_default())
                .collect()
        })
        .collect();
    (headers, rows)
}

/// All tables in one long CSV: `table,row,column,value` (values unformatted, nulls empty).
pub fn long_csv(tables: &[(&str, &DataFrame)]) -> String {
    let mut out = String::from("table,row,column,value\n");
    for (name, df) in tables {
        for i in 0..df.height() {
            for c in df.columns() {
                let v = c.get(i).ok();
                let value = match v {
                    None | Some(AnyValue::Null) => String::new(),
                    Some(v) => match v.get_str() {
                        Some(s) => s.to_string(),
                        None => v.to_string(),
                    },
                };
                out.push_str(&format!(
                    "{},{},{},{}\n",
                    csv_field(name),
                    i,
                    csv_field(c.name().as_str()),
                    csv_field(&value)
                ));
            }
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
