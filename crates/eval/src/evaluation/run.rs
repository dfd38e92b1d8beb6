//! The run loop: resolve the engine, answer and score every item, write results as they come,
//! and summarise them.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tb_data::{Dataset, Record, Split};
use tb_gguf::fsio::write_atomic;
use tb_model::OllamaTemplate;

use super::ollama_model::create_ollama_model;
use super::resolve::ResolvedEngine;
use super::resume::{self, Plan, Previous};
use super::select::select_items;
use super::{
    EngineKind, Error, ItemPerplexity, ItemResult, ModelSpec, ModelSummary, Result, RunSettings,
    Scores, Summary, Timings,
};
use crate::engine::{EngineModel, GenerateSettings, Perplexity, PerplexityTotals, Session};
use crate::judge::{judge, JudgeConfig};
use crate::metrics::{exact_match, rouge_l, Bleu, Chrf};
use crate::ollama::{ChatRequest, Message, OllamaClient, Options, Role};

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

pub(super) fn split_name(s: Option<Split>) -> Option<&'static str> {
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

/// Appends lines to `results.jsonl`.
struct Writer {
    file: File,
    path: PathBuf,
}

impl Writer {
    /// Writes `item` as one line and syncs it to disk, so a killed run loses at most the item in
    /// flight. Returns the item as read back from that line: the summary sums what the file
    /// holds, so a resumed run, which reads its earlier items from the file, sums the same
    /// numbers.
    fn append(&mut self, item: &ItemResult) -> Result<ItemResult> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let mut text = serde_json::to_string(item).map_err(|e| io(e.into()))?;
        let stored = serde_json::from_str(&text).map_err(|e| io(e.into()))?;
        text.push('\n');
        self.file.write_all(text.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        Ok(stored)
    }
}

/// A model ready to answer.
struct LoadedModel<'a> {
    /// The embedded engine's session (it also scores perplexity).
    session: Option<Session>,
    answerer: Answerer<'a>,
    /// Why the model cannot answer at all, if so.
    error: Option<String>,
    /// Seconds the embedded engine took to open the model and apply its adapter.
    open_seconds: f64,
}

/// Opens `spec`'s GGUF (and adapter) and, for Ollama, creates the model there.
fn load_model<'a>(
    spec: &ModelSpec,
    engine: &'a ResolvedEngine,
    settings: &RunSettings,
) -> LoadedModel<'a> {
    let mut error = None;
    let t0 = Instant::now();
    let opened = Session::open_with_adapter(&spec.gguf, spec.adapter.as_deref());
    let open_seconds = t0.elapsed().as_secs_f64();
    let session = match opened {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(model = %spec.name, "cannot load {}: {e}", spec.gguf.display());
            error = Some(e.to_string());
            None
        }
    };
    let answerer = match (&engine.kind, &engine.client, &session) {
        (EngineKind::Ollama, Some(client), Some(s)) => {
            let name = ollama_name(&spec.name);
            let template = OllamaTemplate::for_tokenizer(s.tokenizer());
            let adapter = spec.adapter.as_deref();
            let created = create_ollama_model(
                client,
                &name,
                &spec.gguf,
                adapter,
                &template,
                settings.num_ctx,
            );
            match created {
                Ok(()) => Answerer::Ollama { client, name },
                Err(e) => {
                    tracing::error!(model = %spec.name, "Ollama could not create it: {e}");
                    error = Some(format!("creating the Ollama model: {e}"));
                    Answerer::Embedded
                }
            }
        }
        _ => Answerer::Embedded,
    };
    LoadedModel {
        session,
        answerer,
        error,
        open_seconds,
    }
}

/// The judge of a run: the model that grades answers, on the Ollama that answers.
struct Judge<'a> {
    client: &'a OllamaClient,
    config: JudgeConfig,
}

/// The judge `settings` ask for, checked before any work: the run answers through Ollama and
/// the judge model is there.
fn judge_for<'a>(engine: &'a ResolvedEngine, settings: &RunSettings) -> Result<Option<Judge<'a>>> {
    let Some(model) = &settings.judge else {
        return Ok(None);
    };
    let (EngineKind::Ollama, Some(client)) = (&engine.kind, &engine.client) else {
        return Err(Error::InvalidInput(format!(
            "the judge `{model}` needs the Ollama engine; this run uses the embedded engine ({})",
            engine.reason
        )));
    };
    client
        .show(model)
        .map_err(|e| Error::InvalidInput(format!("judge model `{model}`: {e}")))?;
    Ok(Some(Judge {
        client,
        config: JudgeConfig::new(model.clone()),
    }))
}

/// Records `message` as (another) failure of `item`.
fn add_error(item: &mut ItemResult, message: String) {
    item.error = Some(match item.error.take() {
        Some(prev) => format!("{prev}; {message}"),
        None => message,
    });
}

