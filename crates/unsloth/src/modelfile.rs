//! The Ollama `Modelfile` written beside the GGUF: `FROM`, a Go-template `TEMPLATE` equivalent
//! to the model's Jinja chat template, `SYSTEM` when the template injects a default system
//! prompt, `PARAMETER stop` for the model's end tokens and the template's turn markers, and
//! `PARAMETER num_ctx`.
//!
//! The template is recognised by rendering the Jinja template on probe conversations (not by
//! string matching on its source), so what Ollama renders equals what the model was trained on.
//! ChatML (`<|im_start|>role\n…<|im_end|>\n`, SmolLM2 and Turkcell) and Llama 3 headers are
//! supported; any other family gets no `TEMPLATE` line (Ollama then autodetects a named
//! template from the GGUF's `tokenizer.chat_template`) and a warning.

use tb_model::{ChatMessage, TextTokenizer};

/// What goes into the Modelfile besides `FROM`.
#[derive(Debug, Clone, PartialEq)]
pub struct OllamaChat {
    /// Template family (`chatml`, `llama3`) or `None` when unrecognised.
    pub family: Option<&'static str>,
    /// Go text/template, when recognised.
    pub template: Option<String>,
    /// Default system prompt the Jinja template inserts when the conversation has none.
    pub default_system: Option<String>,
    /// Stop strings.
    pub stops: Vec<String>,
}

const CHATML_TEMPLATE: &str = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n";

const LLAMA3_TEMPLATE: &str = "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n";

fn render(tok: &TextTokenizer, messages: &[ChatMessage], gen: bool) -> Option<String> {
    tok.render_chat(messages, gen).ok()
}

/// Works out the Ollama equivalent of the tokenizer's chat template.
pub fn ollama_chat(tok: &TextTokenizer) -> OllamaChat {
    let mut stops: Vec<String> = tok
        .stop_ids()
        .iter()
        .filter_map(|&id| tok.decode(&[id], false).ok())
        .filter(|s| !s.is_empty())
        .collect();
    let user = [ChatMessage::new("user", "PROBE-U")];
    let with_system = [
        ChatMessage::new("system", "PROBE-S"),
        ChatMessage::new("user", "PROBE-U"),
    ];
    let (Some(plain), Some(sys)) = (render(tok, &user, true), render(tok, &with_system, true))
    else {
        return OllamaChat {
            family: None,
            template: None,
            default_system: None,
            stops,
        };
    };
    let mut add = |s: &str| {
        if !stops.iter().any(|x| x == s) {
            stops.push(s.to_string());
        }
    };
    let chatml_sys = "<|im_start|>system\nPROBE-S<|im_end|>\n<|im_start|>user\nPROBE-U<|im_end|>\n<|im_start|>assistant\n";
    if sys.ends_with(chatml_sys) {
        let prefix = &sys[..sys.len() - chatml_sys.len()];
        let user_tail = "<|im_start|>user\nPROBE-U<|im_end|>\n<|im_start|>assistant\n";
        let default_system = plain
            .strip_suffix(user_tail)
            .and_then(|p| p.strip_prefix(prefix))
            .and_then(|p| p.strip_prefix("<|im_start|>system\n"))
            .and_then(|p| p.strip_suffix("<|im_end|>\n"))
            .map(str::to_string);
        add("<|im_start|>");
        add("<|im_end|>");
        return OllamaChat {
            family: Some("chatml"),
            template: Some(CHATML_TEMPLATE.into()),
            default_system,
            stops,
        };
    }
    let llama3_sys = "<|start_header_id|>system<|end_header_id|>\n\nPROBE-S<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nPROBE-U<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
    if sys.ends_with(llama3_sys) {
        add("<|start_header_id|>");
        add("<|end_header_id|>");
        add("<|eot_id|>");
        return OllamaChat {
            family: Some("llama3"),
            template: Some(LLAMA3_TEMPLATE.into()),
            default_system: None,
            stops,
        };
    }
    OllamaChat {
        family: None,
        template: None,
        default_system: None,
        stops,
    }
}

fn quote(text: &str) -> String {
    // Modelfile triple quotes cannot be escaped; refuse to produce a broken file.
    format!("\"\"\"{}\"\"\"", text.replace("\"\"\"", "\" \" \""))
}

/// The Modelfile text for a GGUF next to it.
pub fn modelfile(gguf_file_name: &str, chat: &OllamaChat, num_ctx: usize) -> String {
    let mut out = format!("# Written by tunebench; create the model with: ollama create NAME -f Modelfile\nFROM ./{gguf_file_name}\n");
    if let Some(t) = &chat.template {
        out.push_str(&format!("TEMPLATE {}\n", quote(t)));
    }
    if let Some(s) = &chat.default_system {
        out.push_str(&format!("SYSTEM {}\n", quote(s)));
    }
    for s in &chat.stops {
        out.push_str(&format!(
            "PARAMETER stop {}\n",
            serde_json::to_string(s).unwrap_or_default()
        ));
    }
    out.push_str(&format!("PARAMETER num_ctx {num_ctx}\n"));
    out
}
