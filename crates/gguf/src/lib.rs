//! GGUF files and ggml block codecs for tunebench.
//!
//! * [`codec`]: quantize/dequantize F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K
//!   and Q6_K, byte-identical to llama.cpp's reference quantizers.
//! * [`GgufFile`]: a memory-mapped, bounds-checked GGUF v1–v3 reader with typed metadata.
//! * [`GgufWriter`]: a streaming GGUF v3 writer (atomic, alignment 32).
//! * [`fsio`]: the atomic file replacement (temp file, sync, rename, folder sync) every
//!   tunebench writer uses.
//! * [`mix`] and [`quantize_gguf`]: llama-quantize's per-tensor type rules (Q4_K_M, Q4_0, Q8_0,
//!   F16, BF16, F32) and a re-quantizer for whole files.
//! * [`naming`]: HF → GGUF tensor names and the q/k rotary row permutation.
//! * [`export`]: a parsed Llama/Mistral model (hyperparameters, tokenizer files, a
//!   [`TensorSource`] read one tensor at a time) → GGUF in any mix, and LoRA A/B matrices →
//!   llama.cpp adapter GGUF. Parsing HF and PEFT files is left to the crates that own them.
//!
//! Format reference: ggml `docs/gguf.md`; the project's notes are in
//! `shared/reference/gguf-and-quantization.md`.

pub mod codec;
mod error;
pub mod export;
pub mod fsio;
pub mod metadata;
pub mod mix;
pub mod naming;
mod quantize;
pub mod reader;
pub mod types;
pub mod writer;

pub use error::{Error, Result};
pub use export::{
    export_llama, write_lora_adapter, ExportOptions, ExportReport, LlamaHparams, LoraTensorType,
    TensorSource,
};
pub use metadata::{Array, Metadata, Value, ValueType};
pub use mix::{ModelFacts, QuantMix};
pub use naming::{gguf_to_hf_name, hf_to_gguf_name, permute_qk, unpermute_qk};
pub use quantize::{quantize_gguf, QuantizeReport, QuantizedTensor, GGML_QNT_VERSION};
pub use reader::{GgufFile, TensorInfo};
pub use types::{GgmlType, LlamaFileType, QK_K};
pub use writer::{GgufWriter, TensorSink, TensorSpec};
