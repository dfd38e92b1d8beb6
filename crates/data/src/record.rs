//! Dataset records and their JSONL parsing/validation.
//!
//! Two shapes are accepted, one JSON object per line:
//! - `{"id", "category", "instruction", "input"?, "output"}`
//! - `{"id", "category", "messages": [{"role", "content"}, ...]}` (optional leading `system`,
//!   then alternating `user`/`assistant`, ending with `assistant`)
//!
//! Evaluation files may add `"split": "heldout" | "paraphrase"` and, for paraphrase probes,
//! `"probe_of": "<train id>"`. Unknown fields are errors, so typos don't pass silently.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tb_model::ChatMessage;

use crate::error::{Error, Result};

/// Which evaluation split an item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// A new situation, not seen in training.
    Heldout,
    /// A reworded training item (see [`Record::probe_of`]).
    Paraphrase,
}

/// The content of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Single-turn instruction.
    Instruction {
        /// The request.
        instruction: String,
        /// Optional context (a text to summarise, translate...).
        input: Option<String>,
        /// The reference answer.
        output: String,
    },
    /// A multi-turn conversation ending with the assistant.
    Messages(Vec<ChatMessage>),
}

/// One validated record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Unique id.
    pub id: String,
    /// Category slug.
    pub category: String,
    /// Content.
    pub body: Body,
    /// Evaluation split, if given.
    pub split: Option<Split>,
    /// For paraphrase probes: the id of the training record they reword.
    pub probe_of: Option<String>,
    /// 1-based line in the source file.
    pub line: usize,
}

impl Record {
    /// The conversation: instruction (+ a blank line + input) as the user turn, output as the
    /// assistant turn; multi-turn records as they are.
    pub fn messages(&self) -> Vec<ChatMessage> {
        match &self.body {
            Body::Instruction {
                instruction,
                input,
                output,
            } => vec![
                ChatMessage::new("user", Self::user_text(instruction, input.as_deref())),
                ChatMessage::new("assistant", output.clone()),
            ],
            Body::Messages(m) => m.clone(),
        }
    }

    /// The conversation without its final assistant turn (what a model is asked).
    pub fn prompt_messages(&self) -> Vec<ChatMessage> {
        let mut m = self.messages();
        m.pop();
        m
    }

    /// The final assistant answer (the reference).
    pub fn reference(&self) -> &str {
        match &self.body {
            Body::Instruction { output, .. } => output,
            Body::Messages(m) => m.last().map(|m| m.content.as_str()).unwrap_or(""),
        }
    }

    /// All user-side text joined by newlines.
    pub fn prompt_text(&self) -> String {
        self.prompt_messages()
            .iter()
            .filter(|m| m.role == "user")
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every text of the record joined by newlines.
    pub fn full_text(&self) -> String {
        self.messages()
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn user_text(instruction: &str, input: Option<&str>) -> String {
        match input {
            Some(i) if !i.trim().is_empty() => format!("{instruction}\n\n{i}"),
            _ => instruction.to_owned(),
        }
    }
}

const FIELDS: &[&str] = &[
    "id",
    "category",
    "instruction",
    "input",
    "output",
    "messages",
    "split",
    "probe_of",
];

struct LineCtx<'a> {
    path: &'a Path,
    line: usize,
}

impl LineCtx<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> Error {
        Error::Record {
            path: self.path.to_path_buf(),
            line: self.line,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn text(
        &self,
        obj: &Map<String, Value>,
        field: &str,
        required: bool,
    ) -> Result<Option<String>> {
        match obj.get(field) {
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err(self.err(field, "missing")),
            Some(Value::String(s)) => {
                if required && s.trim().is_empty() {
                    Err(self.err(field, "is empty"))
                } else {
                    Ok(Some(s.clone()))
                }
            }
            Some(other) => Err(self.err(field, format!("expected a string, found {other}"))),
        }
    }
}

/// Parses one JSONL line (1-based `line`) of `path`.
pub fn parse_record(path: &Path, line: usize, text: &str) -> Result<Record> {
    let ctx = LineCtx { path, line };
    let value: Value =
        serde_json::from_str(text).map_err(|e| ctx.err("<json>", format!("invalid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ctx.err("<json>", "expected a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ctx.err(unknown, "unknown field"));
    }
    let id = ctx.text(obj, "id", true)?.unwrap_or_default();
    let category = ctx.text(obj, "category", true)?.unwrap_or_default();
    let body = match (obj.get("messages"), obj.get("instruction")) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(
                "messages",
                "a record has either `messages` or `instruction`, not both",
            ))
        }
        (Some(m), None) => {
            for f in ["input", "output"] {
                if obj.contains_key(f) {
                    return Err(ctx.err(f, "not allowed together with `messages`"));
                }
            }
            Body::Messages(parse_messages(&ctx, m)?)
        }
        (None, _) => Body::Instruction {
            instruction: ctx.text(obj, "instruction", true)?.unwrap_or_default(),
            input: ctx.text(obj, "input", false)?,
            output: ctx.text(obj, "output", true)?.unwrap_or_default(),
        },
    };
    let split = match ctx.text(obj, "split", false)?.as_deref() {
        None => None,
        Some("heldout") => Some(Split::Heldout),
        Some("paraphrase") => Some(Split::Paraphrase),
        Some(other) => {
            return Err(ctx.err(
                "split",
                format!("`{other}` is not one of heldout, paraphrase"),
            ))
        }
    };
    let probe_of = ctx.text(obj, "probe_of", false)?;
    match (split, &probe_of) {
        (Some(Split::Paraphrase), None) => {
            return Err(ctx.err(
                "probe_of",
                "missing: a paraphrase probe names its training record",
            ))
        }
        (Some(Split::Paraphrase), Some(_)) => {}
        (_, Some(_)) => {
            return Err(ctx.err("probe_of", "only allowed with \"split\": \"paraphrase\""))
        }
        _ => {}
    }
    Ok(Record {
        id,
        category,
        body,
        split,
        probe_of,
        line,
    })
}

