//! What a `llama`-architecture GGUF is described by: hyperparameters (already parsed by the
//! crate that owns the source format) and the tensors to write, read one at a time from a
//! [`TensorSource`].

use std::path::PathBuf;

use crate::metadata::Metadata;
use crate::mix::QuantMix;
use crate::quantize::GGML_QNT_VERSION;

/// RoPE scaling as a llama-architecture GGUF stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// No scaling.
    None,
    /// Linear position interpolation by the factor (`llama.rope.scaling.*` keys).
    Linear(f32),
    /// Llama 3.1+ frequency-dependent scaling, written as the `rope_freqs.weight` tensor.
    Llama3 {
        /// `factor`.
        factor: f32,
        /// `low_freq_factor`.
        low_freq_factor: f32,
        /// `high_freq_factor`.
        high_freq_factor: f32,
        /// `original_max_position_embeddings`.
        original_context: f32,
    },
}

impl RopeScaling {
    /// The `rope_freqs` factors (one per rotated pair, `head_dim / 2` of them) for llama3
    /// scaling, as `convert_hf_to_gguf.py LlamaModel.generate_extra_tensors` computes them.
    pub fn llama3_factors(&self, theta: f32, head_dim: u32) -> Option<Vec<f32>> {
        let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context,
        } = *self
        else {
            return None;
        };
        let low_wavelen = original_context / low_freq_factor;
        let high_wavelen = original_context / high_freq_factor;
        let dim = head_dim as f32;
        Some(
            (0..head_dim / 2)
                .map(|i| {
                    let freq = 1.0 / theta.powf((2 * i) as f32 / dim);
                    let wavelen = 2.0 * std::f32::consts::PI / freq;
                    if wavelen < high_wavelen {
                        1.0
                    } else if wavelen > low_wavelen {
                        factor
                    } else {
                        let smooth = (original_context / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        1.0 / ((1.0 - smooth) / factor + smooth)
                    }
                })
                .collect(),
        )
    }
}

/// The hyperparameters the `llama.*` keys are made from.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaHparams {
    /// `general.name`.
    pub name: String,
    /// Decoder layers.
    pub n_layer: u32,
    /// Context length (`llama.context_length`).
    pub n_ctx: u32,
    /// Width of the residual stream.
    pub n_embd: u32,
    /// Width of the MLP.
    pub n_ff: u32,
    /// Query heads.
    pub n_head: u32,
    /// Key/value heads.
    pub n_head_kv: u32,
    /// Width of one head.
    pub head_dim: u32,
    /// Whether to write `llama.attention.key_length`/`value_length` (`convert_hf_to_gguf.py`
    /// writes them when `config.json` gives `head_dim`).
    pub write_head_dim: bool,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// RoPE scaling.
    pub rope_scaling: RopeScaling,
    /// Vocabulary size.
    pub vocab_size: u32,
}

impl LlamaHparams {
    /// The `llama.*` and `general.*` keys, in the order `convert_hf_to_gguf.py` writes them.
    pub fn metadata(&self, mix: QuantMix) -> Metadata {
        let mut md = Metadata::new();
        md.set("general.architecture", "llama");
        md.set("general.type", "model");
        md.set("general.name", self.name.as_str());
        md.set("llama.block_count", self.n_layer);
        md.set("llama.context_length", self.n_ctx);
        md.set("llama.embedding_length", self.n_embd);
        md.set("llama.feed_forward_length", self.n_ff);
        md.set("llama.attention.head_count", self.n_head);
        md.set("llama.attention.head_count_kv", self.n_head_kv);
        md.set("llama.rope.freq_base", self.rope_theta);
        md.set("llama.attention.layer_norm_rms_epsilon", self.rms_eps);
        if let RopeScaling::Linear(f) = self.rope_scaling {
            md.set("llama.rope.scaling.type", "linear");
            md.set("llama.rope.scaling.factor", f);
        }
        if self.write_head_dim {
            md.set("llama.attention.key_length", self.head_dim);
            md.set("llama.attention.value_length", self.head_dim);
        }
        md.set("general.file_type", mix.file_type().id());
        md.set("llama.vocab_size", self.vocab_size);
        md.set("llama.rope.dimension_count", self.head_dim);
        md.set("general.quantization_version", GGML_QNT_VERSION);
        md
    }
}

/// How a source tensor is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceDtype {
    /// IEEE f32.
    F32,
    /// IEEE f16.
    F16,
    /// bfloat16.
    BF16,
}

/// One tensor a [`TensorSource`] offers.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceTensor {
    /// HF name (`model.layers.0.self_attn.q_proj.weight`), mapped by [`crate::naming`].
    pub name: String,
    /// Shape, PyTorch order (`[out, in]` for a projection).
    pub shape: Vec<usize>,
    /// Stored dtype (a BF16 source makes BF16 the intermediate type of a quantized mix).
    pub dtype: SourceDtype,
}

/// The error type a [`TensorSource`] reports, kept whole inside [`crate::Error::Source`].
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where the exporter reads weights from, one tensor at a time: it never asks for a second
/// tensor before the first is written, so a source that reads on demand keeps at most one
/// tensor in memory.
pub trait TensorSource: Sync {
    /// Every tensor to write (nothing else: the source leaves out what the GGUF must not
    /// hold), in any order.
    fn tensors(&self) -> Vec<SourceTensor>;

    /// The values of tensor `name`, row-major, converted to f32.
    ///
    /// # Errors
    /// Whatever the source hit; the exporter wraps it as [`crate::Error::Source`].
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, SourceError>;

    /// The file holding tensor `name` (named in messages).
    fn origin(&self, name: &str) -> PathBuf;
}
