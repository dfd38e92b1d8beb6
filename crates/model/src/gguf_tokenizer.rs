//! Rebuilding an HF `tokenizers` tokenizer from GGUF tokenizer metadata.
//!
//! - `gpt2` (byte-level BPE): vocab + merges, pre-tokenizer chosen by `tokenizer.ggml.pre`
//!   (`default`/`gpt2`, `smollm`, `llama-bpe`), byte-level decoder.
//! - `llama` (SentencePiece): a BPE with byte fallback whose merges are derived from the piece
//!   scores the way HF's `SentencePieceExtractor` does (a merge's rank is the score of the piece
//!   it produces), `▁` space handling, and the `add_space_prefix` rule.
//!
//! Control tokens become special added tokens, user-defined tokens plain added tokens.

use serde_json::{json, Map, Value};
use tb_gguf::GgufFile;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::tokenizer::{SpecialToken, TextTokenizer};

/// SentencePiece/GGUF token types (the same numbers in both formats).
pub use tb_gguf::export::spm::piece_type as token_type;

/// Tokenizer facts read from GGUF metadata.
#[derive(Debug, Clone, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `gpt2` or `llama`.
    pub model: String,
    /// `tokenizer.ggml.pre` (BPE pre-tokenizer name).
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (empty when absent).
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.token_type` (empty when absent: all normal).
    pub types: Vec<i32>,
    /// `tokenizer.ggml.merges` (`gpt2` only).
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.eot_token_id` / `eom_token_id` (also end generation).
    pub extra_stop: Vec<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk: Option<u32>,
    /// `tokenizer.ggml.add_bos_token` (llama.cpp default: true for `llama`, false for `gpt2`).
    pub add_bos: bool,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece; default true).
    pub add_space_prefix: bool,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

