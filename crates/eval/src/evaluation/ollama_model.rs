//! Serving a GGUF through Ollama: upload the blob, create the model with a template, stop
//! strings, default system prompt and `num_ctx` derived from the GGUF's own chat template, so
//! Ollama builds the same prompt the embedded engine does.

use std::path::Path;

use tb_model::{ChatMessage, TextTokenizer};

use crate::ollama::{CreateRequest, OllamaClient, Options};

/// What `/api/create` gets besides the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaTemplate {
    /// Go template (Ollama syntax), `None` to let Ollama detect one from the GGUF.
    pub template: Option<String>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Default system prompt the Jinja template inserts when the conversation has none.
    pub system: Option<String>,
}

const CHATML_GO: &str = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n";
const LLAMA3_GO: &str = "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n";

/// Maps the tokenizer's Jinja chat template onto one of Ollama's template families (ChatML,
/// Llama 3). A default system turn that the Jinja template adds by itself (SmolLM2 does) becomes
/// the model's `system`. Anything else: no template (Ollama detects one) and the EOS text as stop.
pub fn ollama_template(tokenizer: &TextTokenizer) -> OllamaTemplate {
    let probe = "tunebench-probe";
    let rendered = tokenizer
        .render_chat(&[ChatMessage::new("user", probe)], true)
        .unwrap_or_default();
    let eos_stop: Vec<String> = tokenizer
        .eos()
        .map(|t| t.text.clone())
        .into_iter()
        .collect();
    if rendered.contains("<|im_start|>") {
        let system = rendered
            .split_once("<|im_start|>system\n")
            .and_then(|(before, rest)| {
                (!before.contains(probe))
                    .then(|| rest.split_once("<|im_end|>"))
                    .flatten()
            })
            .map(|(s, _)| s.to_owned())
            .filter(|s| !s.contains(probe));
        OllamaTemplate {
            template: Some(CHATML_GO.into()),
            stop: vec!["<|im_start|>".into(), "<|im_end|>".into()],
            system,
        }
    } else if rendered.contains("<|start_header_id|>") {
        OllamaTemplate {
            template: Some(LLAMA3_GO.into()),
            stop: vec![
                "<|start_header_id|>".into(),
                "<|end_header_id|>".into(),
                "<|eot_id|>".into(),
            ],
            system: None,
        }
    } else {
        OllamaTemplate {
            template: None,
            stop: eos_stop,
            system: None,
        }
    }
}

/// Uploads `gguf` (unless the server has it) and creates `name` from it.
pub fn create_ollama_model(
    client: &OllamaClient,
    name: &str,
    gguf: &Path,
    template: &OllamaTemplate,
    num_ctx: u32,
) -> crate::ollama::Result<()> {
    let digest = client.push_blob(gguf)?;
    let file_name = gguf
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model.gguf".into());
    let request = CreateRequest {
        model: name.into(),
        files: [(file_name, digest.to_string())].into(),
        template: template.template.clone(),
        system: template.system.clone(),
        parameters: Some(Options {
            num_ctx: Some(num_ctx),
            stop: (!template.stop.is_empty()).then(|| template.stop.clone()),
            ..Options::default()
        }),
        ..CreateRequest::default()
    };
    let last = client.create(&request, |p| tracing::debug!(status = %p.status, "create"))?;
    tracing::info!(model = name, status = %last.status, "Ollama model created");
    Ok(())
}