/// Answers and scores one item, grades it when there is a judge, and scores its reference
/// teacher-forced when asked.
fn answer_item(
    model: &LoadedModel<'_>,
    spec: &ModelSpec,
    record: &Record,
    ctx: &RunContext<'_>,
) -> ItemResult {
    let settings = ctx.settings;
    let mut item = ItemResult {
        model: spec.name.clone(),
        engine: ctx.engine.kind,
        id: record.id.clone(),
        category: record.category.clone(),
        split: split_name(record.split).map(str::to_owned),
        prompt: record.prompt_text(),
        reference: record.reference().to_owned(),
        answer: None,
        done_reason: None,
        scores: None,
        perplexity: None,
        judge: None,
        timings: Timings::default(),
        error: None,
        answered_with: None,
    };
    let outcome = match &model.error {
        Some(e) => Err(e.clone()),
        None => answer(&model.answerer, model.session.as_ref(), record, settings),
    };
    match outcome {
        Ok(a) => {
            let reference = record.reference();
            item.scores = Some(Scores {
                chrf: Chrf::default().sentence_score(&a.text, reference),
                rouge_l: rouge_l(&a.text, reference).f1,
                exact_match: exact_match(&a.text, reference),
            });
            item.answer = Some(a.text);
            item.done_reason = a.done_reason;
            item.timings = a.timings;
        }
        Err(e) => {
            tracing::warn!(model = %spec.name, id = %record.id, "failed: {e}");
            item.error = Some(e);
        }
    }
    if let (Some(j), Some(answer)) = (&ctx.judge, &item.answer) {
        match judge(j.client, &j.config, &item.prompt, &item.reference, answer) {
            Ok(grade) => item.judge = Some(grade),
            Err(e) => add_error(&mut item, format!("judge: {e}")),
        }
    }
    if let (true, None, Some(s)) = (settings.perplexity, &model.error, &model.session) {
        match s.perplexity(record, settings.kernel) {
            Ok(p) => {
                item.perplexity = p.perplexity().map(|v| ItemPerplexity {
                    perplexity: v,
                    nll: p.nll,
                    tokens: p.tokens,
                    top1_hits: p.top1_hits,
                });
            }
            Err(e) => add_error(&mut item, format!("perplexity: {e}")),
        }
    }
    item
}

/// Per-model aggregate over `items`, in dataset order, as `results.jsonl` holds them.
fn summarize(
    spec: &ModelSpec,
    items: &[ItemResult],
    error: Option<String>,
    resumed: usize,
    load_seconds: Option<f64>,
    seconds: f64,
) -> ModelSummary {
    let (mut hyps, mut refs) = (Vec::new(), Vec::new());
    let (mut rouge_sum, mut exact, mut failed) = (0.0, 0usize, 0usize);
    let mut ppl = PerplexityTotals::default();
    let mut grades = Vec::new();
    let (mut eval_tokens, mut eval_secs, mut prompt_tokens, mut prompt_secs) =
        (0u64, 0f64, 0u64, 0f64);
    for item in items {
        failed += usize::from(item.error.is_some());
        if let Some(p) = &item.perplexity {
            ppl.add(&Perplexity {
                nll: p.nll,
                tokens: p.tokens,
                top1_hits: p.top1_hits,
            });
        }
        if let Some(j) = &item.judge {
            grades.push(f64::from(j.score));
        }
        let (Some(answer), Some(scores)) = (&item.answer, &item.scores) else {
            continue;
        };
        rouge_sum += scores.rouge_l;
        exact += usize::from(scores.exact_match);
        let t = &item.timings;
        if let (Some(n), Some(tps)) = (t.eval_tokens, t.eval_tokens_per_second) {
            eval_tokens += n;
            eval_secs += n as f64 / tps;
        }
        if let (Some(n), Some(tps)) = (t.prompt_tokens, t.prompt_tokens_per_second) {
            prompt_tokens += n;
            prompt_secs += n as f64 / tps;
        }
        hyps.push(answer.clone());
        refs.push(item.reference.clone());
    }
    let answered = hyps.len();
    let rate = |x: f64| (answered > 0).then(|| x / answered as f64);
    ModelSummary {
        name: spec.name.clone(),
        gguf: spec.gguf.clone(),
        adapter: spec.adapter.clone(),
        load_seconds,
        items: items.len(),
        failed,
        resumed,
        chrf: (answered > 0)
            .then(|| Chrf::default().corpus_score(&hyps, &refs).ok())
            .flatten(),
        bleu: (answered > 0)
            .then(|| Bleu::corpus().corpus_score(&hyps, &refs).ok())
            .flatten()
            .map(|b| b.score),
        rouge_l: rate(rouge_sum),
        exact_match: rate(exact as f64),
        judge_score: (!grades.is_empty()).then(|| grades.iter().sum::<f64>() / grades.len() as f64),
        perplexity: ppl.perplexity(),
        top1_accuracy: ppl.top1_accuracy(),
        eval_tokens_per_second: (eval_secs > 0.0).then(|| eval_tokens as f64 / eval_secs),
        prompt_tokens_per_second: (prompt_secs > 0.0).then(|| prompt_tokens as f64 / prompt_secs),
        seconds,
        error,
    }
}

