//! "Merged or adapter": the same fine-tune served two ways, as users of Ollama must choose: the
//! LoRA merged into the base and quantized (one GGUF, `FROM merged.gguf`), or the quantized base
//! with the adapter as its own LoRA GGUF applied at load (`FROM base.gguf` + `ADAPTER
//! lora.gguf`). An evaluated model with an adapter is the method `<method>+lora` (see
//! [`crate::evals`]); each is paired with the merged model of the same method, quant type and
//! engine, and compared on answer chrF, reference perplexity, decode tokens/s, load time and
//! bytes to ship.

use crate::evals::{QualityRow, SpeedRow};
use crate::report::TableView;
use crate::tables::format_number;

/// Appended to a method's name for its unmerged (base + LoRA GGUF) evaluation.
pub const ADAPTER_SUFFIX: &str = "+lora";

/// The row "merged" or "adapter" figures come from.
struct Served<'a> {
    quality: &'a QualityRow,
    speed: Option<&'a SpeedRow>,
}

impl Served<'_> {
    fn cells(&self, label: String) -> Vec<String> {
        let s = self.speed;
        let mib = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
        let size = match s.and_then(|s| s.gguf_bytes) {
            Some(g) => match s.and_then(|s| s.adapter_bytes) {
                Some(a) => format!("{} + {}", mib(g), mib(a)),
                None => mib(g),
            },
            None => NOT_MEASURED.into(),
        };
        vec![
            label,
            opt(self.quality.chrf),
            opt(self.quality.perplexity),
            opt(s.and_then(|s| s.decode_tokens_per_s)),
            opt(s.and_then(|s| s.load_s)),
            size,
        ]
    }
}

const NOT_MEASURED: &str = "not measured";

fn opt(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or(NOT_MEASURED.into(), format_number)
}

/// `a ÷ b` when both are measured.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a.is_finite() && b.is_finite() && b != 0.0 => {
            format!("{:.2}×", a / b)
        }
        _ => NOT_MEASURED.into(),
    }
}

fn speed_of<'a>(speed: &'a [SpeedRow], q: &QualityRow) -> Option<&'a SpeedRow> {
    speed
        .iter()
        .find(|s| s.method == q.method && s.quant == q.quant && s.engine == q.engine)
}

