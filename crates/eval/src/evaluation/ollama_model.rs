//! Serving a GGUF through Ollama: upload the blob, create the model with the template, stop
//! strings and default system prompt that tb-model's [`OllamaTemplate`] derives from the GGUF's
//! own chat template (the mapping the Modelfile written after training uses too), and
//! `num_ctx`, so Ollama builds the same prompt the embedded engine does. A LoRA adapter GGUF,
//! when given, is uploaded too and named in the request's `adapters` (Modelfile `ADAPTER`).

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

/// The name a file is uploaded under: its own file name, else `fallback`.
fn upload_name(path: &Path, fallback: &str) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| fallback.into())
}

/// Uploads `gguf` and, when given, the LoRA adapter GGUF `adapter` (each unless the server has
/// it), and creates `name` from them.
pub fn create_ollama_model(
    client: &OllamaClient,
    name: &str,
    gguf: &Path,
    adapter: Option<&Path>,
    template: &OllamaTemplate,
    num_ctx: u32,
) -> crate::ollama::Result<()> {
    let digest = client.push_blob(gguf)?;
    let file_name = upload_name(gguf, "model.gguf");
    let mut request = create_request(name, &file_name, &digest, template, num_ctx);
    if let Some(adapter) = adapter {
        let digest = client.push_blob(adapter)?;
        request
            .adapters
            .insert(upload_name(adapter, "adapter.gguf"), digest.to_string());
    }
    let last = client.create(&request, |p| tracing::debug!(status = %p.status, "create"))?;
    tracing::info!(model = name, status = %last.status, "Ollama model created");
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::ollama::CreateRequest;

    #[test]
    fn adapters_are_sent_like_files_and_left_out_when_empty() {
        let mut request = CreateRequest {
            model: "m".into(),
            files: [("base.gguf".to_owned(), "sha256:aa".to_owned())].into(),
            ..CreateRequest::default()
        };
        let json = serde_json::to_value(&request).unwrap();
        assert!(json.get("adapters").is_none(), "{json}");
        request
            .adapters
            .insert("lora.gguf".into(), "sha256:bb".into());
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(
            json["adapters"],
            serde_json::json!({"lora.gguf": "sha256:bb"})
        );
        assert_eq!(json["files"], serde_json::json!({"base.gguf": "sha256:aa"}));
    }
}
