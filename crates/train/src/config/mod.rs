//! The experiment file (TOML) that both trainers read. Unknown keys are errors.
//!
//! ```toml
//! [model]
//! base = "models/smollm2-135m"          # HF directory or llama-arch GGUF
//! # base_quant = "nf4"                  # 4-bit frozen base (Unsloth-style trainer only)
//! [data]
//! train = "datasets/turkish-support/train.jsonl"
//! eval = "datasets/turkish-support/eval.jsonl"
//! max_seq_len = 256
//! [train]
//! micro_batch = 4
//! epochs = 1
//! [optimizer]
//! lr = 2e-4
//! [lora]
//! r = 16
//! alpha = 32
//! targets = "all-linear"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tb_data::Truncation;

use crate::error::{io, Error, Result};

mod validate;

/// A whole experiment: what to train, on what, how, and what to export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// A short name used in run ids and reports.
    #[serde(default = "default_name")]
    pub name: String,
    /// The base model.
    pub model: ModelSection,
    /// The dataset.
    pub data: DataSection,
    /// Steps, batches, seed, logging and checkpoints.
    #[serde(default)]
    pub train: TrainSection,
    /// AdamW and the learning-rate schedule.
    #[serde(default)]
    pub optimizer: OptimizerSection,
    /// The adapter.
    #[serde(default)]
    pub lora: LoraSection,
    /// GGUF outputs.
    #[serde(default)]
    pub export: ExportSection,
    /// Evaluation after training.
    #[serde(default)]
    pub eval: EvalSection,
}

fn default_name() -> String {
    "experiment".into()
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// HF model directory (config.json, safetensors, tokenizer) or a llama-arch GGUF file.
    /// Relative paths are resolved against the experiment file's folder.
    pub base: PathBuf,
    /// Dtype the frozen base (projections, embeddings, LM head) is held in: `f32` or `bf16`
    /// (half the memory; widened exactly inside the GEMM). LoRA weights, optimizer state and
    /// activations stay f32.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// Storage of the frozen base of every LoRA-adapted projection, like Unsloth/QLoRA's
    /// `load_in_4bit`: `"none"` (default, dense), `"nf4"` (bitsandbytes NF4, blocks of 64) or
    /// `"q4_k"` (llama.cpp Q4_K; every adapted projection's input width must be a multiple of
    /// 256). Only the Unsloth-style trainer implements it; `train peft` refuses anything but
    /// `"none"`. Left out of the resolved config when `"none"`, so a config without the key and
    /// one that sets it to `"none"` hash the same.
    #[serde(default, skip_serializing_if = "BaseQuant::is_none")]
    pub base_quant: BaseQuant,
}

/// `[model] base_quant`: how the frozen base of the adapted projections is stored in training.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BaseQuant {
    /// Dense, in the model's dtype.
    #[default]
    #[serde(rename = "none")]
    None,
    /// bitsandbytes NF4 (4-bit NormalFloat, 64-value blocks, f32 absmax, no double quant).
    #[serde(rename = "nf4")]
    Nf4,
    /// llama.cpp Q4_K (256-value super-blocks).
    #[serde(rename = "q4_k")]
    Q4K,
}

impl BaseQuant {
    /// Whether the base stays dense.
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }

    /// The value as written in the config (`none`, `nf4`, `q4_k`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Nf4 => "nf4",
            Self::Q4K => "q4_k",
        }
    }
}

impl std::fmt::Display for BaseQuant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn default_dtype() -> String {
    "f32".into()
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Training JSONL.
    pub train: PathBuf,
    /// Evaluation JSONL (its `heldout` split gives the eval loss); optional.
    #[serde(default)]
    pub eval: Option<PathBuf>,
    /// Longest example in tokens (after the chat template).
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    /// What to do with longer examples: `right` (cut) or `drop`.
    #[serde(default = "default_truncation")]
    pub truncation: Truncation,
    /// Use at most this many training examples (after shuffling once with the seed); 0 = all.
    #[serde(default)]
    pub limit: usize,
    /// Use at most this many eval examples; 0 = all.
    #[serde(default)]
    pub eval_limit: usize,
}

