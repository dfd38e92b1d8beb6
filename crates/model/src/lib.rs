//! Llama/Mistral decoders in Burn for tunebench.
//!
//! - [`ModelConfig`]: from HF `config.json` or GGUF metadata, validated field by field.
//! - [`CausalLm`]: embedding, RMSNorm, GQA attention with rotate-half RoPE, causal /
//!   sliding-window / packed masks, SwiGLU MLP, tied or separate LM head; names mirror HF.
//! - Loading: [`SafetensorsCheckpoint`] (single or sharded, memory-mapped, F32/F16/BF16) and
//!   [`GgufModel`] (llama-arch GGUFs through tb-gguf).
//! - [`gguf_export`]: HF directory → GGUF, parsed here and written by tb-gguf.
//! - [`TextTokenizer`] and [`ChatTemplate`], and [`OllamaTemplate`]: the chat template as Ollama
//!   takes it; [`generate`] with a KV cache.

pub mod attention;
pub mod cache;
pub mod causal_lm;
pub mod chat_template;
pub mod checkpoint;
pub mod checkpoint_writer;
pub mod config;
pub mod cross_entropy;
pub mod error;
pub mod fetch;
pub mod flex_f32;
pub mod frozen_linear;
pub mod generation;
pub mod gguf_export;
pub mod gguf_import;
pub mod gguf_tokenizer;
pub mod import;
pub mod layer;
pub mod linear;
pub mod mask;
pub mod mlp;
pub mod model_dir;
pub mod ollama_template;
pub mod projection;
pub mod rms_norm;
pub mod rope;
pub mod silu;
pub mod softmax;
#[cfg(test)]
mod test_values;
pub mod tokenizer;
pub mod weights;

pub use cache::KvCache;
pub use causal_lm::{CausalLm, ForwardOptions};
pub use chat_template::{ChatMessage, ChatTemplate};
pub use checkpoint::{SafetensorsCheckpoint, StoredDtype};
pub use config::{Architecture, ModelConfig, RopeScaling};
pub use cross_entropy::{cross_entropy, CrossEntropyBackend};
pub use error::{Error, Result};
pub use frozen_linear::{frozen_linear, FrozenLinearBackend};
pub use generation::{generate, Generation, GenerationConfig, Sampling, StopReason};
pub use gguf_import::GgufModel;
pub use linear::{Linear, LoraBranch};
pub use mask::MaskBuilder;
pub use model_dir::{LoadedModel, ModelDir};
pub use ollama_template::{OllamaTemplate, TemplateFamily};
pub use projection::Projection;
pub use silu::{silu, SiluBackend};
pub use softmax::{masked_softmax, SoftmaxBackend};
pub use tokenizer::{SpecialToken, TextTokenizer};

/// What the model's forward asks of a backend beyond Burn's own ops: the frozen-base linear
/// op, the attention softmax and the MLP's SiLU. Every backend with all three has it.
pub trait ModelBackend: FrozenLinearBackend + SoftmaxBackend + SiluBackend {}

impl<B: FrozenLinearBackend + SoftmaxBackend + SiluBackend> ModelBackend for B {}

/// The CPU backend used by default (Burn's Flex).
pub type CpuBackend = burn::backend::Flex;
