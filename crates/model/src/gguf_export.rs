//! HF Llama/Mistral directory → GGUF: this crate parses the directory (`config.json` with
//! [`ModelConfig`], weights with [`SafetensorsCheckpoint`], the tokenizer files), checks the
//! weights against the config, and hands tb-gguf the parsed hyperparameters and a
//! [`TensorSource`] that reads one tensor at a time (positioned reads, so a 7B export holds
//! about one tensor in memory). tb-gguf writes the file ([`tb_gguf::export::export_llama`]).
//!
//! The converter lives here, not in tb-gguf, because tb-model owns the HF formats and depends
//! on tb-gguf (never the other way round).
//!
//! What the config says is exported as llama.cpp reads it: RoPE scaling `linear` and `llama3`
//! are written (the Burn model refuses them); a `sliding_window` shorter than the context is
//! logged as a warning, since llama.cpp's `llama` architecture has no sliding-window attention.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tb_gguf::export::{
    export_llama, LlamaHparams, SourceDtype, SourceError, SourceTensor, TensorSource,
    TokenizerFiles,
};
use tb_gguf::{ExportOptions, ExportReport};

use crate::checkpoint::{SafetensorsCheckpoint, StoredDtype};
use crate::config::{ModelConfig, RopeScaling};
use crate::error::{Error, Result};
use crate::tokenizer::read_json_opt;
use crate::weights::{expected_tensors, is_ignorable};

/// The weights of a checkpoint that go into the GGUF, checked against the config.
pub struct CheckpointSource<'a> {
    checkpoint: &'a SafetensorsCheckpoint,
    tensors: Vec<SourceTensor>,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl<'a> CheckpointSource<'a> {
    /// Lists the tensors of `checkpoint` a GGUF of `config` holds (every tensor the model
    /// needs; recomputed ones and a tied `lm_head` left out) and checks names and shapes
    /// before any data is read.
    pub fn new(config: &ModelConfig, checkpoint: &'a SafetensorsCheckpoint) -> Result<Self> {
        let expected: BTreeMap<String, Vec<usize>> = expected_tensors(config).into_iter().collect();
        let mut tensors = Vec::with_capacity(expected.len());
        for name in checkpoint.names() {
            if is_ignorable(name) || (config.tie_word_embeddings && name == "lm_head.weight") {
                continue;
            }
            let want = expected.get(name).ok_or_else(|| Error::ExtraTensors {
                names: name.to_owned(),
                location: checkpoint.location().to_owned(),
            })?;
            let shape = checkpoint.shape(name)?;
            if &shape != want {
                return Err(Error::WeightFile {
                    path: checkpoint.path_of(name)?.to_path_buf(),
                    message: format!(
                        "tensor `{name}` has shape {shape:?}, config.json implies {want:?}"
                    ),
                });
            }
            let dtype = match checkpoint.dtype(name)? {
                StoredDtype::F32 => SourceDtype::F32,
                StoredDtype::F16 => SourceDtype::F16,
                StoredDtype::BF16 => SourceDtype::BF16,
            };
            tensors.push(SourceTensor {
                name: name.to_owned(),
                shape,
                dtype,
            });
        }
        if let Some(name) = expected.keys().find(|n| !checkpoint.contains(n)) {
            return Err(Error::MissingTensor {
                name: name.clone(),
                location: checkpoint.location().to_owned(),
            });
        }
        Ok(Self {
            checkpoint,
            tensors,
            shapes: expected,
        })
    }
}

impl TensorSource for CheckpointSource<'_> {
    fn tensors(&self) -> Vec<SourceTensor> {
        self.tensors.clone()
    }

    fn read_f32(&self, name: &str) -> std::result::Result<Vec<f32>, SourceError> {
        let shape = self.shapes.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_owned(),
            location: self.checkpoint.location().to_owned(),
        })?;
        Ok(self.checkpoint.tensor_f32(name, shape)?)
    }

    fn origin(&self, name: &str) -> PathBuf {
        self.checkpoint
            .path_of(name)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| PathBuf::from(self.checkpoint.location()))
    }
}