fn default_max_seq_len() -> usize {
    512
}
fn default_truncation() -> Truncation {
    Truncation::Right
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Examples per micro-batch (padded trainer) or rows per packed micro-batch.
    pub micro_batch: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Passes over the training set (ignored when `max_steps` is set).
    pub epochs: usize,
    /// Stop after this many optimizer steps; 0 = run `epochs`.
    pub max_steps: usize,
    /// Seed for adapter initialisation, data order and dropout.
    pub seed: u64,
    /// Write a metrics line every N optimizer steps.
    pub log_every: usize,
    /// Save a resumable checkpoint every N optimizer steps; 0 = never.
    pub checkpoint_every: usize,
    /// Compute the eval loss every N optimizer steps; 0 = only at the end.
    pub eval_every: usize,
    /// Optimizer steps at the start that count as warm-up for throughput (not in tokens/s).
    pub warmup_measure_steps: usize,
    /// Folder that receives `runs/<id>/` (relative to the current directory).
    pub runs_dir: PathBuf,
    /// Per-layer activation checkpointing of the Unsloth-style trainer (which Unsloth also runs
    /// with checkpointing on by default): `"layer"` (or `true`) recomputes each layer in the
    /// backward, `"attention"` keeps the MLP's activations and recomputes only the attention
    /// half, `"none"` (or `false`) keeps everything. See [`ActivationCheckpointing`].
    pub activation_checkpointing: ActivationCheckpointing,
    /// Where both trainers run: `cpu` (Burn's Flex), `wgpu` (Vulkan/Metal/DX12 through CubeCL;
    /// Mesa's lavapipe runs it on a CPU) or `cuda` (NVIDIA through CubeCL). `wgpu` and `cuda`
    /// need a build with the cargo feature of the same name.
    pub device: DeviceKind,
}

/// What the Unsloth-style trainer keeps between a decoder layer's forward and its backward
/// (the PEFT-style trainer always keeps everything, through Burn's autodiff).
///
/// Per token and layer, with `h` the hidden and `f` the MLP width: `layer` keeps `2h` values
/// (the input and the residual after attention) and recomputes about one forward;
/// `attention` keeps `2h + 2f` and recomputes only the attention half (q/k/v and the
/// attention itself: 12–16% of a layer's matmul FLOPs on Mistral-7B and SmolLM2 shapes); `none` keeps every
/// activation of every op (about `6h + 3f`) and recomputes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationCheckpointing {
    /// Keep every activation (most memory, fastest).
    None,
    /// Keep only each layer's input and post-attention residual (least memory); `true`.
    #[default]
    Layer,
    /// Also keep the MLP's activations; recompute only the attention half.
    Attention,
}

impl<'de> Deserialize<'de> for ActivationCheckpointing {
    /// `"none" | "layer" | "attention"`, or a boolean (`true` = `"layer"`, `false` = `"none"`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Name(String),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(true) => Ok(Self::Layer),
            Raw::Flag(false) => Ok(Self::None),
            Raw::Name(name) => match name.as_str() {
                "none" => Ok(Self::None),
                "layer" => Ok(Self::Layer),
                "attention" => Ok(Self::Attention),
                other => Err(serde::de::Error::custom(format!(
                    "unknown activation_checkpointing `{other}`: expected \"none\", \"layer\", \"attention\" or a boolean"
                ))),
            },
        }
    }
}

/// The device a trainer runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Burn's Flex CPU backend (Rust kernels for the fused ops).
    #[default]
    Cpu,
    /// Burn's wgpu backend on the default adapter (CubeCL kernels for the fused ops).
    Wgpu,
    /// Burn's CUDA backend on GPU 0 (CubeCL kernels compiled by NVRTC at run time).
    Cuda,
}

impl DeviceKind {
    /// The name used in configs and the cargo feature that enables it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }

    /// Starts backend `B` on `device` with one tiny computation and turns a failure (no CUDA
    /// driver, no wgpu adapter: the backends panic on their own threads) into an error naming
    /// `train.device`, before anything is loaded.
    ///
    /// # Errors
    /// [`Error::ConfigValue`] with the backend's message.
    pub fn probe<B: burn::tensor::backend::Backend>(self, device: &B::Device) -> Result<()> {
        use burn::tensor::Tensor;
        let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Tensor::<B, 1>::from_floats([1.0, 2.0], device)
                .sum()
                .into_scalar()
        }));
        match started {
            Ok(_) => Ok(()),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "the backend panicked".into());
                Err(Error::ConfigValue {
                    field: "train.device".into(),
                    message: format!(
                        "`{}`: the backend could not start on this machine (is the {} driver installed?): {why}",
                        self.name(),
                        if self == Self::Cuda { "NVIDIA" } else { "Vulkan/GPU" }
                    ),
                })
            }
        }
    }

    /// The error for a device this build has no backend for.
    pub fn not_built(self) -> Error {
        Error::ConfigValue {
            field: "train.device".into(),
            message: format!(
                "`{0}`: this build has no {0} backend; rebuild with `cargo build --release --features {0}`",
                self.name()
            ),
        }
    }
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            micro_batch: 4,
            grad_accum: 1,
            epochs: 1,
            max_steps: 0,
            seed: 3407,
            log_every: 1,
            checkpoint_every: 0,
            eval_every: 0,
            warmup_measure_steps: 1,
            runs_dir: PathBuf::from("runs"),
            activation_checkpointing: ActivationCheckpointing::Layer,
            device: DeviceKind::Cpu,
        }
    }
}

/// Learning-rate decay after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Half cosine from `lr` to 0 (HF `get_cosine_schedule_with_warmup`).
    Cosine,
    /// Straight line from `lr` to 0 (HF `get_linear_schedule_with_warmup`).
    Linear,
    /// `lr` throughout.
    Constant,
}

