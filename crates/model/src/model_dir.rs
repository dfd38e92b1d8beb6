//! An HF model directory: `config.json`, safetensors weights, tokenizer files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
        checked_tokenizer(&self.path, &self.config)
    }

    /// Builds the Burn model from the weights.
    pub fn load<B: Backend>(&self, device: &B::Device) -> Result<CausalLm<B>> {
        self.require_plain_rope()?;
        load_safetensors(&self.config, &self.checkpoint, device)
    }

    /// [`ModelConfig::require_plain_rope`], naming this directory's `config.json`.
    fn require_plain_rope(&self) -> Result<()> {
        let origin = self.path.join("config.json");
        self.config
            .require_plain_rope(&origin.display().to_string())
    }

    /// [`Self::load`] with [`LoadOptions`] (weight dtype, [`WeightSink`](crate::weights::WeightSink)).
    pub fn load_with<B: Backend>(
        &self,
        device: &B::Device,
        options: LoadOptions<'_>,
    ) -> Result<CausalLm<B>> {
        self.require_plain_rope()?;
        load_safetensors_with(&self.config, &self.checkpoint, device, options)
    }
}

/// A model ready to run: config, weights, and the tokenizer, read on first use: a folder with
/// `config.json` and weights but no tokenizer files runs on token ids (`logits --ids`), as
/// transformers loads it.
pub struct LoadedModel<B: Backend> {
    /// The model's `config.json` (or the GGUF's equivalent metadata).
    pub config: ModelConfig,
    /// The Burn model with its weights.
    pub model: CausalLm<B>,
    /// The HF folder the tokenizer files are read from (`None`: built from a GGUF already).
    dir: Option<PathBuf>,
    tokenizer: OnceLock<TextTokenizer>,
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
                dir: None,
                tokenizer: OnceLock::from(tokenizer),
            });
        }
        let dir = ModelDir::open(path)?;
        let model = dir.load_with(device, options)?;
        Ok(Self {
            config: dir.config,
            model,
            dir: Some(dir.path),
            tokenizer: OnceLock::new(),
        })
    }

    /// The tokenizer and chat template, read from the folder's tokenizer files on first use.
    ///
    /// # Errors
    /// Missing or malformed tokenizer files (naming them), or a vocabulary larger than
    /// `config.json`'s `vocab_size`.
    pub fn tokenizer(&self) -> Result<&TextTokenizer> {
        if let Some(t) = self.tokenizer.get() {
            return Ok(t);
        }
        let dir = self.dir.as_deref().unwrap_or(Path::new("."));
        let tokenizer = checked_tokenizer(dir, &self.config)?;
        Ok(self.tokenizer.get_or_init(|| tokenizer))
    }

    /// Splits into weights and tokenizer (reading the tokenizer files if not read yet).
    ///
    /// # Errors
    /// As [`Self::tokenizer`].
    pub fn into_parts(self) -> Result<(CausalLm<B>, TextTokenizer)> {
        let tokenizer = match self.tokenizer.into_inner() {
            Some(t) => t,
            None => checked_tokenizer(self.dir.as_deref().unwrap_or(Path::new(".")), &self.config)?,
        };
        Ok((self.model, tokenizer))
    }
}

/// Reads a folder's tokenizer files, checking the vocabulary fits `config.json`.
fn checked_tokenizer(dir: &Path, config: &ModelConfig) -> Result<TextTokenizer> {
    let tokenizer = TextTokenizer::from_dir(dir)?;
    if tokenizer.vocab_size() > config.vocab_size {
        return Err(Error::Tokenizer(format!(
            "{} has {} tokens but config.json `vocab_size` is {}",
            dir.join("tokenizer.json").display(),
            tokenizer.vocab_size(),
            config.vocab_size
        )));
    }
    Ok(tokenizer)
}
