//! Tokenizer metadata for an exported GGUF, from the HF tokenizer files of a model directory
//! (read by the caller into [`TokenizerFiles`]).
//!
//! * `tokenizer.model` present → SentencePiece ("llama"): real piece scores and types from the
//!   protobuf, padded to `vocab_size` with `[PADi]` (score −10000, UNUSED), then
//!   `added_tokens.json` and `tokenizer_config.json added_tokens_decoder` (score −1000, CONTROL
//!   when special, else USER_DEFINED), as `convert_hf_to_gguf.py _create_vocab_sentencepiece`.
//! * `tokenizer.json` with a byte-fallback BPE (Mistral/Llama-2 style) → also "llama". llama.cpp's
//!   converter gives every token score −1000 there; we rank instead: a token produced by merge
//!   number `r` scores `−r` (its first merge), so llama.cpp's SentencePiece merge loop (highest
//!   score first) follows the BPE merge order. Tokens no merge produces score below all merges.
//! * `tokenizer.json` with a byte-level BPE → "gpt2": vocab, merges (`"a b"`, spaces inside a
//!   part encoded as U+0120 like gguf-py) and `tokenizer.ggml.pre` recognised from the
//!   pre-tokenizer's structure ([`detect_bpe_pre`]); an unknown pre-tokenizer is an error.
//!
//! Special tokens, add_bos/add_eos and the chat template follow gguf-py's `SpecialVocab`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::spm::{piece_type, SpmModel};
use crate::error::{Error, Result};
use crate::metadata::Metadata;

const SPACE_MARK: &str = "\u{2581}";

/// The llama3 split regex as it appears in Llama-3 `tokenizer.json` files.
pub const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// gguf-py's `does_token_look_special`.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

fn is_byte_token(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 6
        && t.starts_with("<0x")
        && t.ends_with('>')
        && b[3..5].iter().all(u8::is_ascii_hexdigit)
}

/// `tokenizer.ggml.pre` for a byte-level BPE `pre_tokenizer`, recognised by structure:
/// a lone `ByteLevel` (regex on) → "gpt-2"; `Digits(individual) + ByteLevel` → "smollm"
/// (SmolLM/SmolLM2); `Split(llama3 regex, Isolated) + ByteLevel(no regex)` → "llama-bpe".
pub fn detect_bpe_pre(pre: &Json) -> std::result::Result<&'static str, String> {
    let ty = |v: &Json| {
        v.get("type")
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let flag =
        |v: &Json, k: &str, default: bool| v.get(k).and_then(Json::as_bool).unwrap_or(default);
    let byte_level = |v: &Json, regex: bool| {
        ty(v) == "ByteLevel"
            && flag(v, "use_regex", true) == regex
            && !flag(v, "add_prefix_space", false)
    };
    if byte_level(pre, true) {
        return Ok("gpt-2");
    }
    if ty(pre) == "Sequence" {
        let parts: &[Json] = pre
            .get("pretokenizers")
            .and_then(Json::as_array)
            .map_or(&[], Vec::as_slice);
        if let [a, b] = parts {
            if ty(a) == "Digits" && flag(a, "individual_digits", false) && byte_level(b, true) {
                return Ok("smollm");
            }
            let regex = a
                .get("pattern")
                .and_then(|p| p.get("Regex"))
                .and_then(Json::as_str);
            if ty(a) == "Split"
                && regex == Some(LLAMA3_SPLIT)
                && a.get("behavior").and_then(Json::as_str) == Some("Isolated")
                && !flag(a, "invert", false)
                && byte_level(b, false)
            {
                return Ok("llama-bpe");
            }
        }
    }
    let mut text = pre.to_string();
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    Err(format!(
        "unsupported BPE pre-tokenizer {text} (supported: ByteLevel alone = gpt-2, \
         Digits+ByteLevel = smollm, llama3 Split+ByteLevel = llama-bpe)"
    ))
}

struct Added {
    id: usize,
    content: String,
    special: bool,
}