/// `[optimizer]`: AdamW (decoupled weight decay, PyTorch semantics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerSection {
    /// Peak learning rate.
    pub lr: f64,
    /// Adam betas.
    pub betas: [f64; 2],
    /// Adam epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value; 0 = no clipping.
    pub max_grad_norm: f64,
    /// Linear warm-up steps (overrides `warmup_ratio` when > 0).
    pub warmup_steps: usize,
    /// Warm-up as a share of all steps.
    pub warmup_ratio: f64,
    /// Decay after warm-up.
    pub schedule: ScheduleKind,
}

impl Default for OptimizerSection {
    fn default() -> Self {
        Self {
            lr: 2e-4,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            warmup_steps: 0,
            warmup_ratio: 0.0,
            schedule: ScheduleKind::Linear,
        }
    }
}

/// Which projections get an adapter: a list of module names, a regex, or `"all-linear"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Targets {
    /// Module names matched against the end of the full name (PEFT's list semantics).
    List(Vec<String>),
    /// A regex that must match the full module name, or the word `all-linear`.
    Pattern(String),
}

/// `[lora]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSection {
    /// `r`: rank of each LoRA pair (A is `[r, d_in]`, B `[d_out, r]`), 1 to 65 536; PEFT's
    /// `r` in `adapter_config.json`.
    pub r: usize,
    /// Alpha (scale = alpha / r, or alpha / sqrt(r) with `rslora`).
    pub alpha: f64,
    /// Dropout on the adapter input.
    pub dropout: f64,
    /// Target modules.
    pub targets: Targets,
    /// Rank-stabilised scaling.
    pub rslora: bool,
}

impl Default for LoraSection {
    fn default() -> Self {
        Self {
            r: 16,
            alpha: 32.0,
            dropout: 0.0,
            targets: Targets::Pattern("all-linear".into()),
            rslora: false,
        }
    }
}

/// `[export]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSection {
    /// GGUF types `train unsloth` writes after training (with the merged model and an Ollama
    /// Modelfile), e.g. `["q4_k_m", "q8_0", "f16"]`; the first one is the Modelfile's `FROM`.
    /// Names as `tunebench export gguf --quant` takes them (q4_k_m, q4_0, q8_0, f16, bf16, f32).
    /// Empty (the default, and what a file without `[export]` gets): no GGUF. `--gguf` on the
    /// command line replaces the list. The PEFT-style trainer never exports (its users merge and
    /// convert separately).
    pub quants: Vec<String>,
}

/// `[eval]`: what `tunebench eval --config FILE` (and `eval damage`, and the demo's evaluation)
/// uses where no `--max-tokens` / `--num-ctx` is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSection {
    /// Longest generated answer, in tokens.
    pub max_new_tokens: usize,
    /// Context length for serving: Ollama's `num_ctx` in evaluations and the Modelfile's
    /// `PARAMETER num_ctx`.
    pub num_ctx: usize,
}

impl Default for EvalSection {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            num_ctx: 2048,
        }
    }
}

/// Where UTF-8 decoding stopped, given the valid bytes before it: 1-based line and byte column.
fn not_utf8_message(valid: &[u8]) -> String {
    let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    format!(
        "invalid UTF-8 at line {}, byte column {}",
        valid.iter().filter(|&&b| b == b'\n').count() + 1,
        valid.len() - line_start + 1
    )
}

impl ExperimentConfig {
    /// Reads, parses and checks an experiment file; relative paths become relative to its folder.
    /// Every error names the file, and the line or the key.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(io(path))?;
        let text = std::str::from_utf8(&bytes).map_err(|e| Error::ConfigSyntax {
            path: path.to_path_buf(),
            message: not_utf8_message(&bytes[..e.valid_up_to()]),
        })?;
        let mut config = Self::parse(text).map_err(|e| match e {
            Error::ConfigSyntax { message, .. } => Error::ConfigSyntax {
                path: path.to_path_buf(),
                message,
            },
            Error::ConfigValue { field, message } => Error::ConfigFileValue {
                path: path.to_path_buf(),
                field,
                message,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses TOML text and checks values (paths are left as written).
    pub fn parse(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| Error::ConfigSyntax {
            path: PathBuf::from("<config>"),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() && !p.exists() {
                let candidate = base.join(&*p);
                if candidate.exists() {
                    *p = candidate;
                }
            }
        };
        join(&mut self.model.base);
        join(&mut self.data.train);
        if let Some(e) = self.data.eval.as_mut() {
            join(e);
        }
    }

    /// Resolved config as TOML (what `runs/<id>/config.toml` holds).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# could not encode: {e}\n"))
    }

    /// A short, stable hash of the resolved config (first 16 hex digits of its SHA-256).
    pub fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.to_toml().as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}
