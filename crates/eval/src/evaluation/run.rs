//! The run loop: resolve the engine, answer and score every item, write results as they come.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use tb_data::{Dataset, Record, Split};

use super::ollama_model::{create_ollama_model, ollama_template};
use super::{
    write_atomically, EngineChoice, EngineKind, Error, ItemPerplexity, ItemResult, ModelSpec,
    ModelSummary, Result, RunSettings, Scores, Summary, Timings,
};
use crate::engine::{GenerateSettings, PerplexityTotals, Session};
use crate::metrics::{exact_match, rouge_l, Chrf};
use crate::ollama::{ChatRequest, ClientConfig, Message, OllamaClient, Options, Role};

/// The engine a run will use, and why.
#[derive(Debug, Clone)]
pub struct ResolvedEngine {
    /// The engine.
    pub kind: EngineKind,
    /// A sentence for logs and `summary.json`.
    pub reason: String,
    /// The client, for Ollama.
    pub client: Option<OllamaClient>,
}

/// Picks the engine: Ollama when `/api/version` answers at `OLLAMA_HOST` (or `host`), else
/// embedded for [`EngineChoice::Auto`]; `Ollama` fails when the server does not answer.
pub fn resolve_engine(choice: EngineChoice, host: Option<&str>) -> Result<ResolvedEngine> {
    let host = host
        .map(str::to_owned)
        .unwrap_or_else(|| std::env::var("OLLAMA_HOST").unwrap_or_default());
    if choice == EngineChoice::Embedded {
        return Ok(ResolvedEngine {
            kind: EngineKind::Embedded,
            reason: "the embedded engine was asked for".into(),
            client: None,
        });
    }
    let probe_config = ClientConfig {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        max_retries: if choice == EngineChoice::Ollama { 3 } else { 0 },
        ..ClientConfig::default()
    };
    let probe = OllamaClient::with_config(&host, probe_config)?;
    match probe.version() {
        Ok(v) => Ok(ResolvedEngine {
            kind: EngineKind::Ollama,
            reason: format!("Ollama {v} answered at {}", probe.base_url()),
            client: Some(OllamaClient::with_config(&host, ClientConfig::default())?),
        }),
        Err(e) if choice == EngineChoice::Auto => Ok(ResolvedEngine {
            kind: EngineKind::Embedded,
            reason: format!(
                "no Ollama at {} ({e}); using the embedded engine",
                probe.base_url()
            ),
            client: None,
        }),
        Err(e) => Err(e.into()),
    }
}

fn ollama_name(name: &str) -> String {
    let clean: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("tunebench-{clean}")
}

fn split_name(s: Option<Split>) -> Option<&'static str> {
    s.map(|s| match s {
        Split::Heldout => "heldout",
        Split::Paraphrase => "paraphrase",
    })
}

/// The Ollama role for a chat-template role name.
pub(crate) fn to_role(role: &str) -> Role {
    match role {
        "system" => Role::System,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        _ => Role::User,
    }
}

struct Answer {
    text: String,
    done_reason: Option<String>,
    timings: Timings,
}

enum Answerer<'a> {
    Ollama {
        client: &'a OllamaClient,
        name: String,
    },
    Embedded,
}