fn parse_messages(ctx: &LineCtx<'_>, value: &Value) -> Result<Vec<ChatMessage>> {
    let list = value
        .as_array()
        .ok_or_else(|| ctx.err("messages", "expected a list"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let field = format!("messages[{i}]");
        let obj = m
            .as_object()
            .ok_or_else(|| ctx.err(&field, "expected an object with role and content"))?;
        if let Some(k) = obj.keys().find(|k| *k != "role" && *k != "content") {
            return Err(ctx.err(&format!("{field}.{k}"), "unknown field"));
        }
        let role = ctx
            .text(obj, "role", true)
            .map_err(|_| ctx.err(&format!("{field}.role"), "missing or not a string"))?
            .unwrap_or_default();
        let content = match obj.get("content") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::String(_)) => return Err(ctx.err(&format!("{field}.content"), "is empty")),
            _ => return Err(ctx.err(&format!("{field}.content"), "missing or not a string")),
        };
        let expected = match (i, out.first().map(|m: &ChatMessage| m.role == "system")) {
            (0, _) if role == "system" => "system",
            (0, _) => "user",
            (_, Some(true)) => ["assistant", "user"][i % 2],
            (_, _) => ["user", "assistant"][i % 2],
        };
        if role != expected {
            return Err(ctx.err(
                &format!("{field}.role"),
                format!("expected `{expected}` here (system?, then user/assistant alternating), found `{role}`"),
            ));
        }
        out.push(ChatMessage::new(role, content));
    }
    match out.last() {
        Some(m) if m.role == "assistant" => Ok(out),
        Some(_) => Err(ctx.err("messages", "must end with an assistant message")),
        None => Err(ctx.err("messages", "is empty")),
    }
}

/// A validated dataset file.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The file it came from.
    pub path: PathBuf,
    /// Records in file order.
    pub records: Vec<Record>,
}

impl Dataset {
    /// Reads and validates a JSONL file: every line parses, ids are unique, nothing is empty.
    /// Blank lines are allowed.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut records = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record = parse_record(path, i + 1, line)?;
            if !seen.insert(record.id.clone()) {
                let first = records
                    .iter()
                    .find(|r: &&Record| r.id == record.id)
                    .map(|r| r.line)
                    .unwrap_or(0);
                return Err(Error::Record {
                    path: path.to_path_buf(),
                    line: i + 1,
                    field: "id".into(),
                    message: format!("duplicate id `{}` (first used on line {first})", record.id),
                });
            }
            records.push(record);
        }
        if records.is_empty() {
            return Err(Error::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            records,
        })
    }

    /// Checks that every category is in `allowed`.
    pub fn check_categories(&self, allowed: &[&str]) -> Result<()> {
        for r in &self.records {
            if !allowed.contains(&r.category.as_str()) {
                return Err(Error::Record {
                    path: self.path.clone(),
                    line: r.line,
                    field: "category".into(),
                    message: format!("`{}` is not one of: {}", r.category, allowed.join(", ")),
                });
            }
        }
        Ok(())
    }
}