/// The comparison table: per adapter evaluation, its merged twin's row, its own row and the
/// ratios (adapter ÷ merged). `None`: no evaluation served an adapter.
pub fn serving_view(quality: &[QualityRow], speed: &[SpeedRow]) -> Option<TableView> {
    let mut rows = Vec::new();
    for a in quality
        .iter()
        .filter(|q| q.method.ends_with(ADAPTER_SUFFIX))
    {
        let method = a.method.trim_end_matches(ADAPTER_SUFFIX);
        let adapter = Served {
            quality: a,
            speed: speed_of(speed, a),
        };
        let lora = adapter
            .speed
            .and_then(|s| s.adapter_type.clone())
            .unwrap_or_else(|| "?".into());
        // The merged model of an evaluation (it has answers), not the damage study's.
        let merged = quality.iter().find(|q| {
            q.method == method
                && q.quant == a.quant
                && q.engine == a.engine
                && !q.answers.is_empty()
        });
        let merged = merged.map(|q| Served {
            quality: q,
            speed: speed_of(speed, q),
        });
        match &merged {
            Some(m) => rows.push(m.cells(format!("{method}: merged {} GGUF", a.quant))),
            None => rows.push(vec![
                format!("{method}: merged {} GGUF", a.quant),
                "not evaluated".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]),
        }
        rows.push(adapter.cells(format!("{method}: {} base + {lora} LoRA GGUF", a.quant)));
        if let Some(m) = &merged {
            let sp = |r: &Served, f: fn(&SpeedRow) -> Option<f64>| r.speed.and_then(f);
            let bytes = |r: &Served| {
                r.speed.and_then(|s| {
                    s.gguf_bytes
                        .map(|g| (g + s.adapter_bytes.unwrap_or(0)) as f64)
                })
            };
            rows.push(vec![
                format!("{method}: adapter ÷ merged"),
                ratio(a.chrf, m.quality.chrf),
                ratio(a.perplexity, m.quality.perplexity),
                ratio(
                    sp(&adapter, |s| s.decode_tokens_per_s),
                    sp(m, |s| s.decode_tokens_per_s),
                ),
                ratio(sp(&adapter, |s| s.load_s), sp(m, |s| s.load_s)),
                ratio(bytes(&adapter), bytes(m)),
            ]);
        }
    }
    (!rows.is_empty()).then(|| TableView {
        headers: [
            "served as",
            "chrF",
            "perplexity",
            "decode tokens/s",
            "load s",
            "MiB to ship",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::{serving_view, ADAPTER_SUFFIX};
    use crate::evals::{QualityRow, SpeedRow};
    use tb_eval::evaluation::{EngineKind, ItemResult, Scores, Timings};

    fn answered() -> Vec<ItemResult> {
        vec![ItemResult {
            model: "m".into(),
            engine: EngineKind::Ollama,
            id: "e0".into(),
            category: "billing".into(),
            split: Some("heldout".into()),
            prompt: "question".into(),
            reference: "reference".into(),
            answer: Some("answer".into()),
            done_reason: None,
            scores: Some(Scores {
                chrf: 40.0,
                rouge_l: 0.0,
                exact_match: false,
            }),
            perplexity: None,
            judge: None,
            timings: Timings::default(),
            error: None,
            answered_with: None,
        }]
    }

    fn quality(method: &str, chrf: f64, ppl: f64, answers: bool) -> QualityRow {
        QualityRow {
            method: method.into(),
            quant: "Q4_K_M".into(),
            engine: "ollama-compat (llama.cpp)".into(),
            chrf: Some(chrf),
            perplexity: Some(ppl),
            answers: if answers { answered() } else { Vec::new() },
            ..QualityRow::default()
        }
    }

    fn speed(method: &str, decode: f64, load: f64, adapter: Option<(&str, u64)>) -> SpeedRow {
        SpeedRow {
            method: method.into(),
            quant: "Q4_K_M".into(),
            engine: "ollama-compat (llama.cpp)".into(),
            decode_tokens_per_s: Some(decode),
            load_s: Some(load),
            gguf_bytes: Some(100 << 20),
            adapter_type: adapter.map(|a| a.0.to_string()),
            adapter_bytes: adapter.map(|a| a.1),
            ..SpeedRow::default()
        }
    }

    #[test]
    fn an_adapter_row_sits_under_its_merged_twin_with_ratios() {
        let lora = format!("peft{ADAPTER_SUFFIX}");
        let q = vec![
            quality("peft", 40.0, 10.0, true),
            // The damage study's row of the same method and quant: never the twin.
            QualityRow {
                answers: Vec::new(),
                ..quality("peft", 1.0, 99.0, false)
            },
            quality(&lora, 38.0, 10.5, true),
        ];
        let s = vec![
            speed("peft", 80.0, 0.5, None),
            speed(&lora, 40.0, 1.0, Some(("F16", 10 << 20))),
        ];
        let v = serving_view(&q, &s).unwrap();
        assert_eq!(v.rows.len(), 3, "{:?}", v.rows);
        assert_eq!(v.rows[0][0], "peft: merged Q4_K_M GGUF");
        assert_eq!(v.rows[0][1], "40.00");
        assert_eq!(v.rows[1][0], "peft: Q4_K_M base + F16 LoRA GGUF");
        assert_eq!(v.rows[1][5], "100.0 + 10.0");
        let r = &v.rows[2];
        assert_eq!(r[0], "peft: adapter ÷ merged");
        assert_eq!(
            r[1..],
            ["0.95×", "1.05×", "0.50×", "2.00×", "1.10×"].map(String::from)
        );
    }

    #[test]
    fn no_adapter_no_table_and_a_missing_twin_is_said() {
        let q = vec![quality("peft", 40.0, 10.0, true)];
        assert!(serving_view(&q, &[]).is_none());
        let lora = format!("unsloth{ADAPTER_SUFFIX}");
        let q = vec![quality(&lora, 38.0, 10.5, true)];
        let v = serving_view(&q, &[]).unwrap();
        assert_eq!(v.rows.len(), 2);
        assert_eq!(v.rows[0][1], "not evaluated");
        assert_eq!(v.rows[1][3], "not measured");
    }
}