/// What every model of a run shares.
struct RunContext<'a> {
    records: &'a [&'a Record],
    engine: &'a ResolvedEngine,
    settings: &'a RunSettings,
    plan: &'a Plan,
    judge: Option<Judge<'a>>,
}

/// Answers the items of `spec` that `previous` does not hold; the model is loaded only if there
/// is any.
fn evaluate_model(
    ctx: &RunContext<'_>,
    spec: &ModelSpec,
    previous: &mut Previous,
    writer: &mut Writer,
    on_item: &mut impl FnMut(&ItemResult),
) -> Result<ModelSummary> {
    let t0 = Instant::now();
    let mut slots: Vec<Option<ItemResult>> = ctx
        .records
        .iter()
        .map(|r| previous.take(&spec.name, &r.id))
        .collect();
    let resumed = slots.iter().flatten().count();
    slots.iter().flatten().for_each(&mut *on_item);
    let mut error = None;
    let mut load_seconds = None;
    if resumed < slots.len() {
        let model = load_model(spec, ctx.engine, ctx.settings);
        // The embedded engine's load is its open time, recorded on the first answer after it.
        let mut open_seconds =
            (ctx.engine.kind == EngineKind::Embedded).then_some(model.open_seconds);
        for (slot, record) in slots.iter_mut().zip(ctx.records) {
            if slot.is_none() {
                let mut item = answer_item(&model, spec, record, ctx);
                if item.answer.is_some() {
                    if let Some(s) = open_seconds.take() {
                        item.timings.load_seconds = Some(s);
                    }
                }
                item.answered_with = ctx.plan.key(&spec.name, &record.id);
                let stored = writer.append(&item)?;
                load_seconds = load_seconds.or(stored.timings.load_seconds);
                on_item(&stored);
                *slot = Some(stored);
            }
        }
        error = model.error;
    }
    let items: Vec<ItemResult> = slots.into_iter().flatten().collect();
    let load_seconds = load_seconds.or_else(|| items.iter().find_map(|i| i.timings.load_seconds));
    Ok(summarize(
        spec,
        &items,
        error,
        resumed,
        load_seconds,
        t0.elapsed().as_secs_f64(),
    ))
}

/// Checks every model's adapter against its base before any work, so a wrong file stops the
/// run at once instead of failing every item. A base that cannot be opened is left to
/// [`load_model`], which records that as the model's error (as for a model without adapter).
fn check_adapters(models: &[ModelSpec]) -> Result<()> {
    for m in models {
        let Some(adapter) = &m.adapter else { continue };
        if let Ok(mut base) = EngineModel::open(&m.gguf) {
            base.apply_adapter(adapter)
                .map_err(|source| Error::Adapter {
                    model: m.name.clone(),
                    source,
                })?;
        }
    }
    Ok(())
}

/// Runs every model over the items of `dataset` that `settings` selects ([`select_items`]) and
/// writes `results.jsonl` and `summary.json` under `out`.
/// With [`RunSettings::resume`], continues the run already in `out` (`resume.rs` says which of
/// its lines are kept). `on_item` sees each result right after it is written, and each
/// item kept from the earlier run.
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
    check_adapters(models)?;
    let judge = judge_for(engine, settings)?;
    resume::check_out(out, settings.resume)?;
    let records = select_items(dataset, settings)?;
    let started = Instant::now();
    let plan = Plan::new(models, &records, engine.kind, settings);
    let (file, mut previous) = resume::open_results(out, settings.resume, &plan)?;
    let mut writer = Writer {
        file,
        path: out.join("results.jsonl"),
    };
    let ctx = RunContext {
        records: &records,
        engine,
        settings,
        plan: &plan,
        judge,
    };
    let mut summaries = Vec::with_capacity(models.len());
    for spec in models {
        summaries.push(evaluate_model(
            &ctx,
            spec,
            &mut previous,
            &mut writer,
            &mut on_item,
        )?);
    }
    let summary = Summary {
        dataset: dataset.path.clone(),
        engine: engine.kind,
        engine_reason: engine.reason.clone(),
        engine_name: engine.name.clone(),
        settings: settings.clone(),
        total_items: records.len() * models.len(),
        failed_items: summaries.iter().map(|m| m.failed).sum(),
        resumed_items: summaries.iter().map(|m| m.resumed).sum(),
        models: summaries,
        seconds: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Io {
        path: out.join("summary.json"),
        source: e.into(),
    })?;
    write_atomic(&out.join("summary.json"), &json)?;
    Ok(summary)
}
