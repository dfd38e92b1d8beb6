//! `import-gguf`: turn a llama-arch GGUF into an HF model directory (`config.json`,
//! `model.safetensors` in f32, `tokenizer.json`, `tokenizer_config.json` with the chat template,
//! `generation_config.json`). The directory is assembled under a temporary name beside the
//! destination and renamed into place, so a failed import leaves nothing behind.

use std::path::Path;

use serde_json::json;

use crate::checkpoint::{encode_f32, StoredDtype};
use crate::checkpoint_writer::{write_safetensors, OwnedTensor};
use crate::error::{Error, Result};
use crate::gguf_import::GgufModel;
use crate::gguf_tokenizer::GgufVocab;
use crate::weights::expected_tensors;

/// What an import wrote.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// Tensors written.
    pub tensors: usize,
    /// Parameters written.
    pub parameters: usize,
    /// Vocabulary size of the tokenizer.
    pub vocab: usize,
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}

/// Imports `gguf` into the new directory `out` (which must not exist yet).
pub fn import_gguf(gguf: &Path, out: &Path) -> Result<ImportSummary> {
    if out.exists() {
        return Err(Error::io(
            out,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "destination exists; choose another --out or remove it",
            ),
        ));
    }
    let model = GgufModel::open(gguf)?;
    let vocab = GgufVocab::from_gguf(&model.file)?;
    let tokenizer_json = vocab.to_tokenizer_json()?;
    // Build it once to be sure it loads before writing anything.
    let tokenizer = vocab.build()?;

    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let dir = staging.path();

    let mut tensors = Vec::new();
    let mut parameters = 0;
    for (name, shape) in expected_tensors(&model.config) {
        let data = model.tensor_hf(&name, &shape)?;
        if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::WeightFile {
                path: gguf.to_path_buf(),
                message: format!("tensor `{name}` has a non-finite value at index {pos}"),
            });
        }
        parameters += data.len();
        tensors.push(OwnedTensor {
            name,
            dtype: StoredDtype::F32,
            shape,
            bytes: encode_f32(&data, StoredDtype::F32),
        });
    }
    write_safetensors(&dir.join("model.safetensors"), &tensors)?;
    write_json(
        &dir.join("config.json"),
        &model.config.to_hf_json("float32"),
    )?;
    write_json(&dir.join("tokenizer.json"), &tokenizer_json)?;
    write_json(
        &dir.join("tokenizer_config.json"),
        &vocab.tokenizer_config_json(),
    )?;
    let mut generation = json!({"do_sample": false});
    if let Some(b) = model.config.bos_token_id {
        generation["bos_token_id"] = json!(b);
    }
    generation["eos_token_id"] = json!(tokenizer.stop_ids());
    write_json(&dir.join("generation_config.json"), &generation)?;

    let staged = staging.keep();
    std::fs::rename(&staged, out).map_err(|e| {
        let _ = std::fs::remove_dir_all(&staged);
        Error::io(out, e)
    })?;
    Ok(ImportSummary {
        tensors: tensors.len(),
        parameters,
        vocab: tokenizer.vocab_size(),
    })
}
