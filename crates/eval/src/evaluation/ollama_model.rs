//! Serving a GGUF through Ollama: upload the blob, create the model with the template, stop
//! strings and default system prompt that tb-model's [`OllamaTemplate`] derives from the GGUF's
//! own chat template (the mapping the Modelfile written after training uses too), and
//! `num_ctx`, so Ollama builds the same prompt the embedded engine does.

use std::path::Path;

use tb_model::OllamaTemplate;

use crate::ollama::{BlobDigest, CreateRequest, OllamaClient, Options};

/// The `/api/create` request for `name` from the blob `digest` uploaded as `file_name`.
pub fn create_request(
    name: &str,
    file_name: &str,
    digest: &BlobDigest,
    template: &OllamaTemplate,
    num_ctx: u32,
) -> CreateRequest {
    CreateRequest {
        model: name.into(),
        files: [(file_name.to_owned(), digest.to_string())].into(),
        template: template.template.clone(),
        system: template.system.clone(),
        parameters: Some(Options {
            num_ctx: Some(num_ctx),
            stop: (!template.stop.is_empty()).then(|| template.stop.clone()),
            ..Options::default()
        }),
        ..CreateRequest::default()
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
    let request = create_request(name, &file_name, &digest, template, num_ctx);
    let last = client.create(&request, |p| tracing::debug!(status = %p.status, "create"))?;
    tracing::info!(model = name, status = %last.status, "Ollama model created");
    Ok(())
}
