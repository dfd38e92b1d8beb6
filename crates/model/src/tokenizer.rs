//! Text tokenizer: HF `tokenizers` on `tokenizer.json`, special tokens from `tokenizer_config.json`,
//! `config.json` and `generation_config.json`, and the model's chat template.
//!
//! BOS rule: a prompt never starts with two BOS tokens. Turkcell-LLM-7b-v1 uses `<|im_start|>` as
//! BOS *and* as the ChatML turn opener, so a rendered chat prompt already begins with it; adding
//! the BOS again (as llama.cpp does with `add_bos_token`) would double it.

use std::path::Path;

use serde_json::Value;
use tokenizers::Tokenizer;

use crate::chat_template::{ChatMessage, ChatTemplate};
use crate::error::{Error, Result};

/// A special token: its text and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialToken {
    /// Token text, e.g. `<|im_start|>`.
    pub text: String,
    /// Token id.
    pub id: u32,
}

/// A tokenizer with the model's special tokens and chat template.
pub struct TextTokenizer {
    inner: Tokenizer,
    bos: Option<SpecialToken>,
    eos: Option<SpecialToken>,
    stop_ids: Vec<u32>,
    add_bos: bool,
    chat_template: Option<ChatTemplate>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab", &self.inner.get_vocab_size(true))
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("stop_ids", &self.stop_ids)
            .field("add_bos", &self.add_bos)
            .finish()
    }
}

pub(crate) fn read_json_opt(path: &Path) -> Result<Option<Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })
}

/// `"<s>"` or `{"content": "<s>", ...}` as HF writes special tokens.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn ids_of(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect(),
        Some(x) => x.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
        None => Vec::new(),
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` (required) and the optional `tokenizer_config.json`,
    /// `special_tokens_map.json`, `config.json` and `generation_config.json` from `dir`.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.exists() {
            return Err(Error::Tokenizer(format!(
                "{} not found",
                tok_path.display()
            )));
        }
        let inner = Tokenizer::from_file(&tok_path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", tok_path.display())))?;
        let tok_config = read_json_opt(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
        let special_map =
            read_json_opt(&dir.join("special_tokens_map.json"))?.unwrap_or(Value::Null);
        let config = read_json_opt(&dir.join("config.json"))?.unwrap_or(Value::Null);
        let generation = read_json_opt(&dir.join("generation_config.json"))?.unwrap_or(Value::Null);

        let lookup = |key: &str| {
            token_text(tok_config.get(key)).or_else(|| token_text(special_map.get(key)))
        };
        let resolve = |text: Option<String>, field: &str| -> Result<Option<SpecialToken>> {
            match text {
                None => Ok(None),
                Some(t) => match inner.token_to_id(&t) {
                    Some(id) => Ok(Some(SpecialToken { text: t, id })),
                    None => Err(Error::Tokenizer(format!(
                        "{field} `{t}` is not in the vocabulary of {}",
                        tok_path.display()
                    ))),
                },
            }
        };
        let bos = resolve(lookup("bos_token"), "bos_token")?;
        let eos = resolve(lookup("eos_token"), "eos_token")?;
        let mut stop_ids: Vec<u32> = eos.iter().map(|t| t.id).collect();
        for id in ids_of(config.get("eos_token_id"))
            .into_iter()
            .chain(ids_of(generation.get("eos_token_id")))
        {
            if !stop_ids.contains(&id) {
                stop_ids.push(id);
            }
        }
        // Whether encode(add_special_tokens) adds BOS is decided by the post-processor; probe it.
        let add_bos = match &bos {
            Some(b) => inner
                .encode("a", true)
                .map(|e| e.get_ids().first() == Some(&b.id))
                .unwrap_or(false),
            None => false,
        };
        let template_src = match tok_config.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template").and_then(Value::as_str))
                .map(str::to_owned),
            _ => None,
        };
        let template_src = match template_src {
            Some(s) => Some(s),
            None => {
                let jinja = dir.join("chat_template.jinja");
                if jinja.exists() {
                    Some(std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?)
                } else {
                    None
                }
            }
        };
        let mut tokenizer = Self {
            inner,
            bos,
            eos,
            stop_ids,
            add_bos,
            chat_template: None,
        };
        if let Some(src) = template_src {
            tokenizer.set_chat_template(&src)?;
        }
        Ok(tokenizer)
    }

    /// Builds a tokenizer from parts (used by GGUF import).
    pub fn from_parts(
        inner: Tokenizer,
        bos: Option<SpecialToken>,
        eos: Option<SpecialToken>,
        extra_stop_ids: &[u32],
        add_bos: bool,
        chat_template: Option<&str>,
    ) -> Result<Self> {
        let mut stop_ids: Vec<u32> = eos.iter().map(|t| t.id).collect();
        for id in extra_stop_ids {
            if !stop_ids.contains(id) {
                stop_ids.push(*id);
            }
        }
        let mut t = Self {
            inner,
            bos,
            eos,
            stop_ids,
            add_bos,
            chat_template: None,
        };
        if let Some(src) = chat_template {
            t.set_chat_template(src)?;
        }
        Ok(t)
    }

    /// Replaces the chat template.
    pub fn set_chat_template(&mut self, source: &str) -> Result<()> {
        let bos = self.bos.as_ref().map(|t| t.text.as_str()).unwrap_or("");
        let eos = self.eos.as_ref().map(|t| t.text.as_str()).unwrap_or("");
        self.chat_template = Some(ChatTemplate::new(source, bos, eos)?);
        Ok(())
    }

    /// The HF tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// BOS token, if the model has one.
    pub fn bos(&self) -> Option<&SpecialToken> {
        self.bos.as_ref()
    }

    /// EOS token, if the model has one.
    pub fn eos(&self) -> Option<&SpecialToken> {
        self.eos.as_ref()
    }

    /// Token ids that end generation (EOS from every config file).
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// Whether plain prompts get a BOS token.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// The chat template, if any.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes text. With `add_special_tokens` the post-processor may add BOS; a BOS that the text
    /// already starts with is not doubled.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("encoding failed: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if let Some(bos) = &self.bos {
            if ids.len() >= 2 && ids[0] == bos.id && ids[1] == bos.id {
                ids.remove(0);
            }
        }
        Ok(ids)
    }

    /// Renders the conversation with the chat template.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            Error::ChatTemplate(
                "the model has no chat template (tokenizer_config.json `chat_template`)".into(),
            )
        })?;
        template.render(messages, add_generation_prompt)
    }

    /// Renders and encodes a conversation (BOS added when the model adds one, never doubled).
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let text = self.render_chat(messages, add_generation_prompt)?;
        self.encode(&text, true)
    }

    /// Decodes ids to text; `skip_special` drops special tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::Tokenizer(format!("decoding failed: {e}")))
    }
}