/// A vocabulary under construction.
struct Vocab {
    tokens: Vec<String>,
    scores: Option<Vec<f32>>,
    types: Vec<i32>,
}

impl Vocab {
    fn padded(n: usize, score: Option<f32>) -> Self {
        Vocab {
            tokens: (0..n).map(|i| format!("[PAD{i}]")).collect(),
            scores: score.map(|s| vec![s; n]),
            types: vec![piece_type::UNUSED; n],
        }
    }

    fn set(&mut self, id: usize, token: String, score: f32, ty: i32) {
        self.tokens[id] = token;
        if let Some(s) = &mut self.scores {
            s[id] = score;
        }
        self.types[id] = ty;
    }

    fn id_of(&self, text: &str) -> Option<usize> {
        self.tokens.iter().position(|t| t == text)
    }
}

/// The tokenizer files of a model directory, each parsed (JSON) or read (bytes, text); `None`
/// where the file does not exist.
#[derive(Debug, Clone, Default)]
pub struct TokenizerFiles {
    /// The directory (named in messages, with the file names below).
    pub dir: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer_json: Option<Json>,
    /// `tokenizer_config.json`.
    pub tokenizer_config: Option<Json>,
    /// `tokenizer.model` (SentencePiece protobuf).
    pub sentencepiece: Option<Vec<u8>>,
    /// `added_tokens.json`.
    pub added_tokens: Option<Json>,
    /// `special_tokens_map.json`.
    pub special_tokens_map: Option<Json>,
    /// `generation_config.json`.
    pub generation_config: Option<Json>,
    /// `chat_template.jinja`.
    pub chat_template_jinja: Option<String>,
    /// `chat_template.json`.
    pub chat_template_json: Option<Json>,
    /// Special token ids the model's config gives (`bos`, `eos`, `pad`, `unk`): the fallback
    /// when the tokenizer files name none.
    pub config_token_ids: BTreeMap<String, u32>,
}

