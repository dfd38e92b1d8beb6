//! The table the demo ends with: per model, what its training measured (steps, tokens/s, peak
//! RSS, final train and eval loss, from the trainer's `summary.json`) and how its Q4_K_M GGUF
//! answered (chrF, ROUGE-L, perplexity, from the evaluation's `summary.json`).

use tb_eval::evaluation::{ModelSummary, Summary};
use tb_train::RunSummary;

/// A cell left empty: nothing was measured there (the base model was not trained, the
/// evaluation did not run or failed for that model).
const NONE: &str = "—";

/// One row: a model's name, its training (the base model has none) and its evaluation.
struct Row<'a> {
    name: &'a str,
    train: Option<&'a RunSummary>,
    eval: Option<&'a ModelSummary>,
}

fn number(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => NONE.into(),
    }
}

impl Row<'_> {
    fn cells(&self) -> Vec<String> {
        let t = self.train;
        let e = self.eval;
        vec![
            self.name.to_owned(),
            t.map_or(NONE.into(), |t| t.steps.to_string()),
            number(t.map(|t| t.tokens_per_s), 1),
            t.map_or(NONE.into(), |t| format!("{:.0} MiB", t.peak_rss_mib)),
            number(t.map(|t| t.final_train_loss), 4),
            number(t.and_then(|t| t.eval_loss), 4),
            number(e.and_then(|e| e.chrf), 2),
            number(e.and_then(|e| e.rouge_l), 3),
            number(e.and_then(|e| e.perplexity), 2),
        ]
    }
}

/// The summary as a Markdown table: the evaluated models in the evaluation's order (the base
/// model first), then any trained one the evaluation lacks.
pub(crate) fn summary_table(trained: &[(&str, &RunSummary)], eval: Option<&Summary>) -> String {
    let mut rows: Vec<Row> = Vec::new();
    for m in eval.map(|e| e.models.as_slice()).unwrap_or_default() {
        let train = trained.iter().find(|(n, _)| *n == m.name).map(|(_, s)| *s);
        rows.push(Row {
            name: &m.name,
            train,
            eval: Some(m),
        });
    }
    for (name, s) in trained {
        if !rows.iter().any(|r| r.name == *name) {
            rows.push(Row {
                name,
                train: Some(s),
                eval: None,
            });
        }
    }
    let header = [
        "model",
        "steps",
        "tokens/s",
        "peak RSS",
        "train loss",
        "eval loss",
        "chrF",
        "ROUGE-L",
        "perplexity",
    ];
    let body: Vec<Vec<String>> = rows.iter().map(Row::cells).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            body.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, s)| {
                let w = widths[c];
                if c == 0 {
                    format!("{s:<w$}")
                } else {
                    format!("{s:>w$}")
                }
            })
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    // `|---------|------:|`: numbers right-aligned, every line as wide as the header.
    let rule: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(c, &w)| {
            if c == 0 {
                "-".repeat(w + 2)
            } else {
                format!("{}:", "-".repeat(w + 1))
            }
        })
        .collect();
    let mut out = vec![line(&header), format!("|{}|", rule.join("|"))];
    out.extend(body.iter().map(|r| line(r)));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(steps: usize, tokens_per_s: f64) -> RunSummary {
        serde_json::from_value(serde_json::json!({
            "method": "peft", "run_id": "r", "name": "n", "config_hash": "h", "base": "b",
            "backend": "flex", "steps": steps, "wall_s": 1.0, "train_s": 1.0,
            "trained_tokens": 10, "loss_tokens": 5, "slots": 10,
            "tokens_per_s": tokens_per_s, "loss_tokens_per_s": 1.0, "padding_fraction": 0.0,
            "peak_rss_mib": 3502.4, "final_train_loss": 3.51234, "eval_loss": 3.26,
            "trainable_params": 1,
            "machine": serde_json::to_value(tb_train::Machine::probe()).unwrap(),
            "artifacts": []
        }))
        .unwrap()
    }

    fn model(name: &str, chrf: Option<f64>) -> serde_json::Value {
        serde_json::json!({
            "name": name, "gguf": "x.gguf", "items": 3, "failed": 0, "resumed": 0,
            "chrf": chrf, "bleu": null, "rouge_l": 0.125, "exact_match": 0.0,
            "judge_score": null, "perplexity": 27.17, "top1_accuracy": null,
            "eval_tokens_per_second": null, "prompt_tokens_per_second": null,
            "seconds": 1.0, "error": null
        })
    }

    fn eval() -> Summary {
        serde_json::from_value(serde_json::json!({
            "dataset": "eval.jsonl", "engine": "embedded", "engine_reason": "no Ollama",
            "settings": {"max_tokens": 32, "num_ctx": 2048, "seed": 42, "perplexity": true,
                         "judge": null, "limit": 3},
            "models": [model("base", Some(6.39)), model("peft", Some(6.69)), model("unsloth", None)],
            "failed_items": 0, "total_items": 9, "resumed_items": 0, "seconds": 1.0
        }))
        .unwrap()
    }

    #[test]
    fn one_row_per_model_with_training_and_answer_quality() {
        let (peft, uns) = (run(24, 49.834), run(24, 103.7));
        let e = eval();
        let table = summary_table(&[("peft", &peft), ("unsloth", &uns)], Some(&e));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[0].starts_with("| model "), "{table}");
        assert!(lines[1].starts_with("|---------|------:|"), "{table}");
        let cells = |l: &str| -> Vec<String> {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        };
        assert_eq!(
            cells(lines[2]),
            ["base", "—", "—", "—", "—", "—", "6.39", "0.125", "27.17"]
        );
        assert_eq!(
            cells(lines[3]),
            ["peft", "24", "49.8", "3502 MiB", "3.5123", "3.2600", "6.69", "0.125", "27.17"]
        );
        assert_eq!(cells(lines[4])[6], "—", "no chrF measured: {table}");
        // Every line is as wide as the header.
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{table}");
    }

    #[test]
    fn without_an_evaluation_the_trained_models_are_listed() {
        let peft = run(3, 10.0);
        let table = summary_table(&[("peft", &peft)], None);
        assert_eq!(table.lines().count(), 3, "{table}");
        assert!(table.contains("| peft "), "{table}");
    }
}