fn answer(
    answerer: &Answerer<'_>,
    session: Option<&Session>,
    record: &Record,
    settings: &RunSettings,
) -> std::result::Result<Answer, String> {
    let messages = record.prompt_messages();
    let t0 = Instant::now();
    match answerer {
        Answerer::Ollama { client, name } => {
            let request = ChatRequest {
                model: name.clone(),
                messages: messages
                    .iter()
                    .map(|m| Message::new(to_role(&m.role), m.content.clone()))
                    .collect(),
                options: Some(Options {
                    temperature: Some(0.0),
                    seed: Some(settings.seed),
                    num_predict: Some(settings.max_tokens.min(i32::MAX as usize) as i32),
                    num_ctx: Some(settings.num_ctx),
                    ..Options::default()
                }),
                ..ChatRequest::default()
            };
            let r = client.chat(&request).map_err(|e| e.to_string())?;
            let m = r.metrics;
            Ok(Answer {
                text: r.message.content,
                done_reason: r.done_reason,
                timings: Timings {
                    seconds: t0.elapsed().as_secs_f64(),
                    prompt_tokens: m.prompt_eval_count,
                    eval_tokens: m.eval_count,
                    prompt_tokens_per_second: m.prompt_tokens_per_second(),
                    eval_tokens_per_second: m.eval_tokens_per_second(),
                    load_seconds: m.load().map(|d| d.as_secs_f64()),
                },
            })
        }
        Answerer::Embedded => {
            let session = session.ok_or("the embedded engine did not load")?;
            let gen = GenerateSettings {
                max_tokens: settings.max_tokens,
                kernel: settings.kernel,
                ..GenerateSettings::default()
            };
            let c = session.chat(&messages, &gen).map_err(|e| e.to_string())?;
            let prompt_tps =
                (c.prompt_seconds > 0.0).then(|| c.prompt_tokens as f64 / c.prompt_seconds);
            Ok(Answer {
                timings: Timings {
                    seconds: t0.elapsed().as_secs_f64(),
                    prompt_tokens: Some(c.prompt_tokens as u64),
                    eval_tokens: Some(c.tokens.len() as u64),
                    prompt_tokens_per_second: prompt_tps,
                    eval_tokens_per_second: c.decode_tokens_per_second(),
                    load_seconds: None,
                },
                done_reason: Some(c.done_reason.to_owned()),
                text: c.text,
            })
        }
    }
}

struct Writer {
    file: File,
    path: std::path::PathBuf,
}

impl Writer {
    fn line(&mut self, item: &ItemResult) -> Result<()> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let mut text = serde_json::to_string(item).map_err(|e| io(e.into()))?;
        text.push('\n');
        self.file.write_all(text.as_bytes()).map_err(io)?;
        self.file.flush().map_err(io)
    }
}