impl TokenizerFiles {
    /// The path of file `name` in [`Self::dir`].
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Adds the `tokenizer.*` keys for a model with `vocab_size` tokens to `md`.
pub fn add_tokenizer_metadata(
    files: &TokenizerFiles,
    vocab_size: u32,
    md: &mut Metadata,
) -> Result<()> {
    let n_vocab = vocab_size as usize;
    let tok_path = files.path("tokenizer.json");
    let tok_json = files.tokenizer_json.as_ref();
    let tok_cfg = files.tokenizer_config.clone().unwrap_or(Json::Null);
    let added: Vec<Added> = tok_json
        .and_then(|j| j.get("added_tokens"))
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some(Added {
                        id: t.get("id")?.as_u64()? as usize,
                        content: t.get("content")?.as_str()?.to_owned(),
                        special: t.get("special").and_then(Json::as_bool).unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default();

    let mut add_space_prefix = tok_cfg.get("add_prefix_space").and_then(Json::as_bool);
    let vocab = if let Some(bytes) = &files.sentencepiece {
        let spm = SpmModel::parse_file(bytes, &files.path("tokenizer.model"))?;
        let mut v = Vocab::padded(n_vocab, Some(-10000.0));
        for (id, p) in spm.pieces.iter().enumerate().take(n_vocab) {
            v.set(id, p.piece.clone(), p.score, p.kind);
        }
        if let Some(j) = &files.added_tokens {
            for (text, id) in j.as_object().into_iter().flatten() {
                if let Some(id) = id.as_u64().map(|i| i as usize).filter(|&i| i < n_vocab) {
                    v.set(id, text.clone(), -1000.0, piece_type::USER_DEFINED);
                }
            }
        }
        if let Some(dec) = tok_cfg
            .get("added_tokens_decoder")
            .and_then(Json::as_object)
        {
            for (id, t) in dec {
                let (Ok(id), Some(content)) =
                    (id.parse::<usize>(), t.get("content").and_then(Json::as_str))
                else {
                    continue;
                };
                if id >= n_vocab {
                    continue;
                }
                let special = t.get("special").and_then(Json::as_bool).unwrap_or(false);
                if special || looks_special(content) {
                    v.set(id, content.to_owned(), -1000.0, piece_type::CONTROL);
                } else {
                    v.set(
                        id,
                        content.replace(SPACE_MARK, " "),
                        -1000.0,
                        piece_type::USER_DEFINED,
                    );
                }
            }
        }
        if add_space_prefix.is_none() && !spm.add_dummy_prefix {
            add_space_prefix = Some(false);
        }
        md.set("tokenizer.ggml.model", "llama");
        md.set("tokenizer.ggml.pre", "default");
        v
    } else {
        let j = tok_json.ok_or_else(|| {
            Error::convert(
                &files.dir,
                "no tokenizer.json or tokenizer.model: cannot write the vocabulary",
            )
        })?;
        from_tokenizer_json(
            j,
            &tok_path,
            &tok_cfg,
            &added,
            n_vocab,
            md,
            &mut add_space_prefix,
        )?
    };
    md.set("tokenizer.ggml.tokens", vocab.tokens.clone());
    if let Some(s) = &vocab.scores {
        md.set("tokenizer.ggml.scores", s.clone());
    }
    md.set("tokenizer.ggml.token_type", vocab.types.clone());
    if let Some(m) = pending_merges(tok_json, md) {
        md.set("tokenizer.ggml.merges", m);
    }
    special_tokens(files, tok_json, &tok_cfg, &added, &vocab, md);
    if let Some(a) = add_space_prefix {
        md.set("tokenizer.ggml.add_space_prefix", a);
    }
    if let Some(t) = chat_template(files, &tok_cfg) {
        md.set("tokenizer.chat_template", t);
    }
    Ok(())
}

/// Merges are written for "gpt2" vocabularies only.
fn pending_merges(tok_json: Option<&Json>, md: &Metadata) -> Option<Vec<String>> {
    if md.get("tokenizer.ggml.model").and_then(|v| v.as_str()) != Some("gpt2") {
        return None;
    }
    Some(
        parse_merges(tok_json?)
            .into_iter()
            .map(|(a, b)| {
                let enc = |s: &str| s.replace(' ', "\u{0120}");
                format!("{} {}", enc(&a), enc(&b))
            })
            .collect(),
    )
}

fn parse_merges(j: &Json) -> Vec<(String, String)> {
    j.get("model")
        .and_then(|m| m.get("merges"))
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| match m {
                    Json::String(s) => s.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())),
                    Json::Array(p) => Some((
                        p.first()?.as_str()?.to_owned(),
                        p.get(1)?.as_str()?.to_owned(),
                    )),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn from_tokenizer_json(
    j: &Json,
    path: &Path,
    tok_cfg: &Json,
    added: &[Added],
    n_vocab: usize,
    md: &mut Metadata,
    add_space_prefix: &mut Option<bool>,
) -> Result<Vocab> {
    let model = j.get("model").cloned().unwrap_or(Json::Null);
    let kind = model.get("type").and_then(Json::as_str).unwrap_or("BPE");
    if kind != "BPE" {
        return Err(Error::convert(
            path,
            format!("unsupported tokenizer model type `{kind}` (supported: BPE, or a SentencePiece tokenizer.model)"),
        ));
    }
    let byte_fallback = model
        .get("byte_fallback")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let entries = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| Error::convert(path, "model.vocab is missing"))?;
    let mut v = Vocab::padded(n_vocab, byte_fallback.then_some(-1000.0));
    let put = |id: usize, text: &str, v: &mut Vocab, ty: i32| -> Result<()> {
        if id >= n_vocab {
            return Err(Error::convert(
                path,
                format!("token `{text}` has id {id}, outside config.json vocab_size {n_vocab}"),
            ));
        }
        v.set(id, text.to_owned(), 0.0, ty);
        Ok(())
    };
    for (text, id) in entries {
        let id = id
            .as_u64()
            .ok_or_else(|| Error::convert(path, format!("token `{text}` has no integer id")))?;
        let ty = if byte_fallback && is_byte_token(text) {
            piece_type::BYTE
        } else {
            piece_type::NORMAL
        };
        put(id as usize, text, &mut v, ty)?;
    }
    for a in added {
        let ty = if a.special || looks_special(&a.content) {
            piece_type::CONTROL
        } else {
            piece_type::USER_DEFINED
        };
        put(a.id, &a.content, &mut v, ty)?;
    }
    if byte_fallback {
        // SentencePiece-style BPE: ranks from the merges, see the module docs.
        let merges = parse_merges(j);
        let index: HashMap<&str, usize> = v
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect();
        let floor = -(merges.len() as f32) - 1.0;
        let mut scores = vec![floor; n_vocab];
        let mut seen = vec![false; n_vocab];
        for (rank, (a, b)) in merges.iter().enumerate() {
            if let Some(&id) = index.get(format!("{a}{b}").as_str()) {
                if !seen[id] {
                    seen[id] = true;
                    scores[id] = -(rank as f32);
                }
            }
        }
        for (id, ty) in v.types.iter().enumerate() {
            if *ty != piece_type::NORMAL {
                scores[id] = if *ty == piece_type::BYTE {
                    0.0
                } else {
                    -1000.0
                };
            }
        }
        let unk = model
            .get("unk_token")
            .and_then(Json::as_str)
            .or_else(|| token_text(tok_cfg.get("unk_token")));
        if let Some(unk) = unk {
            if let Some(id) = v.tokens.iter().position(|t| t == unk) {
                v.types[id] = piece_type::UNKNOWN;
            }
        }
        v.scores = Some(scores);
        if add_space_prefix.is_none() {
            let text = j.get("normalizer").map(Json::to_string).unwrap_or_default()
                + &j.get("pre_tokenizer")
                    .map(Json::to_string)
                    .unwrap_or_default();
            let prepends = text.contains("\"Prepend\"")
                || (text.contains("Metaspace") && !text.contains("\"prepend_scheme\":\"never\""));
            *add_space_prefix = Some(prepends);
        }
        md.set("tokenizer.ggml.model", "llama");
        md.set("tokenizer.ggml.pre", "default");
    } else {
        let pre = j.get("pre_tokenizer").cloned().unwrap_or(Json::Null);
        let name = detect_bpe_pre(&pre).map_err(|m| Error::convert(path, m))?;
        md.set("tokenizer.ggml.model", "gpt2");
        md.set("tokenizer.ggml.pre", name);
    }
    Ok(v)
}

fn token_text(entry: Option<&Json>) -> Option<&str> {
    match entry? {
        Json::String(s) => Some(s),
        Json::Object(o) => o.get("content").and_then(Json::as_str),
        _ => None,
    }
}

/// The leading/trailing special token of a `TemplateProcessing` post-processor's `single`.
fn template_ends(tok_json: Option<&Json>) -> (Option<String>, Option<String>) {
    let Some(pp) = tok_json.and_then(|j| j.get("post_processor")) else {
        return (None, None);
    };
    let procs: Vec<&Json> = match pp.get("processors").and_then(Json::as_array) {
        Some(a) => a.iter().collect(),
        None => vec![pp],
    };
    for p in procs {
        if p.get("type").and_then(Json::as_str) != Some("TemplateProcessing") {
            continue;
        }
        let single = p
            .get("single")
            .and_then(Json::as_array)
            .map_or(&[][..], Vec::as_slice);
        if single.len() < 2 {
            continue;
        }
        let special = |e: &Json| {
            e.get("SpecialToken")
                .and_then(|s| s.get("id"))
                .and_then(Json::as_str)
                .map(str::to_owned)
        };
        return (special(&single[0]), special(&single[single.len() - 1]));
    }
    (None, None)
}

fn special_tokens(
    files: &TokenizerFiles,
    tok_json: Option<&Json>,
    tok_cfg: &Json,
    added: &[Added],
    vocab: &Vocab,
    md: &mut Metadata,
) {
    let stm = files.special_tokens_map.as_ref().unwrap_or(&Json::Null);
    let gen = files.generation_config.as_ref().unwrap_or(&Json::Null);
    let n = vocab.tokens.len();
    let mut texts: HashMap<&str, String> = HashMap::new();
    let mut set = |typ: &'static str, key: &str, md: &mut Metadata| -> Option<u32> {
        let text = token_text(tok_cfg.get(format!("{typ}_token")))
            .or_else(|| token_text(stm.get(format!("{typ}_token"))))?;
        texts.insert(typ, text.to_owned());
        let id = added
            .iter()
            .find(|a| a.content == text)
            .map(|a| a.id)
            .or_else(|| vocab.id_of(text))
            .filter(|&i| i < n)?;
        md.set(key, id as u32);
        Some(id as u32)
    };
    let keys = [
        ("bos", "tokenizer.ggml.bos_token_id"),
        ("eos", "tokenizer.ggml.eos_token_id"),
        ("unk", "tokenizer.ggml.unknown_token_id"),
        ("sep", "tokenizer.ggml.seperator_token_id"),
        ("pad", "tokenizer.ggml.padding_token_id"),
    ];
    for (typ, key) in keys {
        if set(typ, key, md).is_some() {
            continue;
        }
        let from_gen = || {
            let v = gen.get(format!("{typ}_token_id"))?;
            match v {
                Json::Array(a) => a.first()?.as_u64(),
                v => v.as_u64(),
            }
        };
        let id = files
            .config_token_ids
            .get(typ)
            .copied()
            .or_else(|| from_gen().map(|x| x as u32));
        if let Some(id) = id.filter(|&i| (i as usize) < n) {
            md.set(key, id);
        }
    }
    let (first, last) = template_ends(tok_json);
    if let Some(f) = first {
        md.set("tokenizer.ggml.add_bos_token", texts.get("bos") == Some(&f));
    }
    if let Some(l) = last {
        md.set("tokenizer.ggml.add_eos_token", texts.get("eos") == Some(&l));
    }
    for typ in ["bos", "eos"] {
        if let Some(b) = tok_cfg
            .get(format!("add_{typ}_token"))
            .and_then(Json::as_bool)
        {
            md.set(format!("tokenizer.ggml.add_{typ}_token"), b);
        }
    }
}

fn chat_template(files: &TokenizerFiles, tok_cfg: &Json) -> Option<String> {
    match tok_cfg.get("chat_template") {
        Some(Json::String(s)) => return Some(s.clone()),
        Some(Json::Array(list)) => {
            let default = list
                .iter()
                .find(|t| t.get("name").and_then(Json::as_str) == Some("default"));
            return default
                .and_then(|t| t.get("template"))
                .and_then(Json::as_str)
                .map(str::to_owned);
        }
        _ => {}
    }
    if let Some(t) = &files.chat_template_jinja {
        return Some(t.clone());
    }
    files.chat_template_json.as_ref().and_then(|j| {
        j.get("chat_template")
            .and_then(Json::as_str)
            .map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recognises_the_supported_pre_tokenizers() {
        let bl = |re: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": re});
        assert_eq!(detect_bpe_pre(&bl(true)), Ok("gpt-2"));
        let smol = json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, bl(true)]});
        assert_eq!(detect_bpe_pre(&smol), Ok("smollm"));
        let l3 = json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": false}, bl(false)]});
        assert_eq!(detect_bpe_pre(&l3), Ok("llama-bpe"));
        let e = detect_bpe_pre(&json!({"type": "Whitespace"})).unwrap_err();
        assert!(e.contains("Whitespace") && e.contains("unsupported"), "{e}");
        assert!(detect_bpe_pre(&bl(false)).is_err());
    }

    #[test]
    fn byte_tokens_and_special_looks() {
        assert!(is_byte_token("<0x0A>") && is_byte_token("<0xff>"));
        assert!(!is_byte_token("<0x0G>") && !is_byte_token("<0x0A"));
        assert!(looks_special("<|im_end|>") && !looks_special("<s>"));
    }
}
