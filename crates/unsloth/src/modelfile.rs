//! The Ollama `Modelfile` written beside the GGUF: `FROM`, then the `TEMPLATE`, `SYSTEM` and
//! `PARAMETER stop` of [`OllamaTemplate`] (the mapping the evaluator's `/api/create` uses too),
//! and `PARAMETER num_ctx`. Without a recognised template there is no `TEMPLATE` line: Ollama
//! then picks a named template from the GGUF's `tokenizer.chat_template`.

use tb_model::OllamaTemplate;

fn quote(text: &str) -> String {
    // Modelfile triple quotes cannot be escaped; refuse to produce a broken file.
    format!("\"\"\"{}\"\"\"", text.replace("\"\"\"", "\" \" \""))
}

/// The Modelfile text for a GGUF next to it.
pub fn modelfile(gguf_file_name: &str, chat: &OllamaTemplate, num_ctx: usize) -> String {
    let mut out = format!("# Written by tunebench; create the model with: ollama create NAME -f Modelfile\nFROM ./{gguf_file_name}\n");
    if let Some(t) = &chat.template {
        out.push_str(&format!("TEMPLATE {}\n", quote(t)));
    }
    if let Some(s) = &chat.system {
        out.push_str(&format!("SYSTEM {}\n", quote(s)));
    }
    for s in &chat.stop {
        out.push_str(&format!(
            "PARAMETER stop {}\n",
            serde_json::to_string(s).unwrap_or_default()
        ));
    }
    out.push_str(&format!("PARAMETER num_ctx {num_ctx}\n"));
    out
}
