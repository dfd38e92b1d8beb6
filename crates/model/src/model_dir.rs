//! An HF model directory: `config.json`, safetensors weights, tokenizer files.

use std::path::{Path, PathBuf};

use burn::prelude::*;

use crate::causal_lm::CausalLm;
use crate::checkpoint::SafetensorsCheckpoint;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::tokenizer::TextTokenizer;
use crate::weights::{load_safetensors, load_safetensors_with, LoadOptions};

/// An opened (not yet loaded) HF model directory.
pub struct ModelDir {
    /// The directory.
    pub path: PathBuf,
    /// Its validated `config.json`.
    pub config: ModelConfig,
    /// Its weights, memory-mapped.
    pub checkpoint: SafetensorsCheckpoint,
}

impl ModelDir {
    /// Opens `dir/config.json` and the safetensors weights (headers only).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "model directory not found"),
            ));
        }
        let config = ModelConfig::from_hf_file(dir.join("config.json"))?;
        let checkpoint = SafetensorsCheckpoint::open(dir)?;
        Ok(Self {
            path: dir.to_path_buf(),
            config,
            checkpoint,
        })
    }

    /// Loads the tokenizer files of the directory.
    pub fn tokenizer(&self) -> Result<TextTokenizer> {
        let tokenizer = TextTokenizer::from_dir(&self.path)?;
        if tokenizer.vocab_size() > self.config.vocab_size {
            return Err(Error::Tokenizer(format!(
                "{} has {} tokens but config.json `vocab_size` is {}",
                self.path.join("tokenizer.json").display(),
                tokenizer.vocab_size(),
                self.config.vocab_size
            )));
        }
        Ok(tokenizer)
    }

    /// Builds the Burn model from the weights.
    pub fn load<B: Backend>(&self, device: &B::Device) -> Result<CausalLm<B>> {
        load_safetensors(&self.config, &self.checkpoint, device)
    }

    /// [`Self::load`] with [`LoadOptions`] (weight dtype, [`WeightSink`](crate::weights::WeightSink)).
    pub fn load_with<B: Backend>(
        &self,
        device: &B::Device,
        options: LoadOptions<'_>,
    ) -> Result<CausalLm<B>> {
        load_safetensors_with(&self.config, &self.checkpoint, device, options)
    }
}

/// A model ready to run: config, weights and tokenizer.
pub struct LoadedModel<B: Backend> {
    /// Config.
    pub config: ModelConfig,
    /// Weights.
    pub model: CausalLm<B>,
    /// Tokenizer and chat template.
    pub tokenizer: TextTokenizer,
}

impl<B: Backend> LoadedModel<B> {
    /// Loads an HF directory, or a `.gguf` file (tokenizer rebuilt from its metadata).
    pub fn load(path: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        Self::load_with(path, device, LoadOptions::default())
    }

    /// [`Self::load`] with [`LoadOptions`]: the frozen matrices in a chosen dtype, and the
    /// projections a [`WeightSink`](crate::weights::WeightSink) wants handed to it instead of the model.
    pub fn load_with(
        path: impl AsRef<Path>,
        device: &B::Device,
        options: LoadOptions<'_>,
    ) -> Result<Self> {
        let path = path.as_ref();
        if path.is_file() {
            let gguf = crate::gguf_import::GgufModel::open(path)?;
            let tokenizer = crate::gguf_tokenizer::GgufVocab::from_gguf(&gguf.file)?.build()?;
            let model = gguf.load_with(device, options)?;
            return Ok(Self {
                config: gguf.config,
                model,
                tokenizer,
            });
        }
        let dir = ModelDir::open(path)?;
        let tokenizer = dir.tokenizer()?;
        let model = dir.load_with(device, options)?;
        Ok(Self {
            config: dir.config,
            model,
            tokenizer,
        })
    }
}