/// The GGUF hyperparameters of `config` (values are validated to fit in u32).
pub fn llama_hparams(config: &ModelConfig, name: &str) -> LlamaHparams {
    let rope_scaling = match config.rope_scaling {
        RopeScaling::None => tb_gguf::export::RopeScaling::None,
        RopeScaling::Linear { factor } => tb_gguf::export::RopeScaling::Linear(factor as f32),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => tb_gguf::export::RopeScaling::Llama3 {
            factor: factor as f32,
            low_freq_factor: low_freq_factor as f32,
            high_freq_factor: high_freq_factor as f32,
            original_context: original_max_position_embeddings as f32,
        },
    };
    LlamaHparams {
        name: name.to_owned(),
        n_layer: config.num_hidden_layers as u32,
        n_ctx: config.max_position_embeddings as u32,
        n_embd: config.hidden_size as u32,
        n_ff: config.intermediate_size as u32,
        n_head: config.num_attention_heads as u32,
        n_head_kv: config.num_key_value_heads as u32,
        head_dim: config.head_dim as u32,
        write_head_dim: config.explicit_head_dim,
        rms_eps: config.rms_norm_eps as f32,
        rope_theta: config.rope_theta as f32,
        rope_scaling,
        vocab_size: config.vocab_size as u32,
    }
}

/// Reads the tokenizer files of `dir` (those that exist) for the GGUF's tokenizer metadata.
pub fn read_tokenizer_files(dir: &Path, config: &ModelConfig) -> Result<TokenizerFiles> {
    let json = |name: &str| read_json_opt(&dir.join(name));
    let optional_file = |name: &str| -> Result<Option<Vec<u8>>> {
        let path = dir.join(name);
        if !path.is_file() {
            return Ok(None);
        }
        std::fs::read(&path)
            .map(Some)
            .map_err(|e| Error::io(&path, e))
    };
    let chat_template_jinja = optional_file("chat_template.jinja")?
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|e| Error::WeightFile {
                path: dir.join("chat_template.jinja"),
                message: format!("not UTF-8: {e}"),
            })
        })
        .transpose()?;
    let mut config_token_ids = BTreeMap::new();
    for (key, id) in [
        ("bos", config.bos_token_id),
        ("eos", config.eos_token_ids.first().copied()),
        ("pad", config.pad_token_id),
        ("unk", config.unk_token_id),
    ] {
        if let Some(id) = id {
            config_token_ids.insert(key.to_owned(), id);
        }
    }
    Ok(TokenizerFiles {
        dir: dir.to_path_buf(),
        tokenizer_json: json("tokenizer.json")?,
        tokenizer_config: json("tokenizer_config.json")?,
        sentencepiece: optional_file("tokenizer.model")?,
        added_tokens: json("added_tokens.json")?,
        special_tokens_map: json("special_tokens_map.json")?,
        generation_config: json("generation_config.json")?,
        chat_template_jinja,
        chat_template_json: json("chat_template.json")?,
        config_token_ids,
    })
}

/// Exports the HF model directory `dir` to the GGUF file `out` (see the module docs).
pub fn export_hf_dir(dir: &Path, out: &Path, opts: ExportOptions) -> Result<ExportReport> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(Error::WeightFile {
            path: dir.to_path_buf(),
            message: "not an HF model directory: config.json is missing".into(),
        });
    }
    let config = ModelConfig::from_hf_file(&config_path)?;
    if let Some(w) = config
        .sliding_window
        .filter(|&w| w < config.max_position_embeddings)
    {
        tracing::warn!(
            sliding_window = w,
            context = config.max_position_embeddings,
            "llama.cpp's llama architecture has no sliding-window attention: outputs differ from HF beyond {w} tokens"
        );
    }
    let checkpoint = SafetensorsCheckpoint::open(dir)?;
    let source = CheckpointSource::new(&config, &checkpoint)?;
    let tokenizer = read_tokenizer_files(dir, &config)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let hparams = llama_hparams(&config, &name);
    Ok(export_llama(&hparams, &tokenizer, &source, out, opts)?)
}
