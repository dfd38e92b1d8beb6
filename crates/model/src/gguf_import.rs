//! Importing llama-arch GGUF files: config from `llama.*` metadata, weights dequantised to f32
//! under their HF names, with llama.cpp's q/k row permutation undone.

use std::path::Path;

use burn::prelude::*;
use tb_gguf::{hf_to_gguf_name, unpermute_qk, GgufFile};

use crate::causal_lm::CausalLm;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weights::{build_model_with, expected_tensors, LoadOptions};

/// An opened GGUF with its model config.
pub struct GgufModel {
    /// The file.
    pub file: GgufFile,
    /// The config read from its metadata.
    pub config: ModelConfig,
}

impl GgufModel {
    /// Opens a GGUF and reads its config; fails on non-llama architectures or missing keys.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let file = GgufFile::open(path.as_ref())?;
        let config = ModelConfig::from_gguf(&file)?;
        Ok(Self { file, config })
    }

    /// The GGUF name of an HF tensor, checking that it exists with the HF shape (GGUF dims are
    /// ggml order, `ne[0]` fastest: the reverse of the HF shape).
    fn checked_name(&self, hf: &str, shape: &[usize]) -> Result<String> {
        let name = hf_to_gguf_name(hf).ok_or_else(|| Error::MissingTensor {
            name: hf.to_owned(),
            location: "GGUF (no GGUF name for it)".into(),
        })?;
        let info = self.file.tensor(&name).map_err(|_| Error::MissingTensor {
            name: format!("{hf} (GGUF `{name}`)"),
            location: "the GGUF file".into(),
        })?;
        let found: Vec<usize> = info.ne.iter().rev().map(|&d| d as usize).collect();
        if found != shape {
            return Err(Error::ShapeMismatch {
                name: format!("{hf} (GGUF `{name}`)"),
                location: "the GGUF file".into(),
                found,
                expected: shape.to_vec(),
            });
        }
        Ok(name)
    }

    /// One tensor under its HF name and HF shape, as f32.
    pub fn tensor_hf(&self, hf: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let name = self.checked_name(hf, shape)?;
        let data = self.file.tensor_f32(&name)?;
        let c = &self.config;
        // llama.cpp's converter permuted q/k rows for its interleaved RoPE; undo it.
        Ok(if hf.ends_with("self_attn.q_proj.weight") {
            unpermute_qk(&data, shape[0], shape[1], c.num_attention_heads)?
        } else if hf.ends_with("self_attn.k_proj.weight") {
            unpermute_qk(&data, shape[0], shape[1], c.num_key_value_heads)?
        } else {
            data
        })
    }

    /// Builds the Burn model.
    pub fn load<B: Backend>(&self, device: &B::Device) -> Result<CausalLm<B>> {
        self.load_with(device, LoadOptions::default())
    }

    /// [`Self::load`] with [`LoadOptions`] (weight dtype, [`WeightSink`](crate::weights::WeightSink)).
    pub fn load_with<B: Backend>(
        &self,
        device: &B::Device,
        options: LoadOptions<'_>,
    ) -> Result<CausalLm<B>> {
        // Check every name and shape before converting any data, so a bad file fails fast.
        for (hf, shape) in expected_tensors(&self.config) {
            self.checked_name(&hf, &shape)?;
        }
        build_model_with(
            &self.config,
            device,
            &mut |hf, shape| self.tensor_hf(hf, shape),
            options,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: W.reshape(n_head, 2, hd/2, cols).swapaxes(1, 2).reshape(W.shape)
        let (n_head, hd, cols) = (2, 6, 3);
        let rows = n_head * hd;
        let hf: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        let mut permuted = vec![0.0; hf.len()];
        for h in 0..n_head {
            for t in 0..2 {
                for j in 0..hd / 2 {
                    let old = h * hd + t * hd / 2 + j;
                    let new = h * hd + j * 2 + t;
                    permuted[new * cols..(new + 1) * cols]
                        .copy_from_slice(&hf[old * cols..(old + 1) * cols]);
                }
            }
        }
        assert_eq!(unpermute_qk(&permuted, rows, cols, n_head).unwrap(), hf);
    }
}
