//! The embedded GGUF engine: runs llama-architecture GGUFs (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
//! Q5_0, Q5_1, Q4_K, Q5_K, Q6_K tensors, so every mix tb-gguf writes, Q4_K_M included) on the
//! CPU without Burn.
//!
//! * [`EngineModel::open`] memory-maps the file, checks every tensor (present, shape, type, in
//!   bounds) and keeps the weights in their encoded blocks; norms are read as f32.
//! * [`matmul`]: dequantise-on-the-fly products, rayon-parallel over output rows, with
//!   tb-kernels' dot products (the scalar reference, or AVX2+FMA where the CPU has it).
//! * [`EngineModel::forward`]: llama.cpp's `llama` graph (RMSNorm, RoPE on adjacent pairs, as
//!   llama.cpp's `LLAMA_ROPE_TYPE_NORM` on its permuted q/k rows, GQA attention, SwiGLU) with a
//!   [`F32KvCache`].
//! * [`EngineModel::open_with_adapter`]: a base GGUF with a llama.cpp LoRA adapter GGUF on
//!   top, applied at run time as llama.cpp does (`y = W·x + scale·B·(A·x)`, scale `alpha / r`);
//!   the base stays in its encoded blocks, A and B are held in f32 ([`LoraAdapter`]).
//! * [`Session`]: the tokenizer and chat template from the GGUF, greedy generation with stop
//!   tokens, and teacher-forced perplexity over completion tokens (masks from tb-data).
//!
//! Where it can differ from llama.cpp: ggml's quantized matmuls first quantise the activations
//! (to Q8_0/Q8_1/Q8_K, or F16 for F16 weights) and its KV cache is F16; this engine multiplies
//! exactly dequantised weights by f32 activations. Near-ties can therefore flip.

mod forward;
mod lora;
pub mod matmul;
mod model;
mod session;

use std::path::PathBuf;

pub use forward::F32KvCache;
pub use lora::LoraAdapter;
pub use matmul::Kernel;
pub use model::{EngineModel, Hyper};
pub use session::{
    Completion, GenerateSettings, Perplexity, PerplexityTotals, Session, TokenScore,
};

/// What can go wrong in the engine. Every variant names the file, and the tensor when there is
/// one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The GGUF could not be opened or parsed (truncated, bad magic, ...).
    #[error("{path}: {source}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// What tb-gguf found.
        #[source]
        source: Box<tb_gguf::Error>,
    },
    /// The model's metadata, tokenizer or chat template is unusable.
    #[error("{path}: {source}")]
    Model {
        /// The file.
        path: PathBuf,
        /// What tb-model found.
        #[source]
        source: Box<tb_model::Error>,
    },
    /// A tensor is missing, has the wrong shape, or does not lie inside the file.
    #[error("{path}: tensor '{tensor}': {message}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor's GGUF name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// A file given as a LoRA adapter is not one, or not one for this base (metadata level;
    /// tensor problems are [`Error::Tensor`] with the adapter's path).
    #[error("{path}: {message}")]
    Adapter {
        /// The adapter file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor's type has no decoder here.
    #[error("{path}: tensor '{tensor}' has type {ty}, which the embedded engine cannot run (supported: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K)")]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// The tensor's GGUF name.
        tensor: String,
        /// Its type.
        ty: tb_gguf::GgmlType,
    },
    /// Tokenising or formatting an item failed.
    #[error("item '{id}': {source}")]
    Data {
        /// The record id.
        id: String,
        /// What tb-data found.
        #[source]
        source: Box<tb_data::Error>,
    },
    /// The caller asked for something impossible (empty prompt, too many positions, a token id
    /// outside the vocabulary, ...).
    #[error("{0}")]
    InvalidInput(String),
}

/// `Result` with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
