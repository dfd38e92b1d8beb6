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
    /// Bytes of the line before `text` (a byte order mark), so columns count from the file.
    column_base: usize,
}

/// Longest piece of a value quoted in a message: a 10 MB field must not become a 10 MB error.
const QUOTE_LIMIT: usize = 60;

/// `text`, cut to [`QUOTE_LIMIT`] characters with an ellipsis.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A JSON value for a message, shortened like [`excerpt`].
fn excerpt_json(value: &Value) -> String {
    excerpt(&value.to_string())
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
            Some(other) => Err(self.err(
                field,
                format!("expected a string, found {}", excerpt_json(other)),
            )),
        }
    }
}

/// Parses one JSONL line (1-based `line`) of `path`.
pub fn parse_record(path: &Path, line: usize, text: &str) -> Result<Record> {
    parse_line(
        &LineCtx {
            path,
            line,
            column_base: 0,
        },
        text,
    )
}

/// The message of a JSON syntax error with its byte column in the file's line (serde_json
/// counts lines and columns inside the text it was given: always line 1 here).
fn json_syntax_message(ctx: &LineCtx<'_>, e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let what = full.strip_suffix(&suffix).unwrap_or(&full);
    format!(
        "invalid JSON at byte column {}: {what}",
        ctx.column_base + e.column()
    )
}

/// Parses the text of one line (without its line end).
fn parse_line(ctx: &LineCtx<'_>, text: &str) -> Result<Record> {
    let line = ctx.line;
    let value: Value =
        serde_json::from_str(text).map_err(|e| ctx.err("<json>", json_syntax_message(ctx, &e)))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ctx.err("<json>", "expected a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ctx.err(&excerpt(unknown), "unknown field"));
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
            Body::Messages(parse_messages(ctx, m)?)
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
                format!("`{}` is not one of heldout, paraphrase", excerpt(other)),
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
            return Err(ctx.err(&format!("{field}.{}", excerpt(k)), "unknown field"));
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
                format!(
                    "expected `{expected}` here (system?, then user/assistant alternating), found `{}`",
                    excerpt(&role)
                ),
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

/// The text of one line (without its line end): UTF-8 without NUL bytes.
fn line_text<'a>(ctx: &LineCtx<'_>, raw: &'a [u8]) -> Result<&'a str> {
    let bad = |at: usize, message: &str| Error::Text {
        path: ctx.path.to_path_buf(),
        line: ctx.line,
        column: ctx.column_base + at + 1,
        message: message.to_owned(),
    };
    const NUL: &str = "NUL byte (a binary or UTF-16 file?)";
    const NOT_UTF8: &str = "invalid UTF-8 (the file must be UTF-8 encoded JSON Lines)";
    // Whichever problem comes first on the line is reported.
    let nul = raw.iter().position(|&b| b == 0);
    match (std::str::from_utf8(raw), nul) {
        (Ok(text), None) => Ok(text),
        (Ok(_), Some(at)) => Err(bad(at, NUL)),
        (Err(e), Some(at)) if at < e.valid_up_to() => Err(bad(at, NUL)),
        (Err(e), _) => Err(bad(e.valid_up_to(), NOT_UTF8)),
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
    /// Blank lines are allowed. A leading UTF-8 byte order mark (Windows editors write one) is
    /// skipped, as Python's `utf-8-sig` codec does, and CRLF line ends are accepted, as Python's
    /// universal newlines do; invalid UTF-8 and NUL bytes are errors naming the line and byte
    /// column.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (body, bom) = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) => (rest, 3),
            None => (&bytes[..], 0),
        };
        let mut records = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
            let ctx = LineCtx {
                path,
                line: i + 1,
                column_base: if i == 0 { bom } else { 0 },
            };
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let text = line_text(&ctx, raw)?;
            if text.trim().is_empty() {
                continue;
            }
            let record = parse_line(&ctx, text)?;
            if !seen.insert(record.id.clone()) {
                let first = records
                    .iter()
                    .find(|r: &&Record| r.id == record.id)
                    .map(|r| r.line)
                    .unwrap_or(0);
                return Err(ctx.err(
                    "id",
                    format!(
                        "duplicate id `{}` (first used on line {first})",
                        excerpt(&record.id)
                    ),
                ));
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
                    message: format!(
                        "`{}` is not one of: {}",
                        excerpt(&r.category),
                        allowed.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}