/// Runs every model over `dataset` and writes `results.jsonl` and `summary.json` under `out`.
/// `on_item` sees each result right after it is written.
pub fn run_evaluation(
    models: &[ModelSpec],
    dataset: &Dataset,
    engine: &ResolvedEngine,
    settings: &RunSettings,
    out: &Path,
    mut on_item: impl FnMut(&ItemResult),
) -> Result<Summary> {
    if models.is_empty() {
        return Err(Error::InvalidInput("no models to evaluate".into()));
    }
    for (i, m) in models.iter().enumerate() {
        if models[..i].iter().any(|o| o.name == m.name) {
            return Err(Error::InvalidInput(format!(
                "model name `{}` given twice",
                m.name
            )));
        }
    }
    std::fs::create_dir_all(out).map_err(|source| Error::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let results_path = out.join("results.jsonl");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&results_path)
        .map_err(|source| Error::Io {
            path: results_path.clone(),
            source,
        })?;
    let mut writer = Writer {
        file,
        path: results_path,
    };
    let records: Vec<&Record> = dataset
        .records
        .iter()
        .take(settings.limit.unwrap_or(usize::MAX))
        .collect();
    let started = Instant::now();
    let mut summaries = Vec::new();
    for spec in models {
        let t0 = Instant::now();
        let mut model_error = None;
        let session = match Session::open(&spec.gguf) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(model = %spec.name, "cannot load {}: {e}", spec.gguf.display());
                model_error = Some(e.to_string());
                None
            }
        };
        let answerer = match (&engine.kind, &engine.client, &session) {
            (EngineKind::Ollama, Some(client), Some(s)) => {
                let name = ollama_name(&spec.name);
                let template = ollama_template(s.tokenizer());
                match create_ollama_model(client, &name, &spec.gguf, &template, settings.num_ctx) {
                    Ok(()) => Answerer::Ollama { client, name },
                    Err(e) => {
                        tracing::error!(model = %spec.name, "Ollama could not create it: {e}");
                        model_error = Some(format!("creating the Ollama model: {e}"));
                        Answerer::Embedded
                    }
                }
            }
            _ => Answerer::Embedded,
        };
        let mut hyps = Vec::new();
        let mut refs = Vec::new();
        let mut rouge_sum = 0.0;
        let mut exact = 0usize;
        let mut failed = 0usize;
        let mut ppl = PerplexityTotals::default();
        let (mut eval_tokens, mut eval_secs, mut prompt_tokens, mut prompt_secs) =
            (0u64, 0f64, 0u64, 0f64);
        for record in &records {
            let mut item = ItemResult {
                model: spec.name.clone(),
                engine: engine.kind,
                id: record.id.clone(),
                category: record.category.clone(),
                split: split_name(record.split),
                prompt: record.prompt_text(),
                reference: record.reference().to_owned(),
                answer: None,
                done_reason: None,
                scores: None,
                perplexity: None,
                timings: Timings::default(),
                error: None,
            };
            let outcome = match &model_error {
                Some(e) => Err(e.clone()),
                None => answer(&answerer, session.as_ref(), record, settings),
            };
            match outcome {
                Ok(a) => {
                    let reference = record.reference();
                    let scores = Scores {
                        chrf: Chrf::default().sentence_score(&a.text, reference),
                        rouge_l: rouge_l(&a.text, reference).f1,
                        exact_match: exact_match(&a.text, reference),
                    };
                    rouge_sum += scores.rouge_l;
                    exact += usize::from(scores.exact_match);
                    if let (Some(n), Some(tps)) =
                        (a.timings.eval_tokens, a.timings.eval_tokens_per_second)
                    {
                        eval_tokens += n;
                        eval_secs += n as f64 / tps;
                    }
                    if let (Some(n), Some(tps)) =
                        (a.timings.prompt_tokens, a.timings.prompt_tokens_per_second)
                    {
                        prompt_tokens += n;
                        prompt_secs += n as f64 / tps;
                    }
                    hyps.push(a.text.clone());
                    refs.push(reference.to_owned());
                    item.scores = Some(scores);
                    item.answer = Some(a.text);
                    item.done_reason = a.done_reason;
                    item.timings = a.timings;
                }
                Err(e) => {
                    tracing::warn!(model = %spec.name, id = %record.id, "failed: {e}");
                    item.error = Some(e);
                }
            }
            if settings.perplexity && model_error.is_none() {
                if let Some(s) = &session {
                    match s.perplexity(record, settings.kernel) {
                        Ok(p) => {
                            ppl.add(&p);
                            item.perplexity = p.perplexity().map(|v| ItemPerplexity {
                                perplexity: v,
                                nll: p.nll,
                                tokens: p.tokens,
                                top1_hits: p.top1_hits,
                            });
                        }
                        Err(e) => {
                            let msg = format!("perplexity: {e}");
                            item.error = Some(match item.error.take() {
                                Some(prev) => format!("{prev}; {msg}"),
                                None => msg,
                            });
                        }
                    }
                }
            }
            failed += usize::from(item.error.is_some());
            writer.line(&item)?;
            on_item(&item);
        }
        let answered = hyps.len();
        let rate = |x: f64| (answered > 0).then(|| x / answered as f64);
        summaries.push(ModelSummary {
            name: spec.name.clone(),
            gguf: spec.gguf.clone(),
            items: records.len(),
            failed,
            chrf: (answered > 0)
                .then(|| Chrf::default().corpus_score(&hyps, &refs).ok())
                .flatten(),
            rouge_l: rate(rouge_sum),
            exact_match: rate(exact as f64),
            perplexity: ppl.perplexity(),
            top1_accuracy: ppl.top1_accuracy(),
            eval_tokens_per_second: (eval_secs > 0.0).then(|| eval_tokens as f64 / eval_secs),
            prompt_tokens_per_second: (prompt_secs > 0.0)
                .then(|| prompt_tokens as f64 / prompt_secs),
            seconds: t0.elapsed().as_secs_f64(),
            error: model_error,
        });
    }
    let failed_items = summaries.iter().map(|m| m.failed).sum();
    let summary = Summary {
        dataset: dataset.path.clone(),
        engine: engine.kind,
        engine_reason: engine.reason.clone(),
        settings: settings.clone(),
        total_items: records.len() * models.len(),
        models: summaries,
        failed_items,
        seconds: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Io {
        path: out.join("summary.json"),
        source: e.into(),
    })?;
    write_atomically(&out.join("summary.json"), &json)?;
    Ok(summary)
}