impl GgufVocab {
    /// Reads the tokenizer keys of a GGUF.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let md = file.metadata();
        let model = md.get_str("tokenizer.ggml.model")?.to_owned();
        let opt_str = |k: &str| -> Option<String> { md.get_str(k).ok().map(str::to_owned) };
        let opt_bool = |k: &str| -> Option<bool> { md.get_bool(k).ok() };
        let opt_id = |k: &str| -> Result<Option<u32>> { Ok(md.opt_u32(k)?) };
        let default_bos = model == "llama";
        let mut extra_stop = Vec::new();
        for k in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            if let Some(id) = opt_id(k)? {
                extra_stop.push(id);
            }
        }
        Ok(Self {
            pre: opt_str("tokenizer.ggml.pre"),
            tokens: md.get_str_array("tokenizer.ggml.tokens")?.to_vec(),
            scores: md
                .get_f32_array("tokenizer.ggml.scores")
                .map(<[f32]>::to_vec)
                .unwrap_or_default(),
            types: md
                .get_i32_array("tokenizer.ggml.token_type")
                .map(<[i32]>::to_vec)
                .unwrap_or_default(),
            merges: if model == "gpt2" {
                md.get_str_array("tokenizer.ggml.merges")?.to_vec()
            } else {
                Vec::new()
            },
            bos: opt_id("tokenizer.ggml.bos_token_id")?,
            eos: opt_id("tokenizer.ggml.eos_token_id")?,
            extra_stop,
            unk: opt_id("tokenizer.ggml.unknown_token_id")?,
            add_bos: opt_bool("tokenizer.ggml.add_bos_token").unwrap_or(default_bos),
            add_space_prefix: opt_bool("tokenizer.ggml.add_space_prefix").unwrap_or(true),
            chat_template: opt_str("tokenizer.chat_template"),
            model,
        })
    }

    fn token_type(&self, id: usize) -> i32 {
        self.types.get(id).copied().unwrap_or(token_type::NORMAL)
    }

    fn check(&self) -> Result<()> {
        let n = self.tokens.len();
        if n == 0 {
            return Err(Error::Tokenizer("tokenizer.ggml.tokens is empty".into()));
        }
        if !self.scores.is_empty() && self.scores.len() != n {
            return Err(Error::Tokenizer(format!(
                "tokenizer.ggml.scores has {} entries for {n} tokens",
                self.scores.len()
            )));
        }
        if !self.types.is_empty() && self.types.len() != n {
            return Err(Error::Tokenizer(format!(
                "tokenizer.ggml.token_type has {} entries for {n} tokens",
                self.types.len()
            )));
        }
        for (key, id) in [("bos", self.bos), ("eos", self.eos), ("unknown", self.unk)] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err(Error::Tokenizer(format!(
                        "tokenizer.ggml.{key}_token_id {id} is outside the {n}-token vocabulary"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The HF `tokenizer.json` document for this vocabulary.
    pub fn to_tokenizer_json(&self) -> Result<Value> {
        self.check()?;
        let mut added = Vec::new();
        for (id, tok) in self.tokens.iter().enumerate() {
            let ty = self.token_type(id);
            if ty == token_type::CONTROL || ty == token_type::USER_DEFINED {
                added.push(json!({
                    "id": id, "content": tok, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": ty != token_type::CONTROL,
                    "special": ty == token_type::CONTROL,
                }));
            }
        }
        let mut vocab = Map::new();
        for (id, tok) in self.tokens.iter().enumerate() {
            vocab.insert(tok.clone(), json!(id));
        }
        let bos_text = self.bos.map(|id| self.tokens[id as usize].clone());
        let post_processor = match (&bos_text, self.add_bos) {
            (Some(bos), true) => json!({
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos: {"id": bos, "ids": [self.bos], "tokens": [bos]}},
            }),
            _ => Value::Null,
        };
        let doc = match self.model.as_str() {
            "gpt2" => {
                let pre = self.pre.as_deref().unwrap_or("default");
                let byte_level = |use_regex: bool| {
                    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
                };
                let pre_tokenizer = match pre {
                    // llama.cpp names GPT-2's own regex `gpt-2`; byte-level BPE's default regex is it.
                    "default" | "gpt2" | "gpt-2" => byte_level(true),
                    "smollm" => json!({"type": "Sequence", "pretokenizers": [
                        {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
                    "llama-bpe" | "llama3" => json!({"type": "Sequence", "pretokenizers": [
                        {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": false},
                        byte_level(false)]}),
                    other => {
                        return Err(Error::Tokenizer(format!(
                            "unsupported BPE pre-tokenizer `{other}` (tokenizer.ggml.pre; supported: default, gpt-2, smollm, llama-bpe)"
                        )))
                    }
                };
                let merges: Vec<Value> = self.merges.iter().map(|m| json!(m)).collect();
                json!({
                    "version": "1.0", "truncation": null, "padding": null,
                    "added_tokens": added, "normalizer": null, "pre_tokenizer": pre_tokenizer,
                    "post_processor": post_processor,
                    "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                    "model": {"type": "BPE", "dropout": null, "unk_token": null,
                              "continuing_subword_prefix": null, "end_of_word_suffix": null,
                              "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                              "vocab": vocab, "merges": merges},
                })
            }
            "llama" => {
                let unk = self.unk.map(|id| self.tokens[id as usize].clone());
                let mut normalizers = Vec::new();
                if self.add_space_prefix {
                    normalizers.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
                }
                normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}));
                let mut decoders = vec![
                    json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
                    json!({"type": "ByteFallback"}),
                    json!({"type": "Fuse"}),
                ];
                if self.add_space_prefix {
                    decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
                }
                json!({
                    "version": "1.0", "truncation": null, "padding": null,
                    "added_tokens": added,
                    "normalizer": {"type": "Sequence", "normalizers": normalizers},
                    "pre_tokenizer": null,
                    "post_processor": post_processor,
                    "decoder": {"type": "Sequence", "decoders": decoders},
                    "model": {"type": "BPE", "dropout": null, "unk_token": unk,
                              "continuing_subword_prefix": null, "end_of_word_suffix": null,
                              "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                              "vocab": vocab, "merges": self.spm_merges()},
                })
            }
            other => {
                return Err(Error::Tokenizer(format!(
                    "unsupported tokenizer model `{other}` (tokenizer.ggml.model; supported: gpt2, llama)"
                )))
            }
        };
        Ok(doc)
    }

    /// Merges for a SentencePiece vocabulary: every split of a piece into two pieces of the
    /// vocabulary, ranked by the score of the merged piece (higher first), then by the ids.
    fn spm_merges(&self) -> Vec<Value> {
        use std::collections::HashMap;
        let ids: HashMap<&str, usize> = self
            .tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let t = self.token_type(*i);
                t == token_type::NORMAL || t == token_type::USER_DEFINED
            })
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let score = |i: usize| self.scores.get(i).copied().unwrap_or(0.0);
        let mut merges: Vec<(f32, usize, usize, &str, &str)> = Vec::new();
        for (&piece, &id) in &ids {
            let cuts: Vec<usize> = piece.char_indices().map(|(i, _)| i).skip(1).collect();
            for cut in cuts {
                let (l, r) = piece.split_at(cut);
                if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                    merges.push((score(id), li, ri, l, r));
                }
            }
        }
        merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        merges
            .into_iter()
            .map(|(_, _, _, l, r)| json!([l, r]))
            .collect()
    }

    /// Builds the tokenizer with special tokens and chat template.
    pub fn build(&self) -> Result<TextTokenizer> {
        let doc = self.to_tokenizer_json()?;
        let inner: Tokenizer = doc
            .to_string()
            .parse()
            .map_err(|e| Error::Tokenizer(format!("building tokenizer from GGUF metadata: {e}")))?;
        let special = |id: Option<u32>| {
            id.map(|id| SpecialToken {
                text: self.tokens[id as usize].clone(),
                id,
            })
        };
        TextTokenizer::from_parts(
            inner,
            special(self.bos),
            special(self.eos),
            &self.extra_stop,
            self.add_bos,
            self.chat_template.as_deref(),
        )
    }

    /// `tokenizer_config.json` matching [`Self::to_tokenizer_json`].
    pub fn tokenizer_config_json(&self) -> Value {
        let text = |id: Option<u32>| id.map(|i| self.tokens[i as usize].clone());
        json!({
            "bos_token": text(self.bos),
            "eos_token": text(self.eos),
            "unk_token": text(self.unk),
            "add_bos_token": self.add_bos,
            "add_eos_token": false,
            "chat_template": self.chat_template,
            "model_max_length": 1_000_000_000u64,
            "clean_up_tokenization_spaces": false,
        })
    }
}

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
